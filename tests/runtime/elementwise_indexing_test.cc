// Elementwise ops (unary, binary, compare directions, select, convert rounding), sources (iota,
// constant), gather / scatter_add along axis 0 and 1, and the kernel table's completeness.
#include <algorithm>
#include <cstring>

#include "alpa/runtime/kernels.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;
using testing::i32;

TEST(KernelTable, EveryOpHasAKernel) {
  for (int i = 0; i < kNumOps; ++i) {
    const OpKind op = static_cast<OpKind>(i);
    EXPECT_NE(kernel_for(op), nullptr) << "no kernel for " << op_name(op);
  }
}

// Ulps between got and the double-precision want, in units of the float spacing at want.
double ulp_error(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0.0 : 1e30;
  if (std::isinf(want) || got == want) return got == want ? 0.0 : 1e30;
  const float w = static_cast<float>(want);
  const double spacing = std::max<double>(std::fabs(std::nextafter(w, INFINITY) - w), 1.4e-45);
  return std::fabs(got - want) / spacing;
}

TEST(Elementwise, UnaryAndBinaryMatchReferences) {
  const int64_t n = 100003;  // several chunks on two threads
  Builder b("ew");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  Value y = b.parameter("y", f32({n}), ParamRole::kInput);
  b.output("neg", b.neg(x));
  b.output("sqrt", b.sqrt(y));
  b.output("rsqrt", b.rsqrt(y));
  b.output("add", b.add(x, y));
  b.output("sub", b.sub(x, y));
  b.output("mul", b.mul(x, y));
  b.output("div", b.div(x, y));
  b.output("max", b.max(x, y));
  b.output("min", b.min(x, y));
  b.output("pow", b.pow(y, x));
  b.output("exp", b.exp(x));
  b.output("log", b.log(y));
  b.output("tanh", b.tanh(x));
  b.output("erf", b.erf(x));
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32({n}), 1, -3.0f, 3.0f);
  Tensor yv = testing::random_tensor(f32({n}), 2, 0.1f, 4.0f);
  const float* xp = xv.data();
  const float* yp = yv.data();
  using F = float (*)(float, float);
  // Exact: computed exactly as IEEE float operations (pow: std::pow itself).
  const std::vector<F> exact = {
      [](float a, float) { return -a; },
      [](float, float c) { return std::sqrt(c); },
      [](float, float c) { return 1.0f / std::sqrt(c); },
      [](float a, float c) { return a + c; },
      [](float a, float c) { return a - c; },
      [](float a, float c) { return a * c; },
      [](float a, float c) { return a / c; },
      [](float a, float c) { return a > c ? a : c; },
      [](float a, float c) { return a < c ? a : c; },
      [](float a, float c) { return std::pow(c, a); },
  };
  // Transcendentals (fast_math.h): within 2 ulp of double precision.
  using D = double (*)(double, double);
  const std::vector<D> approx = {
      [](double a, double) { return std::exp(a); },
      [](double, double c) { return std::log(c); },
      [](double a, double) { return std::tanh(a); },
      [](double a, double) { return std::erf(a); },
  };
  for (int threads : {1, 2}) {
    std::vector<Tensor> out = testing::run_graph(g, {xv, yv}, threads);
    ASSERT_EQ(out.size(), exact.size() + approx.size());
    for (size_t k = 0; k < exact.size(); ++k) {
      std::vector<float> want(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) want[i] = exact[k](xp[i], yp[i]);
      testing::expect_equal(out[k].to_vector(), want, g.outputs()[k].name);
    }
    for (size_t k = 0; k < approx.size(); ++k) {
      const Tensor& o = out[exact.size() + k];
      double worst = 0;
      for (int64_t i = 0; i < n; ++i)
        worst = std::max(worst, ulp_error(o.data()[i], approx[k](xp[i], yp[i])));
      EXPECT_LE(worst, 2.0) << g.outputs()[exact.size() + k].name;
    }
  }
}

