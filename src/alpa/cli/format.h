// Human-readable numbers for CLI output: 39,087,652,864 / 39.09 B / 251.0 PFLOP / 78.2 GB.
#pragma once

#include <cstdint>
#include <string>

namespace alpa {

std::string format_count(int64_t n);                // 1,234,567
std::string format_count_short(double n);           // 110.3 K, 39.09 B
std::string format_si(double v, const char* unit);  // 1.23 G<unit>, 4.56 T<unit>
std::string format_bytes(double bytes);             // 78.2 GB (decimal units)
std::string format_seconds(double s);               // 12.3 ms, 1.23 s, 2 min 3 s
std::string format_fixed(double v, int digits);
// "h12.attn.wq" -> "h*.attn.wq": weights of repeated layers form one group.
std::string weight_group_name(const std::string& name);

}  // namespace alpa
