// The planner's plan and its alternatives are judged by simulation (compile/checked.h): the
// result is the fastest simulated candidate that fits, and a memory that the first plan
// overflows (by the simulator's count) gives a plan that fits it.
#include <gtest/gtest.h>

#include "alpa/compile/checked.h"
#include "alpa/models/registry.h"

namespace alpa {
namespace {

TEST(CheckedPlan, ChoosesTheFastestSimulatedCandidateThatFits) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  const Cluster c = with_devices(cluster_preset("local").value(), 2).value();
  PipelinePlannerOptions o;
  o.batch = spec.batch;
  o.imbalance_tolerance = 100;
  CheckedPipelinePlan r = plan_pipeline_checked(spec, {}, c, o, ScheduleKind::k1F1B).value();
  ASSERT_FALSE(r.simulated.empty());
  EXPECT_EQ(r.rounds, 1);
  double fastest = 1e30;
  for (const SimulatedCandidate& s : r.simulated)
    if (s.peak_memory_bytes <= c.device.memory_bytes) fastest = std::min(fastest, s.step_time_s);
  EXPECT_DOUBLE_EQ(r.sim.step_time_s, fastest);
  EXPECT_EQ(r.step.graph.size() > 0, true);
  EXPECT_EQ(static_cast<int>(r.pipeline.stages.size()), static_cast<int>(r.plan.stages.size()));
  EXPECT_TRUE(r.plan.alternatives.empty());
  EXPECT_GT(r.plan.candidates, 0);  // the search's statistics travel with the chosen plan

  // Memory between the favourite's planned and simulated peaks: the planner still prefers it,
  // the simulation rejects it, slower candidates fit; its micro-batch count is planned again
  // for less memory, and that plan fits and wins.
  {
    double planned = 0;
    for (const PlannedStage& ps : r.pipeline.stages)
      planned = std::max(planned, ps.peak_memory_bytes);
    const SimulatedCandidate favourite = r.simulated.front();
    ASSERT_LT(planned, favourite.peak_memory_bytes);
    PipelinePlannerOptions between = o;
    between.memory_per_device = 0.5 * (planned + favourite.peak_memory_bytes);
    CheckedPipelinePlan refit =
        plan_pipeline_checked(spec, {}, c, between, ScheduleKind::k1F1B).value();
    ASSERT_GE(refit.simulated.size(), 2u);
    EXPECT_GT(refit.simulated.front().peak_memory_bytes, between.memory_per_device);
    const SimulatedCandidate& again = refit.simulated.back();
    EXPECT_EQ(again.micro_batches, favourite.micro_batches);
    EXPECT_LE(again.peak_memory_bytes, between.memory_per_device);
    double fits = 1e30;
    for (size_t i = 0; i + 1 < refit.simulated.size(); ++i)
      if (refit.simulated[i].peak_memory_bytes <= between.memory_per_device)
        fits = std::min(fits, refit.simulated[i].step_time_s);
    EXPECT_LT(again.step_time_s, fits);
    EXPECT_DOUBLE_EQ(refit.sim.step_time_s, again.step_time_s);
    EXPECT_EQ(refit.plan.micro_batches, favourite.micro_batches);
  }

  // Less memory than that plan's simulated peak: whatever comes back fits, or it is an error.
  o.memory_per_device = 0.9 * r.peak_memory_bytes;
  Result<CheckedPipelinePlan> tight = plan_pipeline_checked(spec, {}, c, o, ScheduleKind::k1F1B);
  if (tight.ok()) {
    EXPECT_LE(tight->peak_memory_bytes, o.memory_per_device);
    EXPECT_LE(tight->planner_memory, o.memory_per_device);
  } else {
    EXPECT_EQ(tight.status().code(), StatusCode::kResourceExhausted) << tight.status().to_string();
  }
}

}  // namespace
}  // namespace alpa
