// `alpa plan-serve` (cli/cmd_plan_serve.cc): the table, the JSON form and the error when nothing
// fits.
#include <gtest/gtest.h>

#include <sstream>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"

namespace alpa {
namespace {

TEST(PlanServeCommand, PrintsEveryCandidateAndTheChoice) {
  PlanServeFlags f;
  f.model = "opt-175b";
  f.cluster = "dgx-h100";
  f.gpus = 8;
  std::ostringstream out, err;
  ASSERT_EQ(run_plan_serve(f, out, err), kExitOk) << err.str();
  const std::string text = out.str();
  EXPECT_NE(text.find("chosen: tp 8 x pp 1"), std::string::npos) << text;
  EXPECT_NE(text.find("objective latency"), std::string::npos) << text;
  f.json = true;
  f.objective = "throughput";
  std::ostringstream jout;
  ASSERT_EQ(run_plan_serve(f, jout, err), kExitOk) << err.str();
  nlohmann::json j = nlohmann::json::parse(jout.str());
  EXPECT_EQ(j["candidates"].size(), 4u);
  EXPECT_EQ(j["objective"], "throughput");
  const int chosen = j["chosen"].get<int>();
  EXPECT_TRUE(j["candidates"][chosen]["fits"].get<bool>());
  EXPECT_GT(j["candidates"][chosen]["tokens_per_s"].get<double>(), 0);
}

TEST(PlanServeCommand, SaysWhatIsMissingWhenNothingFits) {
  PlanServeFlags f;
  f.model = "opt-175b";
  f.cluster = "p4d.24xlarge";
  f.gpus = 8;
  std::ostringstream out, err;
  EXPECT_EQ(run_plan_serve(f, out, err), kExitUserError);
  EXPECT_NE(out.str().find("short by"), std::string::npos) << out.str();
  EXPECT_NE(err.str().find("too few for the weights alone"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("--gpus 16"), std::string::npos) << err.str();
}

TEST(PlanServeCommand, ARateNoSplitSustainsIsAnError) {
  PlanServeFlags f;
  f.model = "opt-175b";
  f.cluster = "dgx-h100";
  f.gpus = 8;
  f.rate = 1000;  // requests/s of 128 tokens: far beyond one host
  std::ostringstream out, err;
  EXPECT_EQ(run_plan_serve(f, out, err), kExitUserError);
  EXPECT_NE(out.str().find("yes, below the rate"), std::string::npos) << out.str();
  EXPECT_NE(err.str().find("no split sustains 1000.0 requests/s"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace alpa
