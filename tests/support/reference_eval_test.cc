// Checks the reference interpreter itself: hand-computed values for each op family, the
// adjoint identities that tie conv2d to its two gradient ops, nearest-even rounding to f16 and
// bf16 against bit-level implementations, and the errors it reports.
#include "support/reference_eval.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "alpa/ir/builder.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

using Vec = std::vector<double>;

Graph finish(Builder& b) {
  Result<Graph> g = b.finish();
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

// Evaluates a graph whose single output is "out".
Vec eval1(const Graph& g, const std::vector<Vec>& params) {
  Result<std::vector<Vec>> r = reference_eval(g, params);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (!r.ok()) return {};
  EXPECT_EQ(r->size(), 1u);
  return r->at(0);
}

TensorType f32(Shape s) {
  return {DType::kF32, std::move(s)};
}
TensorType i32(Shape s) {
  return {DType::kI32, std::move(s)};
}

TEST(ReferenceEval, F16RoundingHandValues) {
  EXPECT_EQ(round_to_f16(1.0), 1.0);
  EXPECT_EQ(round_to_f16(1.0 + std::ldexp(1.0, -11)), 1.0);  // tie -> even (down)
  EXPECT_EQ(round_to_f16(1.0 + 3 * std::ldexp(1.0, -11)), 1.0 + std::ldexp(1.0, -9));  // tie up
  EXPECT_EQ(round_to_f16(0.1), 0.0999755859375);
  EXPECT_EQ(round_to_f16(-0.1), -0.0999755859375);
  EXPECT_EQ(round_to_f16(65504.0), 65504.0);
  EXPECT_EQ(round_to_f16(65519.0), 65504.0);
  EXPECT_EQ(round_to_f16(65520.0), std::numeric_limits<double>::infinity());
  EXPECT_EQ(round_to_f16(-70000.0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(round_to_f16(std::ldexp(1.0, -24)), std::ldexp(1.0, -24));  // smallest subnormal
  EXPECT_EQ(round_to_f16(std::ldexp(1.0, -25)), 0.0);                   // tie -> even (0)
  EXPECT_EQ(round_to_f16(3 * std::ldexp(1.0, -25)), std::ldexp(1.0, -23));
  EXPECT_EQ(round_to_f16(std::ldexp(1.0, -14) * 1.5), std::ldexp(1.0, -14) * 1.5);
}

TEST(ReferenceEval, Bf16RoundingHandValues) {
  EXPECT_EQ(round_to_bf16(1.0), 1.0);
  EXPECT_EQ(round_to_bf16(1.0 + std::ldexp(1.0, -8)), 1.0);                            // tie down
  EXPECT_EQ(round_to_bf16(1.0 + 3 * std::ldexp(1.0, -8)), 1.0 + std::ldexp(1.0, -6));  // tie up
  EXPECT_EQ(round_to_bf16(0.1), 0.10009765625);
  EXPECT_EQ(round_to_bf16(-3.0), -3.0);
  EXPECT_EQ(round_to_bf16(3.4e38), std::numeric_limits<double>::infinity());
}

// bf16 by the usual bit trick on the float's bits: add 0x7FFF + lsb, then truncate.
double bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

TEST(ReferenceEval, NarrowRoundingMatchesBitLevelImplementations) {
  Rng rng(11);
  int checked = 0;
  for (int i = 0; i < 20000; ++i) {
    // Magnitudes from 2^-30 to 2^20 cover f16 subnormals, normals and overflow.
    const double mag = std::ldexp(1.0 + rng.uniform(), static_cast<int>(rng.below(51)) - 30);
    const float x = static_cast<float>(rng.uniform() < 0.5 ? -mag : mag);
    ASSERT_EQ(round_to_bf16(x), bf16_bits(x)) << "x = " << x;
#ifdef __FLT16_MANT_DIG__
    ASSERT_EQ(round_to_f16(x), static_cast<double>(static_cast<_Float16>(x))) << "x = " << x;
#endif
    ++checked;
  }
  EXPECT_EQ(checked, 20000);
}

TEST(ReferenceEval, ConvertRoundsPerTargetDtype) {
  Builder b;
  Value x = b.parameter("x", f32({5}), ParamRole::kInput);
  b.output("i32", b.convert(x, DType::kI32));
  b.output("pred", b.convert(x, DType::kPred));
  b.output("f16", b.convert(x, DType::kF16));
  b.output("f32", b.convert(b.convert(x, DType::kF16), DType::kF32));
  Graph g = finish(b);
  const Vec in = {-1.7, 2.9, 0.0, 0.1, 65530.0};
  Result<std::vector<Vec>> r = reference_eval(g, {in});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->at(0), (Vec{-1, 2, 0, 0, 65530}));
  EXPECT_EQ(r->at(1), (Vec{1, 1, 0, 1, 1}));
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(r->at(2), (Vec{round_to_f16(-1.7), round_to_f16(2.9), 0, 0.0999755859375, inf}));
  EXPECT_EQ(r->at(3), r->at(2));
  // Without rounding, float converts are the identity.
  Result<std::vector<Vec>> exact = reference_eval(g, {in}, ReferenceOptions{false});
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(exact->at(2), in);
  EXPECT_EQ(exact->at(0), r->at(0));  // i32 still truncates
}

TEST(ReferenceEval, ElementwiseAndSources) {
  Builder b;
  Value x = b.parameter("x", f32({2, 2}), ParamRole::kInput);
  Value y = b.parameter("y", f32({2, 2}), ParamRole::kInput);
  Value io = b.iota(f32({2, 2}), 1);
  Value c = b.constant({1, 2, 3, 4}, f32({2, 2}));
  Value gt = b.compare(x, y, CompareDir::kGt);
  b.output("out", b.select(gt, b.add(b.mul(x, io), c), b.pow(y, c)));
  Graph g = finish(b);
  // x > y at [0] and [3]: x*iota + c; else y^c.
  const Vec out = eval1(g, {{5, 1, 2, 4}, {1, 2, 3, 0}});
  EXPECT_EQ(out, (Vec{5 * 0 + 1, 4, 27, 4 * 1 + 4}));
}

TEST(ReferenceEval, MovementOps) {
  Builder b;
  Value x = b.parameter("x", f32({2, 3}), ParamRole::kInput);  // [[0,1,2],[3,4,5]]
  b.output("t", b.transpose(x, {1, 0}));
  b.output("s", b.slice(x, {0, 1}, {2, 3}));
  b.output("p", b.pad(x, {1, 0}, {0, 1}, 9.0));
  b.output("c", b.concat({x, b.slice(x, {0, 0}, {2, 1})}, 1));
  b.output("bc", b.broadcast(b.slice(x, {0, 0}, {2, 1}), {2, 2}, {0, 1}));  // [2,1] -> [2,2]
  b.output("bn", b.broadcast(b.reshape(b.slice(x, {0, 0}, {1, 2}), {2}), {3, 2}, {1}));
  b.output("r", b.reshape(x, {3, 2}));
  Graph g = finish(b);
  Result<std::vector<Vec>> r = reference_eval(g, {{0, 1, 2, 3, 4, 5}});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->at(0), (Vec{0, 3, 1, 4, 2, 5}));
  EXPECT_EQ(r->at(1), (Vec{1, 2, 4, 5}));
  EXPECT_EQ(r->at(2), (Vec{9, 9, 9, 9, 0, 1, 2, 9, 3, 4, 5, 9}));
  EXPECT_EQ(r->at(3), (Vec{0, 1, 2, 0, 3, 4, 5, 3}));
  EXPECT_EQ(r->at(4), (Vec{0, 0, 3, 3}));
  EXPECT_EQ(r->at(5), (Vec{0, 1, 0, 1, 0, 1}));
  EXPECT_EQ(r->at(6), (Vec{0, 1, 2, 3, 4, 5}));
}

TEST(ReferenceEval, Reductions) {
  Builder b;
  Value x = b.parameter("x", f32({2, 3, 2}), ParamRole::kInput);
  b.output("s1", b.reduce_sum(x, {1}));
  b.output("s02", b.reduce_sum(x, {0, 2}));
  b.output("m2", b.reduce_max(x, {2}));
  b.output("all", b.reduce_max(x, {0, 1, 2}));
  Graph g = finish(b);
  const Vec x_values = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, -11};
  Result<std::vector<Vec>> r = reference_eval(g, {x_values});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at(0), (Vec{0 + 2 + 4, 1 + 3 + 5, 6 + 8 + 10, 7 + 9 - 11}));
  EXPECT_EQ(r->at(1), (Vec{0 + 1 + 6 + 7, 2 + 3 + 8 + 9, 4 + 5 + 10 - 11}));
  EXPECT_EQ(r->at(2), (Vec{1, 3, 5, 7, 9, 10}));
  EXPECT_EQ(r->at(3), (Vec{10}));
}

