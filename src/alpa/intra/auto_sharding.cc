#include "alpa/intra/auto_sharding.h"

#include "alpa/cost/reshard_cost.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <unordered_map>

#include "alpa/intra/resolve_once.h"
#include "alpa/ir/analysis.h"
#include "alpa/ir/text.h"
#include "alpa/sharding/reshard.h"
#include "alpa/support/hash.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// The values of the graph's outputs that are not aliases, once each.
std::vector<ValueId> whole_output_values(const Graph& g) {
  std::vector<ValueId> out;
  for (const GraphOutput& o : g.outputs())
    if (o.alias == kNoValue && std::find(out.begin(), out.end(), o.value) == out.end())
      out.push_back(o.value);
  return out;
}

// Resharding times, memoised by (tensor type, from, to): repeated layers hit the cache.
class ReshardCostCache {
 public:
  // Local slices cost their memory traffic at `memory_bandwidth` (bytes/s).
  ReshardCostCache(const MeshLinks& mesh, double memory_bandwidth)
      : mesh_(mesh), memory_bandwidth_(memory_bandwidth) {}
  double get(const TensorType& t, const ShardingSpec& from, const ShardingSpec& to) {
    if (from == to) return 0.0;
    Key key{t, from, to};
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    Result<std::vector<ReshardStep>> steps = plan_reshard(from, to, t.shape, mesh_.shape());
    const double c = steps.ok()
                         ? reshard_time(*steps, from, t.shape, t.dtype, mesh_, memory_bandwidth_)
                         : kInfeasibleCost;
    cache_.emplace(std::move(key), c);
    return c;
  }

 private:
  struct Key {
    TensorType type;
    ShardingSpec from, to;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept {
      size_t h = static_cast<size_t>(k.type.dtype) * 1000003u;
      for (int64_t d : k.type.shape) h = h * 131 + static_cast<size_t>(d);
      h = h * 31 + std::hash<ShardingSpec>()(k.from);
      return h * 31 + std::hash<ShardingSpec>()(k.to);
    }
  };
  const MeshLinks& mesh_;
  double memory_bandwidth_ = 0;
  std::unordered_map<Key, double, KeyHash> cache_;
};

// A hash of a node's structure `depth` levels back: op, type, attributes, and its name with
// digit runs replaced ("h12.attn.wq" -> "h#.attn.wq"), so repeated layers hash alike.
std::vector<uint64_t> structural_keys(const Graph& g, int depth) {
  const int32_t n = g.size();
  const std::vector<uint64_t> base = structural_node_hashes(g);
  std::vector<uint64_t> key = base;
  for (int d = 0; d < depth; ++d) {
    std::vector<uint64_t> next(static_cast<size_t>(n));
    for (ValueId v = 0; v < n; ++v) {
      uint64_t h = base[v];
      for (ValueId o : g.node(v).operands) h = hash_combine(h, key[o]);
      next[v] = h;
    }
    key = std::move(next);
  }
  return key;
}

bool same_strategies(const std::vector<Strategy>& a, const std::vector<Strategy>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!(a[i].output == b[i].output) || a[i].operands != b[i].operands) return false;
  return true;
}

struct CostGraph {
  std::vector<NodeStrategies> strategies;
  std::vector<ValueId> root;       // per node: leader group (itself if enumerated), -1 if free
  std::vector<int> ilp_index;      // per root node: its ILP node
  std::vector<ValueId> ilp_nodes;  // ILP node -> root node
  IlpRequest request;
  int leader_nodes = 0;
  double strategies_s = 0;
  // Memory: the candidate peak times (nodes after which a value is freed), each value's last
  // use, and the times that have a row in request.memory_rows so far.
  std::vector<ValueId> peak_times;
  std::vector<ValueId> last_use;
  std::vector<char> has_row;                      // per node
  std::map<std::pair<int, int>, size_t> edge_of;  // (ILP node, ILP node) -> request edge

