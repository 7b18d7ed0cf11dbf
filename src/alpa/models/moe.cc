#include "alpa/models/moe.h"

#include <algorithm>
#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/models/nn.h"

namespace alpa {
namespace {

struct Preset {
  const char* name;
  int64_t layers, hidden, heads, seq, vocab, batch, experts, group;
  DType dtype;
};

// tiny and small train on a CPU; the others are the paper's configurations (alpa.md §5.2),
// planned and simulated: seq 1024, vocab 32000, 16 heads, expert group size 2048, fp16,
// global batch 1024 sequences.
constexpr Preset kPresets[] = {
    {"tiny", 2, 32, 4, 16, 64, 8, 4, 16, DType::kF32},
    {"small", 4, 128, 4, 64, 512, 8, 8, 128, DType::kF32},
    {"380m", 8, 768, 16, 1024, 32000, 1024, 8, 2048, DType::kF16},
    {"690m", 8, 768, 16, 1024, 32000, 1024, 16, 2048, DType::kF16},
    {"1.3b", 16, 768, 16, 1024, 32000, 1024, 16, 2048, DType::kF16},
    {"2.4b", 16, 1024, 16, 1024, 32000, 1024, 16, 2048, DType::kF16},
    {"10b", 16, 1536, 16, 1024, 32000, 1024, 32, 2048, DType::kF16},
    {"27b", 16, 2048, 16, 1024, 32000, 1024, 48, 2048, DType::kF16},
    {"70b", 32, 2048, 16, 1024, 32000, 1024, 64, 2048, DType::kF16},
};

bool is_moe_block(int64_t l) {
  return l % 2 == 0;
}

// One-hot (G, S, E) of the first maximum of v over the last dim, in v's dtype.
Value first_max_one_hot(Builder& b, Value v) {
  const TensorType t = b.type(v);
  const Shape& s = t.shape;
  const int64_t E = s[2];
  Value m = b.reduce_max(v, {2});  // (G, S)
  Value is_max = b.compare(v, b.broadcast(m, s, {0, 1}), CompareDir::kEq);
  // E - e at the maxima, 0 elsewhere: its maximum marks the first (lowest) maximal e.
  Value rank = b.sub(b.constant(static_cast<double>(E), t), b.iota(t, 2));
  Value score = b.select(is_max, rank, b.full_like(rank, 0.0));
  Value best = b.reduce_max(score, {2});  // (G, S)
  return b.convert(b.compare(score, b.broadcast(best, s, {0, 1}), CompareDir::kEq), t.dtype);
}

// Exclusive prefix sum of m (G, S, E) over S: out[g, s, e] = sum_{t < s} m[g, t, e], as one
// dot_general with the strictly lower-triangular (S, S) matrix of ones.
Value exclusive_cumsum(Builder& b, Value m) {
  const TensorType t = b.type(m);
  const int64_t S = t.shape[1];
  Value row = b.iota({DType::kI32, {S, S}}, 0);
  Value col = b.iota({DType::kI32, {S, S}}, 1);
  Value lower = b.convert(b.compare(col, row, CompareDir::kLt), t.dtype);  // (S, S)
  Value sums = b.dot_general(lower, m, DotAttrs{{}, {}, {1}, {1}});        // (S, G, E)
  return b.transpose(sums, {1, 0, 2});                                     // (G, S, E)
}

// The entries of mask (G, S, E) whose slot is below the capacity.
Value within_capacity(Builder& b, Value mask, Value slot, int64_t capacity) {
  Value keep = b.compare(slot, b.full_like(slot, static_cast<double>(capacity)), CompareDir::kLt);
  return b.mul(mask, b.convert(keep, b.type(mask).dtype));
}

// Kept choices (G, S, E) and their slots -> one-hot dispatch (G, S, E, K).
Value dispatch_part(Builder& b, Value mask, Value slot, int64_t capacity) {
  const TensorType t = b.type(mask);
  const Shape& s = t.shape;
  const Shape full = {s[0], s[1], s[2], capacity};
  const Shape gsk = {s[0], s[1], capacity};
  Value token_slot = b.reduce_sum(b.mul(slot, mask), {2});  // (G, S)
  Value slots = b.iota({t.dtype, gsk}, 2);
  Value hit = b.convert(b.compare(slots, b.broadcast(token_slot, gsk, {0, 1}), CompareDir::kEq),
                        t.dtype);  // (G, S, K)
  return b.mul(b.broadcast(mask, full, {0, 1, 2}), b.broadcast(hit, full, {0, 1, 3}));
}

// Builds the graph; parameters are created in a fixed order (see moe.h for the names).
class MoeBuilder {
 public:
  explicit MoeBuilder(const MoeConfig& c)
      : c_(c),
        b_("moe"),
        dt_(c.dtype),
        proj_std_(c.init_std / std::sqrt(2.0 * static_cast<double>(c.layers))) {}

