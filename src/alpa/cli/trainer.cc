#include "alpa/cli/trainer.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <thread>

#include "alpa/ir/analysis.h"
#include "alpa/models/data.h"
#include "alpa/plan/plan.h"
#include "alpa/program/io.h"
#include "alpa/runtime/blas.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/sim/simulator.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

int devices_of(const TrainOptions& o) {
  return o.compile.pipeline ? o.compile.devices : static_cast<int>(o.compile.mesh.size());
}

// The program this run trains: given, compiled here, or — on processes other than 0 of an MPI
// job — received from process 0, which compiled it.
Result<Program> program_for(const ModelSpec& spec, const TrainOptions& o,
                            std::optional<Compiled>& compiled) {
  // A given program runs on the devices it was compiled for (check_world_matches: as many
  // MPI ranks).
  if (o.program) return *o.program;
  auto compile_here = [&]() -> Result<Program> {
    ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o.cluster));
    ALPA_ASSIGN_OR_RETURN(Compiled c, compile(spec, base, o.compile));
    Program p = c.program;
    compiled = std::move(c);
    return p;
  };
  World* w = o.world;
  if (w == nullptr || w->num_processes() == 1) return compile_here();
  // Process 0 compiles and sends the program in its text form; the others run exactly it.
  std::string text;
  if (w->process_index() == 0) {
    Result<Program> p = compile_here();
    text = p.ok() ? program_to_json(*p) : "!" + p.status().to_string();
  }
  // The others wait while process 0 plans (minutes for a large model).
  if (auto* mpi = dynamic_cast<MpiWorld*>(w))
    mpi->set_next_wait_limit(std::max(3600.0, w->timeout_s()));
  ALPA_RETURN_IF_ERROR(w->broadcast_bytes(text, 0));
  if (!text.empty() && text[0] == '!')
    return failed_precondition(cat("compiling on process 0 failed: ", text.substr(1)));
  if (w->process_index() == 0 && compiled) return compiled->program;
  return program_from_json(text, "the program from process 0");
}

// The cost model's peak per device in the f32 storage the CPU executes in (the simulator counts
// the model's dtype), for memory admission: the compile's simulation, or one made here.
std::vector<double> predicted_peaks(const Program& program, const std::optional<Compiled>& compiled,
                                    const std::string& cluster) {
  std::vector<double> out(static_cast<size_t>(program.num_devices), 0.0);
  std::optional<SimReport> sim;
  if (compiled && compiled->sim) {
    sim = compiled->sim;
  } else if (Result<Cluster> c = sized_cluster(cluster, program.num_devices); c.ok()) {
    if (Result<SimReport> s = simulate(program, *c); s.ok()) sim = std::move(*s);
  }
  if (!sim) return out;
  for (size_t s = 0; s < program.stages.size() && s < sim->stages.size(); ++s) {
    const SimStage& ss = sim->stages[s];
    for (int d : program.stages[s].mesh.devices) {
      const double owned = static_cast<double>(memory_need(program, {d}, {}).devices);
      out[static_cast<size_t>(d)] =
          ss.peak_memory_bytes * (ss.owned_bytes > 0 ? owned / ss.owned_bytes : 1.0);
    }
  }
  return out;
}

// The validation loss: the forward of one whole batch on one device, with the program's
// weights (by name), averaged over `batches` batches of the dataset's validation split.
// (`tokens` or `arrays`: the dataset the run trains on.)
Result<EvalFn> make_evaluator(const ModelSpec& spec, const Program& program,
                              const TokenDataset* tokens, const ArrayDataset* arrays, int batches,
                              uint64_t seed) {
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, 1));
  std::vector<DataInput> inputs;
  for (ValueId v : forward.parameters(ParamRole::kInput))
    inputs.push_back(
        {forward.node(v).name, forward.type(v), forward.node(v).attr<ParameterAttrs>()});
  std::shared_ptr<DataSource> data;
  {
    ALPA_ASSIGN_OR_RETURN(
        std::unique_ptr<DataSource> d,
        tokens ? make_token_data_source(spec, inputs, *tokens, Split::kValidation, seed)
               : make_array_data_source(inputs, *arrays, Split::kValidation, seed));
    data = std::move(d);
  }
  std::map<std::string, int> param_of;
  for (size_t p = 0; p < program.params.size(); ++p)
    param_of[program.params[p].name] = static_cast<int>(p);
  for (ValueId v : forward.parameters(ParamRole::kWeight))
    if (!param_of.count(forward.node(v).name))
      return invalid_argument(
          cat("the program has no weight '", forward.node(v).name, "' for validation"));
  auto executor = std::make_shared<Executor>(forward, ExecutorOptions{0});
  const int loss_index = static_cast<int>(forward.find_output("loss") - &forward.outputs()[0]);
  return EvalFn([=](const std::vector<Tensor>& params) -> Result<double> {
    double sum = 0;
    for (int b = 0; b < batches; ++b) {
      std::vector<std::vector<float>> batch = data->batch(b);
      std::vector<Tensor> args;
      size_t next = 0;
      for (ValueId v : executor->graph().parameters()) {
        const Node& n = executor->graph().node(v);
        if (n.attr<ParameterAttrs>().role == ParamRole::kInput)
          args.push_back(Tensor::from_values(n.type, std::move(batch[next++])));
        else
          args.push_back(params[static_cast<size_t>(param_of.at(n.name))]);
      }
      ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> out, executor->run(std::move(args)));
      sum += out[static_cast<size_t>(loss_index)].item();
    }
    return sum / batches;
  });
}

