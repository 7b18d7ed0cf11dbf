#include "alpa/cost/transfer_cost.h"

#include <algorithm>
#include <map>

#include "alpa/support/check.h"

namespace alpa {

double cross_mesh_seconds(const CrossMeshPlan& plan, int64_t elem_bytes, const Cluster& cluster) {
  struct Link {
    double bytes = 0;
    int64_t messages = 0;
  };
  // Intra-host: each device's outgoing and incoming link; inter-host: each host's NIC.
  std::map<int, Link> dev_out, dev_in, nic_out, nic_in;
  const int per_host = cluster.devices_per_host;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.src_rank == t.dst_rank) continue;
    for (int r : {t.src_rank, t.dst_rank})
      ALPA_CHECK(r >= 0 && r < cluster.num_devices())
          << "cross_mesh_seconds: rank " << r << " is not a device of " << cluster.name << " ("
          << cluster.num_devices() << " devices)";
    const double b = static_cast<double>(t.box.elements() * elem_bytes);
    const int hs = t.src_rank / per_host, hd = t.dst_rank / per_host;
    Link& out = hs == hd ? dev_out[t.src_rank] : nic_out[hs];
    Link& in = hs == hd ? dev_in[t.dst_rank] : nic_in[hd];
    out.bytes += b;
    in.bytes += b;
    ++out.messages;
    ++in.messages;
  }
  double worst = 0;
  auto visit = [&](const std::map<int, Link>& links, const LinkSpec& spec) {
    for (const auto& [id, l] : links)
      worst = std::max(worst,
                       l.bytes / spec.bandwidth + static_cast<double>(l.messages) * spec.latency);
  };
  visit(dev_out, cluster.intra_host);
  visit(dev_in, cluster.intra_host);
  visit(nic_out, cluster.inter_host);
  visit(nic_in, cluster.inter_host);
  return worst;
}

}  // namespace alpa
