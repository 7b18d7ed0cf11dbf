// Elementwise operators, comparisons, casts, softmax, layer normalization and reductions.
#include <cmath>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {
namespace {

using Ins = std::vector<OValue>;

Status need_inputs(Ctx& c, const onnx::NodeProto& n, const Ins& in, size_t count) {
  if (in.size() < count) return node_error(c, n, cat("needs ", count, " inputs, has ", in.size()));
  for (size_t i = 0; i < count; ++i)
    if (!in[i].present()) return node_error(c, n, cat("input ", i, " is missing"));
  return ok_status();
}

// A host value as `dtype` (integers truncated, bools 0/1).
HostTensor host_as(HostTensor h, DType dtype) {
  if (dtype == DType::kI32)
    for (double& v : h.values) v = std::trunc(v);
  if (dtype == DType::kPred)
    for (double& v : h.values) v = v != 0.0 ? 1.0 : 0.0;
  h.dtype = dtype;
  return h;
}

// Both operands as graph values of one shape (numpy broadcasting) and dtype.
Result<std::pair<Value, Value>> graph_pair(Ctx& c, const onnx::NodeProto& n, const OValue& a,
                                           const OValue& b) {
  const TensorType ta = c.type(a), tb = c.type(b);
  Result<Shape> s = broadcast_shapes(ta.shape, tb.shape);
  if (!s.ok()) return node_error(c, n, s.status().message());
  OValue x = a, y = b;
  if (x.is_host() && !y.is_host()) x = OValue::of(host_as(x.host, tb.dtype));
  if (y.is_host() && !x.is_host()) y = OValue::of(host_as(y.host, ta.dtype));
  Value vx = broadcast_value(c, c.value(x), *s);
  Value vy = broadcast_value(c, c.value(y), *s);
  return std::make_pair(vx, vy);
}

double fadd(double a, double b) {
  return a + b;
}
double fsub(double a, double b) {
  return a - b;
}
double fmul(double a, double b) {
  return a * b;
}
double fdiv(double a, double b) {
  return a / b;
}
double fpow(double a, double b) {
  return std::pow(a, b);
}
double fmax(double a, double b) {
  return a > b ? a : b;
}
double fmin(double a, double b) {
  return a < b ? a : b;
}
double feq(double a, double b) {
  return a == b ? 1.0 : 0.0;
}
double flt(double a, double b) {
  return a < b ? 1.0 : 0.0;
}
double fgt(double a, double b) {
  return a > b ? 1.0 : 0.0;
}
double fle(double a, double b) {
  return a <= b ? 1.0 : 0.0;
}
double fge(double a, double b) {
  return a >= b ? 1.0 : 0.0;
}
double fand(double a, double b) {
  return (a != 0 && b != 0) ? 1.0 : 0.0;
}
double f_or(double a, double b) {
  return (a != 0 || b != 0) ? 1.0 : 0.0;
}

struct BinaryOp {
  const char* name;
  double (*host)(double, double);
  OpKind kind;  // kCompare for comparisons
  CompareDir dir;
};
constexpr BinaryOp kBinaryOps[] = {
    {"Add", fadd, OpKind::kAdd, CompareDir::kEq},
    {"Sub", fsub, OpKind::kSub, CompareDir::kEq},
    {"Mul", fmul, OpKind::kMul, CompareDir::kEq},
    {"Div", fdiv, OpKind::kDiv, CompareDir::kEq},
    {"Pow", fpow, OpKind::kPow, CompareDir::kEq},
    {"Max", fmax, OpKind::kMax, CompareDir::kEq},
    {"Min", fmin, OpKind::kMin, CompareDir::kEq},
    {"Equal", feq, OpKind::kCompare, CompareDir::kEq},
    {"Less", flt, OpKind::kCompare, CompareDir::kLt},
    {"Greater", fgt, OpKind::kCompare, CompareDir::kGt},
    {"LessOrEqual", fle, OpKind::kCompare, CompareDir::kLe},
    {"GreaterOrEqual", fge, OpKind::kCompare, CompareDir::kGe},
    {"And", fand, OpKind::kCompare, CompareDir::kEq},
    {"Or", f_or, OpKind::kCompare, CompareDir::kEq},
};

const BinaryOp& binary_op(const std::string& name) {
  for (const BinaryOp& op : kBinaryOps)
    if (name == op.name) return op;
  return kBinaryOps[0];
}

// x ** p for a known scalar exponent: products and square roots where they are exact.
Value power(Builder& b, Value x, double p) {
  if (p == 1.0) return x;
  if (p == 2.0) return b.mul(x, x);
  if (p == 3.0) return b.mul(b.mul(x, x), x);
  if (p == 0.5) return b.sqrt(x);
  if (p == -0.5) return b.rsqrt(x);
  if (p == -1.0) return b.div(b.full_like(x, 1.0), x);
  return b.pow(x, b.full_like(x, p));
}

Status binary(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 2));
  const BinaryOp& op = binary_op(n.op_type());
  const bool logical = n.op_type() == "And" || n.op_type() == "Or";
  Result<Shape> folded = broadcast_shapes(c.shape(in[0]), c.shape(in[1]));
  if (!folded.ok()) return node_error(c, n, folded.status().message());
  // Known operands fold on the host, unless the result is large (then it is computed).
  if (in[0].is_host() && in[1].is_host() && num_elements(*folded) <= (int64_t{1} << 22)) {
    const Result<Shape>& s = folded;
    DType dt = op.kind == OpKind::kCompare ? DType::kPred : in[0].host.dtype;
    HostTensor r = host_binary(in[0].host, in[1].host, *s, dt, op.host);
    if (dt == DType::kI32) r = host_as(std::move(r), dt);
    out[0] = OValue::of(std::move(r));
    return ok_status();
  }
  if (op.kind == OpKind::kPow && in[1].is_host() && in[1].host.size() == 1) {
    out[0] = OValue::of(power(c.b, c.value(in[0]), in[1].host.values[0]));
    return ok_status();
  }
  ALPA_ASSIGN_OR_RETURN(auto xy, graph_pair(c, n, in[0], in[1]));
  auto [x, y] = xy;
  Builder& b = c.b;
  if (logical) {
    Value fx = b.convert(x, DType::kF32), fy = b.convert(y, DType::kF32);
    Value v = n.op_type() == "And" ? b.mul(fx, fy) : b.max(fx, fy);
    out[0] = OValue::of(b.compare(v, b.full_like(v, 0.0), CompareDir::kNe));
    return ok_status();
  }
  if (op.kind == OpKind::kCompare) {
    out[0] = OValue::of(b.compare(x, y, op.dir));
  } else {
    std::vector<Value> ops = {x, y};
    out[0] = OValue::of(b.emit(op.kind, ops, NoAttrs{}, nullptr));
  }
  return ok_status();
}

