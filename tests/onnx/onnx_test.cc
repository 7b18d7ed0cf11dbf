// ONNX models exported from PyTorch (tests/onnx/models.py, written with PyTorch's reference
// numbers by make_models.py): imported, their forward loss and outputs equal PyTorch's within
// 1e-5, every weight's gradient equals autograd's, 20 SGD steps track PyTorch's losses, a 2x2
// mesh and a 2-stage pipeline equal one device, and the trained weights written back into the
// file give the same loss when imported again (roundtrip.json, which torch_roundtrip.py checks
// against PyTorch loading the weights). Malformed files are refused with clear errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "alpa/autodiff/backward.h"
#include "alpa/cli/trainer.h"
#include "alpa/compile/compile.h"
#include "alpa/models/registry.h"
#include "alpa/onnx/onnx_model.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/train.h"
#include "alpa/support/files.h"

namespace alpa {
namespace {

using nlohmann::json;

const std::string kWork = ALPA_BINARY_DIR "/tests/onnx-work";

json ref_of(const std::string& name) {
  std::ifstream f(kWork + "/" + name + "/ref.json");
  EXPECT_TRUE(f.good()) << "run the onnx.make_models test first";
  return json::parse(f);
}

std::string model_path(const std::string& name) {
  return kWork + "/" + name + "/model.onnx";
}

OnnxLoss loss_of(const json& ref) {
  OnnxLoss l;
  l.kind = ref["loss_kind"].get<std::string>();
  if (!l.kind.empty()) l.output = ref["output"].get<std::string>();
  return l;
}

std::vector<float> values_of(const json& e) {
  std::vector<float> v;
  for (double x : e["values"]) v.push_back(static_cast<float>(x));
  return v;
}

// The data input `name` of the reference (the model's inputs and an added loss's labels).
std::vector<float> input_values(const json& ref, const std::string& name) {
  if (name == "labels" && ref.contains("labels")) return values_of(ref["labels"]);
  EXPECT_TRUE(ref["inputs"].contains(name)) << name;
  return values_of(ref["inputs"][name]);
}

// Every parameter of `g`: weights from `weights`, inputs from the reference.
std::vector<Tensor> params_of(const Graph& g, const json& ref,
                              const std::map<std::string, std::vector<float>>& weights) {
  std::vector<Tensor> out;
  for (ValueId id : g.parameters()) {
    const Node& n = g.node(id);
    std::vector<float> v = n.attr<ParameterAttrs>().role == ParamRole::kInput
                               ? input_values(ref, n.name)
                               : weights.at(n.name);
    out.push_back(Tensor::from_values(n.type, std::move(v)));
  }
  return out;
}

std::map<std::string, std::vector<float>> file_weights(const OnnxModel& m) {
  std::map<std::string, std::vector<float>> w;
  for (OnnxWeight& x : m.initial_values()) w[x.name] = std::move(x.values);
  return w;
}

// max |a - b| / max(|b|_inf, floor).
double rel_diff(const std::vector<float>& a, const std::vector<float>& b, double floor) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, scale = floor;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(static_cast<double>(a[i]) - b[i]));
    scale = std::max(scale, std::fabs(static_cast<double>(b[i])));
  }
  return diff / scale;
}

class OnnxModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(OnnxModelTest, ForwardAndGradientsEqualPyTorch) {
  const json ref = ref_of(GetParam());
  auto m = OnnxModel::load(model_path(GetParam()));
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_EQ((*m)->batch_param(), "batch");
  EXPECT_EQ((*m)->opset(), ref["opset"].get<int64_t>());
  auto imp = (*m)->import(4, loss_of(ref), /*with_outputs=*/true);
  ASSERT_TRUE(imp.ok()) << imp.status().to_string();
  const auto weights = file_weights(**m);
  ASSERT_EQ(weights.size(), ref["weights"].size());
  Result<Graph> grad = build_gradient_graph(imp->graph);
  ASSERT_TRUE(grad.ok()) << grad.status().to_string();
  Executor ex(*grad);
  auto outs = ex.run(params_of(*grad, ref, weights));
  ASSERT_TRUE(outs.ok()) << outs.status().to_string();
  std::map<std::string, std::vector<float>> got;
  for (size_t i = 0; i < grad->outputs().size(); ++i)
    got[grad->outputs()[i].name] = (*outs)[i].to_vector();
  const double loss = got.at("loss")[0], want = ref["loss"].get<double>();
  std::printf("%s: loss %.7f, PyTorch %.7f\n", GetParam().c_str(), loss, want);
  EXPECT_NEAR(loss, want, 1e-5 * std::fabs(want));
  if (ref.contains("out")) {
    const std::string out = ref["output"].get<std::string>();
    ASSERT_TRUE(got.count(out));
    EXPECT_LT(rel_diff(got.at(out), values_of(ref["out"]), 1e-6), 1e-5) << out;
  }
  // Weights are named after their initializers, which PyTorch names after its parameters.
  double worst = 0;
  for (const auto& [ir, init] : imp->weight_initializer) {
    ASSERT_TRUE(ref["grads"].contains(init)) << init;
    const double d = rel_diff(got.at("grad." + ir), values_of(ref["grads"][init]), 1e-3);
    EXPECT_LT(d, 1e-4) << "gradient of " << init;
    worst = std::max(worst, d);
  }
  std::printf("%s: %zu gradients, worst relative difference %.2e\n", GetParam().c_str(),
              imp->weight_initializer.size(), worst);
}

struct Layout {
  const char* name;
  MeshShape mesh;
  int devices;  // > 0: a pipeline over this many devices
  int micro_batches;
};

// Trains the model 20 SGD steps on the reference batch; returns losses and final weights.
TrainResult train(const std::string& name, const json& ref, const Layout& l,
                  Program* program = nullptr) {
  ModelOverrides o;
  o.batch = 4;
  if (!ref["loss_kind"].get<std::string>().empty())
    o.loss = cat(ref["loss_kind"].get<std::string>(), ":", ref["output"].get<std::string>());
  Result<ModelSpec> spec = resolve_model(model_path(name), "", o);
  EXPECT_TRUE(spec.ok()) << spec.status().to_string();
  if (!spec.ok()) return {};
  CompileOptions c = training_compile_options();
  c.optimizer.kind = OptimizerKind::kSgd;
  c.optimizer.learning_rate = ref["lr"].get<double>();
  c.optimizer.momentum = 0;
  c.mesh = l.mesh;
  if (l.devices > 0) {
    c.pipeline = true;
    c.devices = l.devices;
    c.micro_batches = l.micro_batches;
    c.planner.num_layers = 2;
    c.planner.space = PlanSpace::kInterOnly;  // stages of one device each
  }
  const int devices = l.devices > 0 ? l.devices : static_cast<int>(l.mesh.size());
  Result<Cluster> cluster = sized_cluster("local", devices);
  EXPECT_TRUE(cluster.ok());
  Result<Compiled> compiled = compile(*spec, *cluster, c);
  EXPECT_TRUE(compiled.ok()) << compiled.status().to_string();
  if (!compiled.ok()) return {};
  const Program& p = compiled->program;
  std::printf("%s, %s: %s\n", name.c_str(), l.name, describe_program(p).c_str());
  if (l.devices > 0) EXPECT_EQ(p.stages.size(), 2u) << "a pipeline of two stages";
  TrainLoopOptions lo;
  lo.steps = 20;
  lo.keep_final_params = true;
  lo.run.threads_per_device = 1;
  for (OnnxWeight& w : spec->onnx->initial_values())
    lo.initial_weights.emplace(w.name,
                               Tensor::from_values({DType::kF32, w.shape}, std::move(w.values)));
  std::vector<std::vector<float>> batch;
  for (const StepParam& sp : p.params)
    if (is_input(sp)) batch.push_back(input_values(ref, sp.name));
  Result<TrainResult> r = train_program(
      p, [&](int64_t) { return batch; }, lo);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (!r.ok()) return {};
  if (program) *program = p;
  return std::move(*r);
}

