// alpa train: trains a model on one device with the model's synthetic data.
#include <algorithm>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/progress.h"
#include "alpa/cli/trainer.h"
#include "alpa/plan/manual.h"
#include "alpa/runtime/mpi_world.h"

namespace alpa {

int report_error(const Status& status, bool json, std::ostream& out, std::ostream& err) {
  err << "error: " << status.message() << "\n";
  if (!status.hint().empty()) err << "hint: " << status.hint() << "\n";
  if (json) {
    nlohmann::json j;
    j["error"] = status.message();
    if (!status.hint().empty()) j["hint"] = status.hint();
    out << j.dump() << "\n";
  }
  return kExitUserError;
}

namespace {

Result<OptimizerOptions> optimizer_options(const OptimizerFlags& f) {
  OptimizerOptions o;
  ALPA_ASSIGN_OR_RETURN(o.kind, parse_optimizer(f.optimizer));
  o.learning_rate = f.lr;
  o.momentum = f.momentum;
  o.weight_decay = f.weight_decay;
  return o;
}

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

// The stages that ran and what each device held (last step).
nlohmann::json pipeline_json(const TrainReport& r) {
  nlohmann::json stages = nlohmann::json::array();
  for (size_t s = 0; s < r.pipeline_plan.stages.size(); ++s) {
    const PlannedStage& ps = r.pipeline_plan.stages[s];
    nlohmann::json devs = nlohmann::json::array();
    for (size_t d = 0; d < r.device_stage.size(); ++d)
      if (r.device_stage[d] == static_cast<int>(s))
        devs.push_back({{"device", d},
                        {"owned_bytes", r.device_stats[d].owned_bytes},
                        {"peak_store_bytes", r.device_stats[d].peak_store_bytes},
                        {"peak_live_micro_batches", r.device_stats[d].peak_live_micro_batches}});
    stages.push_back({{"index", s},
                      {"layers", {ps.first_layer, ps.last_layer}},
                      {"submesh", ps.submesh.to_string()},
                      {"logical_mesh", {ps.logical.shape[0], ps.logical.shape[1]}},
                      {"first_device", ps.first_device},
                      {"devices", devs}});
  }
  return {{"stages", stages},
          {"layers", r.pipeline_plan.layers.num_layers},
          {"transfers_per_step", r.transfers}};
}

void print_pipeline(const TrainReport& r, std::ostream& out) {
  const size_t S = r.pipeline_plan.stages.size();
  out << "  pipeline    " << S << " stage" << (S > 1 ? "s" : "") << " over "
      << r.pipeline_plan.layers.num_layers << " layers, " << r.transfers
      << " cross-stage transfers per step, planned in " << format_seconds(r.plan_seconds)
      << "; predicted for the cluster model: " << format_seconds(r.predicted_step_time_s)
      << " per step\n";
  for (size_t s = 0; s < r.pipeline_plan.stages.size(); ++s) {
    const PlannedStage& ps = r.pipeline_plan.stages[s];
    int64_t owned = 0;
    int live = 0, n = 0;
    for (size_t d = 0; d < r.device_stage.size(); ++d)
      if (r.device_stage[d] == static_cast<int>(s)) {
        owned = std::max(owned, r.device_stats[d].owned_bytes);
        live = std::max(live, r.device_stats[d].peak_live_micro_batches);
        ++n;
      }
    out << "    stage " << s << ": layers " << ps.first_layer << "-" << ps.last_layer << " on " << n
        << " device" << (n > 1 ? "s" : "") << " (from " << ps.first_device << ", logical "
        << ps.logical.to_string() << "), " << format_bytes(static_cast<double>(owned))
        << " of weights and state per device, at most " << live << " micro-batch"
        << (live > 1 ? "es" : "") << " in flight\n";
  }
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
    if (flags.parallel.mesh.empty() && flags.parallel.devices == 0 && ranks > 1 && !plan_file)
      flags.parallel.mesh = cat("1x", ranks);
  }
  std::ostream null_stream(nullptr);
  std::ostream& out = rank == 0 ? out_all : null_stream;
  // Errors found before training are the same on every rank: rank 0 reports them.
  std::ostream& err = rank == 0 ? err_all : null_stream;
  Result<ModelSpec> spec = resolve_model_flags(flags.model);
  if (!spec.ok()) return report_error(spec.status(), flags.json, out, err);
  Result<OptimizerOptions> opt = optimizer_options(flags.optimizer);
  if (!opt.ok()) return report_error(opt.status(), flags.json, out, err);