  // The cost matrix between ILP nodes a and b (a row per strategy of a), made on first use.
  std::vector<double>& matrix(int a, int b) {
    auto [it, inserted] = edge_of.emplace(std::make_pair(a, b), request.edges.size());
    if (inserted)
      request.edges.push_back(IlpEdge{
          a, b,
          std::vector<double>(request.node_costs[a].size() * request.node_costs[b].size(), 0.0)});
    return request.edges[it->second].costs;
  }
};

// Adds the memory row of time t (the values live at t, grouped by ILP node).
void add_memory_row(const Graph& g, CostGraph& cg, ValueId t) {
  if (cg.has_row[t]) return;
  cg.has_row[t] = 1;
  std::map<int, std::vector<double>> terms;
  for (ValueId v = 0; v <= t; ++v) {
    if (cg.root[v] == kNoValue) continue;
    if (cg.last_use[v] < t) continue;  // the executor's liveness, as in plan_peak_memory
    const auto& st = cg.strategies[v].strategies;
    auto& bytes = terms[cg.ilp_index[cg.root[v]]];
    bytes.resize(st.size(), 0.0);
    for (size_t i = 0; i < st.size(); ++i) bytes[i] += st[i].memory;
  }
  std::vector<IlpMemoryTerm> row;
  for (auto& [node, bytes] : terms) row.push_back(IlpMemoryTerm{node, std::move(bytes)});
  cg.request.memory_rows.push_back(std::move(row));
}

// Per candidate peak time: the bytes live there when every value takes the strategy `pick`
// returns (a strategy index), by one sweep over the nodes.
template <typename Pick>
std::vector<double> live_bytes_at_peaks(const Graph& g, const CostGraph& cg, Pick pick) {
  const int32_t n = g.size();
  std::vector<std::vector<ValueId>> frees(static_cast<size_t>(n) + 1);
  for (ValueId v = 0; v < n; ++v)
    if (cg.root[v] != kNoValue) frees[std::min<ValueId>(cg.last_use[v], n)].push_back(v);
  std::vector<double> out;
  out.reserve(cg.peak_times.size());
  double live = 0;
  size_t next = 0;
  for (ValueId t = 0; t < n && next < cg.peak_times.size(); ++t) {
    if (cg.root[t] != kNoValue) live += pick(t);
    while (next < cg.peak_times.size() && cg.peak_times[next] == t) {
      out.push_back(live);
      ++next;
    }
    for (ValueId f : frees[t]) live -= pick(f);
  }
  return out;
}

constexpr size_t kInitialMemoryRows = 32;

// Seconds to add v (in layout `out`) into its accumulator, if it has one.
double accumulation_time(const Graph& g, ValueId v, const ShardingSpec& out, const MeshShape& mesh,
                         const DeviceSpec& device, const AutoShardingOptions& opt) {
  if (opt.accumulated.empty() || !opt.accumulated[v]) return 0;
  return 3 * local_bytes(g.type(v), out, mesh) / device.memory_bandwidth;
}

