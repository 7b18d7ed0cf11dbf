#include "runtime/mesh_runner.h"

#include <algorithm>
#include <utility>

#include "alpa/runtime/blas.h"

namespace alpa {

MeshRunner::MeshRunner(Graph program, MeshRunOptions options, World* world) : options_(options) {
  ALPA_CHECK(options_.mesh[0] >= 1 && options_.mesh[1] >= 1)
      << "MeshRunner mesh must be positive, got [" << options_.mesh[0] << "," << options_.mesh[1]
      << "]";
  const int64_t n = options_.mesh[0] * options_.mesh[1];
  ALPA_CHECK(n <= (int64_t{1} << 16)) << "MeshRunner mesh of " << n << " devices";
  if (world == nullptr) {
    own_world_ = std::make_unique<ThreadWorld>(static_cast<int>(n), options_.timeout_s);
    world = own_world_.get();
  }
  ALPA_CHECK(world->size() == n) << "MeshRunner: a world of " << world->size() << " ranks for " << n
                                 << " devices";
  world_ = world;
  local_ = world_->local_ranks();
  ALPA_CHECK(prepare_mesh_groups(*world_, {PlacedMesh::contiguous(options_.mesh, 0)}).ok())
      << "MeshRunner: preparing the mesh's communicators failed";
  // Settle OpenBLAS's process-wide state before device threads call it concurrently.
  select_blas_kernels();
  set_blas_threads(1);
  devices_.resize(local_.size());
  executors_.reserve(local_.size());
  for (size_t k = 0; k < local_.size(); ++k) {
    const int64_t d = local_[k];
    DeviceContext& dev = devices_[k];
    dev.comm = &world_->comm(static_cast<int>(d));
    dev.mesh = options_.mesh;
    dev.coords = {d / options_.mesh[1], d % options_.mesh[1]};
    ExecutorOptions eo;
    eo.num_threads = options_.threads_per_device;
    eo.fuse_elementwise = options_.fuse_elementwise;
    eo.device = &dev;
    // The last device takes the graph; the others copy it.
    executors_.emplace_back(k + 1 == local_.size() ? std::move(program) : program, eo);
  }
}

MeshRunner::~MeshRunner() = default;
MeshRunner::MeshRunner(MeshRunner&&) noexcept = default;
MeshRunner& MeshRunner::operator=(MeshRunner&&) noexcept = default;

size_t MeshRunner::local_index(int d) const {
  auto it = std::lower_bound(local_.begin(), local_.end(), d);
  ALPA_CHECK(it != local_.end() && *it == d) << "device " << d << " is not run by this process";
  return static_cast<size_t>(it - local_.begin());
}

const DeviceContext& MeshRunner::device(int d) const {
  return devices_[local_index(d)];
}

const ExecutorStats& MeshRunner::stats(int device) const {
  return executors_[local_index(device)].stats();
}

Result<std::vector<std::vector<Tensor>>> MeshRunner::run(std::vector<std::vector<Tensor>> params) {
  const size_t n = local_.size();
  if (params.size() != n)
    return invalid_argument(
        cat("MeshRunner on mesh [", options_.mesh[0], ",", options_.mesh[1], "] runs ", n,
            " devices here, but parameters for ", params.size(), " were passed"),
        "pass one parameter list per local device, device d at (d / n1, d % n1)");
  std::vector<std::vector<Tensor>> outputs(n);
  const Status s = world_->run([&](int rank, Communicator&) -> Status {
    const size_t d = local_index(rank);
    Result<std::vector<Tensor>> r = executors_[d].run(std::move(params[d]));
    if (!r.ok())
      return r.status().with_context(
          cat("device (", devices_[d].coords[0], ",", devices_[d].coords[1], ")"));
    outputs[d] = std::move(r).value();
    return ok_status();
  });
  if (!s.ok()) return s;
  return outputs;
}

}  // namespace alpa
