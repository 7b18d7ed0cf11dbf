// Plan files (alpa-plan/1): any bytes give a plan or an error; a plan prints back.
#include "alpa/plan/plan.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alpa::Result<alpa::Plan> p = alpa::plan_from_json(alpa::fuzz::text_of(data, size), "fuzz.json");
  if (p.ok()) (void)alpa::plan_to_json(*p);
  return 0;
}
