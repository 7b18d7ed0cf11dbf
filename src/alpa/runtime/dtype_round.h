// Rounding of fp32 values to what another dtype stores, as branch-light inline functions the
// compiler vectorises (used by `convert` and by round_to_dtype in tensor.h).
//
// f16 and bf16 round to nearest, ties to even, in the format's own precision; results are
// returned as floats (exactly representable in the target format). NaN stays NaN.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace alpa::detail {

// bf16: keep the top 16 bits of the float, rounding the low 16 to nearest-even. The carry
// propagates into the exponent, so values above the bf16 maximum become inf.
inline float round_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  const bool nan = (u & 0x7FFFFFFFu) > 0x7F800000u;
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  u = nan ? (u | 0x00400000u) : rounded;
  return std::bit_cast<float>(u);
}

// f16: 10 mantissa bits, exponent range [-14, 15], subnormal quantum 2^-24, max 65504.
inline float round_f16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t mag = u & 0x7FFFFFFFu;
  const uint32_t sign = u & 0x80000000u;
  // Normal range: round the low 13 mantissa bits to nearest-even.
  const float normal = std::bit_cast<float>((u + 0x0FFFu + ((u >> 13) & 1u)) & 0xFFFFE000u);
  // Subnormal range (|x| < 2^-14): round to a multiple of 2^-24. 0.75 + x lies in [0.5, 1)
  // where the float spacing is exactly 2^-24, so the addition rounds as f16 would.
  // (Without -ffast-math the compiler may not fold (x + 0.75f) - 0.75f into x.)
  const float sub = (x + 0.75f) - 0.75f;
  float r = mag < 0x38800000u ? sub : normal;                             // 2^-14
  r = mag >= 0x477FF000u ? std::bit_cast<float>(sign | 0x7F800000u) : r;  // >= 65520 -> inf
  r = mag > 0x7F800000u ? x : r;                                          // NaN
  return r;
}

// i32: truncation toward zero; NaN becomes 0.
inline float round_i32(float x) {
  return x != x ? 0.0f : std::trunc(x);
}

inline float round_pred(float x) {
  return x != 0.0f ? 1.0f : 0.0f;
}

}  // namespace alpa::detail
