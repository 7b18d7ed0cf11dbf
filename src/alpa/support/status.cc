#include "alpa/support/status.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace alpa {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kParseError: return "parse error";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kFailedPrecondition: return "failed precondition";
    case StatusCode::kResourceExhausted: return "resource exhausted";
    case StatusCode::kIoError: return "i/o error";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  std::string s = message_;
  if (!hint_.empty()) s += "\nhint: " + hint_;
  return s;
}

Status Status::with_context(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_, hint_);
}

namespace detail {

CheckFailure::CheckFailure(const char* file, int line, const char* condition) {
  os_ << "alpa internal error at " << file << ":" << line << ": check failed: " << condition << " ";
}

CheckFailure::~CheckFailure() {
  std::cerr << os_.str() << std::endl;
  std::abort();
}

}  // namespace detail
}  // namespace alpa
