// Kernels of the data-movement ops: broadcast, reshape, transpose, slice, pad, concat, and
// the strided copy that broadcast, transpose and slice (and dot_general's operand copies)
// reduce to.
#include <algorithm>
#include <cstring>

#include "alpa/runtime/kernel_util.h"

namespace alpa::kernels {
namespace {

// Tile edge of the blocked 2-D transpose: a 32x32 float tile of source and of destination
// (8 KiB together) stays in L1.
constexpr int64_t kTile = 32;

// Extents and source strides after dropping extent-1 dims and merging neighbours that are
// contiguous in the source (the destination is contiguous, so it never prevents a merge).
struct Collapsed {
  std::vector<int64_t> ext;
  std::vector<int64_t> st;
};

Collapsed collapse(std::span<const int64_t> shape, std::span<const int64_t> strides) {
  Collapsed c;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == 1) continue;
    if (!c.ext.empty() && c.st.back() == strides[i] * shape[i]) {
      c.ext.back() *= shape[i];
      c.st.back() = strides[i];
    } else {
      c.ext.push_back(shape[i]);
      c.st.push_back(strides[i]);
    }
  }
  return c;
}

// Odometer over the first `dims` dims of `ext`, tracking an offset with strides `st`.
struct Odometer {
  const std::vector<int64_t>& ext;
  const std::vector<int64_t>& st;
  size_t dims;
  std::vector<int64_t> idx;
  int64_t offset = 0;

  Odometer(const std::vector<int64_t>& e, const std::vector<int64_t>& s, size_t n, int64_t start)
      : ext(e), st(s), dims(n), idx(n, 0) {
    for (size_t d = dims; d-- > 0;) {
      idx[d] = start % ext[d];
      start /= ext[d];
      offset += idx[d] * st[d];
    }
  }
  void next() {
    for (size_t d = dims; d-- > 0;) {
      ++idx[d];
      offset += st[d];
      if (idx[d] < ext[d]) return;
      offset -= st[d] * ext[d];
      idx[d] = 0;
    }
  }
};

// Rows of the collapsed view, each of the inner extent L with source stride s.
void copy_rows(const KernelContext& ctx, const float* in, const Collapsed& c, float* out,
               int64_t n) {
  const size_t r = c.ext.size();
  const int64_t len = c.ext.back(), s = c.st.back();
  const int64_t rows = n / len;
  parallel_for(ctx, rows, std::max<int64_t>(1, kCopyGrain / len), [&](int64_t b, int64_t e) {
    Odometer od(c.ext, c.st, r - 1, b);
    for (int64_t row = b; row < e; ++row, od.next()) {
      const float* src = in + od.offset;
      float* dst = out + row * len;
      if (s == 1) {
        std::memcpy(dst, src, static_cast<size_t>(len) * sizeof(float));
      } else if (s == 0) {
        const float v = src[0];
        for (int64_t j = 0; j < len; ++j) dst[j] = v;
      } else {
        for (int64_t j = 0; j < len; ++j) dst[j] = src[j * s];
      }
    }
  });
}

// The inner (destination-contiguous) dim has source stride s > 1 and dim q has source stride
// 1: a batch of 2-D transposes between dims q and the last, done in kTile x kTile blocks.
void copy_transposed(const KernelContext& ctx, const float* in, const Collapsed& c, size_t q,
                     float* out) {
  const size_t r = c.ext.size();
  const int64_t len = c.ext.back(), s = c.st.back();
  std::vector<int64_t> out_st(r);
  int64_t acc = 1;
  for (size_t d = r; d-- > 0;) {
    out_st[d] = acc;
    acc *= c.ext[d];
  }
  // Batch dims: every dim but q and the last, with source and destination strides.
  std::vector<int64_t> bext, bin, bout;
  for (size_t d = 0; d + 1 < r; ++d) {
    if (d == q) continue;
    bext.push_back(c.ext[d]);
    bin.push_back(c.st[d]);
    bout.push_back(out_st[d]);
  }
  int64_t batches = 1;
  for (int64_t e : bext) batches *= e;
  const int64_t a_ext = c.ext[q], a_out = out_st[q];
  const int64_t a_tiles = (a_ext + kTile - 1) / kTile;
  const int64_t grain = std::max<int64_t>(1, kCopyGrain / (kTile * len));
  parallel_for(ctx, batches * a_tiles, grain, [&](int64_t b, int64_t e) {
    for (int64_t task = b; task < e; ++task) {
      int64_t bi = task / a_tiles;
      const int64_t a0 = (task % a_tiles) * kTile, a1 = std::min(a0 + kTile, a_ext);
      int64_t in_off = 0, out_off = 0;
      for (size_t d = bext.size(); d-- > 0;) {
        const int64_t i = bi % bext[d];
        bi /= bext[d];
        in_off += i * bin[d];
        out_off += i * bout[d];
      }
      for (int64_t b0 = 0; b0 < len; b0 += kTile) {
        const int64_t b1 = std::min(b0 + kTile, len);
        for (int64_t a = a0; a < a1; ++a) {
          const float* src = in + in_off + a;
          float* dst = out + out_off + a * a_out;
          for (int64_t j = b0; j < b1; ++j) dst[j] = src[j * s];
        }
      }
    }
  });
}

// ---- kernels ------------------------------------------------------------------------------

