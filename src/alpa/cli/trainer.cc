#include "alpa/cli/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <thread>

#include "alpa/cluster/cluster.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/data.h"
#include "alpa/plan/plan.h"
#include "alpa/runtime/blas.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/spmd_runner.h"
#include "alpa/spmd/lower.h"
#include "alpa/spmd/shard.h"

namespace alpa {

double TrainReport::step_time_s() const {
  if (step_seconds.empty()) return 0;
  std::vector<double> t(step_seconds.begin() + (step_seconds.size() > 1 ? 1 : 0),
                        step_seconds.end());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

namespace {

using Clock = std::chrono::steady_clock;

std::vector<TrainReport::NodeTime> slowest_nodes(const Executor& exec,
                                                 const std::vector<double>& seconds, size_t k) {
  const Graph& g = exec.graph();
  std::vector<ValueId> ids;
  for (ValueId v = 0; v < g.size(); ++v)
    if (seconds[v] > 0) ids.push_back(v);
  std::sort(ids.begin(), ids.end(), [&](ValueId a, ValueId b) { return seconds[a] > seconds[b]; });
  if (ids.size() > k) ids.resize(k);
  std::vector<TrainReport::NodeTime> out;
  for (ValueId v : ids) {
    const Node& n = g.node(v);
    std::string what = cat(value_ref(g, v), " ", op_name(n.op), " ", n.type.to_string());
    const std::vector<ValueId> members = exec.fused_members(v);
    if (members.size() > 1) {
      std::map<std::string, int> count;
      for (ValueId m : members)
        if (m != v) ++count[std::string(op_name(g.node(m).op))];
      what += " fused:";
      for (const auto& [op, c] : count) what += c > 1 ? cat(" ", op, "x", c) : cat(" ", op);
    }
    out.push_back({what, seconds[v]});
  }
  return out;
}

// Where each parameter's value comes from at every step.
struct Slots {
  std::vector<ValueId> params;
  std::vector<int> alias_output;  // output carrying the new value, or -1
  std::vector<int> input_index;   // position among the data inputs, or -1
  explicit Slots(const Graph& g) : params(g.parameters()) {
    alias_output.assign(params.size(), -1);
    input_index.assign(params.size(), -1);
    int inputs = 0;
    for (size_t p = 0; p < params.size(); ++p) {
      for (size_t o = 0; o < g.outputs().size(); ++o)
        if (g.outputs()[o].alias == params[p]) alias_output[p] = static_cast<int>(o);
      if (g.node(params[p]).attr<ParameterAttrs>().role == ParamRole::kInput)
        input_index[p] = inputs++;
    }
  }
};

// The pipeline planner's options for a run (micro_batches = 0: searched among the divisors
// of `batch`). A memory budget is the memory per device; the planner sets each candidate's
// intra-op budget itself, as `alpa plan` does.
PipelinePlannerOptions planner_options(const TrainOptions& o, int micro_batches, int64_t batch) {
  PipelinePlannerOptions po;
  po.num_layers = o.pipeline.num_layers;
  po.imbalance_tolerance = o.pipeline.imbalance_tolerance;
  po.micro_batches = micro_batches;
  po.batch = batch;
  po.sharding = o.sharding;
  po.sharding.memory_budget_bytes = 0;
  po.memory_per_device = o.sharding.memory_budget_bytes;
  return po;
}

// One training step on some hardware; keeps the parameters between steps.
// The micro-batch count the pipeline planner prefers for this model on the pipeline's
// cluster (it plans each divisor of the batch and keeps the fastest).
Result<PipelinePlan> plan_with_micro_batch_search(const ModelSpec& spec, const TrainOptions& o) {
  ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o.cluster));
  ALPA_ASSIGN_OR_RETURN(Cluster sized, with_devices(base, o.pipeline.devices));
  ALPA_ASSIGN_OR_RETURN(Graph whole, build_forward(spec, 1));
  int64_t batch = 1;
  for (ValueId p : whole.parameters(ParamRole::kInput))
    if (whole.type(p).rank() > 0) batch = whole.type(p).shape[0];
  const PipelinePlannerOptions po = planner_options(o, 0, batch);
  auto build = [&](int B) -> Result<TrainStep> {
    ALPA_ASSIGN_OR_RETURN(Graph fwd, build_forward(spec, B));
    TrainStepOptions t;
    t.optimizer = o.optimizer;
    return build_train_step(fwd, t);
  };
  return plan_pipeline(build, sized, po);
}

class StepBackend {
 public:
  virtual ~StepBackend() = default;
  // Runs one step on a batch (one vector per data input); returns the loss.
  virtual Result<double> step(std::vector<std::vector<float>> batch, bool timed_profile) = 0;
  virtual Result<std::vector<Tensor>> final_params() = 0;
};

class SingleDevice : public StepBackend {
 public:
  SingleDevice(const Graph& g, const TrainOptions& o, TrainReport* report)
      : g_(g), slots_(g), report_(report) {
    ExecutorOptions eo;
    eo.num_threads = report->threads;
    exec_ = std::make_unique<Executor>(g, eo);
    values_ = init_parameters(g, o.seed);
    node_seconds_.assign(static_cast<size_t>(g.size()), 0.0);
  }
  Result<double> step(std::vector<std::vector<float>> batch, bool profile) override {
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] >= 0)
        values_[p] = Tensor::from_values(g_.type(slots_.params[p]),
                                         std::move(batch[slots_.input_index[p]]));
    last_inputs_ = values_;
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, exec_->run(std::move(values_)));
    if (profile) {
      for (int k = 0; k < kNumOps; ++k) report_->seconds_by_op[k] += exec_->stats().seconds_by_op[k];
      for (ValueId v = 0; v < g_.size(); ++v) node_seconds_[v] += exec_->stats().seconds_by_node[v];
    }
    values_.assign(slots_.params.size(), Tensor());
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.alias_output[p] >= 0) values_[p] = std::move(outputs[slots_.alias_output[p]]);
    report_->slowest_nodes = slowest_nodes(*exec_, node_seconds_, 15);
    return static_cast<double>(outputs[0].item());
  }
  Result<std::vector<Tensor>> final_params() override {
    std::vector<Tensor> out = values_;
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] >= 0) out[p] = last_inputs_[p];
    return out;
  }

 private:
  const Graph& g_;
  Slots slots_;
  TrainReport* report_;
  std::unique_ptr<Executor> exec_;
  std::vector<Tensor> values_, last_inputs_;
  std::vector<double> node_seconds_;
};

