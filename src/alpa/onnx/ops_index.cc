// Slice, Split, Gather, Expand and Trilu: on the host when their inputs are known there, else
// as IR slices, gathers and broadcasts.
#include <cmath>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {

using Ins = std::vector<OValue>;

namespace {

struct AxisSlice {
  int64_t start = 0, count = 0, step = 1;
};

// ONNX Slice's clamping of start and end on a dimension of `dim` elements.
AxisSlice clamp_slice(int64_t start, int64_t end, int64_t step, int64_t dim) {
  if (dim == 0) return AxisSlice{0, 0, 1};
  // A step beyond the extent takes one element at most; limiting it keeps the sums in range.
  step = std::clamp<int64_t>(step, -(dim + 1), dim + 1);
  if (step == 0) step = 1;
  if (start < 0) start += dim;
  if (end < 0) end += dim;
  AxisSlice a;
  a.step = step;
  if (step > 0) {
    start = std::clamp<int64_t>(start, 0, dim);
    end = std::clamp<int64_t>(end, 0, dim);
    a.count = end > start ? (end - start + step - 1) / step : 0;
  } else {
    start = std::clamp<int64_t>(start, 0, dim - 1);
    end = std::clamp<int64_t>(end, -1, dim - 1);
    a.count = start > end ? (start - end + (-step) - 1) / (-step) : 0;
  }
  a.start = start;
  return a;
}

Status need(Ctx& c, const onnx::NodeProto& n, const Ins& in, size_t count) {
  if (in.size() < count) return node_error(c, n, cat("needs ", count, " inputs, has ", in.size()));
  for (size_t i = 0; i < count; ++i)
    if (!in[i].present()) return node_error(c, n, cat("input ", i, " is missing"));
  return ok_status();
}

// Applies per-dimension slices (host or graph).
Status apply_slices(Ctx& c, const onnx::NodeProto& n, const OValue& x,
                    const std::vector<AxisSlice>& sl, OValue& out) {
  const Shape s = c.shape(x);
  Shape r = s;
  for (size_t d = 0; d < s.size(); ++d) r[d] = sl[d].count;
  if (x.is_host()) {
    out = OValue::of(host_take(x.host, r, [&](const auto& co, const auto& st) {
      int64_t idx = 0;
      for (size_t d = 0; d < co.size(); ++d) idx += (sl[d].start + co[d] * sl[d].step) * st[d];
      return idx;
    }));
    return ok_status();
  }
  Value v = x.v;
  for (size_t d = 0; d < s.size(); ++d) {
    const AxisSlice& a = sl[d];
    if (a.start == 0 && a.step == 1 && a.count == s[d]) continue;
    if (a.count < 1) return node_error(c, n, "a slice is empty");
    if (a.step < 0) return node_error(c, n, "negative slice steps (reversal) are not supported");
    v = strided_slice(c.b, v, static_cast<int64_t>(d), a.start, a.count, a.step);
  }
  out = OValue::of(v);
  return ok_status();
}

}  // namespace

Status slice_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 3));
  const Shape s = c.shape(in[0]);
  const int64_t rank = static_cast<int64_t>(s.size());
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> starts, host_ints(c, n, in, 1, "starts"));
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> ends, host_ints(c, n, in, 2, "ends"));
  std::vector<int64_t> axes, steps;
  if (in.size() > 3 && in[3].present()) {
    ALPA_ASSIGN_OR_RETURN(axes, host_ints(c, n, in, 3, "axes"));
  } else {
    for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
  }
  if (in.size() > 4 && in[4].present()) {
    ALPA_ASSIGN_OR_RETURN(steps, host_ints(c, n, in, 4, "steps"));
  } else {
    steps.assign(starts.size(), 1);
  }
  if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
    return node_error(c, n, "starts, ends, axes and steps differ in length");
  std::vector<AxisSlice> sl;
  for (int64_t d : s) sl.push_back({0, d, 1});
  for (size_t i = 0; i < axes.size(); ++i) {
    Result<int64_t> ax = norm_axis(axes[i], rank);
    if (!ax.ok()) return node_error(c, n, ax.status().message());
    if (steps[i] == 0) return node_error(c, n, "a step is 0");
    sl[static_cast<size_t>(*ax)] = clamp_slice(starts[i], ends[i], steps[i], s[*ax]);
  }
  return apply_slices(c, n, in[0], sl, out[0]);
}

