// Backend: a kind of device a program runs on — its kernels and its memory — behind one small
// interface, so one runner (program_runner.h) runs a program on one device, a mesh or a
// pipeline, whatever the device. The CPU backend (the Executor: kernels.h, fusion, the buffer
// pool) is the reference; a GPU backend implements the same entries and passes the same tests.
//
// The third part of a device, its Communicator (communicator.h), comes from the World the
// runner runs in (threads or MPI processes) and reaches the collective kernels through the
// DeviceContext each loaded program is given.
//
// Values a device holds between instructions are Tensors in the backend's memory. The runner
// moves whole values between host and device only at the edges: loading weights, feeding
// inputs, reading the loss, gathering and checkpointing (upload / download), and around
// cross-mesh transfers, which move host buffers through the Communicator.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/device.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"

namespace alpa {

// A per-device program loaded for repeated runs.
class Executable {
 public:
  virtual ~Executable() = default;
  // params: one tensor per program parameter (in device memory), in order; returns one tensor
  // per program output.
  virtual Result<std::vector<Tensor>> run(std::vector<Tensor> params) = 0;
  // As run(), with params[k] read from *borrowed[k] where that is set (params[k] then empty):
  // values the caller keeps across runs (weights no output updates), neither consumed nor
  // written. The default copies them in.
  virtual Result<std::vector<Tensor>> run(std::vector<Tensor> params,
                                          const std::vector<const Tensor*>& borrowed) {
    for (size_t k = 0; k < borrowed.size() && k < params.size(); ++k)
      if (borrowed[k] != nullptr) params[k] = *borrowed[k];
    return run(std::move(params));
  }
  // Timing and memory of the last run (per op kind and node when the backend measures them).
  virtual const ExecutorStats& stats() const = 0;
  // The nodes a fused kernel rooted at `id` computes (just `id` without fusion).
  virtual std::vector<ValueId> fused_members(ValueId id) const { return {id}; }
};

struct LoadOptions {
  int threads = 1;               // host threads a device's kernels may use
  bool fuse_elementwise = true;  // fuse elementwise chains (changes no value)
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;

  // Once per device thread, before it loads or runs anything.
  virtual void prepare_thread() {}
  // Kernels: `program` ready to run on `device`, which must outlive the result.
  virtual std::unique_ptr<Executable> load(Graph program, const DeviceContext& device,
                                           const LoadOptions& options) = 0;

  // Memory: a host tensor into the device's memory, and a device tensor readable on the host
  // (the tensor itself when device memory is host memory, else a copy in `scratch`).
  virtual Tensor upload(Tensor host) = 0;
  virtual const Tensor& host_view(const Tensor& device, Tensor& scratch) = 0;
  // sum += x, elementwise (same shape); x *= s.
  virtual void accumulate(Tensor& sum, const Tensor& x) = 0;
  virtual void scale(Tensor& x, float s) = 0;
};

// The CPU backend: host memory, the Executor's kernels (one BLAS thread per caller).
Backend& cpu_backend();

}  // namespace alpa
