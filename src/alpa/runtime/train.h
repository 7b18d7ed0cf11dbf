// The training driver: runs a Program (program/program.h) step after step — on one device, a
// mesh or a pipeline, threads or MPI processes alike — from initial weights or a checkpoint,
// feeding each step's batch, writing checkpoints, timing the steps and tracing the last one.
//
// Weights start from the program's parameters' initialisers (init.h: the same values a graph
// with those parameters gets, whatever the plan), or from a checkpoint, whose whole tensors
// are cut into this run's blocks (checkpoint.h), so a run resumes under any plan, device count
// or backend. Checkpoints are written every `checkpoint_every` steps and after the last.
//
// Not a planner and not a model: the program, the batches and the world are given.
#pragma once

#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "alpa/program/program.h"
#include "alpa/runtime/program_runner.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/world.h"
#include "alpa/support/status.h"

namespace alpa {

// The data of step `step` (0-based): one vector of values per data input of the program, in
// the program's parameter order, each holding every micro-batch.
using BatchFn = std::function<std::vector<std::vector<float>>(int64_t step)>;

// A learning-rate schedule (steps are 1-based): a linear warmup from 0 over `warmup` steps to
// `peak`, then constant, or a cosine or linear decay to `floor` at step `decay_steps`, and
// `floor` after it (as nanoGPT and Megatron-LM schedule).
struct LrSchedule {
  enum class Kind : uint8_t { kConstant, kCosine, kLinear };
  Kind kind = Kind::kConstant;
  double peak = 1e-3;
  int warmup = 0;
  double floor = 0;
  int decay_steps = 0;  // <= warmup: no decay
  double at(int step) const;
};
Result<LrSchedule::Kind> parse_lr_schedule(std::string_view name);
std::string_view lr_schedule_name(LrSchedule::Kind kind);

// Validation: the loss of whole weights on held-out data (called at process 0 with every
// program parameter, whole, data inputs empty).
using EvalFn = std::function<Result<double>(const std::vector<Tensor>& params)>;

struct TrainLoopOptions {
  int steps = 20;
  uint64_t seed = 0;                // initial weights (unless resumed)
  RunOptions run;                   // threads per device, timeout, trace recording
  std::string model;                // recorded in checkpoints, checked when resuming
  std::string backend = "threads";  // recorded in checkpoints
  // Checkpoints (checkpoint.h): written into checkpoint_dir every checkpoint_every steps (0:
  // only after the last step) and after the last step.
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  // A checkpoint (directory or step directory) to start from: training continues at its
  // step + 1 up to `steps`.
  std::string resume;
  // Fine-tuning (`alpa train --init-from`): whole initial values of weights by parameter name,
  // used instead of their initialisers; the optimizer state starts fresh. Every weight of the
  // program must be given, with its shape, and every tensor given must be a weight.
  std::map<std::string, Tensor> initial_weights;
  // Step s trains on batches(s - 1 + data_offset): continues another run's data stream.
  int64_t data_offset = 0;
  // Write the last step's timeline (Chrome trace JSON, support/trace.h) here: every device's
  // instructions with their measured start and duration.
  std::string trace_path;
  bool profile = false;            // time per op kind and the slowest nodes of device 0
  bool keep_final_params = false;  // report the trained weights and state, whole
  // A program with a scheduled learning rate (its "lr" state) gets schedule.at(step) before
  // each step; it must be given for such a program and only for it.
  std::optional<LrSchedule> schedule;
  // Every eval_every steps and after the last (eval_every > 0), the weights are gathered to
  // process 0 and `evaluate` gives the validation loss.
  int eval_every = 0;
  EvalFn evaluate;
  // For StepReport::mfu: the model FLOPs of one step and the peak FLOP/s of what runs it.
  double flops_per_step = 0;
  double peak_flops = 0;
  // Memory admission: per device, the peak the cost model predicts (bytes of f32 storage;
  // empty: each device's weights and state are counted, nothing more). Before anything is
  // allocated, the driver's whole initial weights plus this process's devices' peaks must
  // fit the memory this process can still allocate (support/system.h), else the run is
  // refused with the numbers. available_bytes overrides what the machine reports (tests).
  std::vector<double> predicted_peak_bytes;
  int64_t available_bytes = -1;
};

// What train_program admits: the bytes this process needs before its first step.
struct MemoryNeed {
  int64_t initial_weights = 0;  // the driver's whole initial weights and state
  int64_t data = 0;             // one step's data inputs, whole
  int64_t devices = 0;          // this process's devices' predicted peaks (at least owned)
  int local_devices = 0;
  int64_t total() const { return initial_weights + data + devices; }
};
MemoryNeed memory_need(const Program& program, const std::vector<int>& local_devices,
                       const std::vector<double>& predicted_peak_bytes);
// The admission check train_program makes first; a driver that prepares data before calling
// it makes it earlier (world: as for train_program).
Status admit_memory(const Program& program, const TrainLoopOptions& options, World* world);

struct StepReport {
  int step = 0;  // 1-based
  double loss = 0;
  double seconds = 0;
  double lr = std::nan("");         // the scheduled rate of the step (NaN: constant)
  double grad_norm = std::nan("");  // the global gradient norm before clipping (NaN: untracked)
  double val_loss = std::nan("");   // after the step, when evaluated (NaN: not this step)
  double mfu = std::nan("");        // model FLOP/s over peak FLOP/s (NaN: no peak given)
};

struct TrainResult {
  int first_step = 1;                    // > 1 when resumed from a checkpoint
  std::string resumed_from;              // the step directory loaded
  std::vector<std::string> checkpoints;  // step directories written
  std::vector<double> losses;            // steps first_step .. steps
  std::vector<double> step_seconds;
  std::vector<double> data_seconds;  // per step: making its batch (reading, shuffling)
  std::vector<double> grad_norms;    // per step, when the program tracks the norm (process 0)
  std::vector<std::pair<int, double>> val_losses;  // (step, validation loss), process 0
  std::vector<double> seconds_by_op;  // per OpKind, device 0, summed over steps after the first
  struct NodeTime {
    std::string what;  // "%12 mul f32[8,256,512] fused: sub, exp, mul"
    double seconds;    // summed over steps after the first
  };
  std::vector<NodeTime> slowest_nodes;    // device 0's 15 slowest nodes, slowest first
  std::vector<DeviceStats> device_stats;  // per device, last step (every device at process 0)
  // With keep_final_params: every program parameter (weights and state after the last step,
  // the last step's inputs), whole, at process 0.
  std::vector<Tensor> final_params;

  // Median step time, leaving out the first (warm-up) step when there are several.
  double step_time_s() const;
};

// Trains `program` for options.steps steps. `world` (optional) has one rank per device: null
// runs every device on a thread of this process. Every process of an MPI job calls it with the
// same program and options. `on_step` (optional) is called after every step.
Result<TrainResult> train_program(const Program& program, const BatchFn& batches,
                                  const TrainLoopOptions& options, World* world = nullptr,
                                  const std::function<void(const StepReport&)>& on_step = {});

// The rows (along dim 0, [begin, end), sorted and disjoint) of each data input, in the order
// of the program's input parameters, that `devices` read: a data-parallel group only its own
// samples, a pipeline's stages only the inputs they take (the first the tokens, the last the
// labels), each micro-batch's share. A process makes only these rows of a step's data.
std::vector<std::vector<std::pair<int64_t, int64_t>>> input_rows(const Program& program,
                                                                 const std::vector<int>& devices);

// "mesh 2x2", "one device", "pipeline of 2 stages on 4 devices, 4 micro-batches".
std::string describe_program(const Program& program);

}  // namespace alpa