std::map<std::string, std::vector<float>> weights_of(const Program& p, const TrainResult& r) {
  std::map<std::string, std::vector<float>> w;
  for (size_t i = 0; i < p.params.size() && i < r.final_params.size(); ++i)
    if (p.params[i].attrs.role == ParamRole::kWeight)
      w[p.params[i].name] = r.final_params[i].to_vector();
  return w;
}

TEST_P(OnnxModelTest, TrainingTracksPyTorchOnEveryLayout) {
  const json ref = ref_of(GetParam());
  const std::vector<double> want = ref["train_losses"].get<std::vector<double>>();
  // Batch norm in training mode normalises by its micro-batch's statistics (as PyTorch does
  // under gradient accumulation), so those models' pipelines run the batch as one micro-batch.
  const int micro = ref["batch_norm_training"].get<bool>() ? 1 : 2;
  const Layout layouts[] = {
      {"one device", {1, 1}, 0, 1}, {"mesh 2x2", {2, 2}, 0, 1}, {"pipeline", {1, 1}, 2, micro}};
  std::vector<double> single;
  for (const Layout& l : layouts) {
    TrainResult r = train(GetParam(), ref, l);
    ASSERT_EQ(r.losses.size(), want.size()) << l.name;
    double worst = 0;
    for (size_t s = 0; s < want.size(); ++s) {
      const double d = std::fabs(r.losses[s] - want[s]) / std::max(std::fabs(want[s]), 1e-2);
      worst = std::max(worst, d);
    }
    std::printf("%s, %s: loss %.6f -> %.6f (PyTorch %.6f -> %.6f), worst step %.2e\n",
                GetParam().c_str(), l.name, r.losses.front(), r.losses.back(), want.front(),
                want.back(), worst);
    EXPECT_LT(worst, 2e-3) << l.name;
    if (single.empty()) {
      single = r.losses;
    } else {
      for (size_t s = 0; s < single.size(); ++s)
        EXPECT_NEAR(r.losses[s], single[s], 1e-4 * std::max(std::fabs(single[s]), 1e-2))
            << l.name << " step " << s + 1;
    }
  }
}

TEST_P(OnnxModelTest, TrainedWeightsWrittenBackImportAgain) {
  const json ref = ref_of(GetParam());
  ModelOverrides o;
  o.batch = 4;
  if (!ref["loss_kind"].get<std::string>().empty())
    o.loss = cat(ref["loss_kind"].get<std::string>(), ":", ref["output"].get<std::string>());
  Result<ModelSpec> spec = resolve_model(model_path(GetParam()), "", o);
  ASSERT_TRUE(spec.ok());
  Program program;
  TrainResult r = train(GetParam(), ref, {"one device", {1, 1}, 0, 1}, &program);
  ASSERT_FALSE(r.final_params.empty());
  auto weights = weights_of(program, r);
  auto bytes = spec->onnx->with_weights(weights);
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  const std::string out = kWork + "/" + GetParam() + "/trained.onnx";
  ASSERT_TRUE(write_file(out, *bytes).ok());
  auto again = OnnxModel::load(out);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  auto imp = (*again)->import(4, loss_of(ref), true);
  ASSERT_TRUE(imp.ok());
  auto back = file_weights(**again);
  EXPECT_EQ(back, weights);  // f32 values written and read exactly
  Executor ex(imp->graph);
  auto outs = ex.run(params_of(imp->graph, ref, back));
  ASSERT_TRUE(outs.ok());
  json rt = {{"loss", (*outs)[0].to_vector()[0]}};
  for (size_t i = 1; i < imp->graph.outputs().size(); ++i)
    rt["outputs"][imp->graph.outputs()[i].name] = (*outs)[i].to_vector();
  ASSERT_TRUE(write_file(kWork + "/" + GetParam() + "/roundtrip.json", rt.dump()).ok());
  // The trained weights lower the loss below the file's first.
  EXPECT_LT(rt["loss"].get<double>(), ref["loss"].get<double>());
}

