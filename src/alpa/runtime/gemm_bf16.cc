#include "alpa/runtime/gemm_bf16.h"

#include <algorithm>
#include <array>
#include <bit>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

#include "alpa/runtime/dtype_round.h"
#include "alpa/runtime/gemm.h"
#include "alpa/support/check.h"

// libgomp's (oneDNN's OpenMP runtime); declared here so that no omp.h is needed (clang has none).
extern "C" void omp_set_num_threads(int num_threads);

namespace alpa::kernels {
namespace {

using Dims = dnnl::memory::dims;
using DataType = dnnl::memory::data_type;

// Shape and layout of one oneDNN matmul: [batch, m, k] x [batch, k, n] -> [batch, m, n].
struct Key {
  std::array<int64_t, 4> dims;     // batch, m, n, k
  std::array<int64_t, 9> strides;  // a, b, c: batch, row, col
  friend bool operator<(const Key& x, const Key& y) {
    return x.dims != y.dims ? x.dims < y.dims : x.strides < y.strides;
  }
};

struct Primitive {
  dnnl::matmul matmul;
  dnnl::memory::desc a, b, c, scratch;
  std::string impl;  // oneDNN's implementation name
};

dnnl::engine& engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

// oneDNN's OpenMP parallel regions stay at one thread in every thread that calls it.
void single_threaded_dnnl() {
  thread_local bool done = false;
  if (!done) {
    omp_set_num_threads(1);
    done = true;
  }
}

Primitive make_primitive(const Key& key) {
  const auto& d = key.dims;
  const auto& s = key.strides;
  Primitive p;
  p.a = dnnl::memory::desc(Dims{d[0], d[1], d[3]}, DataType::bf16, Dims{s[0], s[1], s[2]});
  p.b = dnnl::memory::desc(Dims{d[0], d[3], d[2]}, DataType::bf16, Dims{s[3], s[4], s[5]});
  p.c = dnnl::memory::desc(Dims{d[0], d[1], d[2]}, DataType::f32, Dims{s[6], s[7], s[8]});
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(p.a, p.b, p.c), attr, engine());
  p.scratch = pd.scratchpad_desc();
  p.impl = pd.impl_info_str();
  p.matmul = dnnl::matmul(pd);
  return p;
}

const Primitive& primitive(const Key& key) {
  static std::mutex mu;
  static std::map<Key, std::unique_ptr<Primitive>> cache;
  std::lock_guard<std::mutex> lock(mu);
  std::unique_ptr<Primitive>& p = cache[key];
  if (!p) p = std::make_unique<Primitive>(make_primitive(key));
  return *p;
}

// The implementation oneDNN picks for a typical product; empty if it has none for bf16.
std::string probe_kernel() {
  try {
    single_threaded_dnnl();
    const Key key{{1, 64, 64, 64}, {4096, 64, 1, 4096, 64, 1, 4096, 64, 1}};
    return make_primitive(key).impl;
  } catch (const dnnl::error&) {
    return {};
  }
}

const std::string& native_kernel() {
  static const std::string name = [] {
    std::string n = probe_kernel();
    return n.find("ref") != std::string::npos ? std::string() : n;
  }();
  return name;
}

void run(const Key& key, const uint16_t* a, const uint16_t* b, float* c) {
  single_threaded_dnnl();
  const Primitive& p = primitive(key);
  thread_local std::vector<uint8_t> scratch;
  thread_local std::unique_ptr<dnnl::stream> stream;
  if (!stream) stream = std::make_unique<dnnl::stream>(engine());
  scratch.resize(std::max<size_t>(p.scratch.get_size(), 1));
  dnnl::engine& e = engine();
  dnnl::memory am(p.a, e, const_cast<uint16_t*>(a)), bm(p.b, e, const_cast<uint16_t*>(b));
  dnnl::memory cm(p.c, e, c), sm(p.scratch, e, scratch.data());
  p.matmul.execute(
      *stream,
      {{DNNL_ARG_SRC, am}, {DNNL_ARG_WEIGHTS, bm}, {DNNL_ARG_DST, cm}, {DNNL_ARG_SCRATCHPAD, sm}});
  stream->wait();
}

inline uint16_t to_bf16_bits(float x) {
  return static_cast<uint16_t>(std::bit_cast<uint32_t>(detail::round_bf16(x)) >> 16);
}

// A packed operand: count dense matrices of rows x cols (the stored orientation).
struct Packed {
  uint16_t* data = nullptr;
  int64_t rows = 0, cols = 0;
};

Packed pack(const KernelContext& ctx, int64_t count, int64_t rows, int64_t cols,
            const GemmOperand& op) {
  Packed p;
  p.rows = op.trans == CblasNoTrans ? rows : cols;
  p.cols = op.trans == CblasNoTrans ? cols : rows;
  const int64_t total = count * p.rows * p.cols;
  p.data = reinterpret_cast<uint16_t*>(ctx.scratch((total + 1) / 2));
  const int64_t prow = p.rows, pcol = p.cols;
  ctx.threads->parallel_for(count * prow, std::max<int64_t>(1, 4096 / std::max<int64_t>(pcol, 1)),
                            [&](int64_t r0, int64_t r1) {
                              for (int64_t r = r0; r < r1; ++r) {
                                const int64_t i = r / prow, row = r % prow;
                                const float* src = op.data + op.offsets[i] + row * op.ld;
                                uint16_t* dst = p.data + r * pcol;
                                for (int64_t j = 0; j < pcol; ++j) dst[j] = to_bf16_bits(src[j]);
                              }
                            });
  return p;
}

// Rounds operand copies to bf16 in f32 and multiplies them with sgemm (no native bf16 kernel).
void fallback(const KernelContext& ctx, int64_t count, int64_t m, int64_t n, int64_t k,
              const Packed& pa, CBLAS_TRANSPOSE ta, const Packed& pb, CBLAS_TRANSPOSE tb,
              float* c) {
  auto widen = [&](const Packed& p) {
    const int64_t total = count * p.rows * p.cols;
    float* f = ctx.scratch(total);
    ctx.threads->parallel_for(total, 4096, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        f[i] = std::bit_cast<float>(static_cast<uint32_t>(p.data[i]) << 16);
    });
    return f;
  };
  const float* fa = widen(pa);
  const float* fb = widen(pb);
  batched_gemm(ctx, count, [&](int64_t i, const KernelContext& sub) {
    parallel_gemm(sub, ta, tb, m, n, k, fa + i * m * k, pa.cols, fb + i * k * n, pb.cols, 0.0f,
                  c + i * m * n, n);
  });
}

