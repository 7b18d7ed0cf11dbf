// ALPA_CHECK: the internal-invariant channel.
//
// A failed check is a bug in alpa-cpp, never a user error: it prints file:line, the condition
// and the streamed context, then aborts. User errors go through Status (status.h).
#pragma once

#include <sstream>

namespace alpa::detail {

class CheckFailure {
 public:
  CheckFailure(const char* file, int line, const char* condition);
  [[noreturn]] ~CheckFailure();
  std::ostream& stream() { return os_; }

 private:
  std::ostringstream os_;
};

// Swallows the stream expression so ALPA_CHECK can be used as a statement.
struct Voidify {
  void operator&(std::ostream&) {}
};

}  // namespace alpa::detail

#define ALPA_CHECK(cond)               \
  (cond) ? (void)0                     \
         : ::alpa::detail::Voidify() & \
               ::alpa::detail::CheckFailure(__FILE__, __LINE__, #cond).stream()

#define ALPA_UNREACHABLE() ALPA_CHECK(false) << "unreachable "
