#include "alpa/sharding/sharding_spec.h"

#include "alpa/support/check.h"

namespace alpa {

uint8_t SpecDims::checked(size_t n) {
  ALPA_CHECK(n <= kMaxRank) << "a sharding spec of rank " << n << " (at most " << kMaxRank
                            << " dims are supported)";
  return static_cast<uint8_t>(n);
}

AxisSet ShardingSpec::split_axes() const {
  uint8_t a = 0;
  for (uint8_t d : dims) a |= d;
  return a;
}

AxisSet ShardingSpec::used_axes() const {
  return static_cast<uint8_t>(split_axes() | partial);
}

int64_t ShardingSpec::dim_of_axis(int axis) const {
  const AxisSet bit = axis_bit(axis);
  for (int64_t d = 0; d < rank(); ++d)
    if (dims[d] & bit) return d;
  return -1;
}

Shape ShardingSpec::local_shape(const Shape& shape, const MeshShape& mesh) const {
  Shape local = shape;
  for (size_t d = 0; d < dims.size() && d < local.size(); ++d) local[d] /= axes_size(dims[d], mesh);
  return local;
}

Status ShardingSpec::validate(const Shape& shape, const MeshShape& mesh) const {
  if (static_cast<int64_t>(shape.size()) != rank())
    return invalid_argument(cat("sharding ", to_string(), " has ", rank(),
                                " dim(s) but the tensor is ", shape_to_string(shape)));
  uint8_t seen = partial;
  for (size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] > kBothAxes)
      return invalid_argument(cat("sharding ", to_string(), ": bad axes on dim ", d));
    if (seen & dims[d])
      return invalid_argument(cat("sharding ", to_string(), " uses a mesh axis twice"),
                              "each mesh axis splits at most one dim (or marks a partial sum)");
    seen |= dims[d];
    const int64_t n = axes_size(dims[d], mesh);
    if (shape[d] % n != 0)
      return invalid_argument(cat("sharding ", to_string(), " splits dim ", d, " of extent ",
                                  shape[d], " into ", n, " parts, which does not divide it"),
                              "choose a mesh or a size whose extents divide evenly");
  }
  if (partial > kBothAxes) return invalid_argument(cat("sharding ", to_string(), ": bad partial"));
  return ok_status();
}

ShardingSpec ShardingSpec::canonical(const MeshShape& mesh) const {
  uint8_t keep = 0;
  if (mesh[0] > 1) keep |= kAxis0;
  if (mesh[1] > 1) keep |= kAxis1;
  ShardingSpec s = *this;
  for (uint8_t& d : s.dims) d &= keep;
  s.partial &= keep;
  return s;
}

std::string ShardingSpec::to_string() const {
  std::string s;
  if (dims.empty()) s = "()";
  for (uint8_t d : dims) s += d == 0 ? std::string("R") : "S" + axes_to_string(d);
  if (partial) s += "+P" + axes_to_string(partial);
  return s;
}

Result<ShardingSpec> ShardingSpec::parse(std::string_view text) {
  ShardingSpec spec;
  const std::string_view original = text;
  auto bad = [&](const std::string& why) {
    return parse_error(cat("invalid sharding '", original, "': ", why),
                       "write one token per dim (R, S0, S1, S01), optionally +P0, +P1 or +P01; "
                       "a scalar is ()");
  };
  auto read_axes = [&](uint8_t* axes) -> bool {
    *axes = 0;
    size_t i = 0;
    while (i < text.size() && (text[i] == '0' || text[i] == '1')) {
      const uint8_t bit = text[i] == '0' ? kAxis0 : kAxis1;
      if ((*axes & bit) || (i == 1 && text[0] == '1')) return false;  // repeated, or "10"
      *axes |= bit;
      ++i;
    }
    text.remove_prefix(i);
    return *axes != 0;
  };
  if (text.substr(0, 2) == "()") {
    text.remove_prefix(2);
  } else {
    while (!text.empty() && text[0] != '+') {
      if (spec.dims.size() == SpecDims::kMaxRank && (text[0] == 'R' || text[0] == 'S'))
        return bad(cat("more than ", SpecDims::kMaxRank, " dims (the most a tensor has here)"));
      if (text[0] == 'R') {
        spec.dims.push_back(0);
        text.remove_prefix(1);
      } else if (text[0] == 'S') {
        text.remove_prefix(1);
        uint8_t axes;
        if (!read_axes(&axes)) return bad("S must be followed by 0, 1 or 01");
        spec.dims.push_back(axes);
      } else {
        return bad(cat("unexpected '", text[0], "'"));
      }
    }
    if (spec.dims.empty()) return bad("no dims");
  }
  if (!text.empty()) {
    if (text.substr(0, 2) != "+P") return bad("expected +P after the dims");
    text.remove_prefix(2);
    if (!read_axes(&spec.partial)) return bad("+P must be followed by 0, 1 or 01");
    if (!text.empty()) return bad(cat("trailing '", text, "'"));
  }
  uint8_t seen = spec.partial;
  for (uint8_t d : spec.dims) {
    if (seen & d) return bad("a mesh axis is used twice");
    seen |= d;
  }
  return spec;
}

std::vector<int64_t> shard_offsets(const ShardingSpec& spec, const Shape& shape,
                                   const MeshShape& mesh, const MeshCoords& coords) {
  std::vector<int64_t> off(shape.size(), 0);
  for (size_t d = 0; d < shape.size(); ++d) {
    const uint8_t axes = spec.dims[d];
    if (axes == 0) continue;
    int64_t block = 0;
    if (axes == kAxis0) block = coords[0];
    if (axes == kAxis1) block = coords[1];
    if (axes == kBothAxes) block = coords[0] * mesh[1] + coords[1];
    off[d] = block * (shape[d] / axes_size(axes, mesh));
  }
  return off;
}

double local_bytes(const TensorType& t, const ShardingSpec& s, const MeshShape& mesh) {
  return static_cast<double>(num_elements(s.local_shape(t.shape, mesh))) *
         static_cast<double>(dtype_bytes(t.dtype));
}

}  // namespace alpa
