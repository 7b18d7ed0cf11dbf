// The single-process training loop: model spec -> training-step graph -> executor, fed by
// the model's synthetic data, with parameters and optimizer state carried from one step to
// the next through the graph's aliased outputs.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/models/registry.h"
#include "alpa/support/status.h"

namespace alpa {

struct TrainOptions {
  int steps = 20;
  uint64_t seed = 0;
  int micro_batches = 1;
  int threads = 0;  // 0: all hardware threads
  OptimizerOptions optimizer;
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
  std::vector<NodeTime> slowest_nodes;  // the 15 slowest nodes, slowest first
  // Median step time, leaving out the first (warm-up) step when there are several.
  double step_time_s() const;
  double tokens_per_s() const { return tokens_per_step / step_time_s(); }
  double gflops_per_s() const { return flops_per_step / step_time_s() / 1e9; }
};

// Trains `spec` for options.steps steps. `on_step` (optional) is called after every step.
Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step = {});

}  // namespace alpa
