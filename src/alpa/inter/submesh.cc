#include "alpa/inter/submesh.h"

#include <algorithm>
#include <numeric>

namespace alpa {

std::string SubmeshShape::to_string() const {
  return cat(hosts, "x", devices_per_host);
}

std::string LogicalMeshChoice::to_string() const {
  return cat(shape[0], "x", shape[1], batch_axis == kUnforced ? " auto" : " batch->",
             batch_axis == kUnforced ? std::string() : std::to_string(batch_axis));
}

std::vector<SubmeshShape> submesh_choices(int64_t hosts, int64_t devices_per_host) {
  ALPA_CHECK(hosts >= 1 && devices_per_host >= 1)
      << "submesh_choices(" << hosts << ", " << devices_per_host << ")";
  std::vector<SubmeshShape> out;
  int64_t m = 1;
  for (; m <= devices_per_host; m *= 2) out.push_back({1, m});
  if (out.back().devices_per_host != devices_per_host) out.push_back({1, devices_per_host});
  for (int64_t n = 2; n <= hosts; ++n) out.push_back({n, devices_per_host});
  return out;
}

std::vector<LogicalMeshChoice> logical_mesh_choices(const SubmeshShape& s, int64_t devices_per_host,
                                                    int64_t batch) {
  const int64_t d = s.size();
  ALPA_CHECK(d >= 1 && devices_per_host >= 1) << "logical_mesh_choices on " << s.to_string();
  std::vector<LogicalMeshChoice> out;
  auto add = [&](LogicalMeshChoice c) {
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  for (int64_t mp = 1; mp <= devices_per_host; ++mp) {
    if (d % mp != 0) continue;
    const int64_t dp = d / mp;
    if (batch > 0 && batch % dp == 0) add({{dp, mp}, 0});
  }
  add({{d, 1}, LogicalMeshChoice::kUnforced});
  return out;
}

Status check_submesh_shape(const SubmeshShape& s, int64_t hosts, int64_t devices_per_host) {
  const bool in_host =
      s.hosts == 1 && s.devices_per_host >= 1 && s.devices_per_host <= devices_per_host;
  const bool whole_hosts =
      s.devices_per_host == devices_per_host && s.hosts >= 1 && s.hosts <= hosts;
  if (in_host || whole_hosts) return ok_status();
  return invalid_argument(
      cat("submesh ", s.to_string(), " does not fit a ", hosts, "x", devices_per_host, " cluster"),
      cat("a submesh is (1, m) with m <= ", devices_per_host, " devices of one host, or (n, ",
          devices_per_host, ") with n <= ", hosts, " whole hosts"));
}

namespace {

// Stages in pipeline order, each on the host the previous one ended on while it has room, else
// the next host with room (then an earlier one); whole-host meshes on the first run of empty
// hosts after it. Neighbouring stages then share a host wherever sizes allow, so few stage
// boundaries cross the network. Empty when a stage finds no room (first-fit-decreasing may).
std::vector<int> place_in_order(std::span<const SubmeshShape> stages, int64_t hosts,
                                int64_t devices_per_host) {
  std::vector<int64_t> used(static_cast<size_t>(hosts), 0);
  std::vector<int> first(stages.size(), -1);
  int64_t cur = 0;  // host of the previous stage's last device
  for (size_t i = 0; i < stages.size(); ++i) {
    const SubmeshShape& s = stages[i];
    const bool whole = s.devices_per_host == devices_per_host;
    const int64_t need = whole ? s.hosts : 1;
    int64_t found = -1;
    for (int64_t k = 0; k < hosts && found < 0; ++k) {
      const int64_t h = (cur + k) % hosts;
      if (h + need > hosts) continue;
      bool room = true;
      for (int64_t x = h; x < h + need && room; ++x)
        room = whole ? used[x] == 0 : used[x] + s.devices_per_host <= devices_per_host;
      if (room) found = h;
    }
    if (found < 0) return {};
    first[i] = static_cast<int>(found * devices_per_host + (whole ? 0 : used[found]));
    for (int64_t x = found; x < found + need; ++x)
      used[x] += whole ? devices_per_host : s.devices_per_host;
    cur = found + need - 1;
  }
  return first;
}

}  // namespace

Result<std::vector<int>> place_submeshes(std::span<const SubmeshShape> stages, int64_t hosts,
                                         int64_t devices_per_host) {
  if (hosts < 1 || devices_per_host < 1)
    return invalid_argument(cat("cluster ", hosts, "x", devices_per_host, " has no devices"));
  int64_t total = 0;
  for (size_t i = 0; i < stages.size(); ++i) {
    Status st = check_submesh_shape(stages[i], hosts, devices_per_host);
    if (!st.ok()) return st.with_context(cat("stage ", i));
    total += stages[i].size();
  }
  if (total != hosts * devices_per_host) {
    std::string shapes;
    for (const SubmeshShape& s : stages) shapes += cat(shapes.empty() ? "" : " ", s.to_string());
    return invalid_argument(cat("submeshes [", shapes, "] hold ", total,
                                " devices, the cluster has ", hosts * devices_per_host),
                            "the stages' submeshes must use every device exactly once");
  }
  if (std::vector<int> in_order = place_in_order(stages, hosts, devices_per_host);
      !in_order.empty())
    return in_order;
  // Largest first; ties in stage order (stable).
  std::vector<size_t> order(stages.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return stages[a].size() > stages[b].size(); });
  std::vector<int> first(stages.size(), -1);
  int64_t next_host = 0;
  for (size_t i : order) {
    const SubmeshShape& s = stages[i];
    if (s.devices_per_host != devices_per_host) continue;
    ALPA_CHECK(next_host + s.hosts <= hosts) << "whole-host meshes exceed the device count";
    first[i] = static_cast<int>(next_host * devices_per_host);
    next_host += s.hosts;
  }
  // First-fit-decreasing of the in-host meshes over the remaining hosts.
  std::vector<int64_t> used(static_cast<size_t>(hosts - next_host), 0);
  for (size_t i : order) {
    const SubmeshShape& s = stages[i];
    if (s.devices_per_host == devices_per_host) continue;
    bool placed = false;
    for (size_t h = 0; h < used.size() && !placed; ++h) {
      if (used[h] + s.devices_per_host > devices_per_host) continue;
      first[i] =
          static_cast<int>((next_host + static_cast<int64_t>(h)) * devices_per_host + used[h]);
      used[h] += s.devices_per_host;
      placed = true;
    }
    if (!placed)
      return invalid_argument(
          cat("cannot pack submesh ", s.to_string(), " of stage ", i, " into one host of the ",
              hosts - next_host, " hosts left after the whole-host submeshes"),
          "use submeshes whose per-host sizes divide the devices per host (powers of two)");
  }
  return first;
}

}  // namespace alpa
