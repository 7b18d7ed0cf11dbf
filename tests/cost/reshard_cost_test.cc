// The alpha-beta cost of a resharding: each step of plan_reshard priced as its collective.
#include "alpa/cost/reshard_cost.h"

#include <gtest/gtest.h>

#include "alpa/cost/collective.h"

namespace alpa {
namespace {

TEST(ReshardCost, FollowsTheCollectives) {
  MeshLinks m;
  m.mesh.shape = {2, 4};
  m.alpha = {1e-5, 1e-6};
  m.beta = {1e-9, 1e-10};
  const Shape shape{64, 64};
  const double bytes = 64 * 64 * 4;
  auto cost = [&](const char* a, const char* b) {
    const ShardingSpec from = *ShardingSpec::parse(a);
    return reshard_time(*plan_reshard(from, *ShardingSpec::parse(b), shape, m.shape()), from, shape,
                        DType::kF32, m);
  };
  EXPECT_EQ(cost("RR", "S0S1"), 0.0);
  EXPECT_DOUBLE_EQ(cost("S0R", "RR"), collective_time(m, Collective::kAllGather, kAxis0, bytes));
  EXPECT_DOUBLE_EQ(cost("RR+P1", "RR"), collective_time(m, Collective::kAllReduce, kAxis1, bytes));
  EXPECT_DOUBLE_EQ(cost("RR+P1", "S1R"),
                   collective_time(m, Collective::kReduceScatter, kAxis1, bytes));
  // Gathering axis 1 of S0S1 moves a quarter of what S0R -> RR does per device... on axis 1.
  EXPECT_DOUBLE_EQ(cost("S0S1", "S0R"),
                   collective_time(m, Collective::kAllGather, kAxis1, bytes / 2));
  EXPECT_LT(cost("RR+P1", "S1R"), cost("RR+P1", "RR"));
  // With the device's memory bandwidth, a local slice costs the part kept, read and written.
  const double bw = 1e11;
  const ShardingSpec rr = *ShardingSpec::parse("RR");
  const double slice =
      reshard_time(*plan_reshard(rr, *ShardingSpec::parse("S0S1"), shape, m.shape()), rr, shape,
                   DType::kF32, m, bw);
  EXPECT_DOUBLE_EQ(slice, 2 * (bytes / 8) / bw);
  const ShardingSpec s0 = *ShardingSpec::parse("S0R");
  EXPECT_DOUBLE_EQ(
      reshard_time(*plan_reshard(s0, rr, shape, m.shape()), s0, shape, DType::kF32, m, bw),
      cost("S0R", "RR"));  // collectives only: unchanged
}

}  // namespace
}  // namespace alpa
