// Plans as files (round-trip, errors, fingerprints, re-applying a plan) and the manual plans.
#include "alpa/plan/plan.h"

#include <gtest/gtest.h>

#include <fstream>

#include "alpa/autodiff/train_step.h"
#include "alpa/cluster/cluster.h"
#include "alpa/inter/layer_clustering.h"
#include "alpa/inter/virtual_stages.h"
#include "alpa/models/gpt.h"
#include "alpa/models/mlp.h"
#include "alpa/models/registry.h"
#include "alpa/plan/manual.h"

namespace alpa {
namespace {

struct Fixture {
  TrainStep ts;
  MeshLinks mesh;
  DeviceSpec device;
};

Fixture gpt_on(int64_t n0, int64_t n1) {
  GptConfig c = gpt_preset("tiny").value();
  c.layers = 1;
  Cluster cl = with_devices(cluster_preset("local").value(), static_cast<int>(n0 * n1)).value();
  return {build_train_step(build_gpt(c).value(), {}).value(), mesh_links(cl, {n0, n1}).value(),
          cl.device};
}

TEST(Plan, JsonRoundTripAndReapplyGivesTheSameLayouts) {
  Fixture f = gpt_on(2, 2);
  ShardingPlan sp = auto_shard(f.ts.graph, f.mesh, f.device, {}).value();
  Plan p = plan_from_sharding(f.ts.graph, sp, "gpt-tiny", "local", 1);
  EXPECT_GT(p.layouts.size(), 50u);
  Result<Plan> back = plan_from_json(plan_to_json(p));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->layouts, p.layouts);
  EXPECT_EQ(back->mesh, p.mesh);
  EXPECT_EQ(back->graph_fingerprint, graph_fingerprint(f.ts.graph));
  EXPECT_DOUBLE_EQ(back->predicted_step_time_s, p.predicted_step_time_s);
  // Re-planning under the plan's layouts reproduces every layout and the predicted cost.
  AutoShardingOptions o = plan_constraints(*back, f.ts.graph).value();
  ShardingPlan again = auto_shard(f.ts.graph, f.mesh, f.device, o).value();
  for (ValueId v = 0; v < f.ts.graph.size(); ++v) {
    if (sp.strategy[v] < 0) continue;
    EXPECT_EQ(again.specs[v], sp.specs[v]) << value_ref(f.ts.graph, v);
  }
  EXPECT_NEAR(again.compute_s + again.communication_s, sp.compute_s + sp.communication_s,
              1e-9 + 1e-6 * (sp.compute_s + sp.communication_s));
}

TEST(Plan, FileOfAnotherGraphIsRefused) {
  Fixture f = gpt_on(1, 2);
  ShardingPlan sp = auto_shard(f.ts.graph, f.mesh, f.device, {}).value();
  Plan p = plan_from_sharding(f.ts.graph, sp, "gpt-tiny", "local", 1);
  MlpConfig mc;
  TrainStep other = build_train_step(build_mlp(mc).value(), {}).value();
  Result<AutoShardingOptions> o = plan_constraints(p, other.graph);
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("different training graph"), std::string::npos);
  // Without the fingerprint, unknown value names are the error.
  p.graph_fingerprint.clear();
  AutoShardingOptions loose = plan_constraints(p, other.graph).value();
  Cluster cl = with_devices(cluster_preset("local").value(), 2).value();
  Result<ShardingPlan> r =
      auto_shard(other.graph, mesh_links(cl, {1, 2}).value(), cl.device, loose);
  ASSERT_FALSE(r.ok());
  // A name the graph lacks, or a layout that does not fit the value of that name.
  const std::string m = r.status().message();
  EXPECT_TRUE(m.find("which the graph does not have") != std::string::npos ||
              m.find("plan entry") != std::string::npos)
      << m;
}

