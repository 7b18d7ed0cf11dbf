// Training controls: learning-rate schedules (warmup, cosine and linear decay to a floor) and
// gradient clipping by the global norm. The norm is over every weight, so under a mesh it sums
// sharded gradients and under a pipeline every stage's share (a grad_norm task per stage, read
// by the update): each plan must give the losses and norms of one device.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/program/verify.h"
#include "alpa/runtime/train.h"

namespace alpa {
namespace {

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

TrainFlags tiny() {
  TrainFlags f;
  f.steps = 4;
  f.seed = 5;
  f.threads = 1;
  f.json = true;
  f.optimizer.lr = 3e-3;
  return f;
}

TEST(LrSchedule, WarmsUpThenDecaysToTheFloor) {
  LrSchedule s;
  s.peak = 1.0;
  s.warmup = 4;
  s.floor = 0.1;
  s.decay_steps = 14;
  EXPECT_DOUBLE_EQ(s.at(1), 0.25);
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);  // constant after the warmup
  s.kind = LrSchedule::Kind::kCosine;
  EXPECT_DOUBLE_EQ(s.at(4), 1.0);
  EXPECT_NEAR(s.at(9), 0.55, 1e-12);  // half way: the mean of peak and floor
  EXPECT_NEAR(s.at(14), 0.1, 1e-12);
  EXPECT_NEAR(s.at(100), 0.1, 1e-12);
  s.kind = LrSchedule::Kind::kLinear;
  EXPECT_NEAR(s.at(6), 1.0 - 0.9 * 0.2, 1e-12);
  EXPECT_NEAR(s.at(14), 0.1, 1e-12);
  EXPECT_FALSE(parse_lr_schedule("exponential").ok());
}

// The plans the controls must not change: one device, a 2x2 mesh with two micro-batches, a
// 2-stage pipeline (the tied embedding's gradient crosses stages) and a 4-stage one.
std::vector<TrainFlags> plans(const TrainFlags& base) {
  TrainFlags mesh = base, pipe2 = base, pipe4 = base;
  mesh.parallel.mesh = "2x2";
  mesh.micro_batches = 2;
  pipe2.parallel.devices = 2;
  pipe2.micro_batches = 2;
  pipe2.parallel.space = "inter-only";
  pipe2.parallel.stage_imbalance = 1e9;
  pipe4 = pipe2;
  pipe4.parallel.devices = 4;
  pipe4.parallel.pipeline_layers = 4;
  return {mesh, pipe2, pipe4};
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 2e-4 * std::abs(want[i]) + 1e-6) << what << " step " << i + 1;
}

TEST(GradientClipping, EveryPlanGivesTheLossesAndNormsOfOneDevice) {
  TrainFlags f = tiny();
  f.optimizer.clip_grad = 0.05;  // below the tiny GPT's norms: every step is clipped
  f.optimizer.lr_schedule = "cosine";
  f.optimizer.warmup_steps = 2;
  f.optimizer.min_lr = 1e-4;
  const CmdResult one = train(f);
  ASSERT_EQ(one.code, kExitOk) << one.err;
  const std::vector<double> losses = one.json()["losses"], norms = one.json()["grad_norms"];
  ASSERT_EQ(norms.size(), 4u);
  for (double n : norms) EXPECT_GT(n, 0.05);
  for (const TrainFlags& p : plans(f)) {
    const CmdResult r = train(p);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const std::string what =
        (r.json()["devices"].dump() + " devices, mesh " + r.json()["mesh"].dump());
    expect_close(r.json()["losses"], losses, "losses " + what);
    expect_close(r.json()["grad_norms"], norms, "norms " + what);
  }
}

// SGD, whose step scales with the gradient (AdamW's normalises a uniform scale away).
TrainFlags tiny_sgd() {
  TrainFlags f = tiny();
  f.optimizer.optimizer = "sgd";
  f.optimizer.lr = 0.5;
  return f;
}

TEST(GradientClipping, ClipsOnlyAboveTheLimitAndChangesTheRun) {
  TrainFlags plain = tiny_sgd();
  plain.optimizer.grad_norm = true;  // tracked, not clipped: the run of no clipping
  TrainFlags none = tiny_sgd();
  const CmdResult tracked = train(plain), untracked = train(none);
  ASSERT_EQ(tracked.code, kExitOk) << tracked.err;
  ASSERT_EQ(untracked.code, kExitOk) << untracked.err;
  EXPECT_EQ(tracked.json()["losses"], untracked.json()["losses"]);
  EXPECT_FALSE(untracked.json().contains("grad_norms"));
  TrainFlags loose = tiny_sgd();
  loose.optimizer.clip_grad = 1e6;  // never reached: the same run
  const CmdResult l = train(loose);
  ASSERT_EQ(l.code, kExitOk) << l.err;
  expect_close(l.json()["losses"], tracked.json()["losses"], "loose clip");
  TrainFlags tight = tiny_sgd();
  tight.optimizer.clip_grad = 1e-3;
  const CmdResult t = train(tight);
  ASSERT_EQ(t.code, kExitOk) << t.err;
  const std::vector<double> a = tracked.json()["losses"], b = t.json()["losses"];
  EXPECT_EQ(a[0], b[0]);  // the first loss is before any update
  // Clipped to a thousandth of the norm, the weights hardly move; unclipped they move a lot.
  EXPECT_LT(std::abs(b[3] - b[0]), 0.01) << t.out;
  EXPECT_GT(std::abs(a[3] - a[0]), 0.05) << tracked.out;
}

