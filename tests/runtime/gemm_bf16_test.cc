// The bf16 GEMM (runtime/gemm_bf16.h) against a double-precision GEMM of the bf16-rounded
// operands: every layout (operands plain or transposed, with padded leading dimensions),
// batches, one and two threads, and dot_general nodes with bf16 operands through the executor.
// The tolerance is that of f32 accumulation, far below bf16's rounding of the operands (which
// the tests also see: the unrounded operands' product is measurably different).
#include <gtest/gtest.h>

#include <cmath>

#include "alpa/runtime/dtype_round.h"
#include "alpa/runtime/gemm_bf16.h"
#include "alpa/support/rng.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

struct Matrices {
  int64_t count, m, n, k;
  CBLAS_TRANSPOSE ta, tb;
  int64_t pad;  // extra leading-dimension elements
  std::vector<float> a, b;
  int64_t lda, ldb, sa, sb;  // leading dimensions, batch strides
  std::vector<int64_t> aoff, boff;
};

Matrices make(int64_t count, int64_t m, int64_t n, int64_t k, CBLAS_TRANSPOSE ta,
              CBLAS_TRANSPOSE tb, int64_t pad, uint64_t seed) {
  Matrices x{count, m, n, k, ta, tb, pad, {}, {}, 0, 0, 0, 0, {}, {}};
  x.lda = (ta == CblasNoTrans ? k : m) + pad;
  x.ldb = (tb == CblasNoTrans ? n : k) + pad;
  x.sa = x.lda * (ta == CblasNoTrans ? m : k);
  x.sb = x.ldb * (tb == CblasNoTrans ? k : n);
  Rng rng(seed);
  x.a.resize(static_cast<size_t>(count * x.sa));
  x.b.resize(static_cast<size_t>(count * x.sb));
  for (float& v : x.a) v = static_cast<float>(2 * rng.uniform() - 1);
  for (float& v : x.b) v = static_cast<float>(2 * rng.uniform() - 1);
  for (int64_t i = 0; i < count; ++i) {
    x.aoff.push_back(i * x.sa);
    x.boff.push_back(i * x.sb);
  }
  return x;
}

float at_a(const Matrices& x, int64_t i, int64_t r, int64_t c) {  // a[i][r][c], r < m, c < k
  return x.a[x.aoff[i] + (x.ta == CblasNoTrans ? r * x.lda + c : c * x.lda + r)];
}
float at_b(const Matrices& x, int64_t i, int64_t r, int64_t c) {  // b[i][r][c], r < k, c < n
  return x.b[x.boff[i] + (x.tb == CblasNoTrans ? r * x.ldb + c : c * x.ldb + r)];
}

// Checks bf16_batched_gemm against the double-precision product of the rounded operands.
void check(const Matrices& x, int threads, const std::string& what) {
  ThreadPool pool(threads);
  Workspace ws;
  KernelContext ctx{&pool, &ws};
  std::vector<float> c(static_cast<size_t>(x.count * x.m * x.n), NAN);
  kernels::bf16_batched_gemm(ctx, x.count, x.m, x.n, x.k, {x.a.data(), x.ta, x.lda, x.aoff.data()},
                             {x.b.data(), x.tb, x.ldb, x.boff.data()}, c.data());
  double worst = 0, unrounded_diff = 0;
  for (int64_t i = 0; i < x.count; ++i)
    for (int64_t r = 0; r < x.m; ++r)
      for (int64_t col = 0; col < x.n; ++col) {
        double want = 0, mag = 0, raw = 0;
        for (int64_t p = 0; p < x.k; ++p) {
          const double a = detail::round_bf16(at_a(x, i, r, p));
          const double b = detail::round_bf16(at_b(x, i, p, col));
          want += a * b;
          mag += std::abs(a * b);
          raw += static_cast<double>(at_a(x, i, r, p)) * at_b(x, i, p, col);
        }
        const double got = c[static_cast<size_t>((i * x.m + r) * x.n + col)];
        // f32 accumulation: at most k roundings of 2^-24 relative to the magnitude.
        const double tol = static_cast<double>(x.k + 2) * std::ldexp(1.0, -24) * mag + 1e-30;
        worst = std::max(worst, std::abs(got - want) / tol);
        unrounded_diff = std::max(unrounded_diff, std::abs(got - raw));
      }
  EXPECT_LE(worst, 1.0) << what << ": error / f32-accumulation bound";
  if (x.k >= 8) EXPECT_GT(unrounded_diff, 1e-4) << what << ": the operands were not rounded";
}

