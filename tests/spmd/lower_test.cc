// SPMD lowering: sharding is real (each device holds and computes only its shard), the
// program's collectives are the plan's, and the parameters' local shapes are what the plan
// states.
#include <gtest/gtest.h>

#include "alpa/autodiff/train_step.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/mlp.h"
#include "alpa/plan/manual.h"
#include "spmd_test_util.h"

namespace alpa {
namespace {

TrainStep mlp_train_step() {
  MlpConfig c;
  c.batch = 16;
  c.input = 24;  // distinct from the batch, so batch-sized values are recognisable
  c.hidden = 64;
  c.layers = 2;
  c.classes = 8;
  return build_train_step(build_mlp(c).value(), {}).value();
}

// Megatron tensor parallel on 1x4: every device holds a quarter of the split weights and of
// their optimizer state, and computes about a quarter of the FLOPs.
TEST(Lowering, DevicesHoldAndComputeOnlyTheirShards) {
  TrainStep ts = mlp_train_step();
  const Graph& g = ts.graph;
  const MeshLinks mesh = testing::local_mesh(1, 4);
  AutoShardingOptions o = manual_plan(g, mesh.shape(), ManualPlanKind::kTensorParallel).value();
  ShardingPlan plan = auto_shard(g, mesh, testing::local_device(), o).value();
  SpmdProgram p = lower_to_spmd(g, plan).value();
  const std::vector<ValueId> global = g.parameters(), local = p.program.parameters();
  ASSERT_EQ(global.size(), local.size());
  int split = 0;
  for (size_t i = 0; i < global.size(); ++i) {
    const Shape want = p.param_specs[i].local_shape(g.type(global[i]).shape, mesh.shape());
    EXPECT_EQ(p.program.type(local[i]).shape, want) << value_ref(g, global[i]);
    if (num_elements(want) * 4 == g.type(global[i]).num_elements()) ++split;
  }
  // l0.w, l1.w, out.w (Megatron) and their two Adam moments each: at least 9 quarter-size.
  EXPECT_GE(split, 9);
  for (const char* name : {"l0.w", "l0.w.adam_m", "l0.w.adam_v", "l1.w", "l1.w.adam_m"}) {
    const ValueId v = p.program.find(name);
    ASSERT_NE(v, kNoValue) << name;
    EXPECT_EQ(p.program.type(v).num_elements() * 4, g.type(g.find(name)).num_elements()) << name;
  }
  // The matmul work is divided: per-device FLOPs of the contractions are a quarter.
  double global_dot = 0, local_dot = 0;
  for (ValueId v = 0; v < g.size(); ++v)
    if (g.node(v).op == OpKind::kDotGeneral) global_dot += node_flops(g, v);
  for (ValueId v = 0; v < p.program.size(); ++v)
    if (p.program.node(v).op == OpKind::kDotGeneral) local_dot += node_flops(p.program, v);
  EXPECT_NEAR(local_dot, global_dot / 4, global_dot * 0.01);
}

// Data parallel: the activations on each device are a batch shard, so the live activation
// bytes per device are much smaller than on one device.
TEST(Lowering, DataParallelActivationsAreBatchShards) {
  TrainStep ts = mlp_train_step();
  const Graph& g = ts.graph;
  const MeshLinks mesh = testing::local_mesh(1, 4);
  AutoShardingOptions o = manual_plan(g, mesh.shape(), ManualPlanKind::kDataParallel).value();
  ShardingPlan plan = auto_shard(g, mesh, testing::local_device(), o).value();
  SpmdProgram p = lower_to_spmd(g, plan).value();
  const ValueId x = p.program.find("x");
  ASSERT_NE(x, kNoValue);
  EXPECT_EQ(p.program.type(x).shape, (Shape{4, 24}));  // 16 samples over 4 devices
  // Every batch-sized intermediate of the program has 4 rows.
  int batch_values = 0;
  for (ValueId v = 0; v < p.program.size(); ++v) {
    const TensorType& t = p.program.type(v);
    if (t.rank() == 2 && t.shape[1] == 64 && p.program.node(v).op != OpKind::kParameter &&
        p.program.node(v).op != OpKind::kAllReduce) {
      ++batch_values;
      EXPECT_NE(t.shape[0], 16) << value_ref(p.program, v);
    }
  }
  EXPECT_GT(batch_values, 2);
  // Gradients are all-reduced: one all-reduce per weight gradient (resolved at the producer).
  int all_reduce = 0;
  for (const Node& n : p.program.nodes()) all_reduce += n.op == OpKind::kAllReduce;
  EXPECT_GE(all_reduce, 6);
  EXPECT_EQ(
      p.collectives, all_reduce + [&] {
        int other = 0;
        for (const Node& n : p.program.nodes())
          other += n.op == OpKind::kAllGather || n.op == OpKind::kReduceScatter ||
                   n.op == OpKind::kAllToAll;
        return other;
      }());
}

TEST(Lowering, RejectsAPlanOfAnotherGraph) {
  TrainStep ts = mlp_train_step();
  const MeshLinks mesh = testing::local_mesh(1, 2);
  ShardingPlan plan = auto_shard(ts.graph, mesh, testing::local_device(), {}).value();
  plan.specs.pop_back();
  EXPECT_FALSE(lower_to_spmd(ts.graph, plan).ok());
}

}  // namespace
}  // namespace alpa
