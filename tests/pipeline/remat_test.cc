// Rematerialization (inter/remat.h) computes what the step without it computes: the same
// losses and weights after several AdamW steps on one device, on a 2x2 mesh and in pipelines
// whose stages recompute (full layer checkpointing and selective recompute); the planner
// recomputes only where memory needs it and prices the recomputed FLOPs; the simulator runs
// the recomputed forward in the backward.
#include <gtest/gtest.h>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/trainer.h"
#include "alpa/compile/compile.h"
#include "alpa/inter/remat.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/gpt.h"
#include "pipeline/manual_stages.h"
#include "spmd/spmd_test_util.h"

namespace alpa {
namespace {

TrainStep tiny_gpt_step(int micro_batches) {
  GptConfig c;
  c.layers = 2;
  c.hidden = 32;
  c.heads = 4;
  c.seq = 16;
  c.vocab = 64;
  c.batch = 8;
  Graph fwd = build_gpt(c).value();
  TrainStepOptions o;
  o.micro_batches = micro_batches;
  return build_train_step(fwd, o).value();
}

// The step with every forward node of `mode` recomputed, segments from 3 clustered layers.
TrainStep remat_step(const TrainStep& step, RematMode mode) {
  const std::vector<ValueId> ops = forward_ops(step);
  LayerClusteringOptions lo;
  lo.num_layers = 3;
  LayerClustering lc = cluster_layers(step.graph, ops, lo).value();
  const std::vector<int> seg = segments_from_layers(step, lc.layer_of);
  return rematerialize(step, seg, remat_selection(step, mode)).value();
}

// Runs `steps` training steps (updated weights and state fed back); the losses and the
// final outputs.
std::pair<std::vector<double>, std::vector<Tensor>> train(
    const Graph& g, int steps, const std::function<std::vector<Tensor>(std::vector<Tensor>)>& run) {
  std::vector<Tensor> params = init_parameters(g, 17);
  const std::vector<ValueId> ids = g.parameters();
  std::vector<double> losses;
  std::vector<Tensor> out;
  for (int s = 0; s < steps; ++s) {
    out = run(params);
    if (out.size() != g.outputs().size()) return {};
    for (size_t o = 0; o < out.size(); ++o) {
      const GraphOutput& go = g.outputs()[o];
      if (go.name == "loss") losses.push_back(out[o].to_vector()[0]);
      if (go.alias == kNoValue) continue;
      for (size_t p = 0; p < ids.size(); ++p)
        if (ids[p] == go.alias) params[p] = out[o];
    }
  }
  return {losses, out};
}

int count_backward_copies(const TrainStep& s) {
  int n = 0;
  for (ValueId v = 0; v < s.graph.size(); ++v)
    n += s.phase[v] == StepPhase::kBackward && s.graph.node(v).name.starts_with("remat.");
  return n;
}

void expect_same_training(const Graph& g, const std::vector<double>& want_losses,
                          const std::vector<Tensor>& want, const std::vector<double>& losses,
                          const std::vector<Tensor>& got) {
  ASSERT_EQ(losses.size(), want_losses.size());
  for (size_t i = 0; i < losses.size(); ++i)
    EXPECT_NEAR(losses[i], want_losses[i], 1e-5 * std::abs(want_losses[i])) << "step " << i + 1;
  const auto [worst, name] = testing::worst_ratio(g, got, want, 1e-4, 5e-5);
  EXPECT_LE(worst, 1.0) << name;
}

class RematEquivalence : public ::testing::TestWithParam<RematMode> {};

TEST_P(RematEquivalence, OneDeviceAndMeshMatchNoRemat) {
  const TrainStep step = tiny_gpt_step(2);
  const TrainStep r = remat_step(step, GetParam());
  EXPECT_GT(count_backward_copies(r), 10);  // the recomputation is really there
  EXPECT_GT(r.graph.size(), step.graph.size());
  auto one = [](const Graph& g) {
    return [&g](std::vector<Tensor> p) { return testing::run_one_device(g, std::move(p)); };
  };
  const auto [want_losses, want] = train(step.graph, 3, one(step.graph));
  const auto [losses, got] = train(r.graph, 3, one(r.graph));
  expect_same_training(step.graph, want_losses, want, losses, got);
  // A 2x2 mesh under the ILP's plan of the rematerialized step.
  auto mesh = [&](std::vector<Tensor> p) {
    Result<testing::Sharded> s = testing::run_sharded(r.graph, p, 2, 2, {});
    EXPECT_TRUE(s.ok()) << s.status().to_string();
    return s.ok() ? s->outputs : std::vector<Tensor>{};
  };
  const auto [mesh_losses, mesh_got] = train(r.graph, 3, mesh);
  expect_same_training(step.graph, want_losses, want, mesh_losses, mesh_got);
}

TEST_P(RematEquivalence, PipelineMatchesOneDevice) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 3;
  o.threads = 1;
  o.compile.micro_batches = 4;
  o.loop.keep_final_params = true;
  Result<TrainReport> one = train_model(spec, o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.compile.pipeline = true;
  o.compile.devices = 3;
  o.compile.schedule = ScheduleKind::k1F1B;
  PipelinePlan plan = testing::manual_stage_plan({{1, 1}, {1, 2}}, 4, 4);
  for (PlannedStage& ps : plan.stages) ps.remat = GetParam();
  o.compile.stages = plan;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->losses.size(), one->losses.size());
  for (size_t i = 0; i < one->losses.size(); ++i)
    EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i])) << "step " << i + 1;
  ASSERT_EQ(r->final_params.size(), one->final_params.size());
  for (size_t p = 0; p < one->final_params.size(); ++p)
    EXPECT_LE(testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5), 1.0)
        << one->param_names[p];
}

