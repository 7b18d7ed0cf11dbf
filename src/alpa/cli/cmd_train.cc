// alpa train: compiles a model for one device, a mesh or a pipeline (or takes a compiled
// program) and trains it on the model's data, on threads or MPI processes.
#include <algorithm>
#include <cmath>
#include <fstream>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/gpt2_weights.h"
#include "alpa/cli/progress.h"
#include "alpa/cli/trainer.h"
#include "alpa/plan/manual.h"
#include "alpa/program/io.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

int report_error(const Status& status, bool json, std::ostream& out, std::ostream& err) {
  err << "error: " << status.message() << "\n";
  if (!status.hint().empty()) err << "hint: " << status.hint() << "\n";
  if (json) {
    nlohmann::json j;
    j["error"] = status.message();
    if (!status.hint().empty()) j["hint"] = status.hint();
    out << json_line(j) << "\n";
  }
  return kExitUserError;
}

namespace {

void print_profile(const TrainReport& r, std::ostream& out) {
  std::vector<std::pair<double, int>> rows;
  double total = 0;
  for (int k = 0; k < kNumOps; ++k) {
    total += r.seconds_by_op[k];
    if (r.seconds_by_op[k] > 0) rows.emplace_back(r.seconds_by_op[k], k);
  }
  std::sort(rows.rbegin(), rows.rend());
  const double steps = std::max<size_t>(1, r.losses.size() > 1 ? r.losses.size() - 1 : 1);
  out << "time per step by op kind (BLAS kernels: " << r.blas_core << "):\n";
  for (const auto& [s, k] : rows) {
    const std::string name(op_name(static_cast<OpKind>(k)));
    out << "  " << name << std::string(name.size() < 20 ? 20 - name.size() : 1, ' ')
        << format_seconds(s / steps) << "  " << format_fixed(100.0 * s / total, 1) << "%\n";
  }
  out << "slowest nodes (a fused node lists the ops computed in its loop):\n";
  for (const auto& n : r.slowest_nodes)
    out << "  " << format_seconds(n.seconds / steps) << "  " << n.what << "\n";
}

// The planned stages program stage s runs, when the program was compiled here: one, or
// (interleaved) every stage c with c mod (program stages) == s.
std::vector<const PlannedStage*> planned_stages(const TrainReport& r, size_t s) {
  std::vector<const PlannedStage*> out;
  if (!r.compiled || !r.compiled->pipeline) return out;
  const std::vector<PlannedStage>& stages = r.compiled->pipeline->stages.stages;
  for (size_t c = s; c < stages.size(); c += r.program.stages.size()) out.push_back(&stages[c]);
  return out;
}

// The stages that ran and what each device held (last step).
nlohmann::json pipeline_json(const TrainReport& r) {
  nlohmann::json stages = nlohmann::json::array();
  for (size_t s = 0; s < r.program.stages.size(); ++s) {
    const Stage& st = r.program.stages[s];
    nlohmann::json devs = nlohmann::json::array();
    for (int d : st.mesh.devices)
      devs.push_back({{"device", d},
                      {"owned_bytes", r.device_stats[d].owned_bytes},
                      {"peak_store_bytes", r.device_stats[d].peak_store_bytes},
                      {"peak_live_micro_batches", r.device_stats[d].peak_live_micro_batches},
                      {"peak_task_bytes", r.device_stats[d].peak_task_bytes}});
    nlohmann::json j = {{"index", s},
                        {"logical_mesh", {st.mesh.shape.n0, st.mesh.shape.n1}},
                        {"first_device", st.mesh.first_device()},
                        {"devices", devs}};
    const std::vector<const PlannedStage*> planned = planned_stages(r, s);
    if (planned.size() == 1) j["layers"] = {planned[0]->first_layer, planned[0]->last_layer};
    if (planned.size() > 1) {  // interleaved: the layer range of each of the mesh's stages
      j["layers"] = nlohmann::json::array();
      for (const PlannedStage* ps : planned)
        j["layers"].push_back({ps->first_layer, ps->last_layer});
    }
    if (!planned.empty()) j["submesh"] = planned[0]->submesh.to_string();
    stages.push_back(std::move(j));
  }
  nlohmann::json j = {{"stages", stages}, {"transfers_per_step", r.program.transfers.size()}};
  if (r.compiled && r.compiled->pipeline)
    j["layers"] = r.compiled->pipeline->plan.layers.num_layers;
  return j;
}

nlohmann::json parts_json(const MemoryBreakdown& m) {
  return {{"peak_bytes", m.total()},    {"weights", m.weights},
          {"per_step", m.accumulators}, {"stash", m.in_flight * m.stash_per_micro_batch},
          {"in_flight", m.in_flight},   {"working", m.working}};
}

// Per device, the peak memory of the last step in the memory model's parts (cost/memory.h):
// measured by the runtime, predicted by the simulation of the program and, for a pipeline
// stage planned here, by the planner.
nlohmann::json memory_json(const TrainReport& r) {
  nlohmann::json out = nlohmann::json::array();
  for (int d = 0; d < r.devices; ++d) {
    const DeviceStats& ds = r.device_stats[static_cast<size_t>(d)];
    const size_t s = static_cast<size_t>(r.device_stage[static_cast<size_t>(d)]);
    MemoryBreakdown measured;
    measured.weights = static_cast<double>(ds.owned_bytes);
    measured.accumulators = static_cast<double>(ds.peak_step_bytes);
    measured.in_flight = ds.peak_in_flight;
    measured.stash_per_micro_batch =
        ds.peak_in_flight > 0 ? static_cast<double>(ds.peak_stash_bytes) / ds.peak_in_flight : 0;
    measured.working = static_cast<double>(ds.peak_working_bytes);
    nlohmann::json j = {{"device", d}, {"stage", s}, {"measured", parts_json(measured)}};
    j["measured"]["peak_store_bytes"] = ds.peak_store_bytes;
    j["measured"]["peak_task_bytes"] = ds.peak_task_bytes;
    if (r.compiled && r.compiled->sim && s < r.compiled->sim->stages.size())
      j["predicted"] = parts_json(r.compiled->sim->stages[s].peak_breakdown);
    const std::vector<const PlannedStage*> planned = planned_stages(r, s);
    if (planned.size() == 1 && planned[0]->memory.total() > 0)
      j["planned"] = parts_json(planned[0]->memory);
    out.push_back(std::move(j));
  }
  return out;
}

void print_pipeline(const TrainReport& r, std::ostream& out) {
  const size_t S = r.program.stages.size();
  out << "  pipeline    " << S << " stage" << (S > 1 ? "s" : "");
  if (r.compiled && r.compiled->pipeline)
    out << " over " << r.compiled->pipeline->plan.layers.num_layers << " layers";
  if (r.program.virtual_stages > 1)
    out << " (" << r.program.schedule << ": " << r.program.virtual_stages
        << " virtual stages per mesh)";
  out << ", " << r.program.transfers.size() << " cross-stage transfers per step, " << r.plan_how
      << " in " << format_seconds(r.plan_seconds)
      << "; predicted for the cluster model: " << format_seconds(r.predicted_step_time_s)
      << " per step\n";
  for (size_t s = 0; s < S; ++s) {
    const Stage& st = r.program.stages[s];
    int64_t owned = 0;
    int live = 0;
    for (int d : st.mesh.devices) {
      owned = std::max(owned, r.device_stats[d].owned_bytes);
      live = std::max(live, r.device_stats[d].peak_live_micro_batches);
    }
    const int64_t n = st.mesh.size();
    out << "    stage " << s << ": ";
    const std::vector<const PlannedStage*> planned = planned_stages(r, s);
    for (size_t k = 0; k < planned.size(); ++k)
      out << (k == 0 ? "layers " : ", ") << planned[k]->first_layer << "-" << planned[k]->last_layer
          << (k + 1 == planned.size() ? " on " : "");
    out << n << " device" << (n > 1 ? "s" : "") << " (from " << st.mesh.first_device()
        << ", logical " << st.mesh.shape.to_string() << "), "
        << format_bytes(static_cast<double>(owned)) << " of weights and state per device, at most "
        << live << " micro-batch" << (live > 1 ? "es" : "") << " in flight\n";
  }
}

void print_header(const TrainFlags& flags, const ModelSpec& spec, const TrainOptions& o,
                  const std::string& plan_source, const std::string& where, bool mpi,
                  std::ostream& out) {
  const CompileOptions& c = o.compile;
  const bool pipelined = o.program ? o.program->schedule != "none" : c.pipeline;
  const int devices = o.program   ? o.program->num_devices
                      : pipelined ? c.devices
                                  : static_cast<int>(c.mesh.size());
  out << "alpa train: " << spec.name << ", batch " << spec.batch;
  if (spec.family == ModelFamily::kGpt) out << " x seq " << spec.gpt.seq;
  if (spec.family == ModelFamily::kMoe) out << " x seq " << spec.moe.seq;
  out << ", " << optimizer_name(c.optimizer.kind) << " lr " << flags.optimizer.lr << ", "
      << (o.program && pipelined ? cat(o.program->micro_batches, " micro-batches")
          : c.micro_batches > 0
              ? cat(c.micro_batches, " micro-batch", c.micro_batches > 1 ? "es" : "")
              : std::string("micro-batches chosen by the planner"))
      << ", " << flags.steps << " steps";
  if (pipelined)
    out << ", pipeline over " << devices << " " << where << ", plan: " << plan_source;
  else if (devices > 1)
    out << ", mesh " << (o.program ? o.program->stages[0].mesh.shape : c.mesh).to_string() << " of "
        << where << " (" << devices << (mpi ? " processes" : " threads")
        << "), plan: " << plan_source;
  out << "\n";
  if (!flags.resume.empty()) out << "resuming from " << flags.resume << "\n";
  if (!flags.init_from.empty()) out << "initial weights from " << flags.init_from << "\n";
  if (!flags.checkpoint_dir.empty())
    out << "checkpoints: " << flags.checkpoint_dir
        << (flags.checkpoint_every > 0 ? cat(" every ", flags.checkpoint_every, " steps and")
                                       : std::string())
        << " after step " << flags.steps << "\n";
  out.flush();
}

nlohmann::json report_json(const TrainFlags& flags, const ModelSpec& spec, const TrainOptions& o,
                           const TrainReport& r, const std::string& plan_source) {
  const bool pipelined = r.program.schedule != "none";
  nlohmann::json j;
  j["command"] = "train";
  j["model"] = spec.name;
  j["parameters"] = r.parameters;
  j["flops_per_step"] = r.flops_per_step;
  j["batch"] = spec.batch;
  j["tokens_per_step"] = r.tokens_per_step;
  j["micro_batches"] = r.micro_batches;
  j["optimizer"] = std::string(optimizer_name(o.compile.optimizer.kind));
  j["lr"] = flags.optimizer.lr;
  j["seed"] = flags.seed;
  j["threads"] = r.threads;
  j["steps"] = flags.steps;
  j["losses"] = r.losses;
  if (!r.grad_norms.empty()) j["grad_norms"] = r.grad_norms;
  if (!r.val_losses.empty()) {
    nlohmann::json v = nlohmann::json::array();
    for (const auto& [step, loss] : r.val_losses) v.push_back({{"step", step}, {"loss", loss}});
    j["val_losses"] = std::move(v);
  }
  j["step_times_s"] = r.step_seconds;
  j["step_time_s"] = r.step_time_s();
  if (!r.data_seconds.empty()) {
    double data = 0, steps = 0;
    for (double d : r.data_seconds) data += d;
    for (double t : r.step_seconds) steps += t;
    j["data_time_fraction"] = steps > 0 ? data / steps : 0.0;  // batches made / steps run
  }
  if (r.data_rows_per_step > 0) j["data_rows_per_step"] = r.data_rows_per_step;
  j["tokens_per_s"] = r.tokens_per_s();
  j["gflops_per_s"] = r.gflops_per_s();
  j["blas_core"] = r.blas_core;
  j["mesh"] = {r.mesh[0], r.mesh[1]};
  j["devices"] = r.devices;
  j["backend"] = flags.backend;
  j["first_step"] = r.first_step;
  if (!r.resumed_from.empty()) j["resumed_from"] = r.resumed_from;
  if (!r.checkpoints.empty()) j["checkpoints"] = r.checkpoints;
  if (!flags.trace_path.empty()) j["trace"] = flags.trace_path;
  if (!flags.program_path.empty()) j["program"] = flags.program_path;
  if (pipelined) {
    j["pipeline"] = pipeline_json(r);
    j["schedule"] = r.program.schedule;
  }
  if (r.devices > 1 || pipelined) {
    j["plan"] = plan_source;
    j["plan_time_s"] = r.plan_seconds;
    j["predicted_step_time_s"] = r.predicted_step_time_s;
    j["predicted_peak_memory_bytes"] = r.predicted_peak_memory_bytes;
    j["collectives"] = r.collectives;
  }
  if (r.device_stats.size() == static_cast<size_t>(r.devices)) j["memory"] = memory_json(r);
  if (flags.profile) {
    nlohmann::json by_op = nlohmann::json::object();
    for (int k = 0; k < kNumOps; ++k)
      if (r.seconds_by_op[k] > 0)
        by_op[std::string(op_name(static_cast<OpKind>(k)))] = r.seconds_by_op[k];
    j["seconds_by_op"] = by_op;
  }
  return j;
}

void print_summary(const TrainFlags& flags, const ModelSpec& spec, const TrainReport& r,
                   const std::string& plan_source, const std::string& where, std::ostream& out) {
  const bool pipelined = r.program.schedule != "none";
  const size_t S = r.program.stages.size();
  out << "summary: " << spec.name << ", " << format_count(r.parameters) << " parameters, "
      << (pipelined ? cat(r.devices, " ", where, " in ", S, " pipeline stage", S > 1 ? "s, " : ", ",
                          r.micro_batches, " micro-batch", r.micro_batches > 1 ? "es" : "")
          : r.devices > 1 ? cat(r.devices, " ", where, " (", r.mesh.to_string(), ")")
                          : cat(r.threads, " thread", r.threads > 1 ? "s" : ""))
      << "\n"
      << "  loss        " << format_fixed(r.losses.front(), 4) << " -> "
      << format_fixed(r.losses.back(), 4) << "\n"
      << "  step time   " << format_seconds(r.step_time_s()) << " (median"
      << (r.step_seconds.size() > 1 ? " after the first step" : "") << ")\n"
      << "  throughput  " << format_count(static_cast<int64_t>(r.tokens_per_s()))
      << (spec.family == ModelFamily::kGpt || spec.family == ModelFamily::kMoe ? " tokens/s"
                                                                               : " samples/s")
      << ", " << format_fixed(r.gflops_per_s(), 1) << " GFLOP/s ("
      << format_si(r.flops_per_step, "FLOP") << " per step)\n";
  if (pipelined) print_pipeline(r, out);
  if (r.devices > 1 && !pipelined)
    out << "  plan        " << plan_source << ", " << r.plan_how << " in "
        << format_seconds(r.plan_seconds) << ", " << r.collectives
        << " collectives per step per device; predicted for the "
        << "cluster model: " << format_seconds(r.predicted_step_time_s) << " per step\n";
  if (!flags.trace_path.empty())
    out << "  trace       " << flags.trace_path
        << " (the last step, every device; open in ui.perfetto.dev or chrome://tracing)\n";
  if (!r.checkpoints.empty())
    out << "  checkpoint  " << r.checkpoints.back()
        << (r.checkpoints.size() > 1 ? cat(" (", r.checkpoints.size(), " written)") : "") << "\n";
  if (flags.profile && r.devices == 1) print_profile(r, out);
}

// The run's options from the flags: the model and its compile options, or a program file.
Result<TrainOptions> train_options(TrainFlags& flags, ModelSpec& spec, std::string& plan_source) {
  TrainOptions o;
  if (!flags.program_path.empty()) {
    ALPA_ASSIGN_OR_RETURN(Program p, load_program(flags.program_path));
    if (!flags.model_given)
      ALPA_RETURN_IF_ERROR(
          flags_from_program(p, flags.model, flags.optimizer, flags.micro_batches));
    if (flags.parallel.devices > 0 && flags.parallel.devices != p.num_devices)
      return invalid_argument(cat("--devices ", flags.parallel.devices, " differs from the ",
                                  "program's ", p.num_devices, " devices"),
                              "leave out --devices: a program runs on the devices it was "
                              "compiled for");
    if (!flags.parallel.mesh.empty() || flags.parallel.plan != "auto" ||
        flags.parallel.space != "full")
      return invalid_argument("--mesh, --plan and --space are decided by the program",
                              "leave them out, or compile a new program with them");
    plan_source = flags.program_path;
    o.program = std::move(p);
  }
  ALPA_ASSIGN_OR_RETURN(spec, resolve_model_flags(flags.model));
  ALPA_ASSIGN_OR_RETURN(OptimizerOptions optimizer, optimizer_options(flags.optimizer));
  o.loop.steps = flags.steps;
  o.data_path = flags.data_path;
  o.loop.seed = flags.seed;
  o.threads = flags.threads;
  if (!o.program) {
    ALPA_ASSIGN_OR_RETURN(CompileSetup setup, resolve_compile(flags.parallel, spec, optimizer,
                                                              flags.micro_batches, "1x1", "local"));
    o.compile = setup.options;
    // Training on this machine keeps the planner's own choice unless --choose says otherwise.
    if (flags.parallel.choose.empty()) o.compile.check_by_simulation = false;
    o.cluster = setup.cluster;
    plan_source = setup.plan_source;
  } else {
    o.compile.optimizer = optimizer;
    o.compile.micro_batches = flags.micro_batches;
    // The cluster model it was compiled for, for the run's predictions.
    if (!flags.parallel.cluster.empty())
      o.cluster = flags.parallel.cluster;
    else if (o.program->source.count("cluster"))
      o.cluster = o.program->source.at("cluster");
  }
  o.loop.backend = flags.backend;
  o.loop.run.timeout_s = flags.timeout_s;
  o.loop.checkpoint_dir = flags.checkpoint_dir;
  o.loop.checkpoint_every = flags.checkpoint_every;
  o.loop.resume = flags.resume;
  if (!flags.init_from.empty()) {
    if (!flags.resume.empty())
      return invalid_argument("--init-from and --resume both give the starting weights",
                              "--resume continues a run with its optimizer state; --init-from "
                              "starts a new run from exported weights");
    ALPA_ASSIGN_OR_RETURN(o.loop.initial_weights, init_weights_from(flags.init_from, spec));
  }
  o.loop.data_offset = flags.data_offset;
  ALPA_ASSIGN_OR_RETURN(o.loop.schedule, lr_schedule(flags.optimizer, flags.steps));
  o.loop.eval_every = flags.eval_every;
  o.eval_batches = flags.eval_batches;
  if (flags.eval_every > 0 && flags.data_path.empty())
    return invalid_argument("--eval-every needs held-out data",
                            "train on a dataset (--data DIR, from `alpa data prepare`)");
  o.loop.trace_path = flags.trace_path;
  o.loop.profile = flags.profile;
  return o;
}

}  // namespace

