// The commands as library calls: JSON shape, human output, and user errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include <fstream>
#include <set>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/models/registry.h"
#include "alpa/plan/plan.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

using test_support::CmdRun;
using test_support::run;

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

TEST(TrainCommand, LogHasOneJsonLinePerStep) {
  const std::string path = ::testing::TempDir() + "/train_log.jsonl";
  TrainFlags f;
  f.steps = 3;
  f.threads = 1;
  f.log_path = path;
  CmdRun r = run(run_train, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  std::ifstream in(path);
  std::string line;
  int steps = 0;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"].get<int>(), ++steps);
    EXPECT_GT(j["loss"].get<double>(), 0);
    EXPECT_EQ(j["lr"].get<double>(), 1e-3);
    EXPECT_GT(j["tokens_per_s"].get<double>(), 0);
  }
  EXPECT_EQ(steps, 3);
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

TEST(TrainCommand, CheckpointsAndResumeAcrossPlans) {
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/tests/cli-checkpoint";
  std::filesystem::remove_all(dir);
  TrainFlags f;
  f.steps = 4;
  f.threads = 1;
  f.json = true;
  CmdRun straight = run(run_train, f);
  ASSERT_EQ(straight.code, kExitOk) << straight.err;
  // Two steps on a 2x2 mesh with checkpoints after each, then steps 3-4 on one device.
  f.steps = 2;
  f.parallel.mesh = "2x2";
  f.checkpoint_dir = dir;
  f.checkpoint_every = 1;
  CmdRun first = run(run_train, f);
  ASSERT_EQ(first.code, kExitOk) << first.err;
  nlohmann::json j1 = nlohmann::json::parse(first.out);
  ASSERT_EQ(j1["checkpoints"].size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(dir + "/step-00000002/manifest.json"));
  TrainFlags g;
  g.steps = 4;
  g.threads = 1;
  g.json = true;
  g.resume = dir;
  CmdRun resumed = run(run_train, g);
  ASSERT_EQ(resumed.code, kExitOk) << resumed.err;
  nlohmann::json j = nlohmann::json::parse(resumed.out);
  nlohmann::json js = nlohmann::json::parse(straight.out);
  EXPECT_EQ(j["first_step"].get<int>(), 3);
  ASSERT_EQ(j["losses"].size(), 2u);
  for (int i = 0; i < 2; ++i)
    EXPECT_NEAR(j["losses"][i].get<double>(), js["losses"][2 + i].get<double>(),
                1e-5 * js["losses"][2 + i].get<double>());
  // Human output says where it resumed from and where it wrote.
  TrainFlags h = g;
  h.json = false;
  h.steps = 3;
  h.resume = dir + "/step-00000002";
  h.checkpoint_dir = dir;
  CmdRun text = run(run_train, h);
  ASSERT_EQ(text.code, kExitOk) << text.err;
  EXPECT_NE(text.out.find("resuming from "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("step 3/3"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("step 1/3"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("checkpoint  " + dir + "/step-00000003"), std::string::npos) << text.out;

  // Errors: nothing left to train, another model size, a path that is not a checkpoint.
  g.steps = 3;
  CmdRun done = run(run_train, g);
  EXPECT_EQ(done.code, kExitUserError);
  EXPECT_NE(done.err.find("nothing to train"), std::string::npos) << done.err;
  g.steps = 10;
  g.model.size = "small";
  CmdRun other = run(run_train, g);
  EXPECT_EQ(other.code, kExitUserError);
  EXPECT_NE(other.err.find("is of model gpt-tiny, not gpt-small"), std::string::npos) << other.err;
  g.model.size = "tiny";
  g.resume = dir + "/nowhere";
  CmdRun missing = run(run_train, g);
  EXPECT_EQ(missing.code, kExitUserError);
  EXPECT_NE(missing.err.find("does not exist"), std::string::npos) << missing.err;
  g.resume = dir;
  g.model.layers = 3;  // same name, different shapes
  CmdRun layers = run(run_train, g);
  EXPECT_EQ(layers.code, kExitUserError);
  EXPECT_NE(layers.err.find("checkpoint"), std::string::npos) << layers.err;
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
  // compile's phases, in order, each timed.
  std::vector<std::string> phases;
  const nlohmann::ordered_json ordered = nlohmann::ordered_json::parse(r.out);
  for (const auto& [name, s] : ordered["compile_phases"].items()) {
    phases.push_back(name);
    EXPECT_GE(s.get<double>(), 0) << name;
  }
  EXPECT_EQ(phases,
            (std::vector<std::string>{"model step", "plan", "lower", "verify", "simulate"}));
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
  EXPECT_TRUE(j["pipeline_matches_one_device"].get<bool>());
  EXPECT_GE(j["pipeline_stages"].get<int>(), 1);
  EXPECT_EQ(j["pipeline_losses"].size(), 20u);
}

// `alpa plan --size tiny --cluster local --devices 4 --json`: a pipeline search.
PlanFlags tiny_pipeline_on_four() {
  PlanFlags f;
  f.model.size = "tiny";
  f.parallel.cluster = "local";
  f.parallel.devices = 4;
  f.json = true;
  return f;
}

TEST(PipelinePlanCommand, JsonHasStagesAndPlanningTimeAndSearchesMicroBatches) {
  PlanFlags f = tiny_pipeline_on_four();
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["devices"].get<int>(), 4);
  EXPECT_GT(j["planning_time_s"].get<double>(), 0);
  for (const char* k : {"clustering_s", "stage_costs_s", "dp_s", "candidates", "intra_solves"})
    EXPECT_TRUE(j["planning"].contains(k)) << k;
  EXPECT_GT(j["compile_phases"]["plan"].get<double>(), 0);
  EXPECT_TRUE(j["compile_phases"].contains("verify"));
  const int mb = j["micro_batches"].get<int>();
  EXPECT_EQ(8 % mb, 0);
  EXPECT_FALSE(j["micro_batch_search"].empty());
  ASSERT_FALSE(j["stages"].empty());
  int devices = 0, next_layer = 0;
  for (const auto& st : j["stages"]) {
    EXPECT_EQ(st["layers"][0].get<int>(), next_layer);
    next_layer = st["layers"][1].get<int>() + 1;
    const auto lm = st["logical_mesh"].get<std::vector<int>>();
    EXPECT_EQ(lm[0] * lm[1], st["devices"].get<int>());
    EXPECT_FALSE(st["submesh"].get<std::string>().empty());
    EXPECT_GT(st["time_per_micro_batch_s"].get<double>(), 0);
    devices += st["devices"].get<int>();
  }
  EXPECT_EQ(next_layer, j["layers"].get<int>());
  EXPECT_EQ(devices, 4);
  EXPECT_GT(j["predicted_step_time_s"].get<double>(), 0);
  // The plan was chosen by simulation; its simulated step and memory are reported.
  EXPECT_GT(j["simulated_step_time_s"].get<double>(), 0);
  EXPECT_LE(j["simulated_peak_memory_bytes"].get<double>(), j["device_memory_bytes"].get<double>());
  EXPECT_GE(j["plan_rounds"].get<int>(), 1);
  // Every plan the check simulated is listed; the chosen one is the fastest that fits.
  ASSERT_FALSE(j["simulated_candidates"].empty());
  double fastest = 1e30;
  for (const auto& c : j["simulated_candidates"]) {
    EXPECT_GE(c["stages"].get<int>(), 1);
    EXPECT_GE(c["micro_batches"].get<int>(), 1);
    if (c["fits_memory"].get<bool>()) fastest = std::min(fastest, c["step_time_s"].get<double>());
  }
  EXPECT_DOUBLE_EQ(fastest, j["simulated_step_time_s"].get<double>());
}

// Micro-batch counts cost stages by the layouts earlier counts searched (reported as
// reused_across_counts, with fewer ILPs); --search-every-count searches every candidate.
TEST(PipelinePlanCommand, SearchEveryCountTurnsOffLayoutsCarriedAcrossCounts) {
  PlanFlags f = tiny_pipeline_on_four();
  CmdRun carried = run(run_plan, f);
  ASSERT_EQ(carried.code, kExitOk) << carried.err;
  f.parallel.search_every_count = true;
  CmdRun searched = run(run_plan, f);
  ASSERT_EQ(searched.code, kExitOk) << searched.err;
  const nlohmann::json c = nlohmann::json::parse(carried.out)["planning"];
  const nlohmann::json s = nlohmann::json::parse(searched.out)["planning"];
  EXPECT_GT(c["reused_across_counts"].get<int>(), 0);
  EXPECT_EQ(s["reused_across_counts"].get<int>(), 0);
  EXPECT_LT(c["intra_solves"].get<int>(), s["intra_solves"].get<int>());
}

// --schedule auto: the planned stages simulated under every schedule, each listed with its
// step, bubble and memory (or why it was not possible), the fastest that fits chosen and
// reported as the schedule; the plan file it writes runs that schedule.
TEST(PipelinePlanCommand, ScheduleAutoComparesTheSchedulesBySimulation) {
  PlanFlags f;
  f.model.size = "small";
  f.parallel.cluster = "p3.16xlarge";
  f.parallel.devices = 2;
  f.parallel.space = "inter-only";
  f.parallel.schedule = "auto";
  f.micro_batches = 4;
  f.json = true;
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/tests/cli-schedules";
  std::filesystem::create_directories(dir);
  f.out_path = dir + "/auto.json";
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.contains("schedule_candidates")) << r.out;
  std::set<std::string> tried;
  double fastest = 1e30;
  std::string fastest_name;
  int chosen = 0;
  for (const auto& c : j["schedule_candidates"]) {
    const std::string name =
        cat(c["schedule"].get<std::string>(), "/", c["virtual_stages"].get<int>());
    tried.insert(name);
    if (c.contains("not_possible")) continue;
    EXPECT_GT(c["step_time_s"].get<double>(), 0) << name;
    EXPECT_GE(c["bubble_fraction"].get<double>(), 0) << name;
    if (c["fits_memory"].get<bool>() && c["step_time_s"].get<double>() < fastest) {
      fastest = c["step_time_s"].get<double>();
      fastest_name = name;
    }
    chosen += c["chosen"].get<bool>();
  }
  EXPECT_TRUE(tried.count("1f1b/1") && tried.count("gpipe/1") && tried.count("interleaved-1f1b/2"))
      << r.out;
  EXPECT_EQ(chosen, 1);
  EXPECT_DOUBLE_EQ(j["simulated_step_time_s"].get<double>(), fastest);
  const int v = j.value("virtual_stages", 1);
  EXPECT_EQ(cat(j["schedule"].get<std::string>(), "/", v), fastest_name);
  // GPT-small's two stages compute more than they send: interleaving pays on p3.16xlarge.
  EXPECT_EQ(j["schedule"].get<std::string>(), "interleaved-1f1b") << r.out;
  Plan written = load_plan(f.out_path).value();
  EXPECT_EQ(written.schedule, "interleaved-1f1b");
  EXPECT_EQ(written.virtual_stages, v);
  EXPECT_EQ(written.stages.size(), static_cast<size_t>(2 * v));
}

// The interleaved schedule trains from the flags alone (the planner's stages re-cut), reports
// each mesh's layer ranges, and its flag mistakes are clear errors.
TEST(PipelineTrainCommand, InterleavedScheduleFromTheFlags) {
  TrainFlags t;
  t.steps = 2;
  t.parallel.devices = 2;
  t.parallel.space = "inter-only";
  t.parallel.schedule = "interleaved";
  t.micro_batches = 4;
  t.json = true;
  CmdRun r = run(run_train, t);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["schedule"].get<std::string>(), "interleaved-1f1b");
  ASSERT_EQ(j["pipeline"]["stages"].size(), 2u);
  EXPECT_EQ(j["pipeline"]["stages"][0]["layers"].size(), 2u);  // two stages on mesh 0
  struct Case {
    std::string schedule;
    int virtual_stages, micro_batches;
    const char* message;
  };
  for (const Case& c : {Case{"1f1b", 2, 4, "--virtual-stages applies to the interleaved"},
                        Case{"interleaved", 0, 1, "multiple of the 2 pipeline meshes"}}) {
    TrainFlags bad = t;
    bad.parallel.schedule = c.schedule;
    bad.parallel.virtual_stages = c.virtual_stages;
    bad.micro_batches = c.micro_batches;
    CmdRun e = run(run_train, bad);
    EXPECT_EQ(e.code, kExitUserError) << c.message;
    EXPECT_NE(e.err.find(c.message), std::string::npos) << e.err;
  }
}

TEST(SimulateCommand, BaselineReportsItsSearchAndBest) {
  SimulateFlags f;
  f.plan.model.size = "tiny";
  f.plan.parallel.cluster = "local";
  f.plan.parallel.devices = 4;
  f.plan.json = true;
  f.baseline = "megatron";
  CmdRun r = run(run_simulate, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["plan_source"].get<std::string>(), "megatron");
  const auto& c = j["config"];
  EXPECT_EQ(c["dp"].get<int>() * c["tp"].get<int>() * c["pp"].get<int>(), 4);
  EXPECT_EQ(j["stages"].size(), c["pp"].get<size_t>());
  EXPECT_GE(j["trials"].size(), 6u);
  double fastest = 1e30;
  for (const auto& t : j["trials"])
    if (t["fits"].get<bool>()) fastest = std::min(fastest, t["step_time_s"].get<double>());
  EXPECT_DOUBLE_EQ(j["step_time_s"].get<double>(), fastest);
  EXPECT_TRUE(j["fits_memory"].get<bool>());
  // The planner's report for the same model names its source too.
  f.baseline.clear();
  CmdRun p = run(run_simulate, f);
  ASSERT_EQ(p.code, kExitOk) << p.err;
  const nlohmann::json pj = nlohmann::json::parse(p.out);
  EXPECT_EQ(pj["plan_source"].get<std::string>(), "planner");
  // Each planned stage: what it recomputes, and its peak in parts, planned and simulated.
  for (const auto& st : pj["stages"]) {
    EXPECT_TRUE(st["remat"].is_string());
    const auto& m = st["memory"];
    EXPECT_NEAR(m["planned"]["peak_bytes"].get<double>(),
                st["planner_peak_memory_bytes"].get<double>(),
                1e-9 * st["planner_peak_memory_bytes"].get<double>());
    EXPECT_NEAR(m["simulated"]["peak_bytes"].get<double>(), st["peak_memory_bytes"].get<double>(),
                1e-9 * st["peak_memory_bytes"].get<double>());
  }
  // Human output lists the configurations tried.
  f.baseline = "pp-dp";
  f.plan.json = false;
  CmdRun h = run(run_simulate, f);
  ASSERT_EQ(h.code, kExitOk) << h.err;
  EXPECT_NE(h.out.find("pp-dp grid search, best of"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("configurations tried"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find("dp 1 x tp 1 x pp 4"), std::string::npos) << h.out;
  // Memory that fits nothing: a clear error.
  f.baseline = "deepspeed";
  f.plan.parallel.memory_budget_gb = 1e-6;
  CmdRun e = run(run_simulate, f);
  EXPECT_EQ(e.code, kExitUserError);
  EXPECT_NE(e.err.find("no deepspeed configuration fits"), std::string::npos) << e.err;
}

// A pipeline the stage imbalance tolerance rules out says so, and how to allow it.
TEST(PipelinePlanCommand, ImbalanceToleranceIsNamedWhenItRulesOutEveryPlan) {
  const std::string path = ::testing::TempDir() + "/two_layers.ir";
  std::ofstream(path) << R"(graph two {
  %x = parameter() {role=input, init=normal, scale=1} : f32[8,4]
  %w1 = parameter() {init=normal, scale=0.3} : f32[4,4]
  %h = dot_general(%x, %w1) {lhs_contract=[1], rhs_contract=[0]} : f32[8,4]
  %t = tanh(%h) : f32[8,4]
  %w2 = parameter() {init=normal, scale=0.3} : f32[4,1]
  %y = dot_general(%t, %w2) {lhs_contract=[1], rhs_contract=[0]} : f32[8,1]
  %sq = mul(%y, %y) : f32[8,1]
  %l = reduce_sum(%sq) {dims=[0,1]} : f32[]
  output loss = %l
}
)";
  PlanFlags f;
  f.model.model = path;
  f.parallel.cluster = "local";
  f.parallel.devices = 2;
  f.parallel.space = "inter-only";
  f.parallel.pipeline_layers = 2;
  CmdRun r = run(run_plan, f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("stage imbalance tolerance (1) kept"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("--stage-imbalance 1e9"), std::string::npos) << r.err;
  f.parallel.stage_imbalance = 1e9;
  r = run(run_plan, f);
  EXPECT_EQ(r.code, kExitOk) << r.err;
}

// The tolerance defaults to Alpa's suites' values by model (0.25 for Wide-ResNet, 1 for the
// others); a value given on the command line wins.
TEST(PipelinePlanCommand, StageImbalanceDefaultsByModelFamily) {
  auto tolerance = [](const std::string& model, double given) {
    ParallelFlags f;
    f.cluster = "local";
    f.devices = 2;
    f.stage_imbalance = given;
    ModelSpec spec = resolve_model(model, "tiny", {}).value();
    Result<CompileSetup> s = resolve_compile(f, spec, OptimizerOptions{}, 0, "1x1", "local");
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? s->options.planner.imbalance_tolerance : -1.0;
  };
  EXPECT_EQ(tolerance("wresnet", -1), 0.25);
  EXPECT_EQ(tolerance("gpt", -1), 1.0);
  EXPECT_EQ(tolerance("moe", -1), 1.0);
  EXPECT_EQ(tolerance("wresnet", 1e9), 1e9);
  EXPECT_EQ(tolerance("gpt", 0.5), 0.5);
}

TEST(PipelinePlanCommand, HumanOutputNamesStagesAndPhases) {
  PlanFlags f;
  f.model.size = "tiny";
  f.parallel.cluster = "local";
  f.parallel.devices = 2;
  f.micro_batches = 2;
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  for (const char* s :
       {"pipeline: auto", "planned in", "layer clustering", "stage costs", "stage DP",
        "stage 0: layers 0-", "submesh", "logical mesh", "per micro-batch",
        "predicted per training step", "samples/s", "peak memory per device"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << "\n" << r.out;
}

// One device's losses for gpt-tiny with `micro_batches` (the reference for pipelines).
std::vector<double> one_device_losses(int steps, int micro_batches) {
  TrainFlags t;
  t.steps = steps;
  t.threads = 1;
  t.micro_batches = micro_batches;
  t.json = true;
  CmdRun r = run(run_train, t);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  return nlohmann::json::parse(r.out)["losses"].get<std::vector<double>>();
}

void expect_same_losses(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5 * std::abs(want[i])) << "step " << i + 1;
}

TEST(PipelineTrainCommand, AutomaticPipelineMatchesOneDevice) {
  TrainFlags t;
  t.steps = 3;
  t.json = true;
  t.parallel.devices = 4;
  t.parallel.pipeline = "auto";
  CmdRun r = run(run_train, t);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["devices"].get<int>(), 4);
  ASSERT_TRUE(j.contains("pipeline"));
  ASSERT_FALSE(j["pipeline"]["stages"].empty());
  int devices = 0;
  for (const auto& st : j["pipeline"]["stages"]) devices += static_cast<int>(st["devices"].size());
  EXPECT_EQ(devices, 4);
  expect_same_losses(j["losses"].get<std::vector<double>>(),
                     one_device_losses(3, j["micro_batches"].get<int>()));
}

TEST(PipelineTrainCommand, PlanFileWithStagesTrainsAsPlanned) {
  const std::string path = ::testing::TempDir() + "/tiny_pipeline.json";
  PlanFlags f;
  f.model.size = "tiny";
  f.parallel.cluster = "local";
  f.parallel.devices = 4;
  f.micro_batches = 4;
  f.out_path = path;
  f.json = true;
  CmdRun p = run(run_plan, f);
  ASSERT_EQ(p.code, kExitOk) << p.err;
  const size_t stages = nlohmann::json::parse(p.out)["stages"].size();
  nlohmann::json file = nlohmann::json::parse(std::ifstream(path));
  EXPECT_EQ(file["stages"].size(), stages);
  TrainFlags t;
  t.steps = 3;
  t.json = true;
  t.parallel.plan = path;
  CmdRun r = run(run_train, t);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["micro_batches"].get<int>(), 4);
  EXPECT_EQ(j["pipeline"]["stages"].size(), stages);
  const std::vector<double> want = one_device_losses(3, 4);
  expect_same_losses(j["losses"].get<std::vector<double>>(), want);

  // A hand-written pipeline: two stages of two devices each, GPipe.
  const std::string hand = ::testing::TempDir() + "/tiny_pipeline_hand.json";
  std::ofstream(hand) << R"({"micro_batches": 4, "pipeline": {"layers": 3, "schedule": "gpipe"},
      "stages": [{"layers": [0, 1], "mesh": [1, 2]}, {"layers": [2, 2], "mesh": [2, 1]}]})";
  t.parallel.plan = hand;
  CmdRun h = run(run_train, t);
  ASSERT_EQ(h.code, kExitOk) << h.err;
  nlohmann::json hj = nlohmann::json::parse(h.out);
  EXPECT_EQ(hj["schedule"].get<std::string>(), "gpipe");
  EXPECT_EQ(hj["micro_batches"].get<int>(), 4);
  EXPECT_GT(hj["predicted_step_time_s"].get<double>(), 0);
  EXPECT_EQ(hj["devices"].get<int>(), 4);
  expect_same_losses(hj["losses"].get<std::vector<double>>(), want);

  // A plan made for another graph is refused.
  file["graph_fingerprint"] = "0123456789abcdef";
  std::ofstream(path) << file.dump();
  t.parallel.plan = path;
  CmdRun bad = run(run_train, t);
  EXPECT_EQ(bad.code, kExitUserError);
  EXPECT_NE(bad.err.find("different training graph"), std::string::npos) << bad.err;
}

