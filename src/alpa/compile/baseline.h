// Baselines: the plans a person would write with today's systems, found the way their users
// find them — a grid search — and judged by the simulator (sim/simulator.h), so they go
// through the same stage split, intra-op costing, lowering and instruction lists as the
// plans of the planner (Alpa §5.1 grid-searches its baselines the same way, on the cluster).
//
// - megatron: Megatron-LM as its users run it at scale — data x tensor x pipeline degrees
//   (tensor inside a host), equal stages of layers, Megatron's GPT sharding on each stage
//   (plan/manual.h "2d", "tensor-parallel" or "data-parallel"), full activation
//   checkpointing (every layer's forward recomputed in the backward: the stash is the layers'
//   inputs), the micro-batch size and the schedule: 1F1B, or interleaved 1F1B with 2 or 4
//   model chunks per pipeline stage (Megatron-LM's --num-layers-per-virtual-pipeline-stage)
//   where the layers divide evenly into pp x v chunks and the micro-batches are a multiple of
//   pp, as Megatron-LM requires;
// - deepspeed: DeepSpeed — ZeRO-2 or ZeRO-3 data parallelism over every device, with expert
//   parallelism for mixture-of-experts layers (experts split over the devices), with and
//   without activation checkpointing, and the micro-batch size (gradient accumulation);
// - pp-dp: pipeline plus data parallelism only (the PipeDream/DAPPLE space): pipeline degree,
//   data parallelism inside each stage, and the micro-batch size.
//
// Each configuration is compiled like any other (compile.h: compile_stages with the
// configuration's stages, meshes and per-stage manual plan as fixed choices) and simulated as
// one training step (1F1B, or the configuration's interleaved schedule); one that needs more
// memory per
// device than the cluster has (the simulator's peak) does not count. Layouts the manual rules
// leave open go to the ILP for time alone (never re-planned to save memory, which these
// systems do not do). Configurations whose
// weights and optimizer state alone cannot fit are skipped without simulating, and the
// micro-batch size grows only while it fits and the step keeps getting faster.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/compile/compile.h"
#include "alpa/models/registry.h"
#include "alpa/plan/manual.h"
#include "alpa/spmd/schedule.h"

namespace alpa {

enum class BaselineKind : uint8_t { kMegatron, kDeepSpeed, kPpDp };
std::string_view baseline_name(BaselineKind k);  // "megatron", "deepspeed", "pp-dp"
Result<BaselineKind> parse_baseline(std::string_view name);

struct BaselineConfig {
  int dp = 1, tp = 1, pp = 1;  // data, tensor and pipeline degrees: dp * tp * pp devices
  int micro_batches = 1;       // per step; each is split dp ways
  ManualPlanKind per_stage = ManualPlanKind::kDataParallel;
  bool expert_parallel = false;
  // Activation checkpointing: kFull recomputes every layer's forward from its input in the
  // backward (Megatron-LM's --recompute-granularity full, DeepSpeed's checkpointing).
  RematMode remat = RematMode::kNone;
  // Model chunks per pipeline stage: 1 runs BaselineOptions::schedule over pp stages; v > 1
  // runs interleaved 1F1B over pp x v stages, stage c on pipeline stage c mod pp.
  int virtual_stages = 1;
  // "dp 2 x tp 4 x pp 2, 16 micro-batches (2d, full recompute, interleaved x2)"
  std::string to_string() const;
};

struct BaselineTrial {
  BaselineConfig config;
  bool simulated = false;
  bool fits = false;
  double step_time_s = 0;        // simulated (0 if not simulated)
  double peak_memory_bytes = 0;  // simulated peak per device, or the weights-and-state bound
  std::string note;              // why it was skipped or failed
};

struct BaselineOptions {
  int64_t batch = 1;  // global batch
  ScheduleKind schedule = ScheduleKind::k1F1B;
  double memory_per_device = 0;  // bytes; 0: the cluster's device memory
  bool moe = false;              // the model has mixture-of-experts layers (deepspeed: expert
                                 // parallelism)
  int max_pipeline_stages = 0;   // 0: as many as the model has layers to cluster
  // megatron: model chunks per pipeline stage tried with the interleaved schedule, beside
  // `schedule` (empty: interleaving is not in the grid).
  std::vector<int> interleave = {2, 4};
  // Grid shapes simulated side by side (0: the hardware's threads, at most 4). The result does
  // not depend on it.
  int threads = 0;
  std::function<void(const std::string&)> progress;
};

struct BaselineResult {
  BaselineKind kind = BaselineKind::kMegatron;
  BaselineConfig best;
  // The best configuration compiled: its one-micro-batch step, stages, program and simulation.
  Compiled compiled;
  std::vector<BaselineTrial> trials;  // in the order tried
  double search_s = 0;
};

// Grid-searches the baseline for `model`'s training step with `optimizer` on `cluster` (its
// whole size). Errors when no configuration fits, naming the best memory seen.
Result<BaselineResult> plan_baseline(BaselineKind kind, const ModelSpec& model,
                                     const OptimizerOptions& optimizer, const Cluster& cluster,
                                     const BaselineOptions& options);

// One configuration, simulated as the search would (its trial is the result's only one).
Result<BaselineResult> simulate_baseline_config(BaselineKind kind, const BaselineConfig& config,
                                                const ModelSpec& model,
                                                const OptimizerOptions& optimizer,
                                                const Cluster& cluster,
                                                const BaselineOptions& options);

}  // namespace alpa
