// MeshRunner (a test helper): runs one per-device program on every device of a logical 2-D
// mesh, each device given its own parameters: by default one thread per device, collectives
// through its own ThreadWorld (threads_communicator.h); given a World (world.h), the devices that
// world runs in this process (one per process under MPI). The collective and lowering tests
// feed devices values that are not blocks of one tensor, which a Program (runtime/program_runner.h)
// does not express.
//
// SPMD: every device runs the same Graph; only its mesh coordinates differ (device d sits at
// (d / n1, d % n1) and is communicator rank d). Each device has its own Executor (its own
// buffer pool and thread pool), built once, so devices share no mutable state; repeated run()
// calls reuse their buffers. Collective ops in the program must name this runner's mesh.
//
// Errors: a device whose run fails (a wrong parameter, a kernel error) aborts the world; the
// other devices' pending collectives fail instead of hanging, and run() returns the first
// failure as "rank R: device (i,j): <error>". A later run() starts afresh.
//
// Not thread-safe: one run() at a time.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/device.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/sharding/mesh.h"
#include "alpa/support/status.h"

namespace alpa {

struct MeshRunOptions {
  MeshShape mesh{1, 1};          // both extents >= 1
  int threads_per_device = 1;    // each device's kernel threads (ExecutorOptions)
  double timeout_s = 60;         // longest wait for a peer inside a collective
  bool fuse_elementwise = true;  // ExecutorOptions::fuse_elementwise
};

class MeshRunner {
 public:
  // `program` must verify and the mesh must be positive (CHECK). `world`, if given, has one
  // rank per mesh device and outlives the runner; its local ranks are the devices run here.
  MeshRunner(Graph program, MeshRunOptions options, World* world = nullptr);
  ~MeshRunner();
  MeshRunner(const MeshRunner&) = delete;
  MeshRunner& operator=(const MeshRunner&) = delete;
  MeshRunner(MeshRunner&&) noexcept;  // the devices' addresses stay put
  MeshRunner& operator=(MeshRunner&&) noexcept;

  const Graph& program() const { return executors_.front().graph(); }
  const MeshRunOptions& options() const { return options_; }
  int num_devices() const { return static_cast<int>(options_.mesh[0] * options_.mesh[1]); }
  // The devices this process runs, ascending (all of them without a World).
  const std::vector<int>& local_devices() const { return local_; }
  const DeviceContext& device(int d) const;  // d must be local (CHECK)

  // params[k]: local device local_devices()[k]'s parameters (its shards), in
  // program().parameters() order. Returns each local device's outputs, in program().outputs()
  // order.
  Result<std::vector<std::vector<Tensor>>> run(std::vector<std::vector<Tensor>> params);

  // The world the devices run in (its own ThreadWorld without a given one).
  World& world() { return *world_; }

  // Local device d's statistics from the last run.
  const ExecutorStats& stats(int device) const;

 private:
  size_t local_index(int d) const;

  MeshRunOptions options_;
  std::unique_ptr<ThreadWorld> own_world_;
  World* world_ = nullptr;
  std::vector<int> local_;
  std::vector<DeviceContext> devices_;  // per local device; fixed size: executors point into it
  std::vector<Executor> executors_;
};

}  // namespace alpa
