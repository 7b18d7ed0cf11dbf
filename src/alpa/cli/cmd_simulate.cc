// alpa simulate: a compiled program's training step run in simulated time on the cluster it was
// planned for — step time, throughput, bubble, memory per stage — and optionally its trace. The
// program is compiled as `alpa plan --gpus` compiles it, found by a baseline's grid search, or
// read from a file (`alpa compile --out`).
#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/progress.h"
#include "alpa/cli/trainer.h"
#include "alpa/compile/baseline.h"
#include "alpa/ir/analysis.h"
#include "alpa/program/io.h"
#include "alpa/sim/simulator.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

namespace {

// The planner's stages a program stage (mesh) runs: one, or (interleaved) every stage c with
// c mod meshes == s; their layer ranges, summed time per micro-batch, and largest peak.
struct MeshStages {
  std::vector<std::pair<int, int>> ranges;
  double time_s = 0, peak_memory_bytes = 0;
  RematMode remat = RematMode::kNone;       // what the stages recompute (one mode per mesh)
  int full_remat_layers = 0;                // of which the first layers fully (PlannedStage)
  std::string remat_text = "none";          // both in words (remat_text)
  const MemoryBreakdown* memory = nullptr;  // the planned peak's parts (one stage per mesh)
  // "0-1" or (interleaved) "0-1, 4-5", and what they recompute: "0-1 (recomputes full)".
  std::string text() const {
    std::string out;
    for (const auto& [a, b] : ranges) out += cat(out.empty() ? "" : ", ", a, "-", b);
    if (remat_text != "none") out += cat(" (recomputes ", remat_text, ")");
    return out;
  }
};
MeshStages mesh_stages(const std::vector<PlannedStage>* stages, size_t meshes, size_t s) {
  MeshStages out;
  if (!stages) return out;
  for (size_t c = s; c < stages->size(); c += meshes) {
    const PlannedStage& ps = (*stages)[c];
    out.ranges.push_back({ps.first_layer, ps.last_layer});
    out.remat = ps.remat;
    out.full_remat_layers = ps.full_remat_layers;
    out.remat_text = remat_text(ps);
    out.memory = c == s ? &ps.memory : nullptr;
    out.time_s += ps.time_s;
    out.peak_memory_bytes = std::max(out.peak_memory_bytes, ps.peak_memory_bytes);
  }
  return out;
}

// Megatron-LM's FLOP count of a GPT training step (Narayanan et al.; Alpa's
// compute_gpt_tflops): c·B·s·h²·l·(1 + s/(6h)) + 6·B·s·h·V with c = 72 (forward 24, backward
// 48): the model's FLOPs. Recomputed FLOPs are not counted (Megatron-LM's c = 96 counts a
// fully recomputed forward), so recomputation costs throughput rather than adding to it.
double megatron_gpt_flops(const GptConfig& g, int64_t batch) {
  const double B = static_cast<double>(batch), s = static_cast<double>(g.seq),
               h = static_cast<double>(g.hidden), l = static_cast<double>(g.layers),
               V = static_cast<double>(g.vocab);
  return 72 * B * s * h * h * l * (1 + s / (6 * h)) + 6 * B * s * h * V;
}

// What the report shows: a compiled program, its simulation, and how it was found.
struct Simulated {
  const Cluster* cluster = nullptr;
  const Program* program = nullptr;
  int micro_batches = 1;
  const std::vector<PlannedStage>* stages = nullptr;  // the planner's stages, if planned here
  double planner_step_s = 0;    // the stage costs' estimate (0: not planned here)
  double graph_flops_step = 0;  // the training step's FLOPs (every micro-batch)
  SimReport sim;
  double plan_s = 0, sim_s = 0;
  std::string source;  // the plan's origin, for the report
  const BaselineResult* baseline = nullptr;
  int plan_rounds = 1;  // plans made until the simulated memory fit
};

// FLOPs of a training step whose forward and backward run once per micro-batch (the step of
// one micro-batch when `pipelined`) and whose update runs once.
double step_flops(const TrainStep& step, int micro_batches, bool pipelined) {
  double f = 0;
  for (ValueId v = 0; v < step.graph.size(); ++v)
    f += node_flops(step.graph, v) *
         (pipelined && !once_per_step(step.phase[v]) ? micro_batches : 1);
  return f;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::function<void(const std::string&)> terminal_progress(const PlanFlags& pf, const char* what) {
  if (pf.json || !stderr_is_terminal()) return {};
  return [what](const std::string& line) {
    std::fprintf(stderr, "\r%s: %s\x1b[K", what, line.c_str());
    std::fflush(stderr);
  };
}

nlohmann::ordered_json config_json(const BaselineConfig& c) {
  return {{"dp", c.dp},
          {"tp", c.tp},
          {"pp", c.pp},
          {"micro_batches", c.micro_batches},
          {"per_stage", std::string(manual_plan_name(c.per_stage))},
          {"expert_parallel", c.expert_parallel},
          {"virtual_stages", c.virtual_stages}};
}

int report(const SimulateFlags& flags, const ModelSpec& spec, const Simulated& r, std::ostream& out,
           std::ostream& err);

// The planner's pipeline (or a pipeline plan file), compiled and simulated.
int simulate_planned(const SimulateFlags& flags, const ModelSpec& spec, const CompileSetup& setup,
                     std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  Result<Compiled> c = compile_for_plan(pf, spec, setup);
  if (!c.ok()) return fail(c.status());
  Simulated r;
  r.plan_s = c->seconds - c->phase_seconds("simulate");
  r.sim_s = c->phase_seconds("simulate");
  r.sim = *c->sim;
  r.plan_rounds = c->pipeline->plan_rounds;
  r.cluster = &c->cluster;
  r.program = &c->program;
  r.micro_batches = c->micro_batches;
  r.stages = &c->pipeline->stages.stages;
  r.planner_step_s = c->pipeline->stages.predicted_step_time_s;
  r.graph_flops_step = step_flops(c->step, c->micro_batches, true);
  r.source = setup.plan_source;
  return report(flags, spec, r, out, err);
}

// A baseline's grid search; its best configuration's simulation is the report.
int simulate_baseline(const SimulateFlags& flags, const ModelSpec& spec, const CompileSetup& setup,
                      std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  Result<BaselineKind> kind = parse_baseline(flags.baseline);
  if (!kind.ok()) return fail(kind.status());
  if (setup.options.stages)
    return fail(invalid_argument("--baseline searches its own plans; it takes no plan file",
                                 "drop --plan, or drop --baseline to simulate the plan file"));
  Result<Cluster> cluster = sized_cluster(setup.cluster, setup.options.devices);
  if (!cluster.ok()) return fail(cluster.status());
  BaselineOptions bo;
  bo.batch = spec.batch;
  // Megatron's grid: 1F1B and interleaved 1F1B (2 and 4 chunks, or --virtual-stages) unless a
  // schedule is named; --schedule 1f1b or gpipe alone leaves interleaving out.
  const bool interleaved = setup.options.schedule == ScheduleKind::kInterleaved1F1B;
  bo.schedule = interleaved ? ScheduleKind::k1F1B : setup.options.schedule;
  if (interleaved && setup.options.virtual_stages > 0)
    bo.interleave = {setup.options.virtual_stages};
  else if (!interleaved && !setup.options.choose_schedule && !pf.parallel.schedule.empty())
    bo.interleave.clear();
  bo.memory_per_device = setup.options.sharding.memory_budget_bytes;
  bo.moe = spec.family == ModelFamily::kMoe;
  bo.progress = terminal_progress(pf, "searching");
  Result<BaselineResult> b = plan_baseline(*kind, spec, setup.options.optimizer, *cluster, bo);
  if (bo.progress) std::fprintf(stderr, "\r\x1b[K");
  if (!b.ok()) return fail(b.status());
  const Compiled& c = b->compiled;
  Simulated r;
  r.plan_s = b->search_s;
  r.sim = *c.sim;
  r.cluster = &*cluster;
  r.program = &c.program;
  r.micro_batches = c.micro_batches;
  r.stages = &c.pipeline->stages.stages;
  r.planner_step_s = c.pipeline->stages.predicted_step_time_s;
  r.graph_flops_step = step_flops(c.step, c.micro_batches, true);
  r.source = cat(baseline_name(*kind), " grid search, best of ", b->trials.size(), ": ",
                 b->best.to_string());
  r.baseline = &*b;
  return report(flags, spec, r, out, err);
}

// A program file, simulated on the cluster (sized to the program's devices).
int simulate_program(const SimulateFlags& given, std::ostream& out, std::ostream& err) {
  SimulateFlags flags = given;
  PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  Result<Program> program = load_program(flags.program_path);
  if (!program.ok()) return fail(program.status());
  if (!flags.model_given) {
    Status s = flags_from_program(*program, pf.model, pf.optimizer, pf.micro_batches);
    if (!s.ok()) return fail(s);
  }
  if (pf.parallel.devices > 0 && pf.parallel.devices != program->num_devices)
    return fail(invalid_argument(cat("--gpus ", pf.parallel.devices, " differs from the ",
                                     "program's ", program->num_devices, " devices"),
                                 "leave out --gpus: a program runs on the devices it was "
                                 "compiled for"));
  Result<ModelSpec> spec = resolve_model_flags(pf.model);
  if (!spec.ok()) return fail(spec.status());
  Result<OptimizerOptions> opt = optimizer_options(pf.optimizer);
  if (!opt.ok()) return fail(opt.status());
  Result<TrainStep> step = step_of_program(*program, *spec, *opt, pf.micro_batches);
  if (!step.ok()) return fail(step.status());
  // The cluster it was compiled for unless --cluster names another.
  std::string cluster_name = pf.parallel.cluster;
  if (cluster_name.empty())
    cluster_name = program->source.count("cluster") ? program->source.at("cluster") : "p3.16xlarge";
  Result<Cluster> cluster = sized_cluster(cluster_name, program->num_devices);
  if (!cluster.ok()) return fail(cluster.status());
  const Clock::time_point t0 = Clock::now();
  Result<SimReport> sim = simulate(*program, *cluster);
  if (!sim.ok()) return fail(sim.status());
  const bool pipelined = program->schedule != "none";
  Simulated r;
  r.sim_s = seconds_since(t0);
  r.sim = std::move(*sim);
  r.cluster = &*cluster;
  r.program = &*program;
  r.micro_batches = pipelined ? program->micro_batches : std::max(1, pf.micro_batches);
  r.graph_flops_step = step_flops(*step, r.micro_batches, pipelined);
  r.source = flags.program_path;
  return report(flags, *spec, r, out, err);
}

}  // namespace

int run_simulate(const SimulateFlags& flags, std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  if (!flags.program_path.empty()) {
    if (!flags.baseline.empty())
      return fail(invalid_argument("--baseline searches its own plans; it takes no program",
                                   "drop --program, or drop --baseline"));
    return simulate_program(flags, out, err);
  }
  Result<ModelSpec> spec = resolve_model_flags(pf.model);
  if (!spec.ok()) return fail(spec.status());
  Result<OptimizerOptions> opt = optimizer_options(pf.optimizer);
  if (!opt.ok()) return fail(opt.status());
  Result<ResolvedPipeline> pipe = resolve_pipeline(pf.parallel, "p3.16xlarge");
  if (!pipe.ok()) return fail(pipe.status());
  if (!pipe->enabled)
    return fail(invalid_argument(
        "alpa simulate runs a pipeline plan: give the number of devices, a plan file or a "
        "program",
        "add --gpus N (planned as by `alpa plan --gpus N`), --plan pipe.json, or --program "
        "FILE (`alpa compile --out`)"));
  Result<CompileSetup> setup =
      resolve_compile(pf.parallel, *spec, *opt, pf.micro_batches, "1x8", "p3.16xlarge");
  if (!setup.ok()) return fail(setup.status());
  return flags.baseline.empty() ? simulate_planned(flags, *spec, *setup, out, err)
                                : simulate_baseline(flags, *spec, *setup, out, err);
}

namespace {

int report(const SimulateFlags& flags, const ModelSpec& spec_ref, const Simulated& r,
           std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  const ModelSpec* spec = &spec_ref;
  const SimReport* sim = &r.sim;
  const double plan_s = r.plan_s, sim_s = r.sim_s;

  const int devices = r.program->num_devices;
  const int B = r.micro_batches;
  const double step_s = sim->step_time_s;
  const double graph_flops_step = r.graph_flops_step;
  const bool gpt = spec->family == ModelFamily::kGpt;
  const double megatron = gpt ? megatron_gpt_flops(spec->gpt, spec->batch) : 0;
  const double samples_per_s = static_cast<double>(spec->batch) / step_s;
  const double tflops_dev = (gpt ? megatron : graph_flops_step) / devices / step_s / 1e12;
  const double memory = r.cluster->device.memory_bytes;
  const double peak = sim->peak_memory_bytes();
  const std::string schedule = r.program->schedule;
  if (!flags.trace_path.empty()) {
    Status s = write_chrome_trace(
        flags.trace_path, sim->events,
        cat("alpa simulate ", spec->name, " on ", devices, " x ", r.cluster->name));
    if (!s.ok()) return fail(s);
  }

  if (pf.json) {
    nlohmann::ordered_json j;
    j["command"] = "simulate";
    j["model"] = spec->name;
    j["cluster"] = r.cluster->name;
    j["devices"] = devices;
    j["micro_batches"] = B;
    j["plan_source"] = r.baseline ? std::string(baseline_name(r.baseline->kind)) : "planner";
    j["schedule"] = schedule;
    j["step_time_s"] = step_s;
    j["planner_step_time_s"] = r.planner_step_s;
    j["bubble_fraction"] = sim->bubble_fraction;
    j["samples_per_s"] = samples_per_s;
    j["tflops_per_device"] = tflops_dev;
    j["pflops"] = tflops_dev * devices / 1e3;
    j["flops_per_step"] = gpt ? megatron : graph_flops_step;
    j["flops_formula"] = gpt ? "megatron" : "graph";
    j["graph_flops_per_step"] = graph_flops_step;
    j["peak_memory_bytes"] = peak;
    j["device_memory_bytes"] = memory;
    j["fits_memory"] = peak <= memory;
    j["plan_time_s"] = plan_s;
    j["plan_rounds"] = r.plan_rounds;
    j["simulation_time_s"] = sim_s;
    j["instructions"] = sim->instructions;
    nlohmann::ordered_json stages = nlohmann::ordered_json::array();
    for (size_t s = 0; s < sim->stages.size(); ++s) {
      const SimStage& st = sim->stages[s];
      const MeshShape& mesh = r.program->stages[s].mesh.shape;
      nlohmann::ordered_json js;
      const MeshStages ms = mesh_stages(r.stages, sim->stages.size(), s);
      if (r.stages && ms.ranges.size() == 1) js["layers"] = ms.ranges[0];
      if (r.stages && ms.ranges.size() > 1) js["layers"] = ms.ranges;  // interleaved
      js["first_device"] = st.first_device;
      js["devices"] = st.devices;
      js["logical_mesh"] = {mesh.n0, mesh.n1};
      js["busy_s"] = st.busy_s;
      if (r.stages) {
        js["remat"] = remat_name(ms.remat);
        js["full_remat_layers"] = ms.full_remat_layers;
        js["planner_time_per_micro_batch_s"] = ms.time_s;
        js["planner_peak_memory_bytes"] = ms.peak_memory_bytes;
      }
      js["compute_s"] = st.compute_s;
      js["communication_s"] = st.communication_s;
      js["owned_bytes"] = st.owned_bytes;
      js["peak_memory_bytes"] = st.peak_memory_bytes;
      js["peak_live_micro_batches"] = st.peak_live_micro_batches;
      js["memory"] = stage_memory_json(ms.memory, &st.peak_breakdown);
      stages.push_back(std::move(js));
    }
    j["stages"] = stages;
    if (r.baseline) {
      j["baseline"] = std::string(baseline_name(r.baseline->kind));
      j["config"] = config_json(r.baseline->best);
      nlohmann::ordered_json trials = nlohmann::ordered_json::array();
      for (const BaselineTrial& t : r.baseline->trials) {
        nlohmann::ordered_json jt = config_json(t.config);
        jt["simulated"] = t.simulated;
        jt["fits"] = t.fits;
        jt["step_time_s"] = t.step_time_s;
        jt["peak_memory_bytes"] = t.peak_memory_bytes;
        if (!t.note.empty()) jt["note"] = t.note;
        trials.push_back(jt);
      }
      j["trials"] = trials;
    }
    if (!flags.trace_path.empty()) j["trace"] = flags.trace_path;
    out << json_line(j) << "\n";
    return kExitOk;
  }
  out << "alpa simulate: " << spec->name << " on " << devices << " devices of " << r.cluster->name
      << ", batch " << spec->batch << " in " << B << " micro-batch" << (B > 1 ? "es" : "") << " ("
      << schedule << "), plan: " << r.source;
  if (plan_s > 0) out << " (" << format_seconds(plan_s) << ")";
  out << "\n";
  if (r.plan_rounds > 1)
    out << "  planned " << r.plan_rounds << " times: a plan's simulated memory exceeded the "
        << "device, so the planner was given less\n";
  if (r.baseline) {
    out << "  configurations tried (step time simulated, peak memory per device):\n";
    for (const BaselineTrial& t : r.baseline->trials) {
      out << "    "
          << (t.config.micro_batches > 0
                  ? t.config.to_string()
                  : cat("dp ", t.config.dp, " x tp ", t.config.tp, " x pp ", t.config.pp, " (",
                        manual_plan_name(t.config.per_stage), ")"))
          << ": ";
      if (t.simulated)
        out << format_seconds(t.step_time_s) << ", " << format_bytes(t.peak_memory_bytes)
            << (t.fits ? "" : " (does not fit)");
      else
        out << t.note;
      out << "\n";
    }
  }
  for (size_t s = 0; s < sim->stages.size(); ++s) {
    const SimStage& st = sim->stages[s];
    out << "  stage " << s << ": ";
    if (r.stages) out << "layers " << mesh_stages(r.stages, sim->stages.size(), s).text() << " on ";
    out << st.devices << " device" << (st.devices > 1 ? "s" : "") << " (from " << st.first_device
        << ", " << r.program->stages[s].mesh.shape.to_string() << "): busy "
        << format_seconds(st.busy_s) << " (collectives " << format_seconds(st.communication_s)
        << "), peak memory " << format_bytes(st.peak_memory_bytes) << " of " << format_bytes(memory)
        << " (weights and state " << format_bytes(st.owned_bytes) << "), at most "
        << st.peak_live_micro_batches << " micro-batch"
        << (st.peak_live_micro_batches > 1 ? "es" : "") << " in flight\n";
  }
  out << "  step time   " << format_seconds(step_s) << " simulated"
      << (r.stages ? cat(" (planner's estimate ", format_seconds(r.planner_step_s), ")") : "")
      << ", bubble " << format_fixed(100 * sim->bubble_fraction, 1) << "%\n"
      << "  throughput  " << format_fixed(samples_per_s, 2) << " samples/s, "
      << format_fixed(tflops_dev * devices / 1e3, 3) << " PFLOPS (" << format_fixed(tflops_dev, 1)
      << " TFLOP/s per device, "
      << (gpt ? "Megatron formula, recomputation not counted" : "the graph's FLOPs") << ")\n";
  if (peak > memory)
    out << "  memory      does not fit: " << format_bytes(peak) << " > " << format_bytes(memory)
        << " per device\n";
  if (!flags.trace_path.empty())
    out << "  trace       " << flags.trace_path << " (" << sim->events.size()
        << " events, each stage's first device; open in ui.perfetto.dev or chrome://tracing)\n";
  return kExitOk;
}

}  // namespace

}  // namespace alpa
