// reference_eval: an independent, double-precision interpreter of a Graph.
//
// The first rung of the numerical-equivalence ladder (CONVENTIONS.md item 12). Every op is
// written as plain nested loops straight from the op semantics in attrs.h / op.h, with no code
// shared with the runtime, so that the CPU kernels and the VJP rules can be checked against
// something obviously correct. It is slow by design: use it on small graphs only.
//
// Values are held as double for every dtype (i32 and pred as integral doubles). Only
// `convert` rounds: to f32 via float, to f16/bf16 to that format's nearest-even value, to i32
// toward zero, to pred as x != 0. It is not a runtime: no buffer reuse, no threads.
#pragma once

#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct ReferenceOptions {
  // When false, convert to a float dtype (f32, f16, bf16) is the identity. Gradient checks use
  // this to differentiate the real-valued function whose VJP the rules implement (a rounding
  // convert is piecewise constant, so finite differences across it are meaningless).
  bool round_float_converts = true;
};

// Evaluates every node of `g` in definition order. `params` holds one flat row-major vector per
// parameter, in g.parameters() order. Returns one flat row-major vector per graph output, in
// g.outputs() order. Errors: wrong parameter count or size, out-of-range gather/scatter index.
Result<std::vector<std::vector<double>>> reference_eval(
    const Graph& g, const std::vector<std::vector<double>>& params);
Result<std::vector<std::vector<double>>> reference_eval(
    const Graph& g, const std::vector<std::vector<double>>& params,
    const ReferenceOptions& options);

// x rounded to the nearest-even value of IEEE binary16 (overflow to +-inf, subnormals kept).
double round_to_f16(double x);
// x rounded to the nearest-even value of bfloat16 (8 exponent bits, 8 significant bits).
double round_to_bf16(double x);

}  // namespace alpa
