// Decoders read from Hugging Face checkpoints against plain-PyTorch references.
#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include <gtest/gtest.h>

#include "alpa/serve/engine.h"
#include "alpa/serve/model_dir.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

using testing::checkpoint;
using testing::Reference;

struct Case {
  const char* family;
  const char* dtype;
  int shards;
};

class ModelTest : public ::testing::TestWithParam<Case> {};

// Logits of every position, the prompt run in chunks of `chunk` tokens over blocks of
// `block_size` positions.
std::vector<float> logits_in_chunks(const LoadedModel& m, const std::vector<int32_t>& tokens,
                                    int64_t chunk, int64_t block_size) {
  KvCacheShape shape{m.decoder->config().layers, m.decoder->config().kv_heads,
                     m.decoder->config().head_dim, block_size, 64};
  KvCache cache(shape);
  ThreadPool pool(2);
  BlockTable table;
  std::vector<float> all, part;
  for (int64_t s = 0; s < static_cast<int64_t>(tokens.size()); s += chunk) {
    const int64_t n = std::min<int64_t>(chunk, static_cast<int64_t>(tokens.size()) - s);
    EXPECT_TRUE(cache.reserve(table, s + n));
    m.decoder->forward({{tokens.data() + s, n, s, &table, true}}, cache, pool, part);
    all.insert(all.end(), part.begin(), part.end());
  }
  return all;
}

TEST_P(ModelTest, LogitsMatchReference) {
  const Case c = GetParam();
  Reference ref = checkpoint(c.family, c.dtype, c.shards);
  Result<LoadedModel> m = load_model_dir(ref.dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  for (auto [chunk, block] : {std::pair<int64_t, int64_t>{100, 4}, {5, 4}, {1, 3}, {3, 64}}) {
    std::vector<float> got = logits_in_chunks(*m, ref.tokens, chunk, block);
    ASSERT_EQ(got.size(), ref.logits.size());
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, static_cast<double>(std::fabs(got[i] - ref.logits[i])));
    std::cout << c.family << " " << c.dtype << " chunk " << chunk << " block " << block
              << ": max |logit - reference| = " << worst << "\n";
    EXPECT_LT(worst, 1e-4) << c.family << " " << c.dtype << " chunk " << chunk << " block "
                           << block;
  }
}

TEST_P(ModelTest, GreedyGenerationMatchesReference) {
  const Case c = GetParam();
  Reference ref = checkpoint(c.family, c.dtype, c.shards);
  Result<LoadedModel> m = load_model_dir(ref.dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EngineOptions o;
  o.block_size = 4;
  o.num_blocks = 64;
  o.threads = 2;
  Engine engine(*m, o);
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = static_cast<int64_t>(ref.greedy.size());
  p.ignore_eos = true;
  Result<std::shared_ptr<Request>> r = engine.submit(ref.tokens, p);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  while (engine.step()) {
  }
  EXPECT_EQ((*r)->tokens(), ref.greedy);
  EXPECT_EQ((*r)->finish_reason(), "length");
  EXPECT_EQ(engine.metrics().kv_blocks_used, 0);
}

INSTANTIATE_TEST_SUITE_P(Families, ModelTest,
                         ::testing::Values(Case{"gpt2", "f32", 1}, Case{"gpt2", "f16", 2},
                                           Case{"opt", "f32", 1}, Case{"opt", "bf16", 2},
                                           Case{"llama", "f32", 1}, Case{"llama", "bf16", 3}),
                         [](const auto& info) {
                           return std::string(info.param.family) + "_" + info.param.dtype + "_" +
                                  std::to_string(info.param.shards);
                         });

// A copy of a checkpoint directory with config.json replaced.
std::string with_config(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string out = std::string(ALPA_BINARY_DIR) + "/serve_fixtures/bad_" + name;
  std::filesystem::remove_all(out);
  std::filesystem::copy(dir, out);
  std::ofstream(out + "/config.json") << text;
  return out;
}

TEST(ModelDir, ErrorsNameTheFileAndField) {
  Reference ref = checkpoint("gpt2", "f32", 1);
  auto error = [&](const std::string& name, const std::string& config) {
    Result<LoadedModel> m = load_model_dir(with_config(ref.dir, name, config));
    EXPECT_FALSE(m.ok()) << name;
    return m.ok() ? std::string() : m.status().to_string();
  };
  EXPECT_NE(error("nojson", "{").find("config.json"), std::string::npos);
  EXPECT_NE(error("type", R"({"model_type": "bert"})").find("bert"), std::string::npos);
  EXPECT_NE(error("missing", R"({"model_type": "gpt2", "n_embd": 32})").find("vocab_size"),
            std::string::npos);
  EXPECT_NE(error("shape", R"({"model_type": "gpt2", "vocab_size": 267, "n_embd": 16,
                               "n_layer": 2, "n_head": 4, "n_positions": 64})")
                .find("wte.weight"),
            std::string::npos);
  EXPECT_NE(error("layers", R"({"model_type": "gpt2", "vocab_size": 267, "n_embd": 32,
                                "n_layer": 3, "n_head": 4, "n_positions": 64})")
                .find("h.2."),
            std::string::npos);
  EXPECT_NE(error("negative", R"({"model_type": "gpt2", "vocab_size": -3, "n_embd": 32,
                                  "n_layer": 2, "n_head": 4})")
                .find("vocab_size"),
            std::string::npos);
  EXPECT_FALSE(load_model_dir(ref.dir + "/nonexistent").ok());
}

}  // namespace
}  // namespace alpa::serve

namespace alpa::serve {
namespace {

// A model trained and exported by alpa (`alpa train`, `alpa export`: GPT-2 layout with the
// exact GELU) is served with the logits the training runtime gives (`alpa forward`).
TEST(ModelDir, ServesWhatAlpaExports) {
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/serve_fixtures/exported";
  const std::string alpa = std::string(ALPA_BINARY_DIR) + "/src/alpa";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/tokens.txt") << "5 17 3 99 42 7 1 120\n";
  const std::string cmd = alpa + " train --model gpt --size tiny --steps 2 --checkpoint-dir " +
                          dir + "/ck --checkpoint-every 2 > /dev/null && " + alpa +
                          " export --checkpoint " + dir + "/ck --format safetensors --out " + dir +
                          "/export --dtype f32 > /dev/null && " + alpa + " forward --weights " +
                          dir + "/export --tokens " + dir + "/tokens.txt --out " + dir +
                          "/logits.safetensors > /dev/null";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  Result<LoadedModel> m = load_model_dir(dir + "/export");
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  Result<SafetensorsFile> want = SafetensorsFile::read(dir + "/logits.safetensors");
  ASSERT_TRUE(want.ok());
  Result<std::vector<float>> values = want->values(*want->find("logits"));
  ASSERT_TRUE(values.ok());
  std::vector<float> got = logits_in_chunks(*m, {5, 17, 3, 99, 42, 7, 1, 120}, 3, 4);
  ASSERT_EQ(got.size(), values->size());
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, static_cast<double>(std::fabs(got[i] - (*values)[i])));
  std::cout << "exported tiny GPT: max |serve - alpa forward| = " << worst << "\n";
  EXPECT_LT(worst, 1e-4);
}

}  // namespace
}  // namespace alpa::serve
