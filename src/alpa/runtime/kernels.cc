// The kernel table and the helpers every kernel family shares.
#include "alpa/runtime/kernels.h"

#include <array>
#include <cstring>

#include "alpa/runtime/blas.h"
#include "alpa/runtime/kernel_util.h"

namespace alpa {

float* Workspace::acquire(int64_t n) {
  Buffer b = pool_ != nullptr ? pool_->acquire(n) : Buffer(n);
  float* p = b.data();
  held_bytes_ += n * static_cast<int64_t>(sizeof(float));
  held_.push_back(std::move(b));
  return p;
}

void Workspace::release_all() {
  for (Buffer& b : held_) {
    if (pool_ != nullptr) pool_->release(std::move(b));
  }
  held_.clear();
  held_bytes_ = 0;
}

std::string KernelContext::node_ref(const Node& node) const {
  if (graph != nullptr && id != kNoValue) return value_ref(*graph, id);
  return node.name.empty() ? std::string("%<unnamed ") + std::string(op_name(node.op)) + ">"
                           : "%" + node.name;
}

namespace {

using KernelTable = std::array<KernelFn, kNumOps>;

KernelTable build_table() {
  KernelTable t{};
  kernels::register_elementwise_kernels(t.data());
  kernels::register_movement_kernels(t.data());
  kernels::register_reduce_kernels(t.data());
  kernels::register_dot_kernels(t.data());
  kernels::register_conv_kernels(t.data());
  kernels::register_indexing_kernels(t.data());
  kernels::register_collective_kernels(t.data());
  return t;
}

}  // namespace

KernelFn kernel_for(OpKind op) {
  static const KernelTable kTable = build_table();
  const int i = static_cast<int>(op);
  return i >= 0 && i < kNumOps ? kTable[static_cast<size_t>(i)] : nullptr;
}

Result<Tensor> run_kernel(const Node& node, std::span<const Tensor* const> inputs,
                          ThreadPool* threads) {
  select_blas_kernels();
  ThreadPool local(1);
  Workspace workspace;
  KernelContext ctx{threads != nullptr ? threads : &local, &workspace, nullptr, kNoValue};
  const KernelFn fn = kernel_for(node.op);
  if (fn == nullptr) return internal_error(cat("no kernel for op ", op_name(node.op)));
  Tensor out = Tensor::uninitialized(node.type);
  ALPA_RETURN_IF_ERROR(fn(ctx, node, inputs, out));
  return out;
}

namespace kernels {

std::vector<int64_t> row_major_strides(const Shape& shape) {
  std::vector<int64_t> s(shape.size());
  int64_t acc = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

void copy(const KernelContext& ctx, const float* in, float* out, int64_t n) {
  if (in == out || n <= 0) return;
  parallel_for(ctx, n, kCopyGrain, [&](int64_t b, int64_t e) {
    std::memcpy(out + b, in + b, static_cast<size_t>(e - b) * sizeof(float));
  });
}

void fill(const KernelContext& ctx, float* out, int64_t n, float v) {
  parallel_for(ctx, n, kCopyGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) out[i] = v;
  });
}

}  // namespace kernels
}  // namespace alpa
