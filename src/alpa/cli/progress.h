// A one-line progress display on stderr ("[=====>    ] 12/50 loss 2.345 eta 4.1 s"),
// redrawn in place; shown only when stderr is a terminal so logs and pipes stay clean.
#pragma once

#include <chrono>
#include <string>

namespace alpa {

class ProgressLine {
 public:
  ProgressLine(int total, bool enabled);
  ~ProgressLine();
  void update(int done, const std::string& status);
  void finish();

 private:
  int total_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_;
};

// True when stderr is a terminal.
bool stderr_is_terminal();

}  // namespace alpa
