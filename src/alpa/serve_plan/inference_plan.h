// Planning inference: how a decoder (serve/config.h: its shape only, no weights) is split over a
// cluster's devices for serving, and what each split is predicted to cost.
//
// A candidate is tp x pp = devices: tensor parallelism of degree tp inside a host's NVLink
// domain (Megatron-LM's layout: attention heads and the FFN's inner dimension split, the
// vocabulary split for the embedding and the logits, layer norms and the biases after a
// row-split matmul replicated; two all-reduces per layer), and pp pipeline stages of
// consecutive layers across the rest (stage s on devices [s*tp, (s+1)*tp); the first stage
// also holds the embeddings, the last the final norm and the output projection, a copy of the
// tied embedding when pp > 1). tp must divide the heads, and the KV heads or be a multiple of
// them (a KV head is then replicated), and pp is at most the layers.
//
// For each candidate it predicts, on the device of its fullest stage:
//   memory   weights (the shard), the activation workspace of one prefill forward (one layer's
//            intermediates for workload.batch x prompt_len tokens, attention fused so no
//            T x T scores are kept, the last positions' f32 logits), and what is left for the
//            KV cache, in blocks of kKvBlockTokens positions, tokens and whole sequences of
//            prompt_len + output_len;
//   prefill  the time to the first token of workload.batch prompts: per layer and per GEMM the
//            roofline of cost/compute.h (tensor-core FLOP/s, scaled by a profiled efficiency
//            table when the cluster has one; else the peak), fused attention, elementwise
//            work at memory bandwidth, the tp all-reduces by cost/collective.h over the stage's
//            placed mesh (cost/mesh_links.h), and the hand-off of the hidden states between
//            stages over the intra- or inter-host link;
//   decode   the time per output token at workload.batch, at the mean context
//            prompt_len + output_len / 2: the same roofline, where reading the weight shard and
//            the KV cache at HBM bandwidth dominates, plus the all-reduces (latency-bound);
//   throughput  output tokens/s at the largest batch the KV cache admits (at most
//            workload.max_batch sequences), split into pp micro-batches that keep every stage
//            busy: the batch's pipelined prefill, then output_len rounds in which every
//            micro-batch passes every stage once (a round = pp x the slowest stage).
// It is a model, not a measurement: no kernel launch overheads, no compute/communication
// overlap, no speculative or quantized tricks.
//
// Objective latency keeps the fitting candidate with the least time per output token (ties:
// the least time to first token); throughput the most tokens/s (ties: the least time per
// token). With a request rate, only candidates that sustain it are kept.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/ir/types.h"
#include "alpa/serve/config.h"
#include "alpa/support/status.h"

namespace alpa::serve {

// Positions per KV-cache block (serve/kv_cache.h's default block size).
inline constexpr int64_t kKvBlockTokens = 16;

enum class Objective { kLatency, kThroughput };
const char* objective_name(Objective objective);
// "latency" or "throughput"; anything else is kInvalidArgument naming both.
Result<Objective> parse_objective(std::string_view text);

struct Workload {
  int64_t prompt_len = 512;
  int64_t output_len = 128;
  int64_t batch = 1;        // sequences generated together for the latency figures
  int64_t max_batch = 256;  // the most sequences throughput may run at once (vLLM's default)
  // Requests per second the split must sustain (0: any). A split sustains it when its
  // throughput, in requests of output_len tokens, is at least this.
  double rate = 0;
  DType dtype = DType::kF16;
};

// A named decoder shape: "opt-175b", "opt-66b", "opt-30b", "opt-13b", "opt-6.7b",
// "llama-2-70b", "llama-2-13b", "llama-2-7b", "gpt2", "gpt2-xl". Unknown names: kNotFound with
// the list.
Result<DecoderConfig> decoder_preset(std::string_view name);
std::vector<std::string> decoder_preset_names();
// A preset name, or a model directory (its config.json) or a config.json path.
Result<DecoderConfig> load_decoder_shape(const std::string& preset_or_path);

// Parameters of the whole model (a tied embedding counted once).
int64_t decoder_parameters(const DecoderConfig& c);

struct StageMemory {
  double weights = 0;    // bytes of the weight shard on one device
  double workspace = 0;  // activation workspace of one prefill forward
  double kv_free = 0;    // bytes left for the KV cache (negative: short by that much)
  int64_t kv_blocks = 0;
  int64_t kv_tokens = 0;     // positions the KV cache holds on every device of the stage
  int64_t kv_sequences = 0;  // whole sequences of prompt_len + output_len
};

struct InferenceCandidate {
  int tp = 1, pp = 1;
  int layers_per_stage = 0;  // the fullest stage's layers
  StageMemory memory;        // of the stage that admits the fewest sequences
  double memory_needed = 0;  // weights + workspace + KV of workload.batch sequences (bytes)
  double memory_capacity = 0;
  bool fits = false;
  std::string why_not;           // when it does not fit: what is short and by how much
  double prefill_s = 0;          // time to first token of workload.batch prompts
  double per_token_s = 0;        // time per output token at workload.batch
  double tokens_per_s = 0;       // output tokens/s at throughput_batch
  int64_t throughput_batch = 0;  // sequences in flight for tokens_per_s (pp micro-batches)
  double max_rate = 0;           // requests/s at tokens_per_s (tokens_per_s / output_len)
  bool sustains_rate = false;    // fits, and max_rate >= workload.rate
};

struct InferencePlan {
  DecoderConfig config;
  std::string model;  // the preset or path it was read from, for reports
  Cluster cluster;    // sized to the devices
  int devices = 0;
  Objective objective = Objective::kLatency;
  Workload workload;
  std::vector<InferenceCandidate> candidates;  // every valid split, tp ascending
  std::vector<std::string> skipped;            // splits not formed, with the reason
  int chosen = -1;     // index into candidates; -1: none fits (or sustains the rate)
  std::string reason;  // why the chosen one, or why none
};

// The prediction for one split; kInvalidArgument when the split cannot be formed (tp not
// dividing the heads, tp beyond a host, tp x pp != devices, pp above the layers).
Result<InferenceCandidate> predict_inference(const DecoderConfig& config, const Cluster& cluster,
                                             int tp, int pp, const Workload& workload);

// Every split of `devices` devices of `cluster` (a preset sized with with_devices), each
// predicted, and the objective's choice among those that fit (chosen = -1 if none does; the
// reason then says how much memory is missing). Errors: devices not formable on the cluster,
// an invalid workload, no split formable at all.
Result<InferencePlan> enumerate_inference(const DecoderConfig& config, const Cluster& cluster,
                                          int devices, Objective objective,
                                          const Workload& workload);

// enumerate_inference, and an error (kResourceExhausted, saying by how much the model misses,
// or the most requests/s any split sustains, and how many devices would do) when no split
// fits or sustains the rate.
Result<InferencePlan> plan_inference(const DecoderConfig& config, const Cluster& cluster,
                                     int devices, Objective objective, const Workload& workload);

}  // namespace alpa::serve
