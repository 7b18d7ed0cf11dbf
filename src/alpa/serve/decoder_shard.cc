// Cutting a decoder into device parts: a run of layers, and a tensor-parallel slice of each.
#include <algorithm>

#include "alpa/serve/decoder.h"
#include "alpa/support/check.h"

namespace alpa::serve {
namespace {

using Range = std::pair<int64_t, int64_t>;

// The output columns in `ranges` (in order), then zero columns up to `pad_to`.
Linear take_outputs(const Linear& l, const std::vector<Range>& ranges, int64_t pad_to = 0) {
  Linear s;
  s.in = l.in;
  s.out_major = l.out_major;
  for (const Range& r : ranges) s.out += r.second - r.first;
  const int64_t width = s.out;
  s.out = std::max(s.out, pad_to);
  s.w.assign(static_cast<size_t>(s.in * s.out), 0.0f);
  int64_t at = 0;
  for (const Range& r : ranges) {
    const int64_t n = r.second - r.first;
    if (l.out_major) {  // [out, in]: whole rows
      std::copy(l.w.begin() + r.first * l.in, l.w.begin() + r.second * l.in,
                s.w.begin() + at * s.in);
    } else {  // [in, out]: a column block of every row
      for (int64_t i = 0; i < l.in; ++i)
        std::copy(l.w.begin() + i * l.out + r.first, l.w.begin() + i * l.out + r.second,
                  s.w.begin() + i * s.out + at);
    }
    if (!l.b.empty()) s.b.insert(s.b.end(), l.b.begin() + r.first, l.b.begin() + r.second);
    at += n;
  }
  if (!l.b.empty()) s.b.resize(static_cast<size_t>(s.out), 0.0f);
  ALPA_CHECK(at == width);
  return s;
}

// The input rows [begin, end); the bias only where `bias` (one shard adds it to the sum).
Linear take_inputs(const Linear& l, int64_t begin, int64_t end, bool bias) {
  Linear s;
  s.in = end - begin;
  s.out = l.out;
  s.out_major = l.out_major;
  if (l.out_major) {  // [out, in]: a column block of every row
    s.w.resize(static_cast<size_t>(s.in * s.out));
    for (int64_t j = 0; j < l.out; ++j)
      std::copy(l.w.begin() + j * l.in + begin, l.w.begin() + j * l.in + end,
                s.w.begin() + j * s.in);
  } else {  // [in, out]: whole rows
    s.w.assign(l.w.begin() + begin * l.out, l.w.begin() + end * l.out);
  }
  if (bias) s.b = l.b;
  return s;
}

Status divides(const DecoderConfig& c, int64_t n, const char* what, int parts) {
  if (n % parts == 0) return Status();
  return invalid_argument(
      cat("the ", family_name(c.family), " model has ", n, " ", what,
          ", which do not split evenly over ", parts, " tensor-parallel devices"),
      cat("use a tensor-parallel degree (--mesh 1xN) that divides ", n));
}

}  // namespace

Status check_tensor_parallel(const DecoderConfig& c, int parts) {
  if (parts < 1) return invalid_argument(cat("tensor-parallel degree ", parts, " is below 1"));
  ALPA_RETURN_IF_ERROR(divides(c, c.heads, "attention heads", parts));
  ALPA_RETURN_IF_ERROR(divides(c, c.kv_heads, "key/value heads", parts));
  return divides(c, c.intermediate, "MLP columns (intermediate size)", parts);
}

Status check_part(const DecoderConfig& c, int64_t first, int64_t last, int part, int parts) {
  if (first < 0 || last > c.layers || first >= last)
    return invalid_argument(cat("layers [", first, ", ", last, ") are not a non-empty run of the ",
                                c.layers, " layers of the model"));
  ALPA_RETURN_IF_ERROR(check_tensor_parallel(c, parts));
  ALPA_CHECK(part >= 0 && part < parts);
  return ok_status();
}

void Decoder::set_part(int64_t first, int parts) {
  heads_ = config_.heads / parts;
  kv_heads_ = config_.kv_heads / parts;
  intermediate_ = config_.intermediate / parts;
  vocab_rows_ = (config_.vocab + parts - 1) / parts;
  first_layer_ = first;
}

LayerShare layer_share(const DecoderConfig& c, int part, int parts) {
  const int64_t qd = c.q_dim() / parts, kvd = c.kv_dim() / parts, I = c.intermediate / parts;
  return LayerShare{{part * qd, (part + 1) * qd},
                    {part * kvd, (part + 1) * kvd},
                    {part * I, (part + 1) * I},
                    part == 0};
}

std::vector<Range> LayerShare::fused_qkv(const DecoderConfig& c) const {
  const int64_t Q = c.q_dim(), K = c.kv_dim();
  return {q, {Q + kv.first, Q + kv.second}, {Q + K + kv.first, Q + K + kv.second}};
}

DecoderLayer Decoder::shard_layer(const DecoderLayer& l, const LayerShare& share) const {
  const DecoderConfig& c = config_;
  const int64_t I = c.intermediate;
  const auto [i0, i1] = share.mlp;
  DecoderLayer s;
  s.attn_norm = l.attn_norm;
  s.mlp_norm = l.mlp_norm;
  s.qkv = take_outputs(l.qkv, share.fused_qkv(c));
  s.o = take_inputs(l.o, share.q.first, share.q.second, share.sum_bias);
  // LLaMA's up projection is [gate | up].
  std::vector<Range> up = {share.mlp};
  if (c.family == Family::kLlama) up.push_back({I + i0, I + i1});
  s.up = take_outputs(l.up, up);
  s.down = take_inputs(l.down, i0, i1, share.sum_bias);
  return s;
}

Range Decoder::vocab_range(int part) const {
  const int64_t begin = std::min(config_.vocab, part * vocab_rows_);
  return {begin, std::min(config_.vocab, begin + vocab_rows_)};
}

void Decoder::take_vocab(std::vector<float> embedding, std::vector<float> untied_head, int part,
                         bool first, bool head, bool whole) {
  const DecoderConfig& c = config_;
  const bool sharded = vocab_rows_ < c.vocab;
  const std::vector<Range> rows = {vocab_range(part)};
  vocab_begin_ = rows[0].first;
  // The shard's rows of a [vocab, hidden] matrix (given whole, or already its rows), padded with
  // zero rows to vocab_rows_.
  auto cut = [&](std::vector<float> m) {
    if (!whole) {
      m.resize(static_cast<size_t>(vocab_rows_ * c.hidden), 0.0f);
      return m;
    }
    Linear l{std::move(m), {}, c.hidden, c.vocab, true};
    return sharded ? take_outputs(l, rows, vocab_rows_).w : std::move(l.w);
  };
  lm_head_ = Linear{{}, {}, c.hidden, vocab_rows_, true};
  if (head && !c.tie_embeddings) lm_head_.w = cut(std::move(untied_head));
  if (first) {
    token_embedding_ = cut(std::move(embedding));  // a tied head on this part: the same rows
  } else if (head && c.tie_embeddings) {
    lm_head_.w = cut(std::move(embedding));
  }
}

Result<Decoder> Decoder::shard(int64_t first, int64_t last, int part, int parts) const {
  const DecoderConfig& c = config_;
  ALPA_CHECK(first_layer_ == 0 && layer_count() == c.layers && heads_ == c.heads)
      << "shard() cuts a whole decoder";
  ALPA_RETURN_IF_ERROR(check_part(c, first, last, part, parts));
  Decoder d;
  d.config_ = c;
  d.set_part(first, parts);
  d.pos_offset_ = pos_offset_;
  if (first == 0) d.pos_embedding_ = pos_embedding_;
  const LayerShare share = layer_share(c, part, parts);
  for (int64_t li = first; li < last; ++li)
    d.layers_.push_back(d.shard_layer(layers_[static_cast<size_t>(li)], share));
  const bool head = last == c.layers;
  if (head) d.final_norm_ = final_norm_;
  d.take_vocab(first == 0 || (head && c.tie_embeddings) ? token_embedding_ : std::vector<float>(),
               head ? lm_head_.w : std::vector<float>(), part, first == 0, head, true);
  return d;
}

KvCacheShape Decoder::cache_shape(int64_t block_size, int64_t num_blocks) const {
  return KvCacheShape{layer_count(), kv_heads_, config_.head_dim, block_size, num_blocks};
}

void Decoder::set_whole() {
  set_part(0, 1);
}

}  // namespace alpa::serve
