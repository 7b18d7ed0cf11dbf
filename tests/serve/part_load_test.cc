// A split model's devices read their own parts from the checkpoint: each part equals the cut of
// the whole decoder (the same logits, bit for bit, through a parallel decoder), reads exactly
// its own tensors' bytes, and a checkpoint that would fail to load whole fails when opened for
// parts too.
#include <filesystem>
#include <set>
#include <string>

#include <gtest/gtest.h>

#include "alpa/serve/engine.h"
#include "alpa/serve/parallel_decoder.h"
#include "alpa/support/files.h"
#include "alpa/support/rng.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

namespace fs = std::filesystem;
using testing::checkpoint;

std::string name(const ParallelShape& s) {
  return "mesh 1x" + std::to_string(s.tensor) + ", " + std::to_string(s.stages) + " stages";
}

// Logits of a prefill of two sequences and two decode steps.
std::vector<float> run(const DecoderSource& source, const ParallelShape& shape) {
  Result<std::unique_ptr<ParallelDecoder>> p = ParallelDecoder::create(source, shape, 4, 32, 2);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  if (!p.ok()) return {};
  KvCache blocks(KvCacheShape{1, 1, 1, 4, 32}, false);  // block ids only
  Rng rng(3);
  std::vector<std::vector<int32_t>> tokens(2);
  for (auto& t : tokens)
    for (int i = 0; i < 12; ++i)
      t.push_back(static_cast<int32_t>(rng.below(source.config().vocab)));
  std::vector<BlockTable> tables(2);
  std::vector<float> all;
  for (int64_t start : {0, 10, 11}) {
    std::vector<SequenceChunk> chunks;
    for (int s = 0; s < 2; ++s) {
      const int64_t count = start == 0 ? 10 : 1;
      EXPECT_TRUE(blocks.reserve(tables[s], start + count));
      chunks.push_back({tokens[s].data() + start, count, start, &tables[s], start == 0});
    }
    std::vector<float> logits;
    const Status st = (*p)->forward(chunks, logits);
    EXPECT_TRUE(st.ok()) << st.to_string();
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(PartLoad, PartsReadFromTheCheckpointEqualCutsOfTheWhole) {
  struct Case {
    const char* family;
    const char* dtype;
    int shards;
    std::vector<ParallelShape> shapes;
  };
  const std::vector<Case> cases = {
      {"gpt2", "f32", 1, {{2, 1}, {1, 2}, {2, 2}}},
      {"gpt2", "bf16", 2, {{1, 2}, {2, 2}}},  // two safetensors files, bf16 values
      {"opt", "f32", 1, {{2, 1}, {1, 2}, {2, 2}}},
      {"llama", "f16", 1, {{2, 1}, {1, 2}, {2, 2}}},  // untied head, grouped-query attention
      {"gpt2-long", "f32", 1, {{1, 3}, {1, 4}, {4, 2}}},
  };
  for (const Case& c : cases) {
    const std::string dir = checkpoint(c.family, c.dtype, c.shards).dir;
    Result<LoadedModel> whole = load_model_dir(dir);
    ASSERT_TRUE(whole.ok()) << whole.status().to_string();
    Result<LoadedModel> parts = load_model_dir(dir, ModelWeights::kOnDemand);
    ASSERT_TRUE(parts.ok()) << parts.status().to_string();
    EXPECT_EQ(parts->decoder, nullptr);
    EXPECT_EQ(parts->weights->bytes_read(), 0) << "opening reads headers only";
    for (const ParallelShape& shape : c.shapes) {
      const std::vector<float> want = run(*whole->decoder, shape);
      const std::vector<float> got = run(DecoderSource(parts->config, *parts->weights), shape);
      ASSERT_FALSE(want.empty());
      EXPECT_EQ(got, want) << c.family << " " << c.dtype << ", " << name(shape);
    }
  }
}

// The tensors of layers [first, last) (names "...h.3." / "...layers.3."), and the others.
std::vector<std::string> layer_tensors(const SafetensorsSet& set, int64_t first, int64_t last) {
  std::vector<std::string> out;
  for (const std::string& n : set.names())
    for (int64_t i = first; i < last; ++i)
      for (const std::string& mark :
           {".h." + std::to_string(i) + ".", "layers." + std::to_string(i) + "."})
        if (n.find(mark) != std::string::npos || n.rfind(mark.substr(1), 0) == 0) out.push_back(n);
  return out;
}

TEST(PartLoad, EachStageReadsItsOwnTensorsOnly) {
  const std::string dir = checkpoint("gpt2-long", "f32", 1).dir;  // 4 layers, tied head
  Result<LoadedModel> m = load_model_dir(dir, ModelWeights::kOnDemand);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const DecoderConfig& c = m->config;
  const SafetensorsSet& names = *m->weights;
  const int64_t total = names.stored_bytes(names.names());
  const std::string wte = names.contains("transformer.wte.weight") ? "transformer." : "";
  int64_t held = 0;
  for (const auto& [first, last] : stage_layers(c, 2)) {
    Result<SafetensorsSet> fresh = SafetensorsSet::open(dir);
    ASSERT_TRUE(fresh.ok());
    Result<Decoder> part = Decoder::load_part(c, *fresh, first, last, 0, 1);
    ASSERT_TRUE(part.ok()) << part.status().to_string();
    std::vector<std::string> own = layer_tensors(names, first, last);
    own.push_back(wte + "wte.weight");  // the embedding, or the tied head
    if (first == 0) own.push_back(wte + "wpe.weight");
    if (last == c.layers)
      for (const char* n : {"ln_f.weight", "ln_f.bias"}) own.push_back(wte + n);
    EXPECT_EQ(fresh->bytes_read(), names.stored_bytes(own)) << "layers " << first << "-" << last;
    EXPECT_LT(fresh->bytes_read(), total);
    held += part->num_parameters();
  }
  // The stages hold the model once between them, as one decoder does.
  Result<Decoder> whole = Decoder::load(c, names);
  ASSERT_TRUE(whole.ok());
  EXPECT_EQ(whole->num_parameters(), c.num_parameters());
  EXPECT_EQ(held, c.num_parameters());
}

// Tensor-parallel shards split the vocabulary of the embedding too (Megatron's
// vocabulary-parallel embedding): what two shards hold together exceeds the model by the
// replicated positions and norms, not by a second embedding.
TEST(PartLoad, ShardsSplitTheEmbedding) {
  for (const char* family : {"gpt2", "llama"}) {
    Result<LoadedModel> m = load_model_dir(checkpoint(family, "f32", 1).dir);
    ASSERT_TRUE(m.ok());
    const DecoderConfig& c = m->config;
    int64_t held = 0;
    for (int part = 0; part < 2; ++part) {
      Result<Decoder> shard = Decoder::load_part(c, *m->weights, 0, c.layers, part, 2);
      ASSERT_TRUE(shard.ok()) << shard.status().to_string();
      held += shard->num_parameters();
    }
    EXPECT_GT(held, c.num_parameters()) << family;
    EXPECT_LT(held, c.num_parameters() + c.vocab * c.hidden / 2) << family;
  }
}

// Tensor-parallel shards read only their slices of every matrix: together they read the
// checkpoint once, plus what each of them needs whole (positions, norms, and the biases added
// after the sums, which every shard reads to check and shard 0 keeps).
TEST(PartLoad, ShardsReadTheirSlicesOnly) {
  const std::string dir = checkpoint("gpt2-long", "f32", 1).dir;
  Result<LoadedModel> m = load_model_dir(dir, ModelWeights::kOnDemand);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  const SafetensorsSet& names = *m->weights;
  std::vector<std::string> replicated;
  for (const std::string& n : names.names())
    if (n.find("wpe") != std::string::npos || n.find("ln_") != std::string::npos ||
        n.find("c_proj.bias") != std::string::npos)
      replicated.push_back(n);
  const int64_t total = names.stored_bytes(names.names());
  int64_t read = 0;
  for (int part = 0; part < 2; ++part) {
    Result<SafetensorsSet> fresh = SafetensorsSet::open(dir);
    ASSERT_TRUE(fresh.ok());
    ASSERT_TRUE(Decoder::load_part(m->config, *fresh, 0, m->config.layers, part, 2).ok());
    EXPECT_LT(fresh->bytes_read(), total * 2 / 3) << "shard " << part;  // all: total
    read += fresh->bytes_read();
  }
  EXPECT_EQ(read, total + names.stored_bytes(replicated));
}

TEST(PartLoad, ParameterCountsMatchTheConfig) {
  for (const char* family : {"gpt2", "opt", "llama"}) {
    Result<LoadedModel> m = load_model_dir(checkpoint(family, "f32", 1).dir);
    ASSERT_TRUE(m.ok());
    // Every stored value is a parameter (a tied head is not stored twice).
    const int64_t stored = m->weights->stored_bytes(m->weights->names()) / 4;
    EXPECT_EQ(m->config.num_parameters(), stored) << family;
    EXPECT_EQ(m->decoder->num_parameters(), stored) << family;
  }
}

// A damaged later tensor, missing or stored as integers, fails the model's opening whether it
// is read whole or for parts (so every process of a split model fails alike, at start).
TEST(PartLoad, ACheckpointWithADamagedLaterTensorFailsWhenOpened) {
  const std::string src = checkpoint("gpt2", "f32", 1).dir;
  const fs::path dir = fs::temp_directory_path() / ("alpa_part_load_" + std::to_string(getpid()));
  Result<SafetensorsSet> set = SafetensorsSet::open(src);
  ASSERT_TRUE(set.ok());
  std::string target;  // a tensor of the last layer
  for (const std::string& n : set->names())
    if (target.empty() && n.find("h.1.mlp.c_proj.bias") != std::string::npos) target = n;
  ASSERT_FALSE(target.empty());
  for (const char* damage : {"missing", "I32"}) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    fs::copy_file(fs::path(src) / "config.json", dir / "config.json");
    std::vector<NamedTensor> kept;
    for (const std::string& n : set->names()) {
      if (n == target && std::string(damage) == "missing") continue;
      Result<std::vector<float>> v = set->values(n);
      ASSERT_TRUE(v.ok());
      kept.push_back({n, set->find(n)->shape, *v});
    }
    Result<std::string> bytes = encode_safetensors(kept, StoredDType::kF32);
    ASSERT_TRUE(bytes.ok());
    if (std::string(damage) == "I32") {  // the target's dtype, same size: "F32" -> "I32"
      const size_t at = bytes->find("\"F32\"", bytes->find("\"" + target + "\""));
      ASSERT_NE(at, std::string::npos);
      bytes->replace(at + 1, 1, "I");
    }
    ASSERT_TRUE(write_file((dir / "model.safetensors").string(), *bytes).ok());
    for (ModelWeights how : {ModelWeights::kWhole, ModelWeights::kOnDemand}) {
      Result<LoadedModel> m = load_model_dir(dir.string(), how);
      ASSERT_FALSE(m.ok()) << damage;
      const std::string error = m.status().to_string();
      EXPECT_NE(error.find(target), std::string::npos) << error;
      if (std::string(damage) == "I32") {
        EXPECT_NE(error.find("I32"), std::string::npos) << error;
      }
    }
  }
  fs::remove_all(dir);
}

// An engine over a model opened for parts: one device reads the whole decoder, a split one
// only the parts, and both generate what the whole model does; once made, the engine holds the
// checkpoint's files no longer (the tensors it read are its own).
TEST(PartLoad, EnginesOverAModelOpenedForParts) {
  const std::string dir = checkpoint("llama", "f32", 1).dir;
  std::vector<std::vector<int32_t>> want;
  for (ModelWeights how : {ModelWeights::kWhole, ModelWeights::kOnDemand})
    for (const ParallelShape& shape : std::vector<ParallelShape>{{1, 1}, {2, 1}, {1, 2}}) {
      Result<LoadedModel> m = load_model_dir(dir, how);
      ASSERT_TRUE(m.ok());
      EngineOptions o;
      o.block_size = 4;
      o.num_blocks = 32;
      o.threads = 2;
      o.parallel = shape;
      const std::weak_ptr<const SafetensorsSet> files = m->weights;
      ASSERT_FALSE(files.expired());
      Result<std::unique_ptr<Engine>> e = Engine::create(std::move(*m), o);
      ASSERT_TRUE(e.ok()) << e.status().to_string();
      EXPECT_TRUE(files.expired()) << name(shape);
      EXPECT_EQ((*e)->model().weights, nullptr);
      SamplingParams p;
      p.temperature = 0;
      p.max_tokens = 8;
      p.ignore_eos = true;
      Result<std::shared_ptr<Request>> r = (*e)->submit({1, 5, 9, 33, 7}, p);
      ASSERT_TRUE(r.ok());
      while ((*e)->step()) {
      }
      if (want.empty()) want.push_back((*r)->tokens());
      EXPECT_EQ((*r)->tokens(), want[0]) << name(shape);
      if (shape.devices() == 1 || (how == ModelWeights::kOnDemand && shape.stages == 2)) {
        EXPECT_EQ((*e)->parameters_held(), (*e)->model().config.num_parameters()) << "held once";
      }
    }
}

}  // namespace
}  // namespace alpa::serve
