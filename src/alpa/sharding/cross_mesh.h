// Cross-mesh resharding (Alpa §4.5): moving a tensor produced on mesh A with layout σA to mesh
// B with layout σB, where A and B are (usually disjoint) sets of world ranks, each viewed as a
// logical n0 x n1 mesh, possibly of different shapes. This is how pipeline stages hand
// activations and gradients to each other.
//
// The plan is plain data (CrossMeshPlan): a list of point-to-point transfers, each one box of
// the global tensor (global element coordinates) sent from one source rank to one destination
// rank. plan_cross_mesh builds it:
//   - receive_spec: what each destination device holds after the transfers. It is σB, or, under
//     the local all-gather optimisation (paper Fig. 6c), σB with every unused mesh axis of
//     extent > 1 added as a split. Then each byte crosses between the meshes once, and mesh B
//     restores σB with all-gathers only (plan_reshard(receive_spec, σB) is all-gathers; the
//     caller runs it over B's fast local links).
//   - for every destination device (by rank) and every source block intersecting the box it
//     needs (by offset), one transfer of the intersection from one of the source replicas that
//     hold that block: the destination itself when it is one of them (a local copy, see
//     CrossMeshOptions::prefer_self), otherwise the replica with the fewest bytes assigned so
//     far over the whole plan, ties to the lowest rank (Alpa's "normal" load balance).
//
// Invariants of a plan from plan_cross_mesh: the boxes of one destination rank tile its block
// under receive_spec exactly once; each box lies inside the block its source rank holds under
// src_spec; transfers are ordered by (dst rank, box offset).
//
// The plan is data for both sides of execution: the runtime carries it out (runtime/transfer.h:
// send_cross_mesh / recv_cross_mesh) and the cost model prices it (cost/transfer_cost.h).
//
// It is not: a broadcast-based resharder (MLSys'23), a scheduler that orders or overlaps
// transfers, or host-aware (Alpa skips the local all-gather rewrite when the restoring
// all-gather would cross hosts; here the caller decides with CrossMeshOptions). Partial sums
// must be resolved on mesh A before sending.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "alpa/sharding/mesh.h"
#include "alpa/sharding/sharding_spec.h"
#include "alpa/support/status.h"

namespace alpa {

// A box of a tensor in global element coordinates: [offset[d], offset[d] + extent[d]) per dim.
struct Box {
  std::vector<int64_t> offset, extent;

  int64_t elements() const;
  // Whether `inner` lies inside this box (same rank).
  bool contains(const Box& inner) const;
  // "[0:4,2:6]" (begin:end per dim); a rank-0 box is "[]".
  std::string to_string() const;

  friend bool operator==(const Box&, const Box&) = default;
};

struct CrossMeshTransfer {
  int src_rank = 0;
  int dst_rank = 0;
  Box box;

  friend bool operator==(const CrossMeshTransfer&, const CrossMeshTransfer&) = default;
};

struct CrossMeshOptions {
  // Receive a fully split layout and let mesh B restore dst_spec with all-gathers (Alpa's
  // use_local_allgather): each byte crosses between the meshes once.
  bool local_all_gather = true;
  // When a destination rank itself holds the source block (overlapping placements), take it
  // from itself (a local copy that uses no link) instead of load-balancing over the replicas.
  bool prefer_self = true;
};

struct CrossMeshPlan {
  Shape shape;                      // global shape
  PlacedMesh src, dst;              // meshes on world ranks
  ShardingSpec src_spec, dst_spec;  // as given
  // What each destination device holds after the transfers: dst_spec, or under the local
  // all-gather optimisation a more finely split layout whose restoring reshard
  // (receive_spec -> dst_spec on mesh B) is all-gathers only.
  ShardingSpec receive_spec;
  std::vector<CrossMeshTransfer> transfers;  // ordered by (dst rank, box offset)

  // Bytes that travel over links: transfers between distinct ranks (self-copies excluded).
  int64_t bytes_moved(int64_t elem_bytes) const;
  // Bytes that `rank` sends to other ranks.
  int64_t bytes_sent_by(int rank, int64_t elem_bytes) const;

  friend bool operator==(const CrossMeshPlan&, const CrossMeshPlan&) = default;
};

// Plans the transfers (see the header comment). Errors (kInvalidArgument, with a hint): spec
// rank != shape rank; partial sums in src_spec or dst_spec ("resolve partial sums before
// sending"); a spec invalid for its mesh (ShardingSpec::validate); a placement whose extents
// are < 1, whose rank count is not n0*n1, or whose ranks are negative or repeated. Source and
// destination placements may overlap or be identical.
Result<CrossMeshPlan> plan_cross_mesh(const Shape& shape, const PlacedMesh& src,
                                      const ShardingSpec& src_spec, const PlacedMesh& dst,
                                      const ShardingSpec& dst_spec,
                                      const CrossMeshOptions& options = {});

// The layout a destination receives under the local all-gather optimisation: `dst_spec` with
// each mesh axis of extent > 1 that it leaves unused added as a split (axis 0 first) on the dim
// with the largest local extent (lowest dim on ties) where the split divides evenly and the
// ShardingSpec invariants hold (axis 1 may join a dim split over axis 0, giving S01; axis 0 may
// not join a dim split over axis 1). An axis no dim can take stays replicated. Returns dst_spec
// unchanged when nothing is added. Requires a valid dst_spec without partial sums.
ShardingSpec local_all_gather_spec(const ShardingSpec& dst_spec, const Shape& shape,
                                   const MeshShape& mesh);

// Checks a plan read from elsewhere (a program file): placements and specs as plan_cross_mesh
// requires (receive_spec valid on the destination mesh), every box inside
// the block its sender holds, and every destination block tiled exactly once. Errors say which
// transfer or block is wrong.
Status validate_cross_mesh_plan(const CrossMeshPlan& plan);

// The block the device at position `index` of `mesh` holds of a tensor of `shape` under
// `spec` (canonical for the mesh), in global coordinates.
Box block_box(const ShardingSpec& spec, const Shape& shape, const PlacedMesh& mesh, int64_t index);

// The intersection of two boxes of one rank; false if it is empty.
bool intersect(const Box& a, const Box& b, Box* out);

// A readable summary: the header line (shape, specs, meshes, counts and bytes in elements)
// and one line per transfer "src -> dst [box]".
std::string to_string(const CrossMeshPlan& plan);

}  // namespace alpa