  Result<Graph> build() {
    const int64_t B = c_.batch, T = c_.seq, C = c_.hidden, V = c_.vocab;
    Value tokens = b_.parameter("tokens", {DType::kI32, {B, T}}, ParamRole::kInput,
                                ParamInit::kRandint, static_cast<double>(V));
    Value labels = b_.parameter("labels", {DType::kI32, {B, T}}, ParamRole::kInput,
                                ParamInit::kRandint, static_cast<double>(V));
    Value wte = weight("wte", {V, C}, c_.init_std);
    Value wpe = weight("wpe", {T, C}, c_.init_std);
    Value x = b_.add(b_.gather(wte, tokens, 0), b_.broadcast(wpe, {B, T, C}, {1, 2}));  // (B, T, C)
    Value aux;  // sum of the MoE blocks' balance losses
    for (int64_t l = 0; l < c_.layers; ++l) {
      const std::string p = cat("h", l, ".");
      Value h1 = nn::layer_norm(b_, x, ones(p + "ln1.g", {C}), zeros(p + "ln1.b", {C}));
      x = b_.add(x, attention(p, h1));
      Value h = nn::layer_norm(b_, x, ones(p + "ln2.g", {C}), zeros(p + "ln2.b", {C}));
      if (is_moe_block(l)) {
        auto [y, balance] = moe_block_ffn(p + "moe.", h);
        x = b_.add(x, y);
        aux = aux.valid() ? b_.add(aux, balance) : balance;
      } else {
        x = b_.add(x, dense_ffn(p + "mlp.", h));
      }
    }
    x = nn::layer_norm(b_, x, ones("lnf.g", {C}), zeros("lnf.b", {C}));
    Value logits = b_.dot_general(x, wte, DotAttrs{{}, {}, {2}, {1}});  // (B, T, V)
    b_.name(logits, "logits");
    Value loss = nn::cross_entropy(b_, logits, labels);
    if (c_.aux_loss_weight != 0) loss = b_.add(loss, b_.scale(aux, c_.aux_loss_weight));
    b_.output("loss", loss);
    b_.output("logits", logits);
    b_.output("aux_loss", aux);
    return b_.finish();
  }

 private:
  Value weight(const std::string& name, Shape shape, double std) {
    return b_.parameter(name, {dt_, std::move(shape)}, ParamRole::kWeight, ParamInit::kNormal, std);
  }
  Value zeros(const std::string& name, Shape shape) {
    return b_.parameter(name, {dt_, std::move(shape)}, ParamRole::kWeight, ParamInit::kZeros);
  }
  Value ones(const std::string& name, Shape shape) {
    return b_.parameter(name, {dt_, std::move(shape)}, ParamRole::kWeight, ParamInit::kOnes);
  }

  // h (B, T, C) -> (B, T, C): causal multi-head self-attention with the output projection.
  Value attention(const std::string& p, Value h) {
    const int64_t B = c_.batch, T = c_.seq, C = c_.hidden, H = c_.heads, D = C / H;
    auto project = [&](const char* w, const char* bias) {
      Value y = nn::linear(b_, h, weight(p + "attn." + w, {C, C}, c_.init_std),
                           zeros(p + "attn." + bias, {C}));
      return b_.reshape(y, {B, T, H, D});  // (B, T, H, D)
    };
    Value q = project("wq", "bq");
    Value k = project("wk", "bk");
    Value v = project("wv", "bv");
    Value scores = b_.dot_general(q, k, DotAttrs{{0, 2}, {0, 2}, {3}, {3}});  // (B, H, T, T)
    scores = nn::causal_mask(b_, b_.scale(scores, 1.0 / std::sqrt(static_cast<double>(D))));
    Value probs = nn::softmax(b_, scores);
    Value ctx = b_.dot_general(probs, v, DotAttrs{{0, 1}, {0, 2}, {3}, {1}});  // (B, H, T, D)
    ctx = b_.reshape(b_.transpose(ctx, {0, 2, 1, 3}), {B, T, C});              // (B, T, C)
    return nn::linear(b_, ctx, weight(p + "attn.wo", {C, C}, proj_std_), zeros(p + "attn.bo", {C}));
  }

