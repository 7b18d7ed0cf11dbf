// ONNX tensors, attributes and the helpers the converters share.
#include <cmath>
#include <cstring>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {

Ctx::Ctx(const onnx::ModelProto& m, int64_t batch_size, std::string file)
    : b(m.graph().name().empty() ? std::string("onnx") : m.graph().name()),
      model(m),
      batch(batch_size),
      path(std::move(file)) {}

TensorType Ctx::type(const OValue& v) const {
  if (v.is_host()) return {v.host.dtype, v.host.shape};
  return b.type(v.v);
}

Value Ctx::value(const OValue& v) {
  if (!v.is_host()) return v.v;
  const HostTensor& h = v.host;
  if (h.values.size() == 1 || h.values.empty()) {
    const double x = h.values.empty() ? 0.0 : h.values[0];
    return b.constant(x, {h.dtype, h.shape});
  }
  bool splat = true;
  for (double x : h.values) splat = splat && x == h.values[0];
  if (splat) return b.constant(h.values[0], {h.dtype, h.shape});
  return b.constant(h.values, {h.dtype, h.shape});
}

std::string Ctx::ir_name(const std::string& onnx_name) {
  std::string s;
  for (char ch : onnx_name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '_' || ch == '.';
    s += ok ? ch : '_';
  }
  if (s.empty() || (s[0] >= '0' && s[0] <= '9') || s[0] == '.') s = "v_" + s;
  std::string name = s;
  for (int i = 1; used_names.count(name) || b.graph().find(name) != kNoValue; ++i)
    name = cat(s, "_", i);
  used_names.insert(name);
  return name;
}

void Ctx::note_bound(Value v, int64_t bound) {
  auto it = input_of_value.find(v.id);
  if (it == input_of_value.end()) return;
  auto [slot, fresh] = int_bounds.emplace(it->second, bound);
  if (!fresh) slot->second = std::min(slot->second, bound);
}

const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const std::string& name) {
  for (const onnx::AttributeProto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t def) {
  const onnx::AttributeProto* a = find_attr(n, name);
  return a ? a->i() : def;
}
double attr_float(const onnx::NodeProto& n, const std::string& name, double def) {
  const onnx::AttributeProto* a = find_attr(n, name);
  return a ? a->f() : def;
}
std::string attr_string(const onnx::NodeProto& n, const std::string& name, std::string def) {
  const onnx::AttributeProto* a = find_attr(n, name);
  return a ? a->s() : def;
}
std::optional<std::vector<int64_t>> attr_ints(const onnx::NodeProto& n, const std::string& name) {
  const onnx::AttributeProto* a = find_attr(n, name);
  if (a == nullptr) return std::nullopt;
  return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

Result<DType> dtype_of(int32_t t, const std::string& what) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::FLOAT16: return DType::kF32;
    case onnx::TensorProto::INT64:
    case onnx::TensorProto::INT32:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8:
    case onnx::TensorProto::INT16: return DType::kI32;
    case onnx::TensorProto::BOOL: return DType::kPred;
    default: break;
  }
  return invalid_argument(cat(what, " has ONNX element type ", t, ", which is not supported"),
                          "use float32, float16, double, integer or bool tensors");
}

namespace {

// Bytes per element of the raw_data of an ONNX element type (0: not read raw).
int raw_bytes(int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT:
    case onnx::TensorProto::INT32: return 4;
    case onnx::TensorProto::DOUBLE:
    case onnx::TensorProto::INT64: return 8;
    case onnx::TensorProto::FLOAT16:
    case onnx::TensorProto::INT16: return 2;
    case onnx::TensorProto::BOOL:
    case onnx::TensorProto::INT8:
    case onnx::TensorProto::UINT8: return 1;
    default: return 0;
  }
}

double half_to_double(uint16_t h) {
  const int sign = (h >> 15) ? -1 : 1;
  const int exp = (h >> 10) & 0x1f;
  const int mant = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(mant, -24);
  if (exp == 31) return mant ? std::nan("") : sign * HUGE_VAL;
  return sign * std::ldexp(mant + 1024, exp - 25);
}

