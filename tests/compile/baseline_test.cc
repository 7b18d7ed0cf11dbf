// The baselines (compile/baseline.h): each searches its own grid and nothing else, picks the
// fastest configuration that fits, and its plan trains the model exactly as one device does.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <tuple>

#include "alpa/compile/baseline.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/program_runner.h"
#include "pipeline/manual_stages.h"

namespace alpa {
namespace {

Cluster local(int devices) {
  return with_devices(cluster_preset("local").value(), devices).value();
}

ModelSpec gpt_tiny() {
  return resolve_model("gpt", "tiny", {}).value();
}

BaselineResult search(BaselineKind kind, const ModelSpec& spec, const Cluster& c,
                      double memory = 0) {
  BaselineOptions o;
  o.batch = spec.batch;
  o.moe = spec.family == ModelFamily::kMoe;
  o.memory_per_device = memory;
  Result<BaselineResult> r = plan_baseline(kind, spec, {}, c, o);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (!r.ok()) return BaselineResult();
  return std::move(*r);
}

// The best trial is the fastest that fits, and is what the result holds.
void expect_best_of_trials(const BaselineResult& r) {
  double fastest = INFINITY;
  for (const BaselineTrial& t : r.trials)
    if (t.simulated && t.fits) fastest = std::min(fastest, t.step_time_s);
  ASSERT_TRUE(std::isfinite(fastest));
  EXPECT_DOUBLE_EQ(r.compiled.sim->step_time_s, fastest);
  EXPECT_EQ(static_cast<int>(r.compiled.pipeline->plan.stages.size()), r.best.pp);
  EXPECT_EQ(r.compiled.pipeline->plan.micro_batches, r.best.micro_batches);
}

TEST(Baseline, MegatronSearchesDataTensorPipelineDegreesInsideItsRules) {
  ModelSpec spec = gpt_tiny();
  const Cluster c = local(4);
  BaselineResult r = search(BaselineKind::kMegatron, spec, c);
  std::set<std::tuple<int, int, int>> shapes;
  for (const BaselineTrial& t : r.trials) {
    const BaselineConfig& k = t.config;
    EXPECT_EQ(k.dp * k.tp * k.pp, 4) << k.to_string();
    EXPECT_LE(k.tp, c.devices_per_host);
    if (k.dp > 1 && k.tp > 1) {
      EXPECT_EQ(k.per_stage, ManualPlanKind::kTwoD);
    } else {
      EXPECT_EQ(k.per_stage,
                k.tp > 1 ? ManualPlanKind::kTensorParallel : ManualPlanKind::kDataParallel);
    }
    EXPECT_EQ(spec.batch % (static_cast<int64_t>(k.dp) * k.micro_batches), 0) << k.to_string();
    shapes.insert({k.dp, k.tp, k.pp});
  }
  // Every factorisation of 4 devices into dp x tp x pp.
  EXPECT_EQ(shapes.size(), 6u);
  expect_best_of_trials(r);
}

// The grid's shapes are simulated side by side; the trials (in grid order) and the choice are
// those of one thread.
TEST(Baseline, ShapesSideBySideGiveTheSameChoice) {
  const ModelSpec spec = gpt_tiny();
  BaselineOptions o;
  o.batch = spec.batch;
  o.threads = 1;
  Result<BaselineResult> one = plan_baseline(BaselineKind::kMegatron, spec, {}, local(4), o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.threads = 3;
  Result<BaselineResult> three = plan_baseline(BaselineKind::kMegatron, spec, {}, local(4), o);
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  EXPECT_EQ(one->best.to_string(), three->best.to_string());
  EXPECT_EQ(one->compiled.sim->step_time_s, three->compiled.sim->step_time_s);
  ASSERT_EQ(one->trials.size(), three->trials.size());
  for (size_t i = 0; i < one->trials.size(); ++i) {
    EXPECT_EQ(one->trials[i].config.to_string(), three->trials[i].config.to_string()) << i;
    EXPECT_EQ(one->trials[i].step_time_s, three->trials[i].step_time_s) << i;
    EXPECT_EQ(one->trials[i].fits, three->trials[i].fits) << i;
  }
  expect_best_of_trials(*three);
}

TEST(Baseline, DeepSpeedIsZeroDataParallelOnEveryDeviceWithExpertsSplitForMoe) {
  ModelSpec spec = resolve_model("moe", "tiny", {}).value();
  const Cluster c = local(4);
  BaselineResult r = search(BaselineKind::kDeepSpeed, spec, c);
  std::set<ManualPlanKind> kinds;
  for (const BaselineTrial& t : r.trials) {
    EXPECT_EQ(t.config.dp, 4);
    EXPECT_EQ(t.config.pp, 1);
    EXPECT_TRUE(t.config.expert_parallel);
    kinds.insert(t.config.per_stage);
  }
  EXPECT_EQ(kinds, (std::set<ManualPlanKind>{ManualPlanKind::kZero, ManualPlanKind::kZero3}));
  expect_best_of_trials(r);
  // The expert weights are split by expert over the devices: all-to-all moves the tokens.
  const MaterializedPipeline& m = r.compiled.pipeline->stages;
  const StageGraph& sg = m.graphs[0];
  int experts = 0;
  for (ValueId v = 0; v < sg.graph.size(); ++v) {
    const std::string& n = sg.graph.node(v).name;
    if (sg.graph.node(v).op != OpKind::kParameter || sg.graph.type(v).rank() != 3) continue;
    if (n.size() < 3 || (n.substr(n.size() - 3) != ".wi" && n.substr(n.size() - 3) != ".wo"))
      continue;
    ++experts;
    EXPECT_NE(m.plans[0].specs[v].dims[0], 0) << n << " not split by expert";
  }
  EXPECT_GT(experts, 0);
  bool all_to_all = false;
  for (const Task& t : r.compiled.program.stages[0].tasks)
    for (const Node& n : t.program.nodes()) all_to_all |= n.op == OpKind::kAllToAll;
  EXPECT_TRUE(all_to_all);
}

// Megatron recomputes every layer's forward in the backward (full activation checkpointing):
// the configuration's stages say so, and the same configuration without it stashes more and
// computes less.
TEST(Baseline, MegatronCheckpointsActivations) {
  ModelSpec spec = gpt_tiny();
  const Cluster c = local(2);
  BaselineResult r = search(BaselineKind::kMegatron, spec, c);
  for (const BaselineTrial& t : r.trials) EXPECT_EQ(t.config.remat, RematMode::kFull);
  for (const PlannedStage& ps : r.compiled.pipeline->plan.stages)
    EXPECT_EQ(ps.remat, RematMode::kFull);
  BaselineOptions o;
  o.batch = spec.batch;
  BaselineConfig k{1, 1, 2, 2, ManualPlanKind::kDataParallel, false, RematMode::kFull};
  BaselineResult full =
      simulate_baseline_config(BaselineKind::kMegatron, k, spec, {}, c, o).value();
  k.remat = RematMode::kNone;
  BaselineResult none =
      simulate_baseline_config(BaselineKind::kMegatron, k, spec, {}, c, o).value();
  EXPECT_GT(full.compiled.sim->stages[0].compute_s, none.compiled.sim->stages[0].compute_s);
  EXPECT_LT(full.compiled.sim->stages[0].peak_breakdown.stash_per_micro_batch,
            none.compiled.sim->stages[0].peak_breakdown.stash_per_micro_batch);
}

TEST(Baseline, PpDpHasNoTensorParallelism) {
  ModelSpec spec = gpt_tiny();
  BaselineResult r = search(BaselineKind::kPpDp, spec, local(4));
  std::set<int> pps;
  for (const BaselineTrial& t : r.trials) {
    EXPECT_EQ(t.config.tp, 1);
    EXPECT_EQ(t.config.per_stage, ManualPlanKind::kDataParallel);
    pps.insert(t.config.pp);
  }
  EXPECT_EQ(pps, (std::set<int>{1, 2, 4}));
  expect_best_of_trials(r);
}

TEST(Baseline, MemoryDecidesWhatCounts) {
  ModelSpec spec = gpt_tiny();
  const Cluster c = local(4);
  BaselineResult free = search(BaselineKind::kMegatron, spec, c);
  // A budget just under the best plan's peak: it no longer counts.
  double best_peak = 0;
  for (const SimStage& s : free.compiled.sim->stages)
    best_peak = std::max(best_peak, s.peak_memory_bytes);
  BaselineResult tight = search(BaselineKind::kMegatron, spec, c, best_peak * 0.999);
  for (const SimStage& s : tight.compiled.sim->stages)
    EXPECT_LE(s.peak_memory_bytes, best_peak * 0.999);
  EXPECT_GE(tight.compiled.sim->step_time_s, free.compiled.sim->step_time_s);
  // Nothing fits: an error naming the memory, with what the smallest configuration needs.
  BaselineOptions o;
  o.batch = spec.batch;
  o.memory_per_device = 1000;
  Result<BaselineResult> none = plan_baseline(BaselineKind::kMegatron, spec, {}, c, o);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("no megatron configuration fits"), std::string::npos)
      << none.status().message();
  EXPECT_NE(none.status().message().find("smallest needs"), std::string::npos);
  for (const BaselineTrial& t : none.ok() ? none->trials : std::vector<BaselineTrial>{})
    EXPECT_FALSE(t.fits);
}

TEST(Baseline, NamesParse) {
  for (BaselineKind k : {BaselineKind::kMegatron, BaselineKind::kDeepSpeed, BaselineKind::kPpDp})
    EXPECT_EQ(parse_baseline(baseline_name(k)).value(), k);
  Result<BaselineKind> bad = parse_baseline("gpipe");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("megatron"), std::string::npos);
}

// Megatron configurations (data x tensor, tensor x pipeline, data x pipeline), run by the
// pipeline runtime on 4 virtual devices, train as one device does (two steps: the second loss
// sees the first update).
TEST(Baseline, MegatronPlansTrainLikeOneDevice) {
  ModelSpec spec = gpt_tiny();
  const Cluster c = local(4);
  const int B = 2;
  const Graph reference = training_step(spec, {}, B).value().graph;
  auto losses = [&](const Program& program) {
    ProgramRunner runner(program);
    const std::vector<Tensor> init = init_parameters(reference, 7);
    EXPECT_TRUE(runner.load_parameters(init).ok());
    std::vector<double> out;
    for (int i = 0; i < 2; ++i) out.push_back(runner.run_step(init).value());
    return out;
  };
  BaselineOptions o;
  o.batch = spec.batch;
  const BaselineConfig configs[] = {{2, 2, 1, B, ManualPlanKind::kTwoD, false},
                                    {1, 2, 2, B, ManualPlanKind::kTensorParallel, false},
                                    {2, 1, 2, B, ManualPlanKind::kDataParallel, false}};
  for (const BaselineConfig& k : configs) {
    SCOPED_TRACE(k.to_string());
    Result<BaselineResult> r = simulate_baseline_config(BaselineKind::kMegatron, k, spec, {}, c, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_EQ(r->trials.size(), 1u);
    EXPECT_GT(r->compiled.sim->step_time_s, 0);
    const std::vector<double> got = losses(r->compiled.program);
    // One device: one stage on a 1x1 mesh over the same layers.
    const PipelinePlan& plan = r->compiled.pipeline->plan;
    PipelinePlan p1 = testing::manual_stage_plan({{1, 1}}, plan.layers.num_layers, B);
    p1.layers = plan.layers;
    CompileOptions co;
    co.pipeline = true;
    co.devices = 1;
    const Compiled one = compile_stages(r->compiled.step, p1, local(1), co).value();
    const std::vector<double> want = losses(one.program);
    for (size_t i = 0; i < want.size(); ++i)
      EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i])));
  }
  // A configuration that does not cover the devices is refused.
  EXPECT_FALSE(simulate_baseline_config(BaselineKind::kMegatron,
                                        {2, 1, 1, B, ManualPlanKind::kDataParallel, false}, spec,
                                        {}, c, o)
                   .ok());
}

}  // namespace
}  // namespace alpa
