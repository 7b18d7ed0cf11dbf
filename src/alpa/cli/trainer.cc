#include "alpa/cli/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <sstream>
#include <thread>

#include "alpa/cluster/cluster.h"
#include "alpa/ir/analysis.h"
#include "alpa/models/data.h"
#include "alpa/plan/plan.h"
#include "alpa/runtime/blas.h"
#include "alpa/runtime/checkpoint.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/runtime/spmd_runner.h"
#include "alpa/spmd/lower.h"
#include "alpa/sim/simulator.h"
#include "alpa/runtime/shard.h"
#include "alpa/support/hash.h"

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

// Pipeline stages for this model on the pipeline's cluster, with `micro_batches` micro-batches
// (0: the planner plans each divisor of the batch and keeps the fastest).
Result<PipelinePlan> plan_pipeline_stages(const ModelSpec& spec, const TrainOptions& o,
                                          int micro_batches) {
  ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o.cluster));
  ALPA_ASSIGN_OR_RETURN(Cluster sized, with_devices(base, o.pipeline.devices));
  ALPA_ASSIGN_OR_RETURN(Graph whole, build_forward(spec, 1));
  int64_t batch = 1;
  for (ValueId p : whole.parameters(ParamRole::kInput))
    if (whole.type(p).rank() > 0) batch = whole.type(p).shape[0];
  const PipelinePlannerOptions po = planner_options(o, micro_batches, batch);
  auto build = [&](int B) -> Result<TrainStep> {
    ALPA_ASSIGN_OR_RETURN(Graph fwd, build_forward(spec, B));
    TrainStepOptions t;
    t.optimizer = o.optimizer;
    return build_train_step(fwd, t);
  };
  return plan_pipeline(build, sized, po);
}

// The sharding plan of a mesh run: auto-sharding on the cluster's cost model.
Result<ShardingPlan> plan_mesh(const Graph& g, const TrainOptions& o) {
  const int devices = static_cast<int>(o.mesh[0] * o.mesh[1]);
  ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(o.cluster));
  Result<Cluster> sized = with_devices(base, devices);
  if (!sized.ok())
    return sized.status().with_context(
        cat("cluster '", base.name, "' for mesh ", o.mesh[0], "x", o.mesh[1]));
  ALPA_ASSIGN_OR_RETURN(MeshLinks mesh, mesh_links(*sized, {o.mesh[0], o.mesh[1]}));
  return auto_shard(g, mesh, sized->device, o.sharding);
}

int threads_per_device(const TrainOptions& o) { return o.threads > 0 ? o.threads : 1; }

// The blocks of one value spread over a mesh that ranks of this process hold, primary copies
// only (each element once), for a checkpoint.
void add_blocks(std::vector<CheckpointBlock>& out, int param, const ShardingSpec& spec,
                const MeshShape& mesh, int first_rank, const Shape& whole,
                const std::vector<int>& ranks, const std::function<const Tensor*(int)>& block) {
  const ShardingSpec canon = spec.canonical(mesh);
  for (int r : ranks) {
    const int64_t l = r - first_rank;
    if (l < 0 || l >= mesh[0] * mesh[1]) continue;
    const std::array<int64_t, 2> c{l / mesh[1], l % mesh[1]};
    const Tensor* t = block(r);
    if (t == nullptr || !is_primary_block(canon, mesh, c)) continue;
    out.push_back({param, shard_offsets(canon, whole, mesh, c), t});
  }
}

