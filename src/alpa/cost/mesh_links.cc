#include "alpa/cost/mesh_links.h"

#include <algorithm>
#include <map>
#include <set>

namespace alpa {
namespace {

struct AxisLink {
  double alpha = 0;
  double beta = 0;
};

// alpha/beta of axis `a` of the view (see mesh_links.h for the rule).
AxisLink axis_link(const Cluster& c, const PlacedMesh& m, int a) {
  const int64_t n_axis = m.shape[a];
  const int64_t n_groups = m.shape[1 - a];
  std::map<int, int> crossing_groups_per_host;  // host -> host-crossing groups it takes part in
  for (int64_t g = 0; g < n_groups; ++g) {
    std::set<int> hosts;
    for (int64_t t = 0; t < n_axis; ++t) {
      int d = a == 0 ? m.device(t, g) : m.device(g, t);
      hosts.insert(d / c.devices_per_host);
    }
    if (hosts.size() < 2) continue;
    for (int h : hosts) ++crossing_groups_per_host[h];
  }
  AxisLink intra{c.intra_host.latency, 1.0 / c.intra_host.bandwidth};
  if (crossing_groups_per_host.empty()) return intra;
  int k = 0;
  for (const auto& [host, count] : crossing_groups_per_host) k = std::max(k, count);
  AxisLink inter{c.inter_host.latency, k / c.inter_host.bandwidth};
  return {std::max(inter.alpha, intra.alpha), std::max(inter.beta, intra.beta)};
}

}  // namespace

Result<MeshLinks> mesh_links(const Cluster& c, const PlacedMesh& mesh) {
  ALPA_RETURN_IF_ERROR(validate_cluster(c));
  const MeshShape& shape = mesh.shape;
  if (shape.n0 < 1 || shape.n1 < 1)
    return invalid_argument(cat("mesh ", shape.to_string(), ": extents must be >= 1"),
                            "write the mesh shape as N0xN1 with integers >= 1, e.g. \"2x4\"");
  ALPA_RETURN_IF_ERROR(mesh.validate());
  const int64_t total = c.num_devices();
  for (int d : mesh.devices)
    if (d >= total || shape.n0 > total || shape.n1 > total)
      return invalid_argument(
          cat("mesh ", mesh.to_string(), " needs ",
              shape.n0 > total || shape.n1 > total ? cat("more than ", total) : cat("device ", d),
              " but cluster '", c.name, "' has ", total, " devices (", c.hosts,
              c.hosts == 1 ? " host" : " hosts", " x ", c.devices_per_host, " devices)"),
          "use a smaller mesh, or size the cluster with more devices");
  MeshLinks m;
  m.mesh = mesh;
  for (int a = 0; a < 2; ++a) {
    AxisLink link = axis_link(c, mesh, a);
    m.alpha[a] = link.alpha;
    m.beta[a] = link.beta;
  }
  bool crosses_hosts = false;
  for (int d : mesh.devices)
    crosses_hosts |= d / c.devices_per_host != mesh.devices[0] / c.devices_per_host;
  m.alpha_flat =
      crosses_hosts ? std::max(c.inter_host.latency, c.intra_host.latency) : c.intra_host.latency;
  m.beta_flat = crosses_hosts ? std::max(1.0 / c.inter_host.bandwidth, 1.0 / c.intra_host.bandwidth)
                              : 1.0 / c.intra_host.bandwidth;
  if (!crosses_hosts) m.tables = c.collectives;
  return m;
}

Result<MeshLinks> mesh_links(const Cluster& c, const MeshShape& shape, int first_device) {
  ALPA_RETURN_IF_ERROR(validate_cluster(c));
  const int64_t n0 = shape.n0, n1 = shape.n1;
  if (n0 < 1 || n1 < 1)
    return invalid_argument(cat("mesh ", shape.to_string(), ": extents must be >= 1"),
                            "write the mesh shape as N0xN1 with integers >= 1, e.g. \"2x4\"");
  if (first_device < 0)
    return invalid_argument(
        cat("mesh ", shape.to_string(), ": first device must be >= 0, got ", first_device));
  const int64_t total = c.num_devices();
  const int64_t available = total - first_device;
  if (n0 > total || n1 > total || n0 * n1 > available)
    return invalid_argument(
        cat("mesh ", n0, "x", n1, " starting at device ", first_device, " needs ",
            n0 > total || n1 > total ? cat("more than ", total) : cat(n0 * n1),
            " devices but cluster '", c.name, "' has ", total, " (", c.hosts,
            c.hosts == 1 ? " host" : " hosts", " x ", c.devices_per_host, " devices)"),
        "use a smaller mesh, or size the cluster with more devices");
  return mesh_links(c, PlacedMesh::contiguous(shape, first_device));
}

}  // namespace alpa
