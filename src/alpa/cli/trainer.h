// Training a model, as the front ends ask for it: compile the model for one device, a mesh
// of virtual devices or a pipeline (compile/compile.h), or take a compiled program, then run
// it with the training driver (runtime/train.h) on the model's data. Under several processes,
// process 0 compiles and sends the program to the others, which run exactly what it compiled.
#pragma once

#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "alpa/compile/compile.h"
#include "alpa/models/registry.h"
#include "alpa/program/program.h"
#include "alpa/runtime/train.h"
#include "alpa/runtime/world.h"
#include "alpa/support/status.h"

namespace alpa {

// What training compiles by default: one device, one micro-batch, and among pipeline
// candidates the planner's own choice (memory is not what limits a run on this machine).
CompileOptions training_compile_options();

// The threads backend runs each virtual device on its own thread of one process.
inline constexpr int64_t kMaxVirtualDevices = 256;

struct TrainOptions {
  // What to compile (compile/compile.h): optimizer, micro-batches, one mesh (of virtual
  // devices) or pipeline stages, plan constraints, memory per device.
  CompileOptions compile = training_compile_options();
  std::string cluster = "local";  // preset or JSON whose cost model plans the run
  // A compiled program to run instead of compiling (`alpa train --program`); it must have been
  // compiled from this model.
  std::optional<Program> program;
  // If set, edits the compiled program before it runs (tests plant faults with it).
  std::function<void(Program&)> rewrite_program;
  // A token dataset (`alpa data prepare`) to train on instead of synthetic data.
  std::string data_path;
  // With loop.eval_every > 0: the validation loss is the mean over this many batches of the
  // dataset's validation split (the same batches each time), computed at process 0 on one
  // device from the gathered weights, so every plan reports the same number.
  int eval_batches = 4;
  // How to train it (runtime/train.h): steps, seed, checkpoints, resume, trace, profile. The
  // model name and the threads per device are filled in from the model and `threads`.
  TrainLoopOptions loop;
  int threads = 0;  // 0: all hardware threads (one device); per device on a mesh: 1

  // Where the devices run. Null: threads of this process, one per device. Otherwise a World
  // with one rank per device (MpiWorld: one process per device); every process calls
  // train_model with the same options. Process 0 compiles and sends the program to the others.
  World* world = nullptr;
};

struct TrainReport : TrainResult {
  int64_t parameters = 0;
  double flops_per_step = 0;
  int64_t tokens_per_step = 0;
  int threads = 1;
  std::string blas_core;  // OpenBLAS kernel set in use (e.g. SkylakeX)
  int devices = 1;
  MeshShape mesh{1, 1};
  int micro_batches = 1;
  // The program that ran, and how it was made (compiled here: not with a given program or on
  // processes other than 0 of an MPI job).
  Program program;
  std::optional<Compiled> compiled;
  double plan_seconds = 0;           // compiling (or, MPI, waiting for process 0's program)
  const char* plan_how = "planned";  // "read" (--program) or "received" (from process 0)
  double predicted_step_time_s = 0;  // the program's prediction on the cluster model
  double predicted_peak_memory_bytes = 0;
  int64_t collectives = 0;               // communicating ops in the per-device programs
  std::vector<int> device_stage;         // per device: its stage
  std::vector<std::string> param_names;  // per program parameter (final_params' order)
  // Rows of a dataset this process read per step, over all inputs (0: synthetic data).
  double data_rows_per_step = 0;

  double tokens_per_s() const { return tokens_per_step / step_time_s(); }
  double gflops_per_s() const { return flops_per_step / step_time_s() / 1e9; }
};

// OK unless options.world has a different number of ranks than the run has devices (one rank
// runs one device); the error says how to fix the launch.
Status check_world_matches(const TrainOptions& options);

// The training step a program was compiled from, rebuilt from the model: the whole step of
// `micro_batches` micro-batches (a mesh or one device) or, for a pipeline, the step of one of
// its micro-batches. Errors when the program's fingerprint says it came from another step.
Result<TrainStep> step_of_program(const Program& program, const ModelSpec& spec,
                                  const OptimizerOptions& optimizer, int micro_batches);

// Compiles (unless options.program is given) and trains `spec` for options.steps steps.
// `on_step` (optional) is called after every step.
Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step = {});

}  // namespace alpa
