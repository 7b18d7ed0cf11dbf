// ShardingSpec: how one tensor is laid out over a logical 2-D device mesh (n0, n1).
//
// For each tensor dim: the mesh axes it is split over, as a bitmask (0: replicated, 1: axis 0,
// 2: axis 1, 3: both, flattened with axis 0 major: block index c0 * n1 + c1). Plus the mesh
// axes over which the value is a *partial sum*: the true value is the sum of the devices'
// local values along those axes.
//
// Invariants (validate): one entry per tensor dim; each mesh axis is used at most once across
// the dims and the partial set; split extents divide evenly. Exactly one encoding per layout.
//
// Text form (the paper's notation): one token per dim, R / S0 / S1 / S01, then "+P0", "+P1"
// or "+P01" for partial sums: "S0R", "RS1", "S01R", "RR+P1". A rank-0 tensor prints as "()"
// ("()+P0" when partial).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/types.h"
#include "alpa/sharding/mesh.h"
#include "alpa/support/status.h"

namespace alpa {

// Per tensor dim, the mesh axes it is split over, stored inline: the planner builds millions
// of specs, and a heap allocation each dominated its time.
class SpecDims {
 public:
  static constexpr size_t kMaxRank = 8;
  SpecDims() = default;
  SpecDims(size_t n, uint8_t value) : size_(checked(n)) {
    v_.fill(0), std::fill_n(v_.begin(), n, value);
  }
  SpecDims(std::initializer_list<uint8_t> init) : size_(checked(init.size())) {
    v_.fill(0);
    std::copy(init.begin(), init.end(), v_.begin());
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  uint8_t& operator[](size_t i) { return v_[i]; }
  uint8_t operator[](size_t i) const { return v_[i]; }
  uint8_t* begin() { return v_.data(); }
  uint8_t* end() { return v_.data() + size_; }
  const uint8_t* begin() const { return v_.data(); }
  const uint8_t* end() const { return v_.data() + size_; }
  uint8_t back() const { return v_[size_ - 1]; }
  void push_back(uint8_t x) { v_[checked(size_ + 1) - 1] = x, ++size_; }
  friend bool operator==(const SpecDims& a, const SpecDims& b) {
    return a.size_ == b.size_ && a.v_ == b.v_;  // unused entries stay 0
  }

 private:
  static uint8_t checked(size_t n);  // aborts beyond kMaxRank
  std::array<uint8_t, kMaxRank> v_{};
  uint8_t size_ = 0;
};

struct ShardingSpec {
  SpecDims dims;        // per tensor dim: the mesh axes it is split over
  AxisSet partial = 0;  // the mesh axes over which the value is a partial sum

  static ShardingSpec replicated(int64_t rank) {
    return {SpecDims(static_cast<size_t>(rank), 0), 0};
  }

  int64_t rank() const { return static_cast<int64_t>(dims.size()); }
  // Axes used by dims and partial together.
  AxisSet used_axes() const;
  // Axes used by the dims (not partial).
  AxisSet split_axes() const;
  bool is_replicated() const { return used_axes() == 0; }
  // Number of distinct shards along the split axes (how much smaller each device's piece is).
  int64_t shards(const MeshShape& mesh) const { return axes_size(split_axes(), mesh); }
  // The tensor dim split over mesh axis `axis` (0 or 1), or -1.
  int64_t dim_of_axis(int axis) const;

  // Each device's local shape (extents divided by their split sizes).
  Shape local_shape(const Shape& shape, const MeshShape& mesh) const;
  // Checks the invariants against a tensor shape and mesh; the message names the problem.
  Status validate(const Shape& shape, const MeshShape& mesh) const;
  // The same layout with splits and partials over extent-1 mesh axes dropped (they mean nothing).
  ShardingSpec canonical(const MeshShape& mesh) const;

  // The same layout with its partial sums resolved (what an all-reduce leaves).
  ShardingSpec without_partial() const {
    ShardingSpec s = *this;
    s.partial = 0;
    return s;
  }

  std::string to_string() const;
  static Result<ShardingSpec> parse(std::string_view text);

  friend bool operator==(const ShardingSpec&, const ShardingSpec&) = default;
};

// Offset (in elements, along each dim) of the block the device at mesh coordinates `coords`
// holds, for a tensor of `shape` laid out as `spec`.
std::vector<int64_t> shard_offsets(const ShardingSpec& spec, const Shape& shape,
                                   const MeshShape& mesh, const MeshCoords& coords);

// Bytes one device holds of a value of type `t` laid out as `s` on `mesh`.
double local_bytes(const TensorType& t, const ShardingSpec& s, const MeshShape& mesh);

}  // namespace alpa

template <>
struct std::hash<alpa::ShardingSpec> {
  size_t operator()(const alpa::ShardingSpec& s) const noexcept {
    size_t h = s.partial;
    for (uint8_t d : s.dims) h = h * 131 + d + 1;
    return h;
  }
};