  TrainOptions options;
  options.steps = flags.steps;
  options.seed = flags.seed;
  options.micro_batches = std::max(1, flags.micro_batches);
  options.threads = flags.threads;
  options.optimizer = *opt;
  Result<ResolvedPipeline> pipe = resolve_pipeline(flags.parallel, "local");
  if (!pipe.ok()) return report_error(pipe.status(), flags.json, out, err);
  std::string plan_source;
  if (pipe->enabled) {
    // Pipeline stages on submeshes of virtual devices.
    if (pipe->devices < 1)
      return report_error(invalid_argument(cat("--devices must be >= 1, got ", pipe->devices)),
                          flags.json, out, err);
    options.cluster = pipe->cluster;
    options.sharding = pipe->sharding;
    // 0: the planner chooses (a plan file gives its own)
    options.micro_batches = pipe->plan ? pipe->plan->micro_batches : flags.micro_batches;
    options.pipeline.enabled = true;
    options.pipeline.devices = pipe->devices;
    options.pipeline.schedule = pipe->schedule;
    options.pipeline.num_layers = pipe->layers;
    options.pipeline.plan = pipe->plan;
    options.pipeline.fingerprint = pipe->fingerprint;
    options.pipeline.imbalance_tolerance = pipe->imbalance_tolerance;
    if (pipe->plan && flags.micro_batches > 0 && flags.micro_batches != pipe->plan->micro_batches)
      return report_error(
          invalid_argument(cat("--micro-batches ", flags.micro_batches,
                               " differs from the plan file's ", pipe->plan->micro_batches),
                           "leave out --micro-batches to use the plan's"),
          flags.json, out, err);
    plan_source = pipe->source;
  } else {
    // Sharding over a mesh of virtual devices (threads).
    Result<Graph> fwd = build_forward(*spec, options.micro_batches);
    if (!fwd.ok()) return report_error(fwd.status(), flags.json, out, err);
    TrainStepOptions tso;
    tso.optimizer = *opt;
    tso.micro_batches = options.micro_batches;
    Result<TrainStep> ts = build_train_step(*fwd, tso);
    if (!ts.ok()) return report_error(ts.status(), flags.json, out, err);
    Result<ResolvedParallel> par = resolve_parallel(flags.parallel, ts->graph, "1x1", "local");
    if (!par.ok()) return report_error(par.status(), flags.json, out, err);
    options.mesh = par->mesh;
    options.cluster = par->cluster;
    options.sharding = par->options;
    plan_source = par->plan_source;
  }
  const bool pipelined = options.pipeline.enabled;
  const int devices =
      pipelined ? options.pipeline.devices : static_cast<int>(options.mesh[0] * options.mesh[1]);
  options.backend = flags.backend;
  options.timeout_s = flags.timeout_s;
  options.checkpoint_dir = flags.checkpoint_dir;
  options.checkpoint_every = flags.checkpoint_every;
  options.resume = flags.resume;
  options.trace_path = flags.trace_path;
  options.world = mpi_world.get();
  if (Status s = check_world_matches(options); !s.ok())
    return report_error(s, flags.json, out, err);
  const std::string where = mpi ? "MPI ranks" : "virtual devices";

