// Elementwise fusion as the cost model sees it (ir/analysis.h: fused_values).
#include "alpa/ir/analysis.h"

#include <gtest/gtest.h>

#include "alpa/ir/builder.h"

namespace alpa {
namespace {

TEST(FusedValues, ChainsIntoOneUserAndReductionsButNotSharedFarOrOutputValues) {
  Builder b("g");
  const TensorType t{DType::kF32, {4, 8}};
  Value x = b.parameter("x", t, ParamRole::kInput);
  Value a = b.name(b.exp(x), "a");          // only user: c (elementwise, same shape)
  Value shared = b.name(b.neg(x), "s");     // two users
  Value c = b.name(b.add(a, shared), "c");  // only user: a reduction
  Value d = b.name(b.mul(shared, shared), "d");
  Value r = b.name(b.reduce_sum(c, {1}), "r");
  b.output("r", r);
  b.output("d", d);
  Graph g = b.finish().value();
  const std::vector<char> f = fused_values(g);
  EXPECT_TRUE(f[g.find("a")]);
  EXPECT_TRUE(f[g.find("c")]);
  EXPECT_FALSE(f[g.find("s")]);
  EXPECT_FALSE(f[g.find("d")]);  // a graph output
  EXPECT_FALSE(f[g.find("r")]);
  EXPECT_FALSE(f[g.find("x")]);  // parameters are in memory
  // Traffic of c: a and c are fused, so it reads only s.
  const double traffic = node_memory_traffic(g, g.find("c"), f, [](ValueId, int) { return 1.0; });
  EXPECT_EQ(traffic, 1.0);
}

TEST(FusedValues, AUserFarAwayKeepsTheValueInMemory) {
  Builder b("g");
  const TensorType t{DType::kF32, {16}};
  Value x = b.parameter("x", t, ParamRole::kInput);
  Value early = b.name(b.exp(x), "early");
  Value y = x;
  for (int i = 0; i < kFusionWindow + 1; ++i) y = b.neg(y);  // unrelated work in between
  b.output("out", b.add(early, y));
  Graph g = b.finish().value();
  const std::vector<char> f = fused_values(g);
  EXPECT_FALSE(f[g.find("early")]);     // read kFusionWindow + 1 nodes later
  EXPECT_TRUE(f[g.find("early") + 1]);  // the first neg: its user is next
}

// A pipeline stage runs its forward and backward as separate programs: a value the other
// program reads is stored, however near its reader is.
TEST(FusedValues, AValueReadByAnotherProgramIsStored) {
  Builder b("g");
  const TensorType t{DType::kF32, {16}};
  Value x = b.parameter("x", t, ParamRole::kInput);
  Value a = b.name(b.exp(x), "a");
  Value half = b.name(b.broadcast_to(b.scalar(0.5), {16}), "half");  // generated from a constant
  Value c = b.name(b.neg(a), "c");
  b.output("out", b.mul(b.add(c, x), half));
  Graph g = b.finish().value();
  EXPECT_TRUE(fused_values(g)[g.find("a")]);
  std::vector<int> group(static_cast<size_t>(g.size()), 0);
  for (ValueId v = g.find("c"); v < g.size(); ++v) group[v] = 1;  // a second program
  const std::vector<char> f = fused_values(g, group);
  EXPECT_FALSE(f[g.find("a")]);    // crosses into program 1
  EXPECT_TRUE(f[g.find("c")]);     // its only user is in its own program
  EXPECT_TRUE(f[g.find("half")]);  // constants are generated where used, in any program
}

// Distances count the nodes of the value's own program: another program's nodes in between
// (a stage graph interleaves forward and backward) do not keep it in memory.
TEST(FusedValues, OtherProgramsNodesDoNotCountTowardsTheWindow) {
  Builder b("g");
  const TensorType t{DType::kF32, {16}};
  Value x = b.parameter("x", t, ParamRole::kInput);
  Value early = b.name(b.exp(x), "early");
  Value y = x;
  for (int i = 0; i < kFusionWindow + 1; ++i) y = b.neg(y);  // another program's work
  Value out = b.name(b.add(early, x), "out");
  b.output("out", out);
  b.output("y", y);
  Graph g = b.finish().value();
  EXPECT_FALSE(fused_values(g)[g.find("early")]);
  std::vector<int> group(static_cast<size_t>(g.size()), 0);
  for (ValueId v = g.find("early") + 1; v < g.find("out"); ++v) group[v] = 1;
  EXPECT_TRUE(fused_values(g, group)[g.find("early")]);
}

}  // namespace
}  // namespace alpa