double raw_value(const char* p, int32_t t) {
  switch (t) {
    case onnx::TensorProto::FLOAT: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case onnx::TensorProto::INT32: {
      int32_t i;
      std::memcpy(&i, p, 4);
      return i;
    }
    case onnx::TensorProto::DOUBLE: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case onnx::TensorProto::INT64: {
      int64_t i;
      std::memcpy(&i, p, 8);
      return static_cast<double>(i);
    }
    case onnx::TensorProto::FLOAT16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return half_to_double(h);
    }
    case onnx::TensorProto::INT16: {
      int16_t i;
      std::memcpy(&i, p, 2);
      return i;
    }
    case onnx::TensorProto::INT8: return static_cast<int8_t>(*p);
    default: return static_cast<uint8_t>(*p);
  }
}

}  // namespace

Result<HostTensor> read_tensor(const onnx::TensorProto& t, const std::string& what) {
  HostTensor h;
  ALPA_ASSIGN_OR_RETURN(h.dtype, dtype_of(t.data_type(), what));
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    return invalid_argument(cat(what, " keeps its data in an external file"),
                            "export with the weights inside the file (a model under 2 GB)");
  for (int64_t d : t.dims()) {
    if (d < 0) return invalid_argument(cat(what, " has a negative dimension ", d));
    h.shape.push_back(d);
  }
  if (!shape_within_limits(h.shape) || num_elements(h.shape) > (int64_t{1} << 31))
    return invalid_argument(
        cat(what, " has shape ", shape_to_string(h.shape), ", beyond what can be imported"));
  const int64_t n = num_elements(h.shape);
  const int32_t et = t.data_type();
  if (t.has_raw_data()) {
    const int w = raw_bytes(et);
    if (w == 0 || static_cast<int64_t>(t.raw_data().size()) != n * w)
      return invalid_argument(
          cat(what, " holds ", t.raw_data().size(), " bytes of data; its shape ",
              shape_to_string(h.shape), " needs ", n * w),
          "the file is damaged: export it again");
    h.values.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) h.values[i] = raw_value(t.raw_data().data() + i * w, et);
    return h;
  }
  auto take = [&](const auto& field) -> Status {
    if (static_cast<int64_t>(field.size()) != n)
      return invalid_argument(cat(what, " holds ", field.size(), " values; its shape ",
                                  shape_to_string(h.shape), " needs ", n),
                              "the file is damaged: export it again");
    h.values.assign(field.begin(), field.end());
    return ok_status();
  };
  if (et == onnx::TensorProto::FLOAT) {
    ALPA_RETURN_IF_ERROR(take(t.float_data()));
  } else if (et == onnx::TensorProto::DOUBLE) {
    ALPA_RETURN_IF_ERROR(take(t.double_data()));
  } else if (et == onnx::TensorProto::INT64) {
    ALPA_RETURN_IF_ERROR(take(t.int64_data()));
  } else if (et == onnx::TensorProto::FLOAT16) {
    ALPA_RETURN_IF_ERROR(take(t.int32_data()));
    for (double& v : h.values) v = half_to_double(static_cast<uint16_t>(v));
  } else {
    ALPA_RETURN_IF_ERROR(take(t.int32_data()));
  }
  return h;
}

std::string node_label(const onnx::NodeProto& n) {
  std::string name = n.name().empty() ? (n.output_size() > 0 ? n.output(0) : "?") : n.name();
  return cat("node '", name, "' (", n.op_type(), ")");
}

Status node_error(const Ctx& c, const onnx::NodeProto& n, const std::string& message,
                  const std::string& hint) {
  return invalid_argument(cat(c.path, ": ", node_label(n), ": ", message), hint);
}

Result<int64_t> norm_axis(int64_t axis, int64_t rank) {
  const int64_t a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank)
    return invalid_argument(cat("axis ", axis, " is outside a tensor of rank ", rank));
  return a;
}

