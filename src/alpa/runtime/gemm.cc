#include "alpa/runtime/gemm.h"

#include <algorithm>

#include "alpa/support/check.h"

namespace alpa::kernels {
namespace {

void sgemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m, int64_t n, int64_t k, const float* a,
           int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  constexpr int64_t kIntMax = 0x7fffffff;  // cblas takes int extents and strides
  ALPA_CHECK(m <= kIntMax && n <= kIntMax && k <= kIntMax && lda <= kIntMax && ldb <= kIntMax &&
             ldc <= kIntMax)
      << "GEMM exceeds cblas's int range";
  if (m == 1) {
    // One row (a decode step at batch 1): a matrix-vector product reads B once, where sgemm
    // would first pack all of it. c = a B: row-major B [k, n] is B^T's column-major layout.
    const int incx = ta == CblasNoTrans ? 1 : static_cast<int>(lda);
    if (tb == CblasNoTrans)
      cblas_sgemv(CblasRowMajor, CblasTrans, static_cast<int>(k), static_cast<int>(n), 1.0f, b,
                  static_cast<int>(ldb), a, incx, beta, c, 1);
    else
      cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, b,
                  static_cast<int>(ldb), a, incx, beta, c, 1);
    return;
  }
  cblas_sgemm(CblasRowMajor, ta, tb, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta, c,
              static_cast<int>(ldc));
}

// Below this many multiply-adds a product stays on one thread.
constexpr int64_t kSplitWork = int64_t{1} << 20;

}  // namespace

void parallel_gemm(const KernelContext& ctx, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int64_t m,
                   int64_t n, int64_t k, const float* a, int64_t lda, const float* b, int64_t ldb,
                   float beta, float* c, int64_t ldc) {
  const int threads = ctx.threads->num_threads();
  if (threads <= 1 || m * n * k < kSplitWork || (m < 32 && n < 32)) {
    sgemm(ta, tb, m, n, k, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // One tile of C per thread along the longer side, in multiples of 16 rows/columns.
  const bool split_n = n >= m;
  const int64_t extent = split_n ? n : m;
  const int64_t tile = (extent / threads + 15) / 16 * 16;
  const int64_t tiles = (extent + tile - 1) / tile;
  ctx.threads->parallel_for(tiles, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = t * tile, len = std::min(tile, extent - lo);
      if (split_n) {
        const float* bt = tb == CblasNoTrans ? b + lo : b + lo * ldb;
        sgemm(ta, tb, m, len, k, a, lda, bt, ldb, beta, c + lo, ldc);
      } else {
        const float* at = ta == CblasNoTrans ? a + lo * lda : a + lo;
        sgemm(ta, tb, len, n, k, at, lda, b, ldb, beta, c + lo * ldc, ldc);
      }
    }
  });
}

void batched_gemm(const KernelContext& ctx, int64_t count,
                  const std::function<void(int64_t, const KernelContext&)>& gemm) {
  const int threads = ctx.threads->num_threads();
  if (threads > 1 && count >= 2 * threads) {
    // One product per task; inside a task the products run on one thread.
    ThreadPool single(1);
    KernelContext one = ctx;
    one.threads = &single;
    ctx.threads->parallel_for(count, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; ++i) gemm(i, one);
    });
    return;
  }
  for (int64_t i = 0; i < count; ++i) gemm(i, ctx);
}

}  // namespace alpa::kernels
