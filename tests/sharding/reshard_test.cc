// Resharding decomposition: the paper's Table 2 examples and the rest of the cases.
#include "alpa/sharding/reshard.h"

#include <gtest/gtest.h>

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
  EXPECT_EQ(
      plan_text("S1R+P0", "S01R", {8, 8}),
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

}  // namespace
}  // namespace alpa
