// Reverse-mode differentiation of a scalar loss inside a Builder.
//
// append_backward walks the nodes between `wrt` and `loss` in reverse definition order,
// applies each op's VJP rule (vjp.h) and sums the cotangents of values used more than once.
// The backward nodes are appended to the same graph, after the forward nodes, so the forward
// values stay available to the rules. Values that do not influence the loss get zero
// gradients. Only floating-point values carry gradients.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/support/status.h"

namespace alpa {

// Gradients of `loss` (a floating-point scalar) with respect to each of `wrt`, in order.
// If `origin` is given, it is resized to the graph's new size and, for every node this call
// appends, set to the forward node it belongs to: the node whose VJP rule emitted it, or for
// a sum of cotangents the value whose cotangent it sums (the seed 1.0 belongs to `loss`, the
// zero gradient of an unused `wrt` to that value). A pipeline runs each backward node where
// its origin runs. Entries of earlier nodes are left as they were (kNoValue when new).
// `seed` (optional, of the loss's type): the loss's cotangent instead of 1 (a loss scale).
Result<std::vector<Value>> append_backward(Builder& b, Value loss, std::span<const Value> wrt,
                                           std::vector<ValueId>* origin = nullptr,
                                           Value seed = Value());

// The forward graph plus its backward pass: same parameters; outputs are the forward's
// outputs followed by "grad.<name>" for every weight parameter. Dead nodes are removed.
Result<Graph> build_gradient_graph(const Graph& forward, const std::string& loss_output = "loss");

}  // namespace alpa
