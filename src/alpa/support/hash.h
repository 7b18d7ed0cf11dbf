// Hashes for structural keys and fingerprints: FNV-1a of a string and a combiner. Stable
// across platforms and runs (plan files store them).
#pragma once

#include <cstdint>
#include <string_view>

namespace alpa {

inline uint64_t hash_string(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

inline uint64_t hash_combine(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}

}  // namespace alpa
