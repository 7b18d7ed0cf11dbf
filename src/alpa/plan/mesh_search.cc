#include "alpa/plan/mesh_search.h"

#include <optional>

#include "alpa/plan/manual.h"

namespace alpa {
namespace {

struct Planned {
  MeshCandidate info;
  AutoShardingOptions options;
  std::optional<ShardingPlan> plan;
  Status status = ok_status();
};

Planned plan_candidate(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                       std::string name, AutoShardingOptions o) {
  Planned p;
  p.info.name = std::move(name);
  o.explain_infeasible_memory = false;
  p.options = o;
  Result<ShardingPlan> r = auto_shard(g, mesh, device, o);
  if (!r.ok()) {
    p.status = r.status();
    p.info.rejected = cat(
        r.status().code() == StatusCode::kResourceExhausted ? "does not fit: " : "not supported: ",
        r.status().message());
    return p;
  }
  p.info.planned = true;
  p.info.step_s = r->compute_s + r->communication_s;
  p.info.peak_memory_bytes = r->peak_memory_bytes;
  p.info.fits = device.memory_bytes <= 0 || r->peak_memory_bytes <= device.memory_bytes;
  if (!p.info.fits)
    p.info.rejected = cat("does not fit: ", r->peak_memory_bytes / 1e9, " GB per device of ",
                          device.memory_bytes / 1e9);
  p.plan = std::move(*r);
  return p;
}

// The widest automatic space: the batch left to the ILP, mixed mesh shapes where both axes
// have devices.
AutoShardingOptions widest(const AutoShardingOptions& base, const MeshShape& m) {
  AutoShardingOptions o = base;
  o.sharding.force_batch_dim_to_mesh_dim = -1;
  o.sharding.allow_mixed_mesh_shape = m[0] > 1 && m[1] > 1;
  return o;
}

// Smaller automatic spaces, tried when the widest one's ILP did not finish.
void add_restricted(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                    const AutoShardingOptions& base, std::vector<Planned>& out) {
  const MeshShape m = mesh.shape();
  for (int axis = 0; axis < 2; ++axis) {
    if (m[axis] < 2) continue;
    for (bool mixed : {false, true}) {
      if (mixed && !(m[0] > 1 && m[1] > 1)) continue;
      AutoShardingOptions o = base;
      o.sharding.force_batch_dim_to_mesh_dim = axis;
      o.sharding.allow_mixed_mesh_shape = mixed;
      out.push_back(plan_candidate(
          g, mesh, device, cat("auto (batch axis ", axis, mixed ? ", mixed shapes)" : ")"), o));
    }
  }
}

void add_manual(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                const AutoShardingOptions& base, std::vector<Planned>& out) {
  for (const std::string& name : manual_plan_names()) {
    Result<ManualPlanKind> kind = parse_manual_plan(name);
    Result<AutoShardingOptions> o = manual_plan(g, mesh.shape(), *kind);
    if (!o.ok()) {
      Planned p;
      p.info.name = name;
      p.status = o.status();
      p.info.rejected = cat("not supported: ", o.status().message());
      out.push_back(std::move(p));
      continue;
    }
    o->memory_budget_bytes = base.memory_budget_bytes;
    o->ilp = base.ilp;
    o->merge_repeated_layers = base.merge_repeated_layers;
    o->resolve_partials_once = base.resolve_partials_once;
    out.push_back(plan_candidate(g, mesh, device, name, std::move(*o)));
  }
}

// The cheapest candidate that fits, else the cheapest planned; -1: none planned.
int cheapest(const std::vector<Planned>& c) {
  int best = -1;
  for (int i = 0; i < static_cast<int>(c.size()); ++i) {
    const MeshCandidate& x = c[static_cast<size_t>(i)].info;
    if (!x.planned) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const MeshCandidate& b = c[static_cast<size_t>(best)].info;
    if ((x.fits && !b.fits) || (x.fits == b.fits && x.step_s < b.step_s * (1 - 1e-9))) best = i;
  }
  return best;
}

}  // namespace

Result<MeshSearchResult> search_mesh_plan(const Graph& g, const MeshLinks& mesh,
                                          const DeviceSpec& device, const AutoShardingOptions& base,
                                          const MeshSearchOptions& search) {
  std::vector<Planned> c;
  if (search.forced) c.push_back(plan_candidate(g, mesh, device, "as given", base));
  const size_t first_auto = c.size();
  c.push_back(plan_candidate(g, mesh, device, "auto", widest(base, mesh.shape())));
  if (!c[first_auto].plan || !c[first_auto].plan->ilp.optimal)
    add_restricted(g, mesh, device, base, c);
  if (search.compare_manual) add_manual(g, mesh, device, base, c);

  MeshSearchResult out;
  for (const Planned& p : c) out.candidates.push_back(p.info);
  int win = -1;
  if (search.forced) {
    if (!c[0].plan) {
      // The error of the options as given, with the smallest budget that works if any.
      Result<ShardingPlan> r = auto_shard(g, mesh, device, base);
      if (!r.ok()) return r.status();
      return c[0].status.ok() ? internal_error("mesh search: the given options planned twice")
                              : c[0].status;
    }
    win = 0;
    std::vector<Planned> others(c.begin() + 1, c.end());
    const int best = cheapest(others);
    if (best >= 0 && others[static_cast<size_t>(best)].info.fits &&
        others[static_cast<size_t>(best)].info.step_s < c[0].info.step_s * (1 - 1e-6)) {
      const MeshCandidate& b = others[static_cast<size_t>(best)].info;
      out.warnings.push_back(cat(search.forced_what, " costs ", c[0].info.step_s * 1e6,
                                 " us per step; the automatic choice (", b.name, ") ",
                                 b.step_s * 1e6, " us: leave it out to use that"));
    }
  } else {
    win = cheapest(c);
    if (win < 0) {
      AutoShardingOptions o = widest(base, mesh.shape());
      Result<ShardingPlan> r = auto_shard(g, mesh, device, o);  // explains a budget overflow
      if (!r.ok()) return r.status();
      return c[first_auto].status.ok() ? internal_error("mesh search: no candidate kept")
                                       : c[first_auto].status;
    }
  }
  Planned& w = c[static_cast<size_t>(win)];
  out.plan = std::move(*w.plan);
  out.options = w.options;
  out.options.explain_infeasible_memory = base.explain_infeasible_memory;
  out.winner = w.info.name;
  return out;
}

}  // namespace alpa