TEST(Plan, HandWrittenPartialPlanIsCompleted) {
  Fixture f = gpt_on(1, 2);
  const char* text = R"({
    "mesh": [1, 2],
    "layouts": {"%h0.mlp.w1": "RS1", "%h0.mlp.w2": "S1R"}
  })";
  Plan p = plan_from_json(text, "mine.json").value();
  AutoShardingOptions o = plan_constraints(p, f.ts.graph).value();
  ShardingPlan sp = auto_shard(f.ts.graph, f.mesh, f.device, o).value();
  EXPECT_EQ(sp.specs[f.ts.graph.find("h0.mlp.w1")].to_string(), "RS1");
  EXPECT_EQ(sp.specs[f.ts.graph.find("h0.mlp.w2")].to_string(), "S1R");
  // Its optimizer state follows (aliased outputs keep the parameter's layout; state follows
  // the weight's update).
  EXPECT_EQ(sp.specs[f.ts.graph.find("h0.mlp.w1.adam_m")].to_string(), "RS1");
}

struct BadPlan {
  std::string text;
  const char* message;
};

TEST(Plan, MalformedFilesNameTheProblem) {
  const BadPlan cases[] = {
      {"{", "not valid JSON"},
      {"[1,2]", "must be a JSON object"},
      {R"({"layouts": {}})", "missing field \"mesh\""},
      {R"({"mesh": [2], "layouts": {}})", "\"mesh\" must be two integers"},
      {R"({"mesh": [0, 2], "layouts": {}})", "\"mesh\" must be two integers"},
      // Integers beyond their type or meaning are refused, not truncated.
      {R"({"mesh": [4294967297, 1], "layouts": {}})", "product is from 1 to 4096"},
      {R"({"mesh": [18446744073709551615, 1], "layouts": {}})", "product is from 1 to 4096"},
      {R"({"mesh": [64, 128], "layouts": {}})", "product is from 1 to 4096"},
      {R"({"mesh": [1, 2], "layouts": {}, "micro_batches": 4294967297})", "micro_batches"},
      {R"({"mesh": [1, 2], "layouts": {}, "options": {"force_batch_dim_to_mesh_dim": 7}})",
       "force_batch_dim_to_mesh_dim"},
      {R"({"mesh": [1, 2], "layouts": {}, "options": {"memory_budget_bytes": -1}})",
       "memory_budget_bytes"},
      // A deeply nested value is quoted as a short excerpt (no stack overflow).
      {"{\"mesh\": " + std::string(100000, '[') + std::string(100000, ']') + ", \"layouts\": {}}",
       "got [[[[...]]]]"},
      {R"({"mesh": [1, 2]})", "missing object \"layouts\""},
      {R"({"mesh": [1, 2], "layouts": {"%w": "S2R"}})", "layout of \"%w\""},
      {R"({"mesh": [1, 2], "layouts": {"%w": 3}})", "must be a string"},
      {R"({"mesh": [1, 2], "layouts": {}, "mesj": 1})", "unknown field \"mesj\""},
      {R"({"mesh": [1, 2], "layouts": {}, "options": {"prefer_rs": true}})", "unknown option"},
      {R"({"mesh": [1, 2], "layouts": {}, "micro_batches": 0})", "micro_batches"},
      {R"({"format": "v9", "mesh": [1, 2], "layouts": {}})", "\"format\""},
  };
  for (const BadPlan& c : cases) {
    Result<Plan> p = plan_from_json(c.text, "bad.json");
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_NE(p.status().message().find(c.message), std::string::npos)
        << c.text << ": " << p.status().to_string();
    EXPECT_EQ(p.status().message().rfind("bad.json: ", 0), 0u) << p.status().message();
  }
  EXPECT_EQ(load_plan("/nonexistent/plan.json").status().code(), StatusCode::kNotFound);
}

TEST(Plan, SaveIsAtomicAndLoads) {
  Fixture f = gpt_on(1, 2);
  ShardingPlan sp = auto_shard(f.ts.graph, f.mesh, f.device, {}).value();
  Plan p = plan_from_sharding(f.ts.graph, sp, "gpt-tiny", "local", 1);
  const std::string path = ::testing::TempDir() + "/plan.json";
  ASSERT_TRUE(save_plan(p, path).ok());
  EXPECT_FALSE(std::ifstream(path + ".tmp").good());
  Result<Plan> back = load_plan(path);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->layouts, p.layouts);
}

