// BufferPool: recycles Buffers by exact capacity so a repeated run does not call malloc.
//
// acquire(n) returns a free buffer of capacity Buffer::capacity_for(n) or allocates one;
// release(b) keeps it for a later acquire. The pool also counts, per capacity, how many
// buffers were held at once since the last trim(); trim() drops free buffers beyond that
// high-water mark, so the pool holds what one run needs and no more (buffers that arrive from
// outside, e.g. parameters passed in, do not make it grow run after run). Call trim() at the
// end of each run. Not thread-safe: one executor run uses it at a time.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "alpa/runtime/tensor.h"

namespace alpa {

class BufferPool {
 public:
  Buffer acquire(int64_t n);
  void release(Buffer buffer);
  // Frees the free buffers beyond each capacity's high-water mark (the most buffers of that
  // capacity held at once since the last trim) and restarts the counts.
  void trim();

  int64_t free_bytes() const;                           // bytes held in free buffers
  int64_t allocations() const { return allocations_; }  // buffers allocated so far

 private:
  struct Bucket {
    std::vector<Buffer> free;
    int64_t held = 0;  // acquired minus released since the last trim (outsiders: negative)
    int64_t high_water = 0;
  };
  std::unordered_map<int64_t, Bucket> buckets_;
  int64_t allocations_ = 0;
};

}  // namespace alpa