INSTANTIATE_TEST_SUITE_P(Modes, RematEquivalence,
                         ::testing::Values(RematMode::kSelective, RematMode::kFull),
                         [](const ::testing::TestParamInfo<RematMode>& i) {
                           return std::string(remat_name(i.param));
                         });

TEST(Remat, SelectionFollowsTheModes) {
  const TrainStep step = tiny_gpt_step(1);
  const std::vector<char> full = remat_selection(step, RematMode::kFull);
  const std::vector<char> sel = remat_selection(step, RematMode::kSelective);
  int nf = 0, ns = 0, weight_dots = 0, attention_dots = 0;
  for (ValueId v = 0; v < step.graph.size(); ++v) {
    nf += full[v];
    ns += sel[v];
    EXPECT_TRUE(!sel[v] || full[v]);
    if (step.phase[v] == StepPhase::kForward && step.graph.node(v).op == OpKind::kDotGeneral)
      (sel[v] ? attention_dots : weight_dots) += 1;
  }
  EXPECT_GT(nf, ns);
  EXPECT_GT(ns, 0);
  EXPECT_EQ(attention_dots, 4);  // QK^T and PV in each of 2 layers
  EXPECT_GE(weight_dots, 8);     // qkv, out, fc1, fc2 per layer (and the head) stay stashed
  for (RematMode m : {RematMode::kNone, RematMode::kAuto})
    for (char c : remat_selection(step, m)) EXPECT_EQ(c, 0);
  EXPECT_FALSE(parse_remat("partial").ok());
  EXPECT_EQ(parse_remat("full").value(), RematMode::kFull);
}

TEST(Remat, StatsShrinkTheStashAndCountTheFlops) {
  const TrainStep step = tiny_gpt_step(1);
  const std::vector<ValueId> ops = forward_ops(step);
  LayerClusteringOptions lo;
  lo.num_layers = 3;
  LayerClustering lc = cluster_layers(step.graph, ops, lo).value();
  const std::vector<int> seg = segments_from_layers(step, lc.layer_of);
  double stash[3] = {0, 0, 0}, extra[3] = {0, 0, 0};
  const RematMode modes[3] = {RematMode::kNone, RematMode::kSelective, RematMode::kFull};
  for (int m = 0; m < 3; ++m) {
    RematLayerStats st = remat_layer_stats(step, seg, 3, modes[m]);
    for (int l = 0; l < 3; ++l) stash[m] += st.stash_bytes[l], extra[m] += st.recompute_flops[l];
    // The counted recompute FLOPs are the FLOPs of the copies the transform adds.
    const TrainStep r = rematerialize(step, seg, remat_selection(step, modes[m])).value();
    double copies = 0;
    for (ValueId v = 0; v < r.graph.size(); ++v)
      if (r.graph.node(v).name.starts_with("remat.")) copies += node_flops(r.graph, v);
    EXPECT_NEAR(copies, extra[m], 1e-6 * (1 + copies)) << remat_name(modes[m]);
  }
  EXPECT_EQ(extra[0], 0);
  EXPECT_LT(stash[1], stash[0]);
  EXPECT_LT(stash[2], stash[1]);
  EXPECT_GT(extra[2], extra[1]);
  EXPECT_GT(extra[1], 0);
}

