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

Result<std::string> read_file(const std::string& path, int64_t max_bytes) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0)
    return not_found(cat("no such file '", path, "'"), "check the path");
  if (S_ISDIR(st.st_mode))
    return invalid_argument(cat("'", path, "' is a directory"), "give a file name");
  if (!S_ISREG(st.st_mode))
    return invalid_argument(cat("'", path, "' is not a regular file (a device, FIFO or socket)"),
                            "give the path of a file");
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

}  // namespace alpa
