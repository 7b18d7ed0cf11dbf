// Kernels of the source ops (parameter, constant, iota) and the elementwise ops (unary,
// binary, compare, select, convert).
//
// Elementwise operands all have the result's shape (broadcasting is an explicit op), so every
// kernel is one contiguous loop over [0, n), split across threads. exp, log, tanh and erf use
// the vectorisable implementations of fast_math.h (<= 1.31 ulp); pow is std::pow. The loops carry
// `#pragma GCC ivdep`: the output may alias an input at the same index (in-place execution),
// which is no loop-carried dependence, and the pragma lets the compiler vectorise without
// runtime overlap checks.
#include <algorithm>
#include <cmath>

#include "alpa/runtime/dtype_round.h"
#include "alpa/runtime/fast_math.h"
#include "alpa/runtime/kernel_util.h"

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

// ---- unary --------------------------------------------------------------------------------

template <OpKind kOp>
Status unary_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                    Tensor& out) {
  const float* x = in[0]->data();
  float* y = out.data();
  const int64_t n = out.size();
  if constexpr (kOp == OpKind::kNeg) {
    map1(ctx, x, y, n, kCheapGrain, [](float v) { return -v; });
  } else if constexpr (kOp == OpKind::kExp) {
    map1(ctx, x, y, n, kCostlyGrain, [](float v) { return detail::fast_exp(v); });
  } else if constexpr (kOp == OpKind::kLog) {
    map1(ctx, x, y, n, kCostlyGrain, [](float v) { return detail::fast_log(v); });
  } else if constexpr (kOp == OpKind::kTanh) {
    map1(ctx, x, y, n, kCostlyGrain, [](float v) { return detail::fast_tanh(v); });
  } else if constexpr (kOp == OpKind::kSqrt) {
    map1(ctx, x, y, n, kCheapGrain, [](float v) { return std::sqrt(v); });
  } else if constexpr (kOp == OpKind::kRsqrt) {
    map1(ctx, x, y, n, kCheapGrain, [](float v) { return 1.0f / std::sqrt(v); });
  } else if constexpr (kOp == OpKind::kStopGradient) {
    copy(ctx, x, y, n);
  } else if constexpr (kOp == OpKind::kErf) {
    map1(ctx, x, y, n, kCostlyGrain, [](float v) { return detail::fast_erf(v); });
  }
  return ok_status();
}

// convert: the value as the result dtype stores it (dtype_round.h).
Status convert_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                      Tensor& out) {
  const float* x = in[0]->data();
  float* y = out.data();
  const int64_t n = out.size();
  // In place, in[0] is `out` and already carries the result type: take the operand's dtype
  // from the graph when there is one.
  const DType from =
      ctx.graph != nullptr ? ctx.graph->type(node.operands[0]).dtype : in[0]->dtype();
  const DType to = node.type.dtype;
  // Values of a narrower type already fit the wider one: copy.
  const bool exact = to == DType::kF32 || from == to || from == DType::kPred;
  if (exact) {
    copy(ctx, x, y, n);
    return ok_status();
  }
  switch (to) {
    case DType::kF16:
      map1(ctx, x, y, n, kCheapGrain, [](float v) { return detail::round_f16(v); });
      break;
    case DType::kBF16:
      map1(ctx, x, y, n, kCheapGrain, [](float v) { return detail::round_bf16(v); });
      break;
    case DType::kI32:
      map1(ctx, x, y, n, kCheapGrain, [](float v) { return detail::round_i32(v); });
      break;
    case DType::kPred:
      map1(ctx, x, y, n, kCheapGrain, [](float v) { return detail::round_pred(v); });
      break;
    case DType::kF32:
      break;
  }
  return ok_status();
}

// ---- binary -------------------------------------------------------------------------------

template <OpKind kOp>
Status binary_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const float* a = in[0]->data();
  const float* c = in[1]->data();
  float* y = out.data();
  const int64_t n = out.size();
  if constexpr (kOp == OpKind::kAdd) {
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return u + v; });
  } else if constexpr (kOp == OpKind::kSub) {
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return u - v; });
  } else if constexpr (kOp == OpKind::kMul) {
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return u * v; });
  } else if constexpr (kOp == OpKind::kDiv) {
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return u / v; });
  } else if constexpr (kOp == OpKind::kMax) {
    // NaN in either operand propagates.
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return (u != u || u > v) ? u : v; });
  } else if constexpr (kOp == OpKind::kMin) {
    map2(ctx, a, c, y, n, kCheapGrain, [](float u, float v) { return (u != u || u < v) ? u : v; });
  } else if constexpr (kOp == OpKind::kPow) {
    map2(ctx, a, c, y, n, kCostlyGrain, [](float u, float v) { return std::pow(u, v); });
  }
  return ok_status();
}

Status compare_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                      Tensor& out) {
  const float* a = in[0]->data();
  const float* c = in[1]->data();
  float* y = out.data();
  const int64_t n = out.size();
  auto run = [&](auto pred) {
    map2(ctx, a, c, y, n, kCheapGrain,
         [pred](float u, float v) { return pred(u, v) ? 1.0f : 0.0f; });
  };
  switch (node.attr<CompareAttrs>().dir) {
    case CompareDir::kEq:
      run([](float u, float v) { return u == v; });
      break;
    case CompareDir::kNe:
      run([](float u, float v) { return u != v; });
      break;
    case CompareDir::kLt:
      run([](float u, float v) { return u < v; });
      break;
    case CompareDir::kLe:
      run([](float u, float v) { return u <= v; });
      break;
    case CompareDir::kGt:
      run([](float u, float v) { return u > v; });
      break;
    case CompareDir::kGe:
      run([](float u, float v) { return u >= v; });
      break;
  }
  return ok_status();
}

// select(pred, on_true, on_false): nonzero pred picks on_true.
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
      y[i] = p[i] != 0.0f ? tv : fv;
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