// The simulator runs the recomputed forward in the backward: the same stages with full
// checkpointing take longer and hold less than without.
TEST(RematSimulation, CountsTheRecompute) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Cluster cluster = with_devices(cluster_preset("local").value(), 2).value();
  double time[2], peak[2];
  for (int i = 0; i < 2; ++i) {
    CompileOptions o;
    o.pipeline = true;
    o.devices = 2;
    PipelinePlan plan = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, 4);
    for (PlannedStage& ps : plan.stages) ps.remat = i == 0 ? RematMode::kNone : RematMode::kFull;
    o.stages = plan;
    Result<Compiled> c = compile(spec, cluster, o);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    ASSERT_TRUE(c->sim.has_value());
    EXPECT_EQ(c->pipeline->stages.remat_step.has_value(), i == 1);
    for (const PlannedStage& ps : c->pipeline->stages.stages)
      EXPECT_EQ(ps.remat, plan.stages[0].remat);
    time[i] = c->sim->step_time_s;
    peak[i] = c->sim->peak_memory_bytes();
  }
  EXPECT_GT(time[1], time[0]);
  EXPECT_LT(peak[1], peak[0]);
  std::printf("simulated gpt-tiny 2 stages: none %.4g s %.0f B, full %.4g s %.0f B\n", time[0],
              peak[0], time[1], peak[1]);
}

PipelinePlan plan_tiny(RematMode mode, double memory) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Cluster cluster = with_devices(cluster_preset("local").value(), 2).value();
  PipelinePlannerOptions o;
  o.space = PlanSpace::kInterOnly;
  o.micro_batches = 4;
  o.batch = spec.batch;
  o.num_layers = 4;
  o.memory_per_device = memory;
  o.remat = mode;
  o.explain_no_fit = false;
  o.threads = 1;
  Result<PipelinePlan> p = plan_pipeline(spec, {}, cluster, o);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? *p : PipelinePlan{};
}

double max_peak(const PipelinePlan& p) {
  double m = 0;
  for (const PlannedStage& s : p.stages) m = std::max(m, s.peak_memory_bytes);
  return m;
}

TEST(RematPlanner, RecomputesOnlyWhenMemoryNeedsIt) {
  const PipelinePlan none = plan_tiny(RematMode::kNone, 1e12);
  const PipelinePlan full = plan_tiny(RematMode::kFull, 1e12);
  ASSERT_EQ(none.stages.size(), 2u);
  ASSERT_EQ(full.stages.size(), 2u);
  for (const PlannedStage& s : full.stages) EXPECT_EQ(s.remat, RematMode::kFull);
  // Loose memory: auto recomputes nothing and equals the plan without recomputation.
  const PipelinePlan loose = plan_tiny(RematMode::kAuto, 1e12);
  for (const PlannedStage& s : loose.stages) EXPECT_EQ(s.remat, RematMode::kNone);
  EXPECT_DOUBLE_EQ(loose.predicted_step_time_s, none.predicted_step_time_s);
  // Full checkpointing is slower by the recomputed FLOPs and holds less.
  EXPECT_GT(full.predicted_step_time_s, none.predicted_step_time_s);
  EXPECT_LT(full.stages[0].stash_bytes, none.stages[0].stash_bytes);
  EXPECT_LT(max_peak(full), max_peak(none));
  // A budget between the two: auto must recompute on some stage to fit, and fits.
  const double tight = 0.5 * (max_peak(full) + max_peak(none));
  const PipelinePlan chosen = plan_tiny(RematMode::kAuto, tight);
  ASSERT_FALSE(chosen.stages.empty());
  int recomputing = 0;
  for (const PlannedStage& s : chosen.stages) {
    recomputing += s.remat != RematMode::kNone;
    EXPECT_LE(s.peak_memory_bytes, tight);
  }
  EXPECT_GE(recomputing, 1);
  std::printf(
      "gpt-tiny 2 stages: none %.3g s (peak %.0f B), full %.3g s (peak %.0f B), "
      "budget %.0f B: %d stage(s) recompute, %.3g s\n",
      none.predicted_step_time_s, max_peak(none), full.predicted_step_time_s, max_peak(full), tight,
      recomputing, chosen.predicted_step_time_s);
}

}  // namespace
}  // namespace alpa