// Each node's group (the node itself, the leader it follows, or none when free) and each
// group's ILP node: structurally identical groups (repeated layers) share one.
void group_nodes(const Graph& g, const MeshLinks& mesh, const AutoShardingOptions& opt,
                 CostGraph& cg) {
  const int32_t n = g.size();
  IlpRequest& r = cg.request;
  cg.root.assign(static_cast<size_t>(n), kNoValue);
  cg.ilp_index.assign(static_cast<size_t>(n), -1);
  for (ValueId v = 0; v < n; ++v) {
    const NodeStrategies& ns = cg.strategies[v];
    if (ns.kind == StrategyKind::kEnumerated)
      cg.root[v] = v;
    else if (ns.kind == StrategyKind::kFollow)
      cg.root[v] = cg.root[ns.leader];
  }
  const bool merge = opt.merge_repeated_layers;
  std::vector<uint64_t> keys;
  if (merge) keys = structural_keys(g, 3);
  // Pinned layouts take part in the match: nodes merge only if both are unpinned or pinned
  // alike, so a plan that treats layers differently keeps them apart.
  std::vector<std::string> pinned(static_cast<size_t>(n));
  for (const auto& [name, spec] : opt.fixed) {
    const ValueId v = g.find(name.size() > 1 && name[0] == '%' ? name.substr(1) : name);
    if (v != kNoValue) pinned[v] = spec.canonical(mesh.shape()).to_string();
  }
  for (const auto& [name, spec] : opt.fixed)
    if (name.size() > 1 && std::all_of(name.begin() + 1, name.end(), ::isdigit)) {
      const ValueId v = std::stoi(name.substr(1));
      if (v >= 0 && v < n) pinned[v] = spec.canonical(mesh.shape()).to_string();
    }
  // A follower's pin constrains its group's root.
  for (ValueId v = n - 1; v >= 0; --v)
    if (!pinned[v].empty() && cg.root[v] != kNoValue && cg.root[v] != v)
      pinned[cg.root[v]] += "|" + std::to_string(v) + "=" + pinned[v];
  std::unordered_map<uint64_t, std::vector<ValueId>> by_key;  // key -> roots already placed
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] != v) continue;
    ++cg.leader_nodes;
    if (merge) {
      bool placed = false;
      for (ValueId other : by_key[keys[v]]) {
        if (pinned[other] == pinned[v] &&
            same_strategies(cg.strategies[other].strategies, cg.strategies[v].strategies)) {
          cg.ilp_index[v] = cg.ilp_index[other];
          r.names[cg.ilp_index[v]] += "," + value_ref(g, v);
          placed = true;
          break;
        }
      }
      if (placed) continue;
      by_key[keys[v]].push_back(v);
    }
    cg.ilp_index[v] = r.num_nodes();
    cg.ilp_nodes.push_back(v);
    r.names.push_back(value_ref(g, v));
    r.node_costs.emplace_back(cg.strategies[v].strategies.size(), 0.0);
  }
}

double node_weight(const AutoShardingOptions& opt, ValueId v) {
  return opt.node_weight.empty() ? 1.0 : opt.node_weight[v];
}

// Node costs: compute of every member (scaled by its weight), and its accumulation.
Status add_node_costs(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                      const AutoShardingOptions& opt, CostGraph& cg) {
  const int32_t n = g.size();
  IlpRequest& r = cg.request;
  // Node costs: compute of every member (and the tie-break on bytes held).
  if (!opt.node_weight.empty() && opt.node_weight.size() != static_cast<size_t>(n))
    return invalid_argument(
        cat("node_weight has ", opt.node_weight.size(), " entries for a graph of ", n, " nodes"));
  if (!opt.accumulated.empty() && opt.accumulated.size() != static_cast<size_t>(n))
    return invalid_argument(
        cat("accumulated has ", opt.accumulated.size(), " entries for a graph of ", n, " nodes"));
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] == kNoValue) continue;
    std::vector<double>& cost = r.node_costs[cg.ilp_index[cg.root[v]]];
    const auto& st = cg.strategies[v].strategies;
    const double w = node_weight(opt, v);
    for (size_t i = 0; i < st.size(); ++i)
      cost[i] += w * (st[i].compute + st[i].comm +
                      accumulation_time(g, v, st[i].output, mesh.shape(), device, opt));
  }
  return ok_status();
}