  // h (B, T, C) -> (B, T, C): linear(C -> F), GELU, linear(F -> C).
  Value dense_ffn(const std::string& p, Value h) {
    const int64_t C = c_.hidden, F = c_.ffn_factor * C;
    Value up = nn::linear(b_, h, weight(p + "w1", {C, F}, c_.init_std), zeros(p + "b1", {F}));
    return nn::linear(b_, nn::gelu(b_, up), weight(p + "w2", {F, C}, proj_std_),
                      zeros(p + "b2", {C}));
  }

  // h (B, T, C) -> (output (B, T, C), balance loss (scalar)).
  std::pair<Value, Value> moe_block_ffn(const std::string& p, Value h) {
    const int64_t C = c_.hidden, F = c_.ffn_factor * C, E = c_.experts;
    const int64_t S = moe_group_size(c_), G = c_.batch * c_.seq / S;
    MoeFfnWeights w;
    w.wg = weight(p + "wg", {C, E}, c_.init_std);
    w.wi = weight(p + "wi", {E, C, F}, c_.init_std);
    w.bi = zeros(p + "bi", {E, F});
    w.wo = weight(p + "wo", {E, F, C}, proj_std_);
    w.bo = zeros(p + "bo", {E, C});
    MoeFfn r = moe_ffn(b_, b_.reshape(h, {G, S, C}), w);  // (G, S, C)
    return {b_.reshape(r.y, b_.shape(h)), r.balance};
  }

