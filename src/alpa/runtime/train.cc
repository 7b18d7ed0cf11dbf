#include "alpa/runtime/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <numbers>
#include <sstream>
#include <string_view>

#include "alpa/runtime/checkpoint.h"
#include "alpa/runtime/init.h"
#include "alpa/support/system.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

// The step's tensors for the runner: the batch's values in the input slots, nothing else.
std::vector<Tensor> step_inputs(const Program& program, std::vector<std::vector<float>> batch) {
  std::vector<Tensor> inputs(program.params.size());
  size_t next = 0;
  for (size_t p = 0; p < program.params.size(); ++p)
    if (is_input(program.params[p]))
      inputs[p] = Tensor::from_values(program.params[p].type, std::move(batch[next++]));
  return inputs;
}

CheckpointInfo checkpoint_info(const Program& program, const TrainLoopOptions& o, int64_t step) {
  CheckpointInfo info;
  info.model = o.model;
  info.step = step;
  info.backend = o.backend;
  info.ranks = program.num_devices;
  info.plan = describe_program(program);
  for (const StepParam& p : program.params)
    if (!is_input(p))
      info.tensors.push_back(
          {p.name, p.attrs.role == ParamRole::kWeight ? "weight" : "state", p.type});
  return info;
}

Status save_checkpoint(ProgramRunner& runner, const TrainLoopOptions& o, int64_t step,
                       TrainResult& r) {
  const Program& program = runner.program();
  std::vector<int> tensor_of(program.params.size(), -1);
  int next = 0;
  for (size_t p = 0; p < program.params.size(); ++p)
    if (!is_input(program.params[p])) tensor_of[p] = next++;
  std::vector<CheckpointBlock> blocks = runner.checkpoint_blocks();
  for (CheckpointBlock& b : blocks) b.tensor = tensor_of[static_cast<size_t>(b.tensor)];
  ALPA_ASSIGN_OR_RETURN(std::string path,
                        write_checkpoint(runner.world(), o.checkpoint_dir,
                                         checkpoint_info(program, o, step), blocks));
  r.checkpoints.push_back(path);
  return ok_status();
}

// The checkpoint's tensors as whole program parameters; checks that it fits this model.
Result<std::vector<Tensor>> checkpoint_state(const LoadedCheckpoint& ck, const Program& program,
                                             const std::string& model) {
  const std::string where = cat("checkpoint ", ck.path);
  if (ck.info.model != model)
    return failed_precondition(cat(where, " is of model ", ck.info.model, ", not ", model),
                               "resume with the model flags of the run that wrote it");
  std::map<std::string, size_t> by_name;
  for (size_t t = 0; t < ck.info.tensors.size(); ++t) by_name[ck.info.tensors[t].name] = t;
  std::vector<Tensor> whole(program.params.size());
  for (size_t p = 0; p < program.params.size(); ++p) {
    const StepParam& sp = program.params[p];
    if (is_input(sp)) continue;
    auto it = by_name.find(sp.name);
    if (it == by_name.end())
      return failed_precondition(
          cat(where, " has no tensor '", sp.name, "'"),
          "it was written for a different model size or optimizer; use the same flags");
    const CheckpointTensor& ct = ck.info.tensors[it->second];
    if (ct.type.shape != sp.type.shape)
      return failed_precondition(
          cat(where, ": tensor '", sp.name, "' has shape ", shape_to_string(ct.type.shape),
              ", this model's is ", shape_to_string(sp.type.shape)),
          "resume with the model flags of the run that wrote it");
    whole[p] = ck.tensors[it->second];
    by_name.erase(it);
  }
  if (!by_name.empty())
    return failed_precondition(
        cat(where, " has tensor '", by_name.begin()->first, "' that this model does not"),
        "it was written for a different model or optimizer");
  return whole;
}

// The last step's timeline of every device, written by process 0.
Status write_trace(ProgramRunner& runner, const TrainLoopOptions& o) {
  std::vector<TraceEvent> events;
  for (int d : runner.local_ranks())
    for (const TraceEvent& e : runner.trace(d)) events.push_back(e);
  World& w = runner.world();
  if (w.num_processes() > 1) {
    std::string mine;
    for (const TraceEvent& e : events)
      mine += cat(e.name, "\t", e.category, "\t", e.device, "\t", e.start_s, "\t", e.duration_s,
                  "\t", e.stage, "\t", e.micro_batch, "\n");
    ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all, w.gather_bytes(mine, 0));
    if (w.process_index() != 0) return ok_status();
    events.clear();
    for (const std::string& text : all) {
      std::istringstream in(text);
      std::string line;
      while (std::getline(in, line)) {
        std::istringstream f(line);
        TraceEvent e;
        std::getline(f, e.name, '\t');
        std::getline(f, e.category, '\t');
        f >> e.device >> e.start_s >> e.duration_s >> e.stage >> e.micro_batch;
        events.push_back(e);
      }
    }
  }
  return write_chrome_trace(o.trace_path, events,
                            cat("alpa train ", o.model, " (", o.backend, "), last step"));
}

