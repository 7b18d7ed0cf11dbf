#include "alpa/serve/engine.h"

#include <algorithm>

#include "alpa/support/check.h"

namespace alpa::serve {
namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace

KvCacheShape engine_cache_shape(const DecoderConfig& c, const EngineOptions& o) {
  KvCacheShape s;
  s.layers = c.layers;
  s.kv_heads = c.kv_heads;
  s.head_dim = c.head_dim;
  s.block_size = std::max<int64_t>(1, o.block_size);
  s.num_blocks = o.num_blocks;
  const int64_t block_bytes =
      o.parallel.devices() > 1 ? device_block_bytes(c, o.parallel, s.block_size) : s.block_bytes();
  if (s.num_blocks <= 0)
    s.num_blocks =
        std::max<int64_t>(1, static_cast<int64_t>(o.kv_memory_mb * 1024 * 1024) / block_bytes);
  return s;
}

int engine_threads(const EngineOptions& o) {
  return o.threads > 0 ? o.threads
                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

bool Request::read(size_t& next, std::vector<TokenEvent>& out, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, timeout, [&] { return done_ || events_.size() > next; });
  for (; next < events_.size(); ++next) out.push_back(events_[next]);
  return done_;
}
bool Request::finished() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}
std::string Request::finish_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reason_;
}
std::string Request::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}
std::string Request::text() const {
  std::lock_guard<std::mutex> lock(mu_);
  return text_;
}
std::vector<int32_t> Request::tokens() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tokens_;
}

std::vector<TokenEvent> Request::events() const {
  std::lock_guard<std::mutex> lock(mu_);
  return events_;
}

namespace {

// Where the devices of a split model take their parts from: the decoder, else the weights.
DecoderSource decoder_source(const LoadedModel& m) {
  if (m.decoder != nullptr) return DecoderSource(*m.decoder);
  ALPA_CHECK(m.weights != nullptr) << "a model with neither a decoder nor weights";
  return DecoderSource(m.config, *m.weights);
}

Result<std::unique_ptr<ParallelDecoder>> make_parallel(const LoadedModel& m, const EngineOptions& o,
                                                       const KvCacheShape& cache) {
  const DecoderSource source = decoder_source(m);
  if (o.world != nullptr)
    return ParallelDecoder::create_distributed(source, o.parallel, cache.block_size,
                                               cache.num_blocks, engine_threads(o), *o.world);
  return ParallelDecoder::create(source, o.parallel, cache.block_size, cache.num_blocks,
                                 engine_threads(o));
}

}  // namespace

Engine::Engine(LoadedModel model, EngineOptions options, std::unique_ptr<ParallelDecoder> parallel)
    : model_(std::move(model)),
      options_(options),
      cache_(engine_cache_shape(model_.config, options), options.parallel.devices() == 1),
      pool_(options.parallel.devices() == 1 ? engine_threads(options) : 1),
      parallel_(std::move(parallel)) {
  metrics_.kv_blocks_total = cache_.shape().num_blocks;
  metrics_.tensor_parallel = options_.parallel.tensor;
  metrics_.pipeline_stages = options_.parallel.stages;
  if (options_.parallel.devices() == 1) {
    ALPA_CHECK(model_.decoder != nullptr) << "one device needs the whole decoder";
    return;
  }
  if (parallel_ != nullptr) return;
  Result<std::unique_ptr<ParallelDecoder>> p = make_parallel(model_, options_, cache_.shape());
  ALPA_CHECK(p.ok()) << p.status().to_string();
  parallel_ = std::move(*p);
}

Result<std::unique_ptr<Engine>> Engine::create(LoadedModel model, EngineOptions options) {
  ALPA_RETURN_IF_ERROR(check_parallel(model.config, options.parallel));
  if (options.world != nullptr) {
    ALPA_RETURN_IF_ERROR(check_distributed(model.config, options.parallel, *options.world));
    if (options.world->process_index() != 0)
      return failed_precondition(
          cat("the engine runs in process 0, not ", options.world->process_index()),
          "the other processes follow its steps (ParallelDecoder::follow)");
  }
  // Once the devices hold what they read, the checkpoint's files are let go (the caller's copy
  // of the model may still hold them).
  if (options.parallel.devices() == 1) {
    if (model.decoder == nullptr) ALPA_RETURN_IF_ERROR(model.load_decoder());
    model.weights.reset();
    return std::make_unique<Engine>(std::move(model), options);
  }
  ALPA_ASSIGN_OR_RETURN(std::unique_ptr<ParallelDecoder> parallel,
                        make_parallel(model, options, engine_cache_shape(model.config, options)));
  model.weights.reset();
  return std::make_unique<Engine>(std::move(model), options, std::move(parallel));
}

std::string Engine::parallel_description() const {
  return describe(options_.parallel, model_.config);
}

int64_t Engine::parameters_held() const {
  return parallel_ != nullptr ? parallel_->parameters_held() : model_.decoder->num_parameters();
}

Engine::~Engine() {
  stop();
}

