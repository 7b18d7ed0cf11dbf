#include "alpa/runtime/init.h"

#include "alpa/ir/param_init.h"
#include "alpa/support/rng.h"

namespace alpa {

uint64_t fnv1a_64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

Tensor init_tensor(std::string_view name, const TensorType& type, const ParameterAttrs& a,
                   uint64_t seed) {
  Tensor t = Tensor::uninitialized(type);
  float* p = t.data();
  const int64_t n = t.size();
  Rng rng = Rng(seed).fork(fnv1a_64(name));
  sample_init(a.init, a.scale, rng, p, n);
  if (type.dtype != DType::kF32)
    for (int64_t i = 0; i < n; ++i) p[i] = round_to_dtype(p[i], type.dtype);
  return t;
}

Tensor init_parameter(const Node& param, uint64_t seed) {
  ALPA_CHECK(param.op == OpKind::kParameter) << "init_parameter of a " << op_name(param.op);
  return init_tensor(param.name, param.type, param.attr<ParameterAttrs>(), seed);
}

std::vector<Tensor> init_parameters(const Graph& g, uint64_t seed) {
  std::vector<Tensor> out;
  for (ValueId id : g.parameters()) out.push_back(init_parameter(g.node(id), seed));
  return out;
}

std::vector<Tensor> init_parameters(const Graph& g, ParamRole role, uint64_t seed) {
  std::vector<Tensor> out;
  for (ValueId id : g.parameters(role)) out.push_back(init_parameter(g.node(id), seed));
  return out;
}

}  // namespace alpa
