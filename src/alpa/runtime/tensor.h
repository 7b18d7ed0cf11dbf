// Tensor: a dense, row-major tensor with fp32 storage, the runtime's value type.
//
// Every dtype is held as float: i32 and pred values exactly (integers up to 2^24, pred as
// 0.0f / 1.0f), f16 and bf16 values rounded to their precision by `convert` (round_to_dtype).
// Storage is 64-byte aligned. Value semantics: copying is deep, moving is cheap. A
// default-constructed Tensor is empty with type f32[0].
//
// Buffer is the move-only aligned storage under a Tensor; the executor recycles Buffers
// through a BufferPool (buffer_pool.h) and builds Tensors on them with Tensor::adopt, so a
// steady-state run does not call malloc.
#pragma once

#include <cstdint>
#include <vector>

#include "alpa/ir/types.h"

namespace alpa {

// Move-only, 64-byte aligned float storage of a fixed capacity (in elements).
class Buffer {
 public:
  static constexpr int64_t kAlignBytes = 64;
  static constexpr int64_t kAlignFloats = kAlignBytes / static_cast<int64_t>(sizeof(float));

  Buffer() = default;
  // Uninitialised storage for at least `n` floats; the capacity is n rounded up to 16.
  explicit Buffer(int64_t n);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  // The capacity Buffer(n) allocates: n rounded up to a multiple of kAlignFloats.
  static int64_t capacity_for(int64_t n) {
    return (n + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
  }

  float* data() const { return data_; }
  int64_t capacity() const { return capacity_; }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

class Tensor {
 public:
  Tensor();                          // empty, type f32[0]
  explicit Tensor(TensorType type);  // zero-filled
  // values.size() must equal the element count of `type` (CHECK).
  static Tensor from_values(TensorType type, std::vector<float> values);
  static Tensor scalar(float v);  // f32[]
  // Contents unspecified: for kernels that overwrite every element.
  static Tensor uninitialized(TensorType type);
  // A tensor of `type` on `buffer` (capacity >= element count, CHECK); contents as they are.
  static Tensor adopt(TensorType type, Buffer buffer);

  Tensor(const Tensor& other);
  Tensor& operator=(const Tensor& other);
  Tensor(Tensor&& other) noexcept;
  Tensor& operator=(Tensor&& other) noexcept;
  ~Tensor() = default;

  const TensorType& type() const { return type_; }
  const Shape& shape() const { return type_.shape; }
  DType dtype() const { return type_.dtype; }
  int64_t rank() const { return type_.rank(); }
  int64_t size() const { return size_; }  // element count

  float* data() { return buffer_.data(); }
  const float* data() const { return buffer_.data(); }

  std::vector<float> to_vector() const;
  float item() const;  // CHECKs size() == 1

  // Reinterprets the elements with another type of the same element count (CHECK): a
  // reshape, or a dtype change whose values are already in the new dtype's range.
  void set_type(TensorType type);
  // Takes the storage out, leaving this tensor empty (f32[0]).
  Buffer release();

 private:
  TensorType type_;
  int64_t size_ = 0;
  Buffer buffer_;
};

// x as dtype `to` stores it, as a float: f32 unchanged; f16 and bf16 rounded to nearest-even
// of that format (overflow to +-inf, f16 subnormals kept); i32 truncated toward zero (NaN -> 0);
// pred 1.0f if x != 0 else 0.0f.
float round_to_dtype(float x, DType to);

}  // namespace alpa