void add_reshard_costs(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                       const AutoShardingOptions& opt, CostGraph& cg) {
  const int32_t n = g.size();
  IlpRequest& r = cg.request;
  auto weight = [&](ValueId v) { return node_weight(opt, v); };
  // Resharding on every edge: inside a group it adds to the group's cost, between groups to
  // the pair's matrix.
  ReshardCostCache cache(mesh, device.memory_bandwidth);
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] == kNoValue) continue;
    const Node& node = g.node(v);
    const auto& vst = cg.strategies[v].strategies;
    const int iv = cg.ilp_index[cg.root[v]];
    for (size_t k = 0; k < node.operands.size(); ++k) {
      const ValueId u = node.operands[k];
      if (cg.root[u] == kNoValue) continue;  // free producers make any layout locally
      const auto& ust = cg.strategies[u].strategies;
      const TensorType& t = g.type(u);
      const int iu = cg.ilp_index[cg.root[u]];
      const double w = weight(v);
      if (iu == iv) {
        for (size_t i = 0; i < vst.size(); ++i)
          r.node_costs[iv][i] += w * cache.get(t, ust[i].output, vst[i].operands[k]);
        continue;
      }
      std::vector<double>& m = cg.matrix(iu, iv);
      const size_t kv = vst.size();
      for (size_t j = 0; j < ust.size(); ++j)
        for (size_t i = 0; i < kv; ++i)
          m[j * kv + i] = std::min(
              kInfeasibleCost, m[j * kv + i] + w * cache.get(t, ust[j].output, vst[i].operands[k]));
    }
  }
  // Outputs that must leave whole: resolving their partial sums.
  if (opt.whole_outputs)
    for (ValueId v : whole_output_values(g)) {
      if (cg.root[v] == kNoValue) continue;
      const auto& st = cg.strategies[v].strategies;
      std::vector<double>& cost = r.node_costs[cg.ilp_index[cg.root[v]]];
      for (size_t i = 0; i < st.size(); ++i)
        cost[i] += weight(v) * cache.get(g.type(v), st[i].output, st[i].output.without_partial());
    }
}

// Layouts that are ruled out: an updated value in another layout than its parameter's, state
// not fully split under weight-update sharding.
void constrain_layouts(const Graph& g, const MeshLinks& mesh, const AutoShardingOptions& opt,
                       CostGraph& cg) {
  IlpRequest& r = cg.request;
  const MeshShape ms = mesh.shape();
  // Aliased outputs keep their parameter's layout.
  for (const GraphOutput& o : g.outputs()) {
    if (o.alias == kNoValue || cg.root[o.value] == kNoValue) continue;
    const auto& ost = cg.strategies[o.value].strategies;
    const auto& pst = cg.strategies[o.alias].strategies;
    const int io = cg.ilp_index[cg.root[o.value]], ip = cg.ilp_index[cg.root[o.alias]];
    auto same = [&](const ShardingSpec& a, const ShardingSpec& b) {
      return a.canonical(ms) == b.canonical(ms);
    };
    if (io == ip) {
      for (size_t i = 0; i < ost.size(); ++i)
        if (!same(ost[i].output, pst[i].output)) r.node_costs[io][i] = kInfeasibleCost;
      continue;
    }
    std::vector<double>& m = cg.matrix(ip, io);
    for (size_t j = 0; j < pst.size(); ++j)
      for (size_t i = 0; i < ost.size(); ++i)
        if (!same(pst[j].output, ost[i].output)) m[j * ost.size() + i] = kInfeasibleCost;
  }
  // Weight-update sharding: optimizer state fully split where some layout allows it.
  if (opt.sharding.prefer_reduce_scatter) {
    uint8_t all = 0;
    if (ms[0] > 1) all |= kAxis0;
    if (ms[1] > 1) all |= kAxis1;
    for (ValueId v : g.parameters(ParamRole::kState)) {
      if (cg.root[v] != v || all == 0) continue;
      const auto& st = cg.strategies[v].strategies;
      std::vector<double>& cost = r.node_costs[cg.ilp_index[v]];
      bool any = false;
      for (const Strategy& s : st) any |= s.output.split_axes() == all;
      if (!any) continue;  // e.g. a scalar step counter, or extents that do not divide
      for (size_t i = 0; i < st.size(); ++i)
        if (st[i].output.split_axes() != all) cost[i] = kInfeasibleCost;
    }
  }
}

