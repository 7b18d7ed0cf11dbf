#include "alpa/cli/validators.h"

#include <cmath>
#include <string>

namespace alpa {
namespace {

// The number in `text`, or NaN when it is not one.
double number_of(const std::string& text) {
  try {
    size_t used = 0;
    const double v = std::stod(text, &used);
    return used == text.size() ? v : std::nan("");
  } catch (...) {
    return std::nan("");
  }
}

}  // namespace

CLI::Validator positive_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const double v = number_of(text);
        if (!std::isfinite(v) || v <= 0) return "must be a finite number > 0, got " + text;
        return "";
      },
      "POSITIVE");
}

CLI::Validator non_negative_number() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        const double v = number_of(text);
        if (!std::isfinite(v) || v < 0) return "must be a finite number >= 0, got " + text;
        return "";
      },
      "NONNEGATIVE");
}

CLI::Validator integer_in(int64_t lo, int64_t hi, const char* what) {
  return CLI::Validator(
      [lo, hi, what](std::string& text) -> std::string {
        const double v = number_of(text);
        if (!std::isfinite(v) || v != std::floor(v) || v < static_cast<double>(lo) ||
            v > static_cast<double>(hi))
          return "must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) +
                 " (" + what + "), got " + text;
        return "";
      },
      "INT in [" + std::to_string(lo) + " - " + std::to_string(hi) + "]");
}

}  // namespace alpa