TEST(Bf16Gemm, MatchesRoundedOperandsInEveryLayout) {
  for (int threads : {1, 2})
    for (CBLAS_TRANSPOSE ta : {CblasNoTrans, CblasTrans})
      for (CBLAS_TRANSPOSE tb : {CblasNoTrans, CblasTrans})
        for (int64_t pad : {0, 3}) {
          const std::string what = cat("threads=", threads, " ta=", ta == CblasTrans,
                                       " tb=", tb == CblasTrans, " pad=", pad);
          check(make(1, 37, 29, 41, ta, tb, pad, 1), threads, "single " + what);
          check(make(1, 128, 160, 96, ta, tb, pad, 2), threads, "split " + what);
          check(make(5, 9, 11, 16, ta, tb, pad, 3), threads, "batch " + what);
          check(make(3, 64, 72, 80, ta, tb, pad, 4), threads, "split batch " + what);
        }
}

TEST(Bf16Gemm, LargeProductsSplitAcrossThreads) {
  check(make(1, 256, 64, 512, CblasNoTrans, CblasNoTrans, 0, 5), 2, "tall");
  check(make(1, 64, 256, 512, CblasNoTrans, CblasTrans, 0, 6), 2, "wide");
  check(make(8, 64, 64, 64, CblasTrans, CblasNoTrans, 0, 7), 2, "many");
  check(make(1, 1, 300, 50, CblasNoTrans, CblasNoTrans, 0, 8), 2, "row");
  check(make(1, 7, 5, 1, CblasNoTrans, CblasNoTrans, 0, 9), 2, "k = 1");
}

TEST(Bf16Gemm, NativeKernelWhereTheCpuHasBf16) {
  std::printf("bf16 GEMM kernel: %s\n", kernels::bf16_gemm_kernel().c_str());
  if (__builtin_cpu_supports("avx512bf16")) {
    EXPECT_TRUE(kernels::bf16_gemm_native()) << kernels::bf16_gemm_kernel();
    EXPECT_EQ(kernels::bf16_gemm_kernel().find("ref"), std::string::npos);
  }
}

// dot_general with bf16-typed operands holding unrounded values: the kernel rounds them.
TEST(Bf16Gemm, DotGeneralWithBf16OperandsRoundsAndAccumulatesInF32) {
  struct Case {
    Shape lhs, rhs;
    DotAttrs attrs;
  };
  const std::vector<Case> cases = {
      {{37, 29}, {29, 41}, {{}, {}, {1}, {0}}},
      {{29, 37}, {41, 29}, {{}, {}, {0}, {1}}},
      {{2, 9, 3, 8}, {2, 11, 3, 8}, {{0, 2}, {0, 2}, {3}, {3}}},   // attention q.k
      {{2, 3, 9, 11}, {2, 11, 3, 8}, {{0, 1}, {0, 2}, {3}, {1}}},  // attention p.v
      {{2, 7, 12}, {2, 7, 9}, {{}, {}, {0, 1}, {0, 1}}},           // weight gradient
      {{4, 6, 5}, {4, 5, 3}, {{}, {}, {0, 2}, {0, 1}}},            // copied operand
  };
  for (int threads : {1, 2})
    for (const Case& c : cases) {
      Builder b("dot");
      Value l = b.parameter("l", {DType::kBF16, c.lhs}, ParamRole::kInput);
      Value r = b.parameter("r", {DType::kBF16, c.rhs}, ParamRole::kInput);
      b.output("y", b.dot_general(l, r, c.attrs));
      Graph g = testing::finish(b);
      Tensor lt = testing::random_tensor({DType::kBF16, c.lhs}, 11);
      Tensor rt = testing::random_tensor({DType::kBF16, c.rhs}, 12);
      // The same product in f32 on operands rounded beforehand.
      Builder fb("dot_f32");
      Value fl = fb.parameter("l", testing::f32(c.lhs), ParamRole::kInput);
      Value fr = fb.parameter("r", testing::f32(c.rhs), ParamRole::kInput);
      fb.output("y", fb.dot_general(fl, fr, c.attrs));
      Graph fg = testing::finish(fb);
      Tensor lr = testing::random_tensor(testing::f32(c.lhs), 11);
      Tensor rr = testing::random_tensor(testing::f32(c.rhs), 12);
      for (int64_t i = 0; i < lr.size(); ++i) lr.data()[i] = detail::round_bf16(lr.data()[i]);
      for (int64_t i = 0; i < rr.size(); ++i) rr.data()[i] = detail::round_bf16(rr.data()[i]);
      const std::vector<float> got = testing::run_graph(g, {lt, rt}, threads)[0].to_vector();
      const std::vector<float> want = testing::run_graph(fg, {lr, rr}, threads)[0].to_vector();
      ASSERT_EQ(got.size(), want.size());
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 2e-5 * (1 + std::abs(want[i])))
            << "case " << (&c - cases.data()) << " element " << i << " threads " << threads;
    }
}

}  // namespace
}  // namespace alpa
