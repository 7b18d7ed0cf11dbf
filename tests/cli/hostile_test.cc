// Hostile input as a user meets it through the commands: oversized models refused before
// anything is allocated, with the numbers; device counts bounded; a plan file's micro-batches
// honoured; --json output that stays JSON whatever bytes a message holds.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/cli/trainer.h"
#include "alpa/models/registry.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

using test_support::CmdRun;

CmdRun train(const TrainFlags& f) {
  return test_support::run(run_train, f);
}

TEST(Hostile, OversizedModelsAreRefusedWithTheMemoryTheyNeed) {
  // Each allocated until the process died before (an internal error or std::bad_alloc).
  for (const auto& [model, size] : std::vector<std::pair<std::string, std::string>>{
           {"gpt", "6.7b"}, {"moe", "70b"}, {"gpt", "39b"}}) {
    TrainFlags f;
    f.model.model = model;
    f.model.size = size;
    f.steps = 1;
    CmdRun r = train(f);
    EXPECT_EQ(r.code, kExitUserError) << model << " " << size;
    EXPECT_NE(r.err.find("this run needs about"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("can be allocated here"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("hint:"), std::string::npos) << r.err;
  }
  TrainFlags f;  // a batch of 2^24 sequences for GPT-tiny: activations of terabytes
  f.model.batch = int64_t{1} << 24;
  f.steps = 1;
  CmdRun r = train(f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("TB"), std::string::npos) << r.err;
}

TEST(Hostile, AdmissionComparesTheNeedWithWhatCanBeAllocated) {
  Result<ModelSpec> spec = resolve_model("gpt", "tiny", {});
  ASSERT_TRUE(spec.ok());
  TrainOptions o;
  o.loop.steps = 1;
  o.threads = 1;
  o.loop.available_bytes = 1 << 20;  // 1 MB: less than GPT-tiny's weights and state
  Result<TrainReport> refused = train_model(*spec, o);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("0.00 GB"), std::string::npos)
      << refused.status().message();
  o.loop.available_bytes = int64_t{1} << 34;
  Result<TrainReport> ok = train_model(*spec, o);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ(ok->losses.size(), 1u);
}

TEST(Hostile, DeviceCountsAreBoundedByWhatTheBackendRuns) {
  TrainFlags f;
  f.parallel.mesh = "64x64";  // 4096 threads before
  f.steps = 1;
  CmdRun r = train(f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("at most 256"), std::string::npos) << r.err;
  PlanFlags p;
  p.parallel.mesh = "1000x1000";
  std::ostringstream out, err;
  EXPECT_EQ(run_plan(p, out, err), kExitUserError);
  EXPECT_NE(err.str().find("1 to 4096 devices"), std::string::npos) << err.str();
}

TEST(Hostile, AMeshPlanFileKeepsItsMicroBatches) {
  const std::string path = ::testing::TempDir() + "/mb2_plan.json";
  PlanFlags p;
  p.parallel.mesh = "2x2";
  p.parallel.cluster = "local";
  p.micro_batches = 2;
  p.out_path = path;
  std::ostringstream out, err;
  ASSERT_EQ(run_plan(p, out, err), kExitOk) << err.str();
  TrainFlags f;
  f.parallel.plan = path;
  f.steps = 1;
  f.json = true;
  CmdRun r = train(f);  // refused as "made for a different training graph" before
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["micro_batches"].get<int>(), 2);
  f.micro_batches = 4;
  r = train(f);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("differs from the plan file's 2"), std::string::npos) << r.err;
}

TEST(Hostile, JsonOutputStaysJsonWhateverBytesAMessageHolds) {
  const std::string path = ::testing::TempDir() + "/bad\xff\xfe.ir";
  std::ofstream(path) << "graph g\xff {\n";
  TrainFlags f;
  f.model.model = path;
  f.json = true;
  CmdRun r = train(f);  // aborted in nlohmann's dump before
  EXPECT_EQ(r.code, kExitUserError);
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_NE(j["error"].get<std::string>().find("bad"), std::string::npos);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace alpa
