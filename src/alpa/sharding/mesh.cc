#include "alpa/sharding/mesh.h"

#include <charconv>
#include <climits>
#include <set>

#include "alpa/support/check.h"

namespace alpa {
namespace {

constexpr const char* kShapeHint =
    "write the mesh shape as N0xN1 with integers >= 1, e.g. \"2x4\", or a single N for 1xN";

Result<int64_t> parse_extent(std::string_view whole, std::string_view part) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
  if (part.empty())
    return invalid_argument(cat("bad mesh shape \"", whole, "\": an extent is missing"),
                            kShapeHint);
  if (ec == std::errc::invalid_argument || ptr != part.data() + part.size())
    return invalid_argument(
        cat("bad mesh shape \"", whole, "\": \"", part, "\" is not a positive integer"),
        kShapeHint);
  if (ec == std::errc::result_out_of_range || v > INT_MAX)
    return invalid_argument(cat("bad mesh shape \"", whole, "\": extent ", part, " is too large"),
                            kShapeHint);
  if (v < 1)
    return invalid_argument(cat("bad mesh shape \"", whole, "\": extents must be >= 1, got ", v),
                            kShapeHint);
  return v;
}

}  // namespace

MeshCoords MeshShape::coords(int64_t index) const {
  ALPA_CHECK(index >= 0 && index < size()) << "index " << index << " outside mesh " << to_string();
  return {index / n1, index % n1};
}

std::string MeshShape::to_string() const {
  return cat(n0, "x", n1);
}

Result<MeshShape> parse_mesh_shape(std::string_view text) {
  if (text.empty()) return invalid_argument("empty mesh shape", kShapeHint);
  size_t x = text.find('x');
  if (x == std::string_view::npos) {
    ALPA_ASSIGN_OR_RETURN(int64_t n, parse_extent(text, text));
    return MeshShape{1, n};
  }
  std::string_view left = text.substr(0, x);
  std::string_view right = text.substr(x + 1);
  if (right.find('x') != std::string_view::npos)
    return invalid_argument(cat("bad mesh shape \"", text, "\": a mesh has at most 2 axes"),
                            kShapeHint);
  ALPA_ASSIGN_OR_RETURN(int64_t n0, parse_extent(text, left));
  ALPA_ASSIGN_OR_RETURN(int64_t n1, parse_extent(text, right));
  if (n0 * n1 > INT_MAX)
    return invalid_argument(cat("bad mesh shape \"", text, "\": ", n0 * n1, " devices is too many"),
                            kShapeHint);
  return MeshShape{n0, n1};
}

std::vector<MeshShape> logical_shapes(int64_t n) {
  std::vector<MeshShape> small, large;  // n0 <= sqrt(n), n0 > sqrt(n)
  for (int64_t d = 1; d * d <= n; ++d) {
    if (n % d != 0) continue;
    small.push_back({d, n / d});
    if (d != n / d) large.push_back({n / d, d});
  }
  small.insert(small.end(), large.rbegin(), large.rend());
  return small;
}

int64_t axes_size(AxisSet axes, const MeshShape& mesh) {
  int64_t n = 1;
  if (axes & kAxis0) n *= mesh.n0;
  if (axes & kAxis1) n *= mesh.n1;
  return n;
}

std::string axes_to_string(AxisSet axes) {
  std::string s;
  if (axes & kAxis0) s += '0';
  if (axes & kAxis1) s += '1';
  return s;
}

std::vector<int64_t> axis_list(AxisSet axes) {
  std::vector<int64_t> v;
  if (axes & kAxis0) v.push_back(0);
  if (axes & kAxis1) v.push_back(1);
  return v;
}

AxisSet axes_of(std::span<const int64_t> axes) {
  AxisSet m = 0;
  for (int64_t a : axes) m |= axis_bit(a);
  return m;
}

PlacedMesh PlacedMesh::contiguous(const MeshShape& shape, int first) {
  PlacedMesh m;
  m.shape = shape;
  m.devices.resize(static_cast<size_t>(std::max<int64_t>(0, shape.size())));
  for (size_t i = 0; i < m.devices.size(); ++i) m.devices[i] = first + static_cast<int>(i);
  return m;
}

bool PlacedMesh::is_contiguous() const {
  for (size_t i = 1; i < devices.size(); ++i)
    if (devices[i] != devices[0] + static_cast<int>(i)) return false;
  return true;
}

int64_t PlacedMesh::index_of(int device) const {
  for (size_t i = 0; i < devices.size(); ++i)
    if (devices[i] == device) return static_cast<int64_t>(i);
  return -1;
}

MeshCoords PlacedMesh::coords_of(int device) const {
  const int64_t i = index_of(device);
  ALPA_CHECK(i >= 0) << "device " << device << " is not on mesh " << to_string();
  return shape.coords(i);
}

int PlacedMesh::device(int64_t i, int64_t j) const {
  ALPA_CHECK(i >= 0 && i < shape.n0 && j >= 0 && j < shape.n1)
      << "(" << i << ", " << j << ") outside mesh " << to_string();
  return devices[static_cast<size_t>(i * shape.n1 + j)];
}

std::string PlacedMesh::to_string() const {
  if (!devices.empty() && static_cast<int64_t>(devices.size()) == shape.size() && is_contiguous())
    return cat(shape.to_string(), "@", devices.front());
  std::string s = shape.to_string() + "{";
  for (size_t i = 0; i < devices.size(); ++i) s += cat(i ? "," : "", devices[i]);
  return s + "}";
}

Status PlacedMesh::validate() const {
  if (shape.n0 < 1 || shape.n1 < 1)
    return invalid_argument(cat("mesh ", shape.to_string(), ": extents must be >= 1"));
  if (static_cast<int64_t>(devices.size()) != shape.size())
    return invalid_argument(cat("mesh ", shape.to_string(), " lists ", devices.size(),
                                " devices; it needs ", shape.size()));
  std::set<int> seen;
  for (int d : devices) {
    if (d < 0) return invalid_argument(cat("mesh ", to_string(), ": device ", d, " is negative"));
    if (!seen.insert(d).second)
      return invalid_argument(cat("mesh ", to_string(), ": device ", d, " appears twice"));
  }
  return ok_status();
}

}  // namespace alpa