INSTANTIATE_TEST_SUITE_P(Models, OnnxModelTest,
                         ::testing::Values("bert", "gpt", "resnet", "twotower", "unet"),
                         [](const auto& info) { return info.param; });

// ---- malformed files ----

std::string error_of(const std::string& path, int64_t batch = 4, OnnxLoss loss = {}) {
  auto m = OnnxModel::load(path);
  if (!m.ok()) return m.status().to_string();
  auto imp = (*m)->import(batch, loss);
  return imp.ok() ? std::string("ok") : imp.status().to_string();
}

TEST(OnnxErrors, TruncatedAndNonOnnxFiles) {
  const std::string e = error_of(kWork + "/bad/truncated.onnx");
  EXPECT_NE(e.find("truncated.onnx"), std::string::npos) << e;
  EXPECT_NE(e.find("not an ONNX model"), std::string::npos) << e;
  const std::string t = error_of(kWork + "/bad/text.onnx");
  EXPECT_NE(t.find("not an ONNX model"), std::string::npos) << t;
  EXPECT_NE(error_of(kWork + "/bad/missing.onnx").find("no ONNX file"), std::string::npos);
}

TEST(OnnxErrors, UnsupportedOpset) {
  const std::string e = error_of(kWork + "/bad/opset12.onnx");
  EXPECT_NE(e.find("opset 12 is not supported (13 to 17 are)"), std::string::npos) << e;
  EXPECT_NE(e.find("opset_version=17"), std::string::npos) << e;
}

TEST(OnnxErrors, UnresolvableDynamicShape) {
  const std::string e = error_of(kWork + "/bad/dynamic_seq.onnx");
  EXPECT_NE(e.find("input 'tokens' dimension 1 is dynamic ('seq')"), std::string::npos) << e;
  EXPECT_NE(e.find("dynamic_axes"), std::string::npos) << e;
}

TEST(OnnxErrors, EveryUnsupportedOperatorListedWithItsNodes) {
  const std::string e = error_of(kWork + "/bad/unsupported_ops.onnx");
  EXPECT_NE(e.find("2 unsupported operator types"), std::string::npos) << e;
  EXPECT_NE(e.find("FancyOp: custom_0, custom_1"), std::string::npos) << e;
  EXPECT_NE(e.find("OtherOp: custom_2"), std::string::npos) << e;
}

TEST(OnnxErrors, LossMissingOrNamingAnUnknownOutput) {
  const std::string resnet = model_path("resnet");
  EXPECT_NE(error_of(resnet).find("no output named 'loss'"), std::string::npos);
  EXPECT_NE(error_of(resnet, 4, {"mse", "nope"}).find("'nope', which the graph does not have"),
            std::string::npos);
  EXPECT_FALSE(parse_onnx_loss("hinge").ok());
  EXPECT_EQ(error_of(resnet, 4, {"cross_entropy", ""}), "ok");
}

TEST(OnnxErrors, OnlyBatchAndLossOverridesApply) {
  ModelOverrides o;
  o.hidden = 64;
  auto spec = resolve_model(model_path("bert"), "", o);
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().to_string().find("only --batch and --loss"), std::string::npos);
  ModelOverrides b;
  b.batch = 6;
  auto six = resolve_model(model_path("bert"), "", b);
  ASSERT_TRUE(six.ok()) << six.status().to_string();
  EXPECT_EQ(six->batch, 6);
  auto g = build_forward(*six, 3);  // micro-batches re-import at batch 2
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->type(g->find("tokens")).shape, (Shape{2, 8}));
}

}  // namespace
}  // namespace alpa