TEST(ManualPlan, MegatronAndDataParallelLayouts) {
  Fixture f = gpt_on(1, 2);
  const Graph& g = f.ts.graph;
  AutoShardingOptions tp = manual_plan(g, {1, 2}, ManualPlanKind::kTensorParallel).value();
  EXPECT_EQ(tp.fixed.at("%h0.attn.wq").to_string(), "RS1");
  EXPECT_EQ(tp.fixed.at("%h0.attn.bq").to_string(), "S1");
  EXPECT_EQ(tp.fixed.at("%h0.attn.wo").to_string(), "S1R");
  EXPECT_EQ(tp.fixed.at("%h0.mlp.w1").to_string(), "RS1");
  EXPECT_EQ(tp.fixed.at("%h0.mlp.w2").to_string(), "S1R");
  EXPECT_EQ(tp.fixed.at("%h0.mlp.w2.adam_v").to_string(), "S1R");
  EXPECT_EQ(tp.fixed.at("%tokens").to_string(), "RR");
  EXPECT_EQ(tp.fixed.count("%wte"), 0u);  // left to the ILP
  AutoShardingOptions dp = manual_plan(g, {1, 2}, ManualPlanKind::kDataParallel).value();
  EXPECT_EQ(dp.fixed.at("%tokens").to_string(), "S1R");
  EXPECT_EQ(dp.fixed.at("%h0.attn.wq").to_string(), "RR");
  EXPECT_EQ(dp.fixed.at("%wte").to_string(), "RR");
  AutoShardingOptions two = manual_plan(g, {2, 2}, ManualPlanKind::kTwoD).value();
  EXPECT_EQ(two.fixed.at("%tokens").to_string(), "S0R");
  EXPECT_EQ(two.fixed.at("%h0.mlp.w1").to_string(), "RS1");
  EXPECT_FALSE(manual_plan(g, {1, 2}, ManualPlanKind::kTwoD).ok());
  AutoShardingOptions z = manual_plan(g, {2, 2}, ManualPlanKind::kZero).value();
  EXPECT_TRUE(z.sharding.prefer_reduce_scatter);
  EXPECT_TRUE(z.sharding.allow_mixed_mesh_shape);
  EXPECT_EQ(z.fixed.at("%tokens").to_string(), "S01R");
  EXPECT_EQ(z.fixed.count("%h0.mlp.w1.adam_m"), 0u);
  EXPECT_FALSE(parse_manual_plan("megatron").ok());
  // ZeRO-3: weights and their state split on their largest dimension the devices divide.
  AutoShardingOptions z3 = manual_plan(g, {1, 2}, ManualPlanKind::kZero3).value();
  EXPECT_TRUE(z3.sharding.prefer_reduce_scatter);
  EXPECT_EQ(z3.fixed.at("%tokens").to_string(), "S1R");
  const Shape w1 = g.type(g.find("h0.mlp.w1")).shape;
  EXPECT_EQ(z3.fixed.at("%h0.mlp.w1").to_string(), w1[1] > w1[0] ? "RS1" : "S1R");
  EXPECT_EQ(z3.fixed.at("%h0.mlp.w1.adam_m"), z3.fixed.at("%h0.mlp.w1"));
  EXPECT_EQ(parse_manual_plan("zero3").value(), ManualPlanKind::kZero3);
}

TEST(ManualPlan, ExpertParallelSplitsExpertsOverTheDataDevices) {
  ModelSpec spec = resolve_model("moe", "tiny", {}).value();
  Graph fwd = build_forward(spec, 1).value();
  const Graph g = build_train_step(fwd, {}).value().graph;
  int experts = 0;
  for (ManualPlanKind k : {ManualPlanKind::kZero, ManualPlanKind::kZero3}) {
    AutoShardingOptions ep = manual_plan(g, {1, 4}, k, true).value();
    AutoShardingOptions plain = manual_plan(g, {1, 4}, k, false).value();
    for (ValueId w : g.parameters(ParamRole::kWeight)) {
      const std::string& n = g.node(w).name;
      if (g.type(w).rank() != 3) continue;
      ++experts;
      const std::string ref = "%" + n;
      EXPECT_EQ(ep.fixed.at(ref).to_string().substr(0, 2), "S1") << n;
      EXPECT_EQ(ep.fixed.at(ref + ".adam_v"), ep.fixed.at(ref)) << n;
      if (k == ManualPlanKind::kZero) EXPECT_EQ(plain.fixed.at(ref).to_string(), "RRR") << n;
    }
  }
  EXPECT_GT(experts, 0);
}