// Every device's statistics at process 0 (they live in the device's process).
Status gather_device_stats(ProgramRunner& runner, TrainResult& r) {
  r.device_stats.assign(static_cast<size_t>(runner.num_devices()), {});
  for (int d : runner.local_ranks()) r.device_stats[static_cast<size_t>(d)] = runner.stats(d);
  World& w = runner.world();
  if (w.num_processes() == 1) return ok_status();
  std::string mine;
  for (int d : runner.local_ranks()) {
    const DeviceStats& st = runner.stats(d);
    mine += cat(d, " ", st.owned_bytes, " ", st.peak_store_bytes, " ", st.peak_live_micro_batches,
                " ", st.peak_task_bytes, " ", st.peak_bytes, " ", st.peak_step_bytes, " ",
                st.peak_stash_bytes, " ", st.peak_in_flight, " ", st.peak_working_bytes, "\n");
  }
  ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all, w.gather_bytes(mine, 0));
  for (const std::string& text : all) {
    std::istringstream in(text);
    int d = 0;
    DeviceStats st;
    while (in >> d >> st.owned_bytes >> st.peak_store_bytes >> st.peak_live_micro_batches >>
           st.peak_task_bytes >> st.peak_bytes >> st.peak_step_bytes >> st.peak_stash_bytes >>
           st.peak_in_flight >> st.peak_working_bytes)
      if (d >= 0 && d < static_cast<int>(r.device_stats.size()))
        r.device_stats[static_cast<size_t>(d)] = st;
  }
  return ok_status();
}

// Time per op kind and per node of the first local device's tasks, added to the report.
void add_profile(const ProgramRunner& runner, std::vector<double>& node_seconds, TrainResult& r) {
  const int d = runner.local_ranks().front();
  const Stage& st =
      runner.program().stages[static_cast<size_t>(stage_of_device(runner.program(), d))];
  if (st.tasks.size() != 1) return;  // node ids are per task: profile one-task programs
  const Executable& exec = runner.task(d, 0);
  const ExecutorStats& s = exec.stats();
  for (size_t k = 0; k < s.seconds_by_op.size() && k < r.seconds_by_op.size(); ++k)
    r.seconds_by_op[k] += s.seconds_by_op[k];
  const Graph& g = st.tasks[0].program;
  node_seconds.resize(static_cast<size_t>(g.size()), 0.0);
  for (size_t v = 0; v < s.seconds_by_node.size() && v < node_seconds.size(); ++v)
    node_seconds[v] += s.seconds_by_node[v];
  std::vector<ValueId> ids;
  for (ValueId v = 0; v < g.size(); ++v)
    if (node_seconds[static_cast<size_t>(v)] > 0) ids.push_back(v);
  std::sort(ids.begin(), ids.end(),
            [&](ValueId a, ValueId b) { return node_seconds[a] > node_seconds[b]; });
  if (ids.size() > 15) ids.resize(15);
  r.slowest_nodes.clear();
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
    r.slowest_nodes.push_back({what, node_seconds[static_cast<size_t>(v)]});
  }
}

// o.initial_weights in place of the initialisers' values (fine-tuning).
Status apply_initial_weights(const Program& program, const TrainLoopOptions& o,
                             std::vector<Tensor>& init) {
  if (o.initial_weights.empty()) return ok_status();
  size_t used = 0;
  for (size_t p = 0; p < program.params.size(); ++p) {
    const StepParam& sp = program.params[p];
    if (sp.attrs.role != ParamRole::kWeight) continue;
    auto it = o.initial_weights.find(sp.name);
    if (it == o.initial_weights.end())
      return failed_precondition(cat("the initial weights have no tensor '", sp.name, "'"),
                                 "give weights of this model (the same model flags)");
    if (it->second.shape() != sp.type.shape)
      return failed_precondition(
          cat("initial weight '", sp.name, "' has shape ", shape_to_string(it->second.shape()),
              ", this model's is ", shape_to_string(sp.type.shape)),
          "give weights of this model (the same model flags)");
    init[p] = it->second;
    init[p].set_type(sp.type);
    ++used;
  }
  if (used != o.initial_weights.size())
    for (const auto& [name, t] : o.initial_weights)
      if (std::none_of(program.params.begin(), program.params.end(), [&](const StepParam& sp) {
            return sp.name == name && sp.attrs.role == ParamRole::kWeight;
          }))
        return failed_precondition(cat("initial weight '", name, "' is not a weight of this model"),
                                   "give weights of this model (the same model flags)");
  return ok_status();
}