Status add_fixed_layouts(const Graph& g, const MeshLinks& mesh, const AutoShardingOptions& opt,
                         CostGraph& cg) {
  const int32_t n = g.size();
  IlpRequest& r = cg.request;
  const MeshShape ms = mesh.shape();
  // Fixed layouts.
  std::unordered_map<std::string, ValueId> by_ref;
  if (!opt.fixed.empty())
    for (ValueId id = n - 1; id >= 0; --id) by_ref[value_ref(g, id)] = id;
  for (const auto& [name, spec] : opt.fixed) {
    const auto found = by_ref.find(name);
    const ValueId v = found == by_ref.end() ? kNoValue : found->second;
    if (v == kNoValue)
      return invalid_argument(
          cat("the plan names value '", name, "', which the graph does not have"),
          "value names are as in `alpa graph --emit train-step`");
    ALPA_RETURN_IF_ERROR(spec.validate(g.type(v).shape, ms).with_context(cat("plan entry ", name)));
    if (cg.root[v] == kNoValue) continue;  // free values take any layout
    bool any = false;
    const auto& st = cg.strategies[v].strategies;
    std::vector<double>& cost = r.node_costs[cg.ilp_index[cg.root[v]]];
    for (size_t i = 0; i < st.size(); ++i) {
      if (st[i].output.canonical(ms) == spec.canonical(ms))
        any = true;
      else
        cost[i] = kInfeasibleCost;
    }
    if (!any)
      return invalid_argument(cat("the plan gives ", name, " the layout ", spec.to_string(),
                                  ", which its op cannot produce from any layout of its inputs"));
  }
  return ok_status();
}

// The executor's liveness, with the devices' own values held: a weight or state parameter
// that no output updates (an inference step's weights) stays for the whole step, as the
// runtime keeps what a stage owns. One an output updates gives way to its new value, which
// lives to the end as every output does.
std::vector<ValueId> held_last_use(const Graph& g) {
  std::vector<ValueId> last = compute_last_use(g);
  std::vector<char> updated(static_cast<size_t>(g.size()), 0);
  for (const GraphOutput& o : g.outputs())
    if (o.alias != kNoValue) updated[static_cast<size_t>(o.alias)] = 1;
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (n.op == OpKind::kParameter && n.attr<ParameterAttrs>().role != ParamRole::kInput &&
        !updated[static_cast<size_t>(v)])
      last[static_cast<size_t>(v)] = g.size();
  }
  return last;
}

void add_memory_rows(const Graph& g, const AutoShardingOptions& opt, CostGraph& cg) {
  const int32_t n = g.size();
  IlpRequest& r = cg.request;
  // Memory rows: the live values at each local peak of the live set (a node after which some
  // value is freed), grouped by ILP node. Alpa samples only at contractions, which misses the
  // optimizer update; very large graphs fall back to that sampling to keep the ILP small.
  if (opt.memory_budget_bytes > 0) {
    r.memory_budget = opt.memory_budget_bytes;
    const std::vector<ValueId> last = held_last_use(g);
    std::vector<char> frees_after(static_cast<size_t>(n), 0);
    for (ValueId v = 0; v < n; ++v)
      if (last[v] < n && cg.root[v] != kNoValue) frees_after[last[v]] = 1;
    constexpr int32_t kAllPeaksLimit = 20000;
    std::vector<ValueId> times;
    for (ValueId v = 0; v < n; ++v) {
      const bool contraction = op_info(g.node(v).op).family == OpFamily::kContraction;
      if (n <= kAllPeaksLimit ? (frees_after[v] && cg.root[v] != kNoValue) : contraction)
        times.push_back(v);
    }
    times.push_back(n - 1);
    std::sort(times.begin(), times.end());
    times.erase(std::unique(times.begin(), times.end()), times.end());
    cg.peak_times = std::move(times);
    cg.last_use = last;
    cg.has_row.assign(static_cast<size_t>(n), 0);
    if (opt.all_memory_rows) {
      for (ValueId t : cg.peak_times) add_memory_row(g, cg, t);
    } else {
      // Rows at the times with the largest bytes live under the smallest and under the
      // largest layouts; auto_shard adds the rows a solution violates and solves again.
      auto bound = [&](bool largest) {
        return live_bytes_at_peaks(g, cg, [&](ValueId v) {
          double m = largest ? 0.0 : std::numeric_limits<double>::infinity();
          for (const Strategy& s : cg.strategies[v].strategies)
            m = largest ? std::max(m, s.memory) : std::min(m, s.memory);
          return cg.strategies[v].strategies.empty() ? 0.0 : m;
        });
      };
      for (bool largest : {false, true}) {
        const std::vector<double> b = bound(largest);
        std::vector<size_t> order(b.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        const size_t keep = std::min<size_t>(order.size(), kInitialMemoryRows);
        std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(keep),
                          order.end(), [&](size_t a, size_t c) { return b[a] > b[c]; });
        for (size_t i = 0; i < keep; ++i) add_memory_row(g, cg, cg.peak_times[order[i]]);
      }
    }
  }
}

