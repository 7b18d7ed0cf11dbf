// Status and Result<T>: the user-error channel.
//
// Every error a user can cause (bad model text, bad plan, bad flag, infeasible request) comes
// back as a Status with a message that names what is wrong and, where possible, a hint that
// says how to fix it. Internal invariants use ALPA_CHECK (check.h) instead. Library code never
// calls exit().
#pragma once

#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

#include "alpa/support/check.h"

namespace alpa {

enum class StatusCode : uint8_t {
  kOk,
  kInvalidArgument,     // a malformed value: flag, attribute, shape, plan field
  kParseError,          // text that does not parse (location in the message)
  kNotFound,            // a file, model, size or name that does not exist
  kFailedPrecondition,  // a request that is well-formed but cannot be done as asked
  kResourceExhausted,   // does not fit memory / budget
  kIoError,             // reading or writing files
  kInternal,            // a bug surfaced as an error instead of an abort
};

const char* status_code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message, std::string hint = {})
      : code_(code), message_(std::move(message)), hint_(std::move(hint)) {}

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  const std::string& hint() const { return hint_; }

  // "message" or "message\nhint: hint".
  std::string to_string() const;

  // Returns a copy whose message is "context: message".
  Status with_context(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
  std::string hint_;
};

inline Status ok_status() {
  return Status();
}

// Concatenates its arguments with operator<<.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

inline Status invalid_argument(std::string message, std::string hint = {}) {
  return Status(StatusCode::kInvalidArgument, std::move(message), std::move(hint));
}
inline Status parse_error(std::string message, std::string hint = {}) {
  return Status(StatusCode::kParseError, std::move(message), std::move(hint));
}
inline Status not_found(std::string message, std::string hint = {}) {
  return Status(StatusCode::kNotFound, std::move(message), std::move(hint));
}
inline Status failed_precondition(std::string message, std::string hint = {}) {
  return Status(StatusCode::kFailedPrecondition, std::move(message), std::move(hint));
}
inline Status resource_exhausted(std::string message, std::string hint = {}) {
  return Status(StatusCode::kResourceExhausted, std::move(message), std::move(hint));
}
inline Status io_error(std::string message, std::string hint = {}) {
  return Status(StatusCode::kIoError, std::move(message), std::move(hint));
}
inline Status internal_error(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}

// A value or the Status that explains why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : data_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    ALPA_CHECK(!std::get<Status>(data_).ok()) << "Result constructed from an OK status";
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(data_);
  }
  T& value() & {
    ALPA_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(data_).to_string();
    return std::get<T>(data_);
  }
  const T& value() const& {
    ALPA_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(data_).to_string();
    return std::get<T>(data_);
  }
  T&& value() && {
    ALPA_CHECK(ok()) << "Result::value() on error: " << std::get<Status>(data_).to_string();
    return std::get<T>(std::move(data_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace alpa

#define ALPA_CONCAT_INNER(a, b) a##b
#define ALPA_CONCAT(a, b) ALPA_CONCAT_INNER(a, b)

// Returns the Status of `expr` from the enclosing function if it is an error.
#define ALPA_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::alpa::Status alpa_status_ = (expr);        \
    if (!alpa_status_.ok()) return alpa_status_; \
  } while (0)

// `lhs = value of expr`, or returns its Status from the enclosing function.
#define ALPA_ASSIGN_OR_RETURN(lhs, expr) \
  ALPA_ASSIGN_OR_RETURN_IMPL(ALPA_CONCAT(alpa_result_, __LINE__), lhs, expr)
#define ALPA_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