TEST(Elementwise, TranscendentalsAreAccurateOverTheWholeRange) {
  // Magnitudes from subnormal to overflow, both signs, and the special values.
  Rng rng(9);
  std::vector<float> xs = {0.0f,  -0.0f,  INFINITY, -INFINITY, NAN,  1e-45f, -1e-45f, 1e-40f,
                           88.7f, 88.73f, -103.9f,  -104.0f,   1.0f, 0.625f, -0.625f, 0.9277f};
  while (xs.size() < 200000) {
    const float mag =
        static_cast<float>(std::ldexp(1.0 + rng.uniform(), static_cast<int>(rng.below(260)) - 150));
    xs.push_back(rng.below(2) ? mag : -mag);
  }
  const int64_t n = static_cast<int64_t>(xs.size());
  Builder b("transcendental");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  b.output("exp", b.exp(x));
  b.output("log", b.log(x));
  b.output("tanh", b.tanh(x));
  b.output("erf", b.erf(x));
  Graph g = testing::finish(b);
  std::vector<Tensor> out = testing::run_graph(g, {Tensor::from_values(f32({n}), xs)}, 2);
  ASSERT_EQ(out.size(), 4u);
  using D = double (*)(double);
  const D ref[] = {[](double v) { return std::exp(v); }, [](double v) { return std::log(v); },
                   [](double v) { return std::tanh(v); }, [](double v) { return std::erf(v); }};
  for (size_t k = 0; k < 4; ++k) {
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = ulp_error(out[k].data()[i], ref[k](xs[static_cast<size_t>(i)]));
      if (e > worst) {
        worst = e;
        at = i;
      }
    }
    EXPECT_LE(worst, 2.0) << g.outputs()[k].name << " at x = " << xs[static_cast<size_t>(at)]
                          << ": got " << out[k].data()[at];
  }
}

TEST(Elementwise, CompareDirectionsAndSelect) {
  Builder b("cmp");
  Value a = b.parameter("a", f32({4}), ParamRole::kInput);
  Value c = b.parameter("c", f32({4}), ParamRole::kInput);
  for (CompareDir d : {CompareDir::kEq, CompareDir::kNe, CompareDir::kLt, CompareDir::kLe,
                       CompareDir::kGt, CompareDir::kGe})
    b.output(std::string(EnumNames<CompareDir>::kNames[static_cast<int>(d)]), b.compare(a, c, d));
  b.output("select", b.select(b.compare(a, c, CompareDir::kLt), a, c));
  Graph g = testing::finish(b);
  std::vector<Tensor> out = testing::run_graph(g, {Tensor::from_values(f32({4}), {1, 2, 3, -1}),
                                                   Tensor::from_values(f32({4}), {2, 2, 2, -2})});
  ASSERT_EQ(out.size(), 7u);
  testing::expect_equal(out[0].to_vector(), {0, 1, 0, 0}, "eq");
  testing::expect_equal(out[1].to_vector(), {1, 0, 1, 1}, "ne");
  testing::expect_equal(out[2].to_vector(), {1, 0, 0, 0}, "lt");
  testing::expect_equal(out[3].to_vector(), {1, 1, 0, 0}, "le");
  testing::expect_equal(out[4].to_vector(), {0, 0, 1, 1}, "gt");
  testing::expect_equal(out[5].to_vector(), {0, 1, 1, 1}, "ge");
  EXPECT_EQ(out[0].dtype(), DType::kPred);
  testing::expect_equal(out[6].to_vector(), {1, 2, 2, -2}, "select (elementwise min)");
}

TEST(Elementwise, SelectTreatsAnyNonzeroAsTrue) {
  Builder b("sel");
  Value p = b.parameter("p", TensorType{DType::kPred, {4}}, ParamRole::kInput);
  Value t = b.parameter("t", f32({4}), ParamRole::kInput);
  Value f = b.parameter("f", f32({4}), ParamRole::kInput);
  b.output("y", b.select(p, t, f));
  Graph g = testing::finish(b);
  std::vector<Tensor> out =
      testing::run_graph(g, {Tensor::from_values(TensorType{DType::kPred, {4}}, {1, 0, 2, -1}),
                             Tensor::from_values(f32({4}), {10, 11, 12, 13}),
                             Tensor::from_values(f32({4}), {20, 21, 22, 23})});
  testing::expect_equal(out.at(0).to_vector(), {10, 21, 12, 13}, "select");
}

// ---- convert ------------------------------------------------------------------------------

