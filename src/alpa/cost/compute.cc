#include "alpa/cost/compute.h"

#include <algorithm>

namespace alpa {

double compute_time(const DeviceSpec& d, DType dtype, double flops, double bytes) {
  const double peak = peak_flops(d, dtype);
  ALPA_CHECK(peak > 0 && d.memory_bandwidth > 0)
      << "device '" << d.name << "' has no positive peak FLOP/s or memory bandwidth";
  ALPA_CHECK(flops >= 0 && bytes >= 0) << "negative work: flops " << flops << ", bytes " << bytes;
  return std::max(flops / peak, bytes / d.memory_bandwidth);
}

}  // namespace alpa