Status split_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  Result<int64_t> axis = norm_axis(attr_int(n, "axis", 0), static_cast<int64_t>(s.size()));
  if (!axis.ok()) return node_error(c, n, axis.status().message());
  std::vector<int64_t> sizes;
  if (in.size() > 1 && in[1].present()) {
    ALPA_ASSIGN_OR_RETURN(sizes, host_ints(c, n, in, 1, "split"));
  } else if (auto a = attr_ints(n, "split")) {
    sizes = *a;
  } else {
    const int64_t parts = static_cast<int64_t>(out.size());
    if (parts < 1 || s[*axis] % parts != 0)
      return node_error(c, n, cat("cannot split ", s[*axis], " into ", parts, " equal parts"));
    sizes.assign(static_cast<size_t>(parts), s[*axis] / parts);
  }
  if (sizes.size() != out.size()) return node_error(c, n, "split sizes do not match the outputs");
  int64_t at = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] < 1 || at + sizes[i] > s[*axis]) return node_error(c, n, "bad split sizes");
    std::vector<AxisSlice> sl;
    for (int64_t d : s) sl.push_back({0, d, 1});
    sl[static_cast<size_t>(*axis)] = {at, sizes[i], 1};
    ALPA_RETURN_IF_ERROR(apply_slices(c, n, in[0], sl, out[i]));
    at += sizes[i];
  }
  return ok_status();
}

Status gather_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  const Shape s = c.shape(in[0]);
  const int64_t rank = static_cast<int64_t>(s.size());
  Result<int64_t> axis = norm_axis(attr_int(n, "axis", 0), rank);
  if (!axis.ok()) return node_error(c, n, axis.status().message());
  const int64_t a = *axis, dim = s[static_cast<size_t>(a)];
  const Shape is = c.shape(in[1]);
  Shape r(s.begin(), s.begin() + a);
  r.insert(r.end(), is.begin(), is.end());
  r.insert(r.end(), s.begin() + a + 1, s.end());
  if (in[1].is_host()) {
    std::vector<int64_t> idx;
    for (double v : in[1].host.values) {
      if (!(v >= static_cast<double>(-dim) && v < static_cast<double>(dim)))
        return node_error(c, n, cat("index ", v, " is out of range ", dim));
      int64_t i = static_cast<int64_t>(v);
      if (i < 0) i += dim;
      idx.push_back(i);
    }
    if (in[0].is_host()) {
      const size_t ir = is.size();
      out[0] = OValue::of(host_take(in[0].host, r, [&](const auto& co, const auto& st) {
        int64_t flat = 0, m = 1;
        for (size_t k = ir; k-- > 0;) {
          flat += co[static_cast<size_t>(a) + k] * m;
          m *= is[k];
        }
        int64_t off = idx[static_cast<size_t>(flat)] * st[static_cast<size_t>(a)];
        for (int64_t d = 0; d < a; ++d) off += co[d] * st[d];
        for (int64_t d = a + 1; d < rank; ++d) off += co[d - 1 + ir] * st[d];
        return off;
      }));
      return ok_status();
    }
    if (is.empty()) {  // one index: a slice, the axis dropped
      Value v = strided_slice(c.b, in[0].v, a, idx[0], 1, 1);
      out[0] = OValue::of(c.b.reshape(v, r));
      return ok_status();
    }
    HostTensor ih{DType::kI32, is, {}};
    for (int64_t i : idx) ih.values.push_back(static_cast<double>(i));
    out[0] = OValue::of(c.b.gather(c.value(in[0]), c.value(OValue::of(std::move(ih))), a));
    return ok_status();
  }
  Value indices = in[1].v;
  if (c.b.type(indices).dtype != DType::kI32) return node_error(c, n, "indices must be integers");
  c.note_bound(indices, dim);
  out[0] = OValue::of(c.b.gather(c.value(in[0]), indices, a));
  return ok_status();
}

