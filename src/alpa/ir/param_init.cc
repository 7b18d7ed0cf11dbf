#include "alpa/ir/param_init.h"

#include <cmath>

namespace alpa {

void sample_init(ParamInit init, double scale, Rng& rng, float* out, int64_t n) {
  switch (init) {
    case ParamInit::kZeros:
      for (int64_t i = 0; i < n; ++i) out[i] = 0.0f;
      return;
    case ParamInit::kOnes:
      for (int64_t i = 0; i < n; ++i) out[i] = 1.0f;
      return;
    case ParamInit::kNormal:
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(rng.normal() * scale);
      return;
    case ParamInit::kUniform:
      for (int64_t i = 0; i < n; ++i)
        out[i] = static_cast<float>((2.0 * rng.uniform() - 1.0) * scale);
      return;
    case ParamInit::kRandint: {
      const uint64_t hi = scale >= 1.0 ? static_cast<uint64_t>(std::floor(scale)) : 1;
      for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(rng.below(hi));
      return;
    }
  }
}

std::vector<float> sample_init(ParamInit init, double scale, Rng& rng, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  sample_init(init, scale, rng, v.data(), n);
  return v;
}

}  // namespace alpa
