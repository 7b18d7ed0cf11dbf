#include "alpa/ir/builder.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

TEST(Builder, BuildsAVerifiedGraph) {
  Builder b("mlp");
  Value x = b.parameter("x", {DType::kF32, {8, 16}}, ParamRole::kInput);
  Value w = b.parameter("w", {DType::kF32, {16, 4}}, ParamRole::kWeight, ParamInit::kNormal, 0.1);
  Value y = b.matmul(x, w);
  EXPECT_EQ(b.shape(y), (Shape{8, 4}));
  b.output("loss", b.mean_all(b.mul(y, y)));
  Result<Graph> g = b.finish();
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->parameters().size(), 2u);
  EXPECT_EQ(g->parameters(ParamRole::kWeight), std::vector<ValueId>{w.id});
  EXPECT_EQ(g->find("w"), w.id);
  ASSERT_NE(g->find_output("loss"), nullptr);
  EXPECT_EQ(g->type(g->find_output("loss")->value).shape, Shape{});
}

TEST(Builder, FirstErrorNamesOpOperandsAndCallerLocation) {
  Builder b;
  Value a = b.parameter("a", {DType::kF32, {2, 3}});
  Value c = b.parameter("c", {DType::kF32, {3, 2}});
  const int line = __LINE__ + 1;
  Value bad = b.add(a, c);
  EXPECT_FALSE(bad.valid());
  // Later calls are no-ops and do not replace the first error.
  Value later = b.mul(a, a);
  EXPECT_FALSE(later.valid());
  Result<Graph> g = b.finish();
  ASSERT_FALSE(g.ok());
  const std::string msg = g.status().message();
  EXPECT_NE(msg.find("builder_test.cc:" + std::to_string(line)), std::string::npos) << msg;
  EXPECT_NE(msg.find("invalid add(%a: f32[2,3], %c: f32[3,2])"), std::string::npos) << msg;
  EXPECT_NE(g.status().hint().find("broadcast"), std::string::npos);
}

TEST(Builder, RejectsDuplicateAndInvalidNames) {
  {
    Builder b;
    b.parameter("w", {DType::kF32, {2}});
    b.parameter("w", {DType::kF32, {2}});
    Result<Graph> g = b.finish();
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.status().message().find("already used"), std::string::npos);
  }
  {
    Builder b;
    b.parameter("3w", {DType::kF32, {2}});
    EXPECT_FALSE(b.finish().ok());
  }
}

TEST(Builder, RejectsBadOutputsAndForeignValues) {
  {
    Builder b;
    Value w = b.parameter("w", {DType::kF32, {2}});
    b.output("y", w);
    b.output("y", w);
    EXPECT_FALSE(b.finish().ok());
  }
  {
    Builder b;
    Value w = b.parameter("w", {DType::kF32, {2}});
    Value bogus{w.id + 100};
    b.neg(bogus);
    Result<Graph> g = b.finish();
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.status().message().find("not a value of this graph"), std::string::npos);
  }
  {
    // An alias must point at a parameter of the same type.
    Builder b;
    Value w = b.parameter("w", {DType::kF32, {2}});
    Value v = b.neg(w);
    b.output("new_v", w, v);
    Result<Graph> g = b.finish();
    ASSERT_FALSE(g.ok());
    EXPECT_NE(g.status().message().find("not a parameter"), std::string::npos);
  }
}

TEST(Builder, BroadcastToAlignsTrailingDims) {
  Builder b;
  Value bias = b.parameter("bias", {DType::kF32, {4}});
  Value y = b.broadcast_to(bias, {2, 3, 4});
  EXPECT_EQ(b.shape(y), (Shape{2, 3, 4}));
  EXPECT_EQ(b.graph().node(y.id).attr<BroadcastAttrs>().dims, (std::vector<int64_t>{2}));
  EXPECT_TRUE(b.ok());
}

}  // namespace
}  // namespace alpa