// The index of the program's f32 scalar state `name`, or -1.
int scalar_state(const Program& p, std::string_view name) {
  for (size_t i = 0; i < p.params.size(); ++i)
    if (p.params[i].name == name && p.params[i].attrs.role == ParamRole::kState &&
        p.params[i].type.rank() == 0)
      return static_cast<int>(i);
  return -1;
}

// What the step's scalars need from the options, checked before anything runs.
Status check_step_scalars(const Program& program, const TrainLoopOptions& o) {
  const bool scheduled = scalar_state(program, "lr") >= 0;
  if (scheduled && !o.schedule)
    return invalid_argument("the program reads a scheduled learning rate, but no schedule is given",
                            "give --lr-schedule (and --warmup-steps) as when it was compiled");
  if (!scheduled && o.schedule)
    return invalid_argument(
        "a learning-rate schedule is given for a program compiled with a "
        "constant rate",
        "compile it with the schedule flags, or drop them");
  if (o.eval_every < 0)
    return invalid_argument(cat("--eval-every must be >= 0, got ", o.eval_every));
  if (o.eval_every > 0 && !o.evaluate)
    return invalid_argument("--eval-every needs held-out data", "train on a dataset (--data DIR)");
  return ok_status();
}

// Validation after `step` when it is due: the weights gathered (every process takes part) and
// evaluated at process 0.
Status maybe_evaluate(ProgramRunner& runner, const TrainLoopOptions& o, int step,
                      StepReport& report, TrainResult& r) {
  if (o.eval_every <= 0 || (step % o.eval_every != 0 && step != o.steps)) return ok_status();
  ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> params, runner.gather_parameters());
  if (runner.world().process_index() != 0) return ok_status();
  ALPA_ASSIGN_OR_RETURN(report.val_loss, o.evaluate(params));
  r.val_losses.emplace_back(step, report.val_loss);
  return ok_status();
}

Status resume(ProgramRunner& runner, const TrainLoopOptions& o, TrainResult& r) {
  ALPA_ASSIGN_OR_RETURN(LoadedCheckpoint ck, read_checkpoint(o.resume));
  ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> whole, checkpoint_state(ck, runner.program(), o.model));
  if (ck.info.step > o.steps)
    return invalid_argument(
        cat("checkpoint ", ck.path, " is already at step ", ck.info.step, ", and --steps is ",
            o.steps),
        cat("--steps counts from the start of training: pass more than ", ck.info.step));
  ALPA_RETURN_IF_ERROR(runner.load_parameters(whole));
  r.first_step = static_cast<int>(ck.info.step) + 1;
  r.resumed_from = ck.path;
  return ok_status();
}

}  // namespace

