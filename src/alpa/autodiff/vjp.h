// Vector-Jacobian product rules: one per op of the op table.
//
// A rule receives the forward node (a copy: building may reallocate the node list), the ids
// of its result and operands, and the cotangent `g` of its result (same type as the result).
// It emits the cotangent of each operand with the builder, or an invalid Value for an operand
// that has no gradient (integer indices, predicates). Rules only read forward values; they
// never change them. Every op has a rule or is declared non-differentiable in the table, and
// a test walks the op table to check it.
#pragma once

#include <vector>

#include "alpa/ir/builder.h"

namespace alpa {

struct VjpArgs {
  Builder& b;
  const Node& node;  // the forward node
  Value result;      // the forward node's value
  Value g;           // cotangent of `result`
  Value operand(size_t i) const { return Value{node.operands[i]}; }
};

using VjpFn = std::vector<Value> (*)(const VjpArgs& args);

struct VjpRule {
  VjpFn fn = nullptr;
  // False for ops whose result carries no gradient at all (compare, iota, ...): the backward
  // pass stops there. Their fn returns no operand gradients.
  bool differentiable = true;
};

const VjpRule& vjp_rule(OpKind op);

}  // namespace alpa