Result<std::shared_ptr<Request>> Engine::submit(std::vector<int32_t> prompt,
                                                SamplingParams params) {
  ALPA_RETURN_IF_ERROR(validate(params));
  const DecoderConfig& c = model_.config;
  if (prompt.empty()) return invalid_argument("prompt is empty", "send at least one token");
  for (int32_t t : prompt)
    if (t < 0 || t >= c.vocab)
      return invalid_argument(
          cat("prompt token ", t, " is outside the vocabulary (", c.vocab, " tokens)"));
  if (static_cast<int64_t>(prompt.size()) >= c.max_positions)
    return invalid_argument(
        cat("prompt is ", prompt.size(), " tokens; the model's context is ", c.max_positions),
        "shorten the prompt");
  if (cache_.blocks_for(static_cast<int64_t>(prompt.size()) + 1) > cache_.shape().num_blocks)
    return invalid_argument(cat("prompt is ", prompt.size(), " tokens; the KV cache holds ",
                                cache_.shape().num_blocks * cache_.shape().block_size),
                            "shorten the prompt or give the server more --kv-memory-mb");
  auto s = std::make_unique<Sequence>();
  s->request = std::make_shared<Request>();
  s->request->prompt_tokens_ = static_cast<int64_t>(prompt.size());
  s->params = std::move(params);
  s->tokens = std::move(prompt);
  s->prompt_len = static_cast<int64_t>(s->tokens.size());
  s->rng = Rng(s->params.has_seed ? s->params.seed : static_cast<uint64_t>(now_s() * 1e9));
  for (const std::string& stop : s->params.stop) s->max_stop = std::max(s->max_stop, stop.size());
  s->arrival = now_s();
  std::shared_ptr<Request> handle = s->request;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_ && thread_.joinable()) return failed_precondition("the server is shutting down");
    if (static_cast<int64_t>(incoming_.size()) + waiting_count_ >= options_.max_queue) {
      ++metrics_.requests_rejected;
      return resource_exhausted(cat("the queue is full (", options_.max_queue, " requests)"),
                                "retry later");
    }
    metrics_.prompt_tokens += s->prompt_len;
    incoming_.push_back(std::move(s));
  }
  cv_.notify_all();
  return handle;
}

void Engine::take_incoming() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!incoming_.empty()) {
    waiting_.push_back(std::move(incoming_.front()));
    incoming_.pop_front();
  }
  waiting_count_ = static_cast<int64_t>(waiting_.size());  // with incoming_, for idle()
}

void Engine::finish(Sequence& s, const std::string& reason, const std::string& error) {
  cache_.release(s.table);
  Request& r = *s.request;
  {
    std::lock_guard<std::mutex> lock(r.mu_);
    r.done_ = true;
    r.reason_ = reason;
    r.error_ = error;
  }
  r.cv_.notify_all();
  std::lock_guard<std::mutex> lock(mu_);
  if (reason == "cancelled") {
    ++metrics_.requests_cancelled;
  } else {
    ++metrics_.requests_finished;
    record(metrics_.e2e, now_s() - s.arrival);
  }
}

void Engine::drop_cancelled() {
  auto sweep = [&](auto& list) {
    for (auto& s : list)
      if (s->request->cancelled()) {
        finish(*s, "cancelled");
        s.reset();
      }
    list.erase(std::remove(list.begin(), list.end(), nullptr), list.end());
  };
  sweep(waiting_);
  sweep(running_);
}

void Engine::admit() {
  if (options_.static_batching && !running_.empty()) return;
  while (!waiting_.empty() && static_cast<int64_t>(running_.size()) < options_.max_running) {
    Sequence& s = *waiting_.front();
    // The prompt's blocks, and one more for the first generated token.
    if (cache_.free_blocks() < cache_.blocks_for(static_cast<int64_t>(s.tokens.size()) + 1)) break;
    cache_.reserve(s.table, static_cast<int64_t>(s.tokens.size()));
    s.order = ++admissions_;
    running_.push_back(std::move(waiting_.front()));
    waiting_.pop_front();
  }
}

void Engine::preempt(Sequence& s) {
  cache_.release(s.table);
  s.computed = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++metrics_.preemptions;
  }
  for (auto& r : running_)
    if (r.get() == &s) {
      waiting_.push_front(std::move(r));
      break;
    }
  running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
}

bool Engine::ensure_blocks(Sequence& s, int64_t positions, const std::vector<Sequence*>& in_step) {
  while (!cache_.reserve(s.table, positions)) {
    // Preempt the most recently admitted sequence that is not already in this step.
    Sequence* victim = nullptr;
    for (auto& r : running_)
      if (r.get() != &s && std::find(in_step.begin(), in_step.end(), r.get()) == in_step.end() &&
          (victim == nullptr || r->order > victim->order))
        victim = r.get();
    if (victim == nullptr) return false;
    preempt(*victim);
  }
  return true;
}

void Engine::record(std::vector<double>& samples, double value) {
  if (samples.size() >= 1000) samples.erase(samples.begin());
  samples.push_back(value);
}

}  // namespace alpa::serve