// One training step on some hardware; keeps the parameters between steps.
class StepBackend {
 public:
  virtual ~StepBackend() = default;
  // Runs one step on a batch (one vector per data input); returns the loss.
  virtual Result<double> step(std::vector<std::vector<float>> batch, bool timed_profile) = 0;
  virtual Result<std::vector<Tensor>> final_params() = 0;
  // This process's blocks of the weights and state (CheckpointBlock::tensor = the step-graph
  // parameter position).
  virtual std::vector<CheckpointBlock> checkpoint_blocks() = 0;
  // Sets the weights and state from whole tensors (one per step-graph parameter; inputs empty).
  virtual Status load_state(const std::vector<Tensor>& whole) = 0;
  // A hash of the per-device programs (every process must build the same).
  virtual std::string program_fingerprint() const = 0;
  // After the last step: statistics of devices in other processes (pipeline).
  virtual Status finish() { return ok_status(); }
  // The last step's timeline of this process's devices (empty: the caller makes one event
  // per device from the step time).
  virtual std::vector<TraceEvent> trace_events() const { return {}; }
  // The devices this process runs.
  virtual std::vector<int> local_devices() const { return {0}; }
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
      if (slots_.input_index[p] >= 0)
        out[p] = last_inputs_.empty() ? Tensor() : last_inputs_[p];  // empty: no step ran
    return out;
  }
  std::vector<CheckpointBlock> checkpoint_blocks() override {
    std::vector<CheckpointBlock> out;
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] < 0)
        out.push_back({static_cast<int>(p),
                       std::vector<int64_t>(values_[p].shape().size(), 0), &values_[p]});
    return out;
  }
  Status load_state(const std::vector<Tensor>& whole) override {
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] < 0) values_[p] = whole[p];
    return ok_status();
  }
  std::string program_fingerprint() const override { return graph_fingerprint(g_); }

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
      for (size_t k = 0; k < local_.size(); ++k)
        values_[k][p] = shard_tensor(full, spmd_.param_specs[p], mesh_, coords(local_[k]));
    }
    last_inputs_ = values_;
    ALPA_ASSIGN_OR_RETURN(std::vector<std::vector<Tensor>> outputs, runner_->run(std::move(values_)));
    values_.assign(local_.size(), std::vector<Tensor>(slots_.params.size()));
    for (size_t k = 0; k < local_.size(); ++k)
      for (size_t p = 0; p < slots_.params.size(); ++p)
        if (slots_.alias_output[p] >= 0)
          values_[k][p] = std::move(outputs[k][slots_.alias_output[p]]);
    report_->device_peak_live_bytes = runner_->stats(local_.front()).peak_live_bytes;
    return static_cast<double>(outputs[0][0].item());  // the loss is replicated
  }
  Result<std::vector<Tensor>> final_params() override {
    std::vector<Tensor> out;
    for (size_t p = 0; p < slots_.params.size(); ++p) {
      const auto& src = slots_.input_index[p] >= 0 ? last_inputs_ : values_;
      if (src.empty()) {  // the data of a step, and none ran
        out.emplace_back();
        continue;
      }
      ALPA_ASSIGN_OR_RETURN(
          Tensor t, gather_tensor(runner_->world(), 0, spmd_.param_specs[p], mesh_, 0,
                                  g_.type(slots_.params[p]),
                                  [&](int rank) { return &src[local_index(rank)][p]; },
                                  (1 << 24) + static_cast<int>(p)));
      out.push_back(std::move(t));
    }
    return out;
  }
  std::vector<CheckpointBlock> checkpoint_blocks() override {
    std::vector<CheckpointBlock> out;
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] < 0)
        add_blocks(out, static_cast<int>(p), spmd_.param_specs[p], mesh_, 0,
                   g_.type(slots_.params[p]).shape, local_,
                   [&](int rank) { return &values_[local_index(rank)][p]; });
    return out;
  }
  Status load_state(const std::vector<Tensor>& whole) override {
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] < 0)
        for (size_t k = 0; k < local_.size(); ++k)
          values_[k][p] = shard_tensor(whole[p], spmd_.param_specs[p], mesh_, coords(local_[k]));
    return ok_status();
  }
  std::string program_fingerprint() const override { return graph_fingerprint(spmd_.program); }
  std::vector<int> local_devices() const override { return local_; }

 private:
  Mesh2D(const Graph& g, const TrainOptions& o, TrainReport* report)
      : g_(g), o_(o), slots_(g), report_(report), mesh_(o.mesh) {}

  std::array<int64_t, 2> coords(int d) const { return {d / mesh_[1], d % mesh_[1]}; }
  size_t local_index(int rank) const {
    return static_cast<size_t>(std::find(local_.begin(), local_.end(), rank) - local_.begin());
  }

  Status init() {
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(report_->plan, plan_mesh(g_, o_));
    report_->plan_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    report_->predicted_step_time_s = report_->plan.compute_s + report_->plan.communication_s;
    report_->predicted_peak_memory_bytes = report_->plan.peak_memory_bytes;
    ALPA_ASSIGN_OR_RETURN(spmd_, lower_to_spmd(g_, report_->plan));
    report_->collectives = spmd_.collectives;
    for (ValueId p : spmd_.program.parameters())
      report_->device_param_shapes.push_back(spmd_.program.type(p).shape);
    SpmdOptions so;
    so.mesh = mesh_;
    so.threads_per_device = threads_per_device(o_);
    so.timeout_s = o_.world ? o_.world->timeout_s() : o_.timeout_s;
    runner_ = std::make_unique<SpmdRunner>(spmd_.program, so, o_.world);
    local_ = runner_->local_devices();
    // The same initial values as one device (same seed, whole tensors), then each device's block.
    const std::vector<Tensor> init = init_parameters(g_, o_.seed);
    values_.assign(local_.size(), std::vector<Tensor>(slots_.params.size()));
    return load_state(init);
  }

  const Graph& g_;
  TrainOptions o_;
  Slots slots_;
  TrainReport* report_;
  MeshShape mesh_;
  SpmdProgram spmd_;
  std::unique_ptr<SpmdRunner> runner_;
  std::vector<int> local_;                                 // devices of this process
  std::vector<std::vector<Tensor>> values_, last_inputs_;  // [local device][parameter]
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
    for (int d : runner_->local_ranks()) report_->device_stats[d] = runner_->stats(d);
    return loss;
  }
  Result<std::vector<Tensor>> final_params() override {
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> out, runner_->gather_parameters());
    for (size_t p = 0; p < slots_.params.size(); ++p)
      if (slots_.input_index[p] >= 0)
        out[p] = last_inputs_.empty() ? Tensor() : last_inputs_[p];  // empty: no step ran
    return out;
  }
  std::vector<CheckpointBlock> checkpoint_blocks() override {
    std::vector<CheckpointBlock> out;
    std::vector<char> seen(slots_.params.size(), 0);
    const PipelineProgram& prog = runner_->program();
    for (const PipelineRunner::OwnedValue& o : runner_->owned_values()) {
      if (seen[o.param]++) continue;  // a tied weight: its first owner's copy
      const PipelineStage& st = prog.stages[static_cast<size_t>(o.stage)];
      add_blocks(out, static_cast<int>(o.param), st.stored_spec[o.value], st.placement.shape,
                 st.placement.first_device(), ref_.type(slots_.params[o.param]).shape,
                 runner_->local_ranks(),
                 [&](int rank) { return runner_->owned_block(rank, o.stage, o.value); });
    }
    return out;
  }
  Status load_state(const std::vector<Tensor>& whole) override {
    return runner_->load_parameters(whole);
  }
  std::string program_fingerprint() const override {
    uint64_t h = 0;
    for (const PipelineStage& st : runner_->program().stages)
      for (const TaskProgram& tp : st.tasks)
        if (!tp.empty) h = hash_combine(h, hash_string(graph_fingerprint(tp.spmd.program)));
    return cat(std::hex, h, "/", runner_->program().transfers.size());
  }
  std::vector<TraceEvent> trace_events() const override {
    std::vector<TraceEvent> out;
    for (int d : runner_->local_ranks())
      for (const TraceEvent& e : runner_->trace(d)) out.push_back(e);
    return out;
  }
  std::vector<int> local_devices() const override { return runner_->local_ranks(); }
  // Every device's statistics at process 0 (they live in the device's process).
  Status finish() override {
    World& w = runner_->world();
    if (w.num_processes() == 1) return ok_status();
    std::string mine;
    for (int d : runner_->local_ranks()) {
      const PipelineDeviceStats& st = runner_->stats(d);
      mine += cat(d, " ", st.owned_bytes, " ", st.peak_store_bytes, " ",
                  st.peak_live_micro_batches, "\n");
    }
    ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all, w.gather_bytes(mine, 0));
    for (const std::string& text : all) {
      std::istringstream in(text);
      int d = 0;
      PipelineDeviceStats st;
      while (in >> d >> st.owned_bytes >> st.peak_store_bytes >> st.peak_live_micro_batches)
        if (d >= 0 && d < static_cast<int>(report_->device_stats.size()))
          report_->device_stats[d] = st;
    }
    return ok_status();
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
        ALPA_ASSIGN_OR_RETURN(plan.layers, plan_layers(step_, plan));
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
    PipelineBuildOptions bo;
    bo.schedule = o_.pipeline.schedule;
    bo.micro_batches = micro_batches;
    bo.cluster = &*sized;
    ALPA_ASSIGN_OR_RETURN(PipelineProgram prog,
                          build_pipeline_program(step_, m.split, std::move(m.graphs),
                                                 std::move(m.plans), m.placements, bo));
    if (o_.pipeline.rewrite_program) o_.pipeline.rewrite_program(prog);
    // The prediction: the step's instruction lists run in simulated time on the cluster model
    // (the schedule's bubble and transfers included).
    ALPA_ASSIGN_OR_RETURN(SimReport sim, simulate_pipeline(prog, *sized));
    report_->predicted_step_time_s = sim.step_time_s;
    report_->transfers = static_cast<int64_t>(prog.transfers.size());
    report_->device_stage.clear();
    for (int r = 0; r < prog.num_devices; ++r) report_->device_stage.push_back(stage_of_rank(prog, r));
    report_->pipeline_plan = plan;
    report_->micro_batches = micro_batches;
    for (const PipelineStage& st : prog.stages)
      for (const TaskProgram& tp : st.tasks) report_->collectives += tp.spmd.collectives;
    PipelineRunOptions ro;
    ro.threads_per_device = threads_per_device(o_);
    ro.timeout_s = o_.world ? o_.world->timeout_s() : o_.timeout_s;
    ro.record_trace = !o_.trace_path.empty();
    runner_ = std::make_unique<PipelineRunner>(std::move(prog), step_.graph, ro, o_.world);
    // The same initial values as one device (same seed, whole tensors).
    ALPA_RETURN_IF_ERROR(runner_->load_parameters(init_parameters(ref_, o_.seed)));
    report_->device_stats.assign(static_cast<size_t>(runner_->num_devices()), {});
    for (int d : runner_->local_ranks()) report_->device_stats[d] = runner_->stats(d);
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