Result<CostGraph> build_cost_graph(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                                   const AutoShardingOptions& opt) {
  CostGraph cg;
  const Clock::time_point t0 = Clock::now();
  ALPA_ASSIGN_OR_RETURN(cg.strategies, generate_strategies(g, mesh, device, opt.sharding));
  cg.strategies_s = since(t0);
  group_nodes(g, mesh, opt, cg);
  ALPA_RETURN_IF_ERROR(add_node_costs(g, mesh, device, opt, cg));
  add_reshard_costs(g, mesh, device, opt, cg);
  constrain_layouts(g, mesh, opt, cg);
  ALPA_RETURN_IF_ERROR(add_fixed_layouts(g, mesh, opt, cg));
  add_memory_rows(g, opt, cg);
  return cg;
}

}  // namespace

Result<IlpRequest> build_sharding_ilp(const Graph& g, const MeshLinks& mesh,
                                      const DeviceSpec& device,
                                      const AutoShardingOptions& options) {
  AutoShardingOptions all = options;
  all.all_memory_rows = true;
  ALPA_ASSIGN_OR_RETURN(CostGraph cg, build_cost_graph(g, mesh, device, all));
  return std::move(cg.request);
}

std::vector<CommEntry> plan_communication(const Graph& g, const ShardingPlan& plan,
                                          const MeshLinks& mesh) {
  std::vector<CommEntry> out;
  auto describe = [&](ValueId v, const ShardingSpec& from, const ShardingSpec& to, ValueId user) {
    Result<std::vector<ReshardStep>> steps = plan_reshard(from, to, g.type(v).shape, mesh.shape());
    if (!steps.ok() || steps->empty()) return;
    CommEntry e{v, user, "", reshard_time(*steps, from, g.type(v).shape, g.type(v).dtype, mesh)};
    for (const ReshardStep& s : *steps) {
      if (s.kind == ReshardKind::kSlice || s.kind == ReshardKind::kMakePartial) continue;
      e.collectives += (e.collectives.empty() ? "" : ", ") + s.to_string();
    }
    if (!e.collectives.empty()) out.push_back(std::move(e));
  };
  for (ValueId v = 0; v < g.size(); ++v) {
    if (plan.strategy[v] < 0) continue;
    if (!(plan.native_specs[v] == plan.specs[v]))
      describe(v, plan.native_specs[v], plan.specs[v], kNoValue);
    const Node& n = g.node(v);
    for (size_t k = 0; k < n.operands.size(); ++k) {
      const ValueId u = n.operands[k];
      if (plan.strategy[u] < 0) continue;
      describe(u, plan.specs[u], plan.operand_specs[v][k], v);
    }
  }
  return out;
}

double plan_peak_memory(const Graph& g, const std::vector<ShardingSpec>& specs,
                        const std::vector<int>& strategy, const MeshShape& mesh,
                        std::span<const int> fusion_group) {
  const std::vector<ValueId> last = held_last_use(g);
  std::vector<std::vector<ValueId>> frees(static_cast<size_t>(g.size()) + 1);
  for (ValueId v = 0; v < g.size(); ++v) frees[last[v]].push_back(v);
  const std::vector<char> fused = fused_values(g, fusion_group);
  double live = 0, peak = 0;
  auto bytes = [&](ValueId v) {
    if (strategy[v] < 0 || fused[v]) return 0.0;
    const TensorType& t = g.type(v);
    const Shape local = specs[v].rank() == t.rank() ? specs[v].local_shape(t.shape, mesh) : t.shape;
    return static_cast<double>(num_elements(local) * dtype_bytes(t.dtype));
  };
  for (ValueId v = 0; v < g.size(); ++v) {
    live += bytes(v);
    peak = std::max(peak, live);
    for (ValueId f : frees[v]) live -= bytes(f);
  }
  return peak;
}