TEST(PipelinePlanFile, JsonRoundTripKeepsStages) {
  PipelinePlan pp;
  pp.micro_batches = 4;
  pp.layers.num_layers = 3;
  PlannedStage a, b;
  a.first_layer = 0;
  a.last_layer = 0;
  a.logical.shape = {1, 2};
  a.logical.batch_axis = 1;
  a.first_device = 2;
  a.layouts["%wte"] = ShardingSpec::parse("S1R").value();
  a.time_s = 0.25;
  a.remat = RematMode::kFull;
  b.remat = RematMode::kSelective;
  b.first_layer = 1;
  b.last_layer = 2;
  b.logical.shape = {2, 1};
  b.first_device = 0;
  pp.stages = {a, b};
  pp.predicted_step_time_s = 1.5;
  Plan p = plan_from_pipeline(pp, "gpt-tiny", "local", 4, "gpipe", "abc");
  ASSERT_TRUE(p.is_pipeline());
  Result<Plan> back = plan_from_json(plan_to_json(p));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->devices, 4);
  EXPECT_EQ(back->pipeline_layers, 3);
  EXPECT_EQ(back->schedule, "gpipe");
  EXPECT_EQ(back->micro_batches, 4);
  EXPECT_EQ(back->graph_fingerprint, "abc");
  PipelinePlan again = pipeline_plan_of(*back).value();
  ASSERT_EQ(again.stages.size(), 2u);
  for (size_t s = 0; s < 2; ++s) {
    EXPECT_EQ(again.stages[s].first_layer, pp.stages[s].first_layer);
    EXPECT_EQ(again.stages[s].last_layer, pp.stages[s].last_layer);
    EXPECT_EQ(again.stages[s].logical.shape, pp.stages[s].logical.shape);
    EXPECT_EQ(again.stages[s].logical.batch_axis, pp.stages[s].logical.batch_axis);
    EXPECT_EQ(again.stages[s].first_device, pp.stages[s].first_device);
    EXPECT_EQ(again.stages[s].layouts, pp.stages[s].layouts);
    EXPECT_EQ(again.stages[s].remat, pp.stages[s].remat);
  }
  EXPECT_EQ(again.micro_batches, 4);
  EXPECT_EQ(again.layers.num_layers, 3);
}

// A plan whose stages were cut inside blocks keeps its cuts through a file: the layers'
// starts are written and rebuilt exactly; without them the layers are re-clustered.
TEST(PipelinePlanFile, LayerStartsRebuildTheLayersExactly) {
  ModelOverrides five;
  five.layers = 5;
  ModelSpec spec = resolve_model("gpt", "tiny", five).value();
  const TrainStep step = build_train_step(build_forward(spec, 2).value(), {}).value();
  const std::vector<ValueId> ops = forward_ops(step);
  const std::vector<int> starts = {static_cast<int>(ops.size() / 3) + 1,
                                   static_cast<int>(2 * ops.size() / 3) - 1};
  PipelinePlan pp;
  pp.micro_batches = 2;
  pp.layers = layers_from_boundaries(step.graph, ops, starts).value();
  for (int s = 0; s < 3; ++s) {
    PlannedStage st;
    st.first_layer = st.last_layer = s;
    st.first_device = s;
    pp.stages.push_back(st);
  }
  Plan p = plan_from_pipeline(pp, "gpt-tiny", "local", 3, "1f1b", graph_fingerprint(step.graph));
  EXPECT_EQ(p.layer_starts, starts);
  Result<Plan> back = plan_from_json(plan_to_json(p));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->layer_starts, starts);
  PipelinePlan again = pipeline_plan_of(*back).value();
  Result<LayerClustering> layers = plan_layers(step, again);
  ASSERT_TRUE(layers.ok()) << layers.status().to_string();
  EXPECT_EQ(layers->layer_of, pp.layers.layer_of);
  // Without the starts: Alpa's clustering into as many layers (FLOP-balanced, elsewhere).
  again.layer_starts.clear();
  Result<LayerClustering> reclustered = plan_layers(step, again);
  ASSERT_TRUE(reclustered.ok()) << reclustered.status().to_string();
  EXPECT_EQ(reclustered->num_layers, 3);
  EXPECT_NE(reclustered->layer_of, pp.layers.layer_of);
  // Starts beyond the training graph's operators are refused, naming the field.
  again.layer_starts = {5, static_cast<int>(ops.size()) + 7};
  Result<LayerClustering> bad = plan_layers(step, again);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().to_string().find("pipeline.layer_starts"), std::string::npos)
      << bad.status().to_string();
}

