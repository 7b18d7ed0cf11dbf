// Decoder-only transformers (GPT-2, OPT, LLaMA) run for inference over a paged KV cache.
//
// One forward call processes a batch of sequence chunks: each chunk is a run of consecutive
// tokens of one sequence (a whole prompt, a piece of a long prompt, or the one new token of a
// decoding sequence) at known positions, with the sequence's block table. Keys and values of
// the chunk's tokens are written into the cache and attention reads every earlier position of
// the sequence from it, so prefill, chunked prefill and decoding are one code path and
// sequences of any lengths share a batch (the projections run as one GEMM over all tokens).
//
// This is a direct kernel implementation (OpenBLAS GEMMs, a thread pool for attention and
// norms), not an IR graph through the compile driver: see docs/architecture.md. A decoder can
// be cut into device parts (shard()): a contiguous run of layers (a pipeline stage) and, within
// it, 1/N of the attention heads, KV heads, MLP columns and vocabulary (a tensor-parallel
// shard, Megatron's layout: the output and down projections give partial sums that the shards
// all-reduce through a Communicator). parallel_decoder.h runs the parts.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "alpa/data/safetensors.h"
#include "alpa/runtime/communicator.h"
#include "alpa/serve/config.h"
#include "alpa/serve/kv_cache.h"
#include "alpa/support/status.h"
#include "alpa/support/thread_pool.h"

namespace alpa::serve {

// y = x W (+ b); W stored [in, out] (GPT-2's Conv1D) or [out, in] (torch.nn.Linear).
struct Linear {
  std::vector<float> w, b;
  int64_t in = 0, out = 0;
  bool out_major = true;
};

struct Norm {
  std::vector<float> w, b;  // b empty for RMSNorm
};

struct DecoderLayer {
  Norm attn_norm, mlp_norm;
  Linear qkv;  // outputs [q | k | v]
  Linear o;
  Linear up;    // gpt2/opt: fc1; llama: [gate | up]
  Linear down;  // gpt2/opt: fc2; llama: down
};

struct SequenceChunk {
  const int32_t* tokens = nullptr;
  int64_t count = 0;
  int64_t start = 0;  // position of tokens[0]
  const BlockTable* table = nullptr;
  bool all_logits = false;  // logits of every token (else of the last one only)
};

// What tensor-parallel shard `part` of `parts` holds of every layer, in the whole layer's
// terms: its heads' range of q's outputs, its KV heads' range of k's and of v's outputs, its
// MLP columns; the biases of the projections summed over the shards (output, down) are shard
// 0's. Shard 0 of 1 holds the whole layer.
struct LayerShare {
  std::pair<int64_t, int64_t> q, kv, mlp;
  bool sum_bias = true;
  // The shard's ranges of fused [q | k | v] outputs.
  std::vector<std::pair<int64_t, int64_t>> fused_qkv(const DecoderConfig& config) const;
};
LayerShare layer_share(const DecoderConfig& config, int part, int parts);

// How a tensor-parallel shard reaches its peers: the ranks of its stage's shards in shard
// order (null comm: a whole layer on one device).
struct ShardPeers {
  Communicator* comm = nullptr;
  std::vector<int> group;
};

// OK when `parts` tensor-parallel shards divide the heads, KV heads and MLP columns; else an
// error naming the one that does not.
Status check_tensor_parallel(const DecoderConfig& config, int parts);
// OK when layers [first, last) are a non-empty run of the model's and `parts` shards divide it.
Status check_part(const DecoderConfig& config, int64_t first, int64_t last, int part, int parts);

class Decoder {
 public:
  // Reads the family's tensors from `weights` (names as Hugging Face saves them), checking
  // every shape against `config`.
  static Result<Decoder> load(const DecoderConfig& config, const SafetensorsSet& weights);
  // One device's part read from `weights`, equal to load(...)->shard(first, last, part, parts)
  // without the whole model in memory: only the tensors of layers [first, last) (and the
  // embeddings on the first stage, the final norm and vocabulary projection on the last) are
  // read, and of each only the shard's slice (its heads' rows or columns, its MLP columns, its
  // vocabulary rows), so memory holds the part and nothing more. Every
  // other tensor's name and shape is checked from the headers, so a checkpoint that fails
  // load() fails here too.
  static Result<Decoder> load_part(const DecoderConfig& config, const SafetensorsSet& weights,
                                   int64_t first, int64_t last, int part, int parts);
  // OK when `weights` hold every tensor load() reads with its shape (from the headers: no value
  // is read); else load()'s error.
  static Status check_tensors(const DecoderConfig& config, const SafetensorsSet& weights);
  // Random weights and biases (normal, std 0.02; norms 1), for benchmarks and tests.
  static Decoder random(const DecoderConfig& config, uint64_t seed);

