// Helpers shared by the kernel files (internal to the runtime): strides, dim collapsing,
// strided copies, parallel loops, and the per-family registration functions that fill the
// one kernel table in kernels.cc.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "alpa/runtime/kernels.h"

namespace alpa::kernels {

// Loop grains (elements per chunk) below which a loop stays on one thread: a thread wake-up
// costs a few microseconds, about what 32K adds or 4K transcendental calls take.
inline constexpr int64_t kCheapGrain = int64_t{1} << 15;
inline constexpr int64_t kCopyGrain = int64_t{1} << 16;
inline constexpr int64_t kCostlyGrain = int64_t{1} << 12;

// Row-major strides (in elements) of `shape`.
std::vector<int64_t> row_major_strides(const Shape& shape);

inline void parallel_for(const KernelContext& ctx, int64_t n, int64_t grain,
                         const std::function<void(int64_t, int64_t)>& body) {
  ctx.threads->parallel_for(n, grain, body);
}

// out[i_0, ..., i_n] = in[sum_d i_d * in_strides[d]] for the row-major index of `shape`, out
// contiguous. Strides may be 0 (broadcast) or any permutation (transpose). Dims are
// collapsed first; then rows are copied with memcpy when the inner stride is 1, filled when
// it is 0, tiled 2-D transposes handle an inner dim that is not contiguous in `in`.
void strided_copy(const KernelContext& ctx, const float* in, std::span<const int64_t> shape,
                  std::span<const int64_t> in_strides, float* out);

// out[0:n] = in[0:n], in parallel (no-op when out == in).
void copy(const KernelContext& ctx, const float* in, float* out, int64_t n);
// out[0:n] = v, in parallel.
void fill(const KernelContext& ctx, float* out, int64_t n, float v);

// Registration: each family file sets the entries of its ops.
void register_elementwise_kernels(KernelFn* table);
void register_movement_kernels(KernelFn* table);
void register_reduce_kernels(KernelFn* table);
void register_dot_kernels(KernelFn* table);
void register_conv_kernels(KernelFn* table);
void register_indexing_kernels(KernelFn* table);
void register_collective_kernels(KernelFn* table);

inline void set_kernel(KernelFn* table, OpKind op, KernelFn fn) {
  table[static_cast<int>(op)] = fn;
}

}  // namespace alpa::kernels