std::vector<float> convert(const std::vector<float>& xs, DType to) {
  const int64_t n = static_cast<int64_t>(xs.size());
  Builder b("convert");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  b.output("y", b.convert(x, to));
  Graph g = testing::finish(b);
  std::vector<Tensor> out = testing::run_graph(g, {Tensor::from_values(f32({n}), xs)});
  return out.empty() ? std::vector<float>{} : out[0].to_vector();
}

TEST(Convert, RoundsToF16NearestEven) {
  const float tiny = 1e-7f;
  const float u = 0.0009765625f;  // 2^-10, the f16 spacing at 1
  testing::expect_equal(
      convert({1.0009765625f + tiny, 1.0f + u / 2, 1.0f + 3 * u / 2, 1.0f + u / 2 + tiny, 65519.0f,
               65520.0f, -70000.0f, 1e-8f, 3e-8f, -1e-5f, 0.1f, 2049.0f},
              DType::kF16),
      {1.0009765625f, 1.0f, 1.0f + 2 * u, 1.0f + u, 65504.0f, INFINITY, -INFINITY, 0.0f,
       5.9604644775390625e-8f, -1.0013580322265625e-05f, 0.0999755859375f, 2048.0f},
      "f16");
}

TEST(Convert, F16MatchesTheHardwareConversion) {
  // _Float16 conversion rounds to nearest-even in hardware / libgcc: compare over many
  // magnitudes, including subnormals and overflow.
  Rng rng(3);
  std::vector<float> xs;
  for (int i = 0; i < 20000; ++i) {
    const double mag = std::ldexp(rng.uniform() + 0.5, static_cast<int>(rng.below(50)) - 30);
    xs.push_back(static_cast<float>(rng.below(2) ? mag : -mag));
  }
  std::vector<float> want;
  for (float x : xs) want.push_back(static_cast<float>(static_cast<_Float16>(x)));
  testing::expect_equal(convert(xs, DType::kF16), want, "f16 sweep");
}

TEST(Convert, RoundsToBf16NearestEven) {
  const float u = 0.0078125f;  // 2^-7, the bf16 spacing at 1
  testing::expect_equal(
      convert({1.0f + u / 2, 1.0f + 3 * u / 2, 1.0f + u / 2 + 1e-6f, 3.0e38f, 3.4e38f, -2.5f},
              DType::kBF16),
      {1.0f, 1.0f + 2 * u, 1.0f + u, 3.00405527e38f, INFINITY, -2.5f}, "bf16");
}

TEST(Convert, ToI32TruncatesAndToPredTestsNonzero) {
  testing::expect_equal(convert({2.7f, -2.7f, -0.5f, 3.0f, 16777216.0f}, DType::kI32),
                        {2, -2, 0, 3, 16777216.0f}, "i32");
  testing::expect_equal(convert({0.0f, -3.0f, 0.25f, -0.0f}, DType::kPred), {0, 1, 1, 0}, "pred");
}

// ---- sources ------------------------------------------------------------------------------

TEST(Sources, IotaAndConstant) {
  Builder b("src");
  b.output("i0", b.iota(i32({3, 4}), 0));
  b.output("i1", b.iota(f32({3, 4}), 1));
  b.output("splat", b.constant(2.5, f32({2, 2})));
  b.output("values", b.constant(std::vector<double>{1, 2, 3}, f32({3})));
  Graph g = testing::finish(b);
  std::vector<Tensor> out = testing::run_graph(g, {});
  ASSERT_EQ(out.size(), 4u);
  testing::expect_equal(out[0].to_vector(), {0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2}, "iota dim 0");
  testing::expect_equal(out[1].to_vector(), {0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3}, "iota dim 1");
  testing::expect_equal(out[2].to_vector(), {2.5f, 2.5f, 2.5f, 2.5f}, "splat");
  testing::expect_equal(out[3].to_vector(), {1, 2, 3}, "values");
}

// ---- gather / scatter_add -----------------------------------------------------------------

