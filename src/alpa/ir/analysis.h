// Static analyses of a Graph: FLOPs per op, parameter and activation bytes, op histogram.
//
// FLOPs count a multiply-add as 2 and every other elementwise or reduction step as 1;
// movement and indexing ops count 0. Activation bytes are the peak of live non-parameter
// values when the graph runs in definition order with every value freed after its last use
// (what the executor does), in the graph's own dtypes.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "alpa/ir/graph.h"

namespace alpa {

double node_flops(const Graph& g, ValueId id);
double graph_flops(const Graph& g);

struct GraphStats {
  int64_t num_nodes = 0;
  std::map<std::string, int64_t> ops_by_kind;  // op name -> count
  int64_t parameters = 0;        // elements of weight parameters
  int64_t parameter_bytes = 0;   // bytes of weight parameters
  int64_t state_bytes = 0;       // bytes of state parameters (optimizer moments, ...)
  int64_t input_bytes = 0;       // bytes of input parameters (one batch)
  double flops = 0;              // per execution of the graph
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

}  // namespace alpa
