#include "alpa/spmd/cross_mesh.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

#include "alpa/cost/collective.h"
#include "alpa/runtime/kernel_util.h"

namespace alpa {
namespace {

uint8_t axis_bit(int axis) {
  return axis == 0 ? kAxis0 : kAxis1;
}

std::array<int64_t, 2> coords_of(const MeshPlacement& p, int64_t index) {
  return {index / p.shape[1], index % p.shape[1]};
}

// One device's block under a layout: offset and extent in global coordinates.
Box block_of(const ShardingSpec& canonical, const Shape& shape, const MeshPlacement& p,
             int64_t index) {
  return Box{shard_offsets(canonical, shape, p.shape, coords_of(p, index)),
             canonical.local_shape(shape, p.shape)};
}

// The intersection of two boxes of one rank; false if it is empty.
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

// True if `inner` lies inside `outer`.
bool contains(const Box& outer, const Box& inner) {
  if (inner.offset.size() != outer.offset.size() || inner.extent.size() != outer.offset.size())
    return false;
  for (size_t d = 0; d < outer.offset.size(); ++d) {
    if (inner.extent[d] < 0 || inner.offset[d] < outer.offset[d] ||
        inner.offset[d] + inner.extent[d] > outer.offset[d] + outer.extent[d])
      return false;
  }
  return true;
}

// Row-major linear index of `idx` in a tensor of shape `s`.
int64_t linear(const std::vector<int64_t>& idx, const std::vector<int64_t>& strides) {
  int64_t l = 0;
  for (size_t d = 0; d < idx.size(); ++d) l += idx[d] * strides[d];
  return l;
}

// If the box (offset `off`, extent `ext`) of a tensor of shape `s` is one contiguous run of
// memory, its start index; else -1.
int64_t contiguous_start(const Shape& s, const std::vector<int64_t>& off,
                         const std::vector<int64_t>& ext) {
  // Trailing dims must be whole; the dim before them may be partial; leading dims extent 1.
  size_t d = s.size();
  while (d > 0 && ext[d - 1] == s[d - 1]) --d;
  if (d > 0) --d;  // the one partial dim
  for (size_t k = 0; k < d; ++k)
    if (ext[k] != 1) return -1;
  return linear(off, kernels::row_major_strides(s));
}

// Copies the box of extent `ext` at `src_off` of `src` (shape `src_shape`) to `dst_off` of
// `dst` (shape `dst_shape`). Offsets are local to each tensor.
void copy_box(const float* src, const Shape& src_shape, const std::vector<int64_t>& src_off,
              float* dst, const Shape& dst_shape, const std::vector<int64_t>& dst_off,
              const std::vector<int64_t>& ext) {
  const size_t r = ext.size();
  if (r == 0) {
    dst[0] = src[0];
    return;
  }
  for (int64_t e : ext)
    if (e == 0) return;
  const std::vector<int64_t> ss = kernels::row_major_strides(src_shape),
                             ds = kernels::row_major_strides(dst_shape);
  const int64_t row = ext[r - 1];
  std::vector<int64_t> idx(r, 0);  // position inside the box; the last dim stays 0
  while (true) {
    int64_t s = 0, t = 0;
    for (size_t d = 0; d < r; ++d) {
      s += (src_off[d] + idx[d]) * ss[d];
      t += (dst_off[d] + idx[d]) * ds[d];
    }
    std::memcpy(dst + t, src + s, static_cast<size_t>(row) * sizeof(float));
    size_t d = r - 1;
    while (d-- > 0) {
      if (++idx[d] < ext[d]) break;
      idx[d] = 0;
    }
    if (d == static_cast<size_t>(-1)) return;
  }
}

std::vector<int64_t> minus(const std::vector<int64_t>& a, const std::vector<int64_t>& b) {
  std::vector<int64_t> r(a.size());
  for (size_t d = 0; d < a.size(); ++d) r[d] = a[d] - b[d];
  return r;
}

Status check_placement(const MeshPlacement& p, const char* which) {
  const std::string name = cat("cross-mesh ", which, " placement ", p.to_string());
  if (p.shape[0] < 1 || p.shape[1] < 1)
    return invalid_argument(cat(name, ": mesh extents must be >= 1"),
                            "give the logical mesh as n0 x n1 with n0, n1 >= 1");
  if (static_cast<int64_t>(p.ranks.size()) != p.shape[0] * p.shape[1])
    return invalid_argument(cat(name, " lists ", p.ranks.size(), " rank(s) for a ", p.shape[0], "x",
                                p.shape[1], " mesh, which needs ", p.shape[0] * p.shape[1]),
                            "list n0*n1 world ranks, row-major: ranks[i*n1 + j] is at (i, j)");
  std::set<int> seen;
  for (int r : p.ranks) {
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

int64_t MeshPlacement::index_of(int rank) const {
  for (size_t i = 0; i < ranks.size(); ++i)
    if (ranks[i] == rank) return static_cast<int64_t>(i);
  return -1;
}

std::string MeshPlacement::to_string() const {
  std::string s = cat(shape[0], "x", shape[1], "{");
  for (size_t i = 0; i < ranks.size(); ++i) s += cat(i ? "," : "", ranks[i]);
  return s + "}";
}

int64_t Box::elements() const {
  int64_t n = 1;
  for (int64_t e : extent) n *= e;
  return n;
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
    const uint8_t b = axis_bit(axis);
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

Result<CrossMeshPlan> plan_cross_mesh(const Shape& shape, const MeshPlacement& src,
                                      const ShardingSpec& src_spec, const MeshPlacement& dst,
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
  for (int64_t i = 0; i < static_cast<int64_t>(src.ranks.size()); ++i) {
    Box b = block_of(src_c, shape, src, i);
    auto& entry = src_blocks[b.offset];
    entry.first = b;
    entry.second.push_back(src.ranks[i]);
  }
  for (auto& [off, entry] : src_blocks) std::sort(entry.second.begin(), entry.second.end());

  // Destination devices by rank.
  const ShardingSpec recv_c = plan.receive_spec.canonical(dst.shape);
  std::vector<int64_t> dst_order(dst.ranks.size());
  for (size_t i = 0; i < dst_order.size(); ++i) dst_order[i] = static_cast<int64_t>(i);
  std::sort(dst_order.begin(), dst_order.end(),
            [&](int64_t a, int64_t b) { return dst.ranks[a] < dst.ranks[b]; });

  std::map<int, int64_t> load;  // elements assigned to each sender so far (self-copies excluded)
  for (int64_t i : dst_order) {
    const int me = dst.ranks[i];
    const Box need = block_of(recv_c, shape, dst, i);
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

Status send_cross_mesh(const CrossMeshPlan& plan, int my_rank, const Tensor& local,
                       Communicator& comm, int tag) {
  const int64_t index = plan.src.index_of(my_rank);
  bool any = false;
  for (const CrossMeshTransfer& t : plan.transfers)
    if (t.src_rank == my_rank && t.dst_rank != my_rank) any = true;
  if (!any) return ok_status();
  if (index < 0)
    return invalid_argument(cat("send_cross_mesh: rank ", my_rank,
                                " has transfers to send but "
                                "is not in the source placement ",
                                plan.src.to_string()),
                            "run send_cross_mesh with a plan from plan_cross_mesh");
  const ShardingSpec src_c = plan.src_spec.canonical(plan.src.shape);
  const Box mine = block_of(src_c, plan.shape, plan.src, index);
  if (local.shape() != mine.extent)
    return invalid_argument(cat("send_cross_mesh: rank ", my_rank, " holds ",
                                shape_to_string(local.shape()), ", but its block of ",
                                shape_to_string(plan.shape), " under ", plan.src_spec.to_string(),
                                " on ", plan.src.to_string(), " is ", shape_to_string(mine.extent)),
                            "pass this rank's block under plan.src_spec (shard_tensor)");
  std::vector<float> scratch;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.src_rank != my_rank || t.dst_rank == my_rank) continue;
    if (!contains(mine, t.box))
      return invalid_argument(cat("send_cross_mesh: rank ", my_rank, " is asked to send ",
                                  t.box.to_string(), ", outside its block ", mine.to_string()));
    const std::vector<int64_t> rel = minus(t.box.offset, mine.offset);
    const int64_t n = t.box.elements();
    const int64_t start = contiguous_start(local.shape(), rel, t.box.extent);
    const float* data = nullptr;
    if (start >= 0 || n == 0) {
      data = local.data() + std::max<int64_t>(start, 0);
    } else {
      scratch.resize(static_cast<size_t>(n));
      copy_box(local.data(), local.shape(), rel, scratch.data(), t.box.extent,
               std::vector<int64_t>(rel.size(), 0), t.box.extent);
      data = scratch.data();
    }
    ALPA_RETURN_IF_ERROR(comm.send(data, n, t.dst_rank, tag)
                             .with_context(cat("send_cross_mesh ", my_rank, " -> ", t.dst_rank)));
  }
  return ok_status();
}

Result<Tensor> recv_cross_mesh(const CrossMeshPlan& plan, int my_rank, Communicator& comm, int tag,
                               const Tensor* local_src) {
  const int64_t index = plan.dst.index_of(my_rank);
  if (index < 0)
    return invalid_argument(cat("recv_cross_mesh: rank ", my_rank,
                                " is not in the destination placement ", plan.dst.to_string()),
                            "only the destination mesh's ranks receive");
  const ShardingSpec recv_c = plan.receive_spec.canonical(plan.dst.shape);
  const Box mine = block_of(recv_c, plan.shape, plan.dst, index);
  const Shape& local_shape = mine.extent;
  const int64_t n_local = num_elements(local_shape);
  const std::vector<int64_t> strides = kernels::row_major_strides(local_shape);

  // Check the tiling before any data moves: every element covered exactly once.
  std::vector<uint8_t> cover(static_cast<size_t>(n_local), 0);
  Box src_block;  // this rank's source block, for self-copies
  int64_t src_index = -1;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.dst_rank != my_rank) continue;
    if (!contains(mine, t.box))
      return invalid_argument(cat("recv_cross_mesh: rank ", my_rank, " would receive ",
                                  t.box.to_string(), ", outside its block ", mine.to_string(),
                                  " under ", plan.receive_spec.to_string()));
    if (t.src_rank == my_rank && src_index < 0) {
      src_index = plan.src.index_of(my_rank);
      if (src_index < 0)
        return invalid_argument(cat("recv_cross_mesh: rank ", my_rank,
                                    " sends to itself but "
                                    "is not in the source placement ",
                                    plan.src.to_string()));
      src_block =
          block_of(plan.src_spec.canonical(plan.src.shape), plan.shape, plan.src, src_index);
      if (local_src == nullptr)
        return invalid_argument(
            cat("recv_cross_mesh: rank ", my_rank, " is in both meshes and receives ",
                t.box.to_string(), " from itself, but no local source block was given"),
            "pass local_src: this rank's block under plan.src_spec");
      if (local_src->shape() != src_block.extent)
        return invalid_argument(cat("recv_cross_mesh: rank ", my_rank, "'s local source block is ",
                                    shape_to_string(local_src->shape()), ", expected ",
                                    shape_to_string(src_block.extent)));
    }
    if (t.src_rank == my_rank && !contains(src_block, t.box))
      return invalid_argument(cat("recv_cross_mesh: rank ", my_rank, " would copy ",
                                  t.box.to_string(), " from itself, outside its source block ",
                                  src_block.to_string()));
    if (t.box.elements() == 0) continue;
    const std::vector<int64_t> rel = minus(t.box.offset, mine.offset);
    std::vector<int64_t> idx(rel.size(), 0);
    for (int64_t k = 0; k < t.box.elements(); ++k) {
      int64_t l = 0;
      for (size_t d = 0; d < idx.size(); ++d) l += (rel[d] + idx[d]) * strides[d];
      if (cover[l]++ != 0)
        return invalid_argument(cat("recv_cross_mesh: rank ", my_rank, ": box ", t.box.to_string(),
                                    " overlaps another box of the plan"));
      for (size_t d = idx.size(); d-- > 0;) {
        if (++idx[d] < t.box.extent[d]) break;
        idx[d] = 0;
      }
    }
  }
  for (int64_t l = 0; l < n_local; ++l) {
    if (cover[l] == 0) {
      std::vector<int64_t> at(local_shape.size());
      for (size_t d = 0; d < at.size(); ++d)
        at[d] = mine.offset[d] + l / strides[d] % local_shape[d];
      return invalid_argument(cat("recv_cross_mesh: rank ", my_rank, ": element ",
                                  shape_to_string(at), " of its block ", mine.to_string(),
                                  " is not covered by any transfer"));
    }
  }

  Tensor out(TensorType{DType::kF32, local_shape});
  std::vector<float> scratch;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.dst_rank != my_rank) continue;
    const std::vector<int64_t> rel = minus(t.box.offset, mine.offset);
    if (t.src_rank == my_rank) {
      copy_box(local_src->data(), local_src->shape(), minus(t.box.offset, src_block.offset),
               out.data(), local_shape, rel, t.box.extent);
      continue;
    }
    const int64_t n = t.box.elements();
    const int64_t start = contiguous_start(local_shape, rel, t.box.extent);
    if (start >= 0 || n == 0) {
      ALPA_RETURN_IF_ERROR(comm.recv(out.data() + std::max<int64_t>(start, 0), n, t.src_rank, tag)
                               .with_context(cat("recv_cross_mesh ", t.src_rank, " -> ", my_rank)));
    } else {
      scratch.resize(static_cast<size_t>(n));
      ALPA_RETURN_IF_ERROR(comm.recv(scratch.data(), n, t.src_rank, tag)
                               .with_context(cat("recv_cross_mesh ", t.src_rank, " -> ", my_rank)));
      copy_box(scratch.data(), t.box.extent, std::vector<int64_t>(rel.size(), 0), out.data(),
               local_shape, rel, t.box.extent);
    }
  }
  return out;
}

double cross_mesh_seconds(const CrossMeshPlan& plan, int64_t elem_bytes, const Cluster& cluster) {
  struct Link {
    double bytes = 0;
    int64_t messages = 0;
  };
  // Intra-host: each device's outgoing and incoming link; inter-host: each host's NIC.
  std::map<int, Link> dev_out, dev_in, nic_out, nic_in;
  const int per_host = cluster.devices_per_host;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.src_rank == t.dst_rank) continue;
    for (int r : {t.src_rank, t.dst_rank})
      ALPA_CHECK(r >= 0 && r < cluster.num_devices())
          << "cross_mesh_seconds: rank " << r << " is not a device of " << cluster.name << " ("
          << cluster.num_devices() << " devices)";
    const double b = static_cast<double>(t.box.elements() * elem_bytes);
    const int hs = t.src_rank / per_host, hd = t.dst_rank / per_host;
    Link& out = hs == hd ? dev_out[t.src_rank] : nic_out[hs];
    Link& in = hs == hd ? dev_in[t.dst_rank] : nic_in[hd];
    out.bytes += b;
    in.bytes += b;
    ++out.messages;
    ++in.messages;
  }
  double worst = 0;
  auto visit = [&](const std::map<int, Link>& links, const LinkSpec& spec) {
    for (const auto& [id, l] : links)
      worst = std::max(worst,
                       l.bytes / spec.bandwidth + static_cast<double>(l.messages) * spec.latency);
  };
  visit(dev_out, cluster.intra_host);
  visit(dev_in, cluster.intra_host);
  visit(nic_out, cluster.inter_host);
  visit(nic_in, cluster.inter_host);
  return worst;
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

}  // namespace alpa
