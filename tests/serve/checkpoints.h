// Tiny random checkpoints in Hugging Face layout written by tests/serve/reference.py (plain
// PyTorch models), with the reference's logits and greedy generation.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace alpa::serve::testing {

struct Reference {
  std::string dir;
  std::vector<int32_t> tokens;
  std::vector<float> logits;  // [tokens, vocab]
  std::vector<int32_t> greedy;
};

// Writes (once per build tree) the checkpoint of `family` stored in `dtype` over `shards`
// files, and reads its expected outputs.
inline Reference checkpoint(const std::string& family, const std::string& dtype, int shards) {
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/serve_fixtures/" + family + "_" + dtype +
                          "_" + std::to_string(shards);
  const std::string expected = dir + "/expected.json";
  if (!std::filesystem::exists(expected)) {
    const std::string cmd = "/usr/bin/python3 " + std::string(ALPA_SOURCE_DIR) +
                            "/tests/serve/reference.py " + dir + " " + family + " " + dtype + " " +
                            std::to_string(shards);
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }
  Reference r;
  r.dir = dir;
  std::ifstream in(expected);
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) {
    ADD_FAILURE() << "cannot read " << expected;
    return r;
  }
  r.tokens = j["tokens"].get<std::vector<int32_t>>();
  r.logits = j["logits"].get<std::vector<float>>();
  r.greedy = j["greedy"].get<std::vector<int32_t>>();
  return r;
}

// A per-process copy of the tiny GPT-2 checkpoint (f32, one file) with `files` (name ->
// contents) added, e.g. tokenizer_config.json with a chat template.
inline std::string gpt2_checkpoint_with(
    const std::string& tag, const std::vector<std::pair<std::string, std::string>>& files) {
  namespace fs = std::filesystem;
  const std::string src = checkpoint("gpt2", "f32", 1).dir;
  const fs::path dir =
      fs::temp_directory_path() / ("alpa_serve_" + tag + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"config.json", "model.safetensors", "vocab.json", "merges.txt"})
    fs::copy_file(fs::path(src) / f, dir / f);
  for (const auto& [name, text] : files) std::ofstream(dir / name, std::ios::binary) << text;
  return dir.string();
}

struct GenerateRun {
  int code;
  std::string out, err;
};

// `alpa generate` on the checkpoint `dir` with the prompt "hello world", 12 greedy tokens past
// end-of-sequence, and `flags`; its stdout and stderr are kept in `out_path` and
// `out_path`.err.
inline GenerateRun alpa_generate(const std::string& dir, const std::string& flags,
                                 const std::string& out_path) {
  const std::string cmd = std::string(ALPA_BINARY_DIR) + "/src/alpa generate --model " + dir +
                          " --prompt 'hello world' --max-tokens 12 --temperature 0 "
                          "--ignore-eos " +
                          flags + " > " + out_path + " 2> " + out_path + ".err";
  const int code = std::system(cmd.c_str());
  std::ifstream in(out_path), err(out_path + ".err");
  std::stringstream text, log;
  text << in.rdbuf();
  log << err.rdbuf();
  return GenerateRun{code, text.str(), log.str()};
}

}  // namespace alpa::serve::testing
