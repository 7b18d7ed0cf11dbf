// Resharding: the one place that decides which collectives turn one sharding into another.
//
// plan_reshard(from, to) returns the steps that transform a tensor laid out as `from` into the
// layout `to`, each step one collective (or a local slice) over one or both mesh axes:
//   1. partial sums are resolved: reduce-scatter onto a dim `to` splits on that axis when the
//      split can be added there, otherwise all-reduce (both axes at once when both need it);
//   2. splits `to` does not have are removed, minor axis first: an all-to-all when `to` wants
//      that axis on another dim (the split moves), otherwise an all-gather;
//   3. partial sums `to` has and `from` lacks are made locally: one device of each group keeps
//      the value, the others hold zeros (no communication);
//   4. splits `to` adds are taken by a local slice (no communication).
// A dim split over both axes is S01 (axis 0 major), so axes are added as the minor axis and
// removed minor first. The auto-sharding
// cost model and SPMD lowering both use this decomposition, so a plan's predicted
// communication is exactly what runs.
//
// Examples (mesh n0 x n1, M = tensor bytes): RR -> S0S1: two slices, free;
// S0R -> RR: all-gather(axis 0); S0S1 -> S0R: all-gather(axis 1);
// S0R -> RS0: all-to-all(axis 0); RR+P1 -> S1R: reduce-scatter(axis 1, dim 0).
#pragma once

#include <string>
#include <vector>

#include "alpa/sharding/sharding_spec.h"

namespace alpa {

enum class ReshardKind : uint8_t {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kAllToAll,
  kMakePartial,  // local: keep the value on group position 0, zeros elsewhere
  kSlice,        // local: keep this device's block
};

std::string_view reshard_kind_name(ReshardKind k);

struct ReshardStep {
  ReshardKind kind = ReshardKind::kSlice;
  AxisSet axes = 0;       // mesh axes of the collective
  int64_t dim = -1;       // gather/scatter/slice dim; all-to-all: the dim that becomes split
  int64_t from_dim = -1;  // all-to-all: the dim that stops being split (gathered)
  ShardingSpec after;     // the layout after this step
  std::string to_string() const;  // "all-gather(axis 1, dim 0)"
};

Result<std::vector<ReshardStep>> plan_reshard(const ShardingSpec& from, const ShardingSpec& to,
                                              const Shape& shape, const MeshShape& mesh);

}  // namespace alpa
