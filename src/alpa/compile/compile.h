// compile: a model and a cluster in, an executable Program out — the one road from a model to
// what runs, read top to bottom like a lowering script (compile.cc):
//
//   1. model step    the training step of the model (models, autodiff): forward, backward and
//                    optimizer over every micro-batch
//   2. plan          one mesh: the intra-op ILP (intra), completing any layouts given;
//                    a pipeline: layer clustering and the stage / submesh / micro-batch search
//                    (inter), checked by simulation (checked.h), or stages given (a plan file,
//                    a baseline's fixed choices)
//   3. materialize   a pipeline's stage graphs and each stage's intra-op plan on its placed mesh
//   4. lower         per-device programs, cross-mesh transfers and instruction lists (spmd)
//      schedule      interleaved / --schedule auto: the stages re-cut into meshes x virtual
//                    stages, and (auto) every schedule lowered and simulated on the same
//                    meshes, the fastest that fits kept (a post-pass after the stage DP)
//   5. verify        the program's invariants (program/verify.h)
//   6. simulate      the step on the cluster's cost model (sim), for the report
// Each phase is named and timed in Compiled::phases. Every front end (`alpa plan`, `train`,
// `simulate`, `compile`, `demo`, the baselines, and process 0 of an MPI job) compiles through
// here; the runtime then runs the Program and nothing else.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/compile/checked.h"
#include "alpa/inter/stage_planner.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/models/registry.h"
#include "alpa/plan/mesh_search.h"
#include "alpa/program/program.h"
#include "alpa/sim/simulator.h"
#include "alpa/spmd/schedule.h"

namespace alpa {

struct CompileOptions {
  OptimizerOptions optimizer;
  // Micro-batches per step. 0: a pipeline's planner searches the divisors of the batch; a mesh
  // runs 1. Given stages carry their own.
  int micro_batches = 0;

  // Where it runs: one mesh of mesh.size() devices, or (pipeline) stages over `devices`.
  bool pipeline = false;
  MeshShape mesh{1, 1};
  int devices = 0;

  // Plan a one-device mesh too (its predicted time and memory, for `alpa plan`); otherwise one
  // device runs the training graph as it is.
  bool plan_one_device = false;

  // The intra-op options of the mesh or of every stage: ILP limits, batch axis, layouts given
  // by a plan file or a manual plan (sharding.fixed), and the memory per device
  // (sharding.memory_budget_bytes; 0: the cluster's).
  AutoShardingOptions sharding;
  // One mesh: plan the automatic candidates and the manual plans and keep the cheapest
  // (plan/mesh_search.h; `--plan auto`). Off: one ILP under `sharding` as given.
  bool search_mesh = false;
  MeshSearchOptions mesh_search;

  // Pipelines.
  std::optional<PipelinePlan> stages;  // given stages (a plan file); otherwise planned
  std::string stages_fingerprint;      // the training graph the given stages were made for
  PipelinePlannerOptions planner;      // space, layers, imbalance (micro-batches, memory: above)
  // The planner chooses stages for one stage per mesh (GPipe or 1F1B). The interleaved
  // schedule re-cuts them into `virtual_stages` stages per mesh (inter/virtual_stages.h;
  // 0: kDefaultVirtualStages) unless the given stages are interleaved already.
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_stages = 0;
  // --schedule auto: re-time the chosen stages under GPipe, 1F1B and interleaved 1F1B with
  // 2, 4 and 8 virtual stages (where the model has the cuts and the micro-batches are a
  // multiple of the meshes) by simulating each program, and keep the fastest that fits in
  // memory (CompiledPipeline::schedules). A post-pass: the stage DP itself costs 1F1B.
  bool choose_schedule = false;
  // Choose among the planner's candidates by simulating them (the fastest that fits, planning
  // again for less memory while the simulated peak overflows). Off: the planner's favourite.
  bool check_by_simulation = true;
  // Simulate the compiled step (Compiled::sim) when the choice did not already.
  bool simulate = true;

  // Called with a line of progress now and then (long plans), if set.
  std::function<void(const std::string&)> progress;
};

struct CompilePhase {
  std::string name;  // "model step", "plan", "materialize", "lower", "verify", "simulate"
  double seconds = 0;
};

// A schedule tried by --schedule auto, simulated on the same meshes.
struct ScheduleCandidate {
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_stages = 1;
  double step_time_s = 0;  // simulated
  double peak_memory_bytes = 0;
  double bubble_fraction = 0;
  std::string not_possible;  // why it was not simulated (empty: it was)
};

struct CompiledPipeline {
  TrainStep step;     // the step of one micro-batch the stages split
  PipelinePlan plan;  // interleaved: meshes x virtual_stages stages
  MaterializedPipeline stages;
  std::vector<SimulatedCandidate> candidates;  // every plan the simulation check tried
  int plan_rounds = 1;                         // plans made until the simulated memory fit
  double planner_memory = 0;  // memory per device of the last plan (0: not checked)
  ScheduleKind schedule = ScheduleKind::k1F1B;  // what the program runs
  int virtual_stages = 1;
  std::vector<ScheduleCandidate> schedules;  // --schedule auto: every schedule tried, in order
};

struct Compiled {
  Cluster cluster;  // sized to the program's devices
  TrainStep step;   // the training step the program runs (every micro-batch)
  int micro_batches = 1;
  std::optional<ShardingPlan> mesh_plan;  // one mesh
  // One mesh searched (CompileOptions::search_mesh): the candidates, the winner and its
  // options, warnings (the winner's plan is mesh_plan).
  std::optional<MeshSearchResult> mesh_search;
  std::optional<CompiledPipeline> pipeline;  // a pipeline
  Program program;
  std::optional<SimReport> sim;
  std::vector<CompilePhase> phases;
  double seconds = 0;  // all phases

  double phase_seconds(std::string_view name) const;
};

// The cluster `preset_or_path` with exactly `devices` devices (a clear error naming both).
Result<Cluster> sized_cluster(const std::string& preset_or_path, int devices);

Result<Compiled> compile(const ModelSpec& model, const Cluster& cluster,
                         const CompileOptions& options);

// Phases 2-6 on one mesh (options.mesh) for a step built elsewhere, e.g. a decoder's inference
// step (a forward graph whose KV cache is state its outputs update): the mesh's intra-op plan
// with every state in the memory model, the lowering, the verification and the simulation. A
// pipeline (options.pipeline) is kInvalidArgument.
Result<Compiled> compile_step(TrainStep step, const Cluster& cluster,
                              const CompileOptions& options);

// Phases 3-6 for stages already chosen (by the planner, a plan file or a baseline): `step` is
// the step of one micro-batch, `plan` its stages with layers clustered. `stage_options` may
// adjust each stage's intra-op options (a baseline's manual plan per stage).
Result<Compiled> compile_stages(TrainStep step, PipelinePlan plan, const Cluster& cluster,
                                const CompileOptions& options,
                                const StageOptionsHook& stage_options = {});

}  // namespace alpa
