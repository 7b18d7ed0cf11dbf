// Deterministic parameter initialisation from ParameterAttrs (init, scale), sampled by
// sample_init (ir/param_init.h) so that synthetic data and weights share one definition.
//
// zeros, ones, normal(0, scale), uniform(-scale, scale), randint [0, scale) (integers). The
// random stream of each parameter is Rng(seed).fork(fnv1a_64(name)), so a weight named
// "h0.attn.wq" gets the same values in every graph that contains it (forward graph,
// training-step graph, ...) regardless of its position. Values are drawn in row-major order
// and stored as the parameter's dtype stores them (round_to_dtype). Unnamed parameters all
// share the stream of the empty name.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/tensor.h"

namespace alpa {

// 64-bit FNV-1a hash of the bytes of s.
uint64_t fnv1a_64(std::string_view s);

// The initial value of a parameter named `name` of `type` with `attrs`.
Tensor init_tensor(std::string_view name, const TensorType& type, const ParameterAttrs& attrs,
                   uint64_t seed);
// `param` must be a parameter node (CHECK).
Tensor init_parameter(const Node& param, uint64_t seed);
// One tensor per g.parameters() (or g.parameters(role)), in order.
std::vector<Tensor> init_parameters(const Graph& g, uint64_t seed);
std::vector<Tensor> init_parameters(const Graph& g, ParamRole role, uint64_t seed);

}  // namespace alpa
