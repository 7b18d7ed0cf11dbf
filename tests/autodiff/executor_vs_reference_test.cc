// Checks the CPU executor (f32 kernels) against the double-precision reference interpreter on
// every op case: the forward graph, and for differentiable cases the gradient graph built by
// build_gradient_graph, with 1 and 3 executor threads.
//
// Tolerance, per output: max_i |executor_i - reference_i| <= 1e-4 * (1 + max_i |reference_i|)
// for float outputs; i32 and pred outputs must match exactly.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "alpa/autodiff/backward.h"
#include "alpa/runtime/executor.h"
#include "autodiff/op_cases.h"
#include "support/reference_eval.h"

namespace alpa {
namespace {

constexpr double kF32Tol = 1e-4;

// Runs `g` on the executor and the reference and compares every output.
void compare_with_reference(const Graph& g, const std::vector<std::vector<double>>& params,
                            int num_threads, const std::string& what) {
  Result<std::vector<std::vector<double>>> want = reference_eval(g, params);
  ASSERT_TRUE(want.ok()) << what << ": " << want.status().to_string();

  std::vector<Tensor> inputs;
  const std::vector<ValueId> ids = g.parameters();
  for (size_t i = 0; i < ids.size(); ++i) {
    std::vector<float> v(params[i].begin(), params[i].end());
    inputs.push_back(Tensor::from_values(g.type(ids[i]), std::move(v)));
  }
  Executor exec(g, ExecutorOptions{num_threads});
  Result<std::vector<Tensor>> got = exec.run(std::move(inputs));
  ASSERT_TRUE(got.ok()) << what << ": " << got.status().to_string();
  ASSERT_EQ(got->size(), want->size()) << what;

  for (size_t o = 0; o < want->size(); ++o) {
    const GraphOutput& out = g.outputs()[o];
    const TensorType& type = g.type(out.value);
    const Tensor& t = got->at(o);
    ASSERT_EQ(t.type(), type) << what << " output " << out.name;
    const std::vector<float> actual = t.to_vector();
    const std::vector<double>& ref = want->at(o);
    ASSERT_EQ(actual.size(), ref.size());
    double max_ref = 0, worst = 0;
    size_t worst_at = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      max_ref = std::max(max_ref, std::fabs(ref[i]));
      const double diff = std::fabs(static_cast<double>(actual[i]) - ref[i]);
      if (!(diff <= worst)) {  // also catches NaN
        worst = diff;
        worst_at = i;
      }
    }
    const double tol = is_float(type.dtype) ? kF32Tol * (1 + max_ref) : 0.0;
    EXPECT_LE(worst, tol) << what << " output '" << out.name << "' " << type.to_string()
                          << " at element " << worst_at << ": executor " << actual[worst_at]
                          << ", reference " << ref[worst_at] << " (threads " << num_threads << ")";
  }
}

class ExecutorVsReference : public ::testing::TestWithParam<size_t> {};

TEST_P(ExecutorVsReference, ForwardAndGradientGraphsMatch) {
  const OpCase& c = op_cases()[GetParam()];
  ASSERT_TRUE(c.status.ok()) << c.status.to_string();
  for (int threads : {1, 3}) {
    compare_with_reference(c.graph, c.params, threads, c.name + " forward");
    if (!c.check_gradient) continue;
    Result<Graph> grad_graph = build_gradient_graph(c.graph);
    ASSERT_TRUE(grad_graph.ok()) << grad_graph.status().to_string();
    compare_with_reference(*grad_graph, c.params, threads, c.name + " gradient graph");
  }
}

std::vector<size_t> all_case_indices() {
  std::vector<size_t> idx(op_cases().size());
  for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
  return idx;
}

std::string case_test_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string s = op_cases()[info.param].name;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

INSTANTIATE_TEST_SUITE_P(OpCases, ExecutorVsReference, ::testing::ValuesIn(all_case_indices()),
                         case_test_name);

// The executor reports an out-of-range gather index as a Status, like the reference.
TEST(ExecutorVsReference, OutOfRangeGatherIndexIsAnErrorInBoth) {
  for (const OpCase& c : op_cases()) {
    if (c.name != "gather.axis0_repeated") continue;
    std::vector<std::vector<double>> params = c.params;
    params[1][2] = 5;  // table has 5 rows
    EXPECT_FALSE(reference_eval(c.graph, params).ok());
    std::vector<Tensor> inputs;
    const std::vector<ValueId> ids = c.graph.parameters();
    for (size_t i = 0; i < ids.size(); ++i)
      inputs.push_back(Tensor::from_values(c.graph.type(ids[i]),
                                           std::vector<float>(params[i].begin(), params[i].end())));
    Executor exec(c.graph);
    EXPECT_FALSE(exec.run(std::move(inputs)).ok());
    return;
  }
  FAIL() << "case gather.axis0_repeated not found";
}

}  // namespace
}  // namespace alpa
