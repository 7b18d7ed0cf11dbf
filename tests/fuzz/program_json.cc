// Program files (alpa-program/1): any bytes give a verified program or an error; a program
// prints back and its instruction lists are walked.
#include "alpa/program/io.h"
#include "alpa/program/verify.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alpa::Result<alpa::Program> p =
      alpa::program_from_json(alpa::fuzz::text_of(data, size), "fuzz.json");
  if (p.ok()) {
    (void)alpa::program_to_json(*p);
    for (int d = 0; d < p->num_devices; ++d) (void)alpa::device_instructions(*p, d);
  }
  return 0;
}
