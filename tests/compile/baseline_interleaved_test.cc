// Megatron-LM's grid with the interleaved schedule (compile/baseline.h): configurations with
// 2 and 4 model chunks per pipeline stage where the layers divide evenly and the micro-batches
// are a multiple of the pipeline stages; the search keeps one when it is the fastest (and
// without interleaving in the grid finds only a slower step), and an interleaved
// configuration trains as one device does.
#include <gtest/gtest.h>

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

ModelSpec gpt_layers(int layers) {
  ModelOverrides o;
  o.layers = layers;
  return resolve_model("gpt", "tiny", o).value();
}

BaselineOptions options_for(const ModelSpec& spec) {
  BaselineOptions o;
  o.batch = spec.batch;
  return o;
}

// GPT-tiny with 8 layers on 4 devices: the pipeline bubble dominates (few micro-batches, tiny
// layers), so interleaving the same stages is faster and the search keeps it.
TEST(BaselineInterleaved, MegatronGridInterleavesWhereLayersDivideAndChoosesItWhenFaster) {
  const ModelSpec spec = gpt_layers(8);
  const Cluster c = local(4);
  Result<BaselineResult> r = plan_baseline(BaselineKind::kMegatron, spec, {}, c, options_for(spec));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::set<std::tuple<int, int, int>> interleaved;  // (tp, pp, v) tried
  for (const BaselineTrial& t : r->trials) {
    const BaselineConfig& k = t.config;
    if (k.virtual_stages == 1) continue;
    SCOPED_TRACE(k.to_string());
    interleaved.insert({k.tp, k.pp, k.virtual_stages});
    EXPECT_EQ(8 % (k.pp * k.virtual_stages), 0);
    EXPECT_EQ(k.remat, RematMode::kFull);
    if (k.micro_batches > 0) EXPECT_EQ(k.micro_batches % k.pp, 0);
    EXPECT_NE(k.to_string().find("interleaved x" + std::to_string(k.virtual_stages)),
              std::string::npos);
  }
  // pp 2: 2 and 4 chunks (tp 1 and 2); pp 4: 2 chunks (8 layers: not 4 x 4).
  const std::set<std::tuple<int, int, int>> want = {
      {1, 2, 2}, {1, 2, 4}, {2, 2, 2}, {2, 2, 4}, {1, 4, 2}};
  EXPECT_EQ(interleaved, want);
  // The result is the fastest trial that fits, interleaved or not, compiled as such.
  double fastest = INFINITY;
  for (const BaselineTrial& t : r->trials)
    if (t.simulated && t.fits) fastest = std::min(fastest, t.step_time_s);
  EXPECT_DOUBLE_EQ(r->compiled.sim->step_time_s, fastest);
  EXPECT_EQ(static_cast<int>(r->compiled.pipeline->plan.stages.size()),
            r->best.pp * r->best.virtual_stages);
  EXPECT_EQ(r->compiled.program.virtual_stages, r->best.virtual_stages);
  EXPECT_GT(r->best.virtual_stages, 1) << r->best.to_string();
  EXPECT_EQ(r->compiled.program.schedule, "interleaved-1f1b");

  // Without interleaving in the options, the grid has none.
  BaselineOptions none = options_for(spec);
  none.interleave.clear();
  Result<BaselineResult> plain = plan_baseline(BaselineKind::kMegatron, spec, {}, c, none);
  ASSERT_TRUE(plain.ok()) << plain.status().to_string();
  for (const BaselineTrial& t : plain->trials) EXPECT_EQ(t.config.virtual_stages, 1);
  EXPECT_GT(plain->compiled.sim->step_time_s, r->compiled.sim->step_time_s);
  // A model whose layers do not divide (2 layers over 2 stages x 2 chunks) has none either.
  const ModelSpec two = gpt_layers(2);
  Result<BaselineResult> small =
      plan_baseline(BaselineKind::kMegatron, two, {}, c, options_for(two));
  ASSERT_TRUE(small.ok()) << small.status().to_string();
  for (const BaselineTrial& t : small->trials) EXPECT_EQ(t.config.virtual_stages, 1);
}

// An interleaved Megatron configuration (2 pipeline stages x 2 chunks, full recompute), run by
// the pipeline runtime on 2 virtual devices, trains as one device does (two steps).
TEST(BaselineInterleaved, InterleavedConfigurationTrainsLikeOneDevice) {
  const ModelSpec spec = gpt_layers(4);
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
  BaselineConfig k{1, 1, 2, B, ManualPlanKind::kDataParallel, false, RematMode::kFull};
  k.virtual_stages = 2;
  Result<BaselineResult> r =
      simulate_baseline_config(BaselineKind::kMegatron, k, spec, {}, local(2), options_for(spec));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const PipelinePlan& plan = r->compiled.pipeline->plan;
  ASSERT_EQ(plan.stages.size(), 4u);
  EXPECT_EQ(plan.stages[2].first_device, plan.stages[0].first_device);
  EXPECT_EQ(plan.stages[3].first_device, plan.stages[1].first_device);
  const std::vector<double> got = losses(r->compiled.program);
  PipelinePlan p1 = testing::manual_stage_plan({{1, 1}}, plan.layers.num_layers, B);
  p1.layers = plan.layers;
  CompileOptions co;
  co.pipeline = true;
  co.devices = 1;
  const Compiled one = compile_stages(r->compiled.step, p1, local(1), co).value();
  const std::vector<double> want = losses(one.program);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 1e-5 * std::max(1.0, std::abs(want[i])));
}

}  // namespace
}  // namespace alpa