Result<std::vector<int64_t>> host_ints(Ctx& c, const onnx::NodeProto& n,
                                       const std::vector<OValue>& in, size_t i, const char* what) {
  if (i >= in.size() || !in[i].present())
    return node_error(c, n, cat("input ", i, " (", what, ") is missing"));
  if (!in[i].is_host())
    return node_error(c, n, cat(what, " must be known when the model is imported"),
                      "export with fixed sizes except the batch dimension (dynamic_axes only on "
                      "dim 0), so shape computations fold");
  std::vector<int64_t> out;
  for (double v : in[i].host.values) {
    if (!(std::fabs(v) < 9.3e18)) return node_error(c, n, cat(what, " holds a non-integer value"));
    out.push_back(static_cast<int64_t>(v));
  }
  return out;
}

Result<Shape> broadcast_shapes(const Shape& a, const Shape& b) {
  const size_t r = std::max(a.size(), b.size());
  Shape out(r);
  for (size_t i = 0; i < r; ++i) {
    const int64_t x = i < r - a.size() ? 1 : a[i - (r - a.size())];
    const int64_t y = i < r - b.size() ? 1 : b[i - (r - b.size())];
    if (x != y && x != 1 && y != 1)
      return invalid_argument(
          cat("shapes ", shape_to_string(a), " and ", shape_to_string(b), " do not broadcast"));
    out[i] = x == 1 ? y : x;
  }
  return out;
}

Value broadcast_value(Ctx& c, Value v, const Shape& shape) {
  if (!v.valid() || c.b.shape(v) == shape) return v;
  const Shape s = c.b.shape(v);
  const int64_t offset = static_cast<int64_t>(shape.size()) - static_cast<int64_t>(s.size());
  // Operand dims kept (trailing dims aligned; expanded 1s and extra leading 1s dropped).
  Shape kept;
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    const int64_t d = i + offset;
    if (d < 0 || (s[i] == 1 && shape[d] != 1)) continue;
    kept.push_back(s[i]);
    dims.push_back(d);
  }
  if (kept != s) v = c.b.reshape(v, kept);
  if (kept == shape) return v;
  return c.b.broadcast(v, shape, dims);
}

HostTensor host_binary(const HostTensor& a, const HostTensor& b, const Shape& shape, DType dtype,
                       double (*f)(double, double)) {
  HostTensor out{dtype, shape, {}};
  const int64_t n = num_elements(shape);
  out.values.resize(static_cast<size_t>(n));
  const size_t r = shape.size();
  auto index = [&](const HostTensor& t, int64_t flat) {
    int64_t idx = 0, stride = 1;
    for (size_t i = r; i-- > 0;) {
      const int64_t coord = flat % shape[i];
      flat /= shape[i];
      const size_t ti = i + t.shape.size();
      if (ti < r) break;
      const int64_t extent = t.shape[ti - r];
      if (extent != 1) idx += coord * stride;
      stride *= extent;
    }
    return t.values[static_cast<size_t>(idx)];
  };
  for (int64_t i = 0; i < n; ++i) out.values[i] = f(index(a, i), index(b, i));
  return out;
}

HostTensor host_scalar(double v, DType dtype) {
  return HostTensor{dtype, {}, {v}};
}
HostTensor host_vector(const std::vector<int64_t>& v) {
  HostTensor h{DType::kI32, {static_cast<int64_t>(v.size())}, {}};
  for (int64_t x : v) h.values.push_back(static_cast<double>(x));
  return h;
}

Value softmax(Builder& b, Value x, int64_t axis, bool log) {
  const Shape s = b.shape(x);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    if (i != axis) keep.push_back(i);
  Value m = b.stop_gradient(b.reduce_max(x, {axis}));
  Value z = b.sub(x, b.broadcast(m, s, keep));
  Value e = b.exp(z);
  Value sum = b.broadcast(b.reduce_sum(e, {axis}), s, keep);
  if (log) return b.sub(z, b.log(sum));
  return b.div(e, sum);
}

}  // namespace alpa::onnx_import
