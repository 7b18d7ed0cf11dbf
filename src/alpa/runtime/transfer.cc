#include "alpa/runtime/transfer.h"

#include <algorithm>
#include <cstring>

#include "alpa/runtime/kernel_util.h"

namespace alpa {
namespace {

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

}  // namespace

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
  const Box mine = block_box(src_c, plan.shape, plan.src, index);
  if (local.shape() != mine.extent)
    return invalid_argument(cat("send_cross_mesh: rank ", my_rank, " holds ",
                                shape_to_string(local.shape()), ", but its block of ",
                                shape_to_string(plan.shape), " under ", plan.src_spec.to_string(),
                                " on ", plan.src.to_string(), " is ", shape_to_string(mine.extent)),
                            "pass this rank's block under plan.src_spec (shard_tensor)");
  std::vector<float> scratch;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.src_rank != my_rank || t.dst_rank == my_rank) continue;
    if (!mine.contains(t.box))
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
  const Box mine = block_box(recv_c, plan.shape, plan.dst, index);
  const Shape& local_shape = mine.extent;
  const int64_t n_local = num_elements(local_shape);
  const std::vector<int64_t> strides = kernels::row_major_strides(local_shape);

  // Check the tiling before any data moves: every element covered exactly once.
  std::vector<uint8_t> cover(static_cast<size_t>(n_local), 0);
  Box src_block;  // this rank's source block, for self-copies
  int64_t src_index = -1;
  for (const CrossMeshTransfer& t : plan.transfers) {
    if (t.dst_rank != my_rank) continue;
    if (!mine.contains(t.box))
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
          block_box(plan.src_spec.canonical(plan.src.shape), plan.shape, plan.src, src_index);
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
    if (t.src_rank == my_rank && !src_block.contains(t.box))
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

}  // namespace alpa
