// Kernels of the source ops (parameter, constant, iota) and the elementwise ops (unary,
// binary, compare, select, convert), each applying its formula from scalar_ops.h.
//
// Elementwise operands all have the result's shape (broadcasting is an explicit op), so every
// kernel is one contiguous loop over [0, n), split across threads. The loops carry
// `#pragma GCC ivdep`: the output may alias an input at the same index (in-place execution),
// which is no loop-carried dependence, and the pragma lets the compiler vectorise without
// runtime overlap checks.
#include <algorithm>
#include <cmath>

#include "alpa/runtime/kernel_util.h"
#include "alpa/runtime/scalar_ops.h"

namespace alpa::kernels {
namespace {

template <typename F>
void map1(const KernelContext& ctx, const float* x, float* y, int64_t n, int64_t grain, F f) {
  parallel_for(ctx, n, grain, [&](int64_t b, int64_t e) {
#pragma GCC ivdep
    for (int64_t i = b; i < e; ++i) y[i] = f(x[i]);
  });
}

template <typename F>
void map2(const KernelContext& ctx, const float* a, const float* c, float* y, int64_t n,
          int64_t grain, F f) {
  parallel_for(ctx, n, grain, [&](int64_t b, int64_t e) {
#pragma GCC ivdep
    for (int64_t i = b; i < e; ++i) y[i] = f(a[i], c[i]);
  });
}

// ---- sources ------------------------------------------------------------------------------

Status parameter_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const>,
                        Tensor&) {
  return internal_error(cat("parameter ", ctx.node_ref(node),
                            " has no kernel: the executor binds it to the tensor passed in"));
}

Status constant_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const>,
                       Tensor& out) {
  const auto& values = node.attr<ConstantAttrs>().values;
  const DType dt = node.type.dtype;
  float* y = out.data();
  if (values.size() == 1) {
    fill(ctx, y, out.size(), round_to_dtype(static_cast<float>(values[0]), dt));
    return ok_status();
  }
  ALPA_CHECK(static_cast<int64_t>(values.size()) == out.size());
  for (int64_t i = 0; i < out.size(); ++i)
    y[i] = round_to_dtype(static_cast<float>(values[static_cast<size_t>(i)]), dt);
  return ok_status();
}

// out[..., k (at dim), ...] = k.  Viewed as (outer, extent, inner).
Status iota_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const>,
                   Tensor& out) {
  if (out.size() == 0) return ok_status();
  const int64_t dim = node.attr<IotaAttrs>().dim;
  const Shape& s = node.type.shape;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < static_cast<int64_t>(s.size()); ++d) inner *= s[d];
  const int64_t extent = s[dim];
  float* y = out.data();
  if (inner == 1) {
    // Iota along the last dim: each row is 0, 1, ..., extent - 1.
    parallel_for(ctx, outer, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(extent, 1)),
                 [&](int64_t b, int64_t e) {
                   for (int64_t o = b; o < e; ++o) {
                     float* row = y + o * extent;
                     for (int64_t k = 0; k < extent; ++k) row[k] = static_cast<float>(k);
                   }
                 });
    return ok_status();
  }
  parallel_for(ctx, outer * extent, std::max<int64_t>(1, kCopyGrain / inner),
               [&](int64_t b, int64_t e) {
                 for (int64_t r = b; r < e; ++r) {
                   const float v = static_cast<float>(r % extent);
                   float* row = y + r * inner;
                   for (int64_t i = 0; i < inner; ++i) row[i] = v;
                 }
               });
  return ok_status();
}

// ---- unary, binary, compare, select, convert: the formulas of scalar_ops.h ---------------

constexpr int64_t grain_of(OpKind op) {
  return scalar::is_costly(op) ? kCostlyGrain : kCheapGrain;
}

template <OpKind kOp>
Status unary_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                    Tensor& out) {
  if constexpr (kOp == OpKind::kStopGradient) {
    copy(ctx, in[0]->data(), out.data(), out.size());
  } else {
    map1(ctx, in[0]->data(), out.data(), out.size(), grain_of(kOp),
         [](float v) { return scalar::unary<kOp>(v); });
  }
  return ok_status();
}

