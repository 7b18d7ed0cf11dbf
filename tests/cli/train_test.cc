// Training end to end on one device: the loss of the tiny GPT and MLP falls on their
// synthetic tasks, runs are deterministic, and micro-batching does not change the step.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "alpa/cli/trainer.h"

namespace alpa {
namespace {

double mean_of_last(const std::vector<double>& v, size_t n) {
  return std::accumulate(v.end() - n, v.end(), 0.0) / static_cast<double>(n);
}

// GPT-tiny (2 layers, hidden 64, vocab 128, seq 32) on the two-permutation task with AdamW,
// lr 3e-3, 300 steps, seed 0. Measured: first loss 4.88 (ln 128 = 4.85), mean of the last 20
// losses about 0.1. The bound below leaves room for platform differences in rounding.
TEST(Training, TinyGptLossFallsFarBelowItsStart) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 300;
  o.threads = 1;
  o.compile.optimizer.learning_rate = 3e-3;
  TrainReport r = train_model(spec, o).value();
  ASSERT_EQ(r.losses.size(), 300u);
  EXPECT_GT(r.losses.front(), 4.5);
  EXPECT_LT(r.losses.front(), 5.2);
  EXPECT_LT(mean_of_last(r.losses, 20), 0.35) << "last loss " << r.losses.back();
}

TEST(Training, MlpLossFalls) {
  ModelSpec spec = resolve_model("mlp", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 200;
  o.threads = 1;
  o.compile.optimizer.learning_rate = 1e-2;
  TrainReport r = train_model(spec, o).value();
  // Starts near ln(8) = 2.08; the teacher's labels are learnable.
  EXPECT_GT(r.losses.front(), 1.5);
  EXPECT_LT(mean_of_last(r.losses, 20), 0.5 * r.losses.front());
}

TEST(Training, SameSeedSameLossesAndSgdWorks) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 5;
  o.threads = 2;
  o.loop.seed = 11;
  o.compile.optimizer.kind = OptimizerKind::kSgd;
  o.compile.optimizer.learning_rate = 0.1;
  TrainReport a = train_model(spec, o).value();
  TrainReport b = train_model(spec, o).value();
  EXPECT_EQ(a.losses, b.losses);
  EXPECT_LT(a.losses.back(), a.losses.front());
  o.loop.seed = 12;
  TrainReport c = train_model(spec, o).value();
  EXPECT_NE(a.losses, c.losses);
}

// Gradient accumulation over 4 micro-batches takes the same step as the whole batch.
TEST(Training, MicroBatchesMatchTheWholeBatch) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 4;
  o.threads = 1;
  TrainReport whole = train_model(spec, o).value();
  o.compile.micro_batches = 4;
  TrainReport split = train_model(spec, o).value();
  ASSERT_EQ(whole.losses.size(), split.losses.size());
  for (size_t i = 0; i < whole.losses.size(); ++i)
    EXPECT_NEAR(whole.losses[i], split.losses[i], 2e-5 * std::abs(whole.losses[i])) << i;
}

TEST(Training, DivergenceIsReportedNotHidden) {
  ModelSpec spec = resolve_model("mlp", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 30;
  o.threads = 1;
  o.compile.optimizer.kind = OptimizerKind::kSgd;
  o.compile.optimizer.learning_rate = 1e6;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("the loss became"), std::string::npos);
  EXPECT_NE(r.status().hint().find("--lr"), std::string::npos);
}

}  // namespace
}  // namespace alpa
