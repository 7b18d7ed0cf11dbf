#include "alpa/cluster/mesh.h"

#include <algorithm>
#include <charconv>
#include <climits>
#include <map>
#include <set>

namespace alpa {
namespace {

struct AxisLink {
  double alpha = 0;
  double beta = 0;
};

// alpha/beta of axis `a` of the view (see mesh.h for the rule).
AxisLink axis_link(const Cluster& c, const Mesh& m, int a) {
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

constexpr const char* kShapeHint =
    "write the mesh shape as N0xN1 with integers >= 1, e.g. \"2x4\", or a single N for 1xN";

Result<int64_t> parse_extent(std::string_view whole, std::string_view part) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
  if (part.empty())
    return invalid_argument(cat("bad mesh shape \"", whole, "\": an extent is missing"),
                            kShapeHint);
  if (ec == std::errc::invalid_argument || ptr != part.data() + part.size())
    return invalid_argument(
        cat("bad mesh shape \"", whole, "\": \"", part, "\" is not a positive integer"),
        kShapeHint);
  if (ec == std::errc::result_out_of_range || v > INT_MAX)
    return invalid_argument(cat("bad mesh shape \"", whole, "\": extent ", part, " is too large"),
                            kShapeHint);
  if (v < 1)
    return invalid_argument(cat("bad mesh shape \"", whole, "\": extents must be >= 1, got ", v),
                            kShapeHint);
  return v;
}

}  // namespace

std::string Mesh::to_string() const {
  return cat(shape[0], "x", shape[1]);
}

std::array<int64_t, 2> Mesh::coords(int64_t rank) const {
  ALPA_CHECK(rank >= 0 && rank < size()) << "rank " << rank << " outside mesh " << to_string();
  return {rank / shape[1], rank % shape[1]};
}

int Mesh::device(int64_t i, int64_t j) const {
  ALPA_CHECK(i >= 0 && i < shape[0] && j >= 0 && j < shape[1])
      << "(" << i << ", " << j << ") outside mesh " << to_string();
  return devices[static_cast<size_t>(i * shape[1] + j)];
}

Result<Mesh> make_mesh(const Cluster& c, int64_t n0, int64_t n1, int first_device) {
  ALPA_RETURN_IF_ERROR(validate_cluster(c));
  if (n0 < 1 || n1 < 1)
    return invalid_argument(cat("mesh ", n0, "x", n1, ": extents must be >= 1"), kShapeHint);
  if (first_device < 0)
    return invalid_argument(
        cat("mesh ", n0, "x", n1, ": first device must be >= 0, got ", first_device));
  const int64_t total = c.num_devices();
  const int64_t available = total - first_device;
  if (n0 > total || n1 > total || n0 * n1 > available)
    return invalid_argument(
        cat("mesh ", n0, "x", n1, " starting at device ", first_device, " needs ",
            n0 > total || n1 > total ? std::string("more than ") + std::to_string(total)
                                     : std::to_string(n0 * n1),
            " devices but cluster '", c.name, "' has ", total, " (", c.hosts,
            c.hosts == 1 ? " host" : " hosts", " x ", c.devices_per_host, " devices)"),
        "use a smaller mesh, or size the cluster with more devices");
  Mesh m;
  m.shape = {n0, n1};
  m.devices.resize(static_cast<size_t>(n0 * n1));
  for (int64_t r = 0; r < n0 * n1; ++r) m.devices[r] = first_device + static_cast<int>(r);
  bool crosses_hosts = false;
  for (int a = 0; a < 2; ++a) {
    AxisLink link = axis_link(c, m, a);
    m.alpha[a] = link.alpha;
    m.beta[a] = link.beta;
  }
  for (int r = 1; r < static_cast<int>(m.devices.size()); ++r)
    crosses_hosts |= m.devices[r] / c.devices_per_host != m.devices[0] / c.devices_per_host;
  m.alpha_flat = crosses_hosts ? std::max(c.inter_host.latency, c.intra_host.latency)
                               : c.intra_host.latency;
  m.beta_flat = crosses_hosts ? std::max(1.0 / c.inter_host.bandwidth, 1.0 / c.intra_host.bandwidth)
                              : 1.0 / c.intra_host.bandwidth;
  if (!crosses_hosts) m.tables = c.collectives;
  return m;
}

Result<std::array<int64_t, 2>> parse_mesh_shape(std::string_view text) {
  if (text.empty()) return invalid_argument("empty mesh shape", kShapeHint);
  size_t x = text.find('x');
  if (x == std::string_view::npos) {
    ALPA_ASSIGN_OR_RETURN(int64_t n, parse_extent(text, text));
    return std::array<int64_t, 2>{1, n};
  }
  std::string_view left = text.substr(0, x);
  std::string_view right = text.substr(x + 1);
  if (right.find('x') != std::string_view::npos)
    return invalid_argument(cat("bad mesh shape \"", text, "\": a mesh has at most 2 axes"),
                            kShapeHint);
  ALPA_ASSIGN_OR_RETURN(int64_t n0, parse_extent(text, left));
  ALPA_ASSIGN_OR_RETURN(int64_t n1, parse_extent(text, right));
  if (n0 * n1 > INT_MAX)
    return invalid_argument(cat("bad mesh shape \"", text, "\": ", n0 * n1, " devices is too many"),
                            kShapeHint);
  return std::array<int64_t, 2>{n0, n1};
}

std::vector<std::array<int64_t, 2>> logical_shapes(int64_t n) {
  std::vector<std::array<int64_t, 2>> small, large;  // n0 <= sqrt(n), n0 > sqrt(n)
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d != 0) continue;
    small.push_back({d, n / d});
    if (d != n / d) large.push_back({n / d, d});
  }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}

}  // namespace alpa