namespace {

// The ILP's choice that takes options.hint's strategy at every node, with its objective, if it
// is one (auto_sharding.h: hint).
Result<IlpSolution> hinted_choice(const Graph& g, const CostGraph& cg,
                                  const AutoShardingOptions& options) {
  const int32_t n = g.size();
  if (options.hint.size() != static_cast<size_t>(n))
    return failed_precondition(
        cat("the hint names ", options.hint.size(), " strategies for ", n, " nodes"));
  IlpSolution sol;
  sol.choice.assign(static_cast<size_t>(cg.request.num_nodes()), -1);
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] != v) continue;
    const std::vector<Strategy>& st = cg.strategies[v].strategies;
    const auto found = std::find_if(st.begin(), st.end(),
                                    [&](const Strategy& s) { return s.name == options.hint[v]; });
    if (found == st.end())
      return failed_precondition(
          cat("node ", value_ref(g, v), " has no strategy '", options.hint[v], "'"));
    int& c = sol.choice[cg.ilp_index[v]];
    const int index = static_cast<int>(found - st.begin());
    if (c >= 0 && c != index)
      return failed_precondition(
          cat("the hint treats merged node ", value_ref(g, v), " unlike the others of its group"));
    c = index;
  }
  std::vector<std::string> violations;
  sol.objective = evaluate_ilp(cg.request, sol.choice, &violations);
  if (!violations.empty()) return resource_exhausted(cat("the hint: ", violations.front()));
  if (options.memory_budget_bytes > 0) {
    const std::vector<double> used = live_bytes_at_peaks(g, cg, [&](ValueId v) {
      return cg.strategies[v].strategies[sol.choice[cg.ilp_index[cg.root[v]]]].memory;
    });
    for (double u : used)
      if (u > options.memory_budget_bytes * (1 + 1e-9))
        return resource_exhausted("the hint breaks the memory budget");
  }
  sol.stats.nodes = cg.request.num_nodes();
  sol.stats.edges = static_cast<int>(cg.request.edges.size());
  sol.stats.optimal = false;  // costed, not searched
  return sol;
}

}  // namespace