// convert: the value as the result dtype stores it.
Status convert_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                      Tensor& out) {
  const float* x = in[0]->data();
  float* y = out.data();
  const int64_t n = out.size();
  // In place, in[0] is `out` and already carries the result type: take the operand's dtype
  // from the graph when there is one.
  const DType from =
      ctx.graph != nullptr ? ctx.graph->type(node.operands[0]).dtype : in[0]->dtype();
  if (scalar::convert_is_exact(from, node.type.dtype)) {
    copy(ctx, x, y, n);
    return ok_status();
  }
  scalar::with_convert(node.type.dtype, [&](auto to) {
    map1(ctx, x, y, n, kCheapGrain,
         [](float v) { return scalar::convert<decltype(to)::value>(v); });
  });
  return ok_status();
}

template <OpKind kOp>
Status binary_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  map2(ctx, in[0]->data(), in[1]->data(), out.data(), out.size(), grain_of(kOp),
       [](float u, float v) { return scalar::binary<kOp>(u, v); });
  return ok_status();
}

Status compare_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                      Tensor& out) {
  scalar::with_compare(node.attr<CompareAttrs>().dir, [&](auto dir) {
    map2(ctx, in[0]->data(), in[1]->data(), out.data(), out.size(), kCheapGrain,
         [](float u, float v) { return scalar::compare<decltype(dir)::value>(u, v); });
  });
  return ok_status();
}

Status select_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const float* p = in[0]->data();
  const float* t = in[1]->data();
  const float* f = in[2]->data();
  float* y = out.data();
  parallel_for(ctx, out.size(), kCheapGrain, [&](int64_t b, int64_t e) {
#pragma GCC ivdep
    for (int64_t i = b; i < e; ++i) {
      const float tv = t[i], fv = f[i];  // both loaded: lets the compiler use a blend
      y[i] = scalar::select(p[i], tv, fv);
    }
  });
  return ok_status();
}

}  // namespace

void register_elementwise_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kParameter, parameter_kernel);
  set_kernel(table, OpKind::kConstant, constant_kernel);
  set_kernel(table, OpKind::kIota, iota_kernel);
  set_kernel(table, OpKind::kNeg, unary_kernel<OpKind::kNeg>);
  set_kernel(table, OpKind::kExp, unary_kernel<OpKind::kExp>);
  set_kernel(table, OpKind::kLog, unary_kernel<OpKind::kLog>);
  set_kernel(table, OpKind::kTanh, unary_kernel<OpKind::kTanh>);
  set_kernel(table, OpKind::kSqrt, unary_kernel<OpKind::kSqrt>);
  set_kernel(table, OpKind::kRsqrt, unary_kernel<OpKind::kRsqrt>);
  set_kernel(table, OpKind::kErf, unary_kernel<OpKind::kErf>);
  set_kernel(table, OpKind::kStopGradient, unary_kernel<OpKind::kStopGradient>);
  set_kernel(table, OpKind::kConvert, convert_kernel);
  set_kernel(table, OpKind::kAdd, binary_kernel<OpKind::kAdd>);
  set_kernel(table, OpKind::kSub, binary_kernel<OpKind::kSub>);
  set_kernel(table, OpKind::kMul, binary_kernel<OpKind::kMul>);
  set_kernel(table, OpKind::kDiv, binary_kernel<OpKind::kDiv>);
  set_kernel(table, OpKind::kMax, binary_kernel<OpKind::kMax>);
  set_kernel(table, OpKind::kMin, binary_kernel<OpKind::kMin>);
  set_kernel(table, OpKind::kPow, binary_kernel<OpKind::kPow>);
  set_kernel(table, OpKind::kCompare, compare_kernel);
  set_kernel(table, OpKind::kSelect, select_kernel);
}

}  // namespace alpa::kernels
