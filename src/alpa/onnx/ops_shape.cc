// Shapes and data movement: Shape, Constant, ConstantOfShape, Range, Reshape, Flatten,
// Transpose, (Un)squeeze, Concat, Split, Slice, Gather, Expand, Trilu. Each folds on the host
// when its inputs are known there (shape computations), else emits IR movement ops.
#include <cmath>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {
namespace {

using Ins = std::vector<OValue>;

std::vector<int64_t> strides_of(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (size_t i = s.size(); i-- > 1;) st[i - 1] = st[i] * s[i];
  return st;
}

// out[idx] = in[map(idx)] over every index of `shape` (map gets the output coordinates).
template <typename F>
HostTensor host_gather_by(const HostTensor& in, const Shape& shape, F map) {
  HostTensor out{in.dtype, shape, {}};
  const int64_t n = num_elements(shape);
  out.values.resize(static_cast<size_t>(n));
  std::vector<int64_t> coord(shape.size());
  const std::vector<int64_t> in_st = strides_of(in.shape);
  for (int64_t i = 0; i < n; ++i) {
    int64_t rem = i;
    for (size_t d = shape.size(); d-- > 0;) {
      coord[d] = rem % shape[d];
      rem /= shape[d];
    }
    out.values[static_cast<size_t>(i)] = in.values[static_cast<size_t>(map(coord, in_st))];
  }
  return out;
}

constexpr int64_t kMaxHostElements = int64_t{1} << 24;

Status check_host_size(Ctx& c, const onnx::NodeProto& n, const Shape& s) {
  if (!shape_within_limits(s) || num_elements(s) > kMaxHostElements)
    return node_error(c, n, cat("a constant of shape ", shape_to_string(s), " is too large"));
  return ok_status();
}

Status need(Ctx& c, const onnx::NodeProto& n, const Ins& in, size_t count) {
  if (in.size() < count) return node_error(c, n, cat("needs ", count, " inputs, has ", in.size()));
  for (size_t i = 0; i < count; ++i)
    if (!in[i].present()) return node_error(c, n, cat("input ", i, " is missing"));
  return ok_status();
}

Status shape_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  const int64_t r = static_cast<int64_t>(s.size());
  int64_t start = attr_int(n, "start", 0), end = attr_int(n, "end", r);
  if (start < 0) start += r;
  if (end < 0) end += r;
  start = std::clamp<int64_t>(start, 0, r);
  end = std::clamp<int64_t>(end, start, r);
  out[0] = OValue::of(host_vector(std::vector<int64_t>(s.begin() + start, s.begin() + end)));
  return ok_status();
}

Status constant_op(Ctx& c, const onnx::NodeProto& n, Ins&, Ins& out) {
  if (const onnx::AttributeProto* a = find_attr(n, "value")) {
    Result<HostTensor> h = read_tensor(a->t(), node_label(n));
    if (!h.ok()) return node_error(c, n, h.status().message());
    out[0] = OValue::of(std::move(*h));
  } else if (const onnx::AttributeProto* f = find_attr(n, "value_float")) {
    out[0] = OValue::of(host_scalar(f->f(), DType::kF32));
  } else if (const onnx::AttributeProto* i = find_attr(n, "value_int")) {
    out[0] = OValue::of(host_scalar(static_cast<double>(i->i()), DType::kI32));
  } else if (auto ints = attr_ints(n, "value_ints")) {
    out[0] = OValue::of(host_vector(*ints));
  } else if (const onnx::AttributeProto* fs = find_attr(n, "value_floats")) {
    HostTensor h{DType::kF32, {fs->floats_size()}, {}};
    for (float v : fs->floats()) h.values.push_back(v);
    out[0] = OValue::of(std::move(h));
  } else {
    return node_error(c, n, "has no value attribute this importer reads",
                      "value, value_float(s) and value_int(s) are read");
  }
  return ok_status();
}

Status constant_of_shape(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> shape, host_ints(c, n, in, 0, "shape"));
  ALPA_RETURN_IF_ERROR(check_host_size(c, n, shape));
  HostTensor h{DType::kF32, shape, {}};
  double v = 0.0;
  if (const onnx::AttributeProto* a = find_attr(n, "value")) {
    Result<HostTensor> t = read_tensor(a->t(), node_label(n));
    if (!t.ok()) return node_error(c, n, t.status().message());
    if (t->values.size() != 1) return node_error(c, n, "value must hold one element");
    h.dtype = t->dtype;
    v = t->values[0];
  }
  h.values.assign(static_cast<size_t>(num_elements(shape)), v);
  out[0] = OValue::of(std::move(h));
  return ok_status();
}

