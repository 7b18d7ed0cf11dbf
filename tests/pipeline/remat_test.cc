// Rematerialization (inter/remat.h) computes what the step without it computes: the same
// losses and weights after several AdamW steps on one device, on a 2x2 mesh and in pipelines
// whose stages recompute (full layer checkpointing and selective recompute); the planner
// recomputes only where memory needs it and prices the recomputed FLOPs; the simulator runs
// the recomputed forward in the backward.
#include <gtest/gtest.h>

#include <functional>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/trainer.h"
#include "alpa/compile/checked.h"
#include "alpa/compile/compile.h"
#include "alpa/inter/layer_clustering.h"
#include "alpa/inter/remat.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/gpt.h"
#include "alpa/plan/plan.h"
#include "pipeline/manual_stages.h"
#include "spmd/spmd_test_util.h"

namespace alpa {
namespace {

// A GPT training step of `layers` blocks (4 heads, vocabulary 64, batch 8).
TrainStep gpt_step(int layers, int hidden, int seq, int micro_batches) {
  GptConfig c;
  c.layers = layers;
  c.hidden = hidden;
  c.heads = 4;
  c.seq = seq;
  c.vocab = 64;
  c.batch = 8;
  Graph fwd = build_gpt(c).value();
  TrainStepOptions o;
  o.micro_batches = micro_batches;
  return build_train_step(fwd, o).value();
}

TrainStep tiny_gpt_step(int micro_batches) {
  return gpt_step(2, 32, 16, micro_batches);
}

std::string parts(const MemoryBreakdown& m) {
  return cat("weights ", m.weights, " + accumulators ", m.accumulators, " + ", m.in_flight,
             " x stash ", m.stash_per_micro_batch, " + working ", m.working, " B");
}

double max_recompute_peak(const RematSegmentStats& st) {
  double m = 0;
  for (double b : st.recompute_peak_bytes) m = std::max(m, b);
  return m;
}

// The step with every forward node of `mode` recomputed, segments from 3 clustered layers.
TrainStep remat_step(const TrainStep& step, RematMode mode) {
  const std::vector<ValueId> ops = forward_ops(step);
  LayerClusteringOptions lo;
  lo.num_layers = 3;
  LayerClustering lc = cluster_layers(step.graph, ops, lo).value();
  const RematSegments seg = remat_segments(step, lc.layer_of, lc.num_layers);
  return rematerialize(step, seg.of_node, remat_selection(step, mode)).value();
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

// Trains gpt-tiny 3 steps on one device and on a 2-stage pipeline (1 + 2 devices) whose stages
// `edit` sets the recomputation of: the same losses and final weights.
void expect_pipeline_matches_one_device(const std::function<void(PipelinePlan&)>& edit) {
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
  edit(plan);
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

TEST_P(RematEquivalence, PipelineMatchesOneDevice) {
  expect_pipeline_matches_one_device([this](PipelinePlan& plan) {
    for (PlannedStage& ps : plan.stages) ps.remat = GetParam();
  });
}

// A stage that recomputes its first layer fully and its second `GetParam()` (none or
// selective) trains as one device does.
class MixedRematEquivalence : public ::testing::TestWithParam<RematMode> {};

TEST_P(MixedRematEquivalence, PipelineMatchesOneDevice) {
  expect_pipeline_matches_one_device([this](PipelinePlan& plan) {
    ASSERT_EQ(plan.stages[1].last_layer - plan.stages[1].first_layer, 1);
    plan.stages[1].remat = GetParam();
    plan.stages[1].full_remat_layers = 1;
  });
}

INSTANTIATE_TEST_SUITE_P(Rest, MixedRematEquivalence,
                         ::testing::Values(RematMode::kNone, RematMode::kSelective),
                         [](const ::testing::TestParamInfo<RematMode>& i) {
                           return std::string(remat_name(i.param));
                         });

INSTANTIATE_TEST_SUITE_P(Modes, RematEquivalence,
                         ::testing::Values(RematMode::kSelective, RematMode::kFull),
                         [](const ::testing::TestParamInfo<RematMode>& i) {
                           return std::string(remat_name(i.param));
                         });

// Full recomputation of a stage's first layer only: more copies than the rest's mode alone,
// fewer than full on every layer; a count beyond the stage's layers is a clear error.
TEST(Remat, MixedStageRecomputesItsFirstLayersFully) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Cluster cluster = with_devices(cluster_preset("local").value(), 2).value();
  auto compile_with = [&](RematMode mode, int full_layers, int stage) {
    CompileOptions o;
    o.pipeline = true;
    o.devices = 2;
    PipelinePlan plan = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, 4);
    plan.stages[static_cast<size_t>(stage)].remat = mode;
    plan.stages[static_cast<size_t>(stage)].full_remat_layers = full_layers;
    o.stages = plan;
    return compile(spec, cluster, o);
  };
  auto copies = [&](RematMode mode, int full_layers) {
    Result<Compiled> c = compile_with(mode, full_layers, 1);
    EXPECT_TRUE(c.ok()) << c.status().to_string();
    if (!c.ok() || !c->pipeline->stages.remat_step) return 0;
    EXPECT_EQ(c->pipeline->stages.stages[1].full_remat_layers, full_layers);
    return count_backward_copies(*c->pipeline->stages.remat_step);
  };
  const int full = copies(RematMode::kFull, 0), selective = copies(RematMode::kSelective, 0);
  const int mixed = copies(RematMode::kSelective, 1), first_only = copies(RematMode::kNone, 1);
  EXPECT_GT(first_only, 0);
  EXPECT_LT(first_only, full);
  EXPECT_GT(mixed, selective);
  EXPECT_LT(mixed, full);
  EXPECT_EQ(copies(RematMode::kNone, 2), full);  // every layer fully: full
  Result<Compiled> c = compile_with(RematMode::kNone, 3, 0);
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("recomputes 3 layers fully, and it holds 2"),
            std::string::npos)
      << c.status().to_string();
}

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
  const RematSegments segs = remat_segments(step, lc.layer_of, lc.num_layers);
  const std::vector<int>& seg = segs.of_node;
  double stash[3] = {0, 0, 0}, extra[3] = {0, 0, 0};
  const RematMode modes[3] = {RematMode::kNone, RematMode::kSelective, RematMode::kFull};
  for (int m = 0; m < 3; ++m) {
    RematSegmentStats st = remat_segment_stats(step, seg, segs.count(), modes[m]);
    for (int x = 0; x < segs.count(); ++x)
      stash[m] += st.stash_bytes[x], extra[m] += st.recompute_flops[x];
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

// Segments cut the planner's layers where each transformer block begins, so full
// recomputation checkpoints every block (as Megatron-LM): with all four blocks of a GPT in one
// layer, one block's activations are recomputed at a time, and the step's liveness peak is
// below that of checkpointing the whole layer at once.
TEST(Remat, FullRecomputationCheckpointsEachBlock) {
  const TrainStep step = gpt_step(4, 64, 32, 1);
  const std::vector<ValueId> ops = forward_ops(step);
  const std::vector<int> one_layer(ops.size(), 0);
  const RematSegments blocks = remat_segments(step, one_layer, 1);
  EXPECT_GE(blocks.count(), 4);
  EXPECT_EQ(blocks.first_of_layer, (std::vector<int>{0, blocks.count()}));
  // Two layers of two blocks: no segment spans both layers.
  std::vector<int> two_layers(ops.size(), 0);
  const int half = repeated_block_starts(step.graph, ops).value()[2];
  for (size_t i = static_cast<size_t>(half); i < ops.size(); ++i) two_layers[i] = 1;
  const RematSegments split = remat_segments(step, two_layers, 2);
  EXPECT_EQ(split.count(), blocks.count());
  EXPECT_EQ(split.of_node[ops[half]], split.first_of_layer[1]);
  EXPECT_EQ(split.of_node[ops[half - 1]], split.first_of_layer[1] - 1);

  const std::vector<char> full = remat_selection(step, RematMode::kFull);
  const std::vector<int> whole(static_cast<size_t>(step.graph.size()), 0);
  const int64_t none_peak = graph_stats(step.graph).peak_activation_bytes;
  const int64_t layer_peak =
      graph_stats(rematerialize(step, whole, full).value().graph).peak_activation_bytes;
  const int64_t block_peak =
      graph_stats(rematerialize(step, blocks.of_node, full).value().graph).peak_activation_bytes;
  EXPECT_LT(block_peak, layer_peak);
  EXPECT_LT(block_peak, none_peak);
  std::printf("gpt 4 blocks, one layer: peak none %lld, full per layer %lld, per block %lld B\n",
              static_cast<long long>(none_peak), static_cast<long long>(layer_peak),
              static_cast<long long>(block_peak));
  // The planner's figures agree: per block, more is stashed (every block's input) and fewer
  // recomputed bytes are live at once.
  const RematSegmentStats st_full =
      remat_segment_stats(step, blocks.of_node, blocks.count(), RematMode::kFull);
  const RematSegmentStats one_full = remat_segment_stats(step, whole, 1, RematMode::kFull);
  double stash_blocks = 0;
  for (int x = 0; x < blocks.count(); ++x) stash_blocks += st_full.stash_bytes[x];
  EXPECT_GT(stash_blocks, one_full.stash_bytes[0]);
  EXPECT_LT(max_recompute_peak(st_full), 0.5 * one_full.recompute_peak_bytes[0]);
}

// The recomputed bytes live at once, as the stats count them, are those of the transformed
// step's copies under its own liveness (each freed after its last reader).
TEST(Remat, RecomputePeakIsTheCopiesLiveness) {
  const TrainStep step = gpt_step(4, 64, 32, 1);
  const std::vector<ValueId> ops = forward_ops(step);
  const RematSegments segs = remat_segments(step, std::vector<int>(ops.size(), 0), 1);
  for (RematMode m : {RematMode::kSelective, RematMode::kFull}) {
    const TrainStep r = rematerialize(step, segs.of_node, remat_selection(step, m)).value();
    const std::vector<ValueId> last = compute_last_use(r.graph);
    std::vector<double> delta(static_cast<size_t>(r.graph.size()) + 2, 0.0);
    for (ValueId v = 0; v < r.graph.size(); ++v) {
      if (!r.graph.node(v).name.starts_with("remat.")) continue;
      delta[v] += static_cast<double>(r.graph.type(v).bytes());
      delta[static_cast<size_t>(last[v]) + 1] -= static_cast<double>(r.graph.type(v).bytes());
    }
    double live = 0, peak = 0;
    for (double d : delta) peak = std::max(peak, live += d);
    const double counted =
        max_recompute_peak(remat_segment_stats(step, segs.of_node, segs.count(), m));
    EXPECT_GT(peak, 0) << remat_name(m);
    EXPECT_NEAR(counted, peak, 1e-9 * peak) << remat_name(m);
  }
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

// A plan file carries each stage's recomputation: written, read back and compiled, its
// stages recompute as planned (the runtime runs the rematerialized step).
TEST(RematPlanFile, StagesRecomputeAsTheFileSays) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Cluster cluster = with_devices(cluster_preset("local").value(), 2).value();
  PipelinePlan planned = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, 4);
  planned.stages[0].remat = RematMode::kFull;
  planned.stages[1].remat = RematMode::kSelective;
  const std::string text =
      plan_to_json(plan_from_pipeline(planned, "gpt-tiny", "local", 2, "1f1b", ""));
  EXPECT_NE(text.find("\"remat\": \"full\""), std::string::npos) << text;
  CompileOptions o;
  o.pipeline = true;
  o.devices = 2;
  o.stages = pipeline_plan_of(plan_from_json(text).value()).value();
  Result<Compiled> c = compile(spec, cluster, o);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_TRUE(c->pipeline->stages.remat_step.has_value());
  EXPECT_EQ(c->pipeline->stages.stages[0].remat, RematMode::kFull);
  EXPECT_EQ(c->pipeline->stages.stages[1].remat, RematMode::kSelective);
  EXPECT_GT(count_backward_copies(*c->pipeline->stages.remat_step), 0);
}

// A mixed stage in a plan file: written, read back, described; bad counts are clear errors.
TEST(RematPlanFile, FullLayersRoundTrip) {
  PipelinePlan planned = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, 4);
  planned.stages[1].remat = RematMode::kSelective;
  planned.stages[1].full_remat_layers = 1;
  const std::string text =
      plan_to_json(plan_from_pipeline(planned, "gpt-tiny", "local", 2, "1f1b", ""));
  EXPECT_NE(text.find("\"full_remat_layers\": 1"), std::string::npos) << text;
  const PipelinePlan back = pipeline_plan_of(plan_from_json(text).value()).value();
  EXPECT_EQ(back.stages[0].full_remat_layers, 0);
  EXPECT_EQ(back.stages[1].full_remat_layers, 1);
  EXPECT_EQ(back.stages[1].remat, RematMode::kSelective);
  EXPECT_EQ(remat_text(back.stages[1]), "full on layer 2, selective on layer 3");
  EXPECT_EQ(remat_text(back.stages[0]), "none");
  PlannedStage wide = back.stages[1];
  wide.first_layer = 4;
  wide.last_layer = 9;
  wide.full_remat_layers = 2;
  wide.remat = RematMode::kNone;
  EXPECT_EQ(remat_text(wide), "full on layers 4-5, none on layers 6-9");
  wide.full_remat_layers = 6;
  EXPECT_EQ(remat_text(wide), "full");
  std::string bad = text;
  bad.replace(bad.find("\"full_remat_layers\": 1"), 22, "\"full_remat_layers\": -1");
  Result<Plan> p = plan_from_json(bad);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("full_remat_layers"), std::string::npos)
      << p.status().to_string();
}

