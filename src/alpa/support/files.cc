#include "alpa/support/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace alpa {
namespace {

namespace fs = std::filesystem;

Status write_all(int fd, std::string_view bytes, const std::string& name) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io_error(cat("writing ", name, ": ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return ok_status();
}

}  // namespace

Status write_file(const std::string& path, std::string_view bytes) {
  if (path.empty()) return invalid_argument("no file name to write");
  std::error_code ec;
  // Follow symbolic links (a dangling one too: its target is created).
  fs::path target = path;
  for (int hops = 0; fs::is_symlink(target, ec); ++hops) {
    if (hops == 40) return invalid_argument(cat("cannot write '", path, "': too many links"));
    const fs::path link = fs::read_symlink(target, ec);
    if (ec) return io_error(cat("cannot read the link '", target.string(), "': ", ec.message()));
    target = link.is_absolute() ? link : target.parent_path() / link;
  }
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode))
      return invalid_argument(cat("cannot write '", path, "': it is a directory"),
                              "give a file name");
    const int fd = ::open(target.c_str(), O_WRONLY);
    if (fd < 0) return io_error(cat("cannot open '", path, "': ", std::strerror(errno)));
    Status s = write_all(fd, bytes, path);
    ::close(fd);
    return s;
  }
  const std::string tmp = cat(target.string(), ".tmp.", ::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return io_error(cat("cannot create '", tmp, "': ", std::strerror(errno)));
  Status s = write_all(fd, bytes, tmp);
  if (s.ok() && ::fsync(fd) != 0) s = io_error(cat("flushing '", tmp, "': ", std::strerror(errno)));
  if (::close(fd) != 0 && s.ok()) s = io_error(cat("closing '", tmp, "': ", std::strerror(errno)));
  if (s.ok() && std::rename(tmp.c_str(), target.c_str()) != 0)
    s = io_error(cat("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno)));
  if (!s.ok()) ::unlink(tmp.c_str());
  return s;
}

namespace {

// The file's status when `path` names a regular file; else an error saying what it is.
Status stat_regular(const std::string& path, struct stat& st) {
  if (path.empty() || ::stat(path.c_str(), &st) != 0)
    return not_found(cat("no such file '", path, "'"), "check the path");
  if (S_ISDIR(st.st_mode))
    return invalid_argument(cat("'", path, "' is a directory"), "give a file name");
  if (!S_ISREG(st.st_mode))
    return invalid_argument(cat("'", path, "' is not a regular file (a device, FIFO or socket)"),
                            "give the path of a file");
  return ok_status();
}

}  // namespace

Result<std::string> read_file(const std::string& path, int64_t max_bytes) {
  struct stat st {};
  ALPA_RETURN_IF_ERROR(stat_regular(path, st));
  if (st.st_size > max_bytes)
    return invalid_argument(
        cat("'", path, "' is ", st.st_size, " bytes, more than the ", max_bytes, " bytes allowed"),
        "is it the right file?");
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(cat("cannot read '", path, "'"));
  std::string bytes;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    bytes.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<int64_t>(bytes.size()) > max_bytes)
      return invalid_argument(cat("'", path, "' is larger than ", max_bytes, " bytes"));
  }
  if (in.bad()) return io_error(cat("failed reading '", path, "'"));
  return bytes;
}

Result<ReadOnlyFile> ReadOnlyFile::open(const std::string& path) {
  struct stat st {};
  ALPA_RETURN_IF_ERROR(stat_regular(path, st));
  ReadOnlyFile f;
  f.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd_ < 0) return io_error(cat("cannot open '", path, "': ", std::strerror(errno)));
  if (::fstat(f.fd_, &st) != 0 || !S_ISREG(st.st_mode))
    return io_error(cat("cannot read '", path, "' as a regular file"));
  f.path_ = path;
  f.size_ = static_cast<int64_t>(st.st_size);
  return f;
}

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept
    : path_(std::move(other.path_)), fd_(other.fd_), size_(other.size_) {
  other.fd_ = -1;
}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = other.fd_;
    size_ = other.size_;
    other.fd_ = -1;
  }
  return *this;
}

ReadOnlyFile::~ReadOnlyFile() {
  if (fd_ >= 0) ::close(fd_);
}

Status ReadOnlyFile::read_at(int64_t offset, char* out, int64_t count) const {
  if (fd_ < 0) return failed_precondition("reading a file that is not open");
  int64_t done = 0;
  while (done < count) {
    const ssize_t n = ::pread(fd_, out + done, static_cast<size_t>(count - done),
                              static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      return io_error(
          cat("failed reading '", path_, "' at byte ", offset + done, ": ", std::strerror(errno)));
    if (n == 0)
      return io_error(cat("'", path_, "' ends at byte ", offset + done, ", before the ", count,
                          " bytes at ", offset, " were read"),
                      "the file was truncated or replaced after it was opened; open it again");
    done += n;
  }
  return ok_status();
}

}  // namespace alpa
