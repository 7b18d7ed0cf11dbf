// The training loop: model spec -> training-step graph -> one device (Executor), a mesh of
// virtual devices (auto-sharding plan -> SPMD program -> SpmdRunner, one thread per device),
// or a pipeline of stages on submeshes of virtual devices (inter-op plan -> PipelineProgram ->
// PipelineRunner), fed by the model's synthetic data, with parameters and optimizer state
// carried from one step to the next through the graph's aliased outputs. On a mesh or a
// pipeline, each device keeps only its shards (of its stage's weights) between steps.
#pragma once

#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/inter/stage_planner.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/pipeline/runner.h"
#include "alpa/pipeline/schedule.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/world.h"
#include "alpa/support/status.h"

namespace alpa {

// Pipeline parallelism on virtual devices: stages planned by the inter-op pass (or given),
// each on its own submesh, run with a GPipe or 1F1B schedule.
struct PipelineTrainOptions {
  bool enabled = false;
  int devices = 0;                    // virtual devices in all
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int num_layers = 0;                 // layer clustering (0: automatic)
  std::optional<PipelinePlan> plan;   // given stages; otherwise planned automatically
  std::string fingerprint;            // the given plan's graph fingerprint (empty: unchecked)
  double imbalance_tolerance = std::numeric_limits<double>::infinity();  // planner pruning
  // If set, edits the built program before it runs (tests plant faults with it).
  std::function<void(PipelineProgram&)> rewrite_program;
};

struct TrainOptions {
  int steps = 20;
  uint64_t seed = 0;
  int micro_batches = 1;
  int threads = 0;  // 0: all hardware threads (one device); per device on a mesh: 1
  OptimizerOptions optimizer;
  // More than one device: SPMD on virtual devices (threads) planned by auto-sharding.
  MeshShape mesh{1, 1};
  std::string cluster = "local";   // preset or JSON whose cost model plans the sharding
  AutoShardingOptions sharding;    // incl. fixed layouts (manual / loaded plans)
  bool keep_final_params = false;  // report the trained weights and state, assembled
  // Pipeline parallelism (then `mesh` is unused; micro_batches = 0 lets the planner choose).
  PipelineTrainOptions pipeline;

  // Where the devices run. Null: threads of this process, one per device. Otherwise a World
  // with one rank per device (MpiWorld: one process per device); every process calls
  // train_model with the same options. Process 0 plans and sends the plan to the others; every
  // process checks that it built the same per-device programs.
  World* world = nullptr;
  std::string backend = "threads";  // recorded in checkpoints
  double timeout_s = 120;           // longest wait for a peer device (threads; MPI: the World's)
  // Checkpoints (runtime/checkpoint.h): written into checkpoint_dir every checkpoint_every
  // steps (0: only after the last step) and after the last step.
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  // A checkpoint (directory or step directory) to start from: its weights and optimizer state
  // are loaded (resharded onto this run's plan) and training continues at its step + 1 up to
  // `steps`.
  std::string resume;
  // Write the last step's timeline (Chrome trace JSON, support/trace.h) to this file: per
  // device, every pipeline instruction with its measured start and duration (a mesh or one
  // device: the step as one event per device), labelled as `alpa simulate --trace` labels its
  // prediction.
  std::string trace_path;
};

struct StepReport {
  int step = 0;  // 1-based
  double loss = 0;
  double seconds = 0;
};

struct TrainReport {
  int first_step = 1;        // > 1 when resumed from a checkpoint
  std::string resumed_from;  // the step directory loaded
  std::vector<std::string> checkpoints;  // step directories written
  std::vector<double> losses;            // steps first_step .. steps
  std::vector<double> step_seconds;
  int64_t parameters = 0;
  double flops_per_step = 0;
  int64_t tokens_per_step = 0;
  int threads = 1;
  std::string blas_core;              // OpenBLAS kernel set in use (e.g. SkylakeX)
  std::vector<double> seconds_by_op;  // per OpKind, summed over steps after the first
  struct NodeTime {
    std::string what;  // "%12 mul f32[8,256,512] fused: sub, exp, mul"
    double seconds;    // summed over steps after the first
  };
  std::vector<NodeTime> slowest_nodes;  // the 15 slowest nodes, slowest first (one device)

  // On a mesh.
  int devices = 1;
  MeshShape mesh{1, 1};
  double plan_seconds = 0;               // auto-sharding
  double predicted_step_time_s = 0;      // the plan's compute + communication
  double predicted_peak_memory_bytes = 0;
  int64_t collectives = 0;               // communicating ops in the per-device program
  std::vector<Shape> device_param_shapes;  // device 0's parameter shapes (its shards)
  int64_t device_peak_live_bytes = 0;    // device 0's peak intermediate bytes, last step
  ShardingPlan plan;                     // the plan that ran (mesh only)
  // Pipeline only.
  PipelinePlan pipeline_plan;            // stages that ran
  int micro_batches = 1;
  std::vector<PipelineDeviceStats> device_stats;  // per device, last step
  std::vector<int> device_stage;         // per device: its stage
  int64_t transfers = 0;                 // cross-stage transfers per step (distinct values)

  // With keep_final_params: every parameter of the training graph (weights, inputs of the last
  // step, state) after the last step, whole (under a multi-process World: on process 0 only).
  std::vector<std::string> param_names;
  std::vector<Tensor> final_params;
  // Median step time, leaving out the first (warm-up) step when there are several.
  double step_time_s() const;
  double tokens_per_s() const { return tokens_per_step / step_time_s(); }
  double gflops_per_s() const { return flops_per_step / step_time_s() / 1e9; }
};

// OK unless options.world has a different number of ranks than the run has devices (one rank
// runs one device); the error says how to fix the launch.
Status check_world_matches(const TrainOptions& options);

// Trains `spec` for options.steps steps. `on_step` (optional) is called after every step.
Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step = {});

}  // namespace alpa
