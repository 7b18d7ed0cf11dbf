// Submeshes: the physical slices of an N-host x M-device cluster that pipeline stages run on
// (Alpa §3.3), the logical 2-D views tried on each (§3.4), and where the chosen slices go.
//
// A SubmeshShape (hosts, devices_per_host) is either (1, m) with m <= M — m devices of one host
// — or (n, M) — n whole consecutive hosts. Device ids are d = host * M + local index, as in
// cluster.h. With M a power of two, any list of the shapes from submesh_choices whose sizes
// sum to N*M can be placed (the paper's Appendix A), and place_submeshes finds the placement.
//
// It is not a cost model or a Mesh: it only names shapes and device ranges; mesh.h prices
// links, and the stage DP (stage_dp.h) chooses which shapes to use.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "alpa/sharding/mesh.h"
#include "alpa/support/status.h"

namespace alpa {

struct SubmeshShape {
  int64_t hosts = 1;
  int64_t devices_per_host = 1;

  int64_t size() const { return hosts * devices_per_host; }
  std::string to_string() const;  // "1x4", "2x8"

  friend bool operator==(const SubmeshShape&, const SubmeshShape&) = default;
};

// Alpa's "all" submesh space for `hosts` x `devices_per_host`, smallest first:
// (1,1), (1,2), (1,4), ..., (1,2^k <= M); then (1,M) if M is not a power of two; then
// (2,M), (3,M), ..., (N,M). Both arguments must be >= 1 (checked).
std::vector<SubmeshShape> submesh_choices(int64_t hosts, int64_t devices_per_host);

// A logical view of a submesh for the intra-op pass.
struct LogicalMeshChoice {
  static constexpr int kUnforced = -2;  // the batch dim may go to any mesh axis (or none)

  MeshShape shape{1, 1};
  int batch_axis = kUnforced;  // 0: batch forced onto mesh axis 0 (force_batch_dim_to_mesh_dim)

  std::string to_string() const;  // "2x4 batch->0", "8x1 auto"
  friend bool operator==(const LogicalMeshChoice&, const LogicalMeshChoice&) = default;
};

// Alpa's "single_node_model_parallel" space for a submesh of D = s.size() devices: for every
// mp in [1, devices_per_host] with D % mp == 0 and batch % (D / mp) == 0, the view (D/mp, mp)
// with the batch forced to axis 0 (ascending mp); then the unforced (D, 1). Duplicates are
// dropped. Never empty for D >= 1: the unforced (D, 1) is always there.
std::vector<LogicalMeshChoice> logical_mesh_choices(const SubmeshShape& s, int64_t devices_per_host,
                                                    int64_t batch);

// Where each stage's submesh goes: returns, in stage order, the first device id of each
// submesh. First in pipeline order, so that neighbouring stages share a host where sizes allow
// (a boundary between hosts crosses the network; one inside a host uses its faster links):
// each stage goes on the host the previous stage ended on if it has room, else on the next
// host with room, a whole-host mesh (n, M) on the next n empty hosts. If that leaves a stage
// without room, as Alpa's get_sliced_virtual_submeshes: whole-host meshes on consecutive
// hosts first (largest first, ties in stage order), then the (1, m) meshes packed
// first-fit-decreasing into the remaining hosts, in ascending device order. A (1, m) submesh
// occupies devices first..first+m-1 of one host; an (n, M) submesh occupies hosts
// first/M .. first/M+n-1 entirely.
// Errors (kInvalidArgument): a shape that is neither (1, m <= M) nor (n <= N, M); sizes that do
// not sum to N*M; a packing that first-fit-decreasing cannot complete.
Result<std::vector<int>> place_submeshes(std::span<const SubmeshShape> stages, int64_t hosts,
                                         int64_t devices_per_host);

// OK if `s` is a shape a cluster of `hosts` x `devices_per_host` can hold as one submesh:
// (1, m) with 1 <= m <= M, or (n, M) with 1 <= n <= N.
Status check_submesh_shape(const SubmeshShape& s, int64_t hosts, int64_t devices_per_host);

}  // namespace alpa
