// The text IR parser and verifier (model files): any bytes give a graph or an error.
#include "alpa/ir/text.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alpa::Result<alpa::Graph> g = alpa::parse_graph(alpa::fuzz::text_of(data, size), "fuzz.ir");
  if (g.ok()) (void)alpa::print_graph(*g);
  return 0;
}
