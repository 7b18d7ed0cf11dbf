#include "alpa/models/gpt.h"

#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/models/nn.h"

namespace alpa {
namespace {

struct Preset {
  const char* name;
  int64_t layers, hidden, heads, seq, vocab, batch;
  DType dtype;
};

// tiny and small run on a CPU; the others are the paper's configurations (alpa.md §5.2),
// planned and simulated. The paper trains them in fp16.
constexpr Preset kPresets[] = {
    {"tiny", 2, 64, 4, 32, 128, 8, DType::kF32},
    {"small", 4, 512, 8, 256, 8192, 8, DType::kF32},
    {"125m", 12, 768, 12, 1024, 51200, 8, DType::kF16},
    {"350m", 24, 1024, 16, 1024, 51200, 1024, DType::kF16},
    {"760m", 24, 1536, 16, 1024, 51200, 1024, DType::kF16},
    {"1.3b", 24, 2048, 32, 1024, 51200, 1024, DType::kF16},
    {"2.6b", 32, 2560, 32, 1024, 51200, 1024, DType::kF16},
    {"6.7b", 32, 4096, 32, 1024, 51200, 1024, DType::kF16},
    {"15b", 48, 5120, 40, 1024, 51200, 1024, DType::kF16},
    {"39b", 48, 8192, 64, 1024, 51200, 1024, DType::kF16},
};

}  // namespace

std::vector<std::string> gpt_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

Result<GptConfig> gpt_preset(std::string_view size) {
  for (const Preset& p : kPresets) {
    if (size == p.name) {
      GptConfig c;
      c.layers = p.layers;
      c.hidden = p.hidden;
      c.heads = p.heads;
      c.seq = p.seq;
      c.vocab = p.vocab;
      c.batch = p.batch;
      c.dtype = p.dtype;
      return c;
    }
  }
  std::string names;
  for (const Preset& p : kPresets) names += cat(names.empty() ? "" : ", ", p.name);
  return not_found(cat("unknown GPT size '", size, "'"), cat("sizes: ", names));
}

Status validate_gpt_config(const GptConfig& c) {
  auto positive = [](int64_t v, const char* what) -> Status {
    if (v < 1) return invalid_argument(cat("GPT ", what, " must be >= 1, got ", v));
    return ok_status();
  };
  ALPA_RETURN_IF_ERROR(positive(c.layers, "layers"));
  ALPA_RETURN_IF_ERROR(positive(c.hidden, "hidden"));
  ALPA_RETURN_IF_ERROR(positive(c.heads, "heads"));
  ALPA_RETURN_IF_ERROR(positive(c.seq, "seq"));
  ALPA_RETURN_IF_ERROR(positive(c.vocab, "vocab"));
  ALPA_RETURN_IF_ERROR(positive(c.batch, "batch"));
  if (c.hidden % c.heads != 0)
    return invalid_argument(cat("GPT hidden ", c.hidden, " is not divisible by heads ", c.heads),
                            "choose heads that divide hidden");
  if (!is_float(c.dtype)) return invalid_argument("GPT dtype must be f32, f16 or bf16");
  if (c.vocab > (int64_t{1} << 24))
    return invalid_argument(cat("vocab ", c.vocab, " exceeds 2^24 (token ids are held as floats)"));
  return ok_status();
}

int64_t gpt_parameter_count(const GptConfig& c) {
  const int64_t C = c.hidden;
  return c.layers * (12 * C * C + 13 * C) + c.vocab * C + c.seq * C + 2 * C;
}

Result<Graph> build_gpt(const GptConfig& c) {
  ALPA_RETURN_IF_ERROR(validate_gpt_config(c));
  const int64_t B = c.batch, T = c.seq, C = c.hidden, H = c.heads, D = C / H, V = c.vocab;
  const DType dt = c.dtype;
  const double std = c.init_std;
  const double proj_std = std / std::sqrt(2.0 * static_cast<double>(c.layers));
  Builder b("gpt");

  auto weight = [&](const std::string& name, Shape shape, double scale) {
    return b.parameter(name, {dt, std::move(shape)}, ParamRole::kWeight, ParamInit::kNormal, scale);
  };
  auto zeros = [&](const std::string& name, Shape shape) {
    return b.parameter(name, {dt, std::move(shape)}, ParamRole::kWeight, ParamInit::kZeros);
  };
  auto ones = [&](const std::string& name, Shape shape) {
    return b.parameter(name, {dt, std::move(shape)}, ParamRole::kWeight, ParamInit::kOnes);
  };

  Value tokens = b.parameter("tokens", {DType::kI32, {B, T}}, ParamRole::kInput,
                             ParamInit::kRandint, static_cast<double>(V));
  Value labels = b.parameter("labels", {DType::kI32, {B, T}}, ParamRole::kInput,
                             ParamInit::kRandint, static_cast<double>(V));
  Value wte = weight("wte", {V, C}, std);
  Value wpe = weight("wpe", {T, C}, std);

  Value x = b.add(b.gather(wte, tokens, 0), b.broadcast(wpe, {B, T, C}, {1, 2}));  // (B, T, C)
  const double attn_scale = 1.0 / std::sqrt(static_cast<double>(D));
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string p = cat("h", l, ".");
    // Attention.
    Value h = nn::layer_norm(b, x, ones(p + "ln1.g", {C}), zeros(p + "ln1.b", {C}));
    auto project = [&](const char* w, const char* bias) {
      Value y =
          nn::linear(b, h, weight(p + "attn." + w, {C, C}, std), zeros(p + "attn." + bias, {C}));
      return b.reshape(y, {B, T, H, D});  // (B, T, H, D)
    };
    Value q = project("wq", "bq");
    Value k = project("wk", "bk");
    Value v = project("wv", "bv");
    Value scores = b.dot_general(q, k, DotAttrs{{0, 2}, {0, 2}, {3}, {3}});  // (B, H, T, T)
    scores = nn::causal_mask(b, b.scale(scores, attn_scale));
    Value probs = nn::softmax(b, scores);
    Value ctx = b.dot_general(probs, v, DotAttrs{{0, 1}, {0, 2}, {3}, {1}});  // (B, H, T, D)
    ctx = b.reshape(b.transpose(ctx, {0, 2, 1, 3}), {B, T, C});               // (B, T, C)
    x = b.add(
        x, nn::linear(b, ctx, weight(p + "attn.wo", {C, C}, proj_std), zeros(p + "attn.bo", {C})));
    // MLP.
    Value h2 = nn::layer_norm(b, x, ones(p + "ln2.g", {C}), zeros(p + "ln2.b", {C}));
    Value up =
        nn::linear(b, h2, weight(p + "mlp.w1", {C, 4 * C}, std), zeros(p + "mlp.b1", {4 * C}));
    Value down = nn::linear(b, nn::gelu(b, up), weight(p + "mlp.w2", {4 * C, C}, proj_std),
                            zeros(p + "mlp.b2", {C}));
    x = b.add(x, down);
  }
  x = nn::layer_norm(b, x, ones("lnf.g", {C}), zeros("lnf.b", {C}));
  Value logits = b.dot_general(x, wte, DotAttrs{{}, {}, {2}, {1}});  // (B, T, V)
  b.name(logits, "logits");
  Value loss = nn::cross_entropy(b, logits, labels);
  b.output("loss", loss);
  b.output("logits", logits);
  return b.finish();
}

}  // namespace alpa
