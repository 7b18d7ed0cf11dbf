#include "alpa/ir/verifier.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

Node param(const char* name, Shape s) {
  Node n;
  n.op = OpKind::kParameter;
  n.type = {DType::kF32, std::move(s)};
  n.attrs = ParameterAttrs{};
  n.name = name;
  return n;
}

TEST(Verifier, AcceptsValidGraph) {
  Graph g;
  g.add_node(param("a", {2}));
  Node neg;
  neg.op = OpKind::kNeg;
  neg.type = {DType::kF32, {2}};
  neg.operands = {0};
  g.add_node(neg);
  g.add_output({"y", 1, kNoValue});
  EXPECT_TRUE(verify(g).ok());
}

TEST(Verifier, RejectsUseBeforeDefinition) {
  Graph g;
  Node neg;
  neg.op = OpKind::kNeg;
  neg.type = {DType::kF32, {2}};
  neg.operands = {1};
  g.add_node(neg);
  g.add_node(param("a", {2}));
  Status s = verify(g);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not defined before use"), std::string::npos) << s.message();
}

TEST(Verifier, RejectsWrongResultType) {
  Graph g;
  g.add_node(param("a", {2}));
  Node neg;
  neg.op = OpKind::kNeg;
  neg.type = {DType::kF32, {3}};
  neg.operands = {0};
  g.add_node(neg);
  Status s = verify(g);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("node %1 (neg)"), std::string::npos) << s.message();
}

TEST(Verifier, RejectsDuplicateNamesAndBadOutputs) {
  Graph g;
  g.add_node(param("a", {2}));
  g.add_node(param("a", {2}));
  EXPECT_FALSE(verify(g).ok());

  Graph h;
  h.add_node(param("a", {2}));
  h.add_output({"y", 5, kNoValue});
  EXPECT_FALSE(verify(h).ok());

  Graph k;
  k.add_node(param("a", {2}));
  k.add_node(param("b", {2}));
  k.add_output({"y", 1, 0});
  k.add_output({"z", 1, 0});
  Status s = verify(k);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("aliased by two outputs"), std::string::npos);
}

}  // namespace
}  // namespace alpa
