// The per-op test table: small graphs, one or more per OpKind, shared by the gradient checks
// (finite differences vs VJP rules, both in the double-precision reference) and the
// executor-vs-reference comparison.
//
// Each case has a parameter list in g.parameters() order (differentiable inputs are f32
// weights; indices, predicates and comparison data are inputs) with values that are exactly
// representable in f32, so the f32 executor and the double reference start from the same
// numbers. The graph's outputs are "result" (the op under test) and, when the result is
// floating-point, "loss" = sum(result * R) for a fixed random R held as a constant. Values are
// chosen away from non-differentiable points: no ties for max/min/reduce_max, positive inputs
// for log/sqrt/rsqrt/pow, integers not near for f32->i32.
#pragma once

#include <string>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct OpCase {
  std::string name;  // "<op>.<variant>", unique
  OpKind op;         // the op under test (the graph contains at least one node of it)
  Status status;     // not ok if the case failed to build (a bug in the table)
  Graph graph;       // outputs "result" and, for float results, "loss"
  std::vector<std::vector<double>> params;  // in graph.parameters() order
  bool check_gradient = true;               // false for non-float results and forward-only cases
};

// All cases, built once (fixed seeds).
const std::vector<OpCase>& op_cases();

}  // namespace alpa
