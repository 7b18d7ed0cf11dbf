#include "alpa/models/convnet.h"

#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/models/nn.h"

namespace alpa {

Result<Graph> build_convnet(const ConvNetConfig& c) {
  for (int64_t v : {c.batch, c.channels, c.width, c.image, c.layers, c.classes})
    if (v < 1) return invalid_argument("ConvNet sizes must be >= 1");
  Builder b("convnet");
  Value x = b.parameter("x", {DType::kF32, {c.batch, c.channels, c.image, c.image}},
                        ParamRole::kInput, ParamInit::kNormal, 1.0);
  Value labels = b.parameter("labels", {DType::kI32, {c.batch}}, ParamRole::kInput,
                             ParamInit::kRandint, static_cast<double>(c.classes));
  Value h = x;
  int64_t in = c.channels, out = c.width;
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = cat("c", l, ".");
    Value w = b.parameter(p + "w", {DType::kF32, {out, in, 3, 3}}, ParamRole::kWeight,
                          ParamInit::kNormal, std::sqrt(2.0 / (9.0 * static_cast<double>(in))));
    Value bias = b.parameter(p + "b", {DType::kF32, {out}}, ParamRole::kWeight, ParamInit::kZeros);
    ConvAttrs a;
    a.padding = {1, 1, 1, 1};
    if (l > 0) a.stride = {2, 2};
    Value y = b.conv2d(h, w, a);  // (B, O, H', W')
    const Shape s = b.shape(y);
    y = b.add(y, b.broadcast(bias, s, {1}));
    h = nn::relu(b, y);
    in = out;
    out *= 2;
  }
  const Shape s = b.shape(h);
  Value pooled =
      b.scale(b.reduce_sum(h, {2, 3}), 1.0 / static_cast<double>(s[2] * s[3]));  // (B, C)
  Value w = b.parameter("out.w", {DType::kF32, {in, c.classes}}, ParamRole::kWeight,
                        ParamInit::kNormal, 1.0 / std::sqrt(static_cast<double>(in)));
  Value bias =
      b.parameter("out.b", {DType::kF32, {c.classes}}, ParamRole::kWeight, ParamInit::kZeros);
  Value logits = b.name(nn::linear(b, pooled, w, bias), "logits");
  b.output("loss", nn::cross_entropy(b, logits, labels));
  b.output("logits", logits);
  return b.finish();
}

}  // namespace alpa