Status unary(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 1));
  const std::string& t = n.op_type();
  if (t == "Identity" || t == "Dropout") {  // Dropout: the identity (inference, or p = 0)
    out[0] = in[0];
    if (out.size() > 1 && n.output(1).size() > 0)
      return node_error(c, n, "the dropout mask output is not supported",
                        "export in evaluation mode (model.eval()) or with dropout p = 0");
    return ok_status();
  }
  Builder& b = c.b;
  if (in[0].is_host() && t == "Neg") {
    HostTensor h = in[0].host;
    for (double& v : h.values) v = -v;
    out[0] = OValue::of(std::move(h));
    return ok_status();
  }
  if (in[0].is_host() && t == "Not") {
    HostTensor h = in[0].host;
    for (double& v : h.values) v = v != 0 ? 0.0 : 1.0;
    out[0] = OValue::of(std::move(h));
    return ok_status();
  }
  Value x = c.value(in[0]);
  Value y;
  if (t == "Neg")
    y = b.neg(x);
  else if (t == "Exp")
    y = b.exp(x);
  else if (t == "Log")
    y = b.log(x);
  else if (t == "Tanh")
    y = b.tanh(x);
  else if (t == "Sqrt")
    y = b.sqrt(x);
  else if (t == "Erf")
    y = b.erf(x);
  else if (t == "Relu")
    y = b.max(x, b.full_like(x, 0.0));
  else if (t == "Sigmoid")
    y = b.div(b.full_like(x, 1.0), b.add_scalar(b.exp(b.neg(x)), 1.0));
  else if (t == "Reciprocal")
    y = b.div(b.full_like(x, 1.0), x);
  else if (t == "Abs")
    y = b.max(x, b.neg(x));
  else if (t == "Not")
    y = b.compare(x, b.full_like(x, 0.0), CompareDir::kEq);
  else
    return node_error(c, n, "unsupported operator");
  out[0] = OValue::of(y);
  return ok_status();
}

Status cast(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 1));
  Result<DType> dt = dtype_of(static_cast<int32_t>(attr_int(n, "to", 1)), node_label(n));
  if (!dt.ok()) return node_error(c, n, dt.status().message());
  if (in[0].is_host()) {
    out[0] = OValue::of(host_as(in[0].host, *dt));
    return ok_status();
  }
  Value x = in[0].v;
  out[0] = OValue::of(c.b.type(x).dtype == *dt ? x : c.b.convert(x, *dt));
  if (c.input_of_value.count(x.id)) c.input_of_value[out[0].v.id] = c.input_of_value[x.id];
  return ok_status();
}

