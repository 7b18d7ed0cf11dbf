#include "alpa/ir/analysis.h"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "alpa/ir/text.h"
#include "alpa/support/hash.h"

namespace alpa {

double node_flops(const Graph& g, ValueId id) {
  const Node& n = g.node(id);
  const double out = static_cast<double>(n.type.num_elements());
  switch (op_info(n.op).family) {
    case OpFamily::kUnary:
    case OpFamily::kBinary:
    case OpFamily::kSelect: return n.op == OpKind::kConvert ? 0.0 : out;
    case OpFamily::kReduce: return static_cast<double>(g.type(n.operands[0]).num_elements());
    case OpFamily::kContraction: {
      if (n.op == OpKind::kDotGeneral) {
        const auto& a = n.attr<DotAttrs>();
        double k = 1;
        for (int64_t d : a.lhs_contract) k *= static_cast<double>(g.type(n.operands[0]).shape[d]);
        return 2.0 * out * k;
      }
      // conv2d and its gradients: 2 * N * O * OH * OW * (C / groups) * KH * KW.
      const auto& a = n.attr<ConvAttrs>();
      const TensorType& filter = n.op == OpKind::kConv2dGradFilter ? n.type : g.type(n.operands[1]);
      const TensorType& conv_out = n.op == OpKind::kConv2d            ? n.type
                                   : n.op == OpKind::kConv2dGradInput ? g.type(n.operands[0])
                                                                      : g.type(n.operands[1]);
      (void)a;
      return 2.0 * static_cast<double>(conv_out.num_elements()) *
             static_cast<double>(filter.shape[1] * filter.shape[2] * filter.shape[3]);
    }
    case OpFamily::kIndexing:
      return n.op == OpKind::kScatterAdd ? static_cast<double>(g.type(n.operands[1]).num_elements())
                                         : 0.0;
    case OpFamily::kCollective:
      return n.op == OpKind::kAllReduce || n.op == OpKind::kReduceScatter
                 ? static_cast<double>(g.type(n.operands[0]).num_elements())
                 : 0.0;
    case OpFamily::kSource:
    case OpFamily::kMovement: return 0.0;
  }
  return 0.0;
}

double graph_flops(const Graph& g) {
  double total = 0;
  for (ValueId i = 0; i < g.size(); ++i) total += node_flops(g, i);
  return total;
}

std::vector<ValueId> compute_last_use(const Graph& g) {
  std::vector<ValueId> last(static_cast<size_t>(g.size()));
  for (ValueId i = 0; i < g.size(); ++i) {
    last[i] = i;
    for (ValueId op : g.node(i).operands) last[op] = i;
  }
  for (const GraphOutput& o : g.outputs()) last[o.value] = g.size();
  return last;
}

GraphStats graph_stats(const Graph& g) {
  GraphStats s;
  s.num_nodes = g.size();
  const std::vector<ValueId> last = compute_last_use(g);
  std::vector<std::vector<ValueId>> frees(static_cast<size_t>(g.size()) + 1);
  for (ValueId i = 0; i < g.size(); ++i) frees[last[i]].push_back(i);
  int64_t live = 0;
  for (ValueId i = 0; i < g.size(); ++i) {
    const Node& n = g.node(i);
    ++s.ops_by_kind[std::string(op_name(n.op))];
    s.flops += node_flops(g, i);
    if (n.op == OpKind::kParameter) {
      const ParamRole role = n.attr<ParameterAttrs>().role;
      if (role == ParamRole::kWeight) {
        s.parameters += n.type.num_elements();
        s.parameter_bytes += n.type.bytes();
      } else if (role == ParamRole::kState) {
        s.state_bytes += n.type.bytes();
      } else {
        s.input_bytes += n.type.bytes();
      }
    } else {
      live += n.type.bytes();
      s.peak_activation_bytes = std::max(s.peak_activation_bytes, live);
    }
    for (ValueId f : frees[i])
      if (g.node(f).op != OpKind::kParameter) live -= g.node(f).type.bytes();
  }
  return s;
}

std::vector<uint64_t> structural_node_hashes(const Graph& g) {
  std::vector<uint64_t> out(static_cast<size_t>(g.size()));
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& node = g.node(v);
    std::string name;
    for (char c : node.name) {
      if (std::isdigit(static_cast<unsigned char>(c))) {
        if (name.empty() || name.back() != '#') name += '#';
      } else {
        name += c;
      }
    }
    out[v] = hash_string(std::string(op_name(node.op)) + "|" + node.type.to_string() + "|" +
                         print_attrs(node.attrs) + "|" + name);
  }
  return out;
}

std::vector<char> free_values(const Graph& g) {
  std::vector<char> free(static_cast<size_t>(g.size()), 0);
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (n.op == OpKind::kParameter) continue;
    free[v] = std::all_of(n.operands.begin(), n.operands.end(), [&](ValueId o) { return free[o]; });
  }
  return free;
}

std::vector<char> fused_values(const Graph& g, std::span<const int> group) {
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  std::vector<char> output(static_cast<size_t>(g.size()), 0), fused(output.size(), 0);
  for (const GraphOutput& o : g.outputs()) output[static_cast<size_t>(o.value)] = 1;
  // Position of each node in its program (in the graph when there is one program).
  std::vector<ValueId> pos(static_cast<size_t>(g.size()));
  std::unordered_map<int, ValueId> next;
  for (ValueId v = 0; v < g.size(); ++v) pos[v] = group.empty() ? v : next[group[v]]++;
  // Free values are generated where they are used, in every program that uses them.
  const std::vector<char> free = free_values(g);
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    const auto& us = users[static_cast<size_t>(v)];
    if (output[static_cast<size_t>(v)] || us.empty()) continue;
    const bool regenerated = !group.empty() && free[v];
    if (!group.empty() && !regenerated &&
        std::any_of(us.begin(), us.end(), [&](ValueId u) { return group[u] != group[v]; }))
      continue;
    auto near = [&](ValueId u) { return regenerated || pos[u] - pos[v] <= kFusionWindow; };
    auto elementwise_of_shape = [&](ValueId u) {
      return is_elementwise(g.node(u).op) && g.type(u).shape == n.type.shape && near(u);
    };
    if (is_elementwise(n.op)) {
      fused[static_cast<size_t>(v)] =
          us.size() == 1 &&
          (elementwise_of_shape(us[0]) ||
           (op_info(g.node(us[0]).op).family == OpFamily::kReduce && near(us[0])));
    } else if (n.op == OpKind::kBroadcast || n.op == OpKind::kIota || n.op == OpKind::kConstant) {
      fused[static_cast<size_t>(v)] = std::all_of(us.begin(), us.end(), elementwise_of_shape);
    }
  }
  return fused;
}

}  // namespace alpa
