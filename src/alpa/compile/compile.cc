#include "alpa/compile/compile.h"

#include <chrono>

#include "alpa/cost/mesh_links.h"
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

Result<Compiled> compile_mesh(const ModelSpec& model, Compiled c, const CompileOptions& o) {
  c.micro_batches = std::max(1, o.micro_batches);
  ALPA_ASSIGN_OR_RETURN(c.step, phase(c, "model step", [&] {
                          return training_step(model, o.optimizer, c.micro_batches);
                        }));
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
  ALPA_RETURN_IF_ERROR(verify_and_simulate(c, o));
  describe(c, model);
  return c;
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
  c.program.predicted_step_time_s = p.stages.predicted_step_time_s;
  c.step = std::move(step);
  p.plan = std::move(plan);
  c.pipeline = std::move(p);
  ALPA_RETURN_IF_ERROR(verify_and_simulate(c, o));
  c.program.step_fingerprint = graph_fingerprint(c.step.graph);
  if (c.sim) c.program.predicted_step_time_s = c.sim->step_time_s;
  return c;
}

Result<Compiled> compile(const ModelSpec& model, const Cluster& cluster, const CompileOptions& o) {
  const Clock::time_point t0 = Clock::now();
  const int devices = o.pipeline ? o.devices : static_cast<int>(o.mesh.size());
  if (devices < 1 || devices > kMaxProgramDevices)
    return invalid_argument(
        cat("a program spans 1 to ", kMaxProgramDevices, " devices, got ", devices),
        "plan for fewer devices: alpa-cpp plans and runs up to this many");
  if (o.micro_batches < 0)
    return invalid_argument(cat("--micro-batches must be >= 1, got ", o.micro_batches));
  Compiled c;
  Result<Cluster> sized = with_devices(cluster, devices);
  if (!sized.ok())
    return sized.status().with_context(
        cat("cluster '", cluster.name, "' for ", devices, " device", devices == 1 ? "" : "s"));
  c.cluster = std::move(*sized);
  Result<Compiled> out = [&]() -> Result<Compiled> {
    if (!o.pipeline) return compile_mesh(model, std::move(c), o);
    if (!o.stages && o.check_by_simulation) return compile_checked(model, std::move(c), o);
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
    std::vector<CompilePhase> before = std::move(c.phases);
    ALPA_ASSIGN_OR_RETURN(Compiled staged,
                          compile_stages(std::move(step), std::move(plan), c.cluster, o));
    before.insert(before.end(), staged.phases.begin(), staged.phases.end());
    staged.phases = std::move(before);
    describe(staged, model);
    return staged;
  }();
  if (!out.ok()) return out;
  out->seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return out;
}

}  // namespace alpa
