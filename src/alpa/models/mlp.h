// MLP classifier: x (B, IN) -> [linear + ReLU] x layers -> linear (classes) -> cross-entropy.
// Parameter names: l<i>.w, l<i>.b (hidden layers), out.w, out.b. Inputs: x (f32 (B, IN)),
// labels (i32 (B)). Outputs: loss, logits (B, classes).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct MlpConfig {
  int64_t batch = 8;
  int64_t input = 16;
  int64_t hidden = 32;
  int64_t layers = 2;  // hidden layers
  int64_t classes = 8;
  DType dtype = DType::kF32;
};

// Named sizes: tiny, small, large.
Result<MlpConfig> mlp_preset(std::string_view size);
std::vector<std::string> mlp_preset_names();
Result<Graph> build_mlp(const MlpConfig& c);

}  // namespace alpa
