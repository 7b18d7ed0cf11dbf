// A decoder checkpoint run through the compile driver: its prefill and decode steps
// (step_graph.h) planned for a device mesh by the intra-op ILP (compile_step: the KV cache and
// the weights in its memory model) or for pipeline stages of meshes (compile_stages), lowered
// to Programs and run by the training runtime's ProgramRunner on the devices (threads of one
// process).
//
// Two programs are compiled from one model: prefill, `chunk` tokens of one row per step, and
// decode, one token per row, each with its runner (a Program is one instruction list). The
// decode runner uses the prefill runner's blocks of every value both hold alike
// (ProgramRunner::share_values_of): the weights the ILP lays out the same way for both shapes,
// and, with one decode row, the KV cache, which the prompt's prefill then leaves in place for
// decoding. What is not shared it holds itself; a cache of other shape (several decode rows)
// moves from the prefill runner to the decode runner once per generation.
//
// This is the compiled road beside serve/'s kernels (serve/decoder.h), which the engine and the
// server run: the same logits (tests/infer check both against PyTorch), planned rather than
// hand-split.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "alpa/cluster/cluster.h"
#include "alpa/compile/compile.h"
#include "alpa/data/safetensors.h"
#include "alpa/infer/step_graph.h"
#include "alpa/runtime/program_runner.h"
#include "alpa/serve/config.h"

namespace alpa::infer {

struct CompiledDecoderOptions {
  MeshShape mesh{1, 1};  // of each pipeline stage
  // Pipeline stages: the step's forward clustered into this many layers of balanced FLOPs
  // (Alpa's layer clustering), stage s on devices [s x mesh.size(), (s + 1) x mesh.size()), each
  // stage's layouts chosen by the ILP on its mesh. One micro-batch per step: the cache is state
  // of the whole step, so micro-batches cannot take turns through the stages.
  int stages = 1;
  std::string cluster = "local";  // a preset or a cluster file: the devices the ILP plans for
  int64_t context = 0;            // KV cache positions (0: the model's max_positions)
  int64_t chunk = 16;             // prompt tokens per prefill step
  int64_t batch = 1;              // rows of the decode step
  // Memory per device the plan must fit, weights and KV cache included (0: the cluster's).
  double memory_budget_bytes = 0;
  int threads_per_device = 1;
  // The job's devices: null runs every device on a thread of this process; an MpiWorld runs one
  // device per process (its size must be stages x mesh devices). Every process compiles, checks
  // that its programs are process 0's, loads only the weights its devices own, and calls
  // prefill / generate alike; the results are process 0's (the next token is broadcast from it
  // each step).
  World* world = nullptr;
};

class CompiledDecoder {
 public:
  // Compiles both steps and loads the weights of `weights` into each runner. Errors: the
  // compile driver's (a mesh the cluster cannot form, a plan that does not fit), a tensor the
  // checkpoint lacks or has in another shape.
  static Result<std::unique_ptr<CompiledDecoder>> create(const serve::DecoderConfig& config,
                                                         const SafetensorsSet& weights,
                                                         const CompiledDecoderOptions& options);

  const serve::DecoderConfig& config() const { return config_; }
  const Compiled& prefill_compiled() const { return prefill_; }
  const Compiled& decode_compiled() const { return decode_; }
  int64_t context() const { return context_; }
  // Seconds the last generate() spent in prefill (to the first token) and after it (the cache
  // handed over and every decode step).
  double last_prefill_s() const { return last_prefill_s_; }
  // Blocks (weights, caches) the decode runner shares with the prefill runner instead of
  // holding its own (per device, summed).
  int shared_weight_blocks() const { return shared_blocks_; }
  double last_decode_s() const { return last_decode_s_; }

  // Logits ([tokens, vocab]) of every token of `tokens`, run in prefill chunks from position 0
  // of row 0 (the cache's earlier contents are overwritten). Under MPI, at process 0 (empty at
  // the others).
  Result<std::vector<float>> prefill(const std::vector<int32_t>& tokens);
  // Greedy continuation of `prompt`: up to `max_tokens` ids (the argmax, lowest id on ties),
  // ending early with `eos` when it is generated (eos < 0: never). On every process.
  Result<std::vector<int32_t>> generate(const std::vector<int32_t>& prompt, int64_t max_tokens,
                                        int32_t eos = -1);

 private:
  CompiledDecoder() = default;
  // Runs one step of `runner` and returns its logits state, whole.
  Result<Tensor> run(ProgramRunner& runner, const std::vector<int32_t>& tokens, int64_t rows,
                     int64_t per_row, int64_t position);

  // Process 0's token, on every process.
  Result<int32_t> shared_token(int32_t mine);
  // Moves the prompt's cache from the prefill runner to row 0 of the decode runner's.
  Status hand_over_cache();

  serve::DecoderConfig config_;
  CompiledDecoderOptions options_;
  int64_t context_ = 0;
  double last_prefill_s_ = 0, last_decode_s_ = 0;
  int shared_blocks_ = 0;
  Compiled prefill_, decode_;
  std::unique_ptr<ProgramRunner> prefill_runner_, decode_runner_;
};

// A split of `devices` devices for compiled inference: `stages` pipeline stages, each on a 1 x
// (devices / stages) mesh, and its decode step compiled and simulated.
struct SplitCandidate {
  int stages = 1;
  MeshShape mesh{1, 1};
  int64_t batch = 0;        // decode rows simulated (throughput: the most that fit, doubling)
  double step_s = 0;        // simulated decode step at `batch`
  double tokens_per_s = 0;  // batch / step_s
  double peak_bytes = 0;    // simulated peak memory per device
  std::string why_not;      // when no batch could be compiled (does not fit, does not divide)
};

struct SplitChoice {
  std::vector<SplitCandidate> candidates;  // stages ascending
  int chosen = -1;
  std::string reason;
};

// The split of `devices` devices the objective prefers, each candidate's decode step compiled by
// the compile driver and simulated on options.cluster under options.memory_budget_bytes:
// latency, the least simulated time per step at options.batch rows; throughput, the most tokens
// per second at the largest batch (doubling up to `max_batch`) whose step fits. A pipeline runs
// one micro-batch per step (see CompiledDecoderOptions::stages), so its stages do not overlap:
// it wins by memory (a larger batch fits), not by pipelining. kResourceExhausted when no split
// fits.
Result<SplitChoice> choose_split(const serve::DecoderConfig& config, const std::string& prefix,
                                 int devices, bool throughput,
                                 const CompiledDecoderOptions& options, int64_t max_batch = 64);

// What was compiled, per step ("prefill", "decode"): its shape, the stages and their mesh, the
// compile phases' seconds, the plan's predictions (one mesh: compute, communication, peak
// memory per device) and the simulated step, the bytes per device of the weights and of the KV
// cache (the fullest stage's), how many owned values are held split, the collectives per step,
// and the layouts of layer 0's values.
nlohmann::json describe(const CompiledDecoder& decoder);
// The same as a few lines of text.
std::string describe_text(const CompiledDecoder& decoder);

}  // namespace alpa::infer
