// Static analyses of a Graph: FLOPs per op, parameter and activation bytes, op histogram.
//
// FLOPs count a multiply-add as 2 and every other elementwise or reduction step as 1;
// movement and indexing ops count 0. Activation bytes are the peak of live non-parameter
// values when the graph runs in definition order with every value freed after its last use
// (what the executor does), in the graph's own dtypes.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "alpa/ir/graph.h"

namespace alpa {

double node_flops(const Graph& g, ValueId id);
double graph_flops(const Graph& g);

struct GraphStats {
  int64_t num_nodes = 0;
  std::map<std::string, int64_t> ops_by_kind;  // op name -> count
  int64_t parameters = 0;                      // elements of weight parameters
  int64_t parameter_bytes = 0;                 // bytes of weight parameters
  int64_t state_bytes = 0;                     // bytes of state parameters (optimizer moments, ...)
  int64_t input_bytes = 0;                     // bytes of input parameters (one batch)
  double flops = 0;                            // per execution of the graph
  int64_t peak_activation_bytes = 0;
};

GraphStats graph_stats(const Graph& g);

// last_use[v] = index of the last node that reads v (or v itself if unused); values that are
// graph outputs live to the end (g.size()).
std::vector<ValueId> compute_last_use(const Graph& g);

// Per node: a hash of its op, type, attributes and name with digit runs replaced
// ("h12.attn.wq" -> "h#.attn.wq"), so the nodes of repeated layers hash alike. Operands are
// not included; callers combine the hashes along edges as far as they need.
std::vector<uint64_t> structural_node_hashes(const Graph& g);

// Per node: 1 if its value never reaches device memory because it is computed inside its
// users' loops (elementwise loop fusion, as XLA fuses and as the CPU executor's plan_fusion
// does): an elementwise node whose only user is an elementwise node of the same shape or a
// reduction over it, and a broadcast, iota or constant all of whose users are elementwise
// nodes of its shape — each user within kFusionWindow nodes of it in program order (a value
// read much later, such as a forward activation read by the backward pass, is kept in memory
// between the two). Graph outputs are never fused. The cost model charges no memory traffic
// for writing or reading a fused value, and no memory for holding it.
inline constexpr ValueId kFusionWindow = 64;
// `group` (empty: one program) gives each node the program it runs in: a value read by a node of
// another program is kept in memory, never fused (a pipeline stage's forward, backward and
// update run as separate programs, so what crosses between them is stored), and distances
// count the nodes of the value's own program only.
std::vector<char> fused_values(const Graph& g, std::span<const int> group = {});

// Per node: 1 for constants, iotas and what is computed from them alone (no parameter among
// its inputs). Such values are generated where they are used, in every program that uses them.
std::vector<char> free_values(const Graph& g);

// Bytes a node moves through device memory under fused_values: its output (unless fused) and
// each operand (unless fused), sized by `bytes_of`.
template <typename BytesOf>
double node_memory_traffic(const Graph& g, ValueId v, const std::vector<char>& fused,
                           BytesOf bytes_of) {
  double b = fused[static_cast<size_t>(v)] ? 0.0 : bytes_of(v, -1);
  const auto& ops = g.node(v).operands;
  for (size_t k = 0; k < ops.size(); ++k)
    if (!fused[static_cast<size_t>(ops[k])]) b += bytes_of(ops[k], static_cast<int>(k));
  return b;
}

}  // namespace alpa
