// The commands as library calls: JSON shape, human output, and user errors.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "alpa/cli/commands.h"

namespace alpa {
namespace {

struct CmdRun {
  int code;
  std::string out, err;
};

template <typename Flags, typename Fn>
CmdRun run(Fn fn, const Flags& flags) {
  std::ostringstream out, err;
  const int code = fn(flags, out, err);
  return {code, out.str(), err.str()};
}

TEST(TrainCommand, JsonHasLossesAndThroughput) {
  TrainFlags f;
  f.steps = 3;
  f.threads = 1;
  f.json = true;
  CmdRun r = run(run_train, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);  // exactly one JSON object
  ASSERT_EQ(j["losses"].size(), 3u);
  EXPECT_GT(j["step_time_s"].get<double>(), 0);
  EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j["tokens_per_step"].get<int64_t>(), 8 * 32);
  EXPECT_EQ(j["parameters"].get<int64_t>(), 110336);
}

TEST(TrainCommand, HumanOutputHasStepsAndSummary) {
  TrainFlags f;
  f.steps = 2;
  f.threads = 1;
  CmdRun r = run(run_train, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("step 1/2  loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("step 2/2  loss "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("tokens/s"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("GFLOP/s"), std::string::npos) << r.out;
}

TEST(TrainCommand, UserErrorsGiveMessageHintAndExitCode) {
  TrainFlags f;
  f.model.size = "galactic";
  f.json = true;
  CmdRun r = run(run_train, f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("error: unknown GPT size 'galactic'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("hint: sizes: tiny"), std::string::npos) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["error"].get<std::string>().find("galactic"), std::string::npos);

  TrainFlags g;
  g.model.heads = 3;  // 64 is not divisible by 3
  CmdRun r2 = run(run_train, g);
  EXPECT_EQ(r2.code, kExitUserError);
  EXPECT_NE(r2.err.find("not divisible by heads"), std::string::npos) << r2.err;

  TrainFlags h;
  h.micro_batches = 3;  // batch 8
  CmdRun r3 = run(run_train, h);
  EXPECT_EQ(r3.code, kExitUserError);
  EXPECT_NE(r3.err.find("micro-batches"), std::string::npos) << r3.err;
}

TEST(GraphCommand, ReportsThe39BModel) {
  GraphFlags f;
  f.model.size = "39b";
  f.json = true;
  CmdRun r = run(run_graph, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  const double params = j["parameters"].get<double>();
  EXPECT_LT(std::abs(params - 39e9) / 39e9, 0.02);
  EXPECT_GT(j["flops_per_step"].get<double>(), 2.4e17);
  EXPECT_GT(j["ops_by_kind"]["dot_general"].get<int>(), 48 * 6);
  EXPECT_EQ(j["parameter_bytes"].get<int64_t>(), 2 * j["parameters"].get<int64_t>());  // f16
}

TEST(GraphCommand, EmitsTextIrThatTrainsAsAModelFile) {
  const std::string path = ::testing::TempDir() + "/mlp_forward.ir";
  GraphFlags f;
  f.model.model = "mlp";
  f.emit = "forward";
  f.out_path = path;
  CmdRun r = run(run_graph, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  // The file is a user model now: train it through --model <path>.
  TrainFlags t;
  t.model.model = path;
  t.model.size = "";
  t.steps = 30;
  t.threads = 1;
  t.optimizer.lr = 1e-2;
  t.json = true;
  CmdRun tr = run(run_train, t);
  ASSERT_EQ(tr.code, kExitOk) << tr.err;
  nlohmann::json j = nlohmann::json::parse(tr.out);
  const auto losses = j["losses"].get<std::vector<double>>();
  EXPECT_LT(losses.back(), 0.5 * losses.front());  // a fixed batch is fitted
}

TEST(GraphCommand, MalformedModelFileIsAClearError) {
  const std::string path = ::testing::TempDir() + "/broken.ir";
  {
    std::ofstream out(path);
    out << "graph g {\n  %x = parameter() : f32[2]\n  %y = mul(%x, %z) : f32[2]\n}\n";
  }
  GraphFlags f;
  f.model.model = path;
  CmdRun r = run(run_graph, f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find(path + ":3:16: use of undefined value %z"), std::string::npos) << r.err;
}

TEST(PlanCommand, JsonHasPredictionsAndWritesAPlanThatTrains) {
  const std::string path = ::testing::TempDir() + "/tiny_plan.json";
  PlanFlags f;
  f.model.size = "tiny";
  f.parallel.mesh = "2x2";
  f.parallel.cluster = "local";
  f.out_path = path;
  f.json = true;
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_GT(j["predicted_step_time_s"].get<double>(), 0);
  EXPECT_GT(j["peak_memory_bytes"].get<double>(), 0);
  EXPECT_EQ(j["devices"].get<int>(), 4);
  EXPECT_TRUE(j["fits_memory"].get<bool>());
  EXPECT_FALSE(j["weights"].empty());
  // The plan file trains on the same mesh (the mesh comes from the file).
  TrainFlags t;
  t.steps = 2;
  t.json = true;
  t.parallel.plan = path;
  CmdRun tr = run(run_train, t);
  ASSERT_EQ(tr.code, kExitOk) << tr.err;
  nlohmann::json tj = nlohmann::json::parse(tr.out);
  EXPECT_EQ(tj["devices"].get<int>(), 4);
  EXPECT_EQ(tj["plan"].get<std::string>(), path);
}

TEST(PlanCommand, HumanOutputExplainsThePlan) {
  PlanFlags f;
  f.model.size = "1.3b";
  f.parallel.mesh = "1x4";
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (const char* s : {"p3.16xlarge", "mesh 1x4", "step time", "peak memory", "h*.mlp.w*",
                        "collectives by kind", "largest communication", "optimal"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

TEST(PlanCommand, UserErrors) {
  PlanFlags f;
  f.parallel.mesh = "3x3";  // 9 devices do not fill whole hosts of 8
  CmdRun r = run(run_plan, f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("do not fill whole hosts"), std::string::npos) << r.err;
  PlanFlags g;
  g.parallel.cluster = "/nonexistent/cluster.json";
  CmdRun r2 = run(run_plan, g);
  EXPECT_EQ(r2.code, kExitUserError);
  PlanFlags h;
  h.parallel.plan = "megatron";
  CmdRun r3 = run(run_plan, h);
  EXPECT_EQ(r3.code, kExitUserError);
  EXPECT_NE(r3.err.find("plans: auto, data-parallel"), std::string::npos) << r3.err;
}

TEST(DemoCommand, LossFalls) {
  DemoFlags f;
  f.steps = 120;
  f.threads = 1;
  f.json = true;
  CmdRun r = run(run_demo, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  const auto losses = j["losses"].get<std::vector<double>>();
  EXPECT_LT(losses.back(), 0.5 * losses.front());
  EXPECT_TRUE(j["mesh_matches_one_device"].get<bool>());
  EXPECT_EQ(j["mesh_losses"].size(), 20u);
}

}  // namespace
}  // namespace alpa
