// The paged key/value cache: memory for attention keys and values in fixed-size blocks.
//
// Every layer holds K and V for `num_blocks` blocks of `block_size` positions (kv_heads x
// head_dim floats per position). A sequence owns a block table, the blocks that hold its
// positions in order (position p lives in block table[p / block_size] at slot p % block_size),
// and is given blocks as it grows, never reserved for its maximum length. Blocks return to the
// free list when the sequence finishes, is cancelled or is preempted.
//
// A contiguous cache is the special case of one block per sequence as long as its longest
// sequence (tests compare the two).
#pragma once

#include <cstdint>
#include <vector>

namespace alpa::serve {

struct KvCacheShape {
  int64_t layers = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t block_size = 16;
  int64_t num_blocks = 0;
  // Bytes of one block across layers (K and V).
  int64_t block_bytes() const { return 2 * layers * block_size * kv_heads * head_dim * 4; }
};

using BlockTable = std::vector<int32_t>;

class KvCache {
 public:
  // Without `storage`, only the blocks are accounted (their data lives on the devices of a
  // parallel decoder); key() and value() must not be called.
  explicit KvCache(const KvCacheShape& shape, bool storage = true);
  const KvCacheShape& shape() const { return shape_; }

  int64_t free_blocks() const { return static_cast<int64_t>(free_.size()); }
  int64_t used_blocks() const { return shape_.num_blocks - free_blocks(); }
  // Blocks needed to hold `positions` positions.
  int64_t blocks_for(int64_t positions) const {
    return (positions + shape_.block_size - 1) / shape_.block_size;
  }
  // Grows `table` to hold `positions` positions; false (table unchanged) when blocks run out.
  bool reserve(BlockTable& table, int64_t positions);
  // Returns every block of `table` and clears it.
  void release(BlockTable& table);

  // K or V of one position of one layer (kv_heads x head_dim floats).
  float* key(int64_t layer, const BlockTable& table, int64_t pos) {
    return slot(keys_, layer, table, pos);
  }
  float* value(int64_t layer, const BlockTable& table, int64_t pos) {
    return slot(values_, layer, table, pos);
  }

 private:
  float* slot(std::vector<float>& data, int64_t layer, const BlockTable& table, int64_t pos);

  KvCacheShape shape_;
  int64_t position_floats_ = 0;
  std::vector<float> keys_, values_;  // [layer][block][slot][kv_head][dim]
  std::vector<int32_t> free_;         // a stack: the most recently freed block is reused first
};

}  // namespace alpa::serve
