#include "alpa/compile/compile.h"

#include <chrono>
#include <cmath>

#include "alpa/cost/mesh_links.h"
#include "alpa/inter/virtual_stages.h"
#include "alpa/plan/plan.h"
#include "alpa/program/verify.h"
#include "alpa/spmd/build_program.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

// Runs one named phase and records its time.
template <typename F>
auto phase(Compiled& c, const char* name, F&& f) {
  const Clock::time_point t0 = Clock::now();
  auto result = f();
  c.phases.push_back({name, std::chrono::duration<double>(Clock::now() - t0).count()});
  return result;
}

// The pipeline planner's options for this compilation: the memory per device and the
// micro-batch count from the compile options, each stage's budget left to the planner.
PipelinePlannerOptions planner_options(const ModelSpec& model, const CompileOptions& o) {
  PipelinePlannerOptions po = o.planner;
  po.micro_batches = o.micro_batches;
  po.batch = model.batch;
  po.memory_per_device = o.sharding.memory_budget_bytes;
  po.sharding = o.sharding;
  po.sharding.memory_budget_bytes = 0;
  po.progress = o.progress;
  // Wide-ResNet: one layer per residual block, as Alpa's benchmark suite clusters it (the
  // automatic count keeps 2 layers: cutting inside its early, activation-heavy blocks moves
  // more bytes than the 2-layer cut, so no finer clustering qualifies).
  if (po.num_layers == 0 && model.family == ModelFamily::kWResNet) {
    int blocks = 0;
    for (int64_t b : model.wresnet.blocks) blocks += static_cast<int>(b);
    po.num_layers = blocks;
  }
  return po;
}

// The program's own record of where it came from and what it is predicted to take.
void describe(Compiled& c, const ModelSpec& model) {
  c.program.model = model.name;
  c.program.step_fingerprint = graph_fingerprint(c.step.graph);
  if (c.sim) c.program.predicted_step_time_s = c.sim->step_time_s;
}

Status verify_and_simulate(Compiled& c, const CompileOptions& o) {
  ALPA_RETURN_IF_ERROR(phase(c, "verify", [&] { return verify_program(c.program); }));
  if (!o.simulate || c.sim) return ok_status();
  ALPA_ASSIGN_OR_RETURN(SimReport sim,
                        phase(c, "simulate", [&] { return simulate(c.program, c.cluster); }));
  c.sim = std::move(sim);
  return ok_status();
}

// Phases 2-6 on one mesh for c.step (built already).
Status compile_mesh_step(Compiled& c, const CompileOptions& o) {
  ShardingPlan plan;
  plan.mesh = o.mesh;
  if (o.mesh.size() > 1 || o.plan_one_device) {
    ALPA_ASSIGN_OR_RETURN(MeshLinks links, mesh_links(c.cluster, o.mesh));
    AutoShardingOptions so = o.sharding;
    so.resolve_partials_once = true;
    if (o.search_mesh && o.mesh.size() > 1) {
      ALPA_ASSIGN_OR_RETURN(MeshSearchResult found, phase(c, "plan", [&] {
                              return search_mesh_plan(c.step.graph, links, c.cluster.device, so,
                                                      o.mesh_search);
                            }));
      plan = std::move(found.plan);
      found.plan = ShardingPlan{};
      c.mesh_search = std::move(found);
    } else {
      ALPA_ASSIGN_OR_RETURN(plan, phase(c, "plan", [&] {
                              return auto_shard(c.step.graph, links, c.cluster.device, so);
                            }));
    }
    c.mesh_plan = plan;
  }
  ALPA_ASSIGN_OR_RETURN(c.program, phase(c, "lower", [&] {
                          return build_mesh_program(c.step.graph, plan,
                                                    PlacedMesh::contiguous(o.mesh, 0));
                        }));
  if (c.mesh_plan) c.program.predicted_step_time_s = plan.compute_s + plan.communication_s;
  return verify_and_simulate(c, o);
}

