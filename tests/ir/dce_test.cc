// Dead-code elimination keeps parameters, outputs, aliases and everything they depend on.
#include "alpa/ir/dce.h"

#include <gtest/gtest.h>

#include "alpa/ir/builder.h"
#include "alpa/ir/verifier.h"

namespace alpa {
namespace {

TEST(Dce, DropsWhatNoOutputNeedsAndRenumbers) {
  Builder b("g");
  Value x = b.parameter("x", {DType::kF32, {4}}, ParamRole::kInput);
  Value unused_param = b.parameter("u", {DType::kF32, {2}});
  Value dead = b.neg(b.exp(x));  // two dead nodes
  Value y = b.name(b.add(x, x), "y");
  Value w = b.parameter("w", {DType::kF32, {4}});
  b.output("y", y);
  b.output("w", b.mul(w, y), w);
  (void)dead;
  (void)unused_param;
  Graph g = b.finish().value();
  Graph d = eliminate_dead_code(g);
  EXPECT_TRUE(verify(d).ok()) << verify(d).to_string();
  EXPECT_EQ(d.size(), g.size() - 2);
  EXPECT_EQ(d.parameters().size(), 3u);  // parameters are the interface: all kept, in order
  EXPECT_EQ(d.node(d.parameters()[1]).name, "u");
  ASSERT_NE(d.find("y"), kNoValue);
  EXPECT_EQ(d.outputs()[0].value, d.find("y"));
  EXPECT_EQ(d.outputs()[1].alias, d.find("w"));
  for (const Node& n : d.nodes()) EXPECT_NE(n.op, OpKind::kNeg);
  EXPECT_EQ(eliminate_dead_code(d), d);  // idempotent
}

}  // namespace
}  // namespace alpa
