#include "alpa/inter/stage_memory.h"

#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

// A copy of a value in another layout that the lowered program makes for the users that read
// it so (spmd/lower.cc: one per value, layout and program): it lives from the first of those
// users to the last.
struct Reshard {
  ValueId value;
  ShardingSpec spec;
  ValueId first, last;
  double bytes;
};

std::vector<Reshard> reshards(const StageGraph& sg, const ShardingPlan& plan) {
  const Graph& g = sg.graph;
  std::vector<Reshard> out;
  if (plan.operand_specs.size() != static_cast<size_t>(g.size())) return out;
  std::vector<std::vector<size_t>> of(static_cast<size_t>(g.size()));  // per value: its copies
  for (ValueId v = 0; v < g.size(); ++v) {
    if (plan.strategy[v] < 0) continue;
    const std::vector<ValueId>& ops = g.node(v).operands;
    for (size_t k = 0; k < ops.size() && k < plan.operand_specs[v].size(); ++k) {
      const ValueId o = ops[k];
      if (plan.strategy[o] < 0 || g.node(o).op == OpKind::kBroadcast) continue;
      const ShardingSpec spec = plan.operand_specs[v][k].canonical(plan.mesh);
      if (spec == plan.specs[o].canonical(plan.mesh)) continue;
      bool found = false;
      for (size_t i : of[o]) {
        Reshard& r = out[i];
        if (r.spec == spec && sg.task[r.first] == sg.task[v]) {
          r.last = v;
          found = true;
        }
      }
      if (found) continue;
      of[o].push_back(out.size());
      out.push_back({o, spec, v, v, local_bytes(g.type(o), spec, plan.mesh)});
    }
  }
  return out;
}

// The peak of task t's own intermediates (see the header), with the copies it reshards.
double task_working(const StageGraph& sg, TaskKind t, const std::vector<char>& held,
                    const std::vector<double>& bytes,
                    const std::vector<std::vector<ValueId>>& users,
                    const std::vector<char>& is_output, const std::vector<Reshard>& copies) {
  const Graph& g = sg.graph;
  const ValueId n = g.size();
  // Per node of t: the values of t whose last use inside t it is; the copies made for it and
  // the copies it reads last.
  std::vector<std::vector<ValueId>> dies(static_cast<size_t>(n));
  std::vector<double> copied(static_cast<size_t>(n), 0), copy_freed(static_cast<size_t>(n), 0);
  for (ValueId v = 0; v < n; ++v) {
    if (sg.task[v] != t || !held[v] || g.node(v).op == OpKind::kParameter) continue;
    bool leaves = is_output[v] != 0;
    ValueId last = v;
    for (ValueId u : users[v]) {
      if (sg.task[u] != t) leaves = true;
      last = std::max(last, u);
    }
    if (!leaves) dies[static_cast<size_t>(last)].push_back(v);
  }
  for (const Reshard& r : copies) {
    if (sg.task[r.first] != t) continue;
    copied[static_cast<size_t>(r.first)] += r.bytes;
    copy_freed[static_cast<size_t>(r.last)] += r.bytes;
  }
  double live = 0, peak = 0;
  for (ValueId v = 0; v < n; ++v) {
    if (sg.task[v] != t) continue;
    live += copied[static_cast<size_t>(v)];
    if (held[v] && g.node(v).op != OpKind::kParameter) live += bytes[v];
    peak = std::max(peak, live);
    for (ValueId d : dies[static_cast<size_t>(v)]) live -= bytes[d];
    live -= copy_freed[static_cast<size_t>(v)];
  }
  return peak;
}

}  // namespace

MemoryBreakdown StageMemoryParts::breakdown(int in_flight) const {
  MemoryBreakdown m;
  m.weights = owned;
  m.accumulators = per_step;
  const bool update =
      owned + update_held + update_received + update_working > peak(in_flight) - 1e-6 &&
      update_held + update_received + update_working > per_step + in_flight * stash + working;
  m.in_flight = update ? 0 : in_flight;
  if (update) m.accumulators = update_held + update_received;
  m.stash_per_micro_batch = update ? 0 : stash;
  m.working = update ? update_working : working;
  // At a backward's moment the simulator counts its received cotangents among the stored
  // micro-batch values: as a share of each micro-batch in flight, not as working memory.
  if (!update && received > 0 && in_flight > 0 && working > forward_working + 1e-6) {
    m.stash_per_micro_batch += received / in_flight;
    m.working -= received;
  }
  return m;
}