Result<Compiled> compile_mesh(const ModelSpec& model, Compiled c, const CompileOptions& o) {
  c.micro_batches = std::max(1, o.micro_batches);
  ALPA_ASSIGN_OR_RETURN(c.step, phase(c, "model step", [&] {
                          return training_step(model, o.optimizer, c.micro_batches);
                        }));
  ALPA_RETURN_IF_ERROR(compile_mesh_step(c, o));
  describe(c, model);
  return c;
}

// The cluster sized to `devices` (a program's span checked first).
Result<Cluster> program_cluster(const Cluster& cluster, int devices) {
  if (devices < 1 || devices > kMaxProgramDevices)
    return invalid_argument(
        cat("a program spans 1 to ", kMaxProgramDevices, " devices, got ", devices),
        "plan for fewer devices: alpa-cpp plans and runs up to this many");
  Result<Cluster> sized = with_devices(cluster, devices);
  if (!sized.ok())
    return sized.status().with_context(
        cat("cluster '", cluster.name, "' for ", devices, " device", devices == 1 ? "" : "s"));
  return sized;
}

// Stages planned by the pipeline planner and chosen among by simulation.
Result<Compiled> compile_checked(const ModelSpec& model, Compiled c, const CompileOptions& o) {
  ALPA_ASSIGN_OR_RETURN(CheckedPipelinePlan r, phase(c, "plan", [&] {
                          return plan_pipeline_checked(model, o.optimizer, c.cluster,
                                                       planner_options(model, o), o.schedule);
                        }));
  c.micro_batches = r.plan.micro_batches;
  c.step = std::move(r.step);
  c.program = std::move(r.program);
  c.sim = std::move(r.sim);
  CompiledPipeline p;
  p.plan = std::move(r.plan);
  p.stages = std::move(r.pipeline);
  p.candidates = std::move(r.simulated);
  p.plan_rounds = r.rounds;
  p.planner_memory = r.planner_memory;
  c.pipeline = std::move(p);
  ALPA_RETURN_IF_ERROR(verify_and_simulate(c, o));
  describe(c, model);
  return c;
}

int virtual_stages_of(const CompileOptions& o) {
  return o.virtual_stages > 0 ? o.virtual_stages : kDefaultVirtualStages;
}

double device_memory(const Compiled& c, const CompileOptions& o) {
  return o.sharding.memory_budget_bytes > 0 ? o.sharding.memory_budget_bytes
                                            : c.cluster.device.memory_bytes;
}

// The stages to plan and compile first: one per mesh (the stage DP's), under 1F1B when the
// interleaved schedule or the schedule search follows.
CompileOptions stage_options_for(const CompileOptions& o, bool given_interleaved) {
  CompileOptions staged = o;
  if ((o.schedule == ScheduleKind::kInterleaved1F1B && !given_interleaved) || o.choose_schedule)
    staged.schedule = ScheduleKind::k1F1B;
  return staged;
}

struct Scheduled {
  ScheduleCandidate candidate;
  Status why_not = ok_status();  // the user error behind candidate.not_possible
  PipelinePlan plan;
  MaterializedPipeline stages;
  Program program;
  SimReport sim;
};