Status expand_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> shape, host_ints(c, n, in, 1, "shape"));
  Result<Shape> r = broadcast_shapes(c.shape(in[0]), shape);
  if (!r.ok()) return node_error(c, n, r.status().message());
  if (!shape_within_limits(*r)) return node_error(c, n, "the result is too large");
  if (in[0].is_host()) {
    if (num_elements(*r) > (int64_t{1} << 24)) return node_error(c, n, "the result is too large");
    HostTensor zero{in[0].host.dtype, {}, {0.0}};
    out[0] = OValue::of(
        host_binary(in[0].host, zero, *r, in[0].host.dtype, [](double x, double) { return x; }));
    return ok_status();
  }
  out[0] = OValue::of(broadcast_value(c, in[0].v, *r));
  return ok_status();
}

Status trilu_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  const Shape s = c.shape(in[0]);
  if (s.size() < 2) return node_error(c, n, "needs a rank >= 2 input");
  int64_t k = 0;
  if (in.size() > 1 && in[1].present()) {
    ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> kv, host_ints(c, n, in, 1, "k"));
    if (kv.size() != 1) return node_error(c, n, "k must be a scalar");
    k = kv[0];
  }
  const bool upper = attr_int(n, "upper", 1) != 0;
  if (num_elements(s) > (int64_t{1} << 24)) return node_error(c, n, "the input is too large");
  HostTensor mask{DType::kPred, s, {}};
  const int64_t rows = s[s.size() - 2], cols = s.back();
  for (int64_t i = 0; i < num_elements(s); ++i) {
    const int64_t col = i % cols, row = (i / cols) % rows;
    mask.values.push_back((upper ? col - row >= k : col - row <= k) ? 1.0 : 0.0);
  }
  if (in[0].is_host()) {
    HostTensor h = in[0].host;
    for (size_t i = 0; i < h.values.size(); ++i)
      if (mask.values[i] == 0.0) h.values[i] = 0.0;
    out[0] = OValue::of(std::move(h));
    return ok_status();
  }
  Value x = in[0].v;
  out[0] = OValue::of(c.b.select(c.value(OValue::of(std::move(mask))), x, c.b.full_like(x, 0.0)));
  return ok_status();
}

Status pad_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  if (attr_string(n, "mode", "constant") != "constant")
    return node_error(c, n, "only constant padding is supported");
  ALPA_ASSIGN_OR_RETURN(std::vector<int64_t> pads, host_ints(c, n, in, 1, "pads"));
  const Shape s = c.shape(in[0]);
  const size_t r = s.size();
  if (in.size() > 3 && in[3].present()) return node_error(c, n, "the axes input is not supported");
  if (pads.size() != 2 * r) return node_error(c, n, "pads must have 2 entries per dimension");
  double value = 0.0;
  if (in.size() > 2 && in[2].present()) {
    if (!in[2].is_host() || in[2].host.size() != 1)
      return node_error(c, n, "the constant value must be a known scalar");
    value = in[2].host.values[0];
  }
  std::vector<int64_t> lo(pads.begin(), pads.begin() + static_cast<std::ptrdiff_t>(r));
  std::vector<int64_t> hi(pads.begin() + static_cast<std::ptrdiff_t>(r), pads.end());
  for (int64_t p : pads)
    if (p < 0) return node_error(c, n, "negative pads (cropping) are not supported");
  out[0] = OValue::of(c.b.pad(c.value(in[0]), lo, hi, value));
  return ok_status();
}

}  // namespace alpa::onnx_import