std::vector<char> accumulated_values(const StageGraph& sg) {
  const Graph& g = sg.graph;
  std::vector<char> acc(static_cast<size_t>(g.size()), 0);
  for (ValueId u = 0; u < g.size(); ++u) {
    if (!once_per_step(sg.task[u])) continue;
    for (ValueId v : g.node(u).operands)
      if (!once_per_step(sg.task[v]) && g.node(v).op != OpKind::kParameter) acc[v] = 1;
  }
  for (ValueId v : sg.sent_accumulated)
    if (!once_per_step(sg.task[v])) acc[v] = 1;
  return acc;
}

StageMemoryParts stage_memory_parts(const StageGraph& sg, const ShardingPlan& plan,
                                    int micro_batches) {
  const Graph& g = sg.graph;
  const std::vector<ShardingSpec>& specs = plan.specs;
  const std::vector<int>& strategy = plan.strategy;
  const MeshShape& mesh = plan.mesh;
  const std::vector<Reshard> copies = reshards(sg, plan);
  const ValueId n = g.size();
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  const std::vector<char> accumulated = accumulated_values(sg);
  std::vector<int> group;
  for (TaskKind t : sg.task) group.push_back(static_cast<int>(t));
  const std::vector<char> fused = fused_values(g, group);
  std::vector<char> held(static_cast<size_t>(n)), is_output(static_cast<size_t>(n), 0);
  std::vector<double> bytes(static_cast<size_t>(n), 0);
  for (const GraphOutput& o : g.outputs()) is_output[o.value] = 1;
  for (ValueId v = 0; v < n; ++v) {
    held[v] = strategy[v] >= 0 && !fused[v];
    if (strategy[v] >= 0) bytes[v] = local_bytes(g.type(v), specs[v], mesh);
  }
  std::vector<char> owned(static_cast<size_t>(n), 0);
  for (ValueId v : sg.owned) owned[v] = 1;
  StageMemoryParts m;
  for (ValueId v = 0; v < n; ++v) {
    if (strategy[v] < 0) continue;
    const bool param = g.node(v).op == OpKind::kParameter;
    const bool input = param && g.node(v).attr<ParameterAttrs>().role == ParamRole::kInput;
    if (owned[v]) {
      m.owned += bytes[v];
      continue;
    }
    bool update_reads = false, update_only = true;
    for (ValueId u : users[v]) {
      update_reads = update_reads || once_per_step(sg.task[u]);
      update_only = update_only && once_per_step(sg.task[u]);
    }
    if (accumulated[v]) {
      if (micro_batches != 1) m.per_step += bytes[v];
      m.accumulators += bytes[v];
      if (update_reads) m.update_held += bytes[v];
    }
    if (param && !input) {  // received once per step
      (update_only ? m.update_received : m.per_step) += bytes[v];
      if (!update_only && update_reads) m.update_held += bytes[v];
    }
    if (input && sg.task[v] == TaskKind::kBackward) {
      m.received += bytes[v];  // a cotangent received every micro-batch, just before its backward
      continue;
    }
    if (once_per_step(sg.task[v]) || sg.task[v] != TaskKind::kForward || (param && !input))
      continue;
    bool read_by_b = false;
    for (ValueId u : users[v]) read_by_b = read_by_b || sg.task[u] == TaskKind::kBackward;
    if (read_by_b) m.stash += bytes[v];
  }
  // A forward runs before its own stash is stored (its outputs are that stash): one stash
  // fewer is held beside it than beside a backward.
  m.forward_working =
      task_working(sg, TaskKind::kForward, held, bytes, users, is_output, copies) - m.stash;
  m.working = std::max(
      task_working(sg, TaskKind::kBackward, held, bytes, users, is_output, copies) + m.received,
      m.forward_working);
  m.update_working =
      std::max(task_working(sg, TaskKind::kGradNorm, held, bytes, users, is_output, copies),
               task_working(sg, TaskKind::kUpdate, held, bytes, users, is_output, copies));
  return m;
}

}  // namespace alpa