// The compiled pipeline's stages (one per mesh) under `kind` with v stages per mesh: re-cut
// (v > 1), materialized, lowered and simulated. A schedule the stages cannot take comes back
// with candidate.not_possible set.
Result<Scheduled> schedule_stages(const Compiled& c, const CompileOptions& o, ScheduleKind kind,
                                  int v) {
  const CompiledPipeline& p = *c.pipeline;
  Scheduled r;
  r.candidate.schedule = kind;
  r.candidate.virtual_stages = v;
  const int S = static_cast<int>(p.plan.stages.size());
  const int B = p.plan.micro_batches;
  if (Status sizes = check_schedule_sizes(kind, S, B, v); !sizes.ok()) {
    r.candidate.not_possible = sizes.message();
    r.why_not = sizes;
    return r;
  }
  if (v == 1) {
    r.plan = p.plan;
    r.stages = p.stages;
  } else {
    Result<PipelinePlan> cut = interleave_plan(c.step, p.plan, v);
    if (!cut.ok()) {
      if (cut.status().code() != StatusCode::kFailedPrecondition) return cut.status();
      r.candidate.not_possible = cut.status().message();
      r.why_not = cut.status();
      return r;
    }
    r.plan = std::move(*cut);
    ALPA_ASSIGN_OR_RETURN(r.stages, materialize_pipeline(c.step, r.plan, c.cluster, o.sharding));
    r.stages.predicted_step_time_s = interleaved_step_time(r.stages.stages, S, B);
  }
  ALPA_ASSIGN_OR_RETURN(r.program, pipeline_program(c.step, r.stages, kind, B));
  ALPA_ASSIGN_OR_RETURN(r.sim, simulate(r.program, c.cluster));
  r.candidate.step_time_s = r.sim.step_time_s;
  r.candidate.peak_memory_bytes = r.sim.peak_memory_bytes();
  r.candidate.bubble_fraction = r.sim.bubble_fraction;
  return r;
}

void adopt(Compiled& c, Scheduled&& s) {
  CompiledPipeline& p = *c.pipeline;
  p.plan = std::move(s.plan);
  p.stages = std::move(s.stages);
  p.schedule = s.candidate.schedule;
  p.virtual_stages = s.candidate.virtual_stages;
  c.program = std::move(s.program);
  c.program.predicted_step_time_s = s.sim.step_time_s;
  c.sim = std::move(s.sim);
}

// After the stages are compiled one per mesh: the interleaved schedule re-cuts them; --schedule
// auto simulates every schedule on them and keeps the fastest that fits (ties: less memory).
Status finish_schedule(Compiled& c, const CompileOptions& o) {
  CompiledPipeline& p = *c.pipeline;
  ALPA_ASSIGN_OR_RETURN(const PlanMeshes pm, plan_meshes(p.plan));
  p.virtual_stages = pm.virtual_stages;
  p.schedule = pm.virtual_stages > 1 ? ScheduleKind::kInterleaved1F1B : o.schedule;
  if (pm.virtual_stages > 1) return ok_status();  // given interleaved
  if (!o.choose_schedule) {
    if (o.schedule != ScheduleKind::kInterleaved1F1B) return ok_status();
    ALPA_ASSIGN_OR_RETURN(Scheduled s, phase(c, "schedule", [&] {
                            return schedule_stages(c, o, o.schedule, virtual_stages_of(o));
                          }));
    if (!s.why_not.ok()) return s.why_not;
    p.schedules.push_back(s.candidate);
    adopt(c, std::move(s));
    return ok_status();
  }
  const double memory = device_memory(c, o);
  std::optional<Scheduled> best;
  auto better = [&](const Scheduled& a, const Scheduled& b) {
    const bool fa = a.candidate.peak_memory_bytes <= memory;
    const bool fb = b.candidate.peak_memory_bytes <= memory;
    if (fa != fb) return fa;
    if (!fa) return a.candidate.peak_memory_bytes < b.candidate.peak_memory_bytes;
    const double ta = a.candidate.step_time_s, tb = b.candidate.step_time_s;
    if (std::abs(ta - tb) > 1e-6 * std::max(ta, tb)) return ta < tb;
    return a.candidate.peak_memory_bytes < b.candidate.peak_memory_bytes;
  };
  const int S = pm.meshes;
  std::vector<std::pair<ScheduleKind, int>> tries = {{ScheduleKind::k1F1B, 1},
                                                     {ScheduleKind::kGPipe, 1}};
  if (o.virtual_stages > 0)
    tries.push_back({ScheduleKind::kInterleaved1F1B, o.virtual_stages});
  else
    for (int v : {2, 4, 8}) tries.push_back({ScheduleKind::kInterleaved1F1B, v});
  const Clock::time_point t0 = Clock::now();
  for (const auto& [kind, v] : tries) {
    Scheduled s;
    if (kind == ScheduleKind::kInterleaved1F1B && S == 1) {
      s.candidate.schedule = kind;
      s.candidate.virtual_stages = v;
      s.candidate.not_possible = "one mesh: no bubble to shrink";
    } else {
      if (o.progress) o.progress(cat(" schedule ", schedule_name(kind), v > 1 ? cat(" x", v) : ""));
      ALPA_ASSIGN_OR_RETURN(s, schedule_stages(c, o, kind, v));
    }
    p.schedules.push_back(s.candidate);
    if (!s.candidate.not_possible.empty()) {
      // More virtual stages need more cuts, with the same micro-batches.
      if (kind == ScheduleKind::kInterleaved1F1B) break;
      continue;
    }
    if (!best || better(s, *best)) best = std::move(s);
  }
  c.phases.push_back({"schedule", std::chrono::duration<double>(Clock::now() - t0).count()});
  if (!best) return internal_error("--schedule auto: no schedule could be simulated");
  ALPA_RETURN_IF_ERROR(verify_program(best->program));
  adopt(c, std::move(*best));
  return ok_status();
}

}  // namespace

