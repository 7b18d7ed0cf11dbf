#include "alpa/runtime/spmd_runner.h"

#include <utility>

#include "alpa/runtime/blas.h"

namespace alpa {

SpmdRunner::SpmdRunner(Graph program, SpmdOptions options) : options_(options) {
  ALPA_CHECK(options_.mesh[0] >= 1 && options_.mesh[1] >= 1)
      << "SpmdRunner mesh must be positive, got [" << options_.mesh[0] << "," << options_.mesh[1]
      << "]";
  const int64_t n = options_.mesh[0] * options_.mesh[1];
  ALPA_CHECK(n <= (int64_t{1} << 16)) << "SpmdRunner mesh of " << n << " devices";
  world_ = std::make_unique<ThreadWorld>(static_cast<int>(n), options_.timeout_s);
  // Settle OpenBLAS's process-wide state before device threads call it concurrently.
  select_blas_kernels();
  set_blas_threads(1);
  devices_.resize(static_cast<size_t>(n));
  executors_.reserve(static_cast<size_t>(n));
  for (int64_t d = 0; d < n; ++d) {
    DeviceContext& dev = devices_[static_cast<size_t>(d)];
    dev.comm = &world_->comm(static_cast<int>(d));
    dev.mesh = options_.mesh;
    dev.coords = {d / options_.mesh[1], d % options_.mesh[1]};
    ExecutorOptions eo;
    eo.num_threads = options_.threads_per_device;
    eo.fuse_elementwise = options_.fuse_elementwise;
    eo.device = &dev;
    // The last device takes the graph; the others copy it.
    executors_.emplace_back(d + 1 == n ? std::move(program) : program, eo);
  }
}

SpmdRunner::~SpmdRunner() = default;
SpmdRunner::SpmdRunner(SpmdRunner&&) noexcept = default;
SpmdRunner& SpmdRunner::operator=(SpmdRunner&&) noexcept = default;

const DeviceContext& SpmdRunner::device(int d) const {
  ALPA_CHECK(d >= 0 && d < num_devices()) << "device " << d << " outside " << num_devices();
  return devices_[static_cast<size_t>(d)];
}

const ExecutorStats& SpmdRunner::stats(int device) const {
  ALPA_CHECK(device >= 0 && device < num_devices())
      << "device " << device << " outside " << num_devices();
  return executors_[static_cast<size_t>(device)].stats();
}

Result<std::vector<std::vector<Tensor>>> SpmdRunner::run(std::vector<std::vector<Tensor>> params) {
  const int n = num_devices();
  if (static_cast<int>(params.size()) != n)
    return invalid_argument(
        cat("SpmdRunner on mesh [", options_.mesh[0], ",", options_.mesh[1], "] runs ", n,
            " devices, but parameters for ", params.size(), " were passed"),
        "pass one parameter list per device, device d at (d / n1, d % n1)");
  std::vector<std::vector<Tensor>> outputs(static_cast<size_t>(n));
  const Status s = world_->run([&](int rank, Communicator&) -> Status {
    const size_t d = static_cast<size_t>(rank);
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