namespace {

// Several processes: process 0 plans and sends the plan (its JSON form) to the others, which
// then all build the run from the same plan, as from a plan file.
Status share_plan(const ModelSpec& spec, const Graph& step_graph, TrainOptions& o,
                  int& micro_batches) {
  World& w = *o.world;
  const bool pipeline = o.pipeline.enabled;
  std::string text;
  if (w.process_index() == 0) {
    Result<Plan> plan = [&]() -> Result<Plan> {
      if (pipeline) {
        ALPA_ASSIGN_OR_RETURN(PipelinePlan pp,
                              plan_pipeline_stages(spec, o, micro_batches > 0 ? micro_batches : 0));
        return plan_from_pipeline(pp, spec.name, o.cluster, o.pipeline.devices,
                                  std::string(schedule_name(o.pipeline.schedule)), "");
      }
      ALPA_ASSIGN_OR_RETURN(ShardingPlan sp, plan_mesh(step_graph, o));
      Plan p = plan_from_sharding(step_graph, sp, spec.name, o.cluster, micro_batches);
      p.options = o.sharding.sharding;
      return p;
    }();
    text = plan.ok() ? plan_to_json(*plan) : "!" + plan.status().to_string();
  }
  // The others wait while process 0 plans (minutes for a large model).
  if (auto* mpi = dynamic_cast<MpiWorld*>(&w)) mpi->set_next_wait_limit(std::max(3600.0, w.timeout_s()));
  ALPA_RETURN_IF_ERROR(w.broadcast_bytes(text, 0));
  if (!text.empty() && text[0] == '!')
    return failed_precondition(cat("planning on process 0 failed: ", text.substr(1)));
  ALPA_ASSIGN_OR_RETURN(Plan plan, plan_from_json(text, "the plan from process 0"));
  if (pipeline) {
    ALPA_ASSIGN_OR_RETURN(PipelinePlan pp, pipeline_plan_of(plan));
    micro_batches = pp.micro_batches;
    o.pipeline.plan = std::move(pp);
    o.pipeline.fingerprint.clear();
    return ok_status();
  }
  ALPA_ASSIGN_OR_RETURN(o.sharding, plan_constraints(plan, step_graph));
  return ok_status();
}

// Every process must have built the same per-device programs.
Status check_same_programs(World& w, const std::string& fingerprint) {
  ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all, w.gather_bytes(fingerprint, 0));
  std::string verdict;
  for (size_t p = 1; p < all.size(); ++p)
    if (all[p] != all[0]) {
      verdict = cat("process ", p, " built different per-device programs than process 0 (",
                    all[p], " vs ", all[0], ")");
      break;
    }
  ALPA_RETURN_IF_ERROR(w.broadcast_bytes(verdict, 0));
  if (!verdict.empty())
    return internal_error(verdict + "; the processes must run the same alpa build and flags");
  return ok_status();
}

