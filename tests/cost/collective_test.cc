#include "alpa/cost/collective.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

// A hand-made 2x4 mesh: axis 0 slow (10 us, 1 GB/s), axis 1 fast (2 us, 10 GB/s).
MeshLinks hand_mesh() {
  MeshLinks m;
  m.mesh.shape = {2, 4};
  m.alpha = {1e-5, 2e-6};
  m.beta = {1e-9, 1e-10};
  m.alpha_flat = 1e-5;  // a flattened ring: here bounded by axis 0's link
  m.beta_flat = 1e-9;
  return m;
}

constexpr Collective kAll[] = {Collective::kAllReduce, Collective::kAllGather,
                               Collective::kReduceScatter, Collective::kAllToAll};

TEST(Collective, Names) {
  EXPECT_EQ(collective_name(Collective::kAllReduce), "all-reduce");
  EXPECT_EQ(collective_name(Collective::kAllGather), "all-gather");
  EXPECT_EQ(collective_name(Collective::kReduceScatter), "reduce-scatter");
  EXPECT_EQ(collective_name(Collective::kAllToAll), "all-to-all");
}

TEST(Collective, ExactFormulaValues) {
  MeshLinks m = hand_mesh();
  const double b = 1e6;
  // Axis 1: n = 4.
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kAxis1, b), 2e-6 + 1e-10 * 1.5 * b);
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllGather, kAxis1, b), 2e-6 + 1e-10 * 0.75 * b);
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kReduceScatter, kAxis1, b),
                   2e-6 + 1e-10 * 0.75 * b);
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllToAll, kAxis1, b), 2e-6 + 1e-10 * 0.75 * b);
  // Axis 0: n = 2.
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kAxis0, b), 1e-5 + 1e-9 * 1.0 * b);
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllGather, kAxis0, b), 1e-5 + 1e-9 * 0.5 * b);
  // Both: n = 8, the flattened ring's alpha and beta.
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kBothAxes, b),
                   1e-5 + 1e-9 * 1.75 * b);
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kReduceScatter, kBothAxes, b),
                   1e-5 + 1e-9 * 0.875 * b);
}

TEST(Collective, SingleDeviceGroupsCostNothing) {
  MeshLinks m = hand_mesh();
  for (Collective c : kAll) EXPECT_EQ(collective_time(m, c, 0, 1e9), 0.0);
  MeshLinks one;  // 1x1
  one.alpha = {1, 1};
  one.beta = {1, 1};
  for (Collective c : kAll)
    for (uint8_t axes : {kAxis0, kAxis1, kBothAxes})
      EXPECT_EQ(collective_time(one, c, axes, 1e9), 0.0);
  MeshLinks row = hand_mesh();
  row.mesh.shape = {1, 8};
  EXPECT_EQ(collective_time(row, Collective::kAllReduce, kAxis0, 1e9), 0.0);
}

TEST(Collective, MonotoneInBytes) {
  MeshLinks m = hand_mesh();
  for (Collective c : kAll) {
    for (uint8_t axes : {kAxis0, kAxis1, kBothAxes}) {
      double previous = collective_time(m, c, axes, 0);
      EXPECT_DOUBLE_EQ(previous,
                       m.alpha[0] * (axes & kAxis0 ? 1 : 0) + (axes == kAxis1 ? m.alpha[1] : 0));
      for (double bytes = 1; bytes < 1e12; bytes *= 7) {
        double t = collective_time(m, c, axes, bytes);
        EXPECT_GT(t, previous) << collective_name(c) << " axes " << int(axes) << " bytes " << bytes;
        previous = t;
      }
    }
  }
}

TEST(Collective, BothAxesUsesTheFlattenedRing) {
  MeshLinks m = hand_mesh();
  m.alpha_flat = 7e-6;  // not the per-axis figures: one ring over all devices
  m.beta_flat = 3e-10;
  const double b = 4e6;
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllGather, kBothAxes, b),
                   7e-6 + 3e-10 * 0.875 * b);
  // A size-1 axis takes no part, whatever its figures.
  MeshLinks row;
  row.mesh.shape = {1, 8};
  row.alpha = {1.0, 1e-6};
  row.beta = {1.0, 1e-10};
  EXPECT_DOUBLE_EQ(collective_time(row, Collective::kAllGather, kBothAxes, b),
                   collective_time(row, Collective::kAllGather, kAxis1, b));
  EXPECT_DOUBLE_EQ(collective_time(row, Collective::kAllGather, kAxis1, b),
                   1e-6 + 1e-10 * 0.875 * b);
}

TEST(Collective, AllReduceMovesTwiceAllGather) {
  MeshLinks m = hand_mesh();
  for (uint8_t axes : {kAxis0, kAxis1, kBothAxes}) {
    const double b = 3e7;
    const double alpha = collective_time(m, Collective::kAllGather, axes, 0);
    const double ar = collective_time(m, Collective::kAllReduce, axes, b) - alpha;
    const double ag = collective_time(m, Collective::kAllGather, axes, b) - alpha;
    EXPECT_DOUBLE_EQ(ar, 2 * ag);
    EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, axes, b),
                     collective_time(m, Collective::kReduceScatter, axes, b) +
                         collective_time(m, Collective::kAllGather, axes, b) - alpha);
  }
}

TEST(Collective, OnARealMesh) {
  Cluster c = with_devices(cluster_preset("p3.16xlarge").value(), 16).value();
  MeshLinks m = mesh_links(c, {2, 8}).value();
  // 1 GB gradient all-reduced across the two hosts: 8 rings share each 25 Gbit/s NIC.
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kAxis0, 1e9),
                   30e-6 + 8 / 3.125e9 * 1.0 * 1e9);
  // Inside a host it is far cheaper.
  EXPECT_LT(collective_time(m, Collective::kAllReduce, kAxis1, 1e9),
            collective_time(m, Collective::kAllReduce, kAxis0, 1e9) / 10);
}

TEST(CollectiveDeathTest, BadAxesIsABug) {
  MeshLinks m = hand_mesh();
  EXPECT_DEATH(collective_time(m, Collective::kAllReduce, 4, 1.0), "names no mesh axis");
  EXPECT_DEATH(collective_time(m, Collective::kAllReduce, kAxis0, -1.0), "negative byte count");
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

TEST(Collective, MeasuredTablesWinOverAlphaBetaForTheirGroupSize) {
  MeshLinks m = hand_mesh();
  m.tables = {{"all-reduce", 4, {{1000, 1e-3}, {3000, 3e-3}}}};
  // Axis 1 has 4 devices: the table, interpolated.
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kAxis1, 2000), 2e-3);
  // Other collectives and group sizes keep alpha-beta.
  MeshLinks plain = hand_mesh();
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllGather, kAxis1, 2000),
                   collective_time(plain, Collective::kAllGather, kAxis1, 2000));
  EXPECT_DOUBLE_EQ(collective_time(m, Collective::kAllReduce, kAxis0, 2000),
                   collective_time(plain, Collective::kAllReduce, kAxis0, 2000));
}

}  // namespace
}  // namespace alpa
