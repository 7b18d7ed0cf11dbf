// DeviceContext: where one copy of a per-device (SPMD) program runs: its communicator and its
// coordinates in the logical 2-D device mesh. Collective kernels derive their groups from it.
//
// Invariants: mesh = [n0, n1] with n0, n1 >= 1; 0 <= coords[a] < mesh[a]; the device at logical
// coordinates (i, j) is communicator rank i * n1 + j, so comm->rank() == rank().
//
// Not an allocator or a stream: this runtime's devices are CPU threads (SpmdRunner); a GPU
// backend would add its stream and memory here.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "alpa/ir/attrs.h"
#include "alpa/runtime/communicator.h"
#include "alpa/runtime/world.h"
#include "alpa/sharding/mesh.h"

namespace alpa {

struct DeviceContext {
  Communicator* comm = nullptr;  // may be null when every collective's group has one member
  MeshShape mesh{1, 1};
  MeshCoords coords{0, 0};

  int rank() const { return static_cast<int>(coords[0] * mesh[1] + coords[1]); }
};

// The group of a collective as the device at `coords` sees it.
struct CollectiveGroup {
  std::vector<int> ranks;  // in position order
  int position = 0;        // the device's index in `ranks`
};

// The group of the device at `coords` for a collective with `attrs` (CollectiveAttrs in
// attrs.h): the devices sharing its coordinates on the axes not in attrs.axes, ordered by
// their coordinates along attrs.axes, major axis first. attrs must satisfy the shape rule
// (valid mesh and axes) and coords must lie in attrs.mesh (CHECK).
CollectiveGroup collective_group(const CollectiveAttrs& attrs, MeshCoords coords);

// Prepares the world's communicators for every mesh-axis group of these meshes (axis 0, axis 1,
// both; in world ranks, ordered as collective_group orders them). Process-level: every process
// calls it with the same meshes, which must not overlap.
Status prepare_mesh_groups(World& world, const std::vector<PlacedMesh>& meshes);

}  // namespace alpa
