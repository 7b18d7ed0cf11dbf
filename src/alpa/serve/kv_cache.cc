#include "alpa/serve/kv_cache.h"

#include "alpa/support/check.h"

namespace alpa::serve {

KvCache::KvCache(const KvCacheShape& shape, bool storage) : shape_(shape) {
  ALPA_CHECK(shape.block_size > 0 && shape.num_blocks >= 0);
  position_floats_ = shape.kv_heads * shape.head_dim;
  const size_t n = storage ? static_cast<size_t>(shape.layers * shape.num_blocks *
                                                 shape.block_size * position_floats_)
                           : 0;
  keys_.assign(n, 0.0f);
  values_.assign(n, 0.0f);
  free_.reserve(static_cast<size_t>(shape.num_blocks));
  for (int64_t b = shape.num_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

bool KvCache::reserve(BlockTable& table, int64_t positions) {
  const int64_t need = blocks_for(positions) - static_cast<int64_t>(table.size());
  if (need <= 0) return true;
  if (need > free_blocks()) return false;
  for (int64_t i = 0; i < need; ++i) {
    table.push_back(free_.back());
    free_.pop_back();
  }
  return true;
}

void KvCache::release(BlockTable& table) {
  for (auto it = table.rbegin(); it != table.rend(); ++it) free_.push_back(*it);
  table.clear();
}

float* KvCache::slot(std::vector<float>& data, int64_t layer, const BlockTable& table,
                     int64_t pos) {
  const int64_t b = pos / shape_.block_size;
  ALPA_CHECK(b < static_cast<int64_t>(table.size())) << "position " << pos << " has no block";
  const int64_t block = table[static_cast<size_t>(b)];
  const int64_t index =
      ((layer * shape_.num_blocks + block) * shape_.block_size + pos % shape_.block_size) *
      position_floats_;
  return data.data() + index;
}

}  // namespace alpa::serve
