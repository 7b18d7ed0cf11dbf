#include "alpa/cli/format.h"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace alpa {

std::string format_count(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string format_fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string format_si(double v, const char* unit) {
  static const char* kPrefix[] = {"", "K", "M", "G", "T", "P", "E"};
  int i = 0;
  while (std::abs(v) >= 1000.0 && i < 6) v /= 1000.0, ++i;
  return format_fixed(v, std::abs(v) >= 100 ? 1 : 2) + " " + kPrefix[i] + unit;
}

std::string format_count_short(double n) {
  static const char* kSuffix[] = {"", " K", " M", " B", " T"};
  int i = 0;
  while (std::abs(n) >= 1000.0 && i < 4) n /= 1000.0, ++i;
  return format_fixed(n, i == 0 ? 0 : 2) + kSuffix[i];
}

std::string format_bytes(double bytes) {
  return format_si(bytes, "B");
}

std::string format_seconds(double s) {
  if (s < 1e-3) return format_fixed(s * 1e6, 1) + " us";
  if (s < 1.0) return format_fixed(s * 1e3, 1) + " ms";
  if (s < 120.0) return format_fixed(s, 2) + " s";
  const int m = static_cast<int>(s / 60);
  return std::to_string(m) + " min " + std::to_string(static_cast<int>(s - 60 * m)) + " s";
}

std::string weight_group_name(const std::string& name) {
  std::string out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (std::isdigit(static_cast<unsigned char>(name[i]))) {
      if (out.empty() || out.back() != '*') out += '*';
    } else {
      out += name[i];
    }
  }
  return out;
}

}  // namespace alpa
