// Mixed precision: the forward graph rewritten so that its contractions compute in a 2-byte
// float while everything else stays in f32 (what torch.autocast does, as one graph pass).
//
// mixed_precision(forward, compute) returns a graph with the same parameters, names and
// outputs in which
//   - every float value is f32: weights (the f32 "master" copy the optimizer updates), inputs,
//     activations, reductions, softmax, layer norm and the loss, whatever float type the model
//     was built with (a model built in bf16 gets f32 masters);
//   - every dot_general and conv2d (and conv gradient) reads its float operands converted to
//     `compute` (bf16 or f16: round to nearest even), and its result, accumulated in f32 by the
//     runtime, is converted back to f32 where the original value was used.
// An operand feeding several contractions is converted once. Non-float values (i32 token ids,
// predicates) are untouched, and a convert that becomes f32 -> f32 disappears.
//
// Autodiff of the result gives the backward pass the same precision without a second pass:
// the VJP of convert is a convert back, so each backward contraction (dot of a cotangent with
// a converted operand) reads a cotangent rounded to `compute` and the converted operand, and
// the gradient reaching a weight is f32. build_train_step(mixed_precision(forward, bf16))
// therefore runs every forward and backward GEMM in bf16 and keeps the update in f32, and
// every plan (mesh, pipeline) and backend that executes that step gets the same arithmetic.
#pragma once

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

// `compute` must be f16 or bf16.
Result<Graph> mixed_precision(const Graph& forward, DType compute);

// Whether `op` is a contraction the pass computes in the low-precision type.
bool is_mixed_precision_contraction(OpKind op);

}  // namespace alpa
