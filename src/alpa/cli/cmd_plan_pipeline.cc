// alpa plan --gpus N: the inter-op pass — pipeline stages over layer ranges, their submeshes
// and logical meshes, each stage's intra-op plan, and the micro-batch count — explained.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>

#include <nlohmann/json.hpp>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/progress.h"
#include "alpa/cluster/cluster.h"
#include "alpa/compile/compile.h"
#include "alpa/ir/analysis.h"
#include "alpa/plan/plan.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

// Weight groups of a stage ("h*.attn.wq" -> layout, count), in first-seen order.
struct StageWeights {
  std::vector<std::string> order;
  std::map<std::string, std::pair<std::string, int>> layout;  // group -> (layout, count)
};

StageWeights stage_weights(const StageGraph& sg, const ShardingPlan& p) {
  StageWeights w;
  for (ValueId v : sg.owned) {
    const Node& n = sg.graph.node(v);
    if (n.attr<ParameterAttrs>().role != ParamRole::kWeight) continue;
    const std::string g = weight_group_name(n.name);
    const std::string spec = p.specs[v].canonical(p.mesh).to_string();
    auto it = w.layout.find(g);
    if (it == w.layout.end()) {
      w.order.push_back(g);
      w.layout[g] = {spec, 1};
    } else {
      if (it->second.first != spec) it->second.first = "mixed";
      ++it->second.second;
    }
  }
  return w;
}

std::string device_range(int first, int64_t count) {
  return count == 1 ? cat("device ", first) : cat("devices ", first, "-", first + count - 1);
}

}  // namespace

Result<Compiled> compile_for_plan(const PlanFlags& flags, const ModelSpec& spec,
                                  const CompileSetup& setup) {
  CompileOptions o = setup.options;
  o.plan_one_device = true;
  return compile_with_progress(flags.json, spec, setup.cluster, o);
}

Result<Compiled> compile_with_progress(bool json, const ModelSpec& spec, const std::string& cluster,
                                       CompileOptions o) {
  ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(cluster));
  // Progress on a terminal: one line, rewritten in place.
  const bool tty = !json && stderr_is_terminal();
  if (tty)
    o.progress = [](const std::string& line) {
      std::fprintf(stderr, "\rplanning:%s\x1b[K", line.c_str());
      std::fflush(stderr);
    };
  Result<Compiled> c = compile(spec, base, o);
  if (tty) std::fprintf(stderr, "\r\x1b[K");
  return c;
}

