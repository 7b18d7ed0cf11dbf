// DType, Shape and TensorType: the static type of every value in a Graph.
//
// Shapes are static: every dimension is a known, non-negative extent. Execution is in fp32
// storage for every dtype (i32 and pred values are held exactly as floats, integers up to
// 2^24); f16 and bf16 exist so that cost and memory accounting can use 2-byte elements.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace alpa {

enum class DType : uint8_t { kF32, kF16, kBF16, kI32, kPred };

inline constexpr int kNumDTypes = 5;

std::string_view dtype_name(DType d);
std::optional<DType> parse_dtype(std::string_view name);
// Bytes per element as the dtype is stored on a real device (pred: 1).
int64_t dtype_bytes(DType d);
inline bool is_float(DType d) {
  return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16;
}

using Shape = std::vector<int64_t>;

int64_t num_elements(const Shape& shape);
// The largest tensor the IR describes: 2^48 elements (a petabyte of f32), so element and byte
// counts never overflow int64. Shapes from files and flags are checked against it.
inline constexpr int64_t kMaxTensorElements = int64_t{1} << 48;
// The most dims a tensor has (layouts hold one entry per dim).
inline constexpr size_t kMaxTensorRank = 8;
// Whether the rank is at most kMaxTensorRank, every extent >= 0 and the product within
// kMaxTensorElements.
bool shape_within_limits(const Shape& shape);
std::string shape_to_string(const Shape& shape);  // "[2,3]"

struct TensorType {
  DType dtype = DType::kF32;
  Shape shape;

  int64_t rank() const { return static_cast<int64_t>(shape.size()); }
  int64_t num_elements() const { return alpa::num_elements(shape); }
  int64_t bytes() const { return num_elements() * dtype_bytes(dtype); }
  std::string to_string() const;  // "f32[2,3]", scalars "f32[]"

  friend bool operator==(const TensorType&, const TensorType&) = default;
};

// "f32[2,3]" -> the type (the form TensorType::to_string prints); nullopt if it is not one.
std::optional<TensorType> parse_tensor_type(std::string_view text);

}  // namespace alpa