TEST(ReferenceEval, DotGeneralHandValues) {
  Builder b;
  Value a = b.parameter("a", f32({2, 3}), ParamRole::kInput);
  Value c = b.parameter("c", f32({3, 2}), ParamRole::kInput);
  b.output("mm", b.matmul(a, c));
  b.output("at_ct", b.dot_general(a, c, DotAttrs{{}, {}, {0}, {1}}));  // a^T c^T: [3,3]
  b.output("batch", b.dot_general(a, b.transpose(c, {1, 0}), DotAttrs{{0}, {0}, {1}, {1}}));
  Graph g = finish(b);
  Result<std::vector<Vec>> r = reference_eval(g, {{1, 2, 3, 4, 5, 6}, {1, 2, 3, 4, 5, 6}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at(0), (Vec{22, 28, 49, 64}));
  // (a^T c^T)[i,j] = sum_k a[k,i] c[j,k]
  EXPECT_EQ(r->at(1), (Vec{9, 19, 29, 12, 26, 40, 15, 33, 51}));
  // row-wise dot of a and c^T: [1*1+2*3+3*5, 4*2+5*4+6*6]
  EXPECT_EQ(r->at(2), (Vec{22, 64}));
}

TEST(ReferenceEval, DotGeneralBatchInTheMiddleEqualsTransposedBatchLeading) {
  // [B,T,H,D] x [B,S,H,D], batch {0,2}, contract {3} -> [B,H,T,S]; the same product with the
  // operands transposed to [B,H,T,D] / [B,H,S,D] and batch {0,1} must agree exactly.
  Builder b;
  Value q = b.parameter("q", f32({2, 3, 2, 4}), ParamRole::kInput);
  Value k = b.parameter("k", f32({2, 3, 2, 4}), ParamRole::kInput);
  b.output("mid", b.dot_general(q, k, DotAttrs{{0, 2}, {0, 2}, {3}, {3}}));
  b.output("lead", b.dot_general(b.transpose(q, {0, 2, 1, 3}), b.transpose(k, {0, 2, 1, 3}),
                                 DotAttrs{{0, 1}, {0, 1}, {3}, {3}}));
  Graph g = finish(b);
  Rng rng(3);
  Vec qv(48), kv(48);
  for (double& v : qv) v = rng.normal();
  for (double& v : kv) v = rng.normal();
  Result<std::vector<Vec>> r = reference_eval(g, {qv, kv});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at(0), r->at(1));
  // One element by hand: [b=1, h=0, t=2, s=1].
  double want = 0;
  for (int d = 0; d < 4; ++d)
    want += qv[((1 * 3 + 2) * 2 + 0) * 4 + d] * kv[((1 * 3 + 1) * 2 + 0) * 4 + d];
  EXPECT_DOUBLE_EQ(r->at(0)[((1 * 2 + 0) * 3 + 2) * 3 + 1], want);
}

