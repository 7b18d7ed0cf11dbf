#include "alpa/infer/step_graph.h"

#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/models/nn.h"

namespace alpa::infer {
namespace {

using serve::Activation;
using serve::DecoderConfig;
using serve::Family;

constexpr DType kF32 = DType::kF32;
constexpr DType kI32 = DType::kI32;

// The step's graph under construction: the builder, the shape and the checkpoint's names.
struct StepBuilder {
  Builder b{"decoder_step"};
  const DecoderConfig& c;
  int64_t B, T, S;
  std::string prefix;

  Value weight(const std::string& name, Shape shape) {
    return b.parameter(name, {kF32, std::move(shape)}, ParamRole::kWeight);
  }

  // x (B, T, in) -> (B, T, out). GPT-2's Conv1D stores [in, out], nn.Linear [out, in].
  Value linear(Value x, const std::string& name, int64_t in, int64_t out, bool bias) {
    const bool conv1d = c.family == Family::kGpt2;
    Value w = weight(name + ".weight", conv1d ? Shape{in, out} : Shape{out, in});
    Value y = b.dot_general(x, w, DotAttrs{{}, {}, {2}, {conv1d ? 0 : 1}});
    if (!bias) return y;
    return b.add(y, b.broadcast_to(weight(name + ".bias", {out}), {B, T, out}));
  }

  Value norm(Value x, const std::string& name) {
    const int64_t C = c.hidden;
    Value g = weight(name + ".weight", {C});
    if (c.family != Family::kLlama)
      return nn::layer_norm(b, x, g, weight(name + ".bias", {C}), c.norm_eps);
    // RMSNorm: x / sqrt(mean(x^2) + eps) * g.
    Value ms = b.scale(b.reduce_sum(b.mul(x, x), {2}), 1.0 / static_cast<double>(C));
    Value r = b.rsqrt(b.add_scalar(ms, c.norm_eps));
    return b.mul(b.mul(x, b.broadcast(r, {B, T, C}, {0, 1})), b.broadcast_to(g, {B, T, C}));
  }

  Value activation(Value u) {
    switch (c.activation) {
      case Activation::kGeluTanh: {
        Value cube = b.mul(b.mul(u, u), u);
        Value inner = b.scale(b.add(u, b.scale(cube, 0.044715)), 0.7978845608028654);
        return b.mul(b.scale(u, 0.5), b.add_scalar(b.tanh(inner), 1.0));
      }
      case Activation::kGeluExact: return nn::gelu(b, u);
      case Activation::kRelu: return nn::relu(b, u);
      case Activation::kSilu: return b.div(u, b.add_scalar(b.exp(b.neg(u)), 1.0));
    }
    return u;
  }

  // Rotates pairs (i, i + D/2) of x (B, T, H, D) by the angles of each token's position.
  Value rotate(Value x, Value cos, Value sin, int64_t heads) {
    const int64_t D = c.head_dim, half = D / 2;
    const Shape full{B, T, heads, half};
    Value cs = b.broadcast(cos, full, {0, 1, 3}), sn = b.broadcast(sin, full, {0, 1, 3});
    Value lo = b.slice(x, {0, 0, 0, 0}, {B, T, heads, half});
    Value hi = b.slice(x, {0, 0, 0, half}, {B, T, heads, D});
    return b.concat({b.sub(b.mul(lo, cs), b.mul(hi, sn)), b.add(b.mul(hi, cs), b.mul(lo, sn))}, 3);
  }

  // The cache (B, S, Hkv, D) with rows `fresh` (B, T, Hkv, D) written at the positions where
  // `onehot` (B, T, S) is 1; returns the new cache.
  Value write_cache(Value cache, Value fresh, Value onehot, Value written) {
    const Shape cs{B, S, c.kv_heads, c.head_dim};
    Value update = b.dot_general(onehot, fresh, DotAttrs{{0}, {0}, {1}, {1}});  // (B, S, Hkv, D)
    return b.select(b.broadcast(written, cs, {0, 1}), update, cache);
  }

