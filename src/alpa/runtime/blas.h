// BLAS (OpenBLAS) configuration for the CPU runtime: thread count and kernel selection.
//
// Debian 12's OpenBLAS 0.3.21 is a DYNAMIC_ARCH build that picks its kernels from the CPU
// model at load time. It does not know recent Xeon models (e.g. family 6 model 207) and falls
// back to its Prescott (SSE3) kernels, about 8x slower at SGEMM than its SkylakeX (AVX-512)
// kernels on the same machine. select_blas_kernels() detects that case and re-runs OpenBLAS's
// own core selection with OPENBLAS_CORETYPE set to the best core the CPU supports. It does
// nothing when the user set OPENBLAS_CORETYPE, when OpenBLAS already chose a modern core, or
// when the library is not a DYNAMIC_ARCH OpenBLAS. It runs once per process; call it before
// any thread uses BLAS (the Executor constructor does).
#pragma once

#include <string>

namespace alpa {

// Switches OpenBLAS to AVX-512 / AVX2 kernels where it fell back to old ones (see above).
// Returns the core name in use afterwards. Thread-safe, idempotent.
std::string select_blas_kernels();

// The core whose kernels OpenBLAS uses ("SkylakeX", "Haswell", "Prescott", ...).
std::string blas_core_name();

// Sets the number of threads OpenBLAS uses (a process-wide setting) if it differs.
void set_blas_threads(int num_threads);

}  // namespace alpa