  const DecoderConfig& config() const { return config_; }
  // The parameters this decoder or part holds (a tied vocabulary projection counted with the
  // embedding only); a whole decoder's are config().num_parameters().
  int64_t num_parameters() const;

  // Runs `chunks`; every chunk's table must already hold its positions. `logits` receives
  // vocab-sized rows: per chunk, `count` rows if all_logits, else one.
  void forward(const std::vector<SequenceChunk>& chunks, KvCache& cache, ThreadPool& pool,
               std::vector<float>& logits) const;

  // One device's part: layers [first, last) and shard `part` of `parts` of every layer (heads,
  // KV heads and MLP columns; the vocabulary, of the embedding and of the projection, in
  // padded slices of ceil(vocab / parts) rows).
  // Errors name what does not divide.
  Result<Decoder> shard(int64_t first, int64_t last, int part, int parts) const;
  bool has_embedding() const { return first_layer_ == 0; }
  bool has_head() const { return first_layer_ + layer_count() == config_.layers; }
  int64_t layer_count() const { return static_cast<int64_t>(layers_.size()); }
  // The KV cache a part needs (its layers, its KV heads) with `num_blocks` blocks.
  KvCacheShape cache_shape(int64_t block_size, int64_t num_blocks) const;

  // The pieces of forward(), for the parallel runner: x holds [tokens, hidden] activations.
  // With peers, each shard looks up the tokens of its vocabulary rows (zeros for the others)
  // and the rows are all-reduced before the positions are added.
  Status embed(const std::vector<SequenceChunk>& chunks, std::vector<float>& x,
               const ShardPeers* peers = nullptr) const;
  Status run_layers(const std::vector<SequenceChunk>& chunks, KvCache& cache, ThreadPool& pool,
                    std::vector<float>& x, const ShardPeers* peers) const;
  // Final norm and vocabulary projection of the wanted rows; with peers, every shard projects
  // its vocabulary slice and the slices are gathered (logits complete on every shard).
  Status head(const std::vector<SequenceChunk>& chunks, const std::vector<float>& x,
              ThreadPool& pool, std::vector<float>& logits, const ShardPeers* peers) const;

 private:
  void attention(const std::vector<SequenceChunk>& chunks, int64_t layer, KvCache& cache,
                 ThreadPool& pool, std::vector<float>& qkv, std::vector<float>& out) const;
  void mlp(const DecoderLayer& l, int64_t tokens, ThreadPool& pool, const std::vector<float>& h,
           std::vector<float>& out) const;
  // load_part, reading the values when `values` (else checking names and shapes only).
  static Result<Decoder> read_part(const DecoderConfig& config, const SafetensorsSet& weights,
                                   int64_t first, int64_t last, int part, int parts, bool values);
  void set_whole();  // the share of an unsharded decoder
  // The share of shard `part` of `parts` from layer `first` on (heads, KV heads, MLP columns,
  // vocabulary rows); config_ set.
  void set_part(int64_t first, int parts);
  // The vocabulary rows [first, second) shard `part` holds of the embedding and the
  // projection (set_part's vocab_rows_ from part * vocab_rows_, within the vocabulary).
  std::pair<int64_t, int64_t> vocab_range(int part) const;
  // A whole layer's slice `share`.
  DecoderLayer shard_layer(const DecoderLayer& whole, const LayerShare& share) const;
  // Sets the token embedding (on a first stage) and the vocabulary projection (on a last) of
  // shard `part` from the model's [vocab, hidden] embedding (given where either needs it) and
  // untied projection (given on a last stage of an untied model), each whole (`whole`) or
  // already the shard's rows: the shard's vocabulary rows, padded to vocab_rows_. A
  // projection tied to an embedding this part holds has no weights of its own.
  void take_vocab(std::vector<float> embedding, std::vector<float> untied_head, int part,
                  bool first, bool head, bool whole);

  DecoderConfig config_;  // the whole model's
  // This part's share: heads, KV heads and MLP columns of each layer, vocabulary rows of the
  // head (padded), and its first layer. The whole model's for an unsharded decoder.
  int64_t heads_ = 0, kv_heads_ = 0, intermediate_ = 0, vocab_rows_ = 0, first_layer_ = 0;
  int64_t vocab_begin_ = 0;  // the first vocabulary row of this part's embedding and projection
  // [vocab_rows_, hidden]: the vocabulary rows from vocab_begin_ (a tensor-parallel shard's
  // slice, as Megatron's vocabulary-parallel embedding; the whole table unsharded).
  std::vector<float> token_embedding_;
  std::vector<float> pos_embedding_;  // gpt2/opt: [positions, hidden]
  int64_t pos_offset_ = 0;            // opt: 2
  std::vector<DecoderLayer> layers_;
  Norm final_norm_;
  // [vocab_rows_, hidden], out-major. Tied to the embedding this part holds: no weights of
  // its own (head() reads token_embedding_).
  Linear lm_head_;
};

}  // namespace alpa::serve
