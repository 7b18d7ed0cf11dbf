// SGEMM across the executor's threads (internal to the runtime).
//
// OpenBLAS runs single-threaded inside the runtime; parallelism comes from the executor's own
// ThreadPool, whose threads sleep between loops. (OpenBLAS's pthread workers busy-wait after
// each call and steal the cores from the elementwise loops that follow; with one BLAS thread
// per caller the same code also serves one executor per device thread.) A large product is
// split into one tile of C per thread, along its longer side; a batch of many small products
// (attention) is spread across threads one product each.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <functional>

#include "alpa/runtime/kernels.h"

namespace alpa::kernels {

// C[m, n] = A[m, k] B[k, n] + beta C, row-major; A and B as cblas describes them (trans, ld).
void parallel_gemm(const KernelContext& ctx, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m,
                   int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc);

// Runs gemm(i) for i in [0, count): in parallel across i when count is large enough to keep
// every thread busy, otherwise one after another with each product split across threads.
// `gemm(i, ctx_for_split)` must call parallel_gemm with the context it is given.
void batched_gemm(const KernelContext& ctx, int64_t count,
                  const std::function<void(int64_t, const KernelContext&)>& gemm);

}  // namespace alpa::kernels
