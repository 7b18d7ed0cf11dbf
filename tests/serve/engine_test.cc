// The engine: paged vs contiguous cache, batch independence, preemption, cancellation, stop
// strings and sampling.
#include <gtest/gtest.h>

#include "alpa/serve/engine.h"
#include "alpa/serve/sampling.h"
#include "alpa/support/rng.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

using testing::checkpoint;

LoadedModel load(const std::string& family) {
  Result<LoadedModel> m = load_model_dir(checkpoint(family, "f32", 1).dir);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return *m;
}

EngineOptions options(int64_t block_size, int64_t num_blocks, int64_t step_tokens = 256) {
  EngineOptions o;
  o.block_size = block_size;
  o.num_blocks = num_blocks;
  o.max_step_tokens = step_tokens;
  o.threads = 2;
  return o;
}

std::vector<int32_t> random_prompt(uint64_t seed, int64_t n, int64_t vocab) {
  Rng rng(seed);
  std::vector<int32_t> p;
  for (int64_t i = 0; i < n; ++i) p.push_back(static_cast<int32_t>(rng.below(vocab - 1)));
  return p;
}

SamplingParams sampled(uint64_t seed, int64_t max_tokens) {
  SamplingParams p;
  p.temperature = 0.8;
  p.top_k = 40;
  p.top_p = 0.95;
  p.seed = seed;
  p.has_seed = true;
  p.max_tokens = max_tokens;
  p.ignore_eos = true;
  return p;
}

void drain(Engine& e) {
  while (e.step()) {
  }
}

// Outputs of a batch of prompts with the given engine options.
std::vector<std::vector<int32_t>> run_batch(const LoadedModel& m, const EngineOptions& o,
                                            const std::vector<std::vector<int32_t>>& prompts,
                                            int64_t* preemptions = nullptr) {
  Engine e(m, o);
  std::vector<std::shared_ptr<Request>> rs;
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto r = e.submit(prompts[i], sampled(100 + i, 20));
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    rs.push_back(*r);
  }
  drain(e);
  std::vector<std::vector<int32_t>> out;
  for (auto& r : rs) out.push_back(r->tokens());
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
  if (preemptions) *preemptions = e.metrics().preemptions;
  return out;
}

std::vector<std::vector<int32_t>> prompts_of(const LoadedModel& m, int n) {
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < n; ++i)
    prompts.push_back(random_prompt(i, 3 + 5 * i % 23, m.decoder->config().vocab));
  return prompts;
}

TEST(Engine, PagedEqualsContiguous) {
  for (const char* family : {"gpt2", "llama"}) {
    LoadedModel m = load(family);
    auto prompts = prompts_of(m, 6);
    auto contiguous = run_batch(m, options(64, 6), prompts);  // one block per sequence
    auto paged = run_batch(m, options(4, 200), prompts);
    EXPECT_EQ(paged, contiguous) << family;
    for (auto& out : paged) EXPECT_EQ(out.size(), 20u);
  }
}

TEST(Engine, OutputDoesNotDependOnTheBatch) {
  LoadedModel m = load("llama");
  auto prompts = prompts_of(m, 8);
  auto together = run_batch(m, options(4, 200, 16), prompts);  // chunked prefill: 16 per step
  for (size_t i = 0; i < prompts.size(); ++i) {
    // The same seed as in the batch run (sampled(100 + index)).
    Engine e(m, options(4, 200));
    auto r = e.submit(prompts[i], sampled(100 + i, 20));
    ASSERT_TRUE(r.ok());
    drain(e);
    EXPECT_EQ((*r)->tokens(), together[i]) << "sequence " << i;
  }
}

TEST(Engine, PreemptionUnderMemoryPressureKeepsOutputs) {
  LoadedModel m = load("gpt2");
  auto prompts = prompts_of(m, 8);
  int64_t preempted = 0, none = 0;
  auto roomy = run_batch(m, options(4, 400), prompts, &none);
  auto tight = run_batch(m, options(4, 24), prompts, &preempted);  // 96 positions for 8 seqs
  EXPECT_EQ(none, 0);
  EXPECT_GT(preempted, 0);
  EXPECT_EQ(tight, roomy);
}

TEST(Engine, ContinuousBatchingAdmitsWhileOthersDecode) {
  LoadedModel m = load("gpt2");
  EngineOptions o = options(4, 200);
  o.max_running = 2;
  Engine e(m, o);
  auto a = e.submit(random_prompt(1, 5, 200), sampled(1, 30));
  auto b = e.submit(random_prompt(2, 5, 200), sampled(2, 3));
  auto c = e.submit(random_prompt(3, 5, 200), sampled(3, 3));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  // b finishes after 3 tokens; c must start while a is still decoding.
  for (int i = 0; i < 8; ++i) e.step();
  EXPECT_FALSE((*a)->finished());
  EXPECT_TRUE((*b)->finished());
  EXPECT_TRUE((*c)->finished());
  drain(e);
  // Static batching holds c back until a finishes too.
  o.static_batching = true;
  Engine s(m, o);
  a = s.submit(random_prompt(1, 5, 200), sampled(1, 30));
  b = s.submit(random_prompt(2, 5, 200), sampled(2, 3));
  c = s.submit(random_prompt(3, 5, 200), sampled(3, 3));
  for (int i = 0; i < 8; ++i) s.step();
  EXPECT_FALSE((*c)->finished());
  EXPECT_TRUE((*c)->tokens().empty());
  drain(s);
  EXPECT_TRUE((*c)->finished());
}

