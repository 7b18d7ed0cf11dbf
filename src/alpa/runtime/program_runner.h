// ProgramRunner: runs a Program (program/program.h) — one device, a mesh or a pipeline — on
// virtual devices (by default one thread per device through its own ThreadWorld, the embedded
// default; threads_communicator.h) or on the devices a given World runs in this process (one
// per process under MPI; world.h), with the kernels and memory of a Backend (backend.h).
//
// Every device executes its stage's instruction list in order. It holds:
// - its blocks of the weights and optimizer state its stage owns (across steps; nothing of
//   other stages);
// - a store of values keyed by (value, micro-batch), filled by RUN / RECV / ACC and emptied by
//   FREE, so activations live from their forward to their backward;
// - one loaded program per task and per restoring all-gather, loaded once.
// A stage's devices run the same per-device programs; their collectives go through a
// SubCommunicator over the stage's devices. Cross-mesh transfers use the world communicator
// (sends never block, receives do), so the schedule's order is the only synchronisation
// between stages.
//
// Errors: a failing device aborts the world; every other device's pending receive or
// collective fails instead of hanging, and run_step returns the first failure.
// Not a planner and not thread-safe: one run_step at a time.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "alpa/program/program.h"
#include "alpa/runtime/backend.h"
#include "alpa/runtime/checkpoint.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/runtime/world.h"
#include "alpa/support/trace.h"

namespace alpa {

struct RunOptions {
  int threads_per_device = 1;
  double timeout_s = 120;  // longest wait for a peer (threads; MPI: the World's)
  bool fuse_elementwise = true;
  bool record_trace = false;  // keep each device's timed instructions of the last step
};

struct DeviceStats {
  int64_t owned_bytes = 0;          // weights and state this device holds (fp32 storage)
  std::vector<Shape> owned_shapes;  // their local shapes, in the stage's value order
  int64_t peak_store_bytes = 0;     // largest store during the last step
  int peak_live_micro_batches = 0;  // most micro-batches with values in the store at once
  int64_t peak_task_bytes = 0;      // largest intermediate memory of one task run, last step
  // The device's peak as the memory model counts it (cost/memory.h, the simulator's SimStage):
  // at the start of each task run, owned + store + that run's intermediates, the largest over
  // the last step, and its parts at that moment (fp32 storage, 4 bytes an element).
  int64_t peak_bytes = 0;
  int64_t peak_step_bytes = 0;     // of the store: per-step values (gradient accumulators,
                                   // values received once per step)
  int64_t peak_stash_bytes = 0;    // of the store: values of micro-batches in flight
  int peak_in_flight = 0;          // micro-batches those values belong to
  int64_t peak_working_bytes = 0;  // the running task's intermediates (peak_live_bytes)
};

class ProgramRunner {
 public:
  // `program` must verify (CHECK). `world`, if given, has one rank per device and outlives the
  // runner; so does `backend` (default: the CPU).
  explicit ProgramRunner(Program program, RunOptions options = {}, World* world = nullptr,
                         Backend* backend = nullptr);
  ~ProgramRunner();
  ProgramRunner(const ProgramRunner&) = delete;
  ProgramRunner& operator=(const ProgramRunner&) = delete;

  const Program& program() const { return program_; }
  int num_devices() const { return program_.num_devices; }

  // Sets the weights and state: one whole tensor per Program::params entry (data inputs, and
  // what no device of this process owns, may be empty tensors); each owning device of this
  // process keeps its block.
  Status load_parameters(const std::vector<Tensor>& whole);
  // Uses, instead of holding its own, the blocks `source` holds of this runner's owned values
  // that `source` holds under the same name, type and layout on the same placed mesh (two
  // programs of one model: an inference step's prefill and decode share the weights, and the
  // KV cache when its shape agrees). A shared value is one tensor: what either runner's step
  // writes to it (a cache), the other reads; load_parameters and set_parameter here reach it
  // too. `source` must run on the same World, outlive this runner, never run a step at the
  // same time as it, and not load_parameters again (that drops the blocks shared). Returns how
  // many blocks are shared (per local device, summed).
  int share_values_of(ProgramRunner& source);
  // Whether a device of this process holds a block of parameter `param` itself (owns it and
  // does not read it from another runner): what load_parameters needs a tensor for.
  bool needs_parameter(int param) const;
  // Sets one weight or state (Program::params index `param`) on its owning devices of this
  // process, e.g. the scheduled learning rate before a step.
  Status set_parameter(int param, const Tensor& whole);

  // One training step. `inputs`: one whole tensor per Program::params entry; the data inputs
  // hold every micro-batch along dim 0, the others are ignored (may be empty). Returns the
  // loss (the mean over micro-batches; 0 for a program without one).
  Result<double> run_step(const std::vector<Tensor>& inputs);

  // The weights and state, whole, one per Program::params entry (data inputs: empty tensors),
  // at the process of world rank 0 (other processes get empty tensors). Process-level under
  // MPI: every process calls it.
  Result<std::vector<Tensor>> gather_parameters();
  // One of them (an empty tensor at other processes, and for a data input).
  Result<Tensor> gather_parameter(int param);

  // This process's blocks of the weights and state, each element once (the primary copy of a
  // replicated block; a weight owned by several stages: its first owner's), for a checkpoint:
  // CheckpointBlock::tensor is the Program::params index.
  std::vector<CheckpointBlock> checkpoint_blocks() const;

  const std::vector<int>& local_ranks() const { return local_; }
  World& world() { return *world_; }
  const DeviceStats& stats(int rank) const;
  // A local rank's loaded task (for profiles: per-op timing of its last run).
  const Executable& task(int rank, int task) const;
  // With record_trace: a local rank's instructions of the last step, timed from the step's
  // start (support/trace.h; the simulator labels its trace the same way).
  const std::vector<TraceEvent>& trace(int rank) const;

 private:
  struct Device;
  Device& device(int rank) const;
  Status run_device(int rank, const std::vector<Tensor>& inputs);
  Status run_task(Device& d, const Instruction& x, const std::vector<Tensor>& inputs);

  Program program_;
  RunOptions options_;
  Backend* backend_ = nullptr;
  std::unique_ptr<ThreadWorld> own_world_;
  World* world_ = nullptr;
  std::vector<int> local_;
  std::vector<std::unique_ptr<Device>> devices_;  // per rank; null for ranks of other processes
  // Per stage, task and program parameter: whether an output of the task updates it.
  std::vector<std::vector<std::vector<char>>> updates_;
  double last_loss_ = 0;
  std::chrono::steady_clock::time_point step_start_;
};

}  // namespace alpa
