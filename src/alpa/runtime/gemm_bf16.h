// bf16 GEMM with f32 accumulation on oneDNN's matmul (internal to the runtime).
//
// The runtime stores every value in f32; a bf16 operand is an f32 holding a bf16-representable
// number (mixed_precision's convert made it so). bf16_batched_gemm packs each operand into a
// dense bf16 buffer (round to nearest even, exact for such values; vectorised), keeping its
// orientation (row-major or transposed), and runs oneDNN's matmul primitive with bf16 source and
// weights and an f32 destination: on a CPU with avx512_bf16 the products are vdpbf16ps
// instructions (two bf16 multiply-adds per f32 lane), with AMX tile instructions where present.
//
// Threads: oneDNN here is built on OpenMP; every call runs single-threaded inside it (the
// calling thread's OpenMP thread count is set to 1) and the work is split across the
// executor's ThreadPool as parallel_gemm splits an sgemm: batches of products one chunk per
// thread, or one product in tiles of C. So one executor per device thread also works, and
// results depend only on the thread count. Primitives are created once per shape and layout
// and cached; their scratchpads are per thread.
//
// Where oneDNN has no bf16 kernel for this CPU (creating the primitive fails or gives its
// reference implementation) the same operands are rounded to bf16 in f32 and multiplied by
// sgemm: the same numbers up to summation order, without the speed.
#pragma once

#include <cblas.h>

#include <cstdint>
#include <string>

#include "alpa/runtime/kernels.h"

namespace alpa::kernels {

// One operand of a batch of products: product i reads the matrix at data + offsets[i] (a
// [rows, cols] matrix as cblas describes it: trans, leading dimension ld).
struct GemmOperand {
  const float* data = nullptr;
  CBLAS_TRANSPOSE trans = CblasNoTrans;
  int64_t ld = 0;
  const int64_t* offsets = nullptr;  // count entries
};

// c[i] = round_bf16(a[i]) [m, k] x round_bf16(b[i]) [k, n] for i < count, accumulated in f32;
// c is dense [count, m, n].
void bf16_batched_gemm(const KernelContext& ctx, int64_t count, int64_t m, int64_t n, int64_t k,
                       const GemmOperand& a, const GemmOperand& b, float* c);

// Whether bf16 products run on an optimised oneDNN kernel on this CPU, and its name
// (e.g. "brg:avx512_core_bf16"); "sgemm on bf16-rounded operands" otherwise.
bool bf16_gemm_native();
std::string bf16_gemm_kernel();

}  // namespace alpa::kernels
