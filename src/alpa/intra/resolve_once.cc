#include "alpa/intra/resolve_once.h"

#include <map>
#include <optional>
#include <set>

#include "alpa/cost/reshard_cost.h"
#include "alpa/sharding/reshard.h"

namespace alpa {
namespace {

// The layouts a rewrite changes (values not in `spec` keep the plan's).
struct Rewrite {
  std::map<ValueId, ShardingSpec> spec, native;
  std::map<ValueId, std::vector<ShardingSpec>> operands;
};

struct Context {
  const Graph& g;
  const ShardingPlan& plan;
  const MeshLinks& mesh;
  const DeviceSpec& device;
  const AutoShardingOptions& options;
  std::vector<std::vector<ValueId>> users;
  std::vector<char> whole_output;

  double weight(ValueId v) const {
    return options.node_weight.empty() ? 1.0 : options.node_weight[static_cast<size_t>(v)];
  }
  double reshard(ValueId v, const ShardingSpec& from, const ShardingSpec& to) const {
    if (from == to) return 0;
    const TensorType& t = g.type(v);
    Result<std::vector<ReshardStep>> steps = plan_reshard(from, to, t.shape, mesh.shape());
    if (!steps.ok()) return kInfeasibleCost;
    return reshard_time(*steps, from, t.shape, t.dtype, mesh, device.memory_bandwidth);
  }
};

// Resolving `v` at its producer and the follow-ops that pass its partial sum on, recomputed
// from their leader's whole layout; nothing if one of them cannot take it.
std::optional<Rewrite> rewrite_of(const Context& c, ValueId v) {
  const ShardingPlan& p = c.plan;
  Rewrite r;
  r.spec[v] = p.specs[v].without_partial();
  std::set<ValueId> todo(c.users[v].begin(), c.users[v].end());
  while (!todo.empty()) {
    const ValueId u = *todo.begin();
    todo.erase(todo.begin());
    if (p.strategy[u] < 0 || p.specs[u].partial == 0) continue;  // resolves on its edge
    ValueId leader = kNoValue;
    const Node& n = c.g.node(u);
    for (size_t k = 0; k < n.operands.size() && leader == kNoValue; ++k) {
      const ValueId x = n.operands[k];
      if (r.spec.count(x) && p.specs[x].partial != 0 && p.operand_specs[u][k] == p.specs[x])
        leader = x;
    }
    if (leader == kNoValue) continue;
    if (!(p.native_specs[u] == p.specs[u])) return std::nullopt;
    Result<Strategy> s = follow_strategy(c.g, u, leader, r.spec[leader], c.mesh.shape());
    if (!s.ok() || s->output.partial != 0) return std::nullopt;
    r.spec[u] = s->output;
    r.native[u] = s->output;
    r.operands[u] = s->operands;
    todo.insert(c.users[u].begin(), c.users[u].end());
  }
  return r;
}

// Predicted communication of every edge touching the rewritten values: their own collectives,
// their operands' resharding, and their other users' resharding; before or after the rewrite.
double touched_cost(const Context& c, const Rewrite& r, bool after) {
  const ShardingPlan& p = c.plan;
  auto spec = [&](ValueId x) -> const ShardingSpec& {
    auto it = r.spec.find(x);
    return after && it != r.spec.end() ? it->second : p.specs[x];
  };
  auto native = [&](ValueId x) -> const ShardingSpec& {
    auto it = r.native.find(x);
    return after && it != r.native.end() ? it->second : p.native_specs[x];
  };
  auto operand = [&](ValueId x, size_t k) -> const ShardingSpec& {
    auto it = r.operands.find(x);
    return after && it != r.operands.end() ? it->second[k] : p.operand_specs[x][k];
  };
  double total = 0;
  for (const auto& [x, unused] : r.spec) {
    (void)unused;
    total += c.weight(x) * c.reshard(x, native(x), spec(x));
    if (c.whole_output[x]) total += c.weight(x) * c.reshard(x, spec(x), spec(x).without_partial());
    const Node& n = c.g.node(x);
    for (size_t k = 0; k < n.operands.size(); ++k) {
      const ValueId o = n.operands[k];
      if (p.strategy[o] >= 0) total += c.weight(x) * c.reshard(o, spec(o), operand(x, k));
    }
    for (ValueId u : c.users[x]) {
      if (r.spec.count(u) || p.strategy[u] < 0) continue;
      const Node& un = c.g.node(u);
      for (size_t k = 0; k < un.operands.size(); ++k)
        if (un.operands[k] == x) total += c.weight(u) * c.reshard(x, spec(x), operand(u, k));
    }
  }
  return total;
}

}  // namespace

int resolve_partials_once(const Graph& g, ShardingPlan& plan, const MeshLinks& mesh,
                          const DeviceSpec& device, const AutoShardingOptions& options) {
  Context c{g, plan, mesh, device, options, compute_users(g), {}};
  c.whole_output.assign(static_cast<size_t>(g.size()), 0);
  if (options.whole_outputs)
    for (const GraphOutput& o : g.outputs())
      if (o.alias == kNoValue) c.whole_output[o.value] = 1;
  int resolved = 0;
  std::vector<ShardingSpec> chosen;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (plan.strategy[v] < 0 || plan.specs[v].partial == 0 ||
        !(plan.native_specs[v] == plan.specs[v]))
      continue;
    std::optional<Rewrite> r = rewrite_of(c, v);
    if (!r) continue;
    const double before = touched_cost(c, *r, false);
    const double after = touched_cost(c, *r, true);
    if (!(after < before * (1 - 1e-9)) || after >= kInfeasibleCost) continue;
    if (chosen.empty()) chosen = plan.specs;
    for (const auto& [x, s] : r->spec) plan.specs[x] = s;
    for (const auto& [x, s] : r->native) plan.native_specs[x] = s;
    for (const auto& [x, s] : r->operands) plan.operand_specs[x] = s;
    plan.strategy_names[v] += ", resolved once";
    plan.communication_s -= before - after;
    ++resolved;
  }
  if (!chosen.empty()) plan.ilp_specs = std::move(chosen);
  return resolved;
}

}  // namespace alpa
