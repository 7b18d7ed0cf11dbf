// Checks the structure of build_gradient_graph (autodiff/backward.h): zero gradients for weights
// that do not reach the loss, summed contributions for a weight used twice (tied embedding,
// checked against finite differences in double), and the Status it returns for graphs it
// cannot differentiate.
#include <gtest/gtest.h>

#include <cmath>

#include "alpa/autodiff/backward.h"
#include "alpa/ir/builder.h"
#include "alpa/support/rng.h"
#include "support/reference_eval.h"

namespace alpa {
namespace {

using Vec = std::vector<double>;

TensorType f32(Shape s) {
  return {DType::kF32, std::move(s)};
}
TensorType i32(Shape s) {
  return {DType::kI32, std::move(s)};
}

Graph finish(Builder& b) {
  Result<Graph> g = b.finish();
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

Vec random_values(Rng& rng, int64_t n) {
  Vec v(static_cast<size_t>(n));
  for (double& x : v) x = rng.uniform() * 2 - 1;
  return v;
}

// Output `name` of reference_eval(g, params).
Vec eval_output(const Graph& g, const std::vector<Vec>& params, const std::string& name) {
  Result<std::vector<Vec>> r = reference_eval(g, params);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (!r.ok()) return {};
  for (size_t i = 0; i < g.outputs().size(); ++i)
    if (g.outputs()[i].name == name) return r->at(i);
  ADD_FAILURE() << "no output " << name;
  return {};
}

TEST(BuildGradientGraph, WeightsThatDoNotReachTheLossGetZeroGradients) {
  Builder b("unused");
  Value w = b.parameter("w", f32({3}));
  b.parameter("unused", f32({2, 2}));
  Value gate = b.parameter("gate", f32({3}));  // reaches the loss only through a compare
  Value side = b.parameter("side", f32({3}));  // reaches another output, not the loss
  Value positive = b.compare(gate, b.full_like(gate, 0.0), CompareDir::kGt);
  Value chosen = b.select(positive, b.constant(2.0, f32({3})), b.constant(-1.0, f32({3})));
  b.output("loss", b.reduce_sum(b.mul(b.mul(w, w), chosen), {0}));
  b.output("other", b.exp(side));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_TRUE(grad.ok()) << grad.status().to_string();

  const Vec wv = {0.5, -1.5, 2.0}, gatev = {1.0, -1.0, 0.5};
  const std::vector<Vec> params = {wv, {1, 2, 3, 4}, gatev, {0.1, 0.2, 0.3}};
  EXPECT_EQ(eval_output(*grad, params, "grad.unused"), (Vec{0, 0, 0, 0}));
  EXPECT_EQ(eval_output(*grad, params, "grad.gate"), (Vec{0, 0, 0}));
  EXPECT_EQ(eval_output(*grad, params, "grad.side"), (Vec{0, 0, 0}));
  // d/dw sum(w^2 * chosen) = 2 w chosen, chosen = {2, -1, 2}.
  EXPECT_EQ(eval_output(*grad, params, "grad.w"), (Vec{2 * 0.5 * 2, 2 * -1.5 * -1, 2 * 2.0 * 2}));
  // Gradient outputs follow the forward outputs, one per weight in parameter order.
  ASSERT_EQ(grad->outputs().size(), 6u);
  EXPECT_EQ(grad->outputs()[2].name, "grad.w");
  EXPECT_EQ(grad->outputs()[5].name, "grad.side");
  EXPECT_EQ(grad->type(grad->outputs()[3].value), f32({2, 2}));
}

// Tied embedding: the table E is gathered (token embeddings) and also used as the output
// projection. logits[t, v] = sum_d E[tok[t], d] E[v, d]; loss = sum(logits * R).
struct TiedModel {
  Graph graph;
  std::vector<Vec> params;
};

TiedModel tied_embedding(bool untie) {
  Rng rng(21);
  Builder b("tied");
  const Shape table_shape = {5, 3};
  Value e1 = b.parameter("E", f32(table_shape));
  Value e2 = untie ? b.parameter("E_out", f32(table_shape)) : e1;
  Value tok = b.parameter("tok", i32({4}), ParamRole::kInput);
  Value h = b.gather(e1, tok, 0);                                   // [4, 3]
  Value logits = b.dot_general(h, e2, DotAttrs{{}, {}, {1}, {1}});  // [4, 5]
  Value r = b.constant(random_values(rng, 20), f32({4, 5}));
  b.output("loss", b.reduce_sum(b.mul(logits, r), {0, 1}));
  TiedModel m{finish(b), {}};
  const Vec table = random_values(rng, 15);
  const Vec tokens = {1, 3, 1, 4};  // token 1 twice; rows 0 and 2 only in the projection
  m.params = untie ? std::vector<Vec>{table, table, tokens} : std::vector<Vec>{table, tokens};
  return m;
}

TEST(BuildGradientGraph, TiedWeightGetsTheSumOfBothContributions) {
  TiedModel tied = tied_embedding(false), untied = tied_embedding(true);
  Result<Graph> tied_grad = build_gradient_graph(tied.graph);
  Result<Graph> untied_grad = build_gradient_graph(untied.graph);
  ASSERT_TRUE(tied_grad.ok()) << tied_grad.status().to_string();
  ASSERT_TRUE(untied_grad.ok()) << untied_grad.status().to_string();
  const Vec g = eval_output(*tied_grad, tied.params, "grad.E");
  const Vec g_gather = eval_output(*untied_grad, untied.params, "grad.E");
  const Vec g_proj = eval_output(*untied_grad, untied.params, "grad.E_out");
  ASSERT_EQ(g.size(), 15u);
  ASSERT_EQ(g_gather.size(), 15u);
  ASSERT_EQ(g_proj.size(), 15u);
  for (size_t i = 0; i < g.size(); ++i)
    EXPECT_NEAR(g[i], g_gather[i] + g_proj[i], 1e-12) << "element " << i;
  // Rows 0 and 2 are never gathered: only the projection contributes there.
  EXPECT_EQ(g_gather[0], 0.0);
  EXPECT_NE(g_proj[0], 0.0);

  // And the sum is the true derivative: central differences, eps 1e-6, rel tol 1e-6.
  const double eps = 1e-6;
  for (size_t i = 0; i < g.size(); ++i) {
    std::vector<Vec> p = tied.params;
    p[0][i] += eps;
    const double up = eval_output(tied.graph, p, "loss")[0];
    p[0][i] -= 2 * eps;
    const double down = eval_output(tied.graph, p, "loss")[0];
    const double fd = (up - down) / (2 * eps);
    EXPECT_NEAR(fd, g[i], 1e-6 * std::max(1.0, std::fabs(g[i]))) << "element " << i;
  }
}

// loss = sum(w * stop_gradient(exp(w))): the second factor is a constant to autodiff, so
// d loss / d w = exp(w), not exp(w) + w exp(w).
TEST(BuildGradientGraph, StopGradientBlocksTheFlow) {
  Builder b("stop");
  Value w = b.parameter("w", f32({3}));
  b.output("loss", b.sum_all(b.mul(w, b.stop_gradient(b.exp(w)))));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_TRUE(grad.ok()) << grad.status().to_string();
  const Vec w0 = {0.5, -1.0, 2.0};
  const Vec got = eval_output(*grad, {w0}, "grad.w");
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_NEAR(got[i], std::exp(w0[i]), 1e-12) << i;
}

// Softmax subtracts a stop_gradient max; its gradient must still be the exact softmax
// Jacobian-vector product: dL/dx = p * (g - sum(g * p)).
TEST(BuildGradientGraph, SoftmaxWithStoppedMaxHasTheExactGradient) {
  Builder b("softmax");
  Value x = b.parameter("x", f32({2, 5}));
  Value m = b.stop_gradient(b.reduce_max(x, {1}));
  Value e = b.exp(b.sub(x, b.broadcast(m, {2, 5}, {0})));
  Value p = b.div(e, b.broadcast(b.reduce_sum(e, {1}), {2, 5}, {0}));
  Value gw = b.constant({1, -2, 3, 0.5, -1, 2, 2, -3, 1, 0}, f32({2, 5}));
  b.output("loss", b.sum_all(b.mul(p, gw)));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_TRUE(grad.ok()) << grad.status().to_string();
  Rng rng(5);
  const Vec x0 = random_values(rng, 10);
  const Vec got = eval_output(*grad, {x0}, "grad.x");
  const Vec gv = {1, -2, 3, 0.5, -1, 2, 2, -3, 1, 0};
  for (int r = 0; r < 2; ++r) {
    double mx = -1e300, sum = 0, dot = 0;
    for (int j = 0; j < 5; ++j) mx = std::max(mx, x0[r * 5 + j]);
    Vec pr(5);
    for (int j = 0; j < 5; ++j) sum += pr[j] = std::exp(x0[r * 5 + j] - mx);
    for (int j = 0; j < 5; ++j) dot += (pr[j] /= sum) * gv[r * 5 + j];
    for (int j = 0; j < 5; ++j)
      EXPECT_NEAR(got[r * 5 + j], pr[j] * (gv[r * 5 + j] - dot), 1e-12) << r << "," << j;
  }
}

TEST(BuildGradientGraph, CustomLossOutputName) {
  Builder b;
  Value w = b.parameter("w", f32({2}));
  b.output("objective", b.reduce_sum(b.mul(w, w), {0}));
  Graph g = finish(b);
  EXPECT_FALSE(build_gradient_graph(g).ok());
  Result<Graph> grad = build_gradient_graph(g, "objective");
  ASSERT_TRUE(grad.ok()) << grad.status().to_string();
  EXPECT_EQ(eval_output(*grad, {{3, -1}}, "grad.w"), (Vec{6, -2}));
}

TEST(BuildGradientGraph, MissingLossOutputIsAnError) {
  Builder b("noloss");
  Value w = b.parameter("w", f32({2}));
  b.output("objective", b.reduce_sum(w, {0}));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_EQ(grad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(grad.status().message().find("no output named 'loss'"), std::string::npos)
      << grad.status().to_string();
  EXPECT_NE(grad.status().message().find("noloss"), std::string::npos);
  EXPECT_FALSE(grad.status().hint().empty());
}

TEST(BuildGradientGraph, NonScalarLossIsAnError) {
  Builder b;
  Value w = b.parameter("w", f32({2, 3}));
  b.output("loss", b.reduce_sum(w, {0}));  // f32[3]
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_NE(grad.status().message().find("must be a float scalar"), std::string::npos)
      << grad.status().to_string();
  EXPECT_NE(grad.status().message().find("f32[3]"), std::string::npos);
  EXPECT_FALSE(grad.status().hint().empty());
}

TEST(BuildGradientGraph, IntegerLossIsAnError) {
  Builder b;
  Value w = b.parameter("w", f32({2}));
  b.output("loss", b.convert(b.reduce_sum(w, {0}), DType::kI32));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_NE(grad.status().message().find("i32[]"), std::string::npos) << grad.status().to_string();
}

TEST(BuildGradientGraph, UnnamedWeightParameterIsAnError) {
  Builder b;
  const TensorType t = f32({2});
  Value w = b.emit(OpKind::kParameter, {}, ParameterAttrs{}, &t);  // no name
  b.output("loss", b.reduce_sum(b.mul(w, w), {0}));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_NE(grad.status().message().find("has no name"), std::string::npos)
      << grad.status().to_string();
  EXPECT_NE(grad.status().message().find("%0"), std::string::npos);
  EXPECT_FALSE(grad.status().hint().empty());
}

TEST(BuildGradientGraph, GraphWithoutWeightsIsAnError) {
  Builder b;
  Value x = b.parameter("x", f32({2}), ParamRole::kInput);
  b.output("loss", b.reduce_sum(x, {0}));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_NE(grad.status().message().find("no weight parameters"), std::string::npos)
      << grad.status().to_string();
}

TEST(BuildGradientGraph, IntegerWeightIsAnError) {
  Builder b;
  Value w = b.parameter("w", f32({2}));
  Value k = b.parameter("k", i32({2}));  // role weight, but not float
  b.output("loss", b.reduce_sum(b.mul(w, b.convert(k, DType::kF32)), {0}));
  Graph g = finish(b);
  Result<Graph> grad = build_gradient_graph(g);
  ASSERT_FALSE(grad.ok());
  EXPECT_NE(grad.status().message().find("%k"), std::string::npos) << grad.status().to_string();
  EXPECT_NE(grad.status().message().find("non-float"), std::string::npos);
}

}  // namespace
}  // namespace alpa
