// Tensor-parallel and pipelined inference equal one device: logits over prefill, chunked
// prefill and decode steps of a mixed batch, greedy generations through the engine, and the
// errors for shapes a model does not split into.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>
#include <httplib.h>

#include "alpa/serve/engine.h"
#include "alpa/serve/http_server.h"
#include "alpa/serve/parallel_decoder.h"
#include "alpa/support/rng.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

using testing::checkpoint;

std::shared_ptr<const Decoder> checkpoint_decoder(const std::string& family) {
  Result<LoadedModel> m = load_model_dir(checkpoint(family, "f32", 1).dir);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return m.ok() ? m->decoder : nullptr;
}

// A random decoder of `family` with `layers` layers (4 heads; LLaMA with 2 KV heads), with
// random biases so that a bias added by every shard would show.
std::shared_ptr<const Decoder> random_decoder(Family family, int64_t layers) {
  DecoderConfig c;
  c.family = family;
  c.vocab = 301;
  c.hidden = 32;
  c.layers = layers;
  c.heads = 4;
  c.kv_heads = family == Family::kLlama ? 2 : 4;
  c.head_dim = 8;
  c.intermediate = family == Family::kLlama ? 48 : 64;
  c.max_positions = 64;
  c.activation = family == Family::kGpt2  ? Activation::kGeluTanh
                 : family == Family::kOpt ? Activation::kRelu
                                          : Activation::kSilu;
  c.tie_embeddings = family != Family::kLlama;
  return std::make_shared<Decoder>(Decoder::random(c, 11));
}

// One forward call of the schedule: (sequence, first token, count, all logits).
struct Piece {
  int seq;
  int64_t start, count;
  bool all;
};

// Prefill of two sequences, a chunked rest of a prompt beside a prefill, decode steps, then a
// third sequence arriving into the decoding batch.
const std::vector<std::vector<Piece>> kSchedule = {
    {{0, 0, 8, true}, {1, 0, 5, true}},
    {{0, 8, 4, false}, {1, 5, 2, true}},
    {{0, 12, 1, false}, {1, 7, 1, false}},
    {{1, 8, 1, false}, {0, 13, 1, false}},
    {{0, 14, 1, false}, {2, 0, 6, true}, {1, 9, 1, false}},
    {{2, 6, 1, false}, {0, 15, 1, false}, {1, 10, 1, false}},
    {{0, 16, 1, false}, {1, 11, 1, false}, {2, 7, 1, false}},
};

// The largest |parallel - one device| over the largest |one device| across the schedule.
double relative_difference(const Decoder& whole, const ParallelShape& shape) {
  const int64_t V = whole.config().vocab;
  Rng rng(5);
  std::vector<std::vector<int32_t>> tokens(3);
  for (auto& t : tokens)
    for (int i = 0; i < 20; ++i) t.push_back(static_cast<int32_t>(rng.below(V)));
  KvCache cache(whole.cache_shape(4, 64));
  ThreadPool pool(2);
  Result<std::unique_ptr<ParallelDecoder>> par = ParallelDecoder::create(whole, shape, 4, 64, 2);
  EXPECT_TRUE(par.ok()) << par.status().to_string();
  if (!par.ok()) return INFINITY;
  std::vector<BlockTable> tables(3);
  double worst = 0, scale = 0;
  for (const auto& step : kSchedule) {
    std::vector<SequenceChunk> chunks;
    for (const Piece& p : step) {
      EXPECT_TRUE(cache.reserve(tables[p.seq], p.start + p.count));
      chunks.push_back({tokens[p.seq].data() + p.start, p.count, p.start, &tables[p.seq], p.all});
    }
    std::vector<float> want, got;
    whole.forward(chunks, cache, pool, want);
    const Status s = (*par)->forward(chunks, got);
    EXPECT_TRUE(s.ok()) << s.to_string();
    EXPECT_EQ(got.size(), want.size());
    if (got.size() != want.size()) return INFINITY;
    for (size_t i = 0; i < got.size(); ++i) {
      worst = std::max(worst, static_cast<double>(std::fabs(got[i] - want[i])));
      scale = std::max(scale, static_cast<double>(std::fabs(want[i])));
    }
  }
  return worst / std::max(scale, 1e-30);
}

