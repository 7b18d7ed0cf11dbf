// The planner's plan and its alternatives are judged by simulation (compile/checked.h): the
// result is the fastest simulated candidate that fits, and a memory that the first plan
// overflows (by the simulator's count) gives a plan that fits it.
#include <gtest/gtest.h>

#include "alpa/compile/checked.h"
#include "alpa/compile/compile.h"
#include "alpa/inter/stage_memory.h"
#include "alpa/models/registry.h"
#include "pipeline/manual_stages.h"

namespace alpa {
namespace {

// GPT-tiny on 2 local devices, every candidate in the search.
struct TinyOnTwo {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Cluster cluster = with_devices(cluster_preset("local").value(), 2).value();
  PipelinePlannerOptions options() const {
    PipelinePlannerOptions o;
    o.batch = spec.batch;
    o.imbalance_tolerance = 100;
    return o;
  }
};

TEST(CheckedPlan, ChoosesTheFastestSimulatedCandidateThatFits) {
  const TinyOnTwo t;
  const ModelSpec& spec = t.spec;
  const Cluster& c = t.cluster;
  PipelinePlannerOptions o = t.options();
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

  // One memory model (cost/memory.h): each stage's planned peak within 2% of its simulated
  // peak (this plan runs one micro-batch: no accumulator is held during its backward, whose
  // working memory the planner counts 57 kB of 4.5 MB low), part by part (the weights and the
  // stash as the simulator counts them).
  ASSERT_EQ(r.sim.stages.size(), r.pipeline.stages.size());
  for (size_t s = 0; s < r.sim.stages.size(); ++s) {
    const PlannedStage& ps = r.pipeline.stages[s];
    const SimStage& ss = r.sim.stages[s];
    EXPECT_NEAR(ps.peak_memory_bytes / ss.peak_memory_bytes, 1.0, 0.02) << "stage " << s;
    EXPECT_NEAR(ps.memory.stash_per_micro_batch, ss.peak_breakdown.stash_per_micro_batch,
                0.005 * ss.peak_memory_bytes)
        << "stage " << s;
    EXPECT_NEAR(ps.memory.total(), ps.peak_memory_bytes, 1e-6 * ps.peak_memory_bytes);
    EXPECT_NEAR(ss.peak_breakdown.total(), ss.peak_memory_bytes, 1e-6 * ss.peak_memory_bytes);
    EXPECT_NEAR(ps.memory.weights, ss.peak_breakdown.weights, 1e-6 * ss.peak_memory_bytes);
    EXPECT_EQ(ps.memory.in_flight, ss.peak_breakdown.in_flight) << "stage " << s;
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

// Candidates simulated side by side give the choice and the figures of one at a time. (The
// counts planned side by side follow `threads` too, and a count costs stages by the layouts of
// the counts judged before it starts, which depend on how many run at once: that reuse is off
// here so that the plans compared are the same.)
TEST(CheckedPlan, SimulatingSideBySideChoosesAsOneAtATime) {
  const TinyOnTwo t;
  const ModelSpec& spec = t.spec;
  const Cluster& c = t.cluster;
  PipelinePlannerOptions o = t.options();
  o.reuse_across_counts = false;
  o.threads = 1;
  CheckedPipelinePlan one = plan_pipeline_checked(spec, {}, c, o, ScheduleKind::k1F1B).value();
  o.threads = 3;
  CheckedPipelinePlan three = plan_pipeline_checked(spec, {}, c, o, ScheduleKind::k1F1B).value();
  ASSERT_GE(one.simulated.size(), 2u);
  ASSERT_EQ(one.simulated.size(), three.simulated.size());
  for (size_t i = 0; i < one.simulated.size(); ++i) {
    EXPECT_EQ(one.simulated[i].micro_batches, three.simulated[i].micro_batches) << i;
    EXPECT_EQ(one.simulated[i].stages, three.simulated[i].stages) << i;
    EXPECT_DOUBLE_EQ(one.simulated[i].step_time_s, three.simulated[i].step_time_s) << i;
    EXPECT_DOUBLE_EQ(one.simulated[i].peak_memory_bytes, three.simulated[i].peak_memory_bytes) << i;
  }
  EXPECT_EQ(one.plan.micro_batches, three.plan.micro_batches);
  EXPECT_DOUBLE_EQ(one.sim.step_time_s, three.sim.step_time_s);
}

// The tied embedding's gradient from the last stage reaches the first stage once per step,
// after its last backward, for the update alone: the planner counts it at the update's moment
// only (update_received), not beside the stash of the micro-batches in flight; on the last
// stage it is an accumulator.
TEST(StageMemory, TiedWeightGradientIsCountedWhereAndWhenItIsHeld) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  const Cluster c = with_devices(cluster_preset("local").value(), 2).value();
  CompileOptions o;
  o.pipeline = true;
  o.devices = 2;
  o.stages = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, 4);
  Result<Compiled> r = compile(spec, c, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const MaterializedPipeline& mp = r->pipeline->stages;
  const StageGraph& sg = mp.graphs[0];
  const ShardingPlan& plan = mp.plans[0];
  double wte = 0;
  for (ValueId v : sg.owned)
    if (sg.graph.node(v).name == "wte") wte = static_cast<double>(sg.graph.type(v).bytes());
  ASSERT_GT(wte, 0);
  const StageMemoryParts m = stage_memory_parts(sg, plan);
  EXPECT_DOUBLE_EQ(m.update_received, wte);
  EXPECT_DOUBLE_EQ(m.peak(2), std::max(m.owned + m.per_step + 2 * m.stash + m.working,
                                       m.owned + m.update_held + wte + m.update_working));
  EXPECT_LE(m.update_held, m.per_step);
  // The last stage adds its contribution to that gradient up over the micro-batches before
  // sending it: an accumulator it holds for the step.
  const StageGraph& last = mp.graphs[1];
  ASSERT_EQ(last.sent_accumulated.size(), 1u);
  const ValueId grad = last.sent_accumulated[0];
  EXPECT_DOUBLE_EQ(static_cast<double>(last.graph.type(grad).bytes()), wte);
  EXPECT_TRUE(accumulated_values(last)[grad]);
  const StageMemoryParts m1 = stage_memory_parts(last, mp.plans[1]);
  EXPECT_GE(m1.accumulators, wte);
  ASSERT_TRUE(r->sim.has_value());
  for (size_t s = 0; s < 2; ++s)
    EXPECT_NEAR(mp.stages[s].peak_memory_bytes / r->sim->stages[s].peak_memory_bytes, 1.0, 0.005)
        << "stage " << s;
}

}  // namespace
}  // namespace alpa