class Mesh2D : public StepBackend {
 public:
  static Result<std::unique_ptr<Mesh2D>> create(const Graph& g, const TrainOptions& o,
                                                TrainReport* report) {
    auto m = std::unique_ptr<Mesh2D>(new Mesh2D(g, o, report));
    ALPA_RETURN_IF_ERROR(m->init());
    return m;
  }
  Result<double> step(std::vector<std::vector<float>> batch, bool) override {
    for (size_t p = 0; p < slots_.params.size(); ++p) {
      if (slots_.input_index[p] < 0) continue;
      const Tensor full = Tensor::from_values(g_.type(slots_.params[p]),
                                              std::move(batch[slots_.input_index[p]]));
      std::vector<Tensor> shards = shard_tensor_all(full, spmd_.param_specs[p], mesh_);
      for (int d = 0; d < devices_; ++d) values_[d][p] = std::move(shards[d]);
    }
    last_inputs_ = values_;
    ALPA_ASSIGN_OR_RETURN(std::vector<std::vector<Tensor>> outputs, runner_->run(std::move(values_)));
    values_.assign(static_cast<size_t>(devices_), std::vector<Tensor>(slots_.params.size()));
    for (int d = 0; d < devices_; ++d)
      for (size_t p = 0; p < slots_.params.size(); ++p)
        if (slots_.alias_output[p] >= 0)
          values_[d][p] = std::move(outputs[d][slots_.alias_output[p]]);
    report_->device_peak_live_bytes = runner_->stats(0).peak_live_bytes;
    return static_cast<double>(outputs[0][0].item());  // the loss is replicated
  }
  Result<std::vector<Tensor>> final_params() override {
    std::vector<Tensor> out;
    for (size_t p = 0; p < slots_.params.size(); ++p) {
      const auto& src = slots_.input_index[p] >= 0 ? last_inputs_ : values_;
      std::vector<const Tensor*> blocks;
      for (int d = 0; d < devices_; ++d) blocks.push_back(&src[d][p]);
      ALPA_ASSIGN_OR_RETURN(Tensor t, assemble_tensor(blocks, spmd_.param_specs[p], mesh_,
                                                      g_.type(slots_.params[p])));
      out.push_back(std::move(t));
    }
    return out;
  }

