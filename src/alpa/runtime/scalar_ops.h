// The scalar formula of every elementwise op, written once. The elementwise kernels
// (kernels_elementwise.cc) and the fused loops (fusion.cc) both apply these functions, so a
// fused and an unfused run compute the same float operations per element (bit-identical
// results), and a new elementwise op gets its formula here and nowhere else.
//
// The formulas are templates on the op (one instantiation per op, inlined into the loop so
// the compiler vectorises it); the with_* functions turn an op known only at run time into
// that instantiation: with_unary(op, [&](auto k) { loop(scalar::unary<k()>); }).
//
// exp, log, tanh and erf use the vectorisable implementations of fast_math.h (<= 1.31 ulp);
// pow is std::pow; max and min propagate NaN from either operand; convert rounds as the target
// dtype stores a value (dtype_round.h).
#pragma once

#include <cmath>
#include <type_traits>

#include "alpa/ir/attrs.h"
#include "alpa/ir/op.h"
#include "alpa/ir/types.h"
#include "alpa/runtime/dtype_round.h"
#include "alpa/runtime/fast_math.h"
#include "alpa/support/check.h"

namespace alpa::scalar {

template <OpKind kOp>
inline float unary(float v) {
  if constexpr (kOp == OpKind::kNeg) return -v;
  if constexpr (kOp == OpKind::kExp) return detail::fast_exp(v);
  if constexpr (kOp == OpKind::kLog) return detail::fast_log(v);
  if constexpr (kOp == OpKind::kTanh) return detail::fast_tanh(v);
  if constexpr (kOp == OpKind::kSqrt) return std::sqrt(v);
  if constexpr (kOp == OpKind::kRsqrt) return 1.0f / std::sqrt(v);
  if constexpr (kOp == OpKind::kErf) return detail::fast_erf(v);
  if constexpr (kOp == OpKind::kStopGradient) return v;
}

template <OpKind kOp>
inline float binary(float u, float v) {
  if constexpr (kOp == OpKind::kAdd) return u + v;
  if constexpr (kOp == OpKind::kSub) return u - v;
  if constexpr (kOp == OpKind::kMul) return u * v;
  if constexpr (kOp == OpKind::kDiv) return u / v;
  if constexpr (kOp == OpKind::kMax) return (u != u || u > v) ? u : v;
  if constexpr (kOp == OpKind::kMin) return (u != u || u < v) ? u : v;
  if constexpr (kOp == OpKind::kPow) return std::pow(u, v);
}

template <CompareDir kDir>
inline float compare(float u, float v) {
  bool r = false;
  if constexpr (kDir == CompareDir::kEq) r = u == v;
  if constexpr (kDir == CompareDir::kNe) r = u != v;
  if constexpr (kDir == CompareDir::kLt) r = u < v;
  if constexpr (kDir == CompareDir::kLe) r = u <= v;
  if constexpr (kDir == CompareDir::kGt) r = u > v;
  if constexpr (kDir == CompareDir::kGe) r = u >= v;
  return r ? 1.0f : 0.0f;
}

// select(pred, on_true, on_false): nonzero pred picks on_true.
inline float select(float p, float t, float f) {
  return p != 0.0f ? t : f;
}

// The value as dtype kTo stores it (kF32: unchanged).
template <DType kTo>
inline float convert(float v) {
  if constexpr (kTo == DType::kF16) return detail::round_f16(v);
  if constexpr (kTo == DType::kBF16) return detail::round_bf16(v);
  if constexpr (kTo == DType::kI32) return detail::round_i32(v);
  if constexpr (kTo == DType::kPred) return detail::round_pred(v);
  if constexpr (kTo == DType::kF32) return v;
}

// Whether converting from -> to changes no value (a copy does).
constexpr bool convert_is_exact(DType from, DType to) {
  return to == DType::kF32 || from == to || from == DType::kPred;
}

// Formulas that cost a polynomial per element (others one or two instructions): kernels give
// threads smaller chunks of them.
constexpr bool is_costly(OpKind op) {
  return op == OpKind::kExp || op == OpKind::kLog || op == OpKind::kTanh || op == OpKind::kErf ||
         op == OpKind::kPow;
}

template <OpKind kOp>
using OpConstant = std::integral_constant<OpKind, kOp>;

// f(OpConstant<op>{}) for a unary op with a formula above.
template <typename F>
void with_unary(OpKind op, F&& f) {
  switch (op) {
    case OpKind::kNeg: return f(OpConstant<OpKind::kNeg>{});
    case OpKind::kExp: return f(OpConstant<OpKind::kExp>{});
    case OpKind::kLog: return f(OpConstant<OpKind::kLog>{});
    case OpKind::kTanh: return f(OpConstant<OpKind::kTanh>{});
    case OpKind::kSqrt: return f(OpConstant<OpKind::kSqrt>{});
    case OpKind::kRsqrt: return f(OpConstant<OpKind::kRsqrt>{});
    case OpKind::kErf: return f(OpConstant<OpKind::kErf>{});
    case OpKind::kStopGradient: return f(OpConstant<OpKind::kStopGradient>{});
    default: ALPA_UNREACHABLE() << "no unary formula for " << op_name(op);
  }
}

template <typename F>
void with_binary(OpKind op, F&& f) {
  switch (op) {
    case OpKind::kAdd: return f(OpConstant<OpKind::kAdd>{});
    case OpKind::kSub: return f(OpConstant<OpKind::kSub>{});
    case OpKind::kMul: return f(OpConstant<OpKind::kMul>{});
    case OpKind::kDiv: return f(OpConstant<OpKind::kDiv>{});
    case OpKind::kMax: return f(OpConstant<OpKind::kMax>{});
    case OpKind::kMin: return f(OpConstant<OpKind::kMin>{});
    case OpKind::kPow: return f(OpConstant<OpKind::kPow>{});
    default: ALPA_UNREACHABLE() << "no binary formula for " << op_name(op);
  }
}

template <typename F>
void with_compare(CompareDir dir, F&& f) {
  switch (dir) {
    case CompareDir::kEq: return f(std::integral_constant<CompareDir, CompareDir::kEq>{});
    case CompareDir::kNe: return f(std::integral_constant<CompareDir, CompareDir::kNe>{});
    case CompareDir::kLt: return f(std::integral_constant<CompareDir, CompareDir::kLt>{});
    case CompareDir::kLe: return f(std::integral_constant<CompareDir, CompareDir::kLe>{});
    case CompareDir::kGt: return f(std::integral_constant<CompareDir, CompareDir::kGt>{});
    case CompareDir::kGe: return f(std::integral_constant<CompareDir, CompareDir::kGe>{});
  }
}

template <typename F>
void with_convert(DType to, F&& f) {
  switch (to) {
    case DType::kF32: return f(std::integral_constant<DType, DType::kF32>{});
    case DType::kF16: return f(std::integral_constant<DType, DType::kF16>{});
    case DType::kBF16: return f(std::integral_constant<DType, DType::kBF16>{});
    case DType::kI32: return f(std::integral_constant<DType, DType::kI32>{});
    case DType::kPred: return f(std::integral_constant<DType, DType::kPred>{});
  }
}

}  // namespace alpa::scalar
