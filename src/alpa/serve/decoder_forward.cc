// The decoder's forward pass over a batch of sequence chunks.
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "alpa/serve/decoder.h"
#include "alpa/support/check.h"

namespace alpa::serve {
namespace {

// y[m, out] = x[m, in] W + b, W the weights `w` of `l`'s shape (by default l.w).
void apply(const Linear& l, int64_t m, const float* x, float* y, const float* w = nullptr) {
  if (m == 0) return;
  const float* weights = w != nullptr ? w : l.w.data();
  if (m == 1) {
    // One token (decoding one sequence): a matrix-vector product reads W once, where sgemm
    // would first pack all of it.
    if (l.out_major)
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(l.out), static_cast<int>(l.in),
                  1.0f, weights, static_cast<int>(l.in), x, 1, 0.0f, y, 1);
    else
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(l.in), static_cast<int>(l.out), 1.0f,
                  weights, static_cast<int>(l.out), x, 1, 0.0f, y, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, l.out_major ? CblasTrans : CblasNoTrans,
                static_cast<int>(m), static_cast<int>(l.out), static_cast<int>(l.in), 1.0f, x,
                static_cast<int>(l.in), weights, static_cast<int>(l.out_major ? l.in : l.out), 0.0f,
                y, static_cast<int>(l.out));
  }
  if (l.b.empty()) return;
  for (int64_t r = 0; r < m; ++r) {
    float* row = y + r * l.out;
    for (int64_t j = 0; j < l.out; ++j) row[j] += l.b[static_cast<size_t>(j)];
  }
}

// out = norm(x) row by row: LayerNorm when the norm has a bias, else RMSNorm.
void normalize(const Norm& nm, int64_t rows, int64_t n, double eps, const float* x, float* out,
               ThreadPool& pool) {
  pool.parallel_for(rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* xr = x + r * n;
      float* o = out + r * n;
      if (nm.b.empty()) {
        double ss = 0;
        for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xr[j]) * xr[j];
        const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
        for (int64_t j = 0; j < n; ++j) o[j] = nm.w[static_cast<size_t>(j)] * (xr[j] * inv);
        continue;
      }
      double sum = 0, ss = 0;
      for (int64_t j = 0; j < n; ++j) sum += xr[j];
      const double mean = sum / static_cast<double>(n);
      for (int64_t j = 0; j < n; ++j) ss += (xr[j] - mean) * (xr[j] - mean);
      const float inv = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(n) + eps));
      const float mu = static_cast<float>(mean);
      for (int64_t j = 0; j < n; ++j)
        o[j] = (xr[j] - mu) * inv * nm.w[static_cast<size_t>(j)] + nm.b[static_cast<size_t>(j)];
    }
  });
}

// Rotates pairs (i, i + d/2) of one head's vector by the position's angles (LLaMA's layout).
void rotate(float* v, int64_t pos, const DecoderConfig& config) {
  const int64_t half = config.head_dim / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float angle = static_cast<float>(pos) * rope_inverse_frequency(config, i);
    const float c = std::cos(angle), s = std::sin(angle);
    const float a = v[i], b = v[i + half];
    v[i] = a * c - b * s;
    v[i + half] = b * c + a * s;
  }
}

}  // namespace

Status Decoder::embed(const std::vector<SequenceChunk>& chunks, std::vector<float>& x,
                      const ShardPeers* peers) const {
  const int64_t C = config_.hidden;
  int64_t t = 0;
  for (const SequenceChunk& ch : chunks) {
    for (int64_t i = 0; i < ch.count; ++i, ++t) {
      const int64_t token = static_cast<int64_t>(ch.tokens[i]) - vocab_begin_;
      float* row = x.data() + t * C;
      if (token < 0 || token >= vocab_rows_) {  // another shard's row
        std::fill(row, row + C, 0.0f);
        continue;
      }
      const float* e = token_embedding_.data() + token * C;
      std::copy(e, e + C, row);
    }
  }
  if (peers != nullptr && peers->group.size() > 1 && vocab_rows_ < config_.vocab)
    ALPA_RETURN_IF_ERROR(
        peers->comm->all_reduce(x.data(), static_cast<int64_t>(x.size()), peers->group));
  if (pos_embedding_.empty()) return Status();
  t = 0;
  for (const SequenceChunk& ch : chunks)
    for (int64_t i = 0; i < ch.count; ++i, ++t) {
      const float* p = pos_embedding_.data() + (ch.start + i + pos_offset_) * C;
      float* row = x.data() + t * C;
      for (int64_t j = 0; j < C; ++j) row[j] += p[j];
    }
  return Status();
}