std::vector<size_t> checkpointed_params(const Graph& g) {
  std::vector<size_t> out;
  const std::vector<ValueId> params = g.parameters();
  for (size_t p = 0; p < params.size(); ++p)
    if (g.node(params[p]).attr<ParameterAttrs>().role != ParamRole::kInput) out.push_back(p);
  return out;
}

CheckpointInfo checkpoint_info(const Graph& g, const ModelSpec& spec, const TrainOptions& o,
                               const TrainReport& r, int64_t step) {
  CheckpointInfo info;
  info.model = spec.name;
  info.step = step;
  info.backend = o.backend;
  info.ranks = r.devices;
  info.plan = o.pipeline.enabled
                  ? cat("pipeline of ", r.pipeline_plan.stages.size(), " stages on ", r.devices,
                        " devices, ", r.micro_batches, " micro-batches")
                  : cat("mesh ", r.mesh[0], "x", r.mesh[1]);
  const std::vector<ValueId> params = g.parameters();
  for (size_t p : checkpointed_params(g)) {
    const auto role = g.node(params[p]).attr<ParameterAttrs>().role;
    info.tensors.push_back({g.node(params[p]).name,
                            role == ParamRole::kWeight ? "weight" : "state", g.type(params[p])});
  }
  return info;
}

Status save_checkpoint(StepBackend& backend, const Graph& g, const ModelSpec& spec,
                       const TrainOptions& o, TrainReport& r, int64_t step) {
  const std::vector<size_t> params = checkpointed_params(g);
  std::vector<int> tensor_of(g.parameters().size(), -1);
  for (size_t t = 0; t < params.size(); ++t) tensor_of[params[t]] = static_cast<int>(t);
  std::vector<CheckpointBlock> blocks = backend.checkpoint_blocks();
  for (CheckpointBlock& b : blocks) b.tensor = tensor_of[static_cast<size_t>(b.tensor)];
  ThreadWorld one(1);
  World& w = o.world ? *o.world : one;
  ALPA_ASSIGN_OR_RETURN(std::string path, write_checkpoint(w, o.checkpoint_dir,
                                                           checkpoint_info(g, spec, o, r, step),
                                                           blocks));
  r.checkpoints.push_back(path);
  return ok_status();
}