TEST(ReferenceEval, Conv2dHandValues) {
  Builder b;
  Value x = b.parameter("x", f32({1, 1, 3, 3}), ParamRole::kInput);
  Value w = b.parameter("w", f32({1, 1, 2, 2}), ParamRole::kInput);
  b.output("plain", b.conv2d(x, w, ConvAttrs{}));
  ConvAttrs strided;
  strided.stride = {2, 2};
  strided.padding = {1, 0, 0, 1};  // one row on top, one column on the right
  b.output("strided", b.conv2d(x, w, strided));
  Graph g = finish(b);
  Result<std::vector<Vec>> r = reference_eval(g, {{1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 1, 1}});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at(0), (Vec{12, 16, 24, 28}));
  // Padded input rows: [0,0,0,(0)], [1,2,3,0], [4,5,6,0], [7,8,9,0]; 2x2 windows at stride 2
  // starting at rows {0,2}, cols {0,2}.
  EXPECT_EQ(r->at(1), (Vec{1 + 2, 3, 4 + 5 + 7 + 8, 6 + 9}));
}

TEST(ReferenceEval, ConvGradientOpsAreAdjointsOfConv2d) {
  // <conv2d(x, w), dy> == <x, grad_input(dy, w)> == <w, grad_filter(x, dy)>
  ConvAttrs a;
  a.stride = {2, 1};
  a.padding = {1, 2, 0, 1};
  a.dilation = {1, 2};
  a.groups = 2;
  const TensorType xt = f32({2, 4, 6, 5}), wt = f32({4, 2, 2, 3});
  Builder b;
  Value x = b.parameter("x", xt, ParamRole::kInput);
  Value w = b.parameter("w", wt, ParamRole::kInput);
  Value y = b.conv2d(x, w, a);
  Value dy = b.parameter("dy", b.type(y), ParamRole::kInput);
  b.output("y", y);
  b.output("dx", b.conv2d_grad_input(dy, w, a, xt));
  b.output("dw", b.conv2d_grad_filter(x, dy, a, wt));
  Graph g = finish(b);
  Rng rng(5);
  auto random = [&](int64_t n) {
    Vec v(n);
    for (double& e : v) e = rng.normal();
    return v;
  };
  const Vec xv = random(xt.num_elements()), wv = random(wt.num_elements()),
            dyv = random(g.type(g.find("dy")).num_elements());
  Result<std::vector<Vec>> r = reference_eval(g, {xv, wv, dyv});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  auto inner = [](const Vec& p, const Vec& q) {
    double s = 0;
    for (size_t i = 0; i < p.size(); ++i) s += p[i] * q[i];
    return s;
  };
  const double ydy = inner(r->at(0), dyv);
  EXPECT_NEAR(inner(xv, r->at(1)), ydy, 1e-10 * (1 + std::fabs(ydy)));
  EXPECT_NEAR(inner(wv, r->at(2)), ydy, 1e-10 * (1 + std::fabs(ydy)));
  EXPECT_NE(ydy, 0.0);
}

