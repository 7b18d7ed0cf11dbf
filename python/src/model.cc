// alpa.load_model and alpa.Model.
#include "model.h"

#include "alpa/ir/analysis.h"
#include "alpa/ir/text.h"
#include "common.h"

namespace alpa::python {
namespace {

const char* family_name(ModelFamily f) {
  switch (f) {
    case ModelFamily::kGpt: return "gpt";
    case ModelFamily::kMlp: return "mlp";
    case ModelFamily::kConvNet: return "convnet";
    case ModelFamily::kMoe: return "moe";
    case ModelFamily::kWResNet: return "wresnet";
    case ModelFamily::kFile: return "file";
  }
  return "other";
}

using Opt = std::optional<int64_t>;

PyModel load_model(const std::string& name, const std::string& size, Opt batch, Opt seq, Opt layers,
                   Opt hidden, Opt heads, Opt vocab, const std::string& dtype,
                   const std::string& loss) {
  PyModel m;
  ModelFlags& f = m.flags;
  f.model = name;
  f.size = size;
  f.batch = batch, f.seq = seq, f.layers = layers, f.hidden = hidden, f.heads = heads;
  f.vocab = vocab;
  const std::pair<const char*, Opt> sizes[] = {{"batch", batch},   {"seq", seq},
                                               {"layers", layers}, {"hidden", hidden},
                                               {"heads", heads},   {"vocab", vocab}};
  for (const auto& [key, v] : sizes)
    if (v && *v < 1) fail(cat("load_model: ", key, " must be >= 1, got ", *v));
  if (!dtype.empty() && dtype != "f32" && dtype != "f16" && dtype != "bf16")
    fail(cat("load_model: unknown dtype '", dtype, "'"), "use 'f32', 'bf16' or 'f16'");
  f.dtype = dtype;
  f.loss = loss;
  m.spec = unwrap(resolve_model_flags(f));
  m.forward = unwrap(build_forward(m.spec, 1));
  return m;
}

py::dict param_dict(const Graph& g, ParamRole role, bool with_dtype) {
  py::dict d;
  for (ValueId v : g.parameters(role)) {
    const TensorType& t = g.type(v);
    py::tuple shape = py::cast(std::vector<int64_t>(t.shape.begin(), t.shape.end()));
    if (with_dtype)
      d[py::str(g.node(v).name)] = py::make_tuple(shape, std::string(dtype_name(t.dtype)));
    else
      d[py::str(g.node(v).name)] = shape;
  }
  return d;
}

const char* model_family(const ModelSpec& s) {
  return s.onnx ? "onnx" : family_name(s.family);
}

// ONNX models: {weight: the initializer's name in the file} (PyTorch's parameter names).
py::dict onnx_initializers(const PyModel& m) {
  py::dict d;
  if (m.spec.onnx)
    for (const OnnxWeight& w : m.spec.onnx->initial_values()) d[py::str(w.name)] = w.initializer;
  return d;
}

std::string model_repr(const PyModel& m) {
  const double params = static_cast<double>(graph_stats(m.forward).parameters);
  return cat("<alpa.Model '", m.spec.name, "' (", model_family(m.spec), "): batch ", m.spec.batch,
             ", ", params >= 1e6 ? cat(params / 1e6, "M") : cat(params), " parameters, ",
             m.forward.parameters(ParamRole::kWeight).size(), " weights>");
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<PyModel>(m, "Model",
                      "A model resolved by the registry: a built-in family and size, or a file.\n"
                      "Made by alpa.load_model(); passed to alpa.plan, alpa.simulate and "
                      "alpa.Trainer.")
      .def_property_readonly(
          "name", [](const PyModel& x) { return x.spec.name; }, "'gpt-tiny', or the file's path")
      .def_property_readonly(
          "family", [](const PyModel& x) { return model_family(x.spec); },
          "gpt, mlp, convnet, moe, wresnet, file (text IR) or onnx")
      .def_property_readonly(
          "batch", [](const PyModel& x) { return x.spec.batch; },
          "samples (sequences, images) per training step")
      .def_property_readonly(
          "parameters", [](const PyModel& x) { return graph_stats(x.forward).parameters; },
          "number of weight elements")
      .def_property_readonly(
          "flops", [](const PyModel& x) { return graph_flops(x.forward); },
          "FLOPs of one forward pass over the batch")
      .def_property_readonly(
          "inputs", [](const PyModel& x) { return param_dict(x.forward, ParamRole::kInput, true); },
          "data inputs of one step: {name: (shape, dtype)}")
      .def_property_readonly(
          "weights",
          [](const PyModel& x) { return param_dict(x.forward, ParamRole::kWeight, false); },
          "weights: {name: shape}")
      .def_property_readonly("onnx_initializers", &onnx_initializers,
                             "ONNX models: {weight: initializer name in the file}; else {}")
      .def(
          "text",
          [](const PyModel& x) {
            Result<EmittedForward> e = emit_forward(x.spec);
            return e.ok() ? e->text : print_graph(x.forward);
          },
          "The forward graph in the text IR, with the batch declared where the model allows it\n"
          "(what `alpa graph --emit forward` writes; a file load_model reads at any batch).")
      .def("__repr__", &model_repr);

  m.def("load_model", &load_model, py::arg("name_or_path"), py::arg("size") = "tiny",
        py::arg("batch") = py::none(), py::arg("seq") = py::none(), py::arg("layers") = py::none(),
        py::arg("hidden") = py::none(), py::arg("heads") = py::none(),
        py::arg("vocab") = py::none(), py::arg("dtype") = "", py::arg("loss") = "",
        "Resolves a model as `--model/--size` do: a built-in family (gpt, mlp, convnet, moe,\n"
        "wresnet) with a size and optional overrides, or the path of a model file (text IR or\n"
        "ONNX; `loss` adds a loss on an ONNX model's output).");
}

}  // namespace alpa::python
