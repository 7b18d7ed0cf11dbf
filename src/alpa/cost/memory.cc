#include "alpa/cost/memory.h"

#include <cstdio>

namespace alpa {

std::string to_string(const MemoryBreakdown& m) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "%.2f GB = weights %.2f + accumulators %.2f + %d x stash %.2f + working %.2f",
                m.total() / 1e9, m.weights / 1e9, m.accumulators / 1e9, m.in_flight,
                m.stash_per_micro_batch / 1e9, m.working / 1e9);
  return buf;
}

}  // namespace alpa
