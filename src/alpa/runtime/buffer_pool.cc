#include "alpa/runtime/buffer_pool.h"

#include <algorithm>

namespace alpa {

Buffer BufferPool::acquire(int64_t n) {
  const int64_t cap = Buffer::capacity_for(n);
  if (cap == 0) return Buffer();
  Bucket& b = buckets_[cap];
  b.held += 1;
  b.high_water = std::max(b.high_water, b.held);
  if (!b.free.empty()) {
    Buffer buf = std::move(b.free.back());
    b.free.pop_back();
    return buf;
  }
  ++allocations_;
  return Buffer(n);
}

void BufferPool::release(Buffer buffer) {
  if (buffer.capacity() == 0) return;
  Bucket& b = buckets_[buffer.capacity()];
  b.held -= 1;
  b.free.push_back(std::move(buffer));
}

void BufferPool::trim() {
  for (auto& [cap, b] : buckets_) {
    const int64_t keep = std::max<int64_t>(b.high_water, 0);
    if (static_cast<int64_t>(b.free.size()) > keep) b.free.resize(static_cast<size_t>(keep));
    b.held = 0;
    b.high_water = 0;
  }
  std::erase_if(buckets_, [](const auto& kv) { return kv.second.free.empty(); });
}

int64_t BufferPool::free_bytes() const {
  int64_t total = 0;
  for (const auto& [cap, b] : buckets_)
    total += cap * static_cast<int64_t>(sizeof(float)) * static_cast<int64_t>(b.free.size());
  return total;
}

}  // namespace alpa