double TrainResult::step_time_s() const {
  if (step_seconds.empty()) return 0;
  std::vector<double> t(step_seconds.begin() + (step_seconds.size() > 1 ? 1 : 0),
                        step_seconds.end());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

double LrSchedule::at(int step) const {
  if (warmup > 0 && step <= warmup) return peak * step / warmup;
  if (kind == Kind::kConstant || decay_steps <= warmup) return peak;
  const double progress =
      std::clamp(static_cast<double>(step - warmup) / (decay_steps - warmup), 0.0, 1.0);
  if (kind == Kind::kLinear) return peak - (peak - floor) * progress;
  return floor + 0.5 * (peak - floor) * (1.0 + std::cos(std::numbers::pi * progress));
}

Result<LrSchedule::Kind> parse_lr_schedule(std::string_view name) {
  if (name == "constant") return LrSchedule::Kind::kConstant;
  if (name == "cosine") return LrSchedule::Kind::kCosine;
  if (name == "linear") return LrSchedule::Kind::kLinear;
  return invalid_argument(cat("unknown learning-rate schedule '", name, "'"),
                          "use constant, cosine or linear");
}

std::string_view lr_schedule_name(LrSchedule::Kind kind) {
  switch (kind) {
    case LrSchedule::Kind::kConstant: return "constant";
    case LrSchedule::Kind::kCosine: return "cosine";
    case LrSchedule::Kind::kLinear: return "linear";
  }
  return "?";
}

std::vector<std::vector<std::pair<int64_t, int64_t>>> input_rows(const Program& program,
                                                                 const std::vector<int>& devices) {
  std::vector<int> input_of(program.params.size(), -1);
  int inputs = 0;
  for (size_t p = 0; p < program.params.size(); ++p)
    if (is_input(program.params[p])) input_of[p] = inputs++;
  std::vector<std::vector<std::pair<int64_t, int64_t>>> rows(static_cast<size_t>(inputs));
  for (int d : devices) {
    const int s = stage_of_device(program, d);
    if (s < 0) continue;
    const Stage& st = program.stages[static_cast<size_t>(s)];
    const MeshCoords coords = st.mesh.coords_of(d);
    for (const StageValue& v : st.values) {
      if (v.kind != ValueKind::kInput || v.param < 0) continue;
      auto& out = rows[static_cast<size_t>(input_of[static_cast<size_t>(v.param)])];
      const TensorType& whole = program.params[static_cast<size_t>(v.param)].type;
      if (v.type.rank() == 0 || whole.rank() == 0) {
        out.emplace_back(0, whole.rank() == 0 ? 1 : whole.shape[0]);
        continue;
      }
      // A per-micro-batch value holds rows m*b .. (m+1)*b of the step's input for RUN m.
      const int64_t b = v.type.shape[0], count = std::max<int64_t>(1, whole.shape[0] / b);
      const ShardingSpec spec = v.layout.canonical(st.mesh.shape);
      const int64_t off = shard_offsets(spec, v.type.shape, st.mesh.shape, coords)[0];
      const int64_t ext = spec.local_shape(v.type.shape, st.mesh.shape)[0];
      for (int64_t m = 0; m < count; ++m) out.emplace_back(m * b + off, m * b + off + ext);
    }
  }
  for (auto& r : rows) {  // sorted, merged
    std::sort(r.begin(), r.end());
    std::vector<std::pair<int64_t, int64_t>> merged;
    for (const auto& x : r)
      if (!merged.empty() && x.first <= merged.back().second)
        merged.back().second = std::max(merged.back().second, x.second);
      else
        merged.push_back(x);
    r = std::move(merged);
  }
  return rows;
}

std::string describe_program(const Program& p) {
  if (p.stages.size() == 1) return cat("mesh ", p.stages[0].mesh.shape.to_string());
  return cat("pipeline of ", p.stages.size(), " stages on ", p.num_devices, " devices, ",
             p.micro_batches, " micro-batches");
}

MemoryNeed memory_need(const Program& program, const std::vector<int>& local_devices,
                       const std::vector<double>& predicted_peak_bytes) {
  MemoryNeed need;
  for (const StepParam& p : program.params)
    (is_input(p) ? need.data : need.initial_weights) += p.type.num_elements() * int64_t{4};
  for (int d : local_devices) {
    const int s = stage_of_device(program, d);
    if (s < 0) continue;
    const Stage& st = program.stages[static_cast<size_t>(s)];
    int64_t owned = 0;
    for (const StageValue& v : st.values)
      if (v.kind == ValueKind::kOwned) {
        int64_t n = 1;
        for (int64_t e : v.layout.canonical(st.mesh.shape).local_shape(v.type.shape, st.mesh.shape))
          n *= e;
        owned += n * 4;
      }
    const double predicted =
        d < static_cast<int>(predicted_peak_bytes.size()) ? predicted_peak_bytes[d] : 0.0;
    need.devices += std::max(owned, static_cast<int64_t>(predicted));
    ++need.local_devices;
  }
  return need;
}

Status admit_memory(const Program& program, const TrainLoopOptions& o, World* world) {
  std::vector<int> local;
  if (world) {
    local = world->local_ranks();
  } else {
    for (int d = 0; d < program.num_devices; ++d) local.push_back(d);
  }
  const MemoryNeed need = memory_need(program, local, o.predicted_peak_bytes);
  const int64_t avail = o.available_bytes >= 0 ? o.available_bytes : available_memory_bytes();
  if (avail < 0 || need.total() <= avail) return ok_status();
  auto gb = [](int64_t b) {
    char buf[48];
    const double v = static_cast<double>(b);
    std::snprintf(buf, sizeof buf, v >= 1e12 ? "%.1f TB" : "%.2f GB",
                  v >= 1e12 ? v / 1e12 : v / 1e9);
    return std::string(buf);
  };
  return resource_exhausted(
      cat("this run needs about ", gb(need.total()), " of memory in this process (the initial ",
          "weights and optimizer state, ", gb(need.initial_weights), "; a step's data, ",
          gb(need.data), "; the peak of its ", need.local_devices, " device",
          need.local_devices == 1 ? "" : "s", ", ", gb(need.devices), "), but only ", gb(avail),
          " can be allocated here"),
      "spread it over more processes and hosts (--backend mpi), shrink the model or --batch, "
      "or see what fits with `alpa plan --cluster local --memory-budget GB`");
}

Result<TrainResult> train_program(const Program& program, const BatchFn& batches,
                                  const TrainLoopOptions& o, World* world,
                                  const std::function<void(const StepReport&)>& on_step) {
  if (o.steps < 1) return invalid_argument(cat("--steps must be >= 1, got ", o.steps));
  if (o.checkpoint_every < 0)
    return invalid_argument(cat("--checkpoint-every must be >= 0, got ", o.checkpoint_every));
  ALPA_RETURN_IF_ERROR(check_step_scalars(program, o));
  ALPA_RETURN_IF_ERROR(admit_memory(program, o, world));
  RunOptions ro = o.run;
  ro.record_trace = ro.record_trace || !o.trace_path.empty();
  if (world) ro.timeout_s = world->timeout_s();
  ProgramRunner runner(program, ro, world);
  TrainResult r;
  r.seconds_by_op.assign(kNumOps, 0.0);
  // The same initial values as one device: each parameter's own random stream.
  std::vector<Tensor> init(program.params.size());
  for (size_t p = 0; p < program.params.size(); ++p)
    if (!is_input(program.params[p]))
      init[p] = init_tensor(program.params[p].name, program.params[p].type, program.params[p].attrs,
                            o.seed);
  ALPA_RETURN_IF_ERROR(apply_initial_weights(program, o, init));
  ALPA_RETURN_IF_ERROR(runner.load_parameters(init));
  init.clear();
  if (!o.resume.empty()) ALPA_RETURN_IF_ERROR(resume(runner, o, r));
  std::vector<Tensor> last_inputs;
  std::vector<double> node_seconds;
  const int lr_param = scalar_state(program, "lr");
  const int norm_param = scalar_state(program, "grad_norm");
  for (int step = r.first_step; step <= o.steps; ++step) {
    StepReport report{step};
    if (lr_param >= 0) {
      report.lr = o.schedule->at(step);
      ALPA_RETURN_IF_ERROR(runner.set_parameter(
          lr_param, Tensor::from_values({DType::kF32, {}}, {static_cast<float>(report.lr)})));
    }
    const Clock::time_point d0 = Clock::now();
    std::vector<Tensor> inputs = step_inputs(program, batches(step - 1 + o.data_offset));
    r.data_seconds.push_back(std::chrono::duration<double>(Clock::now() - d0).count());
    const Clock::time_point t0 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(double loss, runner.run_step(inputs));
    const double seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    if (norm_param >= 0) {
      ALPA_ASSIGN_OR_RETURN(Tensor norm, runner.gather_parameter(norm_param));
      if (norm.size() > 0) {
        report.grad_norm = norm.item();
        r.grad_norms.push_back(report.grad_norm);
      }
    }
    if (!std::isfinite(loss))
      return failed_precondition(cat("the loss became ", loss, " at step ", step),
                                 "lower the learning rate (--lr)");
    r.losses.push_back(loss);
    r.step_seconds.push_back(seconds);
    if (o.profile && (step > r.first_step || o.steps == r.first_step))
      add_profile(runner, node_seconds, r);
    if (o.keep_final_params) last_inputs = std::move(inputs);
    report.loss = loss;
    report.seconds = seconds;
    if (o.peak_flops > 0 && o.flops_per_step > 0 && seconds > 0)
      report.mfu = o.flops_per_step / seconds / o.peak_flops;
    ALPA_RETURN_IF_ERROR(maybe_evaluate(runner, o, step, report, r));
    if (on_step) on_step(report);
    if (!o.checkpoint_dir.empty() &&
        (step == o.steps || (o.checkpoint_every > 0 && step % o.checkpoint_every == 0)))
      ALPA_RETURN_IF_ERROR(save_checkpoint(runner, o, step, r));
  }
  ALPA_RETURN_IF_ERROR(gather_device_stats(runner, r));
  if (!o.trace_path.empty() && !r.step_seconds.empty())
    ALPA_RETURN_IF_ERROR(write_trace(runner, o));
  if (o.keep_final_params) {
    ALPA_ASSIGN_OR_RETURN(r.final_params, runner.gather_parameters());
    for (size_t p = 0; p < program.params.size() && !last_inputs.empty(); ++p)
      if (is_input(program.params[p])) r.final_params[p] = std::move(last_inputs[p]);
  }
  return r;
}

}  // namespace alpa
