// A decoder's prefill and decode steps compiled for a mesh and run by the ProgramRunner,
// against the plain-PyTorch references of tests/serve/reference.py.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <sstream>

#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "alpa/infer/compiled_decoder.h"
#include "alpa/serve/model_dir.h"
#include "serve/checkpoints.h"

namespace alpa::infer {
namespace {

using serve::testing::checkpoint;
using serve::testing::Reference;

struct Case {
  const char* family;
  const char* dtype;
  int shards;
  MeshShape mesh;
  int stages = 1;
};

std::string case_name(const Case& c) {
  return cat(c.family, "_", c.dtype, "_", c.shards, "_mesh", c.mesh.n0, "x", c.mesh.n1,
             c.stages > 1 ? cat("_stages", c.stages) : "");
}

class CompiledDecoderTest : public ::testing::TestWithParam<Case> {};

// The tests' options: prompt chunks of 4, a cache of 32 positions.
CompiledDecoderOptions test_options(const MeshShape& mesh = {1, 1}, int stages = 1) {
  CompiledDecoderOptions o;
  o.mesh = mesh;
  o.stages = stages;
  o.chunk = 4;
  o.context = 32;
  return o;
}

// The reference's checkpoint compiled under `o` (null, with a failure, when it cannot be).
std::unique_ptr<CompiledDecoder> compiled(const Reference& ref, const CompiledDecoderOptions& o) {
  Result<serve::LoadedModel> m = serve::load_model_dir(ref.dir, serve::ModelWeights::kOnDemand);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  if (!m.ok()) return nullptr;
  Result<std::unique_ptr<CompiledDecoder>> d = CompiledDecoder::create(m->config, *m->weights, o);
  EXPECT_TRUE(d.ok()) << d.status().to_string();
  return d.ok() ? std::move(*d) : nullptr;
}

std::unique_ptr<CompiledDecoder> compiled(const Reference& ref, const Case& c, int64_t chunk) {
  CompiledDecoderOptions o = test_options(c.mesh, c.stages);
  o.chunk = chunk;
  return compiled(ref, o);
}

// The largest |logit - reference| of the prompt's prefill (a failure, and infinity, when the
// prefill fails or its size differs).
double worst_logit_error(CompiledDecoder& d, const Reference& ref) {
  Result<std::vector<float>> got = d.prefill(ref.tokens);
  EXPECT_TRUE(got.ok()) << got.status().to_string();
  if (!got.ok() || got->size() != ref.logits.size()) {
    ADD_FAILURE() << "prefill gave " << (got.ok() ? got->size() : 0) << " logits for "
                  << ref.logits.size();
    return std::numeric_limits<double>::infinity();
  }
  double worst = 0;
  for (size_t i = 0; i < got->size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs((*got)[i] - ref.logits[i])));
  return worst;
}

// The greedy continuation of the reference's prompt, as long as the reference's.
std::vector<int32_t> greedy(CompiledDecoder& d, const Reference& ref) {
  Result<std::vector<int32_t>> got =
      d.generate(ref.tokens, static_cast<int64_t>(ref.greedy.size()));
  EXPECT_TRUE(got.ok()) << got.status().to_string();
  return got.ok() ? *got : std::vector<int32_t>();
}

TEST_P(CompiledDecoderTest, LogitsMatchReference) {
  const Case c = GetParam();
  Reference ref = checkpoint(c.family, c.dtype, c.shards);
  // Chunks of 4 leave the last one padded; a chunk of the whole prompt runs it in one step.
  for (int64_t chunk : {int64_t{4}, static_cast<int64_t>(ref.tokens.size())}) {
    std::unique_ptr<CompiledDecoder> d = compiled(ref, c, chunk);
    ASSERT_NE(d, nullptr);
    const double worst = worst_logit_error(*d, ref);
    std::cout << case_name(c) << " chunk " << chunk << ": max |logit - reference| = " << worst
              << "\n";
    EXPECT_LT(worst, 1e-4) << case_name(c) << " chunk " << chunk;
  }
}

TEST_P(CompiledDecoderTest, GreedyGenerationMatchesReference) {
  const Case c = GetParam();
  Reference ref = checkpoint(c.family, c.dtype, c.shards);
  std::unique_ptr<CompiledDecoder> d = compiled(ref, c, 4);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(greedy(*d, ref), ref.greedy);
}

INSTANTIATE_TEST_SUITE_P(
    Families, CompiledDecoderTest,
    ::testing::Values(Case{"gpt2", "f32", 1, {1, 1}}, Case{"opt", "bf16", 2, {1, 1}},
                      Case{"llama", "bf16", 3, {1, 1}}, Case{"gpt2", "f16", 2, {1, 2}},
                      Case{"opt", "f32", 1, {1, 2}}, Case{"llama", "f32", 1, {1, 2}},
                      Case{"gpt2", "f32", 1, {1, 1}, 2}, Case{"opt", "bf16", 2, {1, 1}, 2},
                      Case{"llama", "f32", 1, {1, 2}, 2}),
    [](const auto& info) { return case_name(info.param); });

// The owned values (weights and KV cache) of a compiled step that its mesh holds split, by name.
std::vector<std::string> split_values(const Compiled& c) {
  std::vector<std::string> names;
  for (const StageValue& v : c.program.stages[0].values)
    if (v.kind == ValueKind::kOwned && !v.layout.is_replicated()) names.push_back(v.name);
  return names;
}

// Under a memory budget the replicated weights and cache exceed, the ILP splits them over the
// mesh (the cost model's choice, not a hand-written layout), and the logits still equal the
// reference's.
TEST(CompiledDecoder, AMemoryBudgetSplitsTheWeightsAndTheCache) {
  Reference ref = checkpoint("llama", "f32", 1);
  CompiledDecoderOptions o = test_options({1, 2});
  std::unique_ptr<CompiledDecoder> whole = compiled(ref, o);
  ASSERT_NE(whole, nullptr);
  const double replicated = std::max(whole->prefill_compiled().mesh_plan->peak_memory_bytes,
                                     whole->decode_compiled().mesh_plan->peak_memory_bytes);
  o.memory_budget_bytes = 0.8 * replicated;
  std::unique_ptr<CompiledDecoder> d = compiled(ref, o);
  ASSERT_NE(d, nullptr);
  const Compiled& decode = d->decode_compiled();
  EXPECT_LE(decode.mesh_plan->peak_memory_bytes, o.memory_budget_bytes);
  const std::vector<std::string> split = split_values(decode);
  std::cout << "replicated peak " << replicated << " B; under " << o.memory_budget_bytes
            << " B the decode step splits " << split.size() << " owned values\n";
  EXPECT_FALSE(split.empty());
  EXPECT_GT(count_collectives(decode.program), 0);
  EXPECT_LT(worst_logit_error(*d, ref), 1e-4);
  EXPECT_EQ(greedy(*d, ref), ref.greedy);
}

// The decode runner uses the prefill runner's blocks where both hold them alike (on one device:
// every weight, and with one decode row every layer's two caches) instead of holding copies.
TEST(CompiledDecoder, TheDecodeStepSharesThePrefillStepsWeightsAndCache) {
  Reference ref = checkpoint("opt", "f32", 1);
  std::unique_ptr<CompiledDecoder> d = compiled(ref, test_options());
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->shared_weight_blocks(),
            static_cast<int>(d->decode_compiled().step.weights.size() + 2 * d->config().layers));
  EXPECT_EQ(greedy(*d, ref), ref.greedy);
  std::unique_ptr<CompiledDecoder> mesh = compiled(ref, test_options({1, 2}));
  ASSERT_NE(mesh, nullptr);
  EXPECT_GT(mesh->shared_weight_blocks(), 0);
  EXPECT_EQ(greedy(*mesh, ref), ref.greedy);
  // Two decode rows: the caches differ in shape, so the prompt's moves to the decode runner.
  CompiledDecoderOptions o = test_options();
  o.batch = 2;
  std::unique_ptr<CompiledDecoder> rows = compiled(ref, o);
  ASSERT_NE(rows, nullptr);
  EXPECT_EQ(rows->shared_weight_blocks(),
            static_cast<int>(rows->decode_compiled().step.weights.size()));
  EXPECT_EQ(greedy(*rows, ref), ref.greedy);
}

