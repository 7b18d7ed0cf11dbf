// The CPU kernel table: one kernel per op of the op table (ops.def), looked up by OpKind.
//
// A kernel computes one node: out = op(inputs...). `out` arrives with the node's result type
// and storage of that size whose contents are unspecified (or, for an elementwise op run in
// place, the storage of one of its operands, which then also appears in `inputs` as &out), so
// a kernel writes every element of `out`. Elementwise kernels read and write element i before
// moving on, which keeps them correct in place; no other kernel is run in place. In place, the
// aliased input carries the result's type, so a kernel that needs an operand's dtype (convert)
// reads it from ctx.graph.
//
// Kernels assume a verified node (operand count and types as the shape rule says) and
// return a Status only for errors the user can cause with values (an out-of-range gather
// index). Kernels are deterministic: the result depends only on the inputs and the thread
// count (ThreadPool partitions depend only on the loop length and the thread count), never
// on timing.
//
// Kernels are split by family: kernels_elementwise.cc (sources, unary, binary, select),
// kernels_movement.cc, kernels_reduce.cc, kernels_dot.cc (dot_general on cblas_sgemm),
// kernels_conv.cc (conv2d and its gradients via im2col + sgemm), kernels_indexing.cc,
// kernels_collective.cc (collectives through the device's Communicator; device.h).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/buffer_pool.h"
#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"
#include "alpa/support/thread_pool.h"

namespace alpa {

struct DeviceContext;  // device.h

// Scratch memory for one kernel call, drawn from a BufferPool (or malloc when it has none).
// Everything acquired is returned by release_all(), which the executor calls after each
// kernel; the executor counts the scratch bytes in its peak-memory statistic.
class Workspace {
 public:
  explicit Workspace(BufferPool* pool = nullptr) : pool_(pool) {}
  ~Workspace() { release_all(); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  // Uninitialised storage for n floats (64-byte aligned), valid until release_all().
  float* acquire(int64_t n);
  void release_all();
  int64_t held_bytes() const { return held_bytes_; }

 private:
  BufferPool* pool_;
  std::vector<Buffer> held_;
  int64_t held_bytes_ = 0;
};

struct KernelContext {
  ThreadPool* threads = nullptr;   // never null: loops run through threads->parallel_for
  Workspace* workspace = nullptr;  // never null
  const Graph* graph = nullptr;    // the graph of the node, for error messages (may be null)
  ValueId id = kNoValue;           // the node's id in `graph`
  // The device this program runs on (mesh coordinates, communicator), for collective kernels;
  // null outside SPMD execution (then only single-member collectives run).
  const DeviceContext* device = nullptr;

  // n floats of scratch, valid until the kernel returns. Call it outside parallel loops.
  float* scratch(int64_t n) const { return workspace->acquire(n); }
  // The node as the text format names it: "%name" or "%<id>".
  std::string node_ref(const Node& node) const;
};

using KernelFn = Status (*)(const KernelContext& ctx, const Node& node,
                            std::span<const Tensor* const> inputs, Tensor& out);

// The kernel of `op`, or nullptr if there is none (the completeness test checks every op).
KernelFn kernel_for(OpKind op);

// Runs one node outside an executor: allocates the result, runs the kernel on `threads`
// (a single-threaded pool if null). For tests and tools.
Result<Tensor> run_kernel(const Node& node, std::span<const Tensor* const> inputs,
                          ThreadPool* threads = nullptr);

}  // namespace alpa
