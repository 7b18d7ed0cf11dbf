#include "alpa/ir/op.h"

#include <gtest/gtest.h>

#include <set>

namespace alpa {
namespace {

TEST(OpTable, NamesAreUniqueAndParse) {
  std::set<std::string_view> names;
  for (int i = 0; i < kNumOps; ++i) {
    const OpKind k = static_cast<OpKind>(i);
    EXPECT_TRUE(names.insert(op_name(k)).second) << op_name(k);
    ASSERT_TRUE(parse_op_name(op_name(k)).has_value());
    EXPECT_EQ(*parse_op_name(op_name(k)), k);
    EXPECT_EQ(default_attrs(k).index(), op_info(k).attrs_index) << op_name(k);
  }
  EXPECT_FALSE(parse_op_name("no_such_op").has_value());
}

// Every op has a shape rule: the rule must not report "no shape rule" for any op, given
// operands it accepts. A representative valid call per family is enough to reach the rule.
TEST(OpTable, EveryOpHasAShapeRule) {
  const TensorType f{DType::kF32, {2, 3}};
  const TensorType i{DType::kI32, {2}};
  const TensorType p{DType::kPred, {2, 3}};
  for (int k = 0; k < kNumOps; ++k) {
    const OpKind op = static_cast<OpKind>(k);
    const OpInfo& info = op_info(op);
    std::vector<TensorType> operands;
    int arity = info.arity < 0 ? 2 : info.arity;
    for (int a = 0; a < arity; ++a) operands.push_back(f);
    if (op == OpKind::kSelect) operands[0] = p;
    if (op == OpKind::kGather) operands[1] = i;
    if (op == OpKind::kScatterAdd) operands = {i, TensorType{DType::kF32, {2, 3}}};
    Result<TensorType> r = infer_result_type(op, default_attrs(op), operands, &f);
    if (!r.ok()) {
      EXPECT_NE(r.status().code(), StatusCode::kInternal)
          << op_name(op) << ": " << r.status().to_string();
    }
  }
}

TEST(ShapeRule, DotGeneral) {
  const TensorType a{DType::kF32, {4, 8, 16}}, b{DType::kF32, {4, 16, 32}};
  DotAttrs d{{0}, {0}, {2}, {1}};
  auto r = infer_result_type(OpKind::kDotGeneral, d, std::vector{a, b}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->shape, (Shape{4, 8, 32}));
  DotAttrs bad{{0}, {0}, {1}, {1}};
  auto e = infer_result_type(OpKind::kDotGeneral, bad, std::vector{a, b}, nullptr);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("contracting dim 0 has extent 8"), std::string::npos)
      << e.status().message();
}

TEST(ShapeRule, Conv2dAndGradients) {
  const TensorType x{DType::kF32, {2, 4, 9, 9}}, w{DType::kF32, {6, 2, 3, 3}};
  ConvAttrs c{{2, 2}, {1, 1, 1, 1}, {1, 1}, 2};
  auto y = infer_result_type(OpKind::kConv2d, c, std::vector{x, w}, nullptr);
  ASSERT_TRUE(y.ok()) << y.status().to_string();
  EXPECT_EQ(y->shape, (Shape{2, 6, 5, 5}));
  auto gi = infer_result_type(OpKind::kConv2dGradInput, c, std::vector{*y, w}, &x);
  EXPECT_TRUE(gi.ok()) << gi.status().to_string();
  auto gf = infer_result_type(OpKind::kConv2dGradFilter, c, std::vector{x, *y}, &w);
  EXPECT_TRUE(gf.ok()) << gf.status().to_string();
  ConvAttrs bad_groups = c;
  bad_groups.groups = 3;
  EXPECT_FALSE(infer_result_type(OpKind::kConv2d, bad_groups, std::vector{x, w}, nullptr).ok());
}

TEST(ShapeRule, GatherScatter) {
  const TensorType table{DType::kF32, {10, 4}}, idx{DType::kI32, {2, 3}};
  auto g = infer_result_type(OpKind::kGather, GatherAttrs{0}, std::vector{table, idx}, nullptr);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->shape, (Shape{2, 3, 4}));
  auto s = infer_result_type(OpKind::kScatterAdd, GatherAttrs{0}, std::vector{idx, *g}, &table);
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  const TensorType fidx{DType::kF32, {2, 3}};
  EXPECT_FALSE(
      infer_result_type(OpKind::kGather, GatherAttrs{0}, std::vector{table, fidx}, nullptr).ok());
}

TEST(ShapeRule, BroadcastRejectsMismatch) {
  const TensorType x{DType::kF32, {3}};
  const TensorType ok_t{DType::kF32, {2, 3}}, bad_t{DType::kF32, {3, 2}};
  EXPECT_TRUE(
      infer_result_type(OpKind::kBroadcast, BroadcastAttrs{{1}}, std::vector{x}, &ok_t).ok());
  EXPECT_FALSE(
      infer_result_type(OpKind::kBroadcast, BroadcastAttrs{{1}}, std::vector{x}, &bad_t).ok());
}

TEST(ShapeRule, ArityAndAttrKindChecked) {
  const TensorType f{DType::kF32, {2}};
  EXPECT_FALSE(infer_result_type(OpKind::kAdd, NoAttrs{}, std::vector{f}, nullptr).ok());
  EXPECT_FALSE(infer_result_type(OpKind::kAdd, ReduceAttrs{}, std::vector{f, f}, nullptr).ok());
}

}  // namespace
}  // namespace alpa
