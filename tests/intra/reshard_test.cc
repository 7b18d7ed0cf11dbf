// Resharding decomposition (the paper's Table 2 examples and the rest of the cases) and its
// alpha-beta cost.
#include "alpa/intra/reshard.h"

#include <gtest/gtest.h>

#include "alpa/cost/collective.h"

namespace alpa {
namespace {

std::string plan_text(const char* from, const char* to, Shape shape, MeshShape mesh = {2, 4}) {
  Result<std::vector<ReshardStep>> steps =
      plan_reshard(*ShardingSpec::parse(from), *ShardingSpec::parse(to), shape, mesh);
  if (!steps.ok()) return "error: " + steps.status().message();
  std::string s;
  for (const ReshardStep& st : *steps) s += (s.empty() ? "" : "; ") + st.to_string();
  return s.empty() ? "none" : s;
}

TEST(Reshard, PaperTable2) {
  EXPECT_EQ(plan_text("RR", "S0S1", {8, 8}), "slice(axis 0, dim 0); slice(axis 1, dim 1)");
  EXPECT_EQ(plan_text("S0R", "RR", {8, 8}), "all-gather(axis 0, dim 0)");
  EXPECT_EQ(plan_text("S0S1", "S0R", {8, 8}), "all-gather(axis 1, dim 1)");
  EXPECT_EQ(plan_text("S0R", "RS0", {8, 8}), "all-to-all(axis 0, dim 0 -> 1)");
  EXPECT_EQ(plan_text("S0S1", "S01R", {8, 8}), "all-to-all(axis 1, dim 1 -> 0)");
}

TEST(Reshard, PartialSums) {
  EXPECT_EQ(plan_text("RR+P1", "RR", {8, 8}), "all-reduce(axis 1)");
  EXPECT_EQ(plan_text("RR+P1", "S1R", {8, 8}), "reduce-scatter(axis 1, dim 0)");
  EXPECT_EQ(plan_text("RR+P01", "RR", {8, 8}), "all-reduce(axis 01)");
  EXPECT_EQ(plan_text("S0R+P1", "S01R", {8, 8}), "reduce-scatter(axis 1, dim 0)");
  // S1 then axis 0 would be S10, not a layout: all-reduce, then slice.
  EXPECT_EQ(plan_text("S1R+P0", "S01R", {8, 8}),
            "all-reduce(axis 0); all-gather(axis 1, dim 0); slice(axis 0, dim 0); slice(axis 1, dim 0)");
  // A partial sum is made locally (adding a replicated bias to a partial result).
  EXPECT_EQ(plan_text("RR", "RR+P0", {8, 8}), "make-partial(axis 0)");
  EXPECT_EQ(plan_text("S0R", "RS1+P0", {8, 8}),
            "all-gather(axis 0, dim 0); make-partial(axis 0); slice(axis 1, dim 1)");
}

TEST(Reshard, IdentityAndSingleDeviceAxes) {
  EXPECT_EQ(plan_text("S0S1", "S0S1", {8, 8}), "none");
  // On a 1x4 mesh, S0 means nothing: S0S1 == RS1.
  EXPECT_EQ(plan_text("S0S1", "RS1", {8, 8}, {1, 4}), "none");
}

TEST(Reshard, EveryPairOfLayoutsIsReachable) {
  // All 2-D layouts without partial sums on a 2x2 mesh: each pair has a plan that ends there.
  std::vector<ShardingSpec> specs;
  for (uint8_t a : {0, 1, 2, 3})
    for (uint8_t b : {0, 1, 2, 3})
      if ((a & b) == 0) specs.push_back(ShardingSpec{{a, b}, 0});
  for (const auto& from : specs)
    for (const auto& to : specs) {
      Result<std::vector<ReshardStep>> steps = plan_reshard(from, to, {8, 8}, {2, 2});
      ASSERT_TRUE(steps.ok()) << from.to_string() << " -> " << to.to_string() << ": "
                              << steps.status().to_string();
      if (!steps->empty()) EXPECT_EQ(steps->back().after, to) << from.to_string();
    }
}

TEST(Reshard, CostFollowsTheCollectives) {
  Mesh m;
  m.shape = {2, 4};
  m.alpha = {1e-5, 1e-6};
  m.beta = {1e-9, 1e-10};
  const Shape shape{64, 64};
  const double bytes = 64 * 64 * 4;
  auto cost = [&](const char* a, const char* b) {
    const ShardingSpec from = *ShardingSpec::parse(a);
    return reshard_time(*plan_reshard(from, *ShardingSpec::parse(b), shape, m.shape), from, shape,
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
  const double slice = reshard_time(*plan_reshard(rr, *ShardingSpec::parse("S0S1"), shape, m.shape),
                                    rr, shape, DType::kF32, m, bw);
  EXPECT_DOUBLE_EQ(slice, 2 * (bytes / 8) / bw);
  const ShardingSpec s0 = *ShardingSpec::parse("S0R");
  EXPECT_DOUBLE_EQ(
      reshard_time(*plan_reshard(s0, rr, shape, m.shape), s0, shape, DType::kF32, m, bw),
      cost("S0R", "RR"));  // collectives only: unchanged
}

}  // namespace
}  // namespace alpa