std::string name(const ParallelShape& s) {
  return "mesh 1x" + std::to_string(s.tensor) + ", " + std::to_string(s.stages) + " stages";
}

void expect_equal_to_one_device(const Decoder& whole, const std::vector<ParallelShape>& shapes) {
  for (const ParallelShape& shape : shapes) {
    const double d = relative_difference(whole, shape);
    std::cout << family_name(whole.config().family) << " " << whole.config().layers << " layers, "
              << name(shape) << ": max |parallel - one device| / max |logit| = " << d << "\n";
    EXPECT_LE(d, 1e-5) << name(shape);
  }
}

TEST(ParallelDecoder, Gpt2CheckpointEqualsOneDevice) {
  auto d = checkpoint_decoder("gpt2");
  ASSERT_NE(d, nullptr);
  expect_equal_to_one_device(*d, {{2, 1}, {4, 1}, {1, 2}, {2, 2}});
}

TEST(ParallelDecoder, OptCheckpointEqualsOneDevice) {
  auto d = checkpoint_decoder("opt");
  ASSERT_NE(d, nullptr);
  expect_equal_to_one_device(*d, {{2, 1}, {4, 1}, {1, 2}, {2, 2}});
}

TEST(ParallelDecoder, LlamaGqaCheckpointEqualsOneDevice) {
  auto d = checkpoint_decoder("llama");  // 4 heads, 2 KV heads
  ASSERT_NE(d, nullptr);
  expect_equal_to_one_device(*d, {{2, 1}, {1, 2}, {2, 2}});
}

TEST(ParallelDecoder, ThreeStagesEqualOneDevice) {
  for (Family f : {Family::kGpt2, Family::kOpt, Family::kLlama}) {
    expect_equal_to_one_device(*random_decoder(f, 3), {{1, 3}, {2, 3}});
    expect_equal_to_one_device(*random_decoder(f, 5), {{1, 3}});
  }
  expect_equal_to_one_device(*random_decoder(Family::kGpt2, 4), {{4, 1}, {1, 4}});
}

TEST(ParallelDecoder, StagesAndDescriptions) {
  using Stages = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(stage_layers(5, 3, 0), (Stages{{0, 2}, {2, 4}, {4, 5}}));
  // The head's weights count on the last stage: GPT-2-124M's vocabulary projection is 5.45
  // layers' worth, so 2 stages split its 12 layers 9 | 3.
  EXPECT_EQ(stage_layers(12, 2, 5.45), (Stages{{0, 9}, {9, 12}}));
  EXPECT_EQ(stage_layers(4, 4, 100), (Stages{{0, 1}, {1, 2}, {2, 3}, {3, 4}}));
  auto d = random_decoder(Family::kLlama, 4);
  EXPECT_EQ(describe({1, 1}, d->config()), "one device");
  EXPECT_EQ(describe({2, 1}, d->config()), "tensor parallel over 2 devices (mesh 1x2); 2 devices");
  EXPECT_EQ(describe({1, 2}, d->config()), "2 pipeline stages (layers 0-2 | 3-3); 2 devices");
  // Every device holds the cache of its own layers and KV heads only.
  const int64_t one = device_block_bytes(d->config(), {1, 1}, 16);
  EXPECT_EQ(device_block_bytes(d->config(), {2, 1}, 16) * 2, one);
  EXPECT_EQ(device_block_bytes(d->config(), {1, 2}, 16) * 4, one * 3);  // 3 of 4 layers
  EXPECT_EQ(device_block_bytes(d->config(), {2, 2}, 16) * 8, one * 3);
}