Status where(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 3));
  Result<Shape> s1 = broadcast_shapes(c.shape(in[0]), c.shape(in[1]));
  if (!s1.ok()) return node_error(c, n, s1.status().message());
  Result<Shape> s = broadcast_shapes(*s1, c.shape(in[2]));
  if (!s.ok()) return node_error(c, n, s.status().message());
  if (in[0].is_host() && in[1].is_host() && in[2].is_host() &&
      num_elements(*s) <= (int64_t{1} << 22)) {
    HostTensor h{in[1].host.dtype, *s, {}};
    HostTensor on = host_binary(in[0].host, in[1].host, *s, h.dtype, fmul);
    HostTensor off = host_binary(in[0].host, in[2].host, *s, h.dtype,
                                 [](double p, double v) { return p != 0 ? 0.0 : v; });
    for (int64_t i = 0; i < on.size(); ++i) h.values.push_back(on.values[i] + off.values[i]);
    out[0] = OValue::of(std::move(h));
    return ok_status();
  }
  DType dt = in[1].is_host() ? c.type(in[2]).dtype : c.type(in[1]).dtype;
  auto val = [&](const OValue& v, DType d) {
    return broadcast_value(c, c.value(v.is_host() ? OValue::of(host_as(v.host, d)) : v), *s);
  };
  out[0] = OValue::of(c.b.select(val(in[0], DType::kPred), val(in[1], dt), val(in[2], dt)));
  return ok_status();
}

Status softmax_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 1));
  Value x = c.value(in[0]);
  Result<int64_t> axis = norm_axis(attr_int(n, "axis", -1), c.b.type(x).rank());
  if (!axis.ok()) return node_error(c, n, axis.status().message());
  out[0] = OValue::of(softmax(c.b, x, *axis, n.op_type() == "LogSoftmax"));
  return ok_status();
}

Status layer_norm(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 2));
  Builder& b = c.b;
  Value x = c.value(in[0]);
  const Shape s = b.shape(x);
  Result<int64_t> axis = norm_axis(attr_int(n, "axis", -1), static_cast<int64_t>(s.size()));
  if (!axis.ok()) return node_error(c, n, axis.status().message());
  for (size_t i = 1; i < out.size(); ++i)
    if (!n.output(static_cast<int>(i)).empty())
      return node_error(c, n, "the mean and inverse deviation outputs are not supported");
  std::vector<int64_t> red, keep;
  int64_t count = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i >= *axis) {
      red.push_back(i);
      count *= s[i];
    } else {
      keep.push_back(i);
    }
  }
  const double eps = attr_float(n, "epsilon", 1e-5);
  Value mean = b.broadcast(b.scale(b.reduce_sum(x, red), 1.0 / count), s, keep);
  Value d = b.sub(x, mean);
  Value var = b.scale(b.reduce_sum(b.mul(d, d), red), 1.0 / count);
  Value inv = b.broadcast(b.rsqrt(b.add_scalar(var, eps)), s, keep);
  Value y = b.mul(b.mul(d, inv), broadcast_value(c, c.value(in[1]), s));
  if (in.size() > 2 && in[2].present()) y = b.add(y, broadcast_value(c, c.value(in[2]), s));
  out[0] = OValue::of(y);
  return ok_status();
}

Status reduce(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need_inputs(c, n, in, 1));
  Builder& b = c.b;
  Value x = c.value(in[0]);
  const Shape s = b.shape(x);
  const int64_t r = static_cast<int64_t>(s.size());
  std::vector<int64_t> axes;
  if (in.size() > 1 && in[1].present()) {
    ALPA_ASSIGN_OR_RETURN(axes, host_ints(c, n, in, 1, "axes"));
  } else if (auto a = attr_ints(n, "axes")) {
    axes = *a;
  }
  if (axes.empty() && attr_int(n, "noop_with_empty_axes", 0) != 0) {
    out[0] = OValue::of(x);
    return ok_status();
  }
  std::vector<bool> reduced(static_cast<size_t>(r), axes.empty());
  for (int64_t a : axes) {
    Result<int64_t> ax = norm_axis(a, r);
    if (!ax.ok()) return node_error(c, n, ax.status().message());
    reduced[static_cast<size_t>(*ax)] = true;
  }
  std::vector<int64_t> dims;
  Shape kept;
  int64_t count = 1;
  for (int64_t i = 0; i < r; ++i) {
    if (reduced[static_cast<size_t>(i)]) {
      dims.push_back(i);
      count *= s[i];
      kept.push_back(1);
    } else {
      kept.push_back(s[i]);
    }
  }
  const std::string& t = n.op_type();
  Value y = t == "ReduceMax" ? b.reduce_max(x, dims) : b.reduce_sum(x, dims);
  if (t == "ReduceMean") y = b.scale(y, 1.0 / static_cast<double>(std::max<int64_t>(count, 1)));
  if (attr_int(n, "keepdims", 1) != 0) y = b.reshape(y, kept);
  out[0] = OValue::of(y);
  return ok_status();
}

}  // namespace

void register_elementwise(std::map<std::string, Converter>& t) {
  for (const BinaryOp& op : kBinaryOps) t[op.name] = binary;
  for (const char* u : {"Identity", "Dropout", "Neg", "Exp", "Log", "Tanh", "Sqrt", "Erf", "Relu",
                        "Sigmoid", "Reciprocal", "Abs", "Not"})
    t[u] = unary;
  t["Cast"] = cast;
  t["Where"] = where;
  t["Softmax"] = softmax_op;
  t["LogSoftmax"] = softmax_op;
  t["LayerNormalization"] = layer_norm;
  for (const char* r : {"ReduceSum", "ReduceMean", "ReduceMax"}) t[r] = reduce;
}

}  // namespace alpa::onnx_import