// The checkpoint's tensors as whole step-graph parameters; checks that it fits this model.
Result<std::vector<Tensor>> load_checkpoint_state(const LoadedCheckpoint& ck, const Graph& g,
                                                  const ModelSpec& spec) {
  const std::string where = cat("checkpoint ", ck.path);
  if (ck.info.model != spec.name)
    return failed_precondition(
        cat(where, " is of model ", ck.info.model, ", not ", spec.name),
        "resume with the model flags of the run that wrote it");
  const std::vector<ValueId> params = g.parameters();
  const std::vector<size_t> wanted = checkpointed_params(g);
  std::map<std::string, size_t> by_name;
  for (size_t t = 0; t < ck.info.tensors.size(); ++t) by_name[ck.info.tensors[t].name] = t;
  std::vector<Tensor> whole(params.size());
  for (size_t p : wanted) {
    const std::string& name = g.node(params[p]).name;
    auto it = by_name.find(name);
    if (it == by_name.end())
      return failed_precondition(
          cat(where, " has no tensor '", name, "'"),
          "it was written for a different model size or optimizer; use the same flags");
    const CheckpointTensor& ct = ck.info.tensors[it->second];
    if (ct.type.shape != g.type(params[p]).shape)
      return failed_precondition(cat(where, ": tensor '", name, "' has shape ",
                                     shape_to_string(ct.type.shape), ", this model's is ",
                                     shape_to_string(g.type(params[p]).shape)),
                                 "resume with the model flags of the run that wrote it");
    whole[p] = ck.tensors[it->second];
    by_name.erase(it);
  }
  if (!by_name.empty())
    return failed_precondition(cat(where, " has tensor '", by_name.begin()->first,
                                   "' that this model does not"),
                               "it was written for a different model or optimizer");
  return whole;
}