std::vector<DataInput> data_inputs(const Program& p) {
  std::vector<DataInput> out;
  for (const StepParam& sp : p.params)
    if (sp.attrs.role == ParamRole::kInput) out.push_back({sp.name, sp.type, sp.attrs});
  return out;
}

// What the report says about the program and how it was compiled.
void describe_run(const Program& program, const std::optional<Compiled>& compiled, TrainReport& r) {
  r.program = program;
  r.devices = program.num_devices;
  r.mesh = program.stages.size() == 1 ? program.stages[0].mesh.shape : MeshShape{1, 1};
  r.collectives = count_collectives(program);
  r.predicted_step_time_s = program.predicted_step_time_s;
  for (int d = 0; d < program.num_devices; ++d)
    r.device_stage.push_back(stage_of_device(program, d));
  for (const StepParam& p : program.params) r.param_names.push_back(p.name);
  if (!compiled) return;
  r.compiled = compiled;
  if (compiled->mesh_plan) r.predicted_peak_memory_bytes = compiled->mesh_plan->peak_memory_bytes;
  if (compiled->sim) r.predicted_peak_memory_bytes = compiled->sim->peak_memory_bytes();
}

}  // namespace

Status check_world_matches(const TrainOptions& o) {
  const bool pipelined = o.compile.pipeline;
  const int devices = o.program ? o.program->num_devices : devices_of(o);
  if (o.world == nullptr || o.world->size() == devices) return ok_status();
  const int ranks = o.world->size();
  return invalid_argument(
      cat("mpirun started ", ranks, " rank", ranks > 1 ? "s" : "", " but ",
          o.program   ? cat("the program is for ", devices, " devices")
          : pipelined ? cat("the pipeline has ", devices, " devices")
                      : cat("the mesh ", o.compile.mesh.to_string(), " has ", devices, " device",
                            devices > 1 ? "s" : ""),
          "; the MPI backend runs one device per rank"),
      cat("use mpirun -np ", devices, ", or ",
          o.program   ? std::string("compile the program for that many devices")
          : pipelined ? cat("--devices ", ranks)
                      : cat("a --mesh of ", ranks, " devices (e.g. 1x", ranks, ")")));
}

CompileOptions training_compile_options() {
  CompileOptions c;
  c.micro_batches = 1;
  c.check_by_simulation = false;
  return c;
}