TEST(PipelineTrainCommand, FlagConflictsAreClearErrors) {
  struct Case {
    std::string mesh, pipeline, plan;
    int devices;
    const char* message;
  };
  const Case cases[] = {
      {"2x2", "", "auto", 4, "--mesh and pipeline stages exclude each other"},
      {"", "auto", "auto", 0, "--pipeline auto needs the number of devices"},
      {"", "", "data-parallel", 4, "is a plan for one mesh"},
      {"2x2", "", "auto", 0, "--schedule and --pipeline-layers apply to pipeline stages"},
  };
  for (const Case& c : cases) {
    TrainFlags t;
    t.steps = 1;
    t.parallel.mesh = c.mesh;
    t.parallel.pipeline = c.pipeline;
    t.parallel.plan = c.plan;
    t.parallel.devices = c.devices;
    if (c.devices == 0 && c.pipeline.empty()) t.parallel.schedule = "gpipe";
    CmdRun r = run(run_train, t);
    EXPECT_EQ(r.code, kExitUserError) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

// A program written by `alpa compile` trains, under `alpa train --program`, to exactly the
// losses of compiling in place, on one device, a mesh and a pipeline; the model flags come from
// the program.
TEST(CompileCommand, ProgramsTrainAsCompilingInPlace) {
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/tests/cli-programs";
  std::filesystem::create_directories(dir);
  struct Case {
    std::string mesh;
    int devices, micro_batches;
  };
  for (const Case& c : {Case{"", 0, 2}, Case{"2x2", 0, 1}, Case{"", 4, 4}}) {
    SCOPED_TRACE(cat("mesh '", c.mesh, "' devices ", c.devices));
    const std::string path = cat(dir, "/p", c.devices, c.mesh, ".json");
    CompileFlags cf;
    cf.plan.model.size = "tiny";
    cf.plan.optimizer.lr = 3e-3;
    cf.plan.parallel.mesh = c.mesh;
    cf.plan.parallel.devices = c.devices;
    cf.plan.micro_batches = c.micro_batches;
    cf.plan.out_path = path;
    cf.plan.json = true;
    CmdRun compiled = run(run_compile, cf);
    ASSERT_EQ(compiled.code, kExitOk) << compiled.err;
    EXPECT_EQ(nlohmann::json::parse(compiled.out)["out"], path);

    TrainFlags in_place;
    in_place.steps = 3;
    in_place.json = true;
    in_place.optimizer.lr = 3e-3;
    in_place.parallel.mesh = c.mesh;
    in_place.parallel.devices = c.devices;
    in_place.micro_batches = c.micro_batches;
    CmdRun want = run(run_train, in_place);
    ASSERT_EQ(want.code, kExitOk) << want.err;
    TrainFlags from_file;
    from_file.steps = 3;
    from_file.json = true;
    from_file.program_path = path;
    CmdRun got = run(run_train, from_file);
    ASSERT_EQ(got.code, kExitOk) << got.err;
    const nlohmann::json a = nlohmann::json::parse(got.out), b = nlohmann::json::parse(want.out);
    EXPECT_EQ(a["losses"], b["losses"]);  // bit-identical
    EXPECT_EQ(a["devices"], b["devices"]);
    EXPECT_EQ(a["micro_batches"], b["micro_batches"]);
  }
}

// `alpa simulate --program` of a program compiled with --choose simulation gives the simulated
// step of `alpa simulate` in place.
TEST(CompileCommand, ProgramsSimulateAsCompilingInPlace) {
  const std::string path = std::string(ALPA_BINARY_DIR) + "/tests/cli-programs/sim.json";
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  CompileFlags cf;
  cf.plan.parallel.devices = 4;
  cf.plan.parallel.choose = "simulation";
  cf.plan.parallel.cluster = "p3.16xlarge";
  cf.plan.micro_batches = 2;
  cf.plan.out_path = path;
  cf.plan.json = true;
  ASSERT_EQ(run(run_compile, cf).code, kExitOk);
  SimulateFlags in_place;
  in_place.plan.parallel.devices = 4;
  in_place.plan.micro_batches = 2;
  in_place.plan.json = true;
  CmdRun want = run(run_simulate, in_place);
  ASSERT_EQ(want.code, kExitOk) << want.err;
  SimulateFlags from_file;
  from_file.program_path = path;
  from_file.plan.json = true;
  CmdRun got = run(run_simulate, from_file);
  ASSERT_EQ(got.code, kExitOk) << got.err;
  const nlohmann::json a = nlohmann::json::parse(got.out), b = nlohmann::json::parse(want.out);
  EXPECT_EQ(a["step_time_s"], b["step_time_s"]);
  EXPECT_EQ(a["peak_memory_bytes"], b["peak_memory_bytes"]);
  EXPECT_EQ(a["stages"].size(), b["stages"].size());
}

TEST(CompileCommand, BadProgramsAndDeviceCountsAreRefused) {
  const std::string dir = std::string(ALPA_BINARY_DIR) + "/tests/cli-programs";
  std::filesystem::create_directories(dir);
  CompileFlags cf;
  cf.plan.parallel.mesh = "1x2";
  cf.plan.out_path = dir + "/two.json";
  ASSERT_EQ(run(run_compile, cf).code, kExitOk);
  // Another device count.
  TrainFlags t;
  t.steps = 1;
  t.program_path = cf.plan.out_path;
  t.parallel.devices = 4;
  CmdRun r = run(run_train, t);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("differs from the program's 2 devices"), std::string::npos) << r.err;
  SimulateFlags s;
  s.program_path = cf.plan.out_path;
  s.plan.parallel.devices = 8;
  r = run(run_simulate, s);
  EXPECT_NE(r.err.find("differs from the program's 2 devices"), std::string::npos) << r.err;
  // Another model than the program was compiled from.
  t.parallel.devices = 0;
  t.model.size = "small";
  t.model_given = true;
  r = run(run_train, t);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("compiled from another training step"), std::string::npos) << r.err;
  // A damaged file: cut short, and a field with the wrong type.
  std::string text;
  {
    std::ifstream in(cf.plan.out_path);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  const std::string cut = dir + "/cut.json";
  std::ofstream(cut) << text.substr(0, text.size() / 2);
  t = TrainFlags{};
  t.program_path = cut;
  r = run(run_train, t);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("cut.json: not valid JSON"), std::string::npos) << r.err;
  std::string bad = text;
  const std::string field = "\"micro_batches\": 1";
  bad.replace(bad.find(field), field.size(), "\"micro_batches\": -3");
  const std::string wrong = dir + "/wrong.json";
  std::ofstream(wrong) << bad;
  t.program_path = wrong;
  r = run(run_train, t);
  EXPECT_NE(r.err.find("wrong.json: micro_batches: -3 is out of range"), std::string::npos)
      << r.err;
  // Without --out there is nothing to write.
  cf.plan.out_path.clear();
  r = run(run_compile, cf);
  EXPECT_NE(r.err.find("needs --out"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace alpa
