// Dead-code elimination: drops nodes that no graph output depends on.
//
// Parameters are always kept (they are the graph's interface, in order). The result lists
// the surviving nodes in their original order, renumbered densely, with names, attributes
// and outputs (values and aliases) carried over. Used after building backward passes, whose
// VJP rules also emit gradients for operands that need none.
//
//   before: %0 = parameter  %1 = exp(%0)  %2 = neg(%0)  output y = %1
//   after:  %0 = parameter  %1 = exp(%0)                output y = %1
#pragma once

#include "alpa/ir/graph.h"

namespace alpa {

// If `remap` is given it receives, per node of `g`, its id in the result (kNoValue if dropped).
Graph eliminate_dead_code(const Graph& g, std::vector<ValueId>* remap = nullptr);

}  // namespace alpa
