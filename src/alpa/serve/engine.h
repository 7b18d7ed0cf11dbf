// The serving engine: continuous batching over a paged KV cache.
//
// Requests wait in a bounded queue. At every step the engine
//   1. drops cancelled sequences (their blocks return to the cache at once),
//   2. admits waiting sequences while the running batch has room and the cache has blocks for
//      the prompt (memory is taken in blocks as a sequence grows, never for its maximum),
//   3. gives each decoding sequence one token and spends the rest of the step's token budget
//      on prompt chunks (chunked prefill: a long prompt is split over several steps, so it does
//      not stall the sequences that are decoding),
//   4. runs one forward pass over the whole batch and samples a token for every sequence
//      whose known tokens are all in the cache,
//   5. retires finished sequences (eos, max_tokens, a stop string, the context length).
// When a decoding sequence needs a block and none is free, the most recently admitted
// sequence is preempted: its blocks are freed and it is queued again at the front, to be
// recomputed from its tokens (its sampler state is kept, so its output does not change).
// With static batching (a baseline for benchmarks) a new batch is admitted only when the
// previous one has finished completely.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "alpa/serve/kv_cache.h"
#include "alpa/serve/model_dir.h"
#include "alpa/serve/parallel_decoder.h"
#include "alpa/serve/sampling.h"
#include "alpa/support/rng.h"
#include "alpa/support/thread_pool.h"

namespace alpa::serve {

struct EngineOptions {
  int64_t block_size = 16;
  int64_t num_blocks = 0;         // 0: from kv_memory_mb
  double kv_memory_mb = 512;      // the cache's size when num_blocks is 0
  int64_t max_running = 16;       // sequences in the running batch
  int64_t max_step_tokens = 256;  // tokens per forward pass (decodes first, then prompt chunks)
  int64_t max_queue = 256;        // waiting requests; more are refused
  bool static_batching = false;
  int threads = 0;  // attention and norm threads (0: all cores)
  // Tensor parallelism and pipeline stages (parallel_decoder.h); kv_memory_mb is then per
  // device, and each device holds the cache of its own layers and heads.
  ParallelShape parallel;
  // One device per process of this world (Open MPI: `alpa serve --backend mpi`): the engine
  // runs in process 0, the others follow its steps (ParallelDecoder::follow). Null: threads.
  World* world = nullptr;
};

// The engine's KV cache: blocks of block_size positions, as many as kv_memory_mb holds (on the
// device that holds the most) unless num_blocks is given. Every process of a distributed engine
// computes the same.
KvCacheShape engine_cache_shape(const DecoderConfig& config, const EngineOptions& options);
// The threads of the engine's pool: options.threads, or all cores.
int engine_threads(const EngineOptions& options);

struct TokenEvent {
  int32_t token = 0;
  std::string text;  // the completion text this token adds (held back inside a UTF-8
                     // character or while it may still begin a stop string)
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

// One request, shared by the engine (which appends) and its caller (which reads).
class Request {
 public:
  // Waits up to `timeout` for events past `next`; appends them to `out`, advances `next`.
  // Returns true when the request has finished and every event has been read.
  bool read(size_t& next, std::vector<TokenEvent>& out, std::chrono::milliseconds timeout);
  void cancel() { cancelled_ = true; }
  bool cancelled() const { return cancelled_; }
  bool finished() const;
  // "stop" (eos or a stop string), "length" (max_tokens or the context), "cancelled", or
  // "error" (see error()).
  std::string finish_reason() const;
  std::string error() const;
  std::string text() const;             // the completion so far
  std::vector<int32_t> tokens() const;  // the completion's ids
  std::vector<TokenEvent> events() const;
  int64_t prompt_tokens() const { return prompt_tokens_; }