// Operand dim i becomes result dim dims[i]; an operand extent of 1 repeats (stride 0).
Status broadcast_kernel(const KernelContext& ctx, const Node& node,
                        std::span<const Tensor* const> in, Tensor& out) {
  const auto& dims = node.attr<BroadcastAttrs>().dims;
  const Tensor& x = *in[0];
  const std::vector<int64_t> xs = row_major_strides(x.shape());
  std::vector<int64_t> st(static_cast<size_t>(out.rank()), 0);
  for (size_t i = 0; i < dims.size(); ++i)
    st[static_cast<size_t>(dims[i])] = x.shape()[i] == 1 ? 0 : xs[i];
  strided_copy(ctx, x.data(), out.shape(), st, out.data());
  return ok_status();
}

Status reshape_kernel(const KernelContext& ctx, const Node&, std::span<const Tensor* const> in,
                      Tensor& out) {
  copy(ctx, in[0]->data(), out.data(), out.size());
  return ok_status();
}

// result dim i = operand dim perm[i]
Status transpose_kernel(const KernelContext& ctx, const Node& node,
                        std::span<const Tensor* const> in, Tensor& out) {
  const auto& perm = node.attr<TransposeAttrs>().perm;
  const std::vector<int64_t> xs = row_major_strides(in[0]->shape());
  std::vector<int64_t> st(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) st[i] = xs[static_cast<size_t>(perm[i])];
  strided_copy(ctx, in[0]->data(), out.shape(), st, out.data());
  return ok_status();
}

Status slice_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                    Tensor& out) {
  const auto& a = node.attr<SliceAttrs>();
  const std::vector<int64_t> xs = row_major_strides(in[0]->shape());
  int64_t base = 0;
  for (size_t d = 0; d < xs.size(); ++d) base += a.start[d] * xs[d];
  strided_copy(ctx, in[0]->data() + base, out.shape(), xs, out.data());
  return ok_status();
}

// Fills with the pad value, then copies the operand's rows into the interior.
Status pad_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                  Tensor& out) {
  const auto& a = node.attr<PadAttrs>();
  const Tensor& x = *in[0];
  fill(ctx, out.data(), out.size(), static_cast<float>(a.value));
  if (x.size() == 0) return ok_status();
  if (x.rank() == 0) {
    out.data()[0] = x.data()[0];
    return ok_status();
  }
  const std::vector<int64_t> os = row_major_strides(out.shape());
  int64_t base = 0;
  for (size_t d = 0; d < os.size(); ++d) base += a.low[d] * os[d];
  // Rows of the operand (all dims but the last) and where each lands in the output.
  const std::vector<int64_t> ext(x.shape().begin(), x.shape().end());
  const int64_t len = ext.back();
  const int64_t rows = x.size() / len;
  const float* src = x.data();
  float* dst = out.data() + base;
  parallel_for(ctx, rows, std::max<int64_t>(1, kCopyGrain / len), [&](int64_t b, int64_t e) {
    Odometer od(ext, os, ext.size() - 1, b);
    for (int64_t row = b; row < e; ++row, od.next())
      std::memcpy(dst + od.offset, src + row * len, static_cast<size_t>(len) * sizeof(float));
  });
  return ok_status();
}

// Viewed as (outer, extent_k * inner) blocks laid side by side in each output row.
Status concat_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const int64_t dim = node.attr<ConcatAttrs>().dim;
  const Shape& s = out.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < out.rank(); ++d) inner *= s[d];
  const int64_t out_row = s[dim] * inner;
  std::vector<int64_t> offsets, chunks;
  int64_t off = 0;
  for (const Tensor* t : in) {
    const int64_t chunk = t->shape()[dim] * inner;
    offsets.push_back(off);
    chunks.push_back(chunk);
    off += chunk;
  }
  if (outer == 1) {
    for (size_t k = 0; k < in.size(); ++k)
      copy(ctx, in[k]->data(), out.data() + offsets[k], chunks[k]);
    return ok_status();
  }
  parallel_for(ctx, outer, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(out_row, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t o = b; o < e; ++o)
                   for (size_t k = 0; k < in.size(); ++k)
                     std::memcpy(out.data() + o * out_row + offsets[k],
                                 in[k]->data() + o * chunks[k],
                                 static_cast<size_t>(chunks[k]) * sizeof(float));
               });
  return ok_status();
}

}  // namespace

void strided_copy(const KernelContext& ctx, const float* in, std::span<const int64_t> shape,
                  std::span<const int64_t> in_strides, float* out) {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  if (n == 0) return;
  const Collapsed c = collapse(shape, in_strides);
  if (c.ext.empty()) {
    out[0] = in[0];
    return;
  }
  const int64_t s = c.st.back();
  if (s != 0 && s != 1) {
    for (size_t q = c.ext.size() - 1; q-- > 0;) {
      if (c.st[q] == 1) {
        copy_transposed(ctx, in, c, q, out);
        return;
      }
    }
  }
  copy_rows(ctx, in, c, out, n);
}

void register_movement_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kBroadcast, broadcast_kernel);
  set_kernel(table, OpKind::kReshape, reshape_kernel);
  set_kernel(table, OpKind::kTranspose, transpose_kernel);
  set_kernel(table, OpKind::kSlice, slice_kernel);
  set_kernel(table, OpKind::kPad, pad_kernel);
  set_kernel(table, OpKind::kConcat, concat_kernel);
}

}  // namespace alpa::kernels
