// Checks every VJP rule against central finite differences, both sides evaluated by the
// double-precision reference interpreter (so the CPU kernels play no part), and checks that the
// op table, the VJP table and the case table stay complete: an op added to ops.def without a
// VJP rule or without a test case fails here.
//
// Tolerance: for every weight element, |fd - analytic| <= 1e-5 * max(1, |analytic|), with
// fd = (L(w + eps) - L(w - eps)) / (2 eps), eps = 1e-6, L = sum(result * R) in double.
// Converts to float dtypes are evaluated without rounding on both sides (rounding is
// piecewise constant; the VJP rules differentiate the real-valued function).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "alpa/autodiff/backward.h"
#include "alpa/autodiff/vjp.h"
#include "autodiff/op_cases.h"
#include "support/reference_eval.h"

namespace alpa {
namespace {

constexpr double kEps = 1e-6;
constexpr double kRelTol = 1e-5;

int output_index(const Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.outputs().size(); ++i)
    if (g.outputs()[i].name == name) return static_cast<int>(i);
  return -1;
}

std::string list_ops(const std::vector<OpKind>& ops) {
  std::string s;
  for (OpKind k : ops) s += cat(s.empty() ? "" : ", ", op_name(k));
  return s;
}

// Nodes of `g` that depend on a weight parameter through float values.
std::vector<char> depends_on_weight(const Graph& g) {
  std::vector<char> dep(static_cast<size_t>(g.size()), 0);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g.node(id);
    if (n.op == OpKind::kParameter) {
      dep[id] = n.attr<ParameterAttrs>().role == ParamRole::kWeight;
      continue;
    }
    for (ValueId op : n.operands)
      if (dep[op] && is_float(g.type(op).dtype)) dep[id] = 1;
  }
  return dep;
}

// Nodes from which the output `name` is reachable.
std::vector<char> feeds_output(const Graph& g, const std::string& name) {
  std::vector<char> feeds(static_cast<size_t>(g.size()), 0);
  const GraphOutput* out = g.find_output(name);
  if (out == nullptr) return feeds;
  feeds[out->value] = 1;
  for (ValueId id = out->value; id >= 0; --id)
    if (feeds[id])
      for (ValueId op : g.node(id).operands) feeds[op] = 1;
  return feeds;
}

// True if case `c` really differentiates through an op of its kind: some node of that op has a
// float operand that depends on a weight and the node feeds the loss.
bool exercises_vjp(const OpCase& c) {
  if (!c.status.ok() || !c.check_gradient) return false;
  const std::vector<char> dep = depends_on_weight(c.graph);
  const std::vector<char> feeds = feeds_output(c.graph, "loss");
  for (ValueId id = 0; id < c.graph.size(); ++id) {
    const Node& n = c.graph.node(id);
    if (n.op != c.op || !feeds[id]) continue;
    for (ValueId op : n.operands)
      if (dep[op] && is_float(c.graph.type(op).dtype)) return true;
  }
  return false;
}

// ---- completeness -------------------------------------------------------------------------

TEST(OpTableCompleteness, EveryCaseBuildsWithAUniqueName) {
  std::set<std::string> names;
  ASSERT_FALSE(op_cases().empty());
  for (const OpCase& c : op_cases()) {
    EXPECT_TRUE(c.status.ok()) << c.status.to_string();
    EXPECT_TRUE(names.insert(c.name).second) << "duplicate case name " << c.name;
    EXPECT_EQ(c.params.size(), c.graph.parameters().size()) << c.name;
  }
}

// Collectives need a device mesh: they are checked on the threads backend against their
// single-device meaning in tests/runtime/collectives_test.cc (which has its own completeness
// test over the kCollective family).
TEST(OpTableCompleteness, EveryOpHasAHarnessCase) {
  std::vector<OpKind> missing;
  for (int k = 0; k < kNumOps; ++k) {
    const OpKind op = static_cast<OpKind>(k);
    if (op_info(op).family == OpFamily::kCollective) continue;
    bool found = false;
    for (const OpCase& c : op_cases()) {
      if (c.op != op || !c.status.ok()) continue;
      for (const Node& n : c.graph.nodes()) found = found || n.op == op;
    }
    if (!found) missing.push_back(op);
  }
  EXPECT_TRUE(missing.empty()) << "ops without a case in tests/autodiff/op_cases.cc: "
                               << list_ops(missing);
}

TEST(OpTableCompleteness, EveryOpHasAVjpRule) {
  std::vector<OpKind> missing;
  for (int k = 0; k < kNumOps; ++k)
    if (vjp_rule(static_cast<OpKind>(k)).fn == nullptr) missing.push_back(static_cast<OpKind>(k));
  EXPECT_TRUE(missing.empty()) << "ops without a VJP rule in autodiff/vjp.cc: "
                               << list_ops(missing);
}

