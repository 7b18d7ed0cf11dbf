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

// The whole file; errors (kNotFound, kIoError) name the path. Files larger than `max_bytes`
// are refused (a program, plan or cluster file is never gigabytes).
Result<std::string> read_file(const std::string& path, int64_t max_bytes = int64_t{1} << 32);

}  // namespace alpa
