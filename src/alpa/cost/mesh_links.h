// MeshLinks: what a placed mesh's links cost on a cluster — the alpha-beta figures of each axis
// of a logical 2-D mesh (Alpa §2.1) and the cluster's measured collective tables.
//
// The mesh (sharding/mesh.h: PlacedMesh) is a logical n0 x n1 view of devices of a Cluster
// (device id d = host * devices_per_host + local index). The same physical devices can be
// viewed as several logical shapes (2x8, 1x16, 4x4, ...).
//
// Per axis a: alpha[a] is the latency (s) and beta[a] the inverse bandwidth (s per byte) of one
// ring step along that axis. A "group" of axis a is the set of devices that differ only in their
// axis-a coordinate. If every group stays inside one host the axis uses the intra-host link:
// alpha = intra.latency, beta = 1 / intra.bandwidth. Otherwise the groups that cross a host's
// NIC share it: beta = k / inter.bandwidth, where k is the largest number of host-crossing
// groups with a member on one host (p3 2x8 over 2 hosts: axis 0 has 8 pairs, each host holds a
// member of all 8 -> k = 8), and alpha = inter.latency. A host-crossing ring also takes
// intra-host hops, so it is never faster than the intra-host link: beta and alpha are at least
// the intra-host figures.
//
// It is not a communicator or a placement: it only prices the links of one.
#pragma once

#include <array>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/sharding/mesh.h"
#include "alpa/support/status.h"

namespace alpa {

struct MeshLinks {
  PlacedMesh mesh;
  std::array<double, 2> alpha{0, 0};  // s per collective step, per axis
  std::array<double, 2> beta{0, 0};   // s per byte, per axis
  // One ring over all n0*n1 devices (a collective over both axes, flattened): it crosses each
  // host's NIC with a single flow, so it is bounded by the unshared inter-host link (or the
  // intra-host link when the view fits one host), not by the per-axis shares above.
  double alpha_flat = 0;
  double beta_flat = 0;
  // The cluster's measured collective tables, when the mesh lies inside one host.
  std::vector<CollectiveTable> tables;

  const MeshShape& shape() const { return mesh.shape; }
  int64_t size() const { return mesh.size(); }

  friend bool operator==(const MeshLinks&, const MeshLinks&) = default;
};

// The links of `mesh` on `c`. Errors (with a hint) if an extent is < 1, a device is negative
// or repeated, the mesh does not fit the cluster's devices, or the cluster is invalid.
Result<MeshLinks> mesh_links(const Cluster& c, const PlacedMesh& mesh);
// The links of the n0 x n1 view of devices [first_device, first_device + n0*n1).
Result<MeshLinks> mesh_links(const Cluster& c, const MeshShape& shape, int first_device = 0);

}  // namespace alpa