// The last step's timeline of every device, written by process 0.
Status write_trace(const StepBackend& backend, const TrainOptions& o, const TrainReport& r,
                   const ModelSpec& spec) {
  std::vector<TraceEvent> events = backend.trace_events();
  if (events.empty())
    for (int d : backend.local_devices())
      events.push_back({"RUN step", "compute", d, 0, 0, r.step_seconds.back(), 0, -1});
  if (o.world && o.world->num_processes() > 1) {
    std::string mine;
    for (const TraceEvent& e : events)
      mine += cat(e.name, "\t", e.category, "\t", e.device, "\t", e.start_s, "\t",
                  e.duration_s, "\t", e.stage, "\t", e.micro_batch, "\n");
    ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all, o.world->gather_bytes(mine, 0));
    if (o.world->process_index() != 0) return ok_status();
    events.clear();
    for (const std::string& text : all) {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream f(line);
        TraceEvent e;
        std::string field;
        std::getline(f, e.name, '\t');
        std::getline(f, e.category, '\t');
        f >> e.device >> e.start_s >> e.duration_s >> e.stage >> e.micro_batch;
        events.push_back(e);
      }
    }
  }
  return write_chrome_trace(o.trace_path, events,
                            cat("alpa train ", spec.name, " (", o.backend, "), last step"));
}

}  // namespace

