// The engine's step: batch, forward, sample, retire.
#include <algorithm>

#include "alpa/serve/engine.h"

namespace alpa::serve {
namespace {

double now_s() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

size_t incomplete_utf8_tail(const std::string& s) {
  const size_t n = s.size();
  for (size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;
    size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : 4;
    return len > back ? back : 0;
  }
  return 0;
}

}  // namespace

void Engine::emit(Sequence& s, TokenEvent event) {
  Request& r = *s.request;
  {
    std::lock_guard<std::mutex> lock(r.mu_);
    r.tokens_.push_back(event.token);
    r.text_ += event.text;
    r.events_.push_back(std::move(event));
  }
  r.cv_.notify_all();
}

void Engine::after_token(Sequence& s, const float* logits) {
  const DecoderConfig& c = model_.config;
  Sample pick = sample_token(logits, c.vocab, s.params, s.rng);
  const double t = now_s();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (s.generated.empty()) {
      record(metrics_.ttft, t - s.arrival);
    } else {
      record(metrics_.itl, t - s.last_token);
    }
    ++metrics_.generated_tokens;
  }
  s.last_token = t;
  s.generated.push_back(pick.token);
  s.tokens.push_back(pick.token);
  std::string reason;
  const bool eos = pick.token == model_.eos_id && !s.params.ignore_eos;
  if (eos) reason = "stop";
  if (static_cast<int64_t>(s.generated.size()) >= s.params.max_tokens) reason = "length";
  if (static_cast<int64_t>(s.tokens.size()) >= c.max_positions) reason = "length";
  // The completion's text: decoded whole (so multi-byte characters split over tokens come out
  // right), cut at the first stop string, handed out in safe pieces.
  TokenEvent ev;
  ev.token = pick.token;
  ev.logprob = pick.logprob;
  ev.top = std::move(pick.top);
  std::string text;
  if (model_.tokenizer != nullptr) {
    std::vector<int32_t> visible = s.generated;
    if (eos) visible.pop_back();
    Result<std::string> decoded = model_.tokenizer->decode(visible);
    if (decoded.ok()) text = std::move(*decoded);
    for (const std::string& stop : s.params.stop) {
      const size_t from = s.emitted > stop.size() ? s.emitted - stop.size() : 0;
      const size_t at = text.find(stop, from);
      if (at != std::string::npos) {
        text.resize(at);
        reason = "stop";
      }
    }
    size_t safe = text.size();
    if (reason.empty()) {
      safe -= incomplete_utf8_tail(text);
      safe = s.max_stop > 1 ? (safe > s.max_stop - 1 ? safe - (s.max_stop - 1) : 0) : safe;
    }
    if (safe > s.emitted) {
      ev.text = text.substr(s.emitted, safe - s.emitted);
      s.emitted = safe;
    }
  }
  emit(s, std::move(ev));
  if (!reason.empty()) finish(s, reason);
}

bool Engine::step() {
  take_incoming();
  drop_cancelled();
  admit();
  waiting_count_ = static_cast<int64_t>(waiting_.size());
  if (running_.empty()) {
    kv_used_ = cache_.used_blocks();
    running_count_ = 0;
    return false;
  }
  // Decoding sequences first (one token each), then prompt chunks within the token budget.
  std::vector<Sequence*> order;
  for (auto& s : running_)
    if (static_cast<int64_t>(s->tokens.size()) - s->computed == 1) order.push_back(s.get());
  for (auto& s : running_)
    if (static_cast<int64_t>(s->tokens.size()) - s->computed > 1) order.push_back(s.get());
  std::vector<Sequence*> in_step;
  std::vector<SequenceChunk> chunks;
  int64_t budget = std::max<int64_t>(1, options_.max_step_tokens);
  for (Sequence* s : order) {
    if (budget <= 0) break;
    if (std::find_if(running_.begin(), running_.end(),
                     [&](const auto& r) { return r.get() == s; }) == running_.end())
      continue;  // preempted while this step was being built
    const int64_t n = std::min(static_cast<int64_t>(s->tokens.size()) - s->computed, budget);
    if (!ensure_blocks(*s, s->computed + n, in_step)) {
      if (in_step.empty()) {
        finish(*s, "error", "the KV cache cannot hold this sequence");
        for (auto& r : running_)
          if (r.get() == s) r.reset();
        running_.erase(std::remove(running_.begin(), running_.end(), nullptr), running_.end());
      }
      continue;
    }
    in_step.push_back(s);
    chunks.push_back({s->tokens.data() + s->computed, n, s->computed, &s->table, false});
    budget -= n;
  }
  if (!chunks.empty() && parallel_ == nullptr) {
    model_.decoder->forward(chunks, cache_, pool_, logits_);
  } else if (!chunks.empty()) {
    const Status failed = parallel_->forward(chunks, logits_);
    if (!failed.ok()) {  // a device failed: the step's sequences end with its error
      for (Sequence* s : in_step) finish(*s, "error", failed.to_string());
      in_step.clear();
    }
  }
  const int64_t V = model_.config.vocab;
  int64_t sampled = 0;
  for (size_t i = 0; i < in_step.size(); ++i) {
    Sequence& s = *in_step[i];
    s.computed += chunks[i].count;
    if (s.computed == static_cast<int64_t>(s.tokens.size())) {
      after_token(s, logits_.data() + static_cast<int64_t>(i) * V);
      ++sampled;
    }
  }
  running_.erase(std::remove_if(running_.begin(), running_.end(),
                                [](const auto& s) { return s->request->finished(); }),
                 running_.end());
  kv_used_ = cache_.used_blocks();  // before the counts, so idle() implies it is settled
  waiting_count_ = static_cast<int64_t>(waiting_.size());
  running_count_ = static_cast<int64_t>(running_.size());
  const double t = now_s();
  std::lock_guard<std::mutex> lock(mu_);
  ++metrics_.steps;
  rate_window_.emplace_back(t, sampled);
  while (!rate_window_.empty() && rate_window_.front().first < t - 10) rate_window_.pop_front();
  return true;
}

void Engine::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] {
        return stopped_ || !incoming_.empty() || !running_.empty() || !waiting_.empty();
      });
      if (stopped_) break;
    }
    step();
  }
}

void Engine::start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopped_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Engine::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  take_incoming();
  for (auto& s : waiting_) finish(*s, "cancelled");
  for (auto& s : running_) finish(*s, "cancelled");
  waiting_.clear();
  running_.clear();
  waiting_count_ = 0;
  running_count_ = 0;
  kv_used_ = cache_.used_blocks();
}

bool Engine::idle() const {
  std::lock_guard<std::mutex> lock(mu_);
  return incoming_.empty() && waiting_count_ == 0 && running_count_ == 0;
}

EngineMetrics Engine::metrics() const {
  std::lock_guard<std::mutex> lock(mu_);
  EngineMetrics m = metrics_;
  m.waiting = waiting_count_ + static_cast<int64_t>(incoming_.size());
  m.running = running_count_;
  m.kv_blocks_used = kv_used_;
  if (rate_window_.size() >= 2) {
    int64_t tokens = 0;
    for (const auto& w : rate_window_) tokens += w.second;
    const double span = std::max(1e-3, now_s() - rate_window_.front().first);
    m.tokens_per_second = static_cast<double>(tokens) / span;
  }
  return m;
}

}  // namespace alpa::serve
