#include "alpa/sharding/cross_mesh.h"

#include <algorithm>
#include <map>
#include <set>

#include "alpa/support/check.h"

namespace alpa {
namespace {

Status check_placement(const PlacedMesh& p, const char* which) {
  const std::string name = cat("cross-mesh ", which, " placement ", p.to_string());
  if (p.shape[0] < 1 || p.shape[1] < 1)
    return invalid_argument(cat(name, ": mesh extents must be >= 1"),
                            "give the logical mesh as n0 x n1 with n0, n1 >= 1");
  if (static_cast<int64_t>(p.devices.size()) != p.shape[0] * p.shape[1])
    return invalid_argument(cat(name, " lists ", p.devices.size(), " rank(s) for a ", p.shape[0],
                                "x", p.shape[1], " mesh, which needs ", p.shape[0] * p.shape[1]),
                            "list n0*n1 world ranks, row-major: ranks[i*n1 + j] is at (i, j)");
  std::set<int> seen;
  for (int r : p.devices) {
    if (r < 0)
      return invalid_argument(cat(name, ": rank ", r, " is negative"),
                              "ranks are world ranks, 0 <= rank < world size");
    if (!seen.insert(r).second)
      return invalid_argument(cat(name, ": rank ", r, " appears twice"),
                              "each device of a mesh is a distinct world rank");
  }
  return ok_status();
}

Status check_spec(const ShardingSpec& spec, const Shape& shape, const MeshShape& mesh,
                  const char* which) {
  ALPA_RETURN_IF_ERROR(
      spec.validate(shape, mesh).with_context(cat("cross-mesh ", which, " layout")));
  if (spec.partial != 0)
    return invalid_argument(
        cat("cross-mesh ", which, " layout ", spec.to_string(), " has partial sums over axis ",
            axes_to_string(spec.partial), ": resolve partial sums before sending"),
        which == std::string("source")
            ? "all-reduce or reduce-scatter on the source mesh first (plan_reshard to a layout "
              "without +P)"
            : "a destination receives whole values; make the partial sum after receiving");
  return ok_status();
}

}  // namespace

Box block_box(const ShardingSpec& spec, const Shape& shape, const PlacedMesh& mesh, int64_t index) {
  return Box{shard_offsets(spec, shape, mesh.shape, mesh.shape.coords(index)),
             spec.local_shape(shape, mesh.shape)};
}

bool intersect(const Box& a, const Box& b, Box* out) {
  const size_t r = a.offset.size();
  out->offset.assign(r, 0);
  out->extent.assign(r, 0);
  for (size_t d = 0; d < r; ++d) {
    const int64_t lo = std::max(a.offset[d], b.offset[d]);
    const int64_t hi = std::min(a.offset[d] + a.extent[d], b.offset[d] + b.extent[d]);
    if (hi <= lo) return false;
    out->offset[d] = lo;
    out->extent[d] = hi - lo;
  }
  return true;
}

int64_t Box::elements() const {
  int64_t n = 1;
  for (int64_t e : extent) n *= e;
  return n;
}

bool Box::contains(const Box& inner) const {
  if (inner.offset.size() != offset.size() || inner.extent.size() != offset.size()) return false;
  for (size_t d = 0; d < offset.size(); ++d) {
    if (inner.extent[d] < 0 || inner.offset[d] < offset[d] ||
        inner.offset[d] + inner.extent[d] > offset[d] + extent[d])
      return false;
  }
  return true;
}

std::string Box::to_string() const {
  std::string s = "[";
  for (size_t d = 0; d < offset.size(); ++d)
    s += cat(d ? "," : "", offset[d], ":", offset[d] + (d < extent.size() ? extent[d] : 0));
  return s + "]";
}

int64_t CrossMeshPlan::bytes_moved(int64_t elem_bytes) const {
  int64_t n = 0;
  for (const CrossMeshTransfer& t : transfers)
    if (t.src_rank != t.dst_rank) n += t.box.elements();
  return n * elem_bytes;
}

int64_t CrossMeshPlan::bytes_sent_by(int rank, int64_t elem_bytes) const {
  int64_t n = 0;
  for (const CrossMeshTransfer& t : transfers)
    if (t.src_rank == rank && t.dst_rank != rank) n += t.box.elements();
  return n * elem_bytes;
}

ShardingSpec local_all_gather_spec(const ShardingSpec& dst_spec, const Shape& shape,
                                   const MeshShape& mesh) {
  ALPA_CHECK(dst_spec.rank() == static_cast<int64_t>(shape.size()))
      << dst_spec.to_string() << " for " << shape_to_string(shape);
  ShardingSpec s = dst_spec.canonical(mesh);
  bool added = false;
  for (int axis : {0, 1}) {
    const AxisSet b = axis_bit(axis);
    if (mesh[axis] <= 1 || (s.used_axes() & b)) continue;
    int64_t best = -1, best_local = 0;
    for (int64_t d = 0; d < s.rank(); ++d) {
      const uint8_t cur = s.dims[d];
      // Axis 1 may become the minor axis of an S0 dim (S01); nothing joins S1 or S01.
      if (!(cur == 0 || (cur == kAxis0 && axis == 1))) continue;
      const uint8_t next = static_cast<uint8_t>(cur | b);
      if (shape[d] <= 0 || shape[d] % axes_size(next, mesh) != 0) continue;
      const int64_t local = shape[d] / axes_size(cur, mesh);
      if (local > best_local) {
        best = d;
        best_local = local;
      }
    }
    if (best < 0) continue;
    s.dims[best] = static_cast<uint8_t>(s.dims[best] | b);
    added = true;
  }
  return added ? s : dst_spec;
}

Result<CrossMeshPlan> plan_cross_mesh(const Shape& shape, const PlacedMesh& src,
                                      const ShardingSpec& src_spec, const PlacedMesh& dst,
                                      const ShardingSpec& dst_spec,
                                      const CrossMeshOptions& options) {
  ALPA_RETURN_IF_ERROR(check_placement(src, "source"));
  ALPA_RETURN_IF_ERROR(check_placement(dst, "destination"));
  ALPA_RETURN_IF_ERROR(check_spec(src_spec, shape, src.shape, "source"));
  ALPA_RETURN_IF_ERROR(check_spec(dst_spec, shape, dst.shape, "destination"));

  CrossMeshPlan plan;
  plan.shape = shape;
  plan.src = src;
  plan.dst = dst;
  plan.src_spec = src_spec;
  plan.dst_spec = dst_spec;
  plan.receive_spec =
      options.local_all_gather ? local_all_gather_spec(dst_spec, shape, dst.shape) : dst_spec;
  ALPA_CHECK(plan.receive_spec.validate(shape, dst.shape).ok()) << plan.receive_spec.to_string();

  // Source blocks by offset (lexicographic), each with its replicas' ranks (ascending).
  const ShardingSpec src_c = src_spec.canonical(src.shape);
  std::map<std::vector<int64_t>, std::pair<Box, std::vector<int>>> src_blocks;
  for (int64_t i = 0; i < static_cast<int64_t>(src.devices.size()); ++i) {
    Box b = block_box(src_c, shape, src, i);
    auto& entry = src_blocks[b.offset];
    entry.first = b;
    entry.second.push_back(src.devices[i]);
  }
  for (auto& [off, entry] : src_blocks) std::sort(entry.second.begin(), entry.second.end());

  // Destination devices by rank.
  const ShardingSpec recv_c = plan.receive_spec.canonical(dst.shape);
  std::vector<int64_t> dst_order(dst.devices.size());
  for (size_t i = 0; i < dst_order.size(); ++i) dst_order[i] = static_cast<int64_t>(i);
  std::sort(dst_order.begin(), dst_order.end(),
            [&](int64_t a, int64_t b) { return dst.devices[a] < dst.devices[b]; });

  std::map<int, int64_t> load;  // elements assigned to each sender so far (self-copies excluded)
  for (int64_t i : dst_order) {
    const int me = dst.devices[i];
    const Box need = block_box(recv_c, shape, dst, i);
    for (const auto& [off, entry] : src_blocks) {
      const auto& [block, replicas] = entry;
      Box piece;
      if (!intersect(need, block, &piece)) continue;
      int sender = -1;
      if (options.prefer_self && std::binary_search(replicas.begin(), replicas.end(), me)) {
        sender = me;
      } else {
        for (int r : replicas)  // ascending, so the strict < keeps the lowest rank on ties
          if (sender < 0 || load[r] < load[sender]) sender = r;
      }
      if (sender != me) load[sender] += piece.elements();
      plan.transfers.push_back(CrossMeshTransfer{sender, me, std::move(piece)});
    }
  }
  std::stable_sort(plan.transfers.begin(), plan.transfers.end(),
                   [](const CrossMeshTransfer& a, const CrossMeshTransfer& b) {
                     if (a.dst_rank != b.dst_rank) return a.dst_rank < b.dst_rank;
                     return a.box.offset < b.box.offset;
                   });
  return plan;
}

std::string to_string(const CrossMeshPlan& plan) {
  std::string s =
      cat("cross-mesh ", shape_to_string(plan.shape), ": ", plan.src_spec.to_string(), " on ",
          plan.src.to_string(), " -> ", plan.dst_spec.to_string(), " on ", plan.dst.to_string());
  if (!(plan.receive_spec == plan.dst_spec))
    s += cat(" (receive ", plan.receive_spec.to_string(), ", then all-gather on the destination)");
  int64_t local = 0;
  for (const CrossMeshTransfer& t : plan.transfers)
    if (t.src_rank == t.dst_rank) local += t.box.elements();
  s += cat("; ", plan.transfers.size(), " transfer(s), ", plan.bytes_moved(1),
           " element(s) between ranks, ", local, " copied locally\n");
  for (const CrossMeshTransfer& t : plan.transfers)
    s += cat("  ", t.src_rank, " -> ", t.dst_rank, " ", t.box.to_string(),
             t.src_rank == t.dst_rank ? " (local copy)" : "", "\n");
  return s;
}

Status validate_cross_mesh_plan(const CrossMeshPlan& plan) {
  ALPA_RETURN_IF_ERROR(check_placement(plan.src, "source"));
  ALPA_RETURN_IF_ERROR(check_placement(plan.dst, "destination"));
  ALPA_RETURN_IF_ERROR(check_spec(plan.src_spec, plan.shape, plan.src.shape, "source"));
  ALPA_RETURN_IF_ERROR(check_spec(plan.dst_spec, plan.shape, plan.dst.shape, "destination"));
  ALPA_RETURN_IF_ERROR(check_spec(plan.receive_spec, plan.shape, plan.dst.shape, "receive"));
  const size_t rank = plan.shape.size();
  const ShardingSpec src_c = plan.src_spec.canonical(plan.src.shape);
  const ShardingSpec recv_c = plan.receive_spec.canonical(plan.dst.shape);
  // Elements each destination position receives; boxes must lie in both blocks.
  std::vector<int64_t> covered(static_cast<size_t>(plan.dst.size()), 0);
  for (size_t k = 0; k < plan.transfers.size(); ++k) {
    const CrossMeshTransfer& t = plan.transfers[k];
    const std::string where = cat("cross-mesh transfer ", k, " (", t.src_rank, " -> ", t.dst_rank,
                                  " ", t.box.to_string(), ")");
    const int64_t si = plan.src.index_of(t.src_rank), di = plan.dst.index_of(t.dst_rank);
    if (si < 0) return invalid_argument(cat(where, ": the sender is not on the source mesh"));
    if (di < 0)
      return invalid_argument(cat(where, ": the receiver is not on the destination mesh"));
    if (t.box.offset.size() != rank || t.box.extent.size() != rank)
      return invalid_argument(
          cat(where, ": the box has the wrong rank for ", shape_to_string(plan.shape)));
    if (!block_box(src_c, plan.shape, plan.src, si).contains(t.box))
      return invalid_argument(cat(where, ": the box is not inside the sender's block"));
    if (!block_box(recv_c, plan.shape, plan.dst, di).contains(t.box))
      return invalid_argument(cat(where, ": the box is not inside the receiver's block"));
    covered[static_cast<size_t>(di)] += t.box.elements();
  }
  // Boxes inside the block that do not overlap and add up to it tile it exactly once.
  std::vector<std::vector<const Box*>> boxes(static_cast<size_t>(plan.dst.size()));
  for (const CrossMeshTransfer& t : plan.transfers)
    boxes[static_cast<size_t>(plan.dst.index_of(t.dst_rank))].push_back(&t.box);
  for (size_t i = 0; i < boxes.size(); ++i)
    for (size_t a = 0; a < boxes[i].size(); ++a)
      for (size_t b = a + 1; b < boxes[i].size(); ++b) {
        Box both;
        if (intersect(*boxes[i][a], *boxes[i][b], &both))
          return invalid_argument(cat("cross-mesh plan: device ", plan.dst.devices[i], " receives ",
                                      both.to_string(), " twice"));
      }
  const int64_t block = num_elements(recv_c.local_shape(plan.shape, plan.dst.shape));
  for (int64_t i = 0; i < plan.dst.size(); ++i)
    if (covered[static_cast<size_t>(i)] != block)
      return invalid_argument(
          cat("cross-mesh plan: device ", plan.dst.devices[static_cast<size_t>(i)], " receives ",
              covered[static_cast<size_t>(i)], " elements of its block of ", block));
  return ok_status();
}

}  // namespace alpa
