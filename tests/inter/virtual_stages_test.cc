// Interleaved plans (inter/virtual_stages.h): a plan's meshes found from its stages'
// placements, the re-cut of one stage per mesh into S x v stages (placements in turn, layers
// in order, each mesh keeping about its share of the FLOPs), its errors, and the interleaved
// step-time estimate.
#include "alpa/inter/virtual_stages.h"

#include <gtest/gtest.h>

#include <cmath>

#include "alpa/inter/layer_clustering.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/registry.h"

namespace alpa {
namespace {

PlannedStage placed(int first_layer, int last_layer, int first_device, MeshShape mesh) {
  PlannedStage ps;
  ps.first_layer = first_layer;
  ps.last_layer = last_layer;
  ps.first_device = first_device;
  ps.logical.shape = mesh;
  ps.submesh = {1, mesh[0] * mesh[1]};
  return ps;
}

TEST(VirtualStages, MeshesFromPlacements) {
  PipelinePlan p;
  p.stages = {placed(0, 0, 0, {1, 1}), placed(1, 1, 1, {1, 2})};
  EXPECT_EQ(plan_meshes(p).value().meshes, 2);
  EXPECT_EQ(plan_meshes(p).value().virtual_stages, 1);
  p.stages.push_back(placed(2, 2, 0, {1, 1}));
  p.stages.push_back(placed(3, 3, 1, {1, 2}));
  EXPECT_EQ(plan_meshes(p).value().meshes, 2);
  EXPECT_EQ(plan_meshes(p).value().virtual_stages, 2);
  p.stages.push_back(placed(4, 4, 0, {1, 1}));  // 5 stages on 2 meshes
  Result<PlanMeshes> odd = plan_meshes(p);
  ASSERT_FALSE(odd.ok());
  EXPECT_NE(odd.status().message().find("multiple of 2 meshes"), std::string::npos);
  p.stages.back() = placed(4, 4, 1, {1, 2});
  p.stages.push_back(placed(5, 5, 0, {1, 1}));  // stage 4 not on mesh 0
  Result<PlanMeshes> turn = plan_meshes(p);
  ASSERT_FALSE(turn.ok());
  EXPECT_NE(turn.status().message().find("stage 4 is not placed as stage 0"), std::string::npos);
}

TEST(VirtualStages, ReCutKeepsEachMeshsShare) {
  ModelOverrides o;
  o.layers = 8;
  const ModelSpec spec = resolve_model("gpt", "tiny", o).value();
  const TrainStep step = micro_batch_step(spec, {}, 4).value();
  const std::vector<ValueId> ops = forward_ops(step);
  PipelinePlan p;
  p.micro_batches = 4;
  LayerClusteringOptions lo;
  lo.num_layers = 4;
  p.layers = cluster_layers(step.graph, ops, lo).value();
  p.stages = {placed(0, 1, 0, {1, 1}), placed(2, 3, 1, {1, 2})};
  double total = 0;
  for (ValueId v : ops)
    if (is_heavy_op(step.graph, v)) total += node_flops(step.graph, v);
  for (int v : {2, 3}) {
    SCOPED_TRACE(cat("v=", v));
    PipelinePlan out = interleave_plan(step, p, v).value();
    ASSERT_EQ(out.stages.size(), static_cast<size_t>(2 * v));
    EXPECT_EQ(out.layers.num_layers, 2 * v);
    EXPECT_EQ(out.layer_starts.size(), static_cast<size_t>(2 * v - 1));
    const PlanMeshes pm = plan_meshes(out).value();
    EXPECT_EQ(pm.meshes, 2);
    EXPECT_EQ(pm.virtual_stages, v);
    std::vector<double> mesh_flops(2, 0);
    for (int c = 0; c < 2 * v; ++c) {
      const PlannedStage& ps = out.stages[static_cast<size_t>(c)];
      EXPECT_EQ(ps.first_layer, c);
      EXPECT_EQ(ps.last_layer, c);
      EXPECT_EQ(ps.first_device, c % 2);
      for (size_t i = 0; i < ops.size(); ++i)
        if (out.layers.layer_of[i] == c && is_heavy_op(step.graph, ops[i]))
          mesh_flops[static_cast<size_t>(c % 2)] += node_flops(step.graph, ops[i]);
    }
    // Each mesh had half the layers; it keeps about half the FLOPs (within a block's).
    EXPECT_NEAR(mesh_flops[0] / total, 0.5, 0.2);
  }
  Result<PipelinePlan> many = interleave_plan(step, p, 64);
  ASSERT_FALSE(many.ok());
  EXPECT_EQ(many.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(many.status().hint().find("--virtual-stages"), std::string::npos);
}

TEST(VirtualStages, StepTimeEstimate) {
  std::vector<PlannedStage> stages(4);
  for (PlannedStage& s : stages) s.time_s = 1.0;
  // Two meshes of two stages: T = 2 each; B T + (S - 1) T / v = 4 * 2 + 2 / 2.
  EXPECT_DOUBLE_EQ(interleaved_step_time(stages, 2, 4), 9.0);
  // One stage per mesh: 1F1B's sum t + (B - 1) max t.
  EXPECT_DOUBLE_EQ(interleaved_step_time(stages, 4, 4), 4.0 + 3.0);
}

}  // namespace
}  // namespace alpa
