#include "alpa/sharding/reshard.h"

namespace alpa {
namespace {

// True if `cur`'s axis list is a prefix of `target`'s (then only slices are missing).
bool is_prefix(uint8_t cur, uint8_t target) {
  const std::vector<int64_t> c = axis_list(cur), t = axis_list(target);
  if (c.size() > t.size()) return false;
  for (size_t i = 0; i < c.size(); ++i)
    if (c[i] != t[i]) return false;
  return true;
}

// Can `axis` be appended as the minor axis of a dim currently split over `cur`?
bool can_append(uint8_t cur, int64_t axis) {
  if (cur & axis_bit(axis)) return false;
  return cur == 0 || (cur == kAxis0 && axis == 1);
}

}  // namespace

std::string_view reshard_kind_name(ReshardKind k) {
  switch (k) {
    case ReshardKind::kAllReduce: return "all-reduce";
    case ReshardKind::kReduceScatter: return "reduce-scatter";
    case ReshardKind::kAllGather: return "all-gather";
    case ReshardKind::kAllToAll: return "all-to-all";
    case ReshardKind::kMakePartial: return "make-partial";
    case ReshardKind::kSlice: return "slice";
  }
  return "?";
}

std::string ReshardStep::to_string() const {
  std::string s = cat(reshard_kind_name(kind), "(axis ", axes_to_string(axes));
  if (kind == ReshardKind::kAllToAll) return s + cat(", dim ", from_dim, " -> ", dim, ")");
  if (dim >= 0) s += cat(", dim ", dim);
  return s + ")";
}

Result<std::vector<ReshardStep>> plan_reshard(const ShardingSpec& from_in,
                                              const ShardingSpec& to_in, const Shape& shape,
                                              const MeshShape& mesh) {
  const ShardingSpec from = from_in.canonical(mesh), to = to_in.canonical(mesh);
  ALPA_RETURN_IF_ERROR(from.validate(shape, mesh));
  ALPA_RETURN_IF_ERROR(to.validate(shape, mesh));
  std::vector<ReshardStep> steps;
  ShardingSpec cur = from;
  auto push = [&](ReshardKind kind, uint8_t axes, int64_t dim, int64_t from_dim = -1) {
    steps.push_back(ReshardStep{kind, axes, dim, from_dim, cur});
  };

  // 1. Partial sums.
  uint8_t all_reduce_axes = 0;
  for (int axis : {0, 1}) {
    const uint8_t b = axis_bit(axis);
    if (!(cur.partial & b) || (to.partial & b)) continue;
    int64_t target_dim = to.dim_of_axis(axis);
    if (target_dim >= 0 && !(cur.split_axes() & b) && can_append(cur.dims[target_dim], axis) &&
        is_prefix(static_cast<uint8_t>(cur.dims[target_dim] | b), to.dims[target_dim])) {
      cur.partial &= static_cast<uint8_t>(~b);
      cur.dims[target_dim] |= b;
      push(ReshardKind::kReduceScatter, b, target_dim);
    } else {
      all_reduce_axes |= b;
    }
  }
  if (all_reduce_axes) {
    cur.partial &= static_cast<uint8_t>(~all_reduce_axes);
    push(ReshardKind::kAllReduce, all_reduce_axes, -1);
  }

  // 2. Remove splits `to` does not have (minor axis first), moving them when `to` wants them
  //    on another dim.
  for (bool changed = true; changed;) {
    changed = false;
    for (int64_t d = 0; d < cur.rank(); ++d) {
      if (is_prefix(cur.dims[d], to.dims[d])) continue;
      const std::vector<int64_t> axes = axis_list(cur.dims[d]);
      const int64_t axis = axes.back();
      const uint8_t b = axis_bit(axis);
      cur.dims[d] &= static_cast<uint8_t>(~b);
      const int64_t target_dim = to.dim_of_axis(axis);
      if (target_dim >= 0 && target_dim != d && can_append(cur.dims[target_dim], axis) &&
          is_prefix(static_cast<uint8_t>(cur.dims[target_dim] | b), to.dims[target_dim])) {
        cur.dims[target_dim] |= b;
        push(ReshardKind::kAllToAll, b, target_dim, d);
      } else {
        push(ReshardKind::kAllGather, b, d);
      }
      changed = true;
    }
  }

  // 3. Partial sums `to` has: made locally on axes no split uses any more.
  if (to.partial & ~cur.partial) {
    const uint8_t axes = static_cast<uint8_t>(to.partial & ~cur.partial);
    if (cur.split_axes() & axes)
      return internal_error(cat("reshard ", from.to_string(), " -> ", to.to_string(),
                                ": axis still split when making a partial sum"));
    cur.partial |= axes;
    push(ReshardKind::kMakePartial, axes, -1);
  }

  // 4. Add the splits `to` has, major axis first, by local slices.
  for (int64_t d = 0; d < cur.rank(); ++d) {
    for (int64_t axis : axis_list(to.dims[d])) {
      const uint8_t b = axis_bit(axis);
      if (cur.dims[d] & b) continue;
      if (!can_append(cur.dims[d], axis) || (cur.used_axes() & b))
        return internal_error(cat("reshard ", from.to_string(), " -> ", to.to_string(),
                                  ": cannot slice axis ", axis, " on dim ", d));
      cur.dims[d] |= b;
      push(ReshardKind::kSlice, b, d);
    }
  }
  if (!(cur == to))
    return internal_error(
        cat("reshard ", from.to_string(), " -> ", to.to_string(), " ended at ", cur.to_string()));
  return steps;
}

}  // namespace alpa
