// Validation during training (--eval-every): the loss of the step's weights on the dataset's
// held-out split, the same under every plan, falling as the model learns; logged as JSON lines
// with the learning rate, gradient norm, tokens/s and model FLOP utilisation.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/data/token_dataset.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

std::string fresh(const char* name) {
  // Per process: ctest runs this binary's tests side by side.
  const fs::path d =
      fs::path(::testing::TempDir()) / (std::string(name) + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  return d.string();
}

const std::string& dataset() {
  static const std::string dir = [] {
    const std::string d = fresh("eval_ds");
    const BpeTokenizer t =
        std::move(BpeTokenizer::load(std::string(GPT2_DIR) + "/package/encoder.json",
                                     std::string(GPT2_DIR) + "/package/vocab.bpe"))
            .value();
    const std::vector<std::string> texts = {std::string(ALPA_SOURCE_DIR) + "/README.md",
                                            std::string(ALPA_SOURCE_DIR) + "/docs/architecture.md"};
    EXPECT_TRUE(write_token_dataset(d, t, texts, 0.1).ok());
    return d;
  }();
  return dir;
}

struct CmdResult {
  int code;
  std::string out, err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

CmdResult train(const TrainFlags& f) {
  std::ostringstream out, err;
  const int code = run_train(f, out, err);
  return {code, out.str(), err.str()};
}

TrainFlags gpt() {
  TrainFlags f;
  f.data_path = dataset();
  f.model.vocab = 50257;
  f.model.seq = 16;
  f.steps = 6;
  f.threads = 1;
  f.json = true;
  f.optimizer.lr = 3e-3;
  f.eval_every = 3;
  f.eval_batches = 2;
  return f;
}

TEST(Evaluation, EveryPlanReportsTheSameFallingValidationLoss) {
  const CmdResult one = train(gpt());
  ASSERT_EQ(one.code, kExitOk) << one.err;
  const nlohmann::json val = one.json()["val_losses"];
  ASSERT_EQ(val.size(), 2u) << one.out;
  EXPECT_EQ(val[0]["step"], 3);
  EXPECT_EQ(val[1]["step"], 6);
  EXPECT_LT(val[1]["loss"].get<double>(), val[0]["loss"].get<double>());
  EXPECT_LT(val[0]["loss"].get<double>(), std::log(50257.0));
  TrainFlags mesh = gpt();
  mesh.parallel.mesh = "2x2";
  TrainFlags pipe = gpt();
  pipe.parallel.devices = 2;
  pipe.micro_batches = 2;
  pipe.parallel.space = "inter-only";
  pipe.parallel.stage_imbalance = 1e9;
  for (const TrainFlags& f : {mesh, pipe}) {
    const CmdResult r = train(f);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const nlohmann::json got = r.json()["val_losses"];
    ASSERT_EQ(got.size(), 2u);
    for (size_t i = 0; i < 2; ++i)
      EXPECT_NEAR(got[i]["loss"].get<double>(), val[i]["loss"].get<double>(), 1e-4);
  }
}

TEST(Evaluation, TheLogHasEveryFieldOfEveryStep) {
  TrainFlags f = gpt();
  f.steps = 4;
  f.eval_every = 2;
  f.optimizer.clip_grad = 1.0;
  f.optimizer.lr_schedule = "cosine";
  f.optimizer.warmup_steps = 2;
  f.log_path = fresh("eval_log.jsonl");
  const CmdResult r = train(f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::ifstream in(f.log_path);
  std::string line;
  int steps = 0;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    ++steps;
    EXPECT_EQ(j["step"], steps);
    for (const char* key : {"loss", "lr", "seconds", "tokens_per_s", "grad_norm", "mfu"})
      EXPECT_TRUE(j.contains(key)) << key << " missing in " << line;
    EXPECT_EQ(j.contains("val_loss"), steps % 2 == 0) << line;
    EXPECT_GT(j["mfu"].get<double>(), 0.0);
    EXPECT_LT(j["mfu"].get<double>(), 1.0);
  }
  EXPECT_EQ(steps, 4);
}

}  // namespace
}  // namespace alpa