Result<TrainStep> step_of_program(const Program& program, const ModelSpec& spec,
                                  const OptimizerOptions& optimizer, int micro_batches) {
  const bool pipelined = program.schedule != "none";
  const int B = pipelined ? program.micro_batches : std::max(1, micro_batches);
  ALPA_ASSIGN_OR_RETURN(TrainStep step, pipelined ? micro_batch_step(spec, optimizer, B)
                                                  : training_step(spec, optimizer, B));
  if (!program.step_fingerprint.empty() &&
      program.step_fingerprint != graph_fingerprint(step.graph))
    return failed_precondition(
        cat("the program was compiled from another training step than ", spec.name, " with ",
            "these optimizer settings and ", B, " micro-batch", B == 1 ? "" : "es"),
        "run it with the model flags it was compiled with (--program takes them from the "
        "program when no model flag is given), or compile it again");
  return step;
}

Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step) {
  if (options.threads < 0) return invalid_argument("--threads must be >= 0");
  if (options.compile.mesh[0] < 1 || options.compile.mesh[1] < 1)
    return invalid_argument(
        cat("mesh extents must be >= 1, got ", options.compile.mesh.to_string()));
  ALPA_RETURN_IF_ERROR(check_world_matches(options));
  const int64_t devices = options.program            ? options.program->num_devices
                          : options.compile.pipeline ? options.compile.devices
                                                     : options.compile.mesh.size();
  if (options.world == nullptr && devices > kMaxVirtualDevices)
    return invalid_argument(
        cat(devices, " virtual devices: the threads backend runs one thread per device, at most ",
            kMaxVirtualDevices),
        "use fewer devices, or run one process per device with --backend mpi under mpirun");
  TrainReport r;
  std::optional<Compiled> compiled;
  const Clock::time_point t0 = Clock::now();
  ALPA_ASSIGN_OR_RETURN(Program program, program_for(spec, options, compiled));
  r.plan_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!compiled) r.plan_how = options.program ? "read" : "received";
  if (options.rewrite_program) options.rewrite_program(program);
  describe_run(program, compiled, r);
  // The training step the program runs (one micro-batch's for a pipeline), for its statistics
  // and, for a given program, to check that it was compiled from this model.
  const bool pipelined = program.schedule != "none";
  r.micro_batches = pipelined ? program.micro_batches : std::max(1, options.compile.micro_batches);
  TrainStep rebuilt;
  if (!compiled) {
    ALPA_ASSIGN_OR_RETURN(
        rebuilt, step_of_program(program, spec, options.compile.optimizer, r.micro_batches));
  }
  const TrainStep& step = compiled ? compiled->step : rebuilt;
  r.parameters = graph_stats(step.graph).parameters;
  // A pipeline runs the forward and backward of its step once per micro-batch, the update once.
  for (ValueId v = 0; v < step.graph.size(); ++v)
    r.flops_per_step += node_flops(step.graph, v) *
                        (pipelined && !once_per_step(step.phase[v]) ? r.micro_batches : 1);
  r.tokens_per_step = tokens_per_batch(spec);
  const bool one_device = program.num_devices == 1;
  r.threads = !one_device ? std::max(1, options.threads)
              : options.threads > 0
                  ? options.threads
                  : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  TrainLoopOptions lo = options.loop;
  // An ONNX model starts from the weights its file holds (unless resumed or given others).
  if (spec.onnx && lo.initial_weights.empty() && lo.resume.empty())
    for (OnnxWeight& w : spec.onnx->initial_values())
      lo.initial_weights.emplace(w.name,
                                 Tensor::from_values({DType::kF32, w.shape}, std::move(w.values)));
  if (lo.predicted_peak_bytes.empty())
    lo.predicted_peak_bytes = predicted_peaks(program, compiled, options.cluster);
  // Before the data is made: a step's data alone may not fit.
  ALPA_RETURN_IF_ERROR(admit_memory(program, lo, options.world));
  std::optional<TokenDataset> dataset;
  std::optional<ArrayDataset> arrays;
  std::unique_ptr<DataSource> data;
  if (!options.data_path.empty() && ArrayDataset::looks_like(options.data_path)) {
    const std::vector<DataInput> slots = data_inputs(program);
    std::vector<std::string> names;
    for (const DataInput& d : slots) names.push_back(d.name);
    ALPA_ASSIGN_OR_RETURN(arrays, ArrayDataset::open(options.data_path, names));
    ALPA_ASSIGN_OR_RETURN(data,
                          make_array_data_source(slots, *arrays, Split::kTrain, options.loop.seed));
  } else if (!options.data_path.empty()) {
    ALPA_ASSIGN_OR_RETURN(dataset, TokenDataset::open(options.data_path));
    ALPA_ASSIGN_OR_RETURN(data, make_token_data_source(spec, data_inputs(program), *dataset,
                                                       Split::kTrain, options.loop.seed));
  } else {
    ALPA_ASSIGN_OR_RETURN(data, make_data_source(spec, data_inputs(program), options.loop.seed));
  }
  // Under several processes each makes only the rows its devices read.
  if (options.world != nullptr && options.world->num_processes() > 1)
    data->only_rows(input_rows(program, options.world->local_ranks()));
  if (lo.eval_every > 0) {
    if (!dataset && !arrays)
      return invalid_argument("--eval-every needs held-out data",
                              "train on a dataset (--data DIR)");
    ALPA_ASSIGN_OR_RETURN(lo.evaluate, make_evaluator(spec, program, dataset ? &*dataset : nullptr,
                                                      arrays ? &*arrays : nullptr,
                                                      options.eval_batches, options.loop.seed));
  }
  lo.run.threads_per_device = r.threads;
  lo.model = spec.name;
  // Model FLOP utilisation: against this machine's peak (the local cluster's measured SGEMM
  // rate per core) for the cores the devices occupy; the devices run here whatever cluster
  // the plan was made for.
  lo.flops_per_step = r.flops_per_step;
  if (Result<Cluster> c = cluster_preset("local"); c.ok()) {
    const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
    const int cores = options.world ? r.devices * r.threads : std::min(r.devices * r.threads, hw);
    lo.peak_flops = c->device.peak_flops_f32 * cores;
  }
  ALPA_ASSIGN_OR_RETURN(TrainResult run, train_program(
                                             program, [&](int64_t s) { return data->batch(s); }, lo,
                                             options.world, on_step));
  static_cast<TrainResult&>(r) = std::move(run);
  if (!r.losses.empty())
    r.data_rows_per_step = static_cast<double>(data->rows_read()) / r.losses.size();
  r.blas_core = blas_core_name();
  return r;
}

}  // namespace alpa