TEST(ParallelDecoder, ShapesTheModelDoesNotSplitIntoAreErrors) {
  auto llama = random_decoder(Family::kLlama, 2);  // 4 heads, 2 KV heads, 48 MLP columns
  auto error = [&](const ParallelShape& shape) {
    Result<std::unique_ptr<ParallelDecoder>> p = ParallelDecoder::create(*llama, shape, 4, 8, 1);
    EXPECT_FALSE(p.ok()) << name(shape);
    return p.ok() ? std::string() : p.status().to_string();
  };
  EXPECT_NE(error({3, 1}).find("4 attention heads"), std::string::npos) << error({3, 1});
  EXPECT_NE(error({4, 1}).find("2 key/value heads"), std::string::npos) << error({4, 1});
  EXPECT_NE(error({4, 1}).find("--mesh"), std::string::npos);
  EXPECT_NE(error({1, 3}).find("2 layers"), std::string::npos) << error({1, 3});
  EXPECT_NE(error({0, 1}).find("below 1"), std::string::npos);
  Result<LoadedModel> m = load_model_dir(checkpoint("llama", "f32", 1).dir);
  ASSERT_TRUE(m.ok());
  EngineOptions o;
  o.num_blocks = 8;
  o.parallel = {4, 1};
  Result<std::unique_ptr<Engine>> e = Engine::create(*m, o);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().to_string().find("key/value heads"), std::string::npos);
}

// Greedy completions of a batch of prompts (arriving together, so they share steps).
std::vector<std::vector<int32_t>> greedy(const LoadedModel& m, const ParallelShape& shape,
                                         std::string* description = nullptr) {
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 64;
  o.max_step_tokens = 10;  // long prompts in chunks beside decoding sequences
  o.threads = 2;
  o.parallel = shape;
  Result<std::unique_ptr<Engine>> e = Engine::create(m, o);
  EXPECT_TRUE(e.ok()) << e.status().to_string();
  if (!e.ok()) return {};
  if (description != nullptr) *description = (*e)->parallel_description();
  std::vector<std::shared_ptr<Request>> rs;
  Rng rng(9);
  for (int n : {12, 3, 17, 5}) {
    std::vector<int32_t> prompt;
    for (int i = 0; i < n; ++i)
      prompt.push_back(static_cast<int32_t>(rng.below(m.config.vocab - 1)));
    SamplingParams p;
    p.temperature = 0;
    p.max_tokens = 14;
    p.ignore_eos = true;
    Result<std::shared_ptr<Request>> r = (*e)->submit(prompt, p);
    EXPECT_TRUE(r.ok());
    if (r.ok()) rs.push_back(*r);
  }
  while ((*e)->step()) {
  }
  EXPECT_EQ((*e)->metrics().kv_blocks_used, 0);
  std::vector<std::vector<int32_t>> out;
  for (auto& r : rs) {
    EXPECT_EQ(r->finish_reason(), "length") << r->error();
    out.push_back(r->tokens());
  }
  return out;
}

TEST(ParallelEngine, GreedyGenerationsEqualOneDevice) {
  for (const char* family : {"gpt2", "opt", "llama"}) {
    Result<LoadedModel> m = load_model_dir(checkpoint(family, "f32", 1).dir);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    const auto want = greedy(*m, {1, 1});
    ASSERT_EQ(want.size(), 4u);
    for (const ParallelShape& shape : std::vector<ParallelShape>{{2, 1}, {1, 2}, {2, 2}}) {
      std::string description;
      EXPECT_EQ(greedy(*m, shape, &description), want) << family << " " << name(shape);
      EXPECT_NE(description.find(std::to_string(shape.devices()) + " devices"), std::string::npos);
    }
  }
}