// Two stages: each holds the caches of its own attention, the last its own copy of the tied
// head, and no weight or cache crosses between them.
TEST(CompiledDecoder, StagesHoldTheirLayersAndCaches) {
  Reference ref = checkpoint("gpt2", "f32", 1);
  std::unique_ptr<CompiledDecoder> d = compiled(ref, test_options({1, 1}, 2));
  ASSERT_NE(d, nullptr);
  const Program& p = d->decode_compiled().program;
  ASSERT_EQ(p.stages.size(), 2u);
  auto owner = [&](const std::string& name) {
    std::vector<int> stages;
    for (size_t s = 0; s < p.stages.size(); ++s)
      for (const StageValue& v : p.stages[s].values)
        if (v.kind == ValueKind::kOwned && v.name == name) stages.push_back(static_cast<int>(s));
    return stages;
  };
  EXPECT_EQ(owner("cache.0.k"), std::vector<int>{0});
  EXPECT_EQ(owner("cache.1.v").size(), 1u);  // where the layers' FLOPs put its attention
  EXPECT_EQ(owner("wte.weight"), std::vector<int>{0});
  EXPECT_EQ(owner("lm_head.weight"), std::vector<int>{1});
  EXPECT_EQ(owner("logits"), std::vector<int>{1});
  for (const Transfer& t : p.transfers) {
    const StageValue& v =
        p.stages[static_cast<size_t>(t.from_stage)].values[static_cast<size_t>(t.from_value)];
    EXPECT_NE(v.kind, ValueKind::kOwned) << v.name << " crosses stages every step";
  }
}

using CliRun = serve::testing::GenerateRun;

