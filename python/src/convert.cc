// NumPy arrays in and out of the runtime's tensors (f32 storage; i32 held as whole floats).
#include <cmath>

#include "common.h"

namespace alpa::python {

std::string shape_text(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += cat(i ? ", " : "", s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

py::array to_numpy(const Tensor& t, bool as_int) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  if (as_int) {
    py::array_t<int32_t> a(shape);
    int32_t* out = a.mutable_data();
    for (int64_t i = 0; i < t.size(); ++i) out[i] = static_cast<int32_t>(t.data()[i]);
    return std::move(a);
  }
  py::array_t<float> a(shape);
  if (t.size() > 0) std::copy(t.data(), t.data() + t.size(), a.mutable_data());
  return std::move(a);
}

Tensor from_numpy(const py::handle& value, const TensorType& type, const std::string& what) {
  py::array raw = py::array::ensure(value);
  if (!raw) fail(cat(what, ": expected a NumPy array (or a nested list of numbers)"));
  if (raw.dtype().kind() != 'f' && raw.dtype().kind() != 'i' && raw.dtype().kind() != 'u' &&
      raw.dtype().kind() != 'b')
    fail(
        cat(what, ": expected numbers, got an array of dtype ", std::string(py::str(raw.dtype()))));
  Shape shape(raw.shape(), raw.shape() + raw.ndim());
  if (shape != type.shape)
    fail(cat(what, " has shape ", shape_text(shape), ", expected ", shape_text(type.shape), " (",
             type.to_string(), ")"),
         "give an array of exactly that shape");
  auto a = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(raw);
  if (!a) fail(cat(what, ": cannot convert to float32"));
  std::vector<float> values(a.data(), a.data() + a.size());
  const bool integral = type.dtype == DType::kI32;
  for (size_t i = 0; i < values.size(); ++i) {
    const float v = values[i];
    if (!std::isfinite(v))
      fail(cat(what, " holds ", v, " at flat position ", i), "give finite values");
    if (integral && (v != std::floor(v) || std::fabs(v) > 16777216.0f))
      fail(cat(what, " is ", type.to_string(), " but holds ", v, " at flat position ", i),
           "give whole numbers (token ids or class labels) below 2^24");
  }
  return Tensor::from_values(type, std::move(values));
}

}  // namespace alpa::python
