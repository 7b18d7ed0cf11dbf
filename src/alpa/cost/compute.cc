#include "alpa/cost/compute.h"

#include <algorithm>

namespace alpa {

double compute_time(const DeviceSpec& d, DType dtype, double flops, double bytes) {
  const double peak = peak_flops(d, dtype);
  ALPA_CHECK(peak > 0 && d.memory_bandwidth > 0)
      << "device '" << d.name << "' has no positive peak FLOP/s or memory bandwidth";
  ALPA_CHECK(flops >= 0 && bytes >= 0) << "negative work: flops " << flops << ", bytes " << bytes;
  // A profiled device reaches only part of its peak on small ops (alpa profile's table); past
  // the largest measured op the efficiency stays at its last value.
  const auto& t = d.gemm_efficiency;
  const double eff = t.empty() || flops <= 0 ? 1.0
                     : flops >= t.back().x   ? std::clamp(t.back().y, 0.01, 1.0)
                                             : std::clamp(interpolate(t, flops), 0.01, 1.0);
  return std::max(flops / (peak * eff), bytes / d.memory_bandwidth);
}

}  // namespace alpa