Result<ShardingPlan> auto_shard(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                                const AutoShardingOptions& options) {
  const Clock::time_point t0 = Clock::now();
  ALPA_ASSIGN_OR_RETURN(CostGraph cg, build_cost_graph(g, mesh, device, options));
  const double build_s = since(t0);
  const bool hinted = !options.hint.empty();
  Result<IlpSolution> sol =
      hinted ? hinted_choice(g, cg, options) : solve_ilp(cg.request, options.ilp);
  if (hinted) ALPA_RETURN_IF_ERROR(sol.status());
  // Lazy memory rows: while the solution overflows the budget at a time without a row, add
  // the worst such rows and solve again (after a few rounds, every row). A hint was checked at
  // every time already.
  for (int round = 0; !hinted && sol.ok() && options.memory_budget_bytes > 0 && round < 4;
       ++round) {
    const std::vector<double> used = live_bytes_at_peaks(g, cg, [&](ValueId v) {
      return cg.strategies[v].strategies[sol->choice[cg.ilp_index[cg.root[v]]]].memory;
    });
    std::vector<std::pair<double, ValueId>> over;
    for (size_t i = 0; i < used.size(); ++i)
      if (used[i] > options.memory_budget_bytes * (1 + 1e-9) && !cg.has_row[cg.peak_times[i]])
        over.push_back({used[i], cg.peak_times[i]});
    if (over.empty()) break;
    std::sort(over.rbegin(), over.rend());
    if (round < 3) {
      for (size_t i = 0; i < over.size() && i < 16; ++i) add_memory_row(g, cg, over[i].second);
    } else {
      for (ValueId t : cg.peak_times) add_memory_row(g, cg, t);
    }
    sol = solve_ilp(cg.request, options.ilp);
  }
  if (!sol.ok()) {
    if (options.memory_budget_bytes > 0 && options.explain_infeasible_memory &&
        sol.status().code() == StatusCode::kResourceExhausted) {
      for (ValueId t : cg.peak_times) add_memory_row(g, cg, t);
      IlpRequest relaxed = cg.request;
      Result<double> need = min_feasible_memory(relaxed, options.ilp);
      if (need.ok())
        return resource_exhausted(
            cat("no sharding on mesh ", mesh.shape().to_string(), " fits the memory budget of ",
                options.memory_budget_bytes / 1e9, " GB per device"),
            cat("the smallest budget that works is ", *need / 1e9, " GB per device (",
                static_cast<int64_t>(*need), " bytes); raise the budget or use more devices"));
    }
    return sol.status();
  }
  ShardingPlan plan;
  plan.mesh = mesh.shape();
  const int32_t n = g.size();
  plan.strategy.assign(static_cast<size_t>(n), -1);
  plan.specs.resize(static_cast<size_t>(n));
  plan.native_specs.resize(static_cast<size_t>(n));
  plan.operand_specs.resize(static_cast<size_t>(n));
  plan.strategy_names.resize(static_cast<size_t>(n));
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] == kNoValue) {
      plan.specs[v] = ShardingSpec::replicated(g.type(v).rank());
      plan.native_specs[v] = plan.specs[v];
      plan.strategy_names[v] = "free";
      continue;
    }
    const int choice = sol->choice[cg.ilp_index[cg.root[v]]];
    const Strategy& s = cg.strategies[v].strategies[choice];
    plan.strategy[v] = choice;
    plan.specs[v] = s.output;
    plan.native_specs[v] = s.native;
    plan.operand_specs[v] = s.operands;
    plan.strategy_names[v] = s.name;
    const double w = options.node_weight.empty() ? 1.0 : options.node_weight[v];
    plan.compute_s +=
        w * (s.compute + accumulation_time(g, v, s.output, mesh.shape(), device, options));
    plan.communication_s += w * s.comm;
  }
  // Communication: the resharding the chosen strategies imply on every edge.
  ReshardCostCache cache(mesh, device.memory_bandwidth);
  for (ValueId v = 0; v < n; ++v) {
    if (cg.root[v] == kNoValue) continue;
    const Node& node = g.node(v);
    for (size_t k = 0; k < node.operands.size(); ++k) {
      const ValueId u = node.operands[k];
      if (cg.root[u] == kNoValue) continue;
      const double w = options.node_weight.empty() ? 1.0 : options.node_weight[v];
      plan.communication_s += w * cache.get(g.type(u), plan.specs[u], plan.operand_specs[v][k]);
    }
  }
  if (options.whole_outputs)
    for (ValueId v : whole_output_values(g)) {
      if (cg.root[v] == kNoValue) continue;
      const double w = options.node_weight.empty() ? 1.0 : options.node_weight[v];
      plan.communication_s +=
          w * cache.get(g.type(v), plan.specs[v], plan.specs[v].without_partial());
    }
  if (options.resolve_partials_once)
    plan.resolved_once = resolve_partials_once(g, plan, mesh, device, options);
  plan.peak_memory_bytes =
      plan_peak_memory(g, plan.specs, plan.strategy, mesh.shape(), options.sharding.fusion_group);
  plan.ilp = sol->stats;
  plan.leader_nodes = cg.leader_nodes;
  plan.ilp_nodes = cg.request.num_nodes();
  plan.strategies_s = cg.strategies_s;
  plan.cost_graph_s = build_s - cg.strategies_s;
  plan.total_s = since(t0);
  return plan;
}

}  // namespace alpa
