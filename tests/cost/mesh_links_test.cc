#include "alpa/cost/mesh_links.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

Cluster p3_hosts(int hosts) {
  return with_devices(cluster_preset("p3.16xlarge").value(), 8 * hosts).value();
}

// A made-up cluster with round figures: intra 1e10 B/s, 1 us; inter 1e9 B/s, 10 us.
Cluster toy(int hosts, int per_host) {
  Cluster c;
  c.name = "toy";
  c.hosts = hosts;
  c.devices_per_host = per_host;
  c.device = {"toy-device", 1e12, 2e12, 1e9, 1e11};
  c.intra_host = {1e10, 1e-6};
  c.inter_host = {1e9, 1e-5};
  return c;
}

TEST(MeshLinks, P3TwoHostsTwoByEight) {
  Result<MeshLinks> m = mesh_links(p3_hosts(2), {2, 8});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->shape(), (MeshShape{2, 8}));
  ASSERT_EQ(m->mesh.devices.size(), 16u);
  for (int d = 0; d < 16; ++d) EXPECT_EQ(m->mesh.devices[d], d);
  // Axis 0 pairs device j of host 0 with device j of host 1: 8 pairs share each host's NIC.
  EXPECT_DOUBLE_EQ(m->beta[0], 8 / 3.125e9);
  EXPECT_DOUBLE_EQ(m->alpha[0], 30e-6);
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 130e9);
  EXPECT_DOUBLE_EQ(m->alpha[1], 10e-6);
  // A ring over all 16 devices crosses each NIC once: the unshared network bandwidth.
  EXPECT_DOUBLE_EQ(m->beta_flat, 1 / 3.125e9);
  EXPECT_DOUBLE_EQ(m->alpha_flat, 30e-6);
}

TEST(MeshLinks, P3TwoHostsOneBySixteen) {
  Result<MeshLinks> m = mesh_links(p3_hosts(2), {1, 16});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 3.125e9);  // one ring crosses each NIC
  EXPECT_DOUBLE_EQ(m->alpha[1], 30e-6);
  EXPECT_DOUBLE_EQ(m->beta[0], 1 / 130e9);  // size-1 axis: intra-host by definition

  m = mesh_links(p3_hosts(2), {16, 1});
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(m->beta[0], 1 / 3.125e9);
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 130e9);
}

TEST(MeshLinks, P3TwoHostsFourByFour) {
  Result<MeshLinks> m = mesh_links(p3_hosts(2), {4, 4});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  // Rows {0..3}, {4..7} on host 0 and {8..11}, {12..15} on host 1: columns span hosts, and each
  // host holds a member of all 4 columns.
  EXPECT_DOUBLE_EQ(m->beta[0], 4 / 3.125e9);
  EXPECT_DOUBLE_EQ(m->alpha[0], 30e-6);
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 130e9);
  EXPECT_DOUBLE_EQ(m->alpha[1], 10e-6);
}

TEST(MeshLinks, LocalTwoByTwoIsIntraHost) {
  Result<MeshLinks> m = mesh_links(cluster_preset("local").value(), {2, 2});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  for (int a = 0; a < 2; ++a) {
    EXPECT_DOUBLE_EQ(m->beta[a], 1 / 5e9);
    EXPECT_DOUBLE_EQ(m->alpha[a], 5e-6);
  }
}

TEST(MeshLinks, SubmeshStartingMidHost) {
  // Devices 4..11 of two p3 hosts as 2x4: rows {4..7} (host 0), {8..11} (host 1).
  Result<MeshLinks> m = mesh_links(p3_hosts(2), {2, 4}, /*first_device=*/4);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ(m->mesh.devices, (std::vector<int>{4, 5, 6, 7, 8, 9, 10, 11}));
  EXPECT_DOUBLE_EQ(m->beta[0], 4 / 3.125e9);
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 130e9);
}

TEST(MeshLinks, OnlyHostCrossingGroupsShareTheNic) {
  // 3x3 over hosts of 4 devices: rows {0,1,2} (host 0), {3,4,5} (hosts 0,1), {6,7,8} (hosts
  // 1,2). Axis 1: host 1 takes part in the two crossing rows -> k = 2. Axis 0: columns {0,3,6},
  // {1,4,7}, {2,5,8} all cross; hosts 0 and 1 hold members of all three -> k = 3.
  Result<MeshLinks> m = mesh_links(toy(3, 4), {3, 3});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_DOUBLE_EQ(m->beta[1], 2 / 1e9);
  EXPECT_DOUBLE_EQ(m->beta[0], 3 / 1e9);
  EXPECT_DOUBLE_EQ(m->alpha[0], 1e-5);
}

TEST(MeshLinks, HostCrossingAxisIsNeverFasterThanIntraHost) {
  Cluster c = toy(2, 4);
  c.inter_host = {1e11, 1e-7};  // a network faster than the intra-host link
  Result<MeshLinks> m = mesh_links(c, {1, 8});
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_DOUBLE_EQ(m->beta[1], 1 / 1e10);
  EXPECT_DOUBLE_EQ(m->alpha[1], 1e-6);
}

TEST(MeshLinks, DoesNotFit) {
  Result<MeshLinks> m = mesh_links(p3_hosts(1), {2, 8});
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("needs 16 devices"), std::string::npos)
      << m.status().message();
  EXPECT_NE(m.status().message().find("has 8"), std::string::npos) << m.status().message();

  EXPECT_FALSE(mesh_links(p3_hosts(1), {1, 8}, /*first_device=*/1).ok());
  EXPECT_TRUE(mesh_links(p3_hosts(1), {1, 7}, /*first_device=*/1).ok());
  EXPECT_FALSE(mesh_links(p3_hosts(1), {0, 4}).ok());
  EXPECT_FALSE(mesh_links(p3_hosts(1), {2, -1}).ok());
  EXPECT_FALSE(mesh_links(p3_hosts(1), {1, 1}, /*first_device=*/-1).ok());
  EXPECT_FALSE(mesh_links(p3_hosts(1), {int64_t{1} << 40, int64_t{1} << 40}).ok());

  Cluster bad = p3_hosts(1);
  bad.intra_host.bandwidth = 0;
  m = mesh_links(bad, {2, 2});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("intra_host.bandwidth"), std::string::npos);
}

}  // namespace
}  // namespace alpa
