// Meshes as the sharding vocabulary names them: a logical 2-D mesh shape, coordinates on it,
// sets of mesh axes, and a mesh placed on devices.
//
// - MeshShape (n0, n1): the extents of a logical mesh; device index i*n1 + j sits at (i, j).
//   Text form "2x4" (parse: "2x4", or "8" for 1x8).
// - AxisSet: a bitmask of mesh axes (kAxis0, kAxis1; kBothAxes is the flattened mesh, axis 0
//   major). Layouts (sharding_spec.h) and collectives name their axes with it.
// - PlacedMesh: a logical mesh on concrete devices (world ranks): devices[i*n1 + j] is the
//   device at (i, j). Every place that means "these devices as an n0 x n1 mesh" uses it: a
//   stage of a pipeline, the mesh of a plan, the source and destination of a transfer.
//
// Not a cost model (cost/mesh_links.h prices a placed mesh's links on a cluster) and not a
// communicator.
#pragma once

#include <array>
#include <compare>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

// Coordinates (i, j) of a device on a logical mesh.
using MeshCoords = std::array<int64_t, 2>;

// The most devices a mesh, plan or program spans: planning searches and every runtime
// structure stay proportionate (the paper's largest cluster is 64 GPUs).
inline constexpr int64_t kMaxDevices = 4096;

struct MeshShape {
  int64_t n0 = 1, n1 = 1;

  constexpr MeshShape() = default;
  constexpr MeshShape(int64_t a, int64_t b) : n0(a), n1(b) {}

  // Extent of axis 0 or 1.
  constexpr int64_t operator[](size_t axis) const { return axis == 0 ? n0 : n1; }
  constexpr int64_t& operator[](size_t axis) { return axis == 0 ? n0 : n1; }
  constexpr int64_t size() const { return n0 * n1; }
  // (index / n1, index % n1); index in [0, size()) (CHECK).
  MeshCoords coords(int64_t index) const;
  int64_t index(const MeshCoords& c) const { return c[0] * n1 + c[1]; }
  std::string to_string() const;  // "2x4"

  friend constexpr auto operator<=>(const MeshShape&, const MeshShape&) = default;
};

// "2x4" -> (2, 4); "8" -> (1, 8). Extents are integers >= 1; errors explain the format.
Result<MeshShape> parse_mesh_shape(std::string_view text);

// All logical shapes (n0, n1) with n0*n1 == n, n0 ascending (empty for n < 1). For planners
// that try several views of one physical mesh.
std::vector<MeshShape> logical_shapes(int64_t n);

// A set of mesh axes (bitmask).
using AxisSet = uint8_t;
inline constexpr AxisSet kAxis0 = 1;
inline constexpr AxisSet kAxis1 = 2;
inline constexpr AxisSet kBothAxes = 3;

constexpr AxisSet axis_bit(int64_t axis) {
  return axis == 0 ? kAxis0 : kAxis1;
}
// Devices a set of axes spans: the product of the extents of its axes.
int64_t axes_size(AxisSet axes, const MeshShape& mesh);
// "0", "1", "01"
std::string axes_to_string(AxisSet axes);
// The axes in ascending order (axis 0 major): {}, {0}, {1} or {0, 1}.
std::vector<int64_t> axis_list(AxisSet axes);
// The set of a list of axes (0 or 1 each).
AxisSet axes_of(std::span<const int64_t> axes);

struct PlacedMesh {
  MeshShape shape;
  std::vector<int> devices;  // [n0*n1] device ids (world ranks), row-major

  // The mesh on devices first .. first + n0*n1 - 1.
  static PlacedMesh contiguous(const MeshShape& shape, int first);

  int64_t size() const { return shape.size(); }
  int first_device() const { return devices.empty() ? 0 : devices.front(); }
  // Whether devices are first, first+1, ... in order.
  bool is_contiguous() const;
  // Position of `device` in `devices`, or -1.
  int64_t index_of(int device) const;
  bool contains(int device) const { return index_of(device) >= 0; }
  // Coordinates of a device of this mesh (CHECK: it is one).
  MeshCoords coords_of(int device) const;
  // The device at (i, j) (CHECK: inside the mesh).
  int device(int64_t i, int64_t j) const;
  // "2x2@4" when contiguous from device 4, else "2x2{0,1,4,5}".
  std::string to_string() const;
  // Extents >= 1, one device per position, ids >= 0 and distinct; errors say which.
  Status validate() const;

  friend bool operator==(const PlacedMesh&, const PlacedMesh&) = default;
};

}  // namespace alpa
