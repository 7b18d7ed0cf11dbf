// Mesh: a logical 2-D view (n0, n1) of n0*n1 consecutive devices of a Cluster, with the
// alpha-beta communication figures of each axis (Alpa §2.1).
//
// Layout: the view starts at device `first_device` (device id d = host * devices_per_host +
// local index) and is row-major: logical (i, j) is device first_device + i*n1 + j. The same
// physical devices can be viewed as several logical shapes (2x8, 1x16, 4x4, ...).
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
// It is not a communicator or a placement: it only names devices and prices their links.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/support/status.h"

namespace alpa {

struct Mesh {
  std::array<int64_t, 2> shape{1, 1};
  std::vector<int> devices;           // [n0*n1] device ids, row-major
  std::array<double, 2> alpha{0, 0};  // s per collective step, per axis
  std::array<double, 2> beta{0, 0};   // s per byte, per axis
  // One ring over all n0*n1 devices (a collective over both axes, flattened): it crosses each
  // host's NIC with a single flow, so it is bounded by the unshared inter-host link (or the
  // intra-host link when the view fits one host), not by the per-axis shares above.
  double alpha_flat = 0;
  double beta_flat = 0;
  // The cluster's measured collective tables, when the mesh lies inside one host.
  std::vector<CollectiveTable> tables;

  int64_t size() const { return shape[0] * shape[1]; }
  std::string to_string() const;  // "2x4" (reads back with parse_mesh_shape)
  // Logical coordinates of the rank-th device (row-major): {rank / n1, rank % n1}.
  std::array<int64_t, 2> coords(int64_t rank) const;
  // The device id at logical (i, j).
  int device(int64_t i, int64_t j) const;

  friend bool operator==(const Mesh&, const Mesh&) = default;
};

// The n0 x n1 view of devices [first_device, first_device + n0*n1) of `c`. Errors (with a hint)
// if an extent is < 1, first_device < 0, the view does not fit the cluster's devices, or the
// cluster is invalid.
Result<Mesh> make_mesh(const Cluster& c, int64_t n0, int64_t n1, int first_device = 0);

// "2x4" -> {2, 4}; "8" -> {1, 8}. Extents are integers >= 1; errors explain the format.
Result<std::array<int64_t, 2>> parse_mesh_shape(std::string_view text);

// All logical shapes (n0, n1) with n0*n1 == n, n0 ascending (empty for n < 1). For planners
// that try several views of one physical mesh.
std::vector<std::array<int64_t, 2>> logical_shapes(int64_t n);

}  // namespace alpa
