// The mixed-precision pass (autodiff/mixed_precision.h): which ops compute in the low type.
// Every contraction of the forward pass and of the backward pass autodiff derives from it
// reads bf16 (or f16) operands; weights, optimizer state, reductions, softmax, layer norm, the
// loss and the update stay f32; the graph keeps the model's parameters, names and outputs.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "alpa/autodiff/mixed_precision.h"
#include "alpa/models/registry.h"

namespace alpa {
namespace {

ModelSpec mixed(const char* model, DType dt) {
  ModelOverrides o;
  if (std::string(model) != "convnet") o.dtype = dt;
  ModelSpec spec = resolve_model(model, "tiny", o).value();
  spec.mixed_precision = dt;
  return spec;
}

int count_op(const Graph& g, OpKind op) {
  int n = 0;
  for (ValueId v = 0; v < g.size(); ++v) n += g.node(v).op == op;
  return n;
}

// Every contraction reads `dt` operands and yields `dt` (its f32 sum, as the runtime keeps it).
void expect_low_contractions(const Graph& g, DType dt, const std::string& what) {
  int n = 0;
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& node = g.node(v);
    if (!is_mixed_precision_contraction(node.op)) continue;
    ++n;
    EXPECT_EQ(node.type.dtype, dt) << what << ": " << op_name(node.op) << " %" << v;
    for (ValueId o : node.operands)
      EXPECT_EQ(g.type(o).dtype, dt) << what << ": operand of " << op_name(node.op) << " %" << v;
  }
  EXPECT_GT(n, 0) << what;
}

TEST(MixedPrecision, GptForwardContractionsInBf16WithF32Masters) {
  ModelSpec plain = mixed("gpt", DType::kBF16);
  plain.mixed_precision = DType::kF32;
  const Graph before = build_forward(plain, 1).value();  // typed bf16 throughout
  const Graph g = build_forward(mixed("gpt", DType::kBF16), 1).value();
  // Same parameters, in order, with the same names and roles; floats are f32 now.
  ASSERT_EQ(g.parameters().size(), before.parameters().size());
  for (size_t i = 0; i < g.parameters().size(); ++i) {
    const Node& p = g.node(g.parameters()[i]);
    const Node& q = before.node(before.parameters()[i]);
    EXPECT_EQ(p.name, q.name);
    EXPECT_EQ(p.attr<ParameterAttrs>(), q.attr<ParameterAttrs>());
    EXPECT_EQ(p.type.shape, q.type.shape);
    EXPECT_EQ(p.type.dtype, is_float(q.type.dtype) ? DType::kF32 : q.type.dtype) << p.name;
  }
  ASSERT_EQ(g.outputs().size(), before.outputs().size());
  for (const GraphOutput& o : g.outputs()) EXPECT_EQ(g.type(o.value).dtype, DType::kF32) << o.name;
  EXPECT_NE(g.find("logits"), kNoValue);
  // GPT-tiny: 2 layers x (q, k, v, scores, context, out, mlp up, mlp down) + the LM head.
  EXPECT_EQ(count_op(g, OpKind::kDotGeneral), 17);
  EXPECT_EQ(count_op(before, OpKind::kDotGeneral), 17);
  expect_low_contractions(g, DType::kBF16, "forward");
  // bf16 values are exactly: conversions to bf16 and the contractions. Everything else f32.
  std::map<OpKind, int> low;
  for (ValueId v = 0; v < g.size(); ++v)
    if (g.type(v).dtype == DType::kBF16) ++low[g.node(v).op];
  EXPECT_EQ(low.size(), 2u);
  EXPECT_EQ(low[OpKind::kDotGeneral], 17);
  // One conversion per distinct operand: the layer norm output feeds q, k and v once.
  EXPECT_LT(low[OpKind::kConvert], 2 * 17);
  EXPECT_GT(low[OpKind::kConvert], 17);
}

TEST(MixedPrecision, TrainStepBackwardContractionsInBf16UpdateInF32) {
  const ModelSpec spec = mixed("gpt", DType::kBF16);
  OptimizerOptions adam;
  const TrainStep step = training_step(spec, adam, 2).value();
  const Graph& g = step.graph;
  expect_low_contractions(g, DType::kBF16, "train step");
  // Forward and backward dots of two micro-batches: 17 forward, and for each a gradient per
  // operand that needs one (the first layer's input gradient is not needed).
  int fwd = 0, bwd = 0;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (g.node(v).op != OpKind::kDotGeneral) continue;
    (step.phase[v] == StepPhase::kForward ? fwd : bwd) += 1;
    EXPECT_NE(step.phase[v], StepPhase::kUpdate);
  }
  EXPECT_EQ(fwd, 2 * 17);
  EXPECT_GE(bwd, 2 * 2 * 17 - 2 * 2);
  // Masters, optimizer state and every output (loss, updated weights, state) are f32.
  for (ValueId p : g.parameters()) {
    const ParamRole role = g.node(p).attr<ParameterAttrs>().role;
    if (role != ParamRole::kInput) EXPECT_EQ(g.type(p).dtype, DType::kF32) << g.node(p).name;
  }
  for (const GraphOutput& o : g.outputs()) EXPECT_EQ(g.type(o.value).dtype, DType::kF32) << o.name;
  // Reductions (softmax, layer norm, loss, gradient sums of biases), transcendental and
  // optimizer arithmetic never run in bf16; the update phase has no bf16 value at all.
  const std::set<OpKind> f32_only = {OpKind::kReduceSum, OpKind::kReduceMax, OpKind::kExp,
                                     OpKind::kLog,       OpKind::kRsqrt,     OpKind::kSqrt,
                                     OpKind::kDiv,       OpKind::kErf,       OpKind::kPow};
  std::set<OpKind> low_ops;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (g.type(v).dtype != DType::kBF16) continue;
    low_ops.insert(g.node(v).op);
    EXPECT_EQ(f32_only.count(g.node(v).op), 0u) << op_name(g.node(v).op) << " %" << v;
    EXPECT_NE(step.phase[v], StepPhase::kUpdate) << op_name(g.node(v).op) << " %" << v;
  }
  std::string names;
  for (OpKind op : low_ops) names += cat(op_name(op), " ");
  std::printf("ops with bf16 results in the GPT-tiny train step: %s\n", names.c_str());
  EXPECT_TRUE(low_ops.count(OpKind::kDotGeneral));
  EXPECT_TRUE(low_ops.count(OpKind::kConvert));
}