TEST(ReferenceEval, GatherAndScatterAdd) {
  Builder b;
  Value t = b.parameter("t", f32({3, 2}), ParamRole::kInput);  // [[0,1],[2,3],[4,5]]
  Value i = b.parameter("i", i32({2, 2}), ParamRole::kInput);
  b.output("g0", b.gather(t, i, 0));                           // [2,2,2]
  b.output("g1", b.gather(t, b.slice(i, {0, 0}, {1, 2}), 1));  // [3,1,2]
  b.output("s0", b.scatter_add(i, b.reshape(b.iota(f32({8}), 0), {2, 2, 2}), 0, f32({3, 2})));
  Graph g = finish(b);
  Result<std::vector<Vec>> r = reference_eval(g, {{0, 1, 2, 3, 4, 5}, {1, 0, 1, 2}});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->at(0), (Vec{2, 3, 0, 1, 2, 3, 4, 5}));
  EXPECT_EQ(r->at(1), (Vec{1, 0, 3, 2, 5, 4}));
  // Updates rows (0,1),(2,3),(4,5),(6,7) go to table rows 1,0,1,2.
  EXPECT_EQ(r->at(2), (Vec{2, 3, 0 + 4, 1 + 5, 6, 7}));
}

TEST(ReferenceEval, OutOfRangeGatherIndexIsAnError) {
  Builder b;
  Value t = b.parameter("t", f32({3, 2}), ParamRole::kInput);
  Value i = b.parameter("i", i32({2}), ParamRole::kInput);
  b.output("g", b.gather(t, i, 0));
  Graph g = finish(b);
  Result<std::vector<Vec>> r = reference_eval(g, {{0, 1, 2, 3, 4, 5}, {1, 3}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("gather index 3"), std::string::npos)
      << r.status().to_string();
  EXPECT_FALSE(reference_eval(g, {{0, 1, 2, 3, 4, 5}, {-1, 0}}).ok());
}

TEST(ReferenceEval, ParameterMismatchIsAnError) {
  Builder b;
  Value x = b.parameter("x", f32({2}), ParamRole::kInput);
  b.output("y", b.neg(x));
  Graph g = finish(b);
  Result<std::vector<Vec>> too_few = reference_eval(g, {});
  ASSERT_FALSE(too_few.ok());
  EXPECT_NE(too_few.status().message().find("1 parameters"), std::string::npos);
  Result<std::vector<Vec>> wrong_size = reference_eval(g, {{1, 2, 3}});
  ASSERT_FALSE(wrong_size.ok());
  EXPECT_NE(wrong_size.status().message().find("%x"), std::string::npos)
      << wrong_size.status().to_string();
}

}  // namespace
}  // namespace alpa