Status check_world_matches(const TrainOptions& o) {
  const bool pipelined = o.pipeline.enabled;
  const int devices = pipelined ? o.pipeline.devices : static_cast<int>(o.mesh[0] * o.mesh[1]);
  if (o.world == nullptr || o.world->size() == devices) return ok_status();
  const int ranks = o.world->size();
  return invalid_argument(
      cat("mpirun started ", ranks, " rank", ranks > 1 ? "s" : "", " but ",
          pipelined ? cat("the pipeline has ", devices, " devices")
                    : cat("the mesh ", o.mesh[0], "x", o.mesh[1], " has ", devices, " device",
                          devices > 1 ? "s" : ""),
          "; the MPI backend runs one device per rank"),
      cat("use mpirun -np ", devices, ", or ",
          pipelined ? cat("--devices ", ranks)
                    : cat("a --mesh of ", ranks, " devices (e.g. 1x", ranks, ")")));
}

Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step) {
  if (options.steps < 1) return invalid_argument(cat("--steps must be >= 1, got ", options.steps));
  if (options.threads < 0) return invalid_argument("--threads must be >= 0");
  if (options.checkpoint_every < 0)
    return invalid_argument(cat("--checkpoint-every must be >= 0, got ", options.checkpoint_every));
  if (options.mesh[0] < 1 || options.mesh[1] < 1)
    return invalid_argument(cat("mesh extents must be >= 1, got ", options.mesh[0], "x",
                                options.mesh[1]));
  const bool pipeline = options.pipeline.enabled;
  const int devices = pipeline ? options.pipeline.devices
                               : static_cast<int>(options.mesh[0] * options.mesh[1]);
  ALPA_RETURN_IF_ERROR(check_world_matches(options));
  const bool multi = options.world && options.world->num_processes() > 1;
  TrainOptions opts = options;
  int micro_batches = options.micro_batches;
  if (pipeline && opts.pipeline.plan) micro_batches = opts.pipeline.plan->micro_batches;
  double search_seconds = 0;
  if (pipeline && micro_batches == 0 && !multi) {
    // The planner chooses the micro-batch count along with the stages.
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(PipelinePlan plan, plan_pipeline_stages(spec, options, 0));
    plan.total_s = std::chrono::duration<double>(Clock::now() - t0).count();
    search_seconds = plan.total_s;
    micro_batches = plan.micro_batches;
    opts.pipeline.plan = std::move(plan);
  }
  if (multi && (pipeline ? !opts.pipeline.plan : devices > 1)) {
    const Clock::time_point t0 = Clock::now();
    // The mesh plan is made on the training graph of this micro-batch count.
    Graph step_graph;
    if (!pipeline) {
      ALPA_ASSIGN_OR_RETURN(Graph f, build_forward(spec, micro_batches));
      TrainStepOptions t;
      t.optimizer = options.optimizer;
      t.micro_batches = micro_batches;
      ALPA_ASSIGN_OR_RETURN(TrainStep ts, build_train_step(f, t));
      step_graph = std::move(ts.graph);
    }
    ALPA_RETURN_IF_ERROR(share_plan(spec, step_graph, opts, micro_batches));
    search_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
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
  report.devices = devices;
  report.micro_batches = micro_batches;
  report.threads = report.devices > 1 || pipeline ? threads_per_device(options)
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
    backend = std::make_unique<SingleDevice>(g, opts, &report);
  } else {
    ALPA_ASSIGN_OR_RETURN(std::unique_ptr<Mesh2D> m, Mesh2D::create(g, opts, &report));
    report.plan_seconds += search_seconds;
    backend = std::move(m);
  }
  report.blas_core = blas_core_name();
  if (multi) ALPA_RETURN_IF_ERROR(check_same_programs(*options.world, backend->program_fingerprint()));

  if (!options.resume.empty()) {
    ALPA_ASSIGN_OR_RETURN(LoadedCheckpoint ck, read_checkpoint(options.resume));
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> whole, load_checkpoint_state(ck, g, spec));
    if (ck.info.step > options.steps)
      return invalid_argument(
          cat("checkpoint ", ck.path, " is already at step ", ck.info.step, ", and --steps is ",
              options.steps),
          cat("--steps counts from the start of training: pass more than ", ck.info.step));
    ALPA_RETURN_IF_ERROR(backend->load_state(whole));
    report.first_step = static_cast<int>(ck.info.step) + 1;
    report.resumed_from = ck.path;
  }

  for (int step = report.first_step; step <= options.steps; ++step) {
    std::vector<std::vector<float>> batch = data->batch(step - 1);
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(double loss, backend->step(std::move(batch),
                                                     step > report.first_step ||
                                                         options.steps == report.first_step));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!std::isfinite(loss))
      return failed_precondition(cat("the loss became ", loss, " at step ", step),
                                 "lower the learning rate (--lr)");
    report.losses.push_back(loss);
    report.step_seconds.push_back(seconds);
    if (on_step) on_step(StepReport{step, loss, seconds});
    if (!options.checkpoint_dir.empty() &&
        (step == options.steps ||
         (options.checkpoint_every > 0 && step % options.checkpoint_every == 0)))
      ALPA_RETURN_IF_ERROR(save_checkpoint(*backend, g, spec, opts, report, step));
  }
  ALPA_RETURN_IF_ERROR(backend->finish());
  if (!options.trace_path.empty() && !report.step_seconds.empty())
    ALPA_RETURN_IF_ERROR(write_trace(*backend, options, report, spec));
  if (options.keep_final_params) {
    ALPA_ASSIGN_OR_RETURN(report.final_params, backend->final_params());
    for (ValueId p : g.parameters()) report.param_names.push_back(g.node(p).name);
  }
  return report;
}

}  // namespace alpa