  // (B, S, Hkv, D) -> (B, S, H, D): KV head j serves query heads [j G, (j + 1) G).
  Value expand_heads(Value kv) {
    const int64_t H = c.heads, Hkv = c.kv_heads, D = c.head_dim;
    if (H == Hkv) return kv;
    const int64_t G = H / Hkv;
    return b.reshape(b.broadcast(kv, {B, S, Hkv, G, D}, {0, 1, 2, 4}), {B, S, H, D});
  }
};

std::string layer_prefix(const DecoderConfig& c, const std::string& prefix, int64_t l) {
  switch (c.family) {
    case Family::kGpt2: return cat(prefix, "h.", l, ".");
    case Family::kOpt: return cat(prefix, "layers.", l, ".");
    case Family::kLlama: return cat("model.layers.", l, ".");
  }
  return "";
}

// Per-token tensors every layer shares: the attention mask, the cache's one-hot write and
// its written rows, and (rotary) the tokens' cos and sin.
struct TokenPlaces {
  Value mask;     // (B, H, T, S) pred: key s visible to token t
  Value onehot;   // (B, T, S) f32
  Value written;  // (B, S) pred
  Value cos, sin;
};

TokenPlaces token_places(StepBuilder& s, Value pos) {
  Builder& b = s.b;
  const int64_t B = s.B, T = s.T, S = s.S;
  TokenPlaces p;
  Value keys = b.iota({kI32, {B, T, S}}, 2);
  Value at = b.broadcast(pos, {B, T, S}, {0, 1});
  p.onehot = b.convert(b.compare(keys, at, CompareDir::kEq), kF32);
  p.written =
      b.compare(b.reduce_sum(p.onehot, {1}), b.constant(0.5, {kF32, {B, S}}), CompareDir::kGt);
  p.mask = b.broadcast(b.compare(keys, at, CompareDir::kLe), {B, s.c.heads, T, S}, {0, 2, 3});
  if (s.c.family == Family::kLlama) {
    const int64_t half = s.c.head_dim / 2;
    Value row = b.min(pos, b.constant(static_cast<double>(S - 1), {kI32, {B, T}}));
    p.cos = b.gather(s.weight("rope.cos", {S, half}), row);  // (B, T, D/2)
    p.sin = b.gather(s.weight("rope.sin", {S, half}), row);
  }
  return p;
}

// x (B, T, C) through layer l.
Value layer(StepBuilder& s, Value x, int64_t l, const TokenPlaces& p) {
  Builder& b = s.b;
  const DecoderConfig& c = s.c;
  const int64_t B = s.B, T = s.T, C = c.hidden, H = c.heads, Hkv = c.kv_heads, D = c.head_dim;
  const std::string n = layer_prefix(c, s.prefix, l);
  const bool bias = c.family != Family::kLlama;
  Value q, k, v,
      h = s.norm(x, n + (c.family == Family::kGpt2  ? "ln_1"
                         : c.family == Family::kOpt ? "self_attn_layer_norm"
                                                    : "input_layernorm"));
  if (c.family == Family::kGpt2) {
    Value qkv = s.linear(h, n + "attn.c_attn", C, 3 * C, true);
    q = b.slice(qkv, {0, 0, 0}, {B, T, C});
    k = b.slice(qkv, {0, 0, C}, {B, T, 2 * C});
    v = b.slice(qkv, {0, 0, 2 * C}, {B, T, 3 * C});
  } else {
    const std::string a = n + "self_attn.";
    q = s.linear(h, a + "q_proj", C, c.q_dim(), bias);
    k = s.linear(h, a + "k_proj", C, c.kv_dim(), bias);
    v = s.linear(h, a + "v_proj", C, c.kv_dim(), bias);
  }
  q = b.reshape(q, {B, T, H, D});
  k = b.reshape(k, {B, T, Hkv, D});
  v = b.reshape(v, {B, T, Hkv, D});
  if (c.family == Family::kLlama) {
    q = s.rotate(q, p.cos, p.sin, H);
    k = s.rotate(k, p.cos, p.sin, Hkv);
  }
  const Shape cache_shape{B, s.S, Hkv, D};
  Value kc = b.parameter(cat("cache.", l, ".k"), {kF32, cache_shape}, ParamRole::kState);
  Value vc = b.parameter(cat("cache.", l, ".v"), {kF32, cache_shape}, ParamRole::kState);
  Value k_new = s.write_cache(kc, k, p.onehot, p.written);
  Value v_new = s.write_cache(vc, v, p.onehot, p.written);
  b.output(cat("cache.", l, ".k"), k_new, kc);
  b.output(cat("cache.", l, ".v"), v_new, vc);
  Value scores = b.dot_general(q, s.expand_heads(k_new), DotAttrs{{0, 2}, {0, 2}, {3}, {3}});
  scores = b.scale(scores, 1.0 / std::sqrt(static_cast<double>(D)));  // (B, H, T, S)
  scores = b.select(p.mask, scores, b.full_like(scores, -1e30));
  Value probs = nn::softmax(b, scores);
  Value ctx = b.dot_general(probs, s.expand_heads(v_new), DotAttrs{{0, 1}, {0, 2}, {3}, {1}});
  ctx = b.reshape(b.transpose(ctx, {0, 2, 1, 3}), {B, T, c.q_dim()});
  const std::string out = c.family == Family::kGpt2  ? n + "attn.c_proj"
                          : c.family == Family::kOpt ? n + "self_attn.out_proj"
                                                     : n + "self_attn.o_proj";
  x = b.add(x, s.linear(ctx, out, c.q_dim(), C, bias));
  const int64_t I = c.intermediate;
  switch (c.family) {
    case Family::kGpt2:
      h = s.norm(x, n + "ln_2");
      h = s.linear(s.activation(s.linear(h, n + "mlp.c_fc", C, I, true)), n + "mlp.c_proj", I, C,
                   true);
      break;
    case Family::kOpt:
      h = s.norm(x, n + "final_layer_norm");
      h = s.linear(s.activation(s.linear(h, n + "fc1", C, I, true)), n + "fc2", I, C, true);
      break;
    case Family::kLlama: {
      h = s.norm(x, n + "post_attention_layernorm");
      Value gate = s.activation(s.linear(h, n + "mlp.gate_proj", C, I, false));
      Value up = s.linear(h, n + "mlp.up_proj", C, I, false);
      h = s.linear(b.mul(gate, up), n + "mlp.down_proj", I, C, false);
      break;
    }
  }
  return b.add(x, h);
}

Status check_shape(const DecoderConfig& c, const StepShape& shape, int64_t context) {
  if (shape.batch < 1 || shape.tokens < 1)
    return invalid_argument(cat("an inference step needs at least one row and one token, got ",
                                shape.batch, " rows of ", shape.tokens, " tokens"));
  if (context < 1 || context > c.max_positions)
    return invalid_argument(
        cat("a KV cache of ", context, " positions, the model has ", c.max_positions),
        "give a context from 1 to the model's max_position_embeddings");
  if (c.family == Family::kLlama && c.head_dim % 2 != 0)
    return invalid_argument(cat("rotary embeddings pair a head's dims, head_dim is ", c.head_dim));
  return ok_status();
}

}  // namespace

std::string checkpoint_prefix(const DecoderConfig& config, const SafetensorsSet& weights) {
  switch (config.family) {
    case Family::kGpt2: return weights.contains("transformer.wte.weight") ? "transformer." : "";
    case Family::kOpt:
      return weights.contains("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
    case Family::kLlama: return "";
  }
  return "";
}

std::string embedding_name(const DecoderConfig& config, const std::string& prefix) {
  switch (config.family) {
    case Family::kGpt2: return prefix + "wte.weight";
    case Family::kOpt: return prefix + "embed_tokens.weight";
    case Family::kLlama: return "model.embed_tokens.weight";
  }
  return "";
}

Result<TrainStep> decoder_step(const DecoderConfig& config, const StepShape& shape,
                               const std::string& prefix) {
  const int64_t S = shape.context > 0 ? shape.context : config.max_positions;
  ALPA_RETURN_IF_ERROR(check_shape(config, shape, S));
  StepBuilder s{.c = config, .B = shape.batch, .T = shape.tokens, .S = S, .prefix = prefix};
  Builder& b = s.b;
  const DecoderConfig& c = config;
  const int64_t B = s.B, T = s.T, C = c.hidden, V = c.vocab;
  Value tokens = b.parameter("tokens", {kI32, {B, T}}, ParamRole::kInput);
  Value start = b.parameter("positions", {kI32, {B}}, ParamRole::kInput);
  Value pos = b.add(b.broadcast(start, {B, T}, {0}), b.iota({kI32, {B, T}}, 1));
  const TokenPlaces places = token_places(s, pos);
  Value embed = s.weight(embedding_name(c, prefix), {V, C});
  Value x = b.gather(embed, tokens);  // (B, T, C)
  if (c.family != Family::kLlama) {
    const int64_t offset = c.family == Family::kOpt ? 2 : 0;
    const int64_t rows = c.max_positions + offset;
    Value row = b.min(b.add(pos, b.constant(static_cast<double>(offset), {kI32, {B, T}})),
                      b.constant(static_cast<double>(rows - 1), {kI32, {B, T}}));
    const std::string table =
        c.family == Family::kGpt2 ? prefix + "wpe.weight" : prefix + "embed_positions.weight";
    x = b.add(x, b.gather(s.weight(table, {rows, C}), row));
  }
  for (int64_t l = 0; l < c.layers; ++l) x = layer(s, x, l, places);
  x = s.norm(x, c.family == Family::kGpt2  ? prefix + "ln_f"
                : c.family == Family::kOpt ? prefix + "final_layer_norm"
                                           : "model.norm");
  Value head =
      c.tie_embeddings && !shape.separate_head ? embed : s.weight("lm_head.weight", {V, C});
  Value logits = b.dot_general(x, head, DotAttrs{{}, {}, {2}, {1}});  // (B, T, V)
  Value logits_state = b.parameter("logits", {kF32, {B, T, V}}, ParamRole::kState);
  b.output("logits", logits, logits_state);
  ALPA_ASSIGN_OR_RETURN(Graph g, b.finish());
  TrainStep step;
  step.graph = std::move(g);
  for (const Node& n : step.graph.nodes()) {
    if (n.op != OpKind::kParameter) continue;
    const ParameterAttrs& a = n.attr<ParameterAttrs>();
    if (a.role == ParamRole::kWeight) step.weights.push_back(n.name);
    if (a.role == ParamRole::kInput) step.inputs.push_back(n.name);
    if (a.role == ParamRole::kState) {
      step.states.push_back(n.name);
      step.state_weight.push_back(-1);
    }
  }
  step.phase.assign(static_cast<size_t>(step.graph.size()), StepPhase::kForward);
  step.origin.assign(static_cast<size_t>(step.graph.size()), kNoValue);
  return step;
}

std::vector<float> rope_table(const DecoderConfig& config, int64_t context, bool sine) {
  const int64_t D = config.head_dim, half = D / 2;
  std::vector<float> t(static_cast<size_t>(context * half));
  for (int64_t p = 0; p < context; ++p)
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(p) * serve::rope_inverse_frequency(config, i);
      t[static_cast<size_t>(p * half + i)] = sine ? std::sin(angle) : std::cos(angle);
    }
  return t;
}

}  // namespace alpa::infer
