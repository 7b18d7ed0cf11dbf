// Kernels of reduce_sum and reduce_max.
//
// The operand's dims are collapsed into alternating kept / reduced groups. Two loop shapes
// cover every case, each fast on its common instance:
//   inner group reduced  (row reductions: softmax, layer norm; suffix [K, R]):
//     each result element reduces contiguous rows with 16 independent lane accumulators
//     (vectorises without reassociating a single sum);
//   inner group kept     (column sums: bias gradients; prefix [R, K]):
//     each result row accumulates whole contiguous source rows, vectorised across columns.
// Other reduced groups are walked by an odometer. Summation order is fixed by the shapes and
// the thread count only, so results are deterministic.
#include <algorithm>
#include <cstring>
#include <limits>

#include "alpa/runtime/kernel_util.h"

namespace alpa::kernels {
namespace {

constexpr int kLanes = 16;

struct SumOp {
  static constexpr float kInit = 0.0f;
  static float apply(float a, float b) { return a + b; }
};
struct MaxOp {
  static constexpr float kInit = -std::numeric_limits<float>::infinity();
  static float apply(float a, float b) { return a > b ? a : b; }
};

// Reduces x[0:n] with kLanes interleaved accumulators combined in a fixed order.
template <typename Op>
float reduce_row(const float* x, int64_t n) {
  float acc[kLanes];
  for (int l = 0; l < kLanes; ++l) acc[l] = Op::kInit;
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] = Op::apply(acc[l], x[i + l]);
  for (int l = 0; i < n; ++i, ++l) acc[l] = Op::apply(acc[l], x[i]);
  for (int w = kLanes / 2; w > 0; w /= 2)
    for (int l = 0; l < w; ++l) acc[l] = Op::apply(acc[l], acc[l + w]);
  return acc[0];
}

// dst[0:n] = op(dst[0:n], src[0:n])
template <typename Op>
void accumulate_row(float* __restrict dst, const float* __restrict src, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = Op::apply(dst[i], src[i]);
}

struct Group {
  int64_t ext;
  int64_t stride;  // source stride of the group's innermost element
  bool reduced;
};

// Offsets (in source elements) of every combination of the given groups, row-major.
std::vector<int64_t> combo_offsets(const std::vector<Group>& groups) {
  std::vector<int64_t> offs = {0};
  for (const Group& g : groups) {
    std::vector<int64_t> next;
    next.reserve(offs.size() * static_cast<size_t>(g.ext));
    for (int64_t o : offs)
      for (int64_t i = 0; i < g.ext; ++i) next.push_back(o + i * g.stride);
    offs = std::move(next);
  }
  return offs;
}

template <typename Op>
Status reduce_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const auto& dims = node.attr<ReduceAttrs>().dims;
  const Tensor& x = *in[0];
  float* y = out.data();
  const float* src = x.data();
  if (out.size() == 0) return ok_status();
  if (x.size() == 0) {
    fill(ctx, y, out.size(), Op::kInit);
    return ok_status();
  }
  // Collapse into groups of equal kind (extent-1 dims dropped).
  const std::vector<int64_t> xs = row_major_strides(x.shape());
  std::vector<Group> groups;
  for (int64_t d = 0; d < x.rank(); ++d) {
    const int64_t e = x.shape()[d];
    if (e == 1) continue;
    const bool red = std::binary_search(dims.begin(), dims.end(), d);
    if (!groups.empty() && groups.back().reduced == red) {
      groups.back().ext *= e;
      groups.back().stride = xs[d];
    } else {
      groups.push_back({e, xs[d], red});
    }
  }
  if (groups.empty() ||
      std::none_of(groups.begin(), groups.end(), [](const Group& g) { return g.reduced; })) {
    copy(ctx, src, y, out.size());  // nothing (or only extent-1 dims) reduced
    return ok_status();
  }
  const Group inner = groups.back();
  groups.pop_back();
  std::vector<Group> kept, red;
  for (const Group& g : groups) (g.reduced ? red : kept).push_back(g);
  const std::vector<int64_t> red_offs = combo_offsets(red);
  const std::vector<int64_t> kept_offs = combo_offsets(kept);
  const int64_t nred = static_cast<int64_t>(red_offs.size());
  const int64_t len = inner.ext;

  if (inner.reduced) {
    // y[o] = reduce over red combos r of reduce_row(src + kept[o] + r, len)
    const int64_t nout = static_cast<int64_t>(kept_offs.size());
    const int64_t work = nred * len;
    if (nout == 1 && nred == 1 && len > 2 * kCheapGrain) {
      // One long row (a full reduction): partials over fixed chunks, combined in order, so
      // the result does not even depend on the thread count.
      const int64_t chunks = (len + kCheapGrain - 1) / kCheapGrain;
      std::vector<float> partial(static_cast<size_t>(chunks));
      parallel_for(ctx, chunks, 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) {
          const int64_t c0 = c * kCheapGrain, c1 = std::min(c0 + kCheapGrain, len);
          partial[static_cast<size_t>(c)] = reduce_row<Op>(src + c0, c1 - c0);
        }
      });
      float acc = Op::kInit;
      for (float p : partial) acc = Op::apply(acc, p);
      y[0] = acc;
      return ok_status();
    }
    parallel_for(ctx, nout, std::max<int64_t>(1, kCheapGrain / work), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        float acc = Op::kInit;
        for (int64_t r = 0; r < nred; ++r)
          acc = Op::apply(acc, reduce_row<Op>(src + kept_offs[o] + red_offs[r], len));
        y[o] = acc;
      }
    });
    return ok_status();
  }

  // Inner group kept: y[o, 0:len] = reduce over red combos r of src[kept[o] + r, 0:len].
  // Parallel over (result row, column block) so that a single result row (a bias gradient)
  // still splits across threads; each element's order over r stays fixed.
  const int64_t nrows = static_cast<int64_t>(kept_offs.size());
  constexpr int64_t kBlock = 512;
  const int64_t blocks = (len + kBlock - 1) / kBlock;
  const int64_t work = nred * std::min(len, kBlock);
  parallel_for(ctx, nrows * blocks, std::max<int64_t>(1, kCheapGrain / work),
               [&](int64_t b, int64_t e) {
                 for (int64_t t = b; t < e; ++t) {
                   const int64_t o = t / blocks;
                   const int64_t c0 = (t % blocks) * kBlock, c1 = std::min(c0 + kBlock, len);
                   float* dst = y + o * len + c0;
                   const float* base = src + kept_offs[o] + c0;
                   std::memcpy(dst, base + red_offs[0], static_cast<size_t>(c1 - c0) * 4);
                   for (int64_t r = 1; r < nred; ++r)
                     accumulate_row<Op>(dst, base + red_offs[r], c1 - c0);
                 }
               });
  return ok_status();
}

}  // namespace

void register_reduce_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kReduceSum, reduce_kernel<SumOp>);
  set_kernel(table, OpKind::kReduceMax, reduce_kernel<MaxOp>);
}

}  // namespace alpa::kernels