 private:
  friend class Engine;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<TokenEvent> events_;
  std::vector<int32_t> tokens_;
  std::string text_;
  bool done_ = false;
  std::string reason_, error_;
  std::atomic<bool> cancelled_{false};
  int64_t prompt_tokens_ = 0;
};

struct EngineMetrics {
  int64_t waiting = 0, running = 0;
  int64_t kv_blocks_used = 0, kv_blocks_total = 0;
  int64_t requests_finished = 0, requests_cancelled = 0, requests_rejected = 0;
  int64_t prompt_tokens = 0, generated_tokens = 0, preemptions = 0, steps = 0;
  int64_t tensor_parallel = 1, pipeline_stages = 1;  // how the model is split
  double tokens_per_second = 0;                      // generated tokens over the last 10 s
  // Seconds, over the last 1000 samples: time to first token, between tokens, per request.
  std::vector<double> ttft, itl, e2e;
};

class Engine {
 public:
  // The options must be valid (CHECK); create() checks them first. A split model uses
  // `parallel`, or cuts one from the model's decoder (or reads one from its weights).
  Engine(LoadedModel model, EngineOptions options,
         std::unique_ptr<ParallelDecoder> parallel = nullptr);
  // An engine, or an error naming what is wrong with the options (a parallel shape the model
  // does not split into) or with the weights. A model opened without its decoder
  // (ModelWeights::kOnDemand) has its devices read their parts, or one device the whole.
  static Result<std::unique_ptr<Engine>> create(LoadedModel model, EngineOptions options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  const LoadedModel& model() const { return model_; }
  const EngineOptions& options() const { return options_; }
  // How the model is split over devices ("one device", "tensor parallel over 2 devices ...").
  std::string parallel_description() const;
  // The parameters this process holds: the whole model on one device, else its devices' parts.
  int64_t parameters_held() const;

  // Queues a request. Errors: an invalid parameter or prompt (kInvalidArgument, naming the
  // field), a full queue (kResourceExhausted), a stopped engine (kFailedPrecondition).
  Result<std::shared_ptr<Request>> submit(std::vector<int32_t> prompt, SamplingParams params);

  // One scheduling step (for callers that drive the engine themselves); false when idle.
  bool step();
  // Runs steps on a thread of its own until stop().
  void start();
  // Stops the thread; unfinished requests end with "cancelled".
  void stop();
  bool idle() const;

  EngineMetrics metrics() const;

 private:
  struct Sequence {
    std::shared_ptr<Request> request;
    SamplingParams params;
    std::vector<int32_t> tokens;  // prompt, then generated
    int64_t prompt_len = 0;
    int64_t computed = 0;  // tokens whose keys and values are in the cache
    BlockTable table;
    Rng rng;
    std::vector<int32_t> generated;
    size_t emitted = 0;  // bytes of the decoded completion already handed out
    size_t max_stop = 0;
    double arrival = 0, last_token = 0;
    uint64_t order = 0;  // admission order, for preemption
  };
  void take_incoming();
  void drop_cancelled();
  void admit();
  bool ensure_blocks(Sequence& s, int64_t positions, const std::vector<Sequence*>& in_step);
  void preempt(Sequence& s);
  void after_token(Sequence& s, const float* logits);
  void finish(Sequence& s, const std::string& reason, const std::string& error = "");
  void emit(Sequence& s, TokenEvent event);
  void record(std::vector<double>& samples, double value);
  void loop();

  LoadedModel model_;
  EngineOptions options_;
  KvCache cache_;  // the blocks; also their storage on one device
  ThreadPool pool_;
  std::unique_ptr<ParallelDecoder> parallel_;  // null on one device

  mutable std::mutex mu_;  // guards incoming_, metrics_, stopped_
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Sequence>> incoming_;
  EngineMetrics metrics_;
  std::deque<std::pair<double, int64_t>> rate_window_;  // (time, tokens) of recent steps
  bool stopped_ = false;
  std::thread thread_;

  // Owned by the stepping thread.
  std::deque<std::unique_ptr<Sequence>> waiting_;
  std::vector<std::unique_ptr<Sequence>> running_;
  std::atomic<int64_t> waiting_count_{0}, running_count_{0}, kv_used_{0};
  std::vector<float> logits_;
  uint64_t admissions_ = 0;
};

}  // namespace alpa::serve
