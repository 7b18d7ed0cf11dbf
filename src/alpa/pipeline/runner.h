// PipelineRunner: runs a PipelineProgram on virtual devices, by default one thread per device
// through its own ThreadWorld (the embedded default; threads_communicator.h), or on the devices
// a given World runs in this process (one per process under MPI; world.h).
//
// Every device executes its stage's instruction list (program.h) in order. It holds:
// - its shards of the weights and optimizer state its stage owns (across steps; nothing of
//   other stages);
// - a store of values keyed by (stage-graph value, micro-batch), filled by RUN / RECV / ACC
//   and emptied by FREE, so activations live from their forward to their backward;
// - one Executor per task program and per restoring all-gather, built once.
// A stage's devices run the same SPMD programs; their collectives go through a SubCommunicator
// over the stage's ranks. Cross-mesh transfers use the world communicator (sends never block,
// receives do), so the schedule's order is the only synchronisation between stages.
//
// Errors: a failing device aborts the world; every other device's pending receive or
// collective fails instead of hanging, and run_step returns the first failure.
// Not a planner and not thread-safe: one run_step at a time.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <vector>

#include "alpa/pipeline/program.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/runtime/world.h"
#include "alpa/support/trace.h"

namespace alpa {

struct PipelineRunOptions {
  int threads_per_device = 1;
  double timeout_s = 120;  // longest wait for a peer
  bool fuse_elementwise = true;
  bool record_trace = false;  // keep each device's timed instructions of the last step
};

struct PipelineDeviceStats {
  int64_t owned_bytes = 0;          // weights and state this device holds (fp32 storage)
  std::vector<Shape> owned_shapes;  // their local shapes, in the stage's parameter order
  int64_t peak_store_bytes = 0;     // largest store during the last step
  int peak_live_micro_batches = 0;  // most micro-batches with values in the store at once
};

class PipelineRunner {
 public:
  // `step_graph` is the graph the program was built from (its parameters' types and order).
  // `world`, if given, has one rank per device and outlives the runner.
  PipelineRunner(PipelineProgram program, const Graph& step_graph, PipelineRunOptions options = {},
                 World* world = nullptr);
  ~PipelineRunner();
  PipelineRunner(const PipelineRunner&) = delete;
  PipelineRunner& operator=(const PipelineRunner&) = delete;

  const PipelineProgram& program() const { return program_; }
  int num_devices() const { return program_.num_devices; }

  // Sets the weights and state: one whole tensor per step-graph parameter (data inputs may be
  // empty tensors); each owning device (of this process) keeps its shard.
  Status load_parameters(const std::vector<Tensor>& whole);

  // One training step. `inputs`: one whole tensor per step-graph parameter; the data inputs
  // hold every micro-batch along dim 0 (micro_batches x the step graph's extent); the others
  // are ignored. Returns the loss (the mean over micro-batches).
  Result<double> run_step(const std::vector<Tensor>& inputs);

  // The weights and state, whole, one per step-graph parameter (data inputs: empty tensors),
  // at the process of rank 0 (other processes get empty tensors; process-level under MPI).
  Result<std::vector<Tensor>> gather_parameters();

  // Calls f(parameter position, its spec, the stage's mesh placement, rank) for every owned
  // value's placement (once per stage that owns a copy of a step-graph parameter).
  struct OwnedValue {
    size_t param = 0;
    int stage = 0;
    ValueId value = kNoValue;
  };
  std::vector<OwnedValue> owned_values() const;
  // The block a local rank holds of an owned value (null if none).
  const Tensor* owned_block(int rank, int stage, ValueId value) const;

  const std::vector<int>& local_ranks() const { return local_; }
  World& world() { return *world_; }
  // Statistics of a local rank.
  const PipelineDeviceStats& stats(int rank) const;
  // With record_trace: a local rank's instructions of the last step, timed from the step's
  // start (support/trace.h; the simulator labels its trace the same way).
  const std::vector<TraceEvent>& trace(int rank) const;

 private:
  struct Device;
  Status run_device(int rank, const std::vector<Tensor>& inputs);

  PipelineProgram program_;
  std::vector<TensorType> param_types_;  // step-graph parameters
  PipelineRunOptions options_;
  std::unique_ptr<ThreadWorld> own_world_;
  World* world_ = nullptr;
  std::vector<int> local_;
  std::vector<std::unique_ptr<Device>> devices_;  // per rank; null for ranks of other processes
  double last_loss_ = 0;
  std::chrono::steady_clock::time_point step_start_;
};

}  // namespace alpa
