// Flag validators. CLI11's PositiveNumber and NonNegativeNumber accept NaN and infinity (every
// comparison with NaN is false); a number flag here must also be finite.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>

namespace alpa {

CLI::Validator positive_number();
CLI::Validator non_negative_number();
// An integer in [lo, hi]; the message names the bound and why (`what`).
CLI::Validator integer_in(int64_t lo, int64_t hi, const char* what);

// Bounds on counts a user gives, in one place.
inline constexpr int64_t kMaxThreads = 1024;      // CPU threads per process
inline constexpr int64_t kMaxDevicesFlag = 4096;  // devices a plan or program may span

}  // namespace alpa