TEST(Engine, CancelledSequencesFreeTheirBlocks) {
  LoadedModel m = load("gpt2");
  Engine e(m, options(4, 100));
  auto r = e.submit(random_prompt(5, 30, 200), sampled(5, 50));
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 3; ++i) e.step();
  EXPECT_GT(e.metrics().kv_blocks_used, 7);
  (*r)->cancel();
  e.step();
  EXPECT_TRUE((*r)->finished());
  EXPECT_EQ((*r)->finish_reason(), "cancelled");
  EXPECT_EQ(e.metrics().kv_blocks_used, 0);
  EXPECT_EQ(e.metrics().requests_cancelled, 1);
}

TEST(Engine, QueueLimitAndValidation) {
  LoadedModel m = load("gpt2");
  EngineOptions o = options(4, 100);
  o.max_queue = 2;
  Engine e(m, o);
  EXPECT_TRUE(e.submit({1, 2}, sampled(1, 2)).ok());
  EXPECT_TRUE(e.submit({1, 2}, sampled(1, 2)).ok());
  auto full = e.submit({1, 2}, sampled(1, 2));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  drain(e);
  EXPECT_EQ(e.submit({}, sampled(1, 2)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(e.submit({100000}, sampled(1, 2)).status().code(), StatusCode::kInvalidArgument);
  SamplingParams bad = sampled(1, 2);
  bad.top_p = 0;
  EXPECT_NE(e.submit({1}, bad).status().message().find("top_p"), std::string::npos);
  bad = sampled(1, 0);
  EXPECT_NE(e.submit({1}, bad).status().message().find("max_tokens"), std::string::npos);
  EXPECT_EQ(e.submit(std::vector<int32_t>(64, 1), sampled(1, 2)).status().code(),
            StatusCode::kInvalidArgument);  // the context is 64
}

TEST(Engine, StopStringsCutTheText) {
  LoadedModel m = load("gpt2");
  auto prompt = m.encode("the weather is");
  ASSERT_TRUE(prompt.ok());
  SamplingParams p = sampled(9, 24);
  Engine e(m, options(4, 100));
  auto full = e.submit(*prompt, p);
  drain(e);
  const std::string text = (*full)->text();
  ASSERT_GE(text.size(), 8u);
  const std::string stop = text.substr(4, 3);
  p.stop = {stop};
  auto cut = e.submit(*prompt, p);
  drain(e);
  EXPECT_EQ((*cut)->text(), text.substr(0, text.find(stop)));
  EXPECT_EQ((*cut)->finish_reason(), "stop");
  // Streamed pieces add up to the text.
  auto again = e.submit(*prompt, p);
  drain(e);
  std::vector<TokenEvent> events;
  size_t next = 0;
  EXPECT_TRUE((*again)->read(next, events, std::chrono::milliseconds(0)));
  std::string joined;
  for (auto& ev : events) joined += ev.text;
  EXPECT_EQ(joined, (*cut)->text());
}

TEST(Sampling, GreedyTopKTopPAndSeeds) {
  std::vector<float> logits = {0.1f, 2.0f, 1.9f, -1.0f, 0.5f};
  Rng rng(1);
  SamplingParams p;
  p.temperature = 0;
  p.logprobs = 2;
  Sample s = sample_token(logits.data(), 5, p, rng);
  EXPECT_EQ(s.token, 1);
  ASSERT_EQ(s.top.size(), 2u);
  EXPECT_EQ(s.top[1].first, 2);
  double z = 0;
  for (float l : logits) z += std::exp(l);
  EXPECT_NEAR(s.logprob, 2.0 - std::log(z), 1e-5);
  p.temperature = 1;
  p.top_k = 1;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits.data(), 5, p, rng).token, 1);
  p.top_k = 0;
  p.top_p = 0.3;  // token 1 alone holds ~39%
  for (int i = 0; i < 20; ++i) EXPECT_EQ(sample_token(logits.data(), 5, p, rng).token, 1);
  p.top_p = 1;
  std::vector<int> counts(5);
  Rng a(7), b(7);
  for (int i = 0; i < 4000; ++i) {
    int t = sample_token(logits.data(), 5, p, a).token;
    EXPECT_EQ(t, sample_token(logits.data(), 5, p, b).token);
    ++counts[static_cast<size_t>(t)];
  }
  for (size_t i = 0; i < 5; ++i)
    EXPECT_NEAR(counts[i] / 4000.0, std::exp(logits[i]) / z, 0.03) << i;
}

}  // namespace
}  // namespace alpa::serve