Status range(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 3));
  if (!in[0].is_host() || !in[1].is_host() || !in[2].is_host() || in[0].host.size() != 1 ||
      in[1].host.size() != 1 || in[2].host.size() != 1)
    return node_error(c, n, "start, limit and delta must be known scalars");
  const double s = in[0].host.values[0], l = in[1].host.values[0], d = in[2].host.values[0];
  if (d == 0) return node_error(c, n, "delta is 0");
  const double count = std::max(0.0, std::ceil((l - s) / d));
  if (count > static_cast<double>(kMaxHostElements)) return node_error(c, n, "too many elements");
  HostTensor h{in[0].host.dtype, {static_cast<int64_t>(count)}, {}};
  for (int64_t i = 0; i < static_cast<int64_t>(count); ++i) h.values.push_back(s + i * d);
  out[0] = OValue::of(std::move(h));
  return ok_status();
}

// Sets out[0] to `in` with shape `s` (same element count).
Status reshaped(Ctx& c, const onnx::NodeProto& n, const OValue& in, const Shape& s, OValue& out) {
  const Shape from = c.shape(in);
  if (!shape_within_limits(s) || num_elements(s) != num_elements(from))
    return node_error(c, n,
                      cat("cannot reshape ", shape_to_string(from), " to ", shape_to_string(s)));
  if (in.is_host()) {
    HostTensor h = in.host;
    h.shape = s;
    out = OValue::of(std::move(h));
  } else {
    out = OValue::of(c.b.reshape(in.v, s));
    if (c.input_of_value.count(in.v.id)) c.input_of_value[out.v.id] = c.input_of_value[in.v.id];
  }
  return ok_status();
}

Status reshape(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> target, host_ints(c, n, in, 1, "shape"));
  const Shape from = c.shape(in[0]);
  const bool allowzero = attr_int(n, "allowzero", 0) != 0;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    if (target[i] == 0 && !allowzero) {
      if (i >= from.size()) return node_error(c, n, "shape copies a dimension the input lacks");
      target[i] = from[i];
    }
    if (target[i] == -1) {
      if (infer >= 0) return node_error(c, n, "shape has more than one -1");
      infer = static_cast<int64_t>(i);
    } else if (target[i] < 0) {
      return node_error(c, n, cat("shape has a negative extent ", target[i]));
    } else {
      known *= target[i];
    }
  }
  if (infer >= 0) {
    if (known == 0 || num_elements(from) % known != 0)
      return node_error(c, n, cat("cannot infer -1 reshaping ", shape_to_string(from)));
    target[static_cast<size_t>(infer)] = num_elements(from) / known;
  }
  return reshaped(c, n, in[0], target, out[0]);
}

Status flatten(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  int64_t axis = attr_int(n, "axis", 1);
  if (axis < 0) axis += static_cast<int64_t>(s.size());
  if (axis < 0 || axis > static_cast<int64_t>(s.size())) return node_error(c, n, "bad axis");
  int64_t a = 1, b = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) (i < axis ? a : b) *= s[i];
  return reshaped(c, n, in[0], {a, b}, out[0]);
}

Status squeeze_unsqueeze(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  std::vector<int64_t> axes;
  if (in.size() > 1 && in[1].present()) {
    ALPA_ASSIGN_OR_RETURN(axes, host_ints(c, n, in, 1, "axes"));
  } else if (auto a = attr_ints(n, "axes")) {
    axes = *a;
  }
  Shape r;
  if (n.op_type() == "Unsqueeze") {
    const int64_t rank = static_cast<int64_t>(s.size() + axes.size());
    std::vector<bool> added(static_cast<size_t>(rank), false);
    for (int64_t a : axes) {
      Result<int64_t> ax = norm_axis(a, rank);
      if (!ax.ok()) return node_error(c, n, ax.status().message());
      added[static_cast<size_t>(*ax)] = true;
    }
    size_t k = 0;
    for (int64_t i = 0; i < rank; ++i) r.push_back(added[i] ? 1 : (k < s.size() ? s[k++] : 1));
  } else {
    std::vector<bool> drop(s.size(), axes.empty());
    for (int64_t a : axes) {
      Result<int64_t> ax = norm_axis(a, static_cast<int64_t>(s.size()));
      if (!ax.ok()) return node_error(c, n, ax.status().message());
      if (s[static_cast<size_t>(*ax)] != 1) return node_error(c, n, "squeezes a dimension not 1");
      drop[static_cast<size_t>(*ax)] = true;
    }
    for (size_t i = 0; i < s.size(); ++i)
      if (!(drop[i] && s[i] == 1)) r.push_back(s[i]);
  }
  return reshaped(c, n, in[0], r, out[0]);
}