void Decoder::attention(const std::vector<SequenceChunk>& chunks, int64_t layer, KvCache& cache,
                        ThreadPool& pool, std::vector<float>& qkv, std::vector<float>& out) const {
  const DecoderConfig& c = config_;
  const int64_t D = c.head_dim, H = heads_, G = H / kv_heads_;
  const int64_t q_dim = H * D, kv_dim = kv_heads_ * D, row = q_dim + 2 * kv_dim;
  // Token index -> (chunk, offset), and each token's keys and values into the cache.
  std::vector<std::pair<int32_t, int32_t>> where;
  int64_t t = 0;
  for (size_t ci = 0; ci < chunks.size(); ++ci) {
    const SequenceChunk& ch = chunks[ci];
    for (int64_t i = 0; i < ch.count; ++i, ++t) {
      where.emplace_back(static_cast<int32_t>(ci), static_cast<int32_t>(i));
      float* q = qkv.data() + t * row;
      float* k = q + q_dim;
      const int64_t pos = ch.start + i;
      if (c.family == Family::kLlama) {
        for (int64_t h = 0; h < H; ++h) rotate(q + h * D, pos, c);
        for (int64_t h = 0; h < kv_heads_; ++h) rotate(k + h * D, pos, c);
      }
      std::copy(k, k + kv_dim, cache.key(layer, *ch.table, pos));
      std::copy(k + kv_dim, k + 2 * kv_dim, cache.value(layer, *ch.table, pos));
    }
  }
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(D)));
  const int64_t total = t;
  pool.parallel_for(total * H, 4, [&](int64_t begin, int64_t end) {
    std::vector<float> scores;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t tok = item / H, h = item % H, g = h / G;
      const SequenceChunk& ch = chunks[static_cast<size_t>(where[static_cast<size_t>(tok)].first)];
      const int64_t pos = ch.start + where[static_cast<size_t>(tok)].second;
      const float* q = qkv.data() + tok * row + h * D;
      scores.resize(static_cast<size_t>(pos + 1));
      float best = -INFINITY;
      for (int64_t j = 0; j <= pos; ++j) {
        const float* k = cache.key(layer, *ch.table, j) + g * D;
        float s = 0;
        for (int64_t d = 0; d < D; ++d) s += q[d] * k[d];
        s *= scale;
        scores[static_cast<size_t>(j)] = s;
        best = std::max(best, s);
      }
      float sum = 0;
      for (float& s : scores) sum += (s = std::exp(s - best));
      float* o = out.data() + tok * q_dim + h * D;
      std::fill(o, o + D, 0.0f);
      for (int64_t j = 0; j <= pos; ++j) {
        const float w = scores[static_cast<size_t>(j)] / sum;
        const float* v = cache.value(layer, *ch.table, j) + g * D;
        for (int64_t d = 0; d < D; ++d) o[d] += w * v[d];
      }
    }
  });
}

void Decoder::mlp(const DecoderLayer& l, int64_t tokens, ThreadPool& pool,
                  const std::vector<float>& h, std::vector<float>& out) const {
  const int64_t I = intermediate_;
  std::vector<float> up(static_cast<size_t>(tokens * l.up.out));
  apply(l.up, tokens, h.data(), up.data());
  std::vector<float> act(static_cast<size_t>(tokens * I));
  const Activation a = config_.activation;
  pool.parallel_for(tokens, 4, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* u = up.data() + r * l.up.out;
      float* o = act.data() + r * I;
      for (int64_t j = 0; j < I; ++j) {
        const float x = u[j];
        if (a == Activation::kGeluTanh) {
          o[j] = 0.5f * x * (1.0f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
        } else if (a == Activation::kGeluExact) {
          o[j] = 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
        } else if (a == Activation::kRelu) {
          o[j] = x > 0 ? x : 0.0f;
        } else {
          o[j] = x / (1.0f + std::exp(-x)) * u[I + j];  // silu(gate) * up
        }
      }
    }
  });
  apply(l.down, tokens, act.data(), out.data());
}

