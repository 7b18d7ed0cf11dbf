// The time a cross-mesh transfer plan (sharding/cross_mesh.h) takes on a cluster's links.
#pragma once

#include <cstdint>

#include "alpa/cluster/cluster.h"
#include "alpa/sharding/cross_mesh.h"

namespace alpa {

// Predicted seconds on `cluster`, where world rank == device id (CHECK: every rank is a device
// of the cluster). Each transfer between distinct ranks uses the intra-host link when both
// devices are on one host (it loads the sender's outgoing and the receiver's incoming link),
// else the inter-host link (it loads the sending host's NIC outgoing and the receiving host's
// NIC incoming; a NIC is shared by every transfer leaving or entering its host). Each link's
// time = bytes through it / its bandwidth + messages through it * its latency; the result is
// the maximum over links (all transfers run concurrently). Self-transfers cost 0.
double cross_mesh_seconds(const CrossMeshPlan& plan, int64_t elem_bytes, const Cluster& cluster);

}  // namespace alpa