Status transpose(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  std::vector<int64_t> perm;
  if (auto p = attr_ints(n, "perm")) {
    perm = *p;
  } else {
    for (size_t i = s.size(); i-- > 0;) perm.push_back(static_cast<int64_t>(i));
  }
  std::vector<bool> seen(s.size(), false);
  if (perm.size() != s.size()) return node_error(c, n, "perm does not match the input rank");
  for (int64_t p : perm) {
    if (p < 0 || p >= static_cast<int64_t>(s.size()) || seen[static_cast<size_t>(p)])
      return node_error(c, n, "perm is not a permutation");
    seen[static_cast<size_t>(p)] = true;
  }
  if (in[0].is_host()) {
    Shape r;
    for (int64_t p : perm) r.push_back(s[static_cast<size_t>(p)]);
    out[0] = OValue::of(host_gather_by(in[0].host, r, [&](const auto& co, const auto& st) {
      int64_t idx = 0;
      for (size_t d = 0; d < perm.size(); ++d) idx += co[d] * st[static_cast<size_t>(perm[d])];
      return idx;
    }));
    return ok_status();
  }
  out[0] = OValue::of(c.b.transpose(in[0].v, perm));
  return ok_status();
}

Status concat(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  if (in.empty()) return node_error(c, n, "has no inputs");
  ALPA_RETURN_IF_ERROR(need(c, n, in, in.size()));
  const int64_t rank = static_cast<int64_t>(c.shape(in[0]).size());
  Result<int64_t> axis = norm_axis(attr_int(n, "axis", 0), rank);
  if (!axis.ok()) return node_error(c, n, axis.status().message());
  bool host = true;
  for (const OValue& v : in) host = host && v.is_host();
  if (host) {
    Shape s = in[0].host.shape;
    s[*axis] = 0;
    for (const OValue& v : in) {
      if (v.host.shape.size() != s.size()) return node_error(c, n, "inputs differ in rank");
      s[*axis] += v.host.shape[*axis];
    }
    HostTensor h{in[0].host.dtype, s, {}};
    int64_t outer = 1;
    for (int64_t i = 0; i < *axis; ++i) outer *= s[i];
    for (int64_t o = 0; o < outer; ++o)
      for (const OValue& v : in) {
        const int64_t chunk = v.host.size() / std::max<int64_t>(outer, 1);
        for (int64_t k = 0; k < chunk; ++k) h.values.push_back(v.host.values[o * chunk + k]);
      }
    if (static_cast<int64_t>(h.values.size()) != num_elements(s))
      return node_error(c, n, "inputs do not match outside the axis");
    out[0] = OValue::of(std::move(h));
    return ok_status();
  }
  std::vector<Value> vs;
  for (const OValue& v : in) vs.push_back(c.value(v));
  out[0] = OValue::of(c.b.concat(vs, *axis));
  return ok_status();
}

}  // namespace

Value strided_slice(Builder& b, Value x, int64_t dim, int64_t start, int64_t count, int64_t step) {
  Shape s = b.shape(x);
  const int64_t r = static_cast<int64_t>(s.size());
  std::vector<int64_t> lo(r, 0), hi(s.begin(), s.end());
  if (step == 1) {
    lo[dim] = start;
    hi[dim] = start + count;
    return b.slice(x, lo, hi);
  }
  const int64_t need = start + count * step;
  if (need > s[dim]) {
    std::vector<int64_t> pl(r, 0), ph(r, 0);
    ph[dim] = need - s[dim];
    x = b.pad(x, pl, ph);
  }
  lo[dim] = start;
  hi[dim] = need;
  Value t = b.slice(x, lo, hi);
  Shape split(s.begin(), s.begin() + dim);
  split.push_back(count);
  split.push_back(step);
  split.insert(split.end(), s.begin() + dim + 1, s.end());
  t = b.reshape(t, split);
  std::vector<int64_t> lo2(split.size(), 0), hi2(split.begin(), split.end());
  hi2[dim + 1] = 1;
  t = b.slice(t, lo2, hi2);
  Shape res = s;
  res[dim] = count;
  return b.reshape(t, res);
}

Status slice_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);
Status split_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);
Status gather_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);
Status expand_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);
Status trilu_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);
Status pad_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out);

HostTensor host_take(
    const HostTensor& in, const Shape& shape,
    const std::function<int64_t(const std::vector<int64_t>&, const std::vector<int64_t>&)>& map) {
  return host_gather_by(in, shape, map);
}

void register_shape_ops(std::map<std::string, Converter>& t) {
  t["Shape"] = shape_op;
  t["Constant"] = constant_op;
  t["ConstantOfShape"] = constant_of_shape;
  t["Range"] = range;
  t["Reshape"] = reshape;
  t["Flatten"] = flatten;
  t["Squeeze"] = squeeze_unsqueeze;
  t["Unsqueeze"] = squeeze_unsqueeze;
  t["Transpose"] = transpose;
  t["Concat"] = concat;
  t["Slice"] = slice_op;
  t["Split"] = split_op;
  t["Gather"] = gather_op;
  t["Expand"] = expand_op;
  t["Trilu"] = trilu_op;
  t["Pad"] = pad_op;
}

}  // namespace alpa::onnx_import
