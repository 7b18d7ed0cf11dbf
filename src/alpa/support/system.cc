#include "alpa/support/system.h"

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <string>

namespace alpa {
namespace {

// A "Key:   123 kB" line of a /proc file, in bytes; -1 if absent.
int64_t proc_kb(const char* file, const char* key) {
  std::ifstream in(file);
  std::string line;
  const size_t n = std::strlen(key);
  while (std::getline(in, line))
    if (line.compare(0, n, key) == 0 && line.size() > n && line[n] == ':')
      return std::strtoll(line.c_str() + n + 1, nullptr, 10) * 1024;
  return -1;
}

}  // namespace

int64_t available_memory_bytes() {
  int64_t avail = proc_kb("/proc/meminfo", "MemAvailable");
  auto cap = [&](int resource, const char* used_key) {
    struct rlimit lim {};
    if (::getrlimit(resource, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return;
    const int64_t used = proc_kb("/proc/self/status", used_key);
    const int64_t room = static_cast<int64_t>(lim.rlim_cur) - (used > 0 ? used : 0);
    avail = avail < 0 ? room : std::min(avail, room);
  };
  cap(RLIMIT_AS, "VmSize");
  cap(RLIMIT_DATA, "VmData");
  return avail < 0 ? -1 : std::max<int64_t>(avail, 0);
}

void exit_out_of_memory(int64_t bytes) {
  // No allocation here: the heap is what failed.
  char line[160];
  if (bytes >= 0)
    std::snprintf(line, sizeof line, "error: out of memory allocating %.3g GB\n",
                  static_cast<double>(bytes) / 1e9);
  else
    std::snprintf(line, sizeof line, "error: out of memory\n");
  (void)!::write(2, line, std::strlen(line));
  const char* hint =
      "hint: the run needs more memory than this machine (or its ulimit) allows: use a smaller "
      "model or --batch, or more processes and hosts (--backend mpi)\n";
  (void)!::write(2, hint, std::strlen(hint));
  std::_Exit(1);
}

void install_out_of_memory_handler() {
  std::set_new_handler([] { exit_out_of_memory(-1); });
}

}  // namespace alpa
