#include "alpa/runtime/backend.h"

#include "alpa/runtime/blas.h"

namespace alpa {
namespace {

class CpuExecutable final : public Executable {
 public:
  CpuExecutable(Graph program, ExecutorOptions options) : exec_(std::move(program), options) {}
  Result<std::vector<Tensor>> run(std::vector<Tensor> params) override {
    return exec_.run(std::move(params));
  }
  Result<std::vector<Tensor>> run(std::vector<Tensor> params,
                                  const std::vector<const Tensor*>& borrowed) override {
    return exec_.run(std::move(params), borrowed);
  }
  const ExecutorStats& stats() const override { return exec_.stats(); }
  std::vector<ValueId> fused_members(ValueId id) const override { return exec_.fused_members(id); }

 private:
  Executor exec_;
};

class CpuBackend final : public Backend {
 public:
  std::string_view name() const override { return "cpu"; }
  void prepare_thread() override {
    // Settle OpenBLAS's process-wide state before device threads call it concurrently.
    select_blas_kernels();
    set_blas_threads(1);
  }
  std::unique_ptr<Executable> load(Graph program, const DeviceContext& device,
                                   const LoadOptions& options) override {
    ExecutorOptions eo;
    eo.num_threads = options.threads;
    eo.fuse_elementwise = options.fuse_elementwise;
    eo.device = &device;
    return std::make_unique<CpuExecutable>(std::move(program), eo);
  }
  Tensor upload(Tensor host) override { return host; }
  const Tensor& host_view(const Tensor& device, Tensor&) override { return device; }
  void accumulate(Tensor& sum, const Tensor& x) override {
    float* a = sum.data();
    const float* b = x.data();
    for (int64_t i = 0; i < x.size(); ++i) a[i] += b[i];
  }
  void scale(Tensor& x, float s) override {
    float* a = x.data();
    for (int64_t i = 0; i < x.size(); ++i) a[i] *= s;
  }
};

}  // namespace

Backend& cpu_backend() {
  static CpuBackend backend;
  return backend;
}

}  // namespace alpa
