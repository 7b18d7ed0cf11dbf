// Cluster files: any bytes give a validated cluster or an error; a cluster sizes and prints.
#include "alpa/cluster/cluster.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alpa::Result<alpa::Cluster> c =
      alpa::cluster_from_json(alpa::fuzz::text_of(data, size), "fuzz.json");
  if (c.ok()) {
    (void)alpa::cluster_to_json(*c);
    (void)alpa::with_devices(*c, 8);
  }
  return 0;
}
