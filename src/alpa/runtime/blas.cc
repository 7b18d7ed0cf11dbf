#include "alpa/runtime/blas.h"

#include <cblas.h>

#include <cstdlib>
#include <mutex>
#include <string_view>

// Present only in DYNAMIC_ARCH builds of OpenBLAS; weak so that other builds still link.
extern "C" __attribute__((weak)) void gotoblas_dynamic_init(void);
extern "C" __attribute__((weak)) void gotoblas_dynamic_quit(void);

namespace alpa {
namespace {

// Cores older than Haswell: OpenBLAS's fallbacks on CPUs it does not recognise.
bool is_old_core(std::string_view name) {
  for (std::string_view old : {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom",
                               "Katmai", "Coppermine", "Northwood", "Banias", "Unknown"})
    if (name == old) return true;
  return false;
}

const char* best_core_for_cpu() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq"))
    return "SkylakeX";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "Haswell";
#endif
  return nullptr;
}

}  // namespace

std::string blas_core_name() {
  const char* name = openblas_get_corename();
  return name != nullptr ? std::string(name) : std::string();
}

std::string select_blas_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (gotoblas_dynamic_init == nullptr || gotoblas_dynamic_quit == nullptr) return;
    if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's choice stands
    if (!is_old_core(blas_core_name())) return;
    const char* core = best_core_for_cpu();
    if (core == nullptr) return;
    // OpenBLAS's own selection path, as if OPENBLAS_CORETYPE had been set at load time.
    gotoblas_dynamic_quit();
    setenv("OPENBLAS_CORETYPE", core, 1);
    gotoblas_dynamic_init();
    unsetenv("OPENBLAS_CORETYPE");
  });
  return blas_core_name();
}

void set_blas_threads(int num_threads) {
  if (openblas_get_num_threads() != num_threads) openblas_set_num_threads(num_threads);
}

}  // namespace alpa