  const bool human = !flags.json;
  if (human) {
    out << "alpa train: " << spec->name << ", batch " << spec->batch;
    if (spec->family == ModelFamily::kGpt) out << " x seq " << spec->gpt.seq;
    if (spec->family == ModelFamily::kMoe) out << " x seq " << spec->moe.seq;
    out << ", " << optimizer_name(opt->kind) << " lr " << flags.optimizer.lr << ", "
        << (options.micro_batches > 0
                ? cat(options.micro_batches, " micro-batch", options.micro_batches > 1 ? "es" : "")
                : std::string("micro-batches chosen by the planner"))
        << ", " << flags.steps << " steps";
    if (pipelined)
      out << ", pipeline over " << devices << " " << where << " ("
          << schedule_name(options.pipeline.schedule) << "), plan: " << plan_source;
    else if (devices > 1)
      out << ", mesh " << options.mesh[0] << "x" << options.mesh[1] << " of " << where << " ("
          << devices << (mpi ? " processes" : " threads") << "), plan: " << plan_source;
    out << "\n";
    if (!flags.resume.empty()) out << "resuming from " << flags.resume << "\n";
    if (!flags.checkpoint_dir.empty())
      out << "checkpoints: " << flags.checkpoint_dir
          << (flags.checkpoint_every > 0 ? cat(" every ", flags.checkpoint_every, " steps and")
                                         : std::string())
          << " after step " << flags.steps << "\n";
    out.flush();
  }
  ProgressLine progress(flags.steps, human && stderr_is_terminal());
  Result<TrainReport> report = train_model(*spec, options, [&](const StepReport& s) {
    if (human) {
      out << "step " << s.step << "/" << flags.steps << "  loss " << format_fixed(s.loss, 4) << "  "
          << format_seconds(s.seconds) << "\n";
      out.flush();
    }
    progress.update(s.step, "loss " + format_fixed(s.loss, 4));
  });
  progress.finish();
  if (!report.ok()) {
    if (ranks > 1) {
      // Any rank may fail; the others may be waiting for it, so the whole job stops.
      // One write, so the ranks' lines do not interleave.
      std::string msg = cat("error: rank ", rank, ": ", report.status().message(), "\n");
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
  if (flags.json) {
    nlohmann::json j;
    j["command"] = "train";
    j["model"] = spec->name;
    j["parameters"] = r.parameters;
    j["flops_per_step"] = r.flops_per_step;
    j["batch"] = spec->batch;
    j["tokens_per_step"] = r.tokens_per_step;
    j["micro_batches"] = r.micro_batches;
    j["optimizer"] = std::string(optimizer_name(opt->kind));
    j["lr"] = flags.optimizer.lr;
    j["seed"] = flags.seed;
    j["threads"] = r.threads;
    j["steps"] = flags.steps;
    j["losses"] = r.losses;
    j["step_times_s"] = r.step_seconds;
    j["step_time_s"] = r.step_time_s();
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
    if (pipelined) {
      j["pipeline"] = pipeline_json(r);
      j["schedule"] = std::string(schedule_name(options.pipeline.schedule));
    }
    if (r.devices > 1 || pipelined) {
      j["plan"] = plan_source;
      j["plan_time_s"] = r.plan_seconds;
      j["predicted_step_time_s"] = r.predicted_step_time_s;
      j["predicted_peak_memory_bytes"] = r.predicted_peak_memory_bytes;
      j["collectives"] = r.collectives;
    }
    if (flags.profile) {
      nlohmann::json by_op = nlohmann::json::object();
      for (int k = 0; k < kNumOps; ++k)
        if (r.seconds_by_op[k] > 0)
          by_op[std::string(op_name(static_cast<OpKind>(k)))] = r.seconds_by_op[k];
      j["seconds_by_op"] = by_op;
    }
    out << j.dump() << "\n";
  } else {
    out << "summary: " << spec->name << ", " << format_count(r.parameters) << " parameters, "
        << (pipelined       ? cat(r.devices, " ", where, " in ", r.pipeline_plan.stages.size(),
                                  " pipeline stage", r.pipeline_plan.stages.size() > 1 ? "s, " : ", ",
                                  r.micro_batches, " micro-batch", r.micro_batches > 1 ? "es" : "")
            : r.devices > 1 ? cat(r.devices, " ", where, " (", r.mesh[0], "x", r.mesh[1], ")")
                            : cat(r.threads, " thread", r.threads > 1 ? "s" : ""))
        << "\n"
        << "  loss        " << format_fixed(r.losses.front(), 4) << " -> "
        << format_fixed(r.losses.back(), 4) << "\n"
        << "  step time   " << format_seconds(r.step_time_s()) << " (median"
        << (r.step_seconds.size() > 1 ? " after the first step" : "") << ")\n"
        << "  throughput  " << format_count(static_cast<int64_t>(r.tokens_per_s()))
        << (spec->family == ModelFamily::kGpt || spec->family == ModelFamily::kMoe ? " tokens/s"
                                                                                : " samples/s")
        << ", "
        << format_fixed(r.gflops_per_s(), 1) << " GFLOP/s (" << format_si(r.flops_per_step, "FLOP")
        << " per step)\n";
    if (pipelined) print_pipeline(r, out);
    if (r.devices > 1 && !pipelined)
      out << "  plan        " << plan_source << ", planned in " << format_seconds(r.plan_seconds)
          << ", " << r.collectives << " collectives per step per device; predicted for the "
          << "cluster model: " << format_seconds(r.predicted_step_time_s) << " per step\n";
    if (!flags.trace_path.empty())
      out << "  trace       " << flags.trace_path
          << " (the last step, every device; open in ui.perfetto.dev or chrome://tracing)\n";
    if (!r.checkpoints.empty())
      out << "  checkpoint  " << r.checkpoints.back()
          << (r.checkpoints.size() > 1 ? cat(" (", r.checkpoints.size(), " written)") : "")
          << "\n";
    if (flags.profile && r.devices == 1) print_profile(r, out);
  }
  return kExitOk;
}

}  // namespace alpa