// Batch, row and column strides of a packed operand seen as [count, rows, cols] of the product.
std::array<int64_t, 3> strides_of(const Packed& p, CBLAS_TRANSPOSE t) {
  const int64_t mat = p.rows * p.cols;
  return t == CblasNoTrans ? std::array<int64_t, 3>{mat, p.cols, 1}
                           : std::array<int64_t, 3>{mat, 1, p.cols};
}

// Below this many multiply-adds a product is not split across threads.
constexpr int64_t kSplitWork = int64_t{1} << 20;

}  // namespace

bool bf16_gemm_native() {
  return !native_kernel().empty();
}

std::string bf16_gemm_kernel() {
  return bf16_gemm_native() ? native_kernel() : "sgemm on bf16-rounded operands";
}

void bf16_batched_gemm(const KernelContext& ctx, int64_t count, int64_t m, int64_t n, int64_t k,
                       const GemmOperand& a, const GemmOperand& b, float* c) {
  if (count == 0 || m == 0 || n == 0) return;
  const Packed pa = pack(ctx, count, m, k, a);
  const Packed pb = pack(ctx, count, k, n, b);
  if (!bf16_gemm_native()) {
    fallback(ctx, count, m, n, k, pa, a.trans, pb, b.trans, c);
    return;
  }
  const std::array<int64_t, 3> sa = strides_of(pa, a.trans), sb = strides_of(pb, b.trans);
  const std::array<int64_t, 3> sc = {m * n, n, 1};
  auto key = [&](int64_t nb, int64_t rows, int64_t cols) {
    return Key{{nb, rows, cols, k},
               {sa[0], sa[1], sa[2], sb[0], sb[1], sb[2], sc[0], sc[1], sc[2]}};
  };
  const int threads = ctx.threads->num_threads();
  if (threads <= 1 || count * m * n * k < kSplitWork) {
    run(key(count, m, n), pa.data, pb.data, c);
    return;
  }
  if (count >= threads) {  // one chunk of products per thread
    const int64_t chunk = (count + threads - 1) / threads;
    ctx.threads->parallel_for((count + chunk - 1) / chunk, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t lo = t * chunk, len = std::min(chunk, count - lo);
        run(key(len, m, n), pa.data + lo * sa[0], pb.data + lo * sb[0], c + lo * sc[0]);
      }
    });
    return;
  }
  // One tile of every product's C per thread, along the longer side, in multiples of 16.
  const bool split_n = n >= m;
  const int64_t extent = split_n ? n : m;
  const int64_t tile = (extent / threads + 15) / 16 * 16;
  ctx.threads->parallel_for((extent + tile - 1) / tile, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t lo = t * tile, len = std::min(tile, extent - lo);
      if (split_n)
        run(key(count, m, len), pa.data, pb.data + lo * sb[2], c + lo);
      else
        run(key(count, len, n), pa.data + lo * sa[1], pb.data, c + lo * n);
    }
  });
}

}  // namespace alpa::kernels
