// Reading and writing whole files, the one way every command writes its outputs.
//
// write_file replaces a regular file (or creates one) through a temporary file in the same
// directory, flushed and renamed over the target, so a crash leaves either the old file or the
// new one, never a torn one. A target that exists and is not a regular file (a device such as
// /dev/stdout, a FIFO) is written in place instead of being replaced, and a symbolic link is
// followed (its target is replaced, the link stays).
#pragma once

#include <cstdint>
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

// A regular file open for reading pieces at given offsets (pread: safe from several threads at
// once), for formats read a part at a time (a checkpoint's tensors). The size is the file's when
// it was opened; a read past the end of the file as it is now (truncated since) is an error that
// names the path, never a crash.
class ReadOnlyFile {
 public:
  // The same refusals as read_file: missing, a directory, not a regular file.
  static Result<ReadOnlyFile> open(const std::string& path);
  ReadOnlyFile() = default;
  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ~ReadOnlyFile();

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  // Exactly `count` bytes at `offset` into `out`.
  Status read_at(int64_t offset, char* out, int64_t count) const;

 private:
  std::string path_;
  int fd_ = -1;
  int64_t size_ = 0;
};

}  // namespace alpa
