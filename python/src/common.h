// Shared pieces of the Python module alpa._core: errors as alpa.Error, NumPy conversion, and
// the bind_* functions each source file defines.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <exception>
#include <string>
#include <utility>

#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"

namespace alpa::python {

namespace py = pybind11;

// A user error on its way to Python: module.cc turns it into alpa.Error with .message and
// .hint (and .code, the status code's name).
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)), text_(status_.to_string()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return text_.c_str(); }

 private:
  Status status_;
  std::string text_;
};

inline void check(const Status& s) {
  if (!s.ok()) throw StatusError(s);
}
template <typename T>
T unwrap(Result<T> r) {
  if (!r.ok()) throw StatusError(r.status());
  return std::move(r).value();
}
[[noreturn]] inline void fail(std::string message, std::string hint = {}) {
  throw StatusError(invalid_argument(std::move(message), std::move(hint)));
}

// A float32 array with the tensor's shape (a copy). i32 values come back as float32 holding
// whole numbers (the runtime stores them so); `as_int` gives an int32 array instead.
py::array to_numpy(const Tensor& t, bool as_int = false);
// `value` (any array-like of numbers) as a tensor of type `type`: the shape must be exactly
// `type`'s, i32 values whole numbers; errors name `what` ("input 'tokens'", "weight 'w'").
Tensor from_numpy(const py::handle& value, const TensorType& type, const std::string& what);
// "(8, 16)".
std::string shape_text(const Shape& s);

void bind_model(py::module_& m);
void bind_plan(py::module_& m);
void bind_trainer(py::module_& m);

}  // namespace alpa::python
