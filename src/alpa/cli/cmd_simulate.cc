// alpa simulate: a pipeline plan's training step run in simulated time on the cluster it was
// planned for — step time, throughput, bubble, memory per stage — and optionally its trace.
#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/ir/analysis.h"
#include "alpa/sim/simulator.h"

namespace alpa {

namespace {

// Megatron-LM's FLOP count of a GPT training step (Narayanan et al.; Alpa's
// compute_gpt_tflops): c·B·s·h²·l·(1 + s/(6h)) + 6·B·s·h·V with c = 72 (forward 24, backward
// 48; 96 with rematerialisation, which this runtime does not do).
double megatron_gpt_flops(const GptConfig& g, int64_t batch) {
  const double B = static_cast<double>(batch), s = static_cast<double>(g.seq),
               h = static_cast<double>(g.hidden), l = static_cast<double>(g.layers),
               V = static_cast<double>(g.vocab);
  return 72 * B * s * h * h * l * (1 + s / (6 * h)) + 6 * B * s * h * V;
}

}  // namespace

int run_simulate(const SimulateFlags& flags, std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  Result<ModelSpec> spec = resolve_model_flags(pf.model);
  if (!spec.ok()) return fail(spec.status());
  Result<ResolvedPipeline> pipe = resolve_pipeline(pf.parallel, "p3.16xlarge");
  if (!pipe.ok()) return fail(pipe.status());
  if (!pipe->enabled)
    return fail(invalid_argument(
        "alpa simulate runs a pipeline plan: give the number of devices or a plan file",
        "add --gpus N (planned as by `alpa plan --gpus N`), or --plan pipe.json"));
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  Result<PlannedPipelineRun> run = plan_pipeline_run(pf, *spec, *pipe);
  if (!run.ok()) return fail(run.status());
  const double plan_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<StagePlacement> placements;
  for (const auto& [shape, first] : run->m.placements) placements.push_back({shape, first});
  PipelineBuildOptions bo;
  bo.schedule = pipe->schedule;
  bo.micro_batches = run->plan.micro_batches;
  bo.cluster = &run->cluster;
  Result<PipelineProgram> prog =
      build_pipeline_program(run->step, run->m.split, run->m.graphs, run->m.plans, placements, bo);
  if (!prog.ok()) return fail(prog.status());
  const Clock::time_point t1 = Clock::now();
  Result<SimReport> sim = simulate_pipeline(*prog, run->cluster);
  if (!sim.ok()) return fail(sim.status());
  const double sim_s = std::chrono::duration<double>(Clock::now() - t1).count();

  const int devices = pipe->devices;
  const int B = run->plan.micro_batches;
  const double step_s = sim->step_time_s;
  const double graph_flops_step = graph_flops(run->step.graph) * B;
  const bool gpt = spec->family == ModelFamily::kGpt;
  const double megatron = gpt ? megatron_gpt_flops(spec->gpt, spec->batch) : 0;
  const double samples_per_s = static_cast<double>(spec->batch) / step_s;
  const double tflops_dev = (gpt ? megatron : graph_flops_step) / devices / step_s / 1e12;
  const double memory = run->cluster.device.memory_bytes;
  double peak = 0;
  for (const SimStage& s : sim->stages) peak = std::max(peak, s.peak_memory_bytes);
  const std::string schedule(schedule_name(pipe->schedule));
  if (!flags.trace_path.empty()) {
    Status s = write_chrome_trace(
        flags.trace_path, sim->events,
        cat("alpa simulate ", spec->name, " on ", devices, " x ", run->cluster.name));
    if (!s.ok()) return fail(s);
  }

  if (pf.json) {
    nlohmann::ordered_json j;
    j["command"] = "simulate";
    j["model"] = spec->name;
    j["cluster"] = run->cluster.name;
    j["devices"] = devices;
    j["micro_batches"] = B;
    j["schedule"] = schedule;
    j["step_time_s"] = step_s;
    j["planner_step_time_s"] = run->m.predicted_step_time_s;
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
    j["simulation_time_s"] = sim_s;
    j["instructions"] = sim->instructions;
    nlohmann::ordered_json stages = nlohmann::ordered_json::array();
    for (size_t s = 0; s < sim->stages.size(); ++s) {
      const SimStage& st = sim->stages[s];
      const PlannedStage& ps = run->m.stages[s];
      stages.push_back({{"layers", {ps.first_layer, ps.last_layer}},
                        {"first_device", st.first_device},
                        {"devices", st.devices},
                        {"logical_mesh", {ps.logical.shape[0], ps.logical.shape[1]}},
                        {"busy_s", st.busy_s},
                        {"compute_s", st.compute_s},
                        {"communication_s", st.communication_s},
                        {"owned_bytes", st.owned_bytes},
                        {"peak_memory_bytes", st.peak_memory_bytes},
                        {"peak_live_micro_batches", st.peak_live_micro_batches}});
    }
    j["stages"] = stages;
    if (!flags.trace_path.empty()) j["trace"] = flags.trace_path;
    out << j.dump() << "\n";
    return kExitOk;
  }
  out << "alpa simulate: " << spec->name << " on " << devices << " devices of "
      << run->cluster.name << ", batch " << spec->batch << " in " << B << " micro-batch"
      << (B > 1 ? "es" : "") << " (" << schedule << "), plan: " << pipe->source << " ("
      << format_seconds(plan_s) << ")\n";
  for (size_t s = 0; s < sim->stages.size(); ++s) {
    const SimStage& st = sim->stages[s];
    const PlannedStage& ps = run->m.stages[s];
    out << "  stage " << s << ": layers " << ps.first_layer << "-" << ps.last_layer << " on "
        << st.devices << " device" << (st.devices > 1 ? "s" : "") << " (from "
        << st.first_device << ", " << ps.logical.shape[0] << "x" << ps.logical.shape[1]
        << "): busy " << format_seconds(st.busy_s) << " (collectives "
        << format_seconds(st.communication_s) << "), peak memory "
        << format_bytes(st.peak_memory_bytes) << " of " << format_bytes(memory)
        << " (weights and state " << format_bytes(st.owned_bytes) << "), at most "
        << st.peak_live_micro_batches << " micro-batch" << (st.peak_live_micro_batches > 1 ? "es" : "")
        << " in flight\n";
  }
  out << "  step time   " << format_seconds(step_s) << " simulated (planner's estimate "
      << format_seconds(run->m.predicted_step_time_s) << "), bubble "
      << format_fixed(100 * sim->bubble_fraction, 1) << "%\n"
      << "  throughput  " << format_fixed(samples_per_s, 2) << " samples/s, "
      << format_fixed(tflops_dev * devices / 1e3, 3) << " PFLOPS ("
      << format_fixed(tflops_dev, 1) << " TFLOP/s per device, "
      << (gpt ? "Megatron formula without rematerialisation" : "the graph's FLOPs") << ")\n";
  if (peak > memory)
    out << "  memory      does not fit: " << format_bytes(peak) << " > " << format_bytes(memory)
        << " per device\n";
  if (!flags.trace_path.empty())
    out << "  trace       " << flags.trace_path << " (" << sim->events.size()
        << " events, each stage's first device; open in ui.perfetto.dev or chrome://tracing)\n";
  return kExitOk;
}

}  // namespace alpa