// /metrics says how the model is split, and a split engine answers completions over HTTP.
TEST(ParallelServer, MetricsReportTheSplit) {
  Result<LoadedModel> m = load_model_dir(checkpoint("gpt2", "f32", 1).dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EngineOptions o;
  o.num_blocks = 32;
  o.block_size = 4;
  o.threads = 2;
  o.parallel = {2, 2};
  Result<std::unique_ptr<Engine>> e = Engine::create(*m, o);
  ASSERT_TRUE(e.ok()) << e.status().to_string();
  ServerOptions so;
  so.port = 0;
  HttpServer server(**e, so);
  Result<int> port = server.bind();
  ASSERT_TRUE(port.ok()) << port.status().to_string();
  (*e)->start();
  std::thread serving([&] { server.serve(); });
  httplib::Client c("127.0.0.1", *port);
  auto done = c.Post("/v1/completions", R"({"prompt": "hello", "max_tokens": 5, "temperature": 0})",
                     "application/json");
  ASSERT_TRUE(done);
  EXPECT_EQ(done->status, 200) << done->body;
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_NE(metrics->body.find("alpa_tensor_parallel_devices 2"), std::string::npos);
  EXPECT_NE(metrics->body.find("alpa_pipeline_stages 2"), std::string::npos);
  // The process holds the 4 devices' parts: more than the model (replicated norms, positions)
  // but less than twice it.
  const int64_t n = m->config.num_parameters(), held = (*e)->parameters_held();
  EXPECT_GT(held, n);
  EXPECT_LT(held, 2 * n);
  EXPECT_NE(metrics->body.find("alpa_model_parameters " + std::to_string(n)), std::string::npos);
  EXPECT_NE(metrics->body.find("alpa_parameters_held " + std::to_string(held)), std::string::npos)
      << metrics->body;
  server.stop();
  serving.join();
  (*e)->stop();
}

// `alpa generate --mesh 1x2`, `--pipeline 2` and `--devices 2` print what one device prints.
TEST(ParallelCli, GenerateOnAMeshPrintsTheSameText) {
  const std::string dir = checkpoint("gpt2", "f32", 1).dir;
  const std::string tmp =
      (std::filesystem::temp_directory_path() / ("alpa_parallel_cli_" + std::to_string(getpid())))
          .string();
  std::filesystem::create_directories(tmp);
  using Run = testing::GenerateRun;
  auto run = [&](const std::string& flags, const std::string& tag) {
    return testing::alpa_generate(dir, flags, tmp + "/" + tag + ".txt");
  };
  const Run one = run("", "one"), mesh = run("--mesh 1x2", "mesh"),
            pipe = run("--pipeline 2", "pipe");
  EXPECT_EQ(one.code, 0) << one.err;
  EXPECT_EQ(mesh.code, 0) << mesh.err;
  EXPECT_EQ(pipe.code, 0) << pipe.err;
  EXPECT_FALSE(one.out.empty());
  EXPECT_EQ(mesh.out, one.out);
  EXPECT_EQ(pipe.out, one.out);
  EXPECT_NE(mesh.err.find("mesh 1x2"), std::string::npos) << mesh.err;
  EXPECT_NE(pipe.err.find("2 pipeline stages"), std::string::npos) << pipe.err;
  // --devices: the inference planner's split for the objective, the same text.
  for (const char* objective : {"latency", "throughput"}) {
    const Run planned = run(std::string("--devices 2 --objective ") + objective, objective);
    EXPECT_EQ(planned.code, 0) << planned.err;
    EXPECT_EQ(planned.out, one.out) << objective;
    EXPECT_NE(planned.err.find("; 2 devices]"), std::string::npos) << planned.err;
  }
  // Shapes the model does not split into, and flags that contradict each other.
  const Run heads = run("--mesh 1x3", "heads");
  EXPECT_NE(heads.code, 0);
  EXPECT_NE(heads.err.find("4 attention heads"), std::string::npos) << heads.err;
  const Run mesh2d = run("--mesh 2x2", "mesh2d");
  EXPECT_NE(mesh2d.code, 0);
  EXPECT_NE(mesh2d.err.find("1xN"), std::string::npos) << mesh2d.err;
  const Run both = run("--mesh 1x2 --devices 2", "both");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("--devices"), std::string::npos) << both.err;
  std::filesystem::remove_all(tmp);
}

}  // namespace
}  // namespace alpa::serve