TEST(LrSchedule, EveryPlanFollowsIt) {
  TrainFlags f = tiny();
  f.optimizer.optimizer = "sgd";
  f.optimizer.lr = 0.5;
  f.optimizer.lr_schedule = "linear";
  f.optimizer.warmup_steps = 1;
  f.optimizer.decay_steps = 3;
  const CmdResult one = train(f);
  ASSERT_EQ(one.code, kExitOk) << one.err;
  TrainFlags constant = tiny();
  constant.optimizer.optimizer = "sgd";
  constant.optimizer.lr = 0.5;
  const CmdResult c = train(constant);
  ASSERT_EQ(c.code, kExitOk) << c.err;
  const std::vector<double> s = one.json()["losses"], k = c.json()["losses"];
  EXPECT_EQ(s[1], k[1]);  // step 1 ran at the peak (warmup of one step) in both
  EXPECT_NE(s[2], k[2]);  // step 2 at half the peak
  for (const TrainFlags& p : plans(f)) {
    const CmdResult r = train(p);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    expect_close(
        r.json()["losses"], s,
        "losses " + (r.json()["devices"].dump() + " devices, mesh " + r.json()["mesh"].dump()));
  }
}

TEST(TrainingControls, BadCombinationsAreRefused) {
  TrainFlags floor_above = tiny();
  floor_above.optimizer.lr_schedule = "cosine";
  floor_above.optimizer.min_lr = 1.0;
  CmdResult r = train(floor_above);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("--min-lr"), std::string::npos) << r.err;
  TrainFlags eval_without_data = tiny();
  eval_without_data.eval_every = 2;
  r = train(eval_without_data);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("--eval-every needs held-out data"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

// Dynamic loss scaling (f16): a first scale of 2^40 overflows the f16 cotangents, so the first
// steps are skipped (their gradient norms are not finite and they change no weight) and halve
// the scale until the gradients fit; then the run trains. Every plan skips the same steps.
TEST(LossScaling, OverflowingStepsAreSkippedUntilTheScaleFits) {
  TrainFlags f;
  f.steps = 40;
  f.seed = 2;
  f.threads = 1;
  f.json = true;
  f.model.dtype = "f16";
  f.optimizer.lr = 3e-3;
  f.optimizer.loss_scale = "dynamic";
  f.optimizer.loss_scale_log2 = 40;
  // Two micro-batches everywhere: a micro-batch's loss is a mean over its own samples, so its
  // cotangents, and where they overflow, depend on the micro-batch size.
  f.micro_batches = 2;
  const CmdResult one = train(f);
  ASSERT_EQ(one.code, kExitOk) << one.err;
  const nlohmann::json norms = one.json()["grad_norms"];
  ASSERT_EQ(norms.size(), 40u);
  size_t skipped = 0;
  while (skipped < norms.size() && !norms[skipped].is_number()) ++skipped;  // inf/NaN: null
  EXPECT_GT(skipped, 3u);
  EXPECT_LT(skipped, 35u);
  size_t later = 0;  // an occasional overflow later is skipped the same way
  for (size_t i = skipped; i < norms.size(); ++i) later += !norms[i].is_number();
  EXPECT_LE(later, 2u);
  const std::vector<double> losses = one.json()["losses"];
  std::printf("f16, first scale 2^40: %zu steps skipped, loss %.4f -> %.4f\n", skipped,
              losses.front(), losses.back());
  EXPECT_LT(losses.back(), losses[skipped] - 0.05);
  TrainFlags mesh = f;
  mesh.parallel.mesh = "2x2";
  TrainFlags pipe = f;
  pipe.parallel.devices = 2;
  pipe.micro_batches = 2;
  pipe.parallel.space = "inter-only";
  pipe.parallel.stage_imbalance = 1e9;
  for (const TrainFlags& p : {mesh, pipe}) {
    const CmdResult r = train(p);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const nlohmann::json got = r.json()["grad_norms"];
    for (size_t i = 0; i < norms.size(); ++i)
      EXPECT_EQ(got[i].is_number(), norms[i].is_number()) << "step " << i + 1;
    expect_close(r.json()["losses"], losses, "f16 losses");
  }
}

}  // namespace
}  // namespace alpa