TEST(MixedPrecision, F16AndOtherFamilies) {
  const OptimizerOptions sgd{OptimizerKind::kSgd};
  expect_low_contractions(training_step(mixed("gpt", DType::kF16), sgd, 1).value().graph,
                          DType::kF16, "gpt f16");
  expect_low_contractions(training_step(mixed("mlp", DType::kBF16), sgd, 1).value().graph,
                          DType::kBF16, "mlp");
  expect_low_contractions(training_step(mixed("moe", DType::kBF16), sgd, 1).value().graph,
                          DType::kBF16, "moe");
  const Graph conv = training_step(mixed("convnet", DType::kBF16), sgd, 1).value().graph;
  expect_low_contractions(conv, DType::kBF16, "convnet");
  EXPECT_GT(count_op(conv, OpKind::kConv2dGradFilter), 0);
}

TEST(MixedPrecision, RefusesF32AndIntegerTypes) {
  const Graph g = build_forward(resolve_model("mlp", "tiny", {}).value(), 1).value();
  for (DType dt : {DType::kF32, DType::kI32}) {
    Result<Graph> r = mixed_precision(g, dt);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("bf16 or f16"), std::string::npos);
    EXPECT_NE(r.status().hint().find("--dtype bf16"), std::string::npos);
  }
}

}  // namespace
}  // namespace alpa
