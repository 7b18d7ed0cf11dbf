// Executor: runs a Graph on this machine's CPU, one node after another in definition order.
//
// Invariants of a run:
// - Every intermediate value is freed right after its last use (compute_last_use) and its
//   buffer goes back to a size-keyed pool, so repeated run() calls reuse buffers instead of
//   calling malloc (the pool is trimmed to what one run needs).
// - An elementwise op whose operand dies at that op and has the result's element count writes
//   its result into that operand's buffer (in place); a reshape of a dying operand just
//   relabels it. Parameters passed in are owned by the run and may be reused the same way.
// - Results are deterministic: a fixed graph, inputs and num_threads give bit-identical
//   outputs on every run.
// - User errors (wrong parameter count or type, an out-of-range gather/scatter index) come
//   back as a Status naming the parameter or node; the executor never aborts on them.
//
// A per-device program with collectives runs with ExecutorOptions::device set (SpmdRunner
// builds one Executor per device); collectives execute in definition order, like every node.
//
// Not thread-safe: one run() at a time per Executor. Several Executors may run concurrently
// on different threads, but they share OpenBLAS's process-wide thread count.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/buffer_pool.h"
#include "alpa/runtime/device.h"
#include "alpa/runtime/fusion.h"
#include "alpa/runtime/kernels.h"
#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"
#include "alpa/support/thread_pool.h"

namespace alpa {

struct ExecutorOptions {
  // Threads for kernel loops and GEMM tiles; 0 = hardware concurrency. OpenBLAS itself runs
  // single-threaded (gemm.h).
  int num_threads = 1;
  // Fuse chains of elementwise ops, splat constants, iotas and broadcasts into one loop
  // (fusion.h). Changes no value; off only to measure its effect.
  bool fuse_elementwise = true;
  // The device a per-device (SPMD) program runs on, handed to collective kernels; it must
  // outlive the executor. Null: a single-device program (collectives of one member only).
  const DeviceContext* device = nullptr;
};

struct ExecutorStats {
  // Peak of live intermediate fp32 bytes during the last run: every computed value from its
  // definition to its last use (outputs to the end), plus kernel scratch memory; parameters
  // passed in are excluded.
  int64_t peak_live_bytes = 0;
  int64_t buffer_allocations = 0;       // buffers newly allocated in the last run (the rest
                                        // came from the pool; outputs leave it each run)
  double seconds = 0;                   // wall time of the last run
  std::vector<double> seconds_by_op;    // indexed by OpKind (kNumOps entries), last run;
                                        // a fused program counts under its root's op
  std::vector<double> seconds_by_node;  // indexed by node id, last run (0 for skipped nodes)
  double seconds_fused = 0;             // of which in fused programs
  int64_t fused_programs = 0;           // programs in the plan
  int64_t fused_nodes = 0;              // nodes computed inside programs (not materialised)
};

class Executor {
 public:
  // `graph` must verify (CHECK).
  explicit Executor(Graph graph, ExecutorOptions options = {});
  ~Executor();
  Executor(Executor&&) noexcept;
  Executor& operator=(Executor&&) noexcept;

  const Graph& graph() const { return graph_; }
  int num_threads() const;

  // params: one tensor per graph().parameters(), in order, of exactly the parameter's type.
  // Returns one tensor per graph().outputs(), in order.
  Result<std::vector<Tensor>> run(std::vector<Tensor> params);
  // As run(), with params[k] read from *borrowed[k] where that is set (params[k] then empty):
  // tensors the caller keeps across runs (a device's weights), neither consumed nor written,
  // so nothing is copied in. `borrowed` is empty or one entry per parameter.
  Result<std::vector<Tensor>> run(std::vector<Tensor> params,
                                  const std::vector<const Tensor*>& borrowed);

  const ExecutorStats& stats() const { return stats_; }
  // Nodes computed by the fused program rooted at `id` (just `id` if it is not a root).
  std::vector<ValueId> fused_members(ValueId id) const;

 private:
  // Per node, decided once from the graph.
  struct Step {
    KernelFn kernel = nullptr;
    ValueId reuse = kNoValue;    // operand whose buffer becomes the result (in place / reshape)
    bool relabel = false;        // reshape of a dying operand: no kernel call at all
    int param_index = -1;        // parameters: position in the params vector
    int program = -1;            // fused program rooted here (FusionPlan::programs)
    bool skip = false;           // computed inside a program, or an unneeded generator
    std::vector<ValueId> frees;  // values whose last use is this node (distinct, not `reuse`)
  };

  Status check_params(const std::vector<Tensor>& params,
                      const std::vector<const Tensor*>& borrowed) const;

  Graph graph_;
  ExecutorOptions options_;
  std::vector<Step> steps_;
  FusionPlan fusion_;
  std::vector<ValueId> param_ids_;
  std::unique_ptr<ThreadPool> threads_;
  std::unique_ptr<BufferPool> pool_;
  ExecutorStats stats_;
};

}  // namespace alpa