double Compiled::phase_seconds(std::string_view name) const {
  double s = 0;
  for (const CompilePhase& p : phases)
    if (p.name == name) s += p.seconds;
  return s;
}

Result<Cluster> sized_cluster(const std::string& preset_or_path, int devices) {
  ALPA_ASSIGN_OR_RETURN(Cluster base, load_cluster(preset_or_path));
  Result<Cluster> sized = with_devices(base, devices);
  if (!sized.ok())
    return sized.status().with_context(
        cat("cluster '", base.name, "' for ", devices, " device", devices == 1 ? "" : "s"));
  return sized;
}

Result<Compiled> compile_stages(TrainStep step, PipelinePlan plan, const Cluster& cluster,
                                const CompileOptions& o, const StageOptionsHook& stage_options) {
  Compiled c;
  c.cluster = cluster;
  c.micro_batches = plan.micro_batches;
  CompiledPipeline p;
  ALPA_ASSIGN_OR_RETURN(p.stages, phase(c, "materialize", [&] {
                          return materialize_pipeline(step, plan, cluster, o.sharding,
                                                      stage_options);
                        }));
  ALPA_ASSIGN_OR_RETURN(c.program, phase(c, "lower", [&] {
                          return pipeline_program(step, p.stages, o.schedule, plan.micro_batches);
                        }));
  p.schedule = o.schedule;
  if (Result<PlanMeshes> pm = plan_meshes(plan); pm.ok() && pm->virtual_stages > 1) {
    p.virtual_stages = pm->virtual_stages;
    p.stages.predicted_step_time_s =
        interleaved_step_time(p.stages.stages, pm->meshes, plan.micro_batches);
  }
  c.program.predicted_step_time_s = p.stages.predicted_step_time_s;
  c.step = std::move(step);
  p.plan = std::move(plan);
  c.pipeline = std::move(p);
  ALPA_RETURN_IF_ERROR(verify_and_simulate(c, o));
  c.program.step_fingerprint = graph_fingerprint(c.step.graph);
  if (c.sim) c.program.predicted_step_time_s = c.sim->step_time_s;
  return c;
}

Result<Compiled> compile_step(TrainStep step, const Cluster& cluster, const CompileOptions& o) {
  const Clock::time_point t0 = Clock::now();
  if (o.pipeline)
    return invalid_argument("a built step compiles for one mesh, not a pipeline",
                            "give a mesh (CompileOptions::mesh)");
  Compiled c;
  ALPA_ASSIGN_OR_RETURN(c.cluster, program_cluster(cluster, static_cast<int>(o.mesh.size())));
  c.micro_batches = step.micro_batches;
  c.step = std::move(step);
  ALPA_RETURN_IF_ERROR(compile_mesh_step(c, o));
  c.program.model = c.step.graph.name();
  c.program.step_fingerprint = graph_fingerprint(c.step.graph);
  if (c.sim) c.program.predicted_step_time_s = c.sim->step_time_s;
  c.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return c;
}

