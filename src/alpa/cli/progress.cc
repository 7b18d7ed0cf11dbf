#include "alpa/cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include "alpa/cli/format.h"

namespace alpa {

bool stderr_is_terminal() {
  return isatty(STDERR_FILENO) == 1;
}

ProgressLine::ProgressLine(int total, bool enabled)
    : total_(total), enabled_(enabled), start_(std::chrono::steady_clock::now()) {}

ProgressLine::~ProgressLine() {
  finish();
}

void ProgressLine::update(int done, const std::string& status) {
  if (!enabled_) return;
  constexpr int kWidth = 24;
  const int filled = total_ > 0 ? done * kWidth / total_ : kWidth;
  std::string bar(static_cast<size_t>(kWidth), ' ');
  for (int i = 0; i < filled; ++i) bar[i] = '=';
  if (filled < kWidth) bar[filled] = '>';
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  std::string eta;
  if (done > 0 && done < total_) eta = "  eta " + format_seconds(elapsed / done * (total_ - done));
  std::fprintf(stderr, "\r[%s] %d/%d  %s%s\x1b[K", bar.c_str(), done, total_, status.c_str(),
               eta.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void ProgressLine::finish() {
  if (drawn_) {
    std::fprintf(stderr, "\r\x1b[K");
    std::fflush(stderr);
    drawn_ = false;
  }
}

}  // namespace alpa
