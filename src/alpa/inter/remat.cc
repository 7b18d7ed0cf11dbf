#include "alpa/inter/remat.h"

#include <algorithm>

#include "alpa/inter/layer_clustering.h"
#include "alpa/ir/analysis.h"
#include "alpa/ir/op.h"
#include "alpa/support/check.h"

namespace alpa {

std::string_view remat_name(RematMode m) {
  switch (m) {
    case RematMode::kAuto: return "auto";
    case RematMode::kNone: return "none";
    case RematMode::kSelective: return "selective";
    case RematMode::kFull: return "full";
  }
  return "?";
}

Result<RematMode> parse_remat(std::string_view name) {
  for (RematMode m : {RematMode::kAuto, RematMode::kNone, RematMode::kSelective, RematMode::kFull})
    if (remat_name(m) == name) return m;
  return invalid_argument(cat("unknown rematerialization mode '", name, "'"),
                          "use one of auto, none, selective, full");
}

namespace {

bool is_param(const Graph& g, ValueId v) {
  return g.node(v).op == OpKind::kParameter;
}

// Per node: computed from a data input (directly or through other nodes).
std::vector<char> data_dependent(const Graph& g) {
  std::vector<char> d(static_cast<size_t>(g.size()), 0);
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (n.op == OpKind::kParameter) {
      d[v] = n.attr<ParameterAttrs>().role == ParamRole::kInput;
      continue;
    }
    for (ValueId u : n.operands) d[v] = d[v] || d[u];
  }
  return d;
}

// A forward node a backward may read: not a parameter, not free.
bool forward_value(const TrainStep& step, const std::vector<char>& free, ValueId v) {
  return step.phase[v] == StepPhase::kForward && !is_param(step.graph, v) && !free[v];
}

// The segment whose copies a backward node may read: its origin's (-1: none).
int backward_segment(const TrainStep& step, std::span<const int> segment, ValueId b) {
  if (step.phase[b] != StepPhase::kBackward) return -1;
  const ValueId o = step.origin[b];
  if (o == kNoValue || is_param(step.graph, o) || step.phase[o] != StepPhase::kForward) return -1;
  return segment[o];
}

}  // namespace

std::vector<char> remat_selection(const TrainStep& step, RematMode mode) {
  const Graph& g = step.graph;
  std::vector<char> sel(static_cast<size_t>(g.size()), 0);
  if (mode != RematMode::kSelective && mode != RematMode::kFull) return sel;
  const std::vector<char> free = free_values(g);
  const std::vector<char> data = data_dependent(g);
  for (ValueId v = 0; v < g.size(); ++v) {
    if (!forward_value(step, free, v)) continue;
    const Node& n = g.node(v);
    if (mode == RematMode::kFull || op_info(n.op).family != OpFamily::kContraction) {
      sel[v] = 1;
      continue;
    }
    bool all_data = true;
    for (ValueId u : n.operands) all_data = all_data && data[u];
    sel[v] = all_data;  // the attention core: both operands are activations
  }
  return sel;
}

Result<TrainStep> rematerialize(const TrainStep& step, std::span<const int> segment,
                                std::span<const char> recompute,
                                std::vector<ValueId>* copied_from) {
  const Graph& g = step.graph;
  const int32_t n = g.size();
  if (segment.size() != static_cast<size_t>(n) || recompute.size() != static_cast<size_t>(n))
    return invalid_argument(cat("rematerialization needs one segment and one flag per node (", n,
                                "), got ", segment.size(), " and ", recompute.size()));
  if (step.phase.size() != static_cast<size_t>(n) || step.origin.size() != static_cast<size_t>(n))
    return invalid_argument("the training step carries no phases (build it with build_train_step)");
  const std::vector<char> free = free_values(g);
  auto copyable = [&](ValueId v) { return recompute[v] && forward_value(step, free, v); };

  TrainStep out;
  out.graph = Graph(g.name());
  out.weights = step.weights;
  out.inputs = step.inputs;
  out.states = step.states;
  out.state_weight = step.state_weight;
  out.micro_batches = step.micro_batches;
  std::vector<ValueId> map(static_cast<size_t>(n), kNoValue),
      copy(static_cast<size_t>(n), kNoValue);
  if (copied_from) copied_from->clear();
  auto emit = [&](Node node, StepPhase phase, ValueId origin, ValueId copies = kNoValue) {
    const ValueId id = out.graph.add_node(std::move(node));
    out.phase.push_back(phase);
    out.origin.push_back(origin);
    if (copied_from) copied_from->push_back(copies);
    return id;
  };
  // The copy of `root` and of what it reads within its segment, operands first.
  auto copy_of = [&](ValueId root) {
    std::vector<std::pair<ValueId, size_t>> stack{{root, 0}};
    while (!stack.empty()) {
      auto& [v, next] = stack.back();
      const Node& node = g.node(v);
      if (next < node.operands.size()) {
        const ValueId u = node.operands[next++];
        if (copyable(u) && segment[u] == segment[v] && copy[u] == kNoValue) stack.push_back({u, 0});
        continue;
      }
      Node c = node;
      for (ValueId& u : c.operands) u = copyable(u) && segment[u] == segment[v] ? copy[u] : map[u];
      c.name = c.name.empty() ? cat("remat.", v) : cat("remat.", c.name);
      copy[v] = emit(std::move(c), StepPhase::kBackward, map[v], v);
      stack.pop_back();
    }
    return copy[root];
  };
  for (ValueId v = 0; v < n; ++v) {
    Node node = g.node(v);
    const int seg = backward_segment(step, segment, v);
    for (ValueId& u : node.operands) {
      if (seg >= 0 && copyable(u) && segment[u] == seg) {
        u = copy[u] != kNoValue ? copy[u] : copy_of(u);
      } else {
        u = map[u];
      }
      ALPA_CHECK(u != kNoValue);
    }
    const ValueId o = step.origin[v];
    map[v] = emit(std::move(node), step.phase[v], o == kNoValue ? kNoValue : map[o]);
  }
  for (const GraphOutput& o : g.outputs())
    out.graph.add_output({o.name, map[o.value], o.alias == kNoValue ? kNoValue : map[o.alias]});
  return out;
}