TEST(Indexing, GatherAndScatterAddAxis0) {
  // table [10, 4], indices [2, 3] -> [2, 3, 4]; scatter back with repeated indices.
  Builder b("emb");
  Value table = b.parameter("table", f32({10, 4}), ParamRole::kWeight);
  Value idx = b.parameter("idx", i32({2, 3}), ParamRole::kInput);
  Value upd = b.parameter("upd", f32({2, 3, 4}), ParamRole::kInput);
  b.output("g", b.gather(table, idx, 0));
  b.output("s", b.scatter_add(idx, upd, 0, f32({10, 4})));
  Graph g = testing::finish(b);
  const std::vector<float> ids = {3, 0, 9, 3, 3, 7};
  Tensor tv = testing::random_tensor(f32({10, 4}), 1);
  Tensor uv = testing::random_tensor(f32({2, 3, 4}), 2);
  for (int threads : {1, 2}) {
    std::vector<Tensor> out =
        testing::run_graph(g, {tv, Tensor::from_values(i32({2, 3}), ids), uv}, threads);
    ASSERT_EQ(out.size(), 2u);
    std::vector<float> gw, sw(40, 0.0f);
    for (size_t i = 0; i < ids.size(); ++i)
      for (int c = 0; c < 4; ++c) {
        gw.push_back(tv.data()[static_cast<int>(ids[i]) * 4 + c]);
        sw[static_cast<int>(ids[i]) * 4 + c] += uv.data()[i * 4 + c];
      }
    testing::expect_equal(out[0].to_vector(), gw, "gather axis 0");
    testing::expect_equal(out[1].to_vector(), sw, "scatter_add axis 0");
  }
}

TEST(Indexing, GatherAndScatterAddAxis1) {
  // table [3, 10, 2], indices [5] -> [3, 5, 2].
  Builder b("emb");
  Value table = b.parameter("table", f32({3, 10, 2}), ParamRole::kWeight);
  Value idx = b.parameter("idx", i32({5}), ParamRole::kInput);
  Value upd = b.parameter("upd", f32({3, 5, 2}), ParamRole::kInput);
  b.output("g", b.gather(table, idx, 1));
  b.output("s", b.scatter_add(idx, upd, 1, f32({3, 10, 2})));
  Graph g = testing::finish(b);
  const std::vector<float> ids = {9, 1, 1, 0, 4};
  Tensor tv = testing::random_tensor(f32({3, 10, 2}), 3);
  Tensor uv = testing::random_tensor(f32({3, 5, 2}), 4);
  std::vector<Tensor> out = testing::run_graph(g, {tv, Tensor::from_values(i32({5}), ids), uv});
  ASSERT_EQ(out.size(), 2u);
  std::vector<float> gw(30), sw(60, 0.0f);
  for (int a = 0; a < 3; ++a)
    for (int i = 0; i < 5; ++i)
      for (int c = 0; c < 2; ++c) {
        const int v = static_cast<int>(ids[i]);
        gw[(a * 5 + i) * 2 + c] = tv.data()[(a * 10 + v) * 2 + c];
        sw[(a * 10 + v) * 2 + c] += uv.data()[(a * 5 + i) * 2 + c];
      }
  testing::expect_equal(out[0].to_vector(), gw, "gather axis 1");
  testing::expect_equal(out[1].to_vector(), sw, "scatter_add axis 1");
}

TEST(Indexing, ScatterAddWideRowsSplitAcrossThreads) {
  // Embedding-gradient shape: many repeated indices into [V, C] with C > one column block.
  Builder b("emb");
  Value idx = b.parameter("idx", i32({64}), ParamRole::kInput);
  Value upd = b.parameter("upd", f32({64, 700}), ParamRole::kInput);
  b.output("s", b.scatter_add(idx, upd, 0, f32({8, 700})));
  Graph g = testing::finish(b);
  std::vector<float> ids;
  for (int i = 0; i < 64; ++i) ids.push_back(static_cast<float>((i * 5) % 8));
  Tensor uv = testing::random_tensor(f32({64, 700}), 5);
  std::vector<double> want(8 * 700, 0.0);
  std::vector<float> wantf(8 * 700, 0.0f);
  for (int i = 0; i < 64; ++i)
    for (int c = 0; c < 700; ++c)
      wantf[static_cast<int>(ids[i]) * 700 + c] += uv.data()[i * 700 + c];
  for (int threads : {1, 2}) {
    std::vector<Tensor> out =
        testing::run_graph(g, {Tensor::from_values(i32({64}), ids), uv}, threads);
    testing::expect_equal(out.at(0).to_vector(), wantf, "scatter_add (adds in index order)");
  }
}

}  // namespace
}  // namespace alpa
