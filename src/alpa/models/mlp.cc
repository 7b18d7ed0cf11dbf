#include "alpa/models/mlp.h"

#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/models/nn.h"

namespace alpa {
namespace {

struct Preset {
  const char* name;
  MlpConfig config;
};

const Preset kPresets[] = {
    {"tiny", {8, 16, 32, 2, 8, DType::kF32}},
    {"small", {64, 256, 1024, 4, 16, DType::kF32}},
    {"large", {1024, 4096, 16384, 8, 1024, DType::kF16}},
};

}  // namespace

std::vector<std::string> mlp_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

Result<MlpConfig> mlp_preset(std::string_view size) {
  for (const Preset& p : kPresets)
    if (size == p.name) return p.config;
  return not_found(cat("unknown MLP size '", size, "'"), "sizes: tiny, small, large");
}

Result<Graph> build_mlp(const MlpConfig& c) {
  for (int64_t v : {c.batch, c.input, c.hidden, c.classes})
    if (v < 1) return invalid_argument("MLP batch, input, hidden and classes must be >= 1");
  if (c.layers < 0) return invalid_argument("MLP layers must be >= 0");
  Builder b("mlp");
  const DType dt = c.dtype;
  Value x = b.parameter("x", {dt, {c.batch, c.input}}, ParamRole::kInput, ParamInit::kNormal, 1.0);
  Value labels = b.parameter("labels", {DType::kI32, {c.batch}}, ParamRole::kInput,
                             ParamInit::kRandint, static_cast<double>(c.classes));
  Value h = x;
  int64_t width = c.input;
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = cat("l", l, ".");
    Value w = b.parameter(p + "w", {dt, {width, c.hidden}}, ParamRole::kWeight, ParamInit::kNormal,
                          1.0 / std::sqrt(static_cast<double>(width)));
    Value bias = b.parameter(p + "b", {dt, {c.hidden}}, ParamRole::kWeight, ParamInit::kZeros);
    h = nn::relu(b, nn::linear(b, h, w, bias));  // (B, hidden)
    width = c.hidden;
  }
  Value w = b.parameter("out.w", {dt, {width, c.classes}}, ParamRole::kWeight, ParamInit::kNormal,
                        1.0 / std::sqrt(static_cast<double>(width)));
  Value bias = b.parameter("out.b", {dt, {c.classes}}, ParamRole::kWeight, ParamInit::kZeros);
  Value logits = b.name(nn::linear(b, h, w, bias), "logits");  // (B, classes)
  b.output("loss", nn::cross_entropy(b, logits, labels));
  b.output("logits", logits);
  return b.finish();
}

}  // namespace alpa
