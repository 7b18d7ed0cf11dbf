// Submesh shapes (Alpa §3.3), logical views per submesh (§3.4), and placement: every placed
// list is disjoint, covers the cluster, keeps (1, m) meshes inside one host and (n, M) meshes on
// whole hosts; impossible lists are rejected with a reason.
#include "alpa/inter/submesh.h"

#include <gtest/gtest.h>

#include "alpa/support/rng.h"

namespace alpa {
namespace {

std::vector<std::string> names(const std::vector<SubmeshShape>& v) {
  std::vector<std::string> out;
  for (const SubmeshShape& s : v) out.push_back(s.to_string());
  return out;
}

TEST(SubmeshChoices, P3LikeClusters) {
  EXPECT_EQ(names(submesh_choices(1, 8)), (std::vector<std::string>{"1x1", "1x2", "1x4", "1x8"}));
  EXPECT_EQ(names(submesh_choices(8, 8)),
            (std::vector<std::string>{"1x1", "1x2", "1x4", "1x8", "2x8", "3x8", "4x8", "5x8", "6x8",
                                      "7x8", "8x8"}));
  EXPECT_EQ(names(submesh_choices(1, 1)), (std::vector<std::string>{"1x1"}));
  EXPECT_EQ(names(submesh_choices(2, 2)), (std::vector<std::string>{"1x1", "1x2", "2x2"}));
}

TEST(SubmeshChoices, DevicesPerHostNotAPowerOfTwo) {
  EXPECT_EQ(names(submesh_choices(1, 6)), (std::vector<std::string>{"1x1", "1x2", "1x4", "1x6"}));
  EXPECT_EQ(names(submesh_choices(3, 6)),
            (std::vector<std::string>{"1x1", "1x2", "1x4", "1x6", "2x6", "3x6"}));
}

TEST(SubmeshShape, TextAndSize) {
  SubmeshShape s{2, 8};
  EXPECT_EQ(s.size(), 16);
  EXPECT_EQ(s.to_string(), "2x8");
  EXPECT_EQ(s, (SubmeshShape{2, 8}));
  EXPECT_NE(s, (SubmeshShape{1, 8}));
}

std::vector<std::string> names(const std::vector<LogicalMeshChoice>& v) {
  std::vector<std::string> out;
  for (const LogicalMeshChoice& c : v) out.push_back(c.to_string());
  return out;
}

TEST(LogicalMeshChoices, FollowBatchDivisibility) {
  // One host of 8, batch 16: every mp divides, every dp divides the batch.
  EXPECT_EQ(names(logical_mesh_choices({1, 8}, 8, 16)),
            (std::vector<std::string>{"8x1 batch->0", "4x2 batch->0", "2x4 batch->0",
                                      "1x8 batch->0", "8x1 auto"}));
  // Batch 2: only dp in {1, 2}.
  EXPECT_EQ(names(logical_mesh_choices({1, 8}, 8, 2)),
            (std::vector<std::string>{"2x4 batch->0", "1x8 batch->0", "8x1 auto"}));
  // Two hosts of 8 (16 devices): mp is at most 8, so dp >= 2.
  EXPECT_EQ(names(logical_mesh_choices({2, 8}, 8, 4)),
            (std::vector<std::string>{"4x4 batch->0", "2x8 batch->0", "16x1 auto"}));
  // An odd batch: only the pure model-parallel view is forced.
  EXPECT_EQ(names(logical_mesh_choices({1, 4}, 8, 3)),
            (std::vector<std::string>{"1x4 batch->0", "4x1 auto"}));
  // Nothing divides: the unforced view remains.
  EXPECT_EQ(names(logical_mesh_choices({2, 8}, 8, 3)), (std::vector<std::string>{"16x1 auto"}));
  // One device.
  const auto one = logical_mesh_choices({1, 1}, 8, 5);
  ASSERT_EQ(one.size(), 2u);
  EXPECT_EQ(one[0].batch_axis, 0);
  EXPECT_EQ(one[1].batch_axis, LogicalMeshChoice::kUnforced);
}

// Checks a placement: disjoint, covering, in-host or whole-host.
void expect_valid_placement(const std::vector<SubmeshShape>& stages, const std::vector<int>& first,
                            int64_t hosts, int64_t m) {
  ASSERT_EQ(first.size(), stages.size());
  std::vector<int> owner(static_cast<size_t>(hosts * m), -1);
  for (size_t i = 0; i < stages.size(); ++i) {
    const SubmeshShape& s = stages[i];
    const int64_t f = first[i];
    ASSERT_GE(f, 0);
    ASSERT_LE(f + s.size(), hosts * m) << s.to_string();
    if (s.devices_per_host == m) {
      EXPECT_EQ(f % m, 0) << "whole-host submesh " << s.to_string() << " starts mid-host at " << f;
    } else {
      EXPECT_EQ(f / m, (f + s.size() - 1) / m) << s.to_string() << " at " << f << " spans hosts";
    }
    for (int64_t d = f; d < f + s.size(); ++d) {
      EXPECT_EQ(owner[d], -1) << "device " << d << " used twice";
      owner[d] = static_cast<int>(i);
    }
  }
  for (size_t d = 0; d < owner.size(); ++d) EXPECT_NE(owner[d], -1) << "device " << d << " unused";
}

TEST(PlaceSubmeshes, MixOnEightByEight) {
  const std::vector<SubmeshShape> stages = {{4, 8}, {2, 8}, {1, 8}, {1, 4}, {1, 2}, {1, 1}, {1, 1}};
  Result<std::vector<int>> p = place_submeshes(stages, 8, 8);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_valid_placement(stages, *p, 8, 8);
  // In pipeline order: hosts 0-3, 4-5, 6, then the in-host meshes packed into host 7.
  EXPECT_EQ(*p, (std::vector<int>{0, 32, 48, 56, 60, 62, 63}));
}

// Neighbouring stages share a host wherever sizes allow: GPT-39B's 24 stages of 1x4 and 1x2 on
// 8 hosts of 8 cross between hosts at 7 boundaries, the fewest possible.
TEST(PlaceSubmeshes, NeighbouringStagesShareHosts) {
  std::vector<SubmeshShape> stages;
  for (int64_t m : {4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2, 4, 2, 4, 2, 2, 2, 2, 2, 2, 2, 2, 4})
    stages.push_back({1, m});
  Result<std::vector<int>> p = place_submeshes(stages, 8, 8);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_valid_placement(stages, *p, 8, 8);
  int crossings = 0;
  for (size_t i = 0; i + 1 < stages.size(); ++i) crossings += (*p)[i] / 8 != (*p)[i + 1] / 8;
  EXPECT_EQ(crossings, 7);
  EXPECT_EQ((*p)[12], 34);  // the 1x4 after seven 1x2s shares host 4 with its neighbours
}

TEST(PlaceSubmeshes, StageOrderDoesNotMatterForValidity) {
  const std::vector<SubmeshShape> stages = {{1, 1}, {1, 2}, {1, 8}, {1, 1}, {2, 8}, {1, 4}, {4, 8}};
  Result<std::vector<int>> p = place_submeshes(stages, 8, 8);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_valid_placement(stages, *p, 8, 8);
}

TEST(PlaceSubmeshes, RandomPowerOfTwoMixesAlwaysPlace) {
  Rng rng(7);
  const std::vector<std::pair<int64_t, int64_t>> clusters = {{1, 8}, {2, 4}, {4, 8},
                                                             {8, 8}, {3, 2}, {5, 4}};
  for (int trial = 0; trial < 300; ++trial) {
    const auto [hosts, m] = clusters[trial % clusters.size()];
    const std::vector<SubmeshShape> choices = submesh_choices(hosts, m);
    std::vector<SubmeshShape> stages;
    int64_t left = hosts * m;
    while (left > 0) {
      std::vector<SubmeshShape> fit;
      for (const SubmeshShape& s : choices)
        if (s.size() <= left) fit.push_back(s);
      stages.push_back(fit[rng.below(fit.size())]);
      left -= stages.back().size();
    }
    Result<std::vector<int>> p = place_submeshes(stages, hosts, m);
    ASSERT_TRUE(p.ok()) << "trial " << trial << ": " << p.status().to_string();
    expect_valid_placement(stages, *p, hosts, m);
  }
}

TEST(PlaceSubmeshes, WholeHostOfNonPowerOfTwoSize) {
  const std::vector<SubmeshShape> stages = {{1, 2}, {1, 6}, {1, 4}};
  Result<std::vector<int>> p = place_submeshes(stages, 2, 6);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_valid_placement(stages, *p, 2, 6);
  // In order: 1x2 on host 0, the whole host 1, then the 1x4 back beside the 1x2.
  EXPECT_EQ(*p, (std::vector<int>{0, 6, 2}));
}

TEST(PlaceSubmeshes, ImpossibleListsAreErrors) {
  // Sizes do not add up.
  std::vector<SubmeshShape> short_list = {{4, 8}, {2, 8}};
  Result<std::vector<int>> p = place_submeshes(short_list, 8, 8);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("48 devices"), std::string::npos) << p.status().to_string();
  EXPECT_FALSE(p.status().hint().empty());
  // A multi-host submesh that does not use whole hosts.
  std::vector<SubmeshShape> partial = {{2, 4}, {6, 8}, {1, 8}};
  p = place_submeshes(partial, 8, 8);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("2x4"), std::string::npos) << p.status().to_string();
  // More hosts than the cluster has.
  std::vector<SubmeshShape> too_big = {{3, 4}};
  EXPECT_FALSE(place_submeshes(too_big, 2, 4).ok());
  // Sizes add up but cannot be packed into hosts.
  std::vector<SubmeshShape> odd = {{1, 3}, {1, 3}, {1, 2}};
  p = place_submeshes(odd, 2, 4);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("cannot pack"), std::string::npos) << p.status().to_string();
}

}  // namespace
}  // namespace alpa
