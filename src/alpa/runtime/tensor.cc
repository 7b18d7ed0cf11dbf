#include "alpa/runtime/tensor.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "alpa/runtime/dtype_round.h"
#include "alpa/support/check.h"
#include "alpa/support/system.h"

namespace alpa {

// ---- Buffer -------------------------------------------------------------------------------

Buffer::Buffer(int64_t n) {
  ALPA_CHECK(n >= 0) << "negative buffer size " << n;
  capacity_ = capacity_for(n);
  if (capacity_ == 0) return;
  void* p = std::aligned_alloc(static_cast<size_t>(kAlignBytes),
                               static_cast<size_t>(capacity_) * sizeof(float));
  if (p == nullptr) exit_out_of_memory(capacity_ * static_cast<int64_t>(sizeof(float)));
  data_ = static_cast<float*>(p);
}

Buffer::~Buffer() {
  std::free(data_);
}

Buffer::Buffer(Buffer&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), capacity_(std::exchange(other.capacity_, 0)) {}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    std::free(data_);
    data_ = std::exchange(other.data_, nullptr);
    capacity_ = std::exchange(other.capacity_, 0);
  }
  return *this;
}

// ---- Tensor -------------------------------------------------------------------------------

Tensor::Tensor() : type_{DType::kF32, {0}} {}

Tensor::Tensor(TensorType type) : Tensor(uninitialized(std::move(type))) {
  if (size_ > 0) std::memset(data(), 0, static_cast<size_t>(size_) * sizeof(float));
}

Tensor Tensor::uninitialized(TensorType type) {
  const int64_t n = type.num_elements();
  return adopt(std::move(type), Buffer(n));
}

Tensor Tensor::adopt(TensorType type, Buffer buffer) {
  Tensor t;
  t.size_ = type.num_elements();
  ALPA_CHECK(buffer.capacity() >= t.size_)
      << "buffer of " << buffer.capacity() << " floats for " << type.to_string();
  t.type_ = std::move(type);
  t.buffer_ = std::move(buffer);
  return t;
}

Tensor Tensor::from_values(TensorType type, std::vector<float> values) {
  ALPA_CHECK(static_cast<int64_t>(values.size()) == type.num_elements())
      << values.size() << " values for " << type.to_string();
  Tensor t = uninitialized(std::move(type));
  if (!values.empty()) std::memcpy(t.data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::scalar(float v) {
  return from_values(TensorType{DType::kF32, {}}, {v});
}

Tensor::Tensor(const Tensor& other) : Tensor(uninitialized(other.type_)) {
  if (size_ > 0) std::memcpy(data(), other.data(), static_cast<size_t>(size_) * sizeof(float));
}

Tensor& Tensor::operator=(const Tensor& other) {
  if (this != &other) *this = Tensor(other);
  return *this;
}

Tensor::Tensor(Tensor&& other) noexcept
    : type_(std::exchange(other.type_, TensorType{DType::kF32, {0}})),
      size_(std::exchange(other.size_, 0)),
      buffer_(std::move(other.buffer_)) {}

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this != &other) {
    type_ = std::exchange(other.type_, TensorType{DType::kF32, {0}});
    size_ = std::exchange(other.size_, 0);
    buffer_ = std::move(other.buffer_);
  }
  return *this;
}

std::vector<float> Tensor::to_vector() const {
  return std::vector<float>(data(), data() + size_);
}

float Tensor::item() const {
  ALPA_CHECK(size_ == 1) << "item() of " << type_.to_string();
  return data()[0];
}

void Tensor::set_type(TensorType type) {
  ALPA_CHECK(type.num_elements() == size_)
      << "set_type " << type.to_string() << " on " << type_.to_string();
  type_ = std::move(type);
}

Buffer Tensor::release() {
  type_ = TensorType{DType::kF32, {0}};
  size_ = 0;
  return std::move(buffer_);
}

float round_to_dtype(float x, DType to) {
  switch (to) {
    case DType::kF32: return x;
    case DType::kF16: return detail::round_f16(x);
    case DType::kBF16: return detail::round_bf16(x);
    case DType::kI32: return detail::round_i32(x);
    case DType::kPred: return detail::round_pred(x);
  }
  return x;
}

}  // namespace alpa
