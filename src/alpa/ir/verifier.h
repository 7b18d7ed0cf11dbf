// verify(graph): checks every invariant of graph.h.
//
// Operands defined before use, arity and attribute kind from the op table, result types equal
// to the shape rule's, valid and unique node names, outputs that name existing values, and
// aliases that point at parameters of the output's type (each parameter aliased at most once).
// Returns the first violation, naming the node. Passes and tests run it on what they build.
#pragma once

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

Status verify(const Graph& graph);

}  // namespace alpa
