// Embedding alpa in a C++ program: load a built-in model, compile its training step for a
// 2x2 mesh (the intra-operator ILP chooses every layout), and train it for a few steps on four
// virtual devices (threads of this process) with the model's synthetic data.
#include <cstdio>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/compile/compile.h"
#include "alpa/models/data.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/train.h"

namespace {

int fail(const alpa::Status& s) {
  std::fprintf(stderr, "error: %s\n", s.to_string().c_str());
  return 1;
}

}  // namespace

int main() {
  alpa::ModelOverrides overrides;
  overrides.layers = 2;
  alpa::Result<alpa::ModelSpec> model = alpa::resolve_model("gpt", "tiny", overrides);
  if (!model.ok()) return fail(model.status());

  alpa::Result<alpa::Cluster> cluster = alpa::cluster_preset("local");
  if (!cluster.ok()) return fail(cluster.status());
  alpa::CompileOptions options;
  options.mesh = alpa::MeshShape{2, 2};
  options.micro_batches = 1;
  alpa::Result<alpa::Compiled> compiled = alpa::compile(*model, *cluster, options);
  if (!compiled.ok()) return fail(compiled.status());
  const alpa::Program& program = compiled->program;
  std::printf("compiled %s for %s: %lld collectives per step, predicted %.3f ms per step\n",
              model->name.c_str(), alpa::describe_program(program).c_str(),
              static_cast<long long>(alpa::count_collectives(program)),
              program.predicted_step_time_s * 1e3);

  // The data inputs of the step, in the program's order, and the model's synthetic batches.
  std::vector<alpa::DataInput> inputs;
  for (const alpa::StepParam& p : program.params)
    if (alpa::is_input(p)) inputs.push_back({p.name, p.type, p.attrs});
  auto data = alpa::make_data_source(*model, inputs, /*seed=*/0);
  if (!data.ok()) return fail(data.status());

  alpa::TrainLoopOptions loop;
  loop.steps = 8;
  loop.model = model->name;
  alpa::Result<alpa::TrainResult> run = alpa::train_program(
      program, [&](int64_t step) { return (*data)->batch(step); }, loop, /*world=*/nullptr,
      [](const alpa::StepReport& r) {
        std::printf("step %d  loss %.4f  %.1f ms\n", r.step, r.loss, r.seconds * 1e3);
      });
  if (!run.ok()) return fail(run.status());
  const std::vector<double>& losses = run->losses;
  if (losses.size() != 8 || !(losses.back() < losses.front())) {
    std::fprintf(stderr, "the loss did not fall: %f -> %f\n", losses.front(), losses.back());
    return 1;
  }
  std::printf("trained on %d virtual devices: loss %.4f -> %.4f\n", program.num_devices,
              losses.front(), losses.back());
  return 0;
}