Result<Compiled> compile(const ModelSpec& model, const Cluster& cluster, const CompileOptions& o) {
  const Clock::time_point t0 = Clock::now();
  const int devices = o.pipeline ? o.devices : static_cast<int>(o.mesh.size());
  Compiled c;
  ALPA_ASSIGN_OR_RETURN(c.cluster, program_cluster(cluster, devices));
  if (o.micro_batches < 0)
    return invalid_argument(cat("--micro-batches must be >= 1, got ", o.micro_batches));
  Result<Compiled> out = [&]() -> Result<Compiled> {
    if (!o.pipeline) return compile_mesh(model, std::move(c), o);
    bool given_interleaved = false;
    if (o.stages) {
      ALPA_ASSIGN_OR_RETURN(const PlanMeshes pm, plan_meshes(*o.stages));
      given_interleaved = pm.virtual_stages > 1;
      if (given_interleaved && o.choose_schedule)
        return invalid_argument(
            "--schedule auto re-times one stage per mesh, and the plan file's "
            "stages are interleaved already",
            "give --schedule interleaved (the file's), or a plan file with "
            "one stage per mesh");
    }
    const CompileOptions staged = stage_options_for(o, given_interleaved);
    if (!o.stages && o.check_by_simulation) {
      ALPA_ASSIGN_OR_RETURN(Compiled checked, compile_checked(model, std::move(c), staged));
      ALPA_RETURN_IF_ERROR(finish_schedule(checked, o));
      describe(checked, model);
      return checked;
    }
    PipelinePlan plan;
    if (o.stages) {
      plan = *o.stages;
    } else {
      ALPA_ASSIGN_OR_RETURN(plan, phase(c, "plan", [&] {
                              return plan_pipeline(model, o.optimizer, c.cluster,
                                                   planner_options(model, o));
                            }));
    }
    ALPA_ASSIGN_OR_RETURN(TrainStep step, phase(c, "model step", [&] {
                            return micro_batch_step(model, o.optimizer, plan.micro_batches);
                          }));
    if (o.stages && !o.stages_fingerprint.empty() &&
        o.stages_fingerprint != graph_fingerprint(step.graph))
      return failed_precondition(
          "the plan file was made for a different training graph (model, sizes, optimizer or "
          "micro-batches differ)",
          "re-plan with `alpa plan ... --gpus N --out plan.json`, or delete "
          "\"graph_fingerprint\"");
    if (plan.layers.layer_of.empty()) {
      ALPA_ASSIGN_OR_RETURN(plan.layers, plan_layers(step, plan));
    }
    // The interleaved schedule alone (no search): re-cut before the one materialization.
    CompileOptions run = staged;
    if (o.schedule == ScheduleKind::kInterleaved1F1B && !o.choose_schedule && !given_interleaved) {
      ALPA_ASSIGN_OR_RETURN(const PlanMeshes pm, plan_meshes(plan));
      const int v = virtual_stages_of(o);
      ALPA_RETURN_IF_ERROR(check_schedule_sizes(o.schedule, pm.meshes, plan.micro_batches, v));
      ALPA_ASSIGN_OR_RETURN(plan, interleave_plan(step, plan, v));
      run.schedule = o.schedule;
    }
    std::vector<CompilePhase> before = std::move(c.phases);
    ALPA_ASSIGN_OR_RETURN(Compiled staged_c,
                          compile_stages(std::move(step), std::move(plan), c.cluster, run));
    before.insert(before.end(), staged_c.phases.begin(), staged_c.phases.end());
    staged_c.phases = std::move(before);
    ALPA_RETURN_IF_ERROR(finish_schedule(staged_c, o));
    describe(staged_c, model);
    return staged_c;
  }();
  if (!out.ok()) return out;
  out->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace alpa
