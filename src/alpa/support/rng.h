// Rng: a small, fast, fully specified random number generator.
//
// The same seed gives the same numbers on every machine and compiler (std:: distributions are
// implementation-defined, so they are not used). xoshiro256** seeded through splitmix64;
// normals by Box-Muller.
#pragma once

#include <cstdint>

namespace alpa {

class Rng {
 public:
  explicit Rng(uint64_t seed = 0);

  uint64_t next_u64();
  // Uniform in [0, 1) with 24 bits of precision (exactly representable as float).
  double uniform();
  // Uniform integer in [0, n).
  uint64_t below(uint64_t n);
  // Standard normal.
  double normal();

  // A new generator whose stream is independent of this one's for a given `stream` id.
  Rng fork(uint64_t stream) const;

 private:
  uint64_t s_[4];
  double spare_normal_ = 0;
  bool has_spare_ = false;
};

}  // namespace alpa
