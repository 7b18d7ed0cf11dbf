// Kernels of gather and scatter_add (embedding lookups and their gradients).
//
//   gather(table [A..., V, B...], indices [I...]){axis}   -> [A..., I..., B...]
//   scatter_add(indices [I...], updates [A..., I..., B...]){axis} -> zeros [A..., V, B...] + adds
// Seen as table [outer, V, inner] and result [outer, nidx, inner]. Indices (i32 values held as
// floats) are converted and bounds-checked first; an index outside [0, V) is a user error
// naming the node, the index and its position.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "alpa/runtime/kernel_util.h"

namespace alpa::kernels {
namespace {

// Converts the index tensor to integers in [0, v), or returns the first violation.
Status load_indices(const KernelContext& ctx, const Node& node, const Tensor& indices, int64_t v,
                    std::vector<int64_t>* out) {
  const int64_t n = indices.size();
  out->resize(static_cast<size_t>(n));
  const float* p = indices.data();
  for (int64_t i = 0; i < n; ++i) {
    const float f = p[i];
    const bool representable = std::isfinite(f) && std::fabs(f) < 4.0e18f;
    const int64_t k = representable ? static_cast<int64_t>(f) : -1;  // i32 values: exact
    if (!representable || k < 0 || k >= v)
      return invalid_argument(
          cat(op_name(node.op), " ", ctx.node_ref(node), ": index ",
              representable ? cat(k) : cat(f), " out of range [0, ", v, ") at position ", i),
          "indices must lie within the extent of the indexed table dim");
    (*out)[static_cast<size_t>(i)] = k;
  }
  return ok_status();
}

void split_at(const Shape& s, int64_t axis, int64_t* outer, int64_t* inner) {
  *outer = 1;
  *inner = 1;
  for (int64_t d = 0; d < axis; ++d) *outer *= s[d];
  for (int64_t d = axis + 1; d < static_cast<int64_t>(s.size()); ++d) *inner *= s[d];
}

Status gather_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const int64_t axis = node.attr<GatherAttrs>().axis;
  const Tensor& table = *in[0];
  int64_t outer, inner;
  split_at(table.shape(), axis, &outer, &inner);
  const int64_t v = table.shape()[axis];
  std::vector<int64_t> idx;
  ALPA_RETURN_IF_ERROR(load_indices(ctx, node, *in[1], v, &idx));
  const int64_t nidx = static_cast<int64_t>(idx.size());
  const float* src = table.data();
  float* dst = out.data();
  // out[o, i, :] = table[o, idx[i], :]
  parallel_for(ctx, outer * nidx, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(inner, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t o = t / nidx, i = t % nidx;
                   std::memcpy(dst + t * inner, src + (o * v + idx[i]) * inner,
                               static_cast<size_t>(inner) * sizeof(float));
                 }
               });
  return ok_status();
}

Status scatter_add_kernel(const KernelContext& ctx, const Node& node,
                          std::span<const Tensor* const> in, Tensor& out) {
  const int64_t axis = node.attr<GatherAttrs>().axis;
  const Tensor& updates = *in[1];
  int64_t outer, inner;
  split_at(out.shape(), axis, &outer, &inner);
  const int64_t v = out.shape()[axis];
  std::vector<int64_t> idx;
  ALPA_RETURN_IF_ERROR(load_indices(ctx, node, *in[0], v, &idx));
  const int64_t nidx = static_cast<int64_t>(idx.size());
  fill(ctx, out.data(), out.size(), 0.0f);
  const float* src = updates.data();
  float* dst = out.data();
  // out[o, idx[i], c] += updates[o, i, c]. Parallel over (o, column block): each element's
  // additions happen in index order on one thread, so repeated indices are race-free and the
  // result is deterministic.
  constexpr int64_t kBlock = 256;
  const int64_t blocks = (inner + kBlock - 1) / kBlock;
  parallel_for(
      ctx, outer * blocks,
      std::max<int64_t>(1, kCheapGrain / std::max<int64_t>(nidx * std::min(inner, kBlock), 1)),
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const int64_t o = t / blocks;
          const int64_t c0 = (t % blocks) * kBlock, c1 = std::min(c0 + kBlock, inner);
          for (int64_t i = 0; i < nidx; ++i) {
            float* d = dst + (o * v + idx[i]) * inner;
            const float* s = src + (o * nidx + i) * inner;
            for (int64_t c = c0; c < c1; ++c) d[c] += s[c];
          }
        }
      });
  return ok_status();
}

}  // namespace

void register_indexing_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kGather, gather_kernel);
  set_kernel(table, OpKind::kScatterAdd, scatter_add_kernel);
}

}  // namespace alpa::kernels
