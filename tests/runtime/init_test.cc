// init_parameters: deterministic, keyed by name (not position), seed-dependent, and faithful
// to each ParamInit's distribution. Also Tensor's value semantics.
#include <cmath>

#include "alpa/runtime/init.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;

TEST(Init, SameNameSameValuesInDifferentGraphs) {
  Builder a("a");
  a.parameter("other", f32({7}), ParamRole::kWeight, ParamInit::kNormal, 1.0);
  Value wa = a.parameter("h0.attn.wq", f32({8, 8}), ParamRole::kWeight, ParamInit::kNormal, 0.02);
  a.output("y", a.sum_all(wa));
  Graph ga = testing::finish(a);
  Builder b("b");
  Value wb = b.parameter("h0.attn.wq", f32({8, 8}), ParamRole::kWeight, ParamInit::kNormal, 0.02);
  b.output("y", b.mul(wb, wb));
  Graph gb = testing::finish(b);

  const std::vector<Tensor> pa = init_parameters(ga, 42);
  const std::vector<Tensor> pb = init_parameters(gb, 42);
  ASSERT_EQ(pa.size(), 2u);
  ASSERT_EQ(pb.size(), 1u);
  testing::expect_equal(pa[1].to_vector(), pb[0].to_vector(), "same name");
  // Deterministic across calls; different seeds give different values.
  testing::expect_equal(init_parameters(gb, 42)[0].to_vector(), pb[0].to_vector(), "repeat");
  EXPECT_NE(init_parameters(gb, 43)[0].to_vector(), pb[0].to_vector());
  // Different names give different streams.
  EXPECT_NE(pa[0].to_vector()[0], pa[1].to_vector()[0]);
}

TEST(Init, DistributionsAndRoles) {
  Builder b("dist");
  b.parameter("z", f32({100}), ParamRole::kWeight, ParamInit::kZeros);
  b.parameter("o", f32({100}), ParamRole::kWeight, ParamInit::kOnes);
  b.parameter("n", f32({20000}), ParamRole::kWeight, ParamInit::kNormal, 0.5);
  b.parameter("u", f32({20000}), ParamRole::kWeight, ParamInit::kUniform, 2.0);
  Value ids = b.parameter("ids", TensorType{DType::kI32, {5000}}, ParamRole::kInput,
                          ParamInit::kRandint, 37);
  Value h =
      b.parameter("h", TensorType{DType::kF16, {100}}, ParamRole::kState, ParamInit::kNormal, 1.0);
  b.output("ids", ids);
  b.output("h", h);
  Graph g = testing::finish(b);
  const std::vector<Tensor> p = init_parameters(g, 1);
  ASSERT_EQ(p.size(), 6u);
  for (float v : p[0].to_vector()) EXPECT_EQ(v, 0.0f);
  for (float v : p[1].to_vector()) EXPECT_EQ(v, 1.0f);
  double sum = 0, sq = 0;
  for (float v : p[2].to_vector()) {
    sum += v;
    sq += static_cast<double>(v) * v;
  }
  const double mean = sum / 20000, std = std::sqrt(sq / 20000 - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.02);
  EXPECT_NEAR(std, 0.5, 0.02);
  float lo = 1e9f, hi = -1e9f;
  for (float v : p[3].to_vector()) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_GE(lo, -2.0f);
  EXPECT_LT(hi, 2.0f);
  EXPECT_LT(lo, -1.9f);
  EXPECT_GT(hi, 1.9f);
  std::vector<int> seen(37, 0);
  for (float v : p[4].to_vector()) {
    ASSERT_EQ(v, std::floor(v)) << "randint values are integers";
    ASSERT_GE(v, 0.0f);
    ASSERT_LT(v, 37.0f);
    seen[static_cast<int>(v)] = 1;
  }
  for (int k = 0; k < 37; ++k) EXPECT_TRUE(seen[k]) << "randint never produced " << k;
  for (float v : p[5].to_vector()) EXPECT_EQ(v, round_to_dtype(v, DType::kF16)) << "f16 values";

  const std::vector<Tensor> inputs = init_parameters(g, ParamRole::kInput, 1);
  ASSERT_EQ(inputs.size(), 1u);
  testing::expect_equal(inputs[0].to_vector(), p[4].to_vector(), "by role");
  EXPECT_EQ(fnv1a_64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a_64("a"), 0xaf63dc4c8601ec8cull);
}

TEST(Tensor, ValueSemantics) {
  Tensor a = Tensor::from_values(f32({2, 2}), {1, 2, 3, 4});
  Tensor b = a;  // deep copy
  b.data()[0] = 9;
  EXPECT_EQ(a.data()[0], 1.0f);
  Tensor c = std::move(b);
  EXPECT_EQ(c.data()[0], 9.0f);
  EXPECT_EQ(b.size(), 0);
  EXPECT_EQ(b.type(), (TensorType{DType::kF32, {0}}));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  EXPECT_EQ(Tensor::scalar(2.5f).item(), 2.5f);
  EXPECT_EQ(Tensor::scalar(2.5f).shape(), Shape{});
  Tensor z(f32({3}));
  testing::expect_equal(z.to_vector(), {0, 0, 0}, "zero-filled");
  Tensor e;
  EXPECT_EQ(e.size(), 0);
  EXPECT_EQ(e.type().to_string(), "f32[0]");
}

}  // namespace
}  // namespace alpa
