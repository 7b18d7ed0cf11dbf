// Sampling of parameter values from their ParameterAttrs (init, scale).
//
// zeros, ones, normal(0, scale), uniform(-scale, scale), randint [0, scale) (integers held as
// floats). One definition used by the runtime (weight initialisation) and by synthetic data.
#pragma once

#include <cstdint>
#include <vector>

#include "alpa/ir/attrs.h"
#include "alpa/support/rng.h"

namespace alpa {

void sample_init(ParamInit init, double scale, Rng& rng, float* out, int64_t n);
std::vector<float> sample_init(ParamInit init, double scale, Rng& rng, int64_t n);

}  // namespace alpa