Status Decoder::run_layers(const std::vector<SequenceChunk>& chunks, KvCache& cache,
                           ThreadPool& pool, std::vector<float>& x, const ShardPeers* peers) const {
  const DecoderConfig& c = config_;
  const int64_t C = c.hidden, T = static_cast<int64_t>(x.size()) / C;
  std::vector<float> h(x.size()), proj(x.size());
  std::vector<float> qkv(static_cast<size_t>(T * (heads_ + 2 * kv_heads_) * c.head_dim));
  std::vector<float> att(static_cast<size_t>(T * heads_ * c.head_dim));
  // A shard's output and down projections are partial sums (their biases on shard 0 only).
  auto reduce = [&](std::vector<float>& v) -> Status {
    if (peers == nullptr || peers->group.size() < 2) return Status();
    return peers->comm->all_reduce(v.data(), static_cast<int64_t>(v.size()), peers->group);
  };
  for (int64_t li = 0; li < layer_count(); ++li) {
    const DecoderLayer& l = layers_[static_cast<size_t>(li)];
    normalize(l.attn_norm, T, C, c.norm_eps, x.data(), h.data(), pool);
    apply(l.qkv, T, h.data(), qkv.data());
    attention(chunks, li, cache, pool, qkv, att);
    apply(l.o, T, att.data(), proj.data());
    ALPA_RETURN_IF_ERROR(reduce(proj));
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
    normalize(l.mlp_norm, T, C, c.norm_eps, x.data(), h.data(), pool);
    mlp(l, T, pool, h, proj);
    ALPA_RETURN_IF_ERROR(reduce(proj));
    for (size_t i = 0; i < x.size(); ++i) x[i] += proj[i];
  }
  return Status();
}

Status Decoder::head(const std::vector<SequenceChunk>& chunks, const std::vector<float>& x,
                     ThreadPool& pool, std::vector<float>& logits, const ShardPeers* peers) const {
  const DecoderConfig& c = config_;
  const int64_t C = c.hidden;
  int64_t rows = 0;
  for (const SequenceChunk& ch : chunks) rows += ch.all_logits ? ch.count : (ch.count > 0 ? 1 : 0);
  // The rows whose logits are wanted, normalized and projected onto the vocabulary.
  std::vector<float> sel(static_cast<size_t>(rows * C));
  int64_t t = 0, r = 0;
  for (const SequenceChunk& ch : chunks) {
    for (int64_t i = 0; i < ch.count; ++i, ++t) {
      if (!ch.all_logits && i + 1 != ch.count) continue;
      std::copy(x.begin() + t * C, x.begin() + (t + 1) * C, sel.begin() + r * C);
      ++r;
    }
  }
  normalize(final_norm_, rows, C, c.norm_eps, sel.data(), sel.data(), pool);
  const int parts = peers == nullptr ? 1 : static_cast<int>(peers->group.size());
  if (parts < 2) {
    logits.resize(static_cast<size_t>(rows * c.vocab));
    // A head tied to the embedding this decoder holds is the embedding itself.
    apply(lm_head_, rows, sel.data(), logits.data(),
          lm_head_.w.empty() ? token_embedding_.data() : nullptr);
    return Status();
  }
  // Each shard's [rows, vocab_rows_] slice, gathered as [part][rows][vocab_rows_].
  const int64_t Vs = vocab_rows_;
  std::vector<float> mine(static_cast<size_t>(rows * Vs));
  std::vector<float> all(mine.size() * static_cast<size_t>(parts));
  apply(lm_head_, rows, sel.data(), mine.data(),
        lm_head_.w.empty() ? token_embedding_.data() : nullptr);
  ALPA_RETURN_IF_ERROR(peers->comm->all_gather(mine.data(), rows * Vs, all.data(), peers->group));
  logits.resize(static_cast<size_t>(rows * c.vocab));
  for (int p = 0; p < parts; ++p) {
    const int64_t begin = p * Vs, n = std::min(Vs, c.vocab - begin);
    for (int64_t row = 0; row < rows && n > 0; ++row) {
      const float* src = all.data() + (p * rows + row) * Vs;
      std::copy(src, src + n, logits.begin() + row * c.vocab + begin);
    }
  }
  return Status();
}

void Decoder::forward(const std::vector<SequenceChunk>& chunks, KvCache& cache, ThreadPool& pool,
                      std::vector<float>& logits) const {
  int64_t T = 0;
  for (const SequenceChunk& ch : chunks) T += ch.count;
  std::vector<float> x(static_cast<size_t>(T * config_.hidden));
  const Status embedded = embed(chunks, x);  // no peers: nothing to fail
  ALPA_CHECK(embedded.ok()) << embedded.to_string();
  Status s = run_layers(chunks, cache, pool, x, nullptr);
  if (s.ok()) s = head(chunks, x, pool, logits, nullptr);
  ALPA_CHECK(s.ok()) << s.to_string();  // nothing to fail without peers
}

}  // namespace alpa::serve