PipelinePlan plan_tiny(RematMode mode, double memory, bool must_fit = true) {
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
  EXPECT_TRUE(p.ok() || !must_fit) << p.status().to_string();
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

// Between the memory of full recomputation and of none, the planner recomputes some layers
// of a stage fully and the others selectively or not at all where that fits: faster than full
// on every layer, within the memory, and the simulated peak of the mixed program agrees.
TEST(RematPlanner, MixesFullAndLessWhereMemoryAllows) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  const Cluster c = with_devices(cluster_preset("local").value(), 2).value();
  const PipelinePlan full = plan_tiny(RematMode::kFull, 1e12);
  const PipelinePlan none = plan_tiny(RematMode::kNone, 1e12);
  ASSERT_LT(max_peak(full), max_peak(none));
  int mixed_budgets = 0;
  for (int i = 1; i < 16; ++i) {
    const double memory = max_peak(full) + i / 16.0 * (max_peak(none) - max_peak(full));
    // The candidates' recomputation is priced from their plans without it, a little above
    // the exact figures of the chosen stages: just above full's peak, nothing may fit.
    const PipelinePlan p = plan_tiny(RematMode::kAuto, memory, false);
    if (p.stages.empty()) continue;
    bool mixed = false;
    for (const PlannedStage& s : p.stages) {
      EXPECT_LE(s.peak_memory_bytes, memory);
      mixed |= s.full_remat_layers > 0 && s.full_remat_layers <= s.last_layer - s.first_layer &&
               s.remat != RematMode::kFull;
    }
    EXPECT_LE(p.predicted_step_time_s, full.predicted_step_time_s * (1 + 1e-12));
    if (!mixed) continue;
    ++mixed_budgets;
    EXPECT_LT(p.predicted_step_time_s, full.predicted_step_time_s);
    // The mixed program, compiled and simulated: the planned peak holds, stage by stage.
    CompileOptions o;
    o.pipeline = true;
    o.devices = 2;
    o.stages = p;
    Result<Compiled> r = compile(spec, c, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    ASSERT_TRUE(r->sim.has_value());
    const std::vector<PlannedStage>& planned = r->pipeline->stages.stages;
    ASSERT_EQ(r->sim->stages.size(), planned.size());
    for (size_t s = 0; s < planned.size(); ++s) {
      EXPECT_EQ(planned[s].full_remat_layers, p.stages[s].full_remat_layers);
      EXPECT_NEAR(planned[s].peak_memory_bytes / r->sim->stages[s].peak_memory_bytes, 1.0, 0.005)
          << "stage " << s << " (" << remat_text(planned[s]) << ") at " << memory << " B";
    }
  }
  EXPECT_GE(mixed_budgets, 1);
  std::printf("gpt-tiny 2 stages: %d of 15 budgets between full and none mix the modes\n",
              mixed_budgets);
}

// One memory model with recomputation: each stage's planned peak within 0.5% of the simulated
// peak of the rematerialized program, under selective and full recomputation alike, and its
// parts at the same moment (stash per micro-batch in flight, working memory) with it. Guards
// the ways they drifted apart: a received cotangent counted once per micro-batch in flight
// (only the micro-batch in its backward holds it), constants a recomputed segment reads
// counted as held by the lowered program (they are generated at their users, as in the stage
// graph), and a tied weight received for the forward counted as still held at the update.
TEST(RematPlanner, PlannedPeakAgreesWithTheSimulation) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  const Cluster c = with_devices(cluster_preset("local").value(), 2).value();
  for (RematMode m : {RematMode::kSelective, RematMode::kFull}) {
    PipelinePlannerOptions o;
    o.batch = spec.batch;
    o.space = PlanSpace::kInterOnly;
    o.micro_batches = 4;
    o.imbalance_tolerance = 100;
    o.remat = m;
    CheckedPipelinePlan r = plan_pipeline_checked(spec, {}, c, o, ScheduleKind::k1F1B).value();
    ASSERT_EQ(r.sim.stages.size(), r.pipeline.stages.size());
    for (size_t s = 0; s < r.sim.stages.size(); ++s) {
      const PlannedStage& ps = r.pipeline.stages[s];
      EXPECT_EQ(ps.remat, m);
      const MemoryBreakdown& sim = r.sim.stages[s].peak_breakdown;
      EXPECT_NEAR(ps.peak_memory_bytes / r.sim.stages[s].peak_memory_bytes, 1.0, 0.005)
          << remat_name(m) << " stage " << s << ": planned " << parts(ps.memory) << ", simulated "
          << parts(sim);
      if (ps.memory.in_flight != sim.in_flight) continue;  // two moments within 0.5%
      EXPECT_NEAR(ps.memory.stash_per_micro_batch, sim.stash_per_micro_batch,
                  0.005 * r.sim.stages[s].peak_memory_bytes)
          << remat_name(m) << " stage " << s;
      EXPECT_NEAR(ps.memory.working, sim.working, 0.005 * r.sim.stages[s].peak_memory_bytes)
          << remat_name(m) << " stage " << s;
    }
  }
}

}  // namespace
}  // namespace alpa