namespace {

// What the report of a compiled pipeline shows, derived once.
struct PipelineReport {
  const ModelSpec& spec;
  const CompileSetup& setup;
  const Compiled& compiled;
  bool checked = false;  // planned here (not a plan file): chosen by simulating the candidates
  int S = 0;
  double step_s = 0, device_memory = 0, peak = 0, samples_per_s = 0, tflops = 0;
  std::string schedule;    // the program's (--schedule auto: the one chosen)
  int virtual_stages = 1;  // interleaved: stages per mesh
};

PipelineReport pipeline_report(const ModelSpec& spec, const CompileSetup& setup,
                               const Compiled& compiled) {
  PipelineReport r{spec, setup, compiled, false, 0, 0, 0, 0, 0, 0, "", 1};
  const ResolvedPipeline& pipe = setup.pipe;
  const MaterializedPipeline& m = compiled.pipeline->stages;
  r.checked = !pipe.plan;
  r.S = static_cast<int>(m.stages.size());
  r.step_s = m.predicted_step_time_s;
  const double flops = graph_flops(compiled.step.graph) * compiled.pipeline->plan.micro_batches;
  r.device_memory = pipe.sharding.memory_budget_bytes > 0 ? pipe.sharding.memory_budget_bytes
                                                          : compiled.cluster.device.memory_bytes;
  for (const PlannedStage& ps : m.stages) r.peak = std::max(r.peak, ps.peak_memory_bytes);
  r.samples_per_s = r.step_s > 0 ? static_cast<double>(spec.batch) / r.step_s : 0;
  r.tflops = r.step_s > 0 ? flops / pipe.devices / r.step_s / 1e12 : 0;
  r.schedule = std::string(schedule_name(compiled.pipeline->schedule));
  r.virtual_stages = compiled.pipeline->virtual_stages;
  // A mesh of an interleaved pipeline holds several stages: its peak is the simulated one
  // (the planner's figures are per stage).
  if (r.virtual_stages > 1 && compiled.sim) r.peak = compiled.sim->peak_memory_bytes();
  return r;
}

// The plan as a file a person can edit: its stages with their weights' layouts.
Status save_pipeline_plan(const PipelineReport& r, const std::string& path) {
  const ResolvedPipeline& pipe = r.setup.pipe;
  const TrainStep* step = &r.compiled.step;
  const MaterializedPipeline* m = &r.compiled.pipeline->stages;
  PipelinePlan saved = r.compiled.pipeline->plan;
  saved.stages = m->stages;
  saved.predicted_step_time_s = r.step_s;
  for (int s = 0; s < r.S; ++s) {
    // The stage's weight layouts, as constraints a person can edit.
    const StageGraph& sg = m->graphs[s];
    saved.stages[s].layouts.clear();
    for (ValueId v : sg.owned)
      if (sg.graph.node(v).attr<ParameterAttrs>().role == ParamRole::kWeight)
        saved.stages[s].layouts[value_ref(step->graph, sg.source[v])] =
            m->plans[s].specs[v].canonical(m->plans[s].mesh);
  }
  Plan file = plan_from_pipeline(saved, r.spec.name, r.setup.cluster, pipe.devices, r.schedule,
                                 graph_fingerprint(step->graph));
  file.options = pipe.sharding.sharding;
  file.memory_budget_bytes = pipe.sharding.memory_budget_bytes;
  return save_plan(file, path);
}

// The simulated peak's parts of stage s in the simulation that chose the plan (null when it
// was not simulated, and for an interleaved plan, whose simulated stages are meshes of several
// planned stages).
const MemoryBreakdown* simulated_memory(const PipelineReport& r, int s) {
  if (!r.checked || !r.compiled.sim || s >= static_cast<int>(r.compiled.sim->stages.size()) ||
      r.virtual_stages > 1)
    return nullptr;
  return &r.compiled.sim->stages[static_cast<size_t>(s)].peak_breakdown;
}

nlohmann::ordered_json memory_parts_json(const MemoryBreakdown& m) {
  return {{"peak_bytes", m.total()},
          {"weights_bytes", m.weights},
          {"accumulators_bytes", m.accumulators},
          {"stash_bytes_per_micro_batch", m.stash_per_micro_batch},
          {"micro_batches_in_flight", m.in_flight},
          {"working_bytes", m.working}};
}

nlohmann::ordered_json pipeline_plan_json(const PipelineReport& r, const std::string& out_path) {
  const ResolvedPipeline& pipe = r.setup.pipe;
  const CompiledPipeline& run = *r.compiled.pipeline;
  const PipelinePlan& plan = run.plan;
  const MaterializedPipeline* m = &run.stages;
  const ModelSpec& spec = r.spec;
  const double device_memory = r.device_memory, peak = r.peak;
  nlohmann::ordered_json j;
  j["command"] = "plan";
  j["model"] = spec.name;
  j["cluster"] = r.compiled.cluster.name;
  j["devices"] = pipe.devices;
  j["batch"] = spec.batch;
  j["micro_batches"] = plan.micro_batches;
  j["micro_batch_size"] = spec.batch / plan.micro_batches;
  j["schedule"] = r.schedule;
  if (r.virtual_stages > 1) j["virtual_stages"] = r.virtual_stages;
  if (!run.schedules.empty()) {
    // --schedule auto (or interleaved): the schedules simulated on the planned meshes.
    nlohmann::ordered_json tried = nlohmann::ordered_json::array();
    for (const ScheduleCandidate& c : run.schedules) {
      nlohmann::ordered_json x = {{"schedule", schedule_name(c.schedule)},
                                  {"virtual_stages", c.virtual_stages}};
      if (!c.not_possible.empty()) {
        x["not_possible"] = c.not_possible;
      } else {
        x["step_time_s"] = c.step_time_s;
        x["bubble_fraction"] = c.bubble_fraction;
        x["peak_memory_bytes"] = c.peak_memory_bytes;
        x["fits_memory"] = c.peak_memory_bytes <= device_memory;
        x["chosen"] = c.schedule == run.schedule && c.virtual_stages == run.virtual_stages;
      }
      tried.push_back(std::move(x));
    }
    j["schedule_candidates"] = tried;
  }
  j["pipeline"] = pipe.source;
  j["layers"] = plan.layers.num_layers;
  j["predicted_step_time_s"] = r.step_s;
  if (r.checked && r.compiled.sim) {
    // The plan was chosen by simulating the programs (compile/checked.h).
    j["simulated_step_time_s"] = r.compiled.sim->step_time_s;
    j["simulated_peak_memory_bytes"] = r.compiled.sim->peak_memory_bytes();
    j["plan_rounds"] = run.plan_rounds;
    nlohmann::ordered_json cands = nlohmann::ordered_json::array();
    for (const SimulatedCandidate& c : run.candidates)
      cands.push_back({{"micro_batches", c.micro_batches},
                       {"stages", c.stages},
                       {"step_time_s", c.step_time_s},
                       {"peak_memory_bytes", c.peak_memory_bytes},
                       {"fits_memory", c.peak_memory_bytes <= device_memory}});
    j["simulated_candidates"] = cands;
  }
  j["samples_per_s"] = r.samples_per_s;
  j["tflops_per_device"] = r.tflops;
  j["peak_memory_bytes"] = peak;
  j["device_memory_bytes"] = device_memory;
  j["fits_memory"] = peak <= device_memory;
  j["planning_time_s"] = plan.total_s;
  j["compile_phases"] = compile_phases_json(r.compiled);
  j["planning"] = {{"clustering_s", plan.clustering_s},
                   {"stage_costs_s", plan.stage_costs_s},
                   {"dp_s", plan.dp_s},
                   {"verify_s", plan.verify_s},
                   {"balance_s", plan.balance_s},
                   {"balanced_within_layers", plan.balance_rounds > 0},
                   {"candidates", plan.candidates},
                   {"intra_solves", plan.intra_solves},
                   {"cache_hits", plan.cache_hits},
                   {"extrapolated", plan.extrapolated},
                   {"reused_across_counts", plan.reused_across_counts},
                   {"pruned", plan.pruned},
                   {"slower", plan.slower}};
  nlohmann::ordered_json search = nlohmann::ordered_json::array();
  for (const auto& [b, t] : plan.micro_batch_search) {
    search.push_back({{"micro_batches", b},
                      {"step_time_s", std::isfinite(t) ? nlohmann::ordered_json(t)
                                                       : nlohmann::ordered_json(nullptr)}});
    if (auto why = plan.micro_batch_rejections.find(b); why != plan.micro_batch_rejections.end())
      search.back()["rejected"] = why->second;
  }
  j["micro_batch_search"] = search;
  nlohmann::ordered_json stages = nlohmann::ordered_json::array();
  for (int s = 0; s < r.S; ++s) {
    const PlannedStage& ps = m->stages[s];
    const StageWeights w = stage_weights(m->graphs[s], m->plans[s]);
    nlohmann::ordered_json weights = nlohmann::ordered_json::object();
    for (const std::string& g : w.order) weights[g] = w.layout.at(g).first;
    stages.push_back({{"index", s},
                      {"mesh", s % (r.S / r.virtual_stages)},
                      {"layers", {ps.first_layer, ps.last_layer}},
                      {"submesh", ps.submesh.to_string()},
                      {"first_device", ps.first_device},
                      {"devices", ps.logical.shape[0] * ps.logical.shape[1]},
                      {"logical_mesh", {ps.logical.shape[0], ps.logical.shape[1]}},
                      {"batch_axis", ps.logical.batch_axis == LogicalMeshChoice::kUnforced
                                         ? nlohmann::ordered_json("auto")
                                         : nlohmann::ordered_json(ps.logical.batch_axis)},
                      {"time_per_micro_batch_s", ps.time_s},
                      {"compute_s", ps.compute_s},
                      {"communication_s", ps.communication_s},
                      {"transfer_s", ps.transfer_s},
                      {"peak_memory_bytes", ps.peak_memory_bytes},
                      {"stash_bytes_per_micro_batch", ps.stash_bytes},
                      {"remat", remat_name(ps.remat)},
                      {"full_remat_layers", ps.full_remat_layers},
                      {"memory", stage_memory_json(&ps.memory, simulated_memory(r, s))},
                      {"weights", weights}});
  }
  j["stages"] = stages;
  if (!out_path.empty()) j["out"] = out_path;
  return j;
}

void print_pipeline_plan(const PipelineReport& r, std::ostream& out) {
  const ResolvedPipeline& pipe = r.setup.pipe;
  const Cluster* cluster = &r.compiled.cluster;
  const CompiledPipeline& run = *r.compiled.pipeline;
  const PipelinePlan& plan = run.plan;
  const MaterializedPipeline* m = &run.stages;
  const ModelSpec& spec = r.spec;
  const double device_memory = r.device_memory, peak = r.peak;
  out << "alpa plan: " << spec.name << " ("
      << format_count_short(graph_stats(r.compiled.step.graph).parameters) << " parameters), batch "
      << spec.batch << ", on " << pipe.devices << " x " << cluster->device.name << " ("
      << cluster->name << ", " << cluster->hosts << " host" << (cluster->hosts > 1 ? "s" : "")
      << "), pipeline: " << pipe.source << "\n";
  if (!pipe.plan) {
    out << "  planned in " << format_seconds(plan.total_s)
        << (plan.micro_batch_search.size() > 1
                ? cat(" (", plan.micro_batch_search.size(),
                      " micro-batch counts, several at once; phases summed over them)")
                : std::string())
        << ": layer clustering " << format_seconds(plan.clustering_s) << ", stage costs "
        << format_seconds(plan.stage_costs_s) << " (" << plan.candidates << " candidates, "
        << plan.intra_solves << " intra-op solves, " << plan.cache_hits << " reused, "
        << plan.extrapolated << " extrapolated from shorter runs of repeated layers, "
        << plan.reused_across_counts << " costed by another micro-batch count's layouts, "
        << plan.pruned << " skipped as holding a range too large alone, " << plan.slower
        << " as too slow to beat another micro-batch count), stage DP " << format_seconds(plan.dp_s)
        << ", exact check of the chosen stages " << format_seconds(plan.verify_s)
        << ", balancing stage boundaries " << format_seconds(plan.balance_s) << "\n";
    if (plan.micro_batch_search.size() > 1) {
      out << "  micro-batches tried:";
      for (const auto& [b, t] : plan.micro_batch_search)
        out << " " << b << " -> " << (std::isfinite(t) ? format_seconds(t) : "rejected")
            << (b == plan.micro_batches ? " (chosen)" : "") << ";";
      out << "\n";
      for (const auto& [b, why] : plan.micro_batch_rejections)
        out << "    " << b << " micro-batches: " << why << "\n";
    }
  }
  out << "  compiled in " << compile_phases_text(r.compiled) << "\n";
  out << "\nlayers: " << plan.layers.num_layers
      << " clusters of the forward operators (largest tensor between layers "
      << format_bytes(plan.layers.max_cross_bytes) << ")"
      << (plan.balance_rounds > 0
              ? "; one per stage: the stage DP's boundaries moved between heavy operators to "
                "balance the stages' times"
              : "")
      << "\n"
      << "stages (" << r.schedule
      << (r.virtual_stages > 1
              ? cat(": ", r.virtual_stages, " per mesh, stage c on the devices of stage c mod ",
                    r.S / r.virtual_stages)
              : std::string())
      << ", " << plan.micro_batches << " micro-batches of " << spec.batch / plan.micro_batches
      << "):\n";
  for (int s = 0; s < r.S; ++s) {
    const PlannedStage& ps = m->stages[s];
    const int64_t n = ps.logical.shape[0] * ps.logical.shape[1];
    out << "  stage " << s << ": layers " << ps.first_layer << "-" << ps.last_layer << ", submesh "
        << ps.submesh.to_string() << " (" << device_range(ps.first_device, n) << "), logical mesh "
        << ps.logical.to_string() << "\n"
        << "    " << format_seconds(ps.time_s) << " per micro-batch (compute "
        << format_seconds(ps.compute_s) << ", communication " << format_seconds(ps.communication_s)
        << ", receiving " << format_seconds(ps.transfer_s) << "), peak memory "
        << format_bytes(ps.peak_memory_bytes)
        << (ps.remat == RematMode::kNone && ps.full_remat_layers == 0
                ? ""
                : cat(", recomputes ", remat_text(ps)))
        << "\n";
    const StageWeights w = stage_weights(m->graphs[s], m->plans[s]);
    std::string line = "    weights:";
    for (const std::string& g : w.order) {
      const auto& [layout, count] = w.layout.at(g);
      line += cat(" ", g, count > 1 ? cat(" (", count, ")") : "", " ", layout, ",");
    }
    if (!w.order.empty()) line.pop_back();
    out << line << "\n";
  }
  out << "\npredicted per training step: " << format_seconds(r.step_s) << " ("
      << format_fixed(r.samples_per_s, 1) << " samples/s, " << format_fixed(r.tflops, 2)
      << " TFLOP/s per device)\n"
      << "peak memory per device: " << format_bytes(peak) << " of " << format_bytes(device_memory)
      << (peak <= device_memory ? "" : "  -- does NOT fit") << "\n";
  if (run.schedules.size() > 1) {
    out << "schedules simulated on these meshes (the fastest that fits wins):\n";
    for (const ScheduleCandidate& c : run.schedules) {
      out << "  " << schedule_name(c.schedule)
          << (c.virtual_stages > 1 ? cat(" x", c.virtual_stages) : std::string()) << ": ";
      if (!c.not_possible.empty()) {
        out << "not possible (" << c.not_possible << ")\n";
        continue;
      }
      out << format_seconds(c.step_time_s) << ", bubble "
          << format_fixed(100 * c.bubble_fraction, 1) << "%, peak "
          << format_bytes(c.peak_memory_bytes)
          << (c.peak_memory_bytes <= device_memory ? "" : " (does not fit)")
          << (c.schedule == run.schedule && c.virtual_stages == run.virtual_stages ? "  (chosen)"
                                                                                   : "")
          << "\n";
    }
  }
  if (r.checked && r.compiled.sim) {
    out << "simulated (the instruction lists on the cluster model, which chose this plan): "
        << format_seconds(r.compiled.sim->step_time_s)
        << " per step (`alpa simulate` for details)\n";
    out << "plans simulated (the fastest that fits wins"
        << (run.schedules.empty() ? "" : "; one stage per mesh, before the schedule was chosen")
        << "):\n";
    for (const SimulatedCandidate& c : run.candidates)
      out << "  " << c.stages << " stage(s), " << c.micro_batches
          << " micro-batches: " << format_seconds(c.step_time_s) << ", peak "
          << format_bytes(c.peak_memory_bytes)
          << (c.peak_memory_bytes <= device_memory ? "" : " (does not fit)") << "\n";
  }
}

}  // namespace

nlohmann::ordered_json stage_memory_json(const MemoryBreakdown* planned,
                                         const MemoryBreakdown* simulated) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  if (planned) j["planned"] = memory_parts_json(*planned);
  if (simulated) j["simulated"] = memory_parts_json(*simulated);
  return j;
}

int run_plan_pipeline(const PlanFlags& flags, const ModelSpec& spec, const CompileSetup& setup,
                      const Compiled& compiled, std::ostream& out, std::ostream& err) {
  const PipelineReport r = pipeline_report(spec, setup, compiled);
  if (!flags.out_path.empty()) {
    Status s = save_pipeline_plan(r, flags.out_path);
    if (!s.ok()) return report_error(s, flags.json, out, err);
  }
  if (flags.json) {
    out << json_line(pipeline_plan_json(r, flags.out_path)) << "\n";
    return kExitOk;
  }
  print_pipeline_plan(r, out);
  if (!flags.out_path.empty()) out << "\nwrote " << flags.out_path << "\n";
  return kExitOk;
}

}  // namespace alpa
