// Collective communication cost: the alpha-beta model of ring collectives over mesh axes
// (Alpa §2.2, in seconds, without Alpa's unit-less rounding and tie-breaking constants).
//
// For n devices taking part and B bytes (see collective_time for what B is per primitive):
//   all-reduce      alpha + beta * 2(n-1)/n * B
//   all-gather      alpha + beta *  (n-1)/n * B
//   reduce-scatter  alpha + beta *  (n-1)/n * B
//   all-to-all      alpha + beta *  (n-1)/n * B
// n == 1 costs 0. Over both axes (each of extent > 1) the group is the flattened mesh (axis 0
// major): one ring over all devices, priced with MeshLinks::alpha_flat and beta_flat (a ring
// crosses each host's NIC with one flow, unlike the concurrent groups of a single axis).
//
// It is not a simulator and has no profiled tables yet; callers add tie-breakers if they need
// them.
#pragma once

#include <cstdint>
#include <string_view>

#include "alpa/cost/mesh_links.h"

namespace alpa {

enum class Collective { kAllReduce, kAllGather, kReduceScatter, kAllToAll };

inline constexpr int kNumCollectives = 4;

// "all-reduce", "all-gather", "reduce-scatter", "all-to-all".
std::string_view collective_name(Collective c);

// Time in seconds of collective `c` over the mesh axes in `axes` (bitmask: 1 = axis 0,
// 2 = axis 1, 3 = both, flattened with axis 0 major). `bytes` (>= 0): all-reduce: the tensor's
// bytes on each device; all-gather: the gathered (output) bytes per device; reduce-scatter: the
// input bytes per device; all-to-all: the bytes each device holds. n = product of the axis
// sizes; n == 1 -> 0.
double collective_time(const MeshLinks& m, Collective c, AxisSet axes, double bytes);

}  // namespace alpa
