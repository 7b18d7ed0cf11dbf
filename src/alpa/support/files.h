// Reading and writing whole files, the one way every command writes its outputs.
//
// write_file replaces a regular file (or creates one) through a temporary file in the same
// directory, flushed and renamed over the target, so a crash leaves either the old file or the
// new one, never a torn one. A target that exists and is not a regular file (a device such as
// /dev/stdout, a FIFO) is written in place instead of being replaced, and a symbolic link is
// followed (its target is replaced, the link stays).
#pragma once

#include <string>
#include <string_view>

#include "alpa/support/status.h"

namespace alpa {

Status write_file(const std::string& path, std::string_view bytes);

// The whole of a regular file; errors name the path. A directory, device, FIFO or socket is
// refused (reading /dev/zero would never end), and so is a file larger than `max_bytes` (a
// model, plan, program or cluster file is never that large), before it is read.
inline constexpr int64_t kMaxTextFileBytes = int64_t{1} << 30;
Result<std::string> read_file(const std::string& path, int64_t max_bytes = kMaxTextFileBytes);

}  // namespace alpa