TEST(OpTableCompleteness, EveryDifferentiableOpHasAGradientCase) {
  std::vector<OpKind> missing;
  int differentiable = 0;
  for (int k = 0; k < kNumOps; ++k) {
    const OpKind op = static_cast<OpKind>(k);
    if (!vjp_rule(op).differentiable || op_info(op).arity == 0) continue;  // no operands
    ++differentiable;
    bool found = false;
    for (const OpCase& c : op_cases()) found = found || (c.op == op && exercises_vjp(c));
    if (!found) missing.push_back(op);
  }
  EXPECT_TRUE(missing.empty()) << "differentiable ops without a gradient case: "
                               << list_ops(missing);
  EXPECT_GT(differentiable, 20);
}

TEST(OpTableCompleteness, ForwardCasesEvaluateToFiniteValues) {
  for (const OpCase& c : op_cases()) {
    if (!c.status.ok()) continue;
    Result<std::vector<std::vector<double>>> out = reference_eval(c.graph, c.params);
    ASSERT_TRUE(out.ok()) << c.name << ": " << out.status().to_string();
    for (const auto& v : *out)
      for (double x : v) ASSERT_TRUE(std::isfinite(x)) << c.name;
  }
}

// ---- gradients vs finite differences ------------------------------------------------------

std::vector<size_t> gradient_case_indices() {
  std::vector<size_t> idx;
  for (size_t i = 0; i < op_cases().size(); ++i)
    if (op_cases()[i].check_gradient && op_cases()[i].status.ok()) idx.push_back(i);
  return idx;
}

class GradientCheck : public ::testing::TestWithParam<size_t> {};

TEST_P(GradientCheck, VjpMatchesFiniteDifferences) {
  const OpCase& c = op_cases()[GetParam()];
  const ReferenceOptions exact{.round_float_converts = false};
  Result<Graph> grad_graph = build_gradient_graph(c.graph);
  ASSERT_TRUE(grad_graph.ok()) << grad_graph.status().to_string();
  Result<std::vector<std::vector<double>>> grads = reference_eval(*grad_graph, c.params, exact);
  ASSERT_TRUE(grads.ok()) << grads.status().to_string();

  const int loss_out = output_index(c.graph, "loss");
  ASSERT_GE(loss_out, 0);
  auto loss_at = [&](const std::vector<std::vector<double>>& params) {
    Result<std::vector<std::vector<double>>> r = reference_eval(c.graph, params, exact);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return r.ok() ? r->at(loss_out)[0] : NAN;
  };
  // The gradient graph recomputes the forward outputs unchanged.
  Result<std::vector<std::vector<double>>> fwd = reference_eval(c.graph, c.params, exact);
  ASSERT_TRUE(fwd.ok());
  for (size_t i = 0; i < fwd->size(); ++i) EXPECT_EQ(grads->at(i), fwd->at(i)) << "output " << i;

  const std::vector<ValueId> params = c.graph.parameters();
  double worst = 0, largest = 0;
  std::string worst_at;
  int checked = 0;
  for (size_t p = 0; p < params.size(); ++p) {
    const Node& n = c.graph.node(params[p]);
    if (n.attr<ParameterAttrs>().role != ParamRole::kWeight) continue;
    const int out = output_index(*grad_graph, "grad." + n.name);
    ASSERT_GE(out, 0) << "no output grad." << n.name;
    const std::vector<double>& analytic = grads->at(out);
    ASSERT_EQ(analytic.size(), c.params[p].size());
    std::vector<std::vector<double>> probe = c.params;
    for (size_t e = 0; e < analytic.size(); ++e) {
      probe[p][e] = c.params[p][e] + kEps;
      const double up = loss_at(probe);
      probe[p][e] = c.params[p][e] - kEps;
      const double down = loss_at(probe);
      probe[p][e] = c.params[p][e];
      const double fd = (up - down) / (2 * kEps);
      const double err = std::fabs(fd - analytic[e]) / std::max(1.0, std::fabs(analytic[e]));
      if (!(err <= worst)) {  // also catches NaN
        worst = err;
        worst_at = cat("grad.", n.name, "[", e, "]: analytic ", analytic[e], ", finite diff ", fd,
                       ", error ", err);
      }
      largest = std::max(largest, std::fabs(analytic[e]));
      ++checked;
    }
  }
  EXPECT_GT(checked, 0);
  EXPECT_GT(largest, 0.0) << "every gradient is zero: the case checks nothing";
  EXPECT_LE(worst, kRelTol) << c.name << " (" << op_name(c.op) << "), worst at " << worst_at;
}

std::string case_test_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_cases()[info.param].name;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

INSTANTIATE_TEST_SUITE_P(OpCases, GradientCheck, ::testing::ValuesIn(gradient_case_indices()),
                         case_test_name);

}  // namespace
}  // namespace alpa