TEST(PipelinePlanFile, HandWrittenStagesGetDefaults) {
  Plan p = plan_from_json(R"({"micro_batches": 2, "stages": [
      {"layers": [0, 0], "mesh": [1, 1]}, {"layers": [1, 3], "mesh": [1, 2]}]})",
                          "mine.json")
               .value();
  EXPECT_EQ(p.devices, 3);  // the stages' devices, consecutively
  EXPECT_EQ(p.pipeline_layers, 4);
  EXPECT_EQ(p.stages[1].first_device, 1);
  EXPECT_EQ(p.schedule, "1f1b");
}

// An interleaved plan lists meshes x virtual_stages stages; the later rounds may leave out
// their mesh and first device (the mesh of stage c mod meshes). It round-trips, and its
// PipelinePlan shares the meshes (inter/virtual_stages.h).
TEST(PipelinePlanFile, InterleavedStagesShareTheMeshes) {
  Plan p = plan_from_json(R"({"micro_batches": 4,
      "pipeline": {"schedule": "interleaved", "virtual_stages": 2},
      "stages": [{"layers": [0, 0], "mesh": [1, 1]}, {"layers": [1, 1], "mesh": [1, 2]},
                 {"layers": [2, 2]}, {"layers": [3, 3], "mesh": [1, 2], "first_device": 1}]})",
                          "interleaved.json")
               .value();
  EXPECT_EQ(p.schedule, "interleaved-1f1b");
  EXPECT_EQ(p.virtual_stages, 2);
  EXPECT_EQ(p.devices, 3);
  ASSERT_EQ(p.stages.size(), 4u);
  EXPECT_EQ(p.stages[2].first_device, 0);
  EXPECT_EQ(p.stages[2].mesh, (MeshShape{1, 1}));
  EXPECT_EQ(p.stages[3].first_device, 1);
  PipelinePlan pp = pipeline_plan_of(p).value();
  const PlanMeshes pm = plan_meshes(pp).value();
  EXPECT_EQ(pm.meshes, 2);
  EXPECT_EQ(pm.virtual_stages, 2);
  Plan again = plan_from_pipeline(pp, "gpt-tiny", "local", 3, "interleaved-1f1b", "");
  EXPECT_EQ(again.virtual_stages, 2);
  Plan back = plan_from_json(plan_to_json(again), "again.json").value();
  EXPECT_EQ(back.virtual_stages, 2);
  EXPECT_EQ(back.stages.size(), 4u);
  EXPECT_EQ(back.stages[3].mesh, (MeshShape{1, 2}));
}

