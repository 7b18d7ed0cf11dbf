// The training loop: model spec -> training-step graph -> one device (Executor) or a mesh of
// virtual devices (auto-sharding plan -> SPMD program -> SpmdRunner, one thread per device),
// fed by the model's synthetic data, with parameters and optimizer state carried from one step
// to the next through the graph's aliased outputs. On a mesh, each device keeps only its
// shards between steps.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"

namespace alpa {

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
};

struct StepReport {
  int step = 0;  // 1-based
  double loss = 0;
  double seconds = 0;
};

struct TrainReport {
  std::vector<double> losses;
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

  // With keep_final_params: every parameter of the training graph (weights, inputs of the last
  // step, state) after the last step, whole.
  std::vector<std::string> param_names;
  std::vector<Tensor> final_params;
  // Median step time, leaving out the first (warm-up) step when there are several.
  double step_time_s() const;
  double tokens_per_s() const { return tokens_per_step / step_time_s(); }
  double gflops_per_s() const { return flops_per_step / step_time_s() / 1e9; }
};

// Trains `spec` for options.steps steps. `on_step` (optional) is called after every step.
Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step = {});

}  // namespace alpa
