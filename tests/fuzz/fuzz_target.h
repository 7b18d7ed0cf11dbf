// One fuzz target per reader of user files. Each target's .cc defines
// LLVMFuzzerTestOneInput; built with clang's libFuzzer (preset `fuzz`, scripts/fuzz.sh) it
// fuzzes under ASan and UBSan, and built with the regular suite it is linked with
// replay_main.cc and replays its corpus (tests/fuzz/corpus/<target>: seeds and every input
// that once crashed), so a fixed crash stays fixed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace alpa::fuzz {
inline std::string_view text_of(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}
}  // namespace alpa::fuzz