  const MoeConfig& c_;
  Builder b_;
  DType dt_;
  double proj_std_;
};

}  // namespace

int64_t moe_capacity(int64_t group_size, int64_t experts) {
  return (2 * group_size + experts - 1) / experts;
}

MoeFfn moe_ffn(Builder& b, Value x, const MoeFfnWeights& w) {
  MoeFfn r;
  if (!b.ok()) return r;
  const Shape xs = b.shape(x), wis = b.shape(w.wi);
  if (xs.size() != 3 || wis.size() != 3) {
    b.fail(cat("moe_ffn needs x (G, S, C) and wi (E, C, F), got ", shape_to_string(xs), " and ",
               shape_to_string(wis)));
    return r;
  }
  const int64_t G = xs[0], S = xs[1], C = xs[2], E = wis[0], F = wis[2];
  const int64_t K = moe_capacity(S, E);
  Value probs = nn::softmax(b, b.dot_general(x, w.wg, DotAttrs{{}, {}, {2}, {0}}));  // (G, S, E)
  // Routing decisions carry no gradient.
  Value fixed = b.stop_gradient(probs);
  Value top1 = first_max_one_hot(b, fixed);  // (G, S, E)
  Value top2 = first_max_one_hot(b, b.mul(fixed, b.sub(b.full_like(top1, 1.0), top1)));
  // Slots: the top-1 choices of earlier tokens; the top-2 choices queue after every top-1.
  Value slot1 = exclusive_cumsum(b, top1);
  Value keep1 = within_capacity(b, top1, slot1, K);
  Value count1 = b.reduce_sum(keep1, {1});  // (G, E)
  Value slot2 = b.add(exclusive_cumsum(b, top2), b.broadcast(count1, {G, S, E}, {0, 2}));
  Value keep2 = within_capacity(b, top2, slot2, K);
  Value dispatch1 = dispatch_part(b, keep1, slot1, K);  // (G, S, E, K)
  Value dispatch2 = dispatch_part(b, keep2, slot2, K);
  r.dispatch = b.add(dispatch1, dispatch2);
  // Combine weights: the kept gates, normalised to sum to one per token.
  Value gate1 = b.reduce_sum(b.mul(probs, keep1), {2});  // (G, S)
  Value gate2 = b.reduce_sum(b.mul(probs, keep2), {2});
  Value denom = b.add(gate1, gate2);
  Value positive = b.compare(denom, b.full_like(denom, 0.0), CompareDir::kGt);
  denom = b.select(positive, denom, b.full_like(denom, 1.0));
  const Shape full = {G, S, E, K};
  r.combine = b.add(b.mul(dispatch1, b.broadcast(b.div(gate1, denom), full, {0, 1})),
                    b.mul(dispatch2, b.broadcast(b.div(gate2, denom), full, {0, 1})));

  // Experts: dispatch, one FFN batched over the expert dim, combine.
  Value expert_in = b.dot_general(r.dispatch, x, DotAttrs{{0}, {0}, {1}, {1}});  // (G, E, K, C)
  Value up = b.dot_general(expert_in, w.wi, DotAttrs{{1}, {0}, {3}, {1}});       // (E, G, K, F)
  up = b.add(up, b.broadcast(w.bi, {E, G, K, F}, {0, 3}));
  Value down = b.dot_general(nn::relu(b, up), w.wo, DotAttrs{{0}, {0}, {3}, {1}});  // (E, G, K, C)
  down = b.add(down, b.broadcast(w.bo, {E, G, K, C}, {0, 3}));
  r.y = b.dot_general(r.combine, down, DotAttrs{{0}, {1}, {2, 3}, {0, 2}});  // (G, S, C)

  // GShard balance loss: E^2 x mean over (G, E) of (share of the group's tokens whose top-1
  // is e) x (mean gate probability of e); 1 when routing is uniform.
  const double inv_s = 1.0 / static_cast<double>(S);
  Value share = b.scale(b.reduce_sum(top1, {1}), inv_s);       // (G, E)
  Value mean_prob = b.scale(b.reduce_sum(probs, {1}), inv_s);  // (G, E)
  r.balance = b.scale(b.sum_all(b.mul(share, mean_prob)),
                      static_cast<double>(E * E) / static_cast<double>(G * E));
  return r;
}

std::vector<std::string> moe_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

Result<MoeConfig> moe_preset(std::string_view size) {
  for (const Preset& p : kPresets) {
    if (size == p.name) {
      MoeConfig c;
      c.layers = p.layers;
      c.hidden = p.hidden;
      c.heads = p.heads;
      c.seq = p.seq;
      c.vocab = p.vocab;
      c.batch = p.batch;
      c.experts = p.experts;
      c.expert_group_size = p.group;
      c.dtype = p.dtype;
      return c;
    }
  }
  std::string names;
  for (const Preset& p : kPresets) names += cat(names.empty() ? "" : ", ", p.name);
  return not_found(cat("unknown MoE size '", size, "'"), cat("sizes: ", names));
}

int64_t moe_group_size(const MoeConfig& c) {
  return std::min(c.expert_group_size, c.batch * c.seq);
}

int64_t moe_expert_capacity(const MoeConfig& c) {
  return moe_capacity(moe_group_size(c), c.experts);
}

Status validate_moe_config(const MoeConfig& c) {
  auto positive = [](int64_t v, const char* what) -> Status {
    if (v < 1) return invalid_argument(cat("MoE ", what, " must be >= 1, got ", v));
    return ok_status();
  };
  ALPA_RETURN_IF_ERROR(positive(c.layers, "layers"));
  ALPA_RETURN_IF_ERROR(positive(c.hidden, "hidden"));
  ALPA_RETURN_IF_ERROR(positive(c.heads, "heads"));
  ALPA_RETURN_IF_ERROR(positive(c.seq, "seq"));
  ALPA_RETURN_IF_ERROR(positive(c.vocab, "vocab"));
  ALPA_RETURN_IF_ERROR(positive(c.batch, "batch"));
  ALPA_RETURN_IF_ERROR(positive(c.expert_group_size, "expert group size"));
  ALPA_RETURN_IF_ERROR(positive(c.ffn_factor, "FFN factor"));
  if (c.experts < 2)
    return invalid_argument(cat("MoE experts must be >= 2 for top-2 gating, got ", c.experts));
  if (c.hidden % c.heads != 0)
    return invalid_argument(cat("MoE hidden ", c.hidden, " is not divisible by heads ", c.heads),
                            "choose heads that divide hidden");
  const int64_t tokens = c.batch * c.seq, group = moe_group_size(c);
  if (tokens % group != 0)
    return invalid_argument(cat("MoE: the ", tokens, " tokens of a forward pass (batch ", c.batch,
                                " x seq ", c.seq, ") do not split into groups of ", group),
                            cat("choose a batch (per micro-batch) whose tokens are a multiple of ",
                                "the expert group size ", c.expert_group_size));
  if (!is_float(c.dtype)) return invalid_argument("MoE dtype must be f32, f16 or bf16");
  if (c.vocab > (int64_t{1} << 24))
    return invalid_argument(cat("vocab ", c.vocab, " exceeds 2^24 (token ids are held as floats)"));
  return ok_status();
}

int64_t moe_parameter_count(const MoeConfig& c) {
  const int64_t C = c.hidden, F = c.ffn_factor * C, E = c.experts;
  const int64_t moe_blocks = (c.layers + 1) / 2, dense_blocks = c.layers - moe_blocks;
  return c.layers * (4 * C * C + 8 * C) + dense_blocks * (2 * C * F + F + C) +
         moe_blocks * (C * E + E * (2 * C * F + F + C)) + c.vocab * C + c.seq * C + 2 * C;
}

Result<Graph> build_moe(const MoeConfig& c) {
  ALPA_RETURN_IF_ERROR(validate_moe_config(c));
  return MoeBuilder(c).build();
}

}  // namespace alpa