RematSegments remat_segments(const TrainStep& step, std::span<const int> layer_of, int num_layers) {
  const std::vector<ValueId> ops = forward_ops(step);
  ALPA_CHECK(layer_of.size() == ops.size())
      << "layer_of has " << layer_of.size() << " entries for " << ops.size() << " forward ops";
  std::vector<char> block_start(ops.size(), 0);
  if (Result<std::vector<int>> b = repeated_block_starts(step.graph, ops); b.ok())
    for (int i : *b) block_start[static_cast<size_t>(i)] = 1;
  RematSegments r;
  r.of_node.assign(static_cast<size_t>(step.graph.size()), 0);
  r.first_of_layer.assign(static_cast<size_t>(std::max(1, num_layers)) + 1, 0);
  int seg = -1;
  for (size_t i = 0; i < ops.size(); ++i) {
    const bool layer_start = i == 0 || layer_of[i] != layer_of[i - 1];
    if (layer_start || block_start[i]) ++seg;
    if (layer_start) r.first_of_layer[static_cast<size_t>(layer_of[i])] = seg;
    r.of_node[ops[i]] = seg;
  }
  r.first_of_layer.back() = seg + 1;
  return r;
}

RematSegmentStats remat_segment_stats(const TrainStep& step, std::span<const int> segment,
                                      int num_segments, RematMode mode) {
  const Graph& g = step.graph;
  const int32_t n = g.size();
  RematSegmentStats st;
  const size_t L = static_cast<size_t>(std::max(1, num_segments));
  st.stash_bytes.assign(L, 0.0);
  st.recompute_flops.assign(L, 0.0);
  st.flops.assign(L, 0.0);
  const std::vector<char> free = free_values(g);
  const std::vector<char> recompute = remat_selection(step, mode);
  auto at = [&](int s) { return static_cast<size_t>(std::clamp(s, 0, num_segments - 1)); };
  auto copyable = [&](ValueId v) { return recompute[v] && forward_value(step, free, v); };
  std::vector<char> copied(static_cast<size_t>(n), 0), stashed(static_cast<size_t>(n), 0);
  // What a reader in segment `seg` takes from u: a copy, or u itself (stashed).
  auto read = [&](ValueId u, int seg) {
    if (copyable(u) && segment[u] == seg) {
      copied[u] = 1;
    } else if (!stashed[u] &&
               (forward_value(step, free, u) ||
                (is_param(g, u) && g.node(u).attr<ParameterAttrs>().role == ParamRole::kInput))) {
      stashed[u] = 1;
      st.stash_bytes[at(forward_value(step, free, u) ? segment[u] : seg)] +=
          static_cast<double>(g.type(u).bytes());
    }
  };
  for (ValueId b = 0; b < n; ++b) {
    const int seg = backward_segment(step, segment, b);
    if (seg < 0) continue;
    st.flops[at(seg)] += node_flops(g, b);
    for (ValueId u : g.node(b).operands) read(u, seg);
  }
  for (ValueId v = n - 1; v >= 0; --v) {
    if (forward_value(step, free, v)) st.flops[at(segment[v])] += node_flops(g, v);
    if (!copied[v]) continue;
    st.recompute_flops[at(segment[v])] += node_flops(g, v);
    for (ValueId u : g.node(v).operands) read(u, segment[v]);
  }
  // The copies' liveness in the transformed step (a copy lives from where it is made to its
  // last reader), per segment of the node it copies.
  st.recompute_peak_bytes.assign(L, 0.0);
  if (mode != RematMode::kSelective && mode != RematMode::kFull) return st;
  std::vector<ValueId> copied_from;
  Result<TrainStep> r = rematerialize(step, segment, recompute, &copied_from);
  if (!r.ok()) return st;
  const Graph& rg = r->graph;
  const std::vector<ValueId> last = compute_last_use(rg);
  std::vector<double> live(L, 0.0);
  std::vector<std::vector<ValueId>> frees(static_cast<size_t>(rg.size()) + 1);
  for (ValueId v = 0; v < rg.size(); ++v) {
    for (ValueId f : frees[v])
      live[at(segment[copied_from[f]])] -= static_cast<double>(rg.type(f).bytes());
    if (copied_from[v] == kNoValue) continue;
    const size_t x = at(segment[copied_from[v]]);
    live[x] += static_cast<double>(rg.type(v).bytes());
    st.recompute_peak_bytes[x] = std::max(st.recompute_peak_bytes[x], live[x]);
    frees[static_cast<size_t>(std::clamp(last[v], v, rg.size() - 1)) + 1].push_back(v);
  }
  return st;
}

}  // namespace alpa