TEST(PipelinePlanFile, MalformedStagesNameTheProblem) {
  const BadPlan cases[] = {
      {R"({"stages": []})", "\"stages\" must be a non-empty array"},
      {R"({"stages": [3]})", "stage 0: must be an object"},
      {R"({"stages": [{"mesh": [1, 1]}]})", "stage 0: missing \"layers\""},
      {R"({"stages": [{"layers": [0, 1]}]})", "stage 0: missing \"mesh\""},
      {R"({"stages": [{"layers": [1, 0], "mesh": [1, 1]}]})", "\"layers\" must be [first, last]"},
      {R"({"stages": [{"layers": [0, 1], "mesh": [1, 0]}]})", "\"mesh\" must be two integers"},
      {R"({"stages": [{"layers": [0, 4294967296], "mesh": [1, 1]}]})", "\"layers\" must be"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "first_device": 4294967296}]})",
       "\"first_device\" must be"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1]}, {"layers": [2, 3], "mesh": [1, 1]}]})",
       "stage 1: starts at layer 2, but the previous stage ended at 0"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 2]},
                      {"layers": [1, 1], "mesh": [1, 2], "first_device": 1}]})",
       "stages 0 and 1 share devices"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "devices": 3}]})",
       "stage 0: unknown field \"devices\""},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "batch_axis": 2}]})", "\"batch_axis\""},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "remat": "auto"}]})",
       "stage 0: \"remat\" must be \"none\", \"selective\" or \"full\", got \"auto\""},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "remat": 2}]})",
       "stage 0: \"remat\" must be"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "remat": "partial"}]})",
       "stage 0: \"remat\" must be"},
      {R"({"stages": [{"layers": [0, 0], "mesh": [1, 1], "layouts": {"%w": "S9"}}]})",
       "layout of \"%w\""},
      {R"({"pipeline": {"devices": 1}, "stages": [{"layers": [0, 0], "mesh": [1, 2]}]})",
       "the stages use devices up to 1 but pipeline.devices is 1"},
      {R"({"pipeline": {"layers": 5}, "stages": [{"layers": [0, 0], "mesh": [1, 1]}]})",
       "the stages cover layers 0..0 but pipeline.layers is 5"},
      {R"({"pipeline": {"schedule": "zb"}, "stages": [{"layers": [0, 0], "mesh": [1, 1]}]})",
       "pipeline.schedule"},
      {R"({"pipeline": {"stages": 2}, "stages": [{"layers": [0, 0], "mesh": [1, 1]}]})",
       "unknown field \"pipeline.stages\""},
      {R"({"pipeline": {"layer_starts": 4}, "stages": [{"layers": [0, 1], "mesh": [1, 1]}]})",
       "pipeline.layer_starts must be an array"},
      {R"({"pipeline": {"layer_starts": [0]}, "stages": [{"layers": [0, 1], "mesh": [1, 1]}]})",
       "pipeline.layer_starts must hold positive integers"},
      {R"({"pipeline": {"layer_starts": [4, 9]}, "stages": [{"layers": [0, 1], "mesh": [1, 1]}]})",
       "pipeline.layer_starts has 2 entries for 2 layers"},
      {R"({"pipeline": {"layer_starts": [9, 4]}, "stages": [{"layers": [0, 2], "mesh": [1, 1]}]})",
       "pipeline.layer_starts must be strictly increasing"},
      {R"({"pipeline": {"schedule": "interleaved-1f1b"}, "stages": [{"layers": [0, 0], "mesh": [1, 1]}]})",
       "needs pipeline.virtual_stages >= 2"},
      {R"({"pipeline": {"virtual_stages": 2}, "stages": [{"layers": [0, 0], "mesh": [1, 1]},
                      {"layers": [1, 1]}]})",
       "pipeline.virtual_stages 2 needs pipeline.schedule"},
      {R"({"pipeline": {"schedule": "interleaved", "virtual_stages": 2},
           "stages": [{"layers": [0, 0], "mesh": [1, 1]}, {"layers": [1, 1], "mesh": [1, 1]},
                      {"layers": [2, 2]}]})",
       "3 stages do not split into 2 virtual stages per mesh"},
      {R"({"pipeline": {"schedule": "interleaved", "virtual_stages": 2},
           "stages": [{"layers": [0, 0], "mesh": [1, 1]}, {"layers": [1, 1], "mesh": [1, 2]}]})",
       "stage 1: runs on the mesh of stage 0"},
  };
  for (const BadPlan& c : cases) {
    Result<Plan> p = plan_from_json(c.text, "bad.json");
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_NE(p.status().message().find(c.message), std::string::npos)
        << c.text << ": " << p.status().to_string();
  }
}

}  // namespace
}  // namespace alpa
