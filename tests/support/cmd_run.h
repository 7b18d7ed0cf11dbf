// Running a command's entry point (run_train, run_plan, ...) in-process: its exit code and
// what it printed.
#pragma once

#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace alpa::test_support {

struct CmdRun {
  int code;
  std::string out, err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

template <typename Flags, typename Fn>
CmdRun run(Fn fn, const Flags& flags) {
  std::ostringstream out, err;
  const int code = fn(flags, out, err);
  return {code, out.str(), err.str()};
}

}  // namespace alpa::test_support