// `alpa generate` on the tiny GPT-2 checkpoint with `flags`, greedy and past end-of-sequence.
CliRun generate(const std::string& flags, const std::string& tag) {
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() / cat("alpa_infer_cli_", getpid());
  std::filesystem::create_directories(tmp);
  return serve::testing::alpa_generate(checkpoint("gpt2", "f32", 1).dir, flags,
                                       (tmp / tag).string());
}

// `alpa generate --compiled` on one device and on 1x2 and 2x2 meshes prints what the engine
// prints, and says what it compiled; contradicting flags are refused with the fix.
TEST(CompiledCli, GenerateCompiledPrintsWhatTheEnginePrints) {
  const CliRun engine = generate("", "engine");
  ASSERT_EQ(engine.code, 0) << engine.err;
  ASSERT_FALSE(engine.out.empty());
  for (const char* mesh : {"1x1", "1x2", "2x2"}) {
    const CliRun c = generate(cat("--compiled --mesh ", mesh, " --chunk 4"), mesh);
    EXPECT_EQ(c.code, 0) << c.err;
    EXPECT_EQ(c.out, engine.out) << mesh;
    EXPECT_NE(
        c.err.find(cat("compiled decode: 1 row(s) x 1 token(s), cache 21 positions, mesh ", mesh)),
        std::string::npos)
        << c.err;
  }
  const CliRun piped = generate("--compiled --pipeline 2 --mesh 1x2", "piped");
  EXPECT_EQ(piped.code, 0) << piped.err;
  EXPECT_EQ(piped.out, engine.out);
  EXPECT_NE(piped.err.find("cache 21 positions, 2 stages of mesh 1x2"), std::string::npos)
      << piped.err;
  // --devices N: the objective's choice among the splits, each compiled and simulated.
  for (const char* objective : {"latency", "throughput"}) {
    const CliRun chosen = generate(cat("--compiled --devices 2 --json --objective ", objective),
                                   cat("devices_", objective));
    ASSERT_EQ(chosen.code, 0) << chosen.err;
    const nlohmann::json b = nlohmann::json::parse(chosen.out, nullptr, false);
    ASSERT_FALSE(b.is_discarded()) << chosen.out;
    const nlohmann::json& cands = b["split"]["candidates"];
    ASSERT_EQ(cands.size(), 2u);  // 1 stage of 1x2, 2 stages of 1x1
    const bool latency = std::string(objective) == "latency";
    size_t best = 0;
    for (size_t i = 0; i < cands.size(); ++i) {
      EXPECT_GT(cands[i]["batch"].get<int64_t>(), 0) << cands[i];
      const double v = cands[i][latency ? "step_seconds" : "tokens_per_second"];
      const double w = cands[best][latency ? "step_seconds" : "tokens_per_second"];
      if (latency ? v < w : v > w) best = i;
    }
    EXPECT_EQ(b["compiled"]["decode"]["stages"], cands[best]["stages"]) << objective;
    EXPECT_EQ(b["compiled"]["decode"]["mesh"], cands[best]["mesh"]) << objective;
    if (!latency) EXPECT_EQ(cands[0]["batch"], 64) << "the doubling stops at 64 rows";
  }
  const CliRun j = generate("--compiled --mesh 1x2 --json", "json");
  ASSERT_EQ(j.code, 0) << j.err;
  const nlohmann::json body = nlohmann::json::parse(j.out, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << j.out;
  const CliRun engine_json = generate("--json", "engine_json");
  const nlohmann::json engine_body = nlohmann::json::parse(engine_json.out, nullptr, false);
  ASSERT_FALSE(engine_body.is_discarded()) << engine_json.out;
  EXPECT_EQ(body["text"], engine_body["choices"][0]["text"]);
  EXPECT_EQ(body["tokens"].size(), 12u);
  EXPECT_EQ(body["finish_reason"], "length");
  EXPECT_EQ(body["compiled"]["decode"]["mesh"], "1x2");
  EXPECT_GT(body["compiled"]["decode"]["owned_values_split"].get<int>(), 0);
  EXPECT_GT(body["compiled"]["decode"]["collectives_per_step"].get<int>(), 0);
  EXPECT_GT(body["compiled"]["prefill"]["simulated_step_s"].get<double>(), 0);

  struct Bad {
    const char* flags;
    const char* says;
  };
  for (const Bad& bad :
       {Bad{"--compiled --top-k 5", "decodes greedily"},
        Bad{"--compiled --devices 2 --mesh 1x2", "--devices cannot be combined"},
        Bad{"--compiled --pipeline 3", "3 pipeline stages for a model of 2 layers"},
        Bad{"--compiled --mesh 1x", "mesh"},
        Bad{"--compiled --context 4", "cache holds 4 positions"},
        Bad{"--compiled --memory-mb 0.01", "smallest budget that works"}}) {
    const CliRun r = generate(bad.flags, "bad");
    EXPECT_NE(r.code, 0) << bad.flags;
    EXPECT_NE(r.err.find(bad.says), std::string::npos) << bad.flags << ": " << r.err;
  }
}

}  // namespace
}  // namespace alpa::infer