int run_train(const TrainFlags& given, std::ostream& out_all, std::ostream& err_all) {
  // The MPI backend: this process is one rank of the job; rank 0 prints.
  std::unique_ptr<MpiSession> mpi;
  std::unique_ptr<MpiWorld> mpi_world;
  int rank = 0, ranks = 1;
  TrainFlags flags = given;
  if (flags.backend == "mpi") {
    Result<std::unique_ptr<MpiSession>> session = MpiSession::start();
    if (!session.ok()) return report_error(session.status(), flags.json, out_all, err_all);
    mpi = std::move(session).value();
    rank = mpi->rank();
    ranks = mpi->size();
    Result<std::unique_ptr<MpiWorld>> w = MpiWorld::create(flags.timeout_s);
    if (!w.ok()) return report_error(w.status(), flags.json, out_all, err_all);
    mpi_world = std::move(w).value();
    // Defaults that fit the job: a 1xN mesh, or N pipeline devices.
    if (flags.parallel.devices == 0 && flags.parallel.pipeline == "auto")
      flags.parallel.devices = ranks;
    const std::string& plan = flags.parallel.plan;
    const bool plan_file = plan != "auto" && !parse_manual_plan(plan).ok();
    if (flags.parallel.mesh.empty() && flags.parallel.devices == 0 && ranks > 1 && !plan_file &&
        flags.program_path.empty())
      flags.parallel.mesh = cat("1x", ranks);
  }
  std::ostream null_stream(nullptr);
  std::ostream& out = rank == 0 ? out_all : null_stream;
  // Errors found before training are the same on every rank: rank 0 reports them.
  std::ostream& err = rank == 0 ? err_all : null_stream;
  ModelSpec spec;
  std::string plan_source;
  Result<TrainOptions> opts = train_options(flags, spec, plan_source);
  if (!opts.ok()) return report_error(opts.status(), flags.json, out, err);
  TrainOptions& options = *opts;
  options.world = mpi_world.get();
  if (Status s = check_world_matches(options); !s.ok())
    return report_error(s, flags.json, out, err);
  const std::string where = mpi ? "MPI ranks" : "virtual devices";
  const bool human = !flags.json;
  if (human) print_header(flags, spec, options, plan_source, where, mpi != nullptr, out);
  ProgressLine progress(flags.steps, human && stderr_is_terminal());
  std::ofstream log;
  if (!flags.log_path.empty() && rank == 0) {
    log.open(flags.log_path, std::ios::trunc);
    if (!log)
      return report_error(io_error(cat("cannot write the log ", flags.log_path)), flags.json, out,
                          err);
  }
  const double tokens = static_cast<double>(tokens_per_batch(spec));
  Result<TrainReport> report = train_model(spec, options, [&](const StepReport& s) {
    const double lr = std::isnan(s.lr) ? flags.optimizer.lr : s.lr;
    auto format_sig = [](double v, int digits) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.*g", digits, v);
      return std::string(buf);
    };
    if (log.is_open()) {
      nlohmann::ordered_json j = {{"step", s.step},
                                  {"loss", s.loss},
                                  {"lr", lr},
                                  {"seconds", s.seconds},
                                  {"tokens_per_s", s.seconds > 0 ? tokens / s.seconds : 0.0}};
      if (!std::isnan(s.grad_norm)) j["grad_norm"] = s.grad_norm;
      if (!std::isnan(s.val_loss)) j["val_loss"] = s.val_loss;
      if (!std::isnan(s.mfu)) j["mfu"] = s.mfu;
      log << json_line(j) << "\n" << std::flush;
    }
    if (human) {
      out << "step " << s.step << "/" << flags.steps << "  loss " << format_fixed(s.loss, 4);
      if (!std::isnan(s.val_loss)) out << "  val " << format_fixed(s.val_loss, 4);
      if (!std::isnan(s.lr)) out << "  lr " << format_sig(s.lr, 3);
      if (!std::isnan(s.grad_norm)) out << "  |g| " << format_sig(s.grad_norm, 3);
      out << "  " << format_seconds(s.seconds);
      if (s.seconds > 0) out << "  " << format_fixed(tokens / s.seconds, 0) << " tok/s";
      if (!std::isnan(s.mfu)) out << "  MFU " << format_fixed(100 * s.mfu, 1) << "%";
      out << "\n";
      out.flush();
    }
    progress.update(s.step, "loss " + format_fixed(s.loss, 4));
  });
  progress.finish();
  if (!report.ok()) {
    if (ranks > 1) {
      // Any rank may fail; the others may be waiting for it, so the whole job stops.
      // One write, so the ranks' lines do not interleave.
      std::string msg = cat("error: rank ", rank, " on host ", this_host_name(), ": ",
                            report.status().message(), "\n");
      if (!report.status().hint().empty()) msg += cat("hint: ", report.status().hint(), "\n");
      err_all << msg << std::flush;
      MpiSession::abort_job(kExitUserError);
    }
    return report_error(report.status(), flags.json, out, err);
  }
  const TrainReport& r = *report;
  if (r.losses.empty())
    return report_error(
        invalid_argument(cat("checkpoint ", r.resumed_from, " is already at step ", flags.steps,
                             ": nothing to train"),
                         "--steps counts from the start of training: pass a larger --steps"),
        flags.json, out, err);
  if (flags.json)
    out << json_line(report_json(flags, spec, options, r, plan_source)) << "\n";
  else
    print_summary(flags, spec, r, plan_source, where, out);
  return kExitOk;
}

}  // namespace alpa
