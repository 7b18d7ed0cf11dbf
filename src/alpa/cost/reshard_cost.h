// The time of a resharding on a mesh: the steps of plan_reshard (sharding/reshard.h) priced
// by the collective cost model (collective.h); local steps (slices, making a partial sum) cost
// their memory traffic.
#pragma once

#include <vector>

#include "alpa/cost/mesh_links.h"
#include "alpa/sharding/reshard.h"

namespace alpa {

// Seconds the steps take on `mesh` for a tensor of `shape` and `dtype` (alpha-beta model of
// cost/collective.h). Local steps (slices, making a partial sum; consecutive ones are one pass)
// cost their memory traffic, the part kept read and written (2x its bytes), at
// `memory_bandwidth` bytes/s; 0: nothing.
double reshard_time(const std::vector<ReshardStep>& steps, const ShardingSpec& from,
                    const Shape& shape, DType dtype, const MeshLinks& mesh,
                    double memory_bandwidth = 0);

}  // namespace alpa