 private:
  Mesh2D(const Graph& g, const TrainOptions& o, TrainReport* report)
      : g_(g), o_(o), slots_(g), report_(report), mesh_(o.mesh) {}

  Status init() {
    devices_ = static_cast<int>(mesh_[0] * mesh_[1]);
    ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o_.cluster));
    Result<Cluster> sized = with_devices(base, devices_);
    if (!sized.ok())
      return sized.status().with_context(cat("cluster '", base.name, "' for mesh ", mesh_[0], "x",
                                             mesh_[1]));
    ALPA_ASSIGN_OR_RETURN(Mesh mesh, make_mesh(*sized, mesh_[0], mesh_[1]));
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(report_->plan, auto_shard(g_, mesh, sized->device, o_.sharding));
    report_->plan_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report_->predicted_step_time_s = report_->plan.compute_s + report_->plan.communication_s;
    report_->predicted_peak_memory_bytes = report_->plan.peak_memory_bytes;
    ALPA_ASSIGN_OR_RETURN(spmd_, lower_to_spmd(g_, report_->plan));
    report_->collectives = spmd_.collectives;
    for (ValueId p : spmd_.program.parameters())
      report_->device_param_shapes.push_back(spmd_.program.type(p).shape);
    SpmdOptions so;
    so.mesh = mesh_;
    so.threads_per_device = 1;
    runner_ = std::make_unique<SpmdRunner>(spmd_.program, so);
    // The same initial values as one device (same seed, whole tensors), then each device's block.
    const std::vector<Tensor> init = init_parameters(g_, o_.seed);
    values_.assign(static_cast<size_t>(devices_), std::vector<Tensor>(slots_.params.size()));
    for (size_t p = 0; p < slots_.params.size(); ++p) {
      std::vector<Tensor> shards = shard_tensor_all(init[p], spmd_.param_specs[p], mesh_);
      for (int d = 0; d < devices_; ++d) values_[d][p] = std::move(shards[d]);
    }
    return ok_status();
  }

  const Graph& g_;
  TrainOptions o_;
  Slots slots_;
  TrainReport* report_;
  MeshShape mesh_;
  int devices_ = 1;
  SpmdProgram spmd_;
  std::unique_ptr<SpmdRunner> runner_;
  std::vector<std::vector<Tensor>> values_, last_inputs_;  // [device][parameter]
};

