// alpa.Trainer: a compiled program on virtual devices (threads of this process), stepped from
// Python with NumPy data; weights in and out as NumPy arrays by name.
#include <chrono>
#include <memory>
#include <thread>

#include "alpa/cli/trainer.h"
#include "alpa/models/data.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/program_runner.h"
#include "alpa/runtime/train.h"
#include "alpa/support/files.h"
#include "alpa/support/text.h"
#include "common.h"
#include "plan.h"

namespace alpa::python {
namespace {

class PyTrainer {
 public:
  PyTrainer(const PyModel& model, const ParallelArgs& args, uint64_t seed, int threads);
  double step(const py::dict& data);
  py::dict synthetic_batch(int64_t step);
  py::dict params(bool weights);
  void load_weights(const py::dict& weights, bool strict);
  void export_onnx(const std::string& path);
  py::dict inputs() const;
  std::string repr() const;

  const PyModel& model() const { return model_; }
  const PyPlan& plan() const { return plan_; }
  int64_t steps_done() const { return steps_done_; }

 private:
  const Program& program() const { return plan_.compiled->program; }
  std::string unknown_name(const std::string& name, bool weights) const;

  PyModel model_;
  PyPlan plan_;
  uint64_t seed_ = 0;
  std::unique_ptr<ProgramRunner> runner_;
  std::unique_ptr<DataSource> data_;
  int64_t steps_done_ = 0;
};

Tensor from_values_checked(const StepParam& sp, std::vector<float> values) {
  if (static_cast<int64_t>(values.size()) != num_elements(sp.type.shape))
    fail(cat("the ONNX file's initializer for '", sp.name, "' has ", values.size(),
             " values, the weight ", sp.type.to_string()));
  return Tensor::from_values(sp.type, std::move(values));
}

PyTrainer::PyTrainer(const PyModel& model, const ParallelArgs& args, uint64_t seed, int threads)
    : model_(model), seed_(seed) {
  if (threads < 0) fail(cat("threads must be >= 0, got ", threads));
  if (args.devices > kMaxVirtualDevices)
    fail(cat(args.devices, " virtual devices: at most ", kMaxVirtualDevices, " run as threads"),
         "use fewer devices");
  plan_ = compile_model(model, args, "1x1", /*training=*/true);
  const Program& p = program();
  if (p.num_devices > kMaxVirtualDevices)
    fail(cat(p.num_devices, " virtual devices: at most ", kMaxVirtualDevices, " run as threads"),
         "use a smaller mesh");
  TrainLoopOptions lo;
  check(admit_memory(p, lo, nullptr));
  RunOptions ro;
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  ro.threads_per_device = threads > 0 ? threads : p.num_devices == 1 ? hw : 1;
  std::vector<DataInput> slots;
  std::vector<Tensor> init(p.params.size());
  for (size_t i = 0; i < p.params.size(); ++i) {
    const StepParam& sp = p.params[i];
    if (is_input(sp))
      slots.push_back({sp.name, sp.type, sp.attrs});
    else
      init[i] = init_tensor(sp.name, sp.type, sp.attrs, seed);
  }
  // An ONNX model starts from the weights its file holds, as `alpa train` does.
  if (model.spec.onnx) {
    std::map<std::string, OnnxWeight> values;
    for (OnnxWeight& w : model.spec.onnx->initial_values()) values[w.name] = std::move(w);
    for (size_t i = 0; i < p.params.size(); ++i) {
      auto it = values.find(p.params[i].name);
      if (it != values.end() && !is_input(p.params[i]))
        init[i] = from_values_checked(p.params[i], std::move(it->second.values));
    }
  }
  data_ = unwrap(make_data_source(model.spec, slots, seed));
  py::gil_scoped_release release;
  runner_ = std::make_unique<ProgramRunner>(p, ro);
  check(runner_->load_parameters(init));
}

std::string PyTrainer::unknown_name(const std::string& name, bool weights) const {
  std::vector<std::string_view> names;
  for (const StepParam& sp : program().params)
    if (weights ? sp.attrs.role == ParamRole::kWeight : is_input(sp)) names.push_back(sp.name);
  const std::string close = closest_match(name, names);
  return close.empty() ? std::string() : cat("did you mean '", close, "'?");
}

// Token ids and class labels (i32 inputs drawn from [0, n)) must lie in that range: an id
// outside it would index past an embedding table or match no class.
void check_range(const StepParam& sp, const Tensor& t) {
  if (sp.type.dtype != DType::kI32 || sp.attrs.init != ParamInit::kRandint || sp.attrs.scale <= 0)
    return;
  for (int64_t i = 0; i < t.size(); ++i) {
    const float v = t.data()[i];
    if (v < 0 || v >= sp.attrs.scale)
      fail(cat("input '", sp.name, "' holds ", static_cast<int64_t>(v), " at flat position ", i,
               ", out of range [0, ", sp.attrs.scale, ")"),
           cat("'", sp.name, "' holds ids or labels below ", sp.attrs.scale));
  }
}

double PyTrainer::step(const py::dict& data) {
  const Program& p = program();
  for (const auto& item : data) {
    const std::string key = py::str(item.first);
    bool known = false;
    for (const StepParam& sp : p.params) known = known || (is_input(sp) && sp.name == key);
    if (!known)
      fail(cat("step: '", key, "' is not a data input of ", model_.spec.name),
           unknown_name(key, false).empty() ? "Trainer.inputs lists the data inputs"
                                            : unknown_name(key, false));
  }
  std::vector<Tensor> inputs(p.params.size());
  for (size_t i = 0; i < p.params.size(); ++i) {
    const StepParam& sp = p.params[i];
    if (!is_input(sp)) continue;
    if (!data.contains(sp.name))
      fail(cat("step: data input '", sp.name, "' is missing"),
           cat("give every data input: Trainer.inputs lists them (", sp.name, ": ",
               sp.type.to_string(), ")"));
    inputs[i] = from_numpy(data[py::str(sp.name)], sp.type, cat("input '", sp.name, "'"));
    check_range(sp, inputs[i]);
  }
  Result<double> loss = Status(StatusCode::kInternal, "not run");
  {
    py::gil_scoped_release release;
    loss = runner_->run_step(inputs);
  }
  ++steps_done_;
  return unwrap(std::move(loss));
}

py::dict PyTrainer::synthetic_batch(int64_t step) {
  if (step < 0) fail(cat("synthetic_batch: step must be >= 0, got ", step));
  std::vector<std::vector<float>> values = data_->batch(step);
  py::dict out;
  size_t k = 0;
  for (const StepParam& sp : program().params) {
    if (!is_input(sp)) continue;
    Tensor t = Tensor::from_values(sp.type, std::move(values[k++]));
    out[py::str(sp.name)] = to_numpy(t, sp.type.dtype == DType::kI32);
  }
  return out;
}

py::dict PyTrainer::params(bool weights) {
  std::vector<Tensor> whole;
  {
    py::gil_scoped_release release;
    whole = unwrap(runner_->gather_parameters());
  }
  py::dict out;
  const Program& p = program();
  for (size_t i = 0; i < p.params.size(); ++i) {
    const StepParam& sp = p.params[i];
    if (is_input(sp) || (sp.attrs.role == ParamRole::kWeight) != weights) continue;
    out[py::str(sp.name)] = to_numpy(whole[i]);
  }
  return out;
}

void PyTrainer::load_weights(const py::dict& weights, bool strict) {
  const Program& p = program();
  std::vector<Tensor> whole;
  {
    py::gil_scoped_release release;
    whole = unwrap(runner_->gather_parameters());
  }
  std::map<std::string, int> index;
  for (size_t i = 0; i < p.params.size(); ++i)
    if (p.params[i].attrs.role == ParamRole::kWeight) index[p.params[i].name] = static_cast<int>(i);
  for (const auto& item : weights) {
    const std::string key = py::str(item.first);
    auto it = index.find(key);
    if (it == index.end())
      fail(cat("load_weights: '", key, "' is not a weight of ", model_.spec.name),
           unknown_name(key, true).empty() ? "Trainer.weights() names every weight"
                                           : unknown_name(key, true));
    const StepParam& sp = p.params[it->second];
    whole[it->second] = from_numpy(item.second, sp.type, cat("weight '", key, "'"));
  }
  if (strict)
    for (const auto& [name, i] : index)
      if (!weights.contains(name))
        fail(cat("load_weights: weight '", name, "' is missing (", p.params[i].type.to_string(),
                 ")"),
             "give every weight, or load_weights(..., strict=False) to keep the others");
  py::gil_scoped_release release;
  check(runner_->load_parameters(whole));
}

void PyTrainer::export_onnx(const std::string& path) {
  if (!model_.spec.onnx)
    fail(cat("export_onnx: ", model_.spec.name, " was not loaded from an ONNX file"),
         "use weights() for the arrays");
  std::vector<Tensor> whole;
  {
    py::gil_scoped_release release;
    whole = unwrap(runner_->gather_parameters());
  }
  std::map<std::string, std::vector<float>> weights;
  const Program& p = program();
  for (size_t i = 0; i < p.params.size(); ++i)
    if (p.params[i].attrs.role == ParamRole::kWeight)
      weights[p.params[i].name] =
          std::vector<float>(whole[i].data(), whole[i].data() + whole[i].size());
  const std::string bytes = unwrap(model_.spec.onnx->with_weights(weights));
  check(write_file(path, bytes));
}

py::dict PyTrainer::inputs() const {
  py::dict d;
  for (const StepParam& sp : program().params)
    if (is_input(sp))
      d[py::str(sp.name)] = py::make_tuple(
          py::tuple(py::cast(std::vector<int64_t>(sp.type.shape.begin(), sp.type.shape.end()))),
          std::string(dtype_name(sp.type.dtype)));
  return d;
}

std::string PyTrainer::repr() const {
  return cat("<alpa.Trainer '", model_.spec.name, "' on ", describe_program(program()), ", ",
             steps_done_, " steps done>");
}

}  // namespace

void bind_trainer(py::module_& m) {
  py::class_<PyTrainer>(m, "_Trainer")
      .def(py::init<const PyModel&, const ParallelArgs&, uint64_t, int>(), py::arg("model"),
           py::arg("args"), py::arg("seed"), py::arg("threads"))
      .def("step", &PyTrainer::step, py::arg("data"))
      .def("synthetic_batch", &PyTrainer::synthetic_batch, py::arg("step"))
      .def("weights", [](PyTrainer& t) { return t.params(true); })
      .def("optimizer_state", [](PyTrainer& t) { return t.params(false); })
      .def("load_weights", &PyTrainer::load_weights, py::arg("weights"), py::arg("strict"))
      .def("export_onnx", &PyTrainer::export_onnx, py::arg("path"))
      .def_property_readonly("inputs", &PyTrainer::inputs)
      .def_property_readonly("model", &PyTrainer::model)
      .def_property_readonly("plan", &PyTrainer::plan)
      .def_property_readonly("steps_done", &PyTrainer::steps_done)
      .def("__repr__", &PyTrainer::repr);
}

}  // namespace alpa::python
