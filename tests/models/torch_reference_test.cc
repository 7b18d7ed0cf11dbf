// Models against PyTorch: forward loss, logits and every parameter gradient of GPT-tiny and
// the MLP, computed by alpa-cpp (f32 executor) and by PyTorch in float64 on the same f32
// weights (tools/torch_reference.py, run by the ctest fixture `torch_fixtures`).
//
// Tolerance: for each tensor, max |ours - torch| <= 2e-4 * max |torch| (+1e-6 for tensors
// that are near zero everywhere). Measured: about 1e-6 relative for logits and loss and
// a few 1e-6 for gradients.
#include <gtest/gtest.h>

#include <cmath>

#include "alpa/autodiff/backward.h"
#include "alpa/models/gpt.h"
#include "alpa/models/mlp.h"
#include "alpa/runtime/executor.h"
#include "torch_fixture.h"

namespace alpa {
namespace {

using testing_support::FixtureTensor;

std::string fixture_path(const std::string& name) {
  return std::string(ALPA_BINARY_DIR) + "/fixtures/" + name + ".fix";
}

double max_abs(const std::vector<float>& v) {
  double m = 0;
  for (float x : v) m = std::max(m, static_cast<double>(std::abs(x)));
  return m;
}

void expect_close(const std::string& what, const std::vector<float>& ours, const FixtureTensor& ref,
                  double rel = 2e-4) {
  ASSERT_EQ(ours.size(), ref.data.size()) << what;
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < ours.size(); ++i) {
    const double d = std::abs(static_cast<double>(ours[i]) - ref.data[i]);
    if (d > worst) worst = d, at = i;
  }
  const double bound = rel * max_abs(ref.data) + 1e-6;
  EXPECT_LE(worst, bound) << what << ": element " << at << " ours " << ours[at] << " torch "
                          << ref.data[at] << " (bound " << bound << ")";
}

// Runs the gradient graph of `forward` on the fixture's weights and inputs and compares loss,
// logits and every grad.<w> with PyTorch.
void compare_with_torch(const Graph& forward, const std::string& fixture) {
  auto fx_result = testing_support::load_fixture(fixture_path(fixture));
  ASSERT_TRUE(fx_result.ok()) << fx_result.status().to_string();
  const auto& fx = *fx_result;
  Graph g = build_gradient_graph(forward).value();

  std::vector<Tensor> params;
  for (ValueId id : g.parameters()) {
    const std::string& name = g.node(id).name;
    auto it = fx.find("param:" + name);
    ASSERT_NE(it, fx.end()) << "fixture lacks parameter " << name;
    ASSERT_EQ(it->second.shape, g.type(id).shape) << name;
    params.push_back(Tensor::from_values(g.type(id), it->second.data));
  }
  Executor exec(g, ExecutorOptions{1});
  Result<std::vector<Tensor>> out = exec.run(std::move(params));
  ASSERT_TRUE(out.ok()) << out.status().to_string();

  int grads = 0;
  for (size_t o = 0; o < g.outputs().size(); ++o) {
    const std::string& name = g.outputs()[o].name;
    const std::string key = name.rfind("grad.", 0) == 0 ? "grad:" + name.substr(5) : name;
    auto it = fx.find(key);
    ASSERT_NE(it, fx.end()) << "fixture lacks " << key;
    expect_close(name, (*out)[o].to_vector(), it->second);
    grads += name.rfind("grad.", 0) == 0;
  }
  EXPECT_EQ(grads, static_cast<int>(forward.parameters(ParamRole::kWeight).size()));
}

TEST(TorchReference, GptTinyLossLogitsAndAllGradients) {
  GptConfig c;
  c.layers = 2;
  c.hidden = 32;
  c.heads = 4;
  c.seq = 16;
  c.vocab = 64;
  c.batch = 2;
  compare_with_torch(build_gpt(c).value(), "gpt_tiny");
}

TEST(TorchReference, MlpLossLogitsAndAllGradients) {
  MlpConfig c;
  c.batch = 8;
  c.input = 16;
  c.hidden = 32;
  c.layers = 2;
  c.classes = 8;
  compare_with_torch(build_mlp(c).value(), "mlp_tiny");
}

}  // namespace
}  // namespace alpa