class Pipeline : public StepBackend {
 public:
  // `reference`: the training step of all micro-batches (its parameters and data); `step`: the
  // step of one micro-batch that the pipeline splits.
  static Result<std::unique_ptr<Pipeline>> create(const Graph& reference, TrainStep step,
                                                  const ModelSpec& spec, const TrainOptions& o,
                                                  int micro_batches, TrainReport* report) {
    auto p = std::unique_ptr<Pipeline>(new Pipeline(reference, std::move(step), o, report));
    ALPA_RETURN_IF_ERROR(p->init(spec, micro_batches));
    return p;
  }
  Result<double> step(std::vector<std::vector<float>> batch, bool) override {
    std::vector<Tensor> inputs(slots_.params.size());
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] >= 0)
        inputs[p] = Tensor::from_values(ref_.type(slots_.params[p]),
                                        std::move(batch[slots_.input_index[p]]));
    ALPA_ASSIGN_OR_RETURN(double loss, runner_->run_step(inputs));
    last_inputs_ = std::move(inputs);
    report_->device_stats.clear();
    for (int d = 0; d < runner_->num_devices(); ++d)
      report_->device_stats.push_back(runner_->stats(d));
    return loss;
  }
  Result<std::vector<Tensor>> final_params() override {
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> out, runner_->gather_parameters());
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] >= 0) out[p] = last_inputs_[p];
    return out;
  }

 private:
  Pipeline(const Graph& reference, TrainStep step, const TrainOptions& o, TrainReport* report)
      : ref_(reference), step_(std::move(step)), o_(o), slots_(reference), report_(report) {}

  Status init(const ModelSpec& spec, int micro_batches) {
    const int devices = o_.pipeline.devices;
    ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o_.cluster));
    Result<Cluster> sized = with_devices(base, devices);
    if (!sized.ok())
      return sized.status().with_context(cat("cluster '", base.name, "' for ", devices, " devices"));
    const Clock::time_point t0 = Clock::now();
    PipelinePlan plan;
    if (o_.pipeline.plan) {
      plan = *o_.pipeline.plan;
      if (plan.micro_batches != micro_batches)
        return invalid_argument(cat("the pipeline plan is for ", plan.micro_batches,
                                    " micro-batches, not ", micro_batches));
      if (!o_.pipeline.fingerprint.empty() &&
          o_.pipeline.fingerprint != graph_fingerprint(step_.graph))
        return failed_precondition(
            "the plan file was made for a different training graph (model, sizes, optimizer or "
            "micro-batches differ)",
            "re-plan with `alpa plan ... --gpus N --out plan.json`, or delete "
            "\"graph_fingerprint\"");
      if (plan.layers.layer_of.empty()) {
        LayerClusteringOptions lo;
        lo.num_layers = plan.layers.num_layers;
        const std::vector<ValueId> ops = forward_ops(step_);
        ALPA_ASSIGN_OR_RETURN(plan.layers, cluster_layers(step_.graph, ops, lo));
      }
    } else {
      const PipelinePlannerOptions po = planner_options(o_, micro_batches, micro_batches);
      const TrainStep& one = step_;
      ALPA_ASSIGN_OR_RETURN(plan, plan_pipeline([&](int) -> Result<TrainStep> { return one; },
                                                *sized, po));
    }
    (void)spec;
    ALPA_ASSIGN_OR_RETURN(MaterializedPipeline m,
                          materialize_pipeline(step_, plan, *sized, o_.sharding));
    report_->plan_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report_->predicted_step_time_s = m.predicted_step_time_s;
    std::vector<StagePlacement> placements;
    for (const auto& [shape, first] : m.placements) placements.push_back({shape, first});
    PipelineBuildOptions bo;
    bo.schedule = o_.pipeline.schedule;
    bo.micro_batches = micro_batches;
    bo.cluster = &*sized;
    ALPA_ASSIGN_OR_RETURN(PipelineProgram prog,
                          build_pipeline_program(step_, m.split, std::move(m.graphs),
                                                 std::move(m.plans), placements, bo));
    if (o_.pipeline.rewrite_program) o_.pipeline.rewrite_program(prog);
    report_->transfers = static_cast<int64_t>(prog.transfers.size());
    report_->device_stage.clear();
    for (int r = 0; r < prog.num_devices; ++r) report_->device_stage.push_back(stage_of_rank(prog, r));
    report_->pipeline_plan = plan;
    report_->micro_batches = micro_batches;
    for (const PipelineStage& st : prog.stages)
      for (const TaskProgram& tp : st.tasks) report_->collectives += tp.spmd.collectives;
    PipelineRunOptions ro;
    ro.threads_per_device = 1;
    runner_ = std::make_unique<PipelineRunner>(std::move(prog), step_.graph, ro);
    // The same initial values as one device (same seed, whole tensors).
    ALPA_RETURN_IF_ERROR(runner_->load_parameters(init_parameters(ref_, o_.seed)));
    report_->device_stats.clear();
    for (int d = 0; d < runner_->num_devices(); ++d)
      report_->device_stats.push_back(runner_->stats(d));
    return ok_status();
  }

  const Graph& ref_;
  TrainStep step_;
  TrainOptions o_;
  Slots slots_;
  TrainReport* report_;
  std::unique_ptr<PipelineRunner> runner_;
  std::vector<Tensor> last_inputs_;
};

}  // namespace

Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step) {
  if (options.steps < 1) return invalid_argument(cat("--steps must be >= 1, got ", options.steps));
  if (options.threads < 0) return invalid_argument("--threads must be >= 0");
  if (options.mesh[0] < 1 || options.mesh[1] < 1)
    return invalid_argument(cat("mesh extents must be >= 1, got ", options.mesh[0], "x",
                                options.mesh[1]));
  const bool pipeline = options.pipeline.enabled;
  TrainOptions opts = options;
  int micro_batches = options.micro_batches;
  if (pipeline && opts.pipeline.plan) micro_batches = opts.pipeline.plan->micro_batches;
  double search_seconds = 0;
  if (pipeline && micro_batches == 0) {
    // The planner chooses the micro-batch count along with the stages.
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(PipelinePlan plan, plan_with_micro_batch_search(spec, options));
    plan.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
    search_seconds = plan.total_s;
    micro_batches = plan.micro_batches;
    opts.pipeline.plan = std::move(plan);
  }
  if (micro_batches < 1) return invalid_argument("--micro-batches must be >= 1");
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, micro_batches));
  TrainStepOptions tso;
  tso.optimizer = options.optimizer;
  tso.micro_batches = micro_batches;
  ALPA_ASSIGN_OR_RETURN(TrainStep ts, build_train_step(forward, tso));
  const Graph& g = ts.graph;

  TrainReport report;
  const GraphStats stats = graph_stats(g);
  report.parameters = stats.parameters;
  report.flops_per_step = stats.flops;
  report.tokens_per_step = tokens_per_batch(spec);
  report.mesh = options.mesh;
  report.devices = pipeline ? options.pipeline.devices
                            : static_cast<int>(options.mesh[0] * options.mesh[1]);
  report.micro_batches = micro_batches;
  report.threads = report.devices > 1 || pipeline ? 1
                   : options.threads > 0
                       ? options.threads
                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  report.seconds_by_op.assign(kNumOps, 0.0);

  ALPA_ASSIGN_OR_RETURN(std::unique_ptr<DataSource> data, make_data_source(spec, g, options.seed));
  std::unique_ptr<StepBackend> backend;
  if (pipeline) {
    TrainStepOptions one = tso;
    one.micro_batches = 1;
    ALPA_ASSIGN_OR_RETURN(TrainStep step1, build_train_step(forward, one));
    ALPA_ASSIGN_OR_RETURN(std::unique_ptr<Pipeline> p,
                          Pipeline::create(g, std::move(step1), spec, opts, micro_batches,
                                           &report));
    report.plan_seconds += search_seconds;
    backend = std::move(p);
  } else if (report.devices == 1) {
    backend = std::make_unique<SingleDevice>(g, options, &report);
  } else {
    ALPA_ASSIGN_OR_RETURN(std::unique_ptr<Mesh2D> m, Mesh2D::create(g, options, &report));
    backend = std::move(m);
  }
  report.blas_core = blas_core_name();

  for (int step = 1; step <= options.steps; ++step) {
    std::vector<std::vector<float>> batch = data->batch(step - 1);
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(double loss,
                          backend->step(std::move(batch), step > 1 || options.steps == 1));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!std::isfinite(loss))
      return failed_precondition(cat("the loss became ", loss, " at step ", step),
                                 "lower the learning rate (--lr)");
    report.losses.push_back(loss);
    report.step_seconds.push_back(seconds);
    if (on_step) on_step(StepReport{step, loss, seconds});
  }
  if (options.keep_final_params) {
    ALPA_ASSIGN_OR_RETURN(report.final_params, backend->final_params());
    for (ValueId p : g.parameters()) report.param_names.push_back(g.node(p).name);
  }
  return report;
}

}  // namespace alpa
