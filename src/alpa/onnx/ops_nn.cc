// Contractions and layers: MatMul, Gemm, Einsum, Conv, ConvTranspose, pooling, batch
// normalization and the loss operators, as IR contractions and compositions.
#include <limits>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {
namespace {

using Ins = std::vector<OValue>;

Status need(Ctx& c, const onnx::NodeProto& n, const Ins& in, size_t count) {
  if (in.size() < count) return node_error(c, n, cat("needs ", count, " inputs, has ", in.size()));
  for (size_t i = 0; i < count; ++i)
    if (!in[i].present()) return node_error(c, n, cat("input ", i, " is missing"));
  return ok_status();
}

std::vector<int64_t> iota_dims(int64_t from, int64_t to) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; ++i) v.push_back(i);
  return v;
}

Status matmul(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  Builder& b = c.b;
  Value x = c.value(in[0]), y = c.value(in[1]);
  Shape sx = b.shape(x), sy = b.shape(y);
  if (sx.empty() || sy.empty()) return node_error(c, n, "operands must have rank >= 1");
  const bool vec_x = sx.size() == 1, vec_y = sy.size() == 1;
  if (vec_x) x = b.reshape(x, {1, sx[0]});
  if (vec_y) y = b.reshape(y, {sy[0], 1});
  sx = b.shape(x);
  sy = b.shape(y);
  if (!b.ok() || sx.size() < 2 || sy.size() < 2) return ok_status();  // the builder's error
  const int64_t rx = static_cast<int64_t>(sx.size()), ry = static_cast<int64_t>(sy.size());
  Value r;
  if (ry == 2) {
    r = b.dot_general(x, y, DotAttrs{{}, {}, {rx - 1}, {0}});
  } else {
    Result<Shape> batch =
        broadcast_shapes(Shape(sx.begin(), sx.end() - 2), Shape(sy.begin(), sy.end() - 2));
    if (!batch.ok()) return node_error(c, n, batch.status().message());
    Shape bx = *batch, by = *batch;
    bx.insert(bx.end(), sx.end() - 2, sx.end());
    by.insert(by.end(), sy.end() - 2, sy.end());
    x = broadcast_value(c, x, bx);
    y = broadcast_value(c, y, by);
    const int64_t nb = static_cast<int64_t>(batch->size());
    r = b.dot_general(x, y, DotAttrs{iota_dims(0, nb), iota_dims(0, nb), {nb + 1}, {nb}});
  }
  Shape rs = b.shape(r);
  if (!b.ok() || rs.size() < 2) return ok_status();
  if (vec_x) rs.erase(rs.end() - 2);
  if (vec_y) rs.erase(rs.end() - 1);
  if (vec_x || vec_y) r = b.reshape(r, rs);
  out[0] = OValue::of(r);
  return ok_status();
}

Status gemm(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  Builder& b = c.b;
  Value a = c.value(in[0]), w = c.value(in[1]);
  if (b.type(a).rank() != 2 || b.type(w).rank() != 2)
    return node_error(c, n, "A and B must be matrices");
  const int64_t ta = attr_int(n, "transA", 0), tb = attr_int(n, "transB", 0);
  Value r = b.dot_general(a, w, DotAttrs{{}, {}, {ta ? 0 : 1}, {tb ? 1 : 0}});
  const double alpha = attr_float(n, "alpha", 1.0), beta = attr_float(n, "beta", 1.0);
  if (alpha != 1.0) r = b.scale(r, alpha);
  if (in.size() > 2 && in[2].present() && beta != 0.0) {
    Value bias = broadcast_value(c, c.value(in[2]), b.shape(r));
    r = b.add(r, beta == 1.0 ? bias : b.scale(bias, beta));
  }
  out[0] = OValue::of(r);
  return ok_status();
}

// Two-operand einsum without repeated or ellipsis indices: one dot_general, then a transpose.
Status einsum(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  std::string eq = attr_string(n, "equation", "");
  std::string clean;
  for (char ch : eq)
    if (ch != ' ') clean += ch;
  const size_t comma = clean.find(','), arrow = clean.find("->");
  if (in.size() != 2 || comma == std::string::npos || arrow == std::string::npos ||
      clean.find('.') != std::string::npos)
    return node_error(c, n, cat("equation '", eq, "' is not a two-operand contraction"),
                      "only einsums that map to one dot_general (like 'bij,bjk->bik') import");
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  const std::string l = clean.substr(0, comma), r = clean.substr(comma + 1, arrow - comma - 1),
                    o = clean.substr(arrow + 2);
  Builder& b = c.b;
  Value x = c.value(in[0]), y = c.value(in[1]);
  if (l.size() != b.shape(x).size() || r.size() != b.shape(y).size())
    return node_error(c, n, "the equation does not match the operands' ranks");
  DotAttrs d;
  std::string res;  // the dot_general result's index letters
  for (size_t i = 0; i < l.size(); ++i) {
    if (l.find(l[i]) != i) return node_error(c, n, "repeated indices are not supported");
    const size_t j = r.find(l[i]);
    const bool in_out = o.find(l[i]) != std::string::npos;
    if (j != std::string::npos && in_out) {
      d.lhs_batch.push_back(static_cast<int64_t>(i));
      d.rhs_batch.push_back(static_cast<int64_t>(j));
      res += l[i];
    } else if (j != std::string::npos) {
      d.lhs_contract.push_back(static_cast<int64_t>(i));
      d.rhs_contract.push_back(static_cast<int64_t>(j));
    } else if (!in_out) {
      return node_error(c, n, "summing an index of one operand is not supported");
    }
  }
  for (char ch : l)
    if (r.find(ch) == std::string::npos) res += ch;
  for (size_t j = 0; j < r.size(); ++j) {
    if (r.find(r[j]) != j) return node_error(c, n, "repeated indices are not supported");
    if (l.find(r[j]) == std::string::npos) {
      if (o.find(r[j]) == std::string::npos)
        return node_error(c, n, "summing an index of one operand is not supported");
      res += r[j];
    }
  }
  if (res.size() != o.size()) return node_error(c, n, "the output indices do not match");
  Value v = b.dot_general(x, y, d);
  std::vector<int64_t> perm;
  bool identity = true;
  for (size_t i = 0; i < o.size(); ++i) {
    const size_t p = res.find(o[i]);
    if (p == std::string::npos) return node_error(c, n, "the output indices do not match");
    perm.push_back(static_cast<int64_t>(p));
    identity = identity && p == i;
  }
  out[0] = OValue::of(identity ? v : b.transpose(v, perm));
  return ok_status();
}

// Conv attributes: strides, pads, dilations, group (2-D, explicit padding).
Result<ConvAttrs> conv_attrs(Ctx& c, const onnx::NodeProto& n) {
  const std::string pad = attr_string(n, "auto_pad", "NOTSET");
  if (pad != "NOTSET" && pad != "VALID")
    return node_error(c, n, cat("auto_pad ", pad, " is not supported"),
                      "export with explicit padding (PyTorch does)");
  ConvAttrs a;
  if (auto s = attr_ints(n, "strides")) a.stride = *s;
  if (auto d = attr_ints(n, "dilations")) a.dilation = *d;
  if (auto p = attr_ints(n, "pads")) {
    if (p->size() != 4) return node_error(c, n, "pads must have 4 entries (2-D)");
    a.padding = {(*p)[0], (*p)[2], (*p)[1], (*p)[3]};
  }
  a.groups = attr_int(n, "group", 1);
  if (a.stride.size() != 2 || a.dilation.size() != 2)
    return node_error(c, n, "only 2-D convolutions (N, C, H, W) are supported");
  for (const auto* v : {&a.stride, &a.dilation, &a.padding})
    for (int64_t x : *v)
      if (x < 0 || x > (int64_t{1} << 20))
        return node_error(c, n, cat("a stride, dilation or pad of ", x, " is out of range"));
  if (a.groups < 1 || a.groups > (int64_t{1} << 20))
    return node_error(c, n, cat("group ", a.groups, " is out of range"));
  return a;
}

Value add_channel_bias(Builder& b, Value y, Value bias) {
  return b.add(y, b.broadcast(bias, b.shape(y), {1}));
}

Status conv(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  ALPA_ASSIGN_OR_RETURN(ConvAttrs a, conv_attrs(c, n));
  Builder& b = c.b;
  Value y = b.conv2d(c.value(in[0]), c.value(in[1]), a);
  if (in.size() > 2 && in[2].present()) y = add_channel_bias(b, y, c.value(in[2]));
  out[0] = OValue::of(y);
  return ok_status();
}

Status conv_transpose(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  ALPA_ASSIGN_OR_RETURN(ConvAttrs a, conv_attrs(c, n));
  if (find_attr(n, "output_shape"))
    return node_error(c, n, "output_shape is not supported", "give pads and output_padding");
  std::vector<int64_t> op = attr_ints(n, "output_padding").value_or(std::vector<int64_t>{0, 0});
  Builder& b = c.b;
  Value x = c.value(in[0]), w = c.value(in[1]);
  const Shape sx = b.shape(x), sw = b.shape(w);
  if (sx.size() != 4 || sw.size() != 4 || op.size() != 2)
    return node_error(c, n, "only 2-D transposed convolutions are supported");
  for (int64_t x : op)
    if (x < 0 || x > (int64_t{1} << 20)) return node_error(c, n, "output_padding is out of range");
  Shape r = {sx[0], sw[1] * a.groups, 0, 0};
  for (int i = 0; i < 2; ++i)
    r[2 + i] = (sx[2 + i] - 1) * a.stride[i] - a.padding[2 * i] - a.padding[2 * i + 1] +
               a.dilation[i] * (sw[2 + i] - 1) + 1 + op[i];
  if (r[2] < 1 || r[3] < 1) return node_error(c, n, "the output would be empty");
  Value y = b.conv2d_grad_input(x, w, a, {b.type(x).dtype, r});
  if (in.size() > 2 && in[2].present()) y = add_channel_bias(b, y, c.value(in[2]));
  out[0] = OValue::of(y);
  return ok_status();
}

Status pool(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  Builder& b = c.b;
  Value x = c.value(in[0]);
  const Shape s = b.shape(x);
  if (s.size() != 4) return node_error(c, n, "only 2-D pooling (N, C, H, W) is supported");
  const bool max = n.op_type() == "MaxPool";
  if (out.size() > 1 && !n.output(1).empty())
    return node_error(c, n, "the indices output is not supported");
  std::vector<int64_t> k = attr_ints(n, "kernel_shape").value_or(std::vector<int64_t>{});
  std::vector<int64_t> st = attr_ints(n, "strides").value_or(std::vector<int64_t>{1, 1});
  std::vector<int64_t> p = attr_ints(n, "pads").value_or(std::vector<int64_t>{0, 0, 0, 0});
  std::vector<int64_t> dil = attr_ints(n, "dilations").value_or(std::vector<int64_t>{1, 1});
  if (k.size() != 2 || st.size() != 2 || p.size() != 4 || dil != std::vector<int64_t>{1, 1} ||
      attr_int(n, "ceil_mode", 0) != 0 || attr_string(n, "auto_pad", "NOTSET") != "NOTSET")
    return node_error(c, n, "only 2-D kernels with explicit pads, no dilation, floor mode");
  for (int i = 0; i < 2; ++i)
    if (k[i] < 1 || k[i] > 1024 || st[i] < 1 || st[i] > 1024 || p[i] < 0 || p[i + 2] < 0 ||
        p[i] >= k[i] || p[i + 2] >= k[i] || k[0] * std::min<int64_t>(k[1], 1025) > 1024)
      return node_error(c, n,
                        "windows of 1 to 1024 elements, strides up to 1024 and pads "
                        "smaller than the window are supported");
  const int64_t oh = (s[2] + p[0] + p[2] - k[0]) / st[0] + 1;
  const int64_t ow = (s[3] + p[1] + p[3] - k[1]) / st[1] + 1;
  if (oh < 1 || ow < 1) return node_error(c, n, "the window does not fit the input");
  const double fill = max ? -std::numeric_limits<float>::max() : 0.0;
  Value xp = x;
  if (p[0] || p[1] || p[2] || p[3]) xp = b.pad(x, {0, 0, p[0], p[1]}, {0, 0, p[2], p[3]}, fill);
  Value acc;
  for (int64_t dy = 0; dy < k[0]; ++dy)
    for (int64_t dx = 0; dx < k[1]; ++dx) {
      Value t = strided_slice(b, xp, 2, dy, oh, st[0]);
      t = strided_slice(b, t, 3, dx, ow, st[1]);
      acc = !acc.valid() ? t : (max ? b.max(acc, t) : b.add(acc, t));
    }
  if (!max) {
    const bool include = attr_int(n, "count_include_pad", 0) != 0;
    std::vector<double> counts;
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        auto cover = [&](int64_t o, int64_t stride, int64_t lo, int64_t kk, int64_t dim) {
          const int64_t a = o * stride - lo, e = a + kk;
          return include ? kk : std::min(e, dim) - std::max<int64_t>(a, 0);
        };
        counts.push_back(static_cast<double>(cover(i, st[0], p[0], k[0], s[2]) *
                                             cover(j, st[1], p[1], k[1], s[3])));
      }
    Value cnt = b.constant(counts, {b.type(x).dtype, {oh, ow}});
    acc = b.div(acc, b.broadcast(cnt, b.shape(acc), {2, 3}));
  }
  out[0] = OValue::of(acc);
  return ok_status();
}

Status global_avg_pool(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 1));
  Builder& b = c.b;
  Value x = c.value(in[0]);
  const Shape s = b.shape(x);
  if (s.size() != 4) return node_error(c, n, "only (N, C, H, W) inputs are supported");
  Value m = b.scale(b.reduce_sum(x, {2, 3}), 1.0 / static_cast<double>(s[2] * s[3]));
  out[0] = OValue::of(b.reshape(m, {s[0], s[1], 1, 1}));
  return ok_status();
}

Status batch_norm(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 5));
  Builder& b = c.b;
  Value x = c.value(in[0]);
  const Shape s = b.shape(x);
  if (s.size() < 2) return node_error(c, n, "needs an (N, C, ...) input");
  const double eps = attr_float(n, "epsilon", 1e-5);
  const bool training =
      attr_int(n, "training_mode", 0) != 0 || (out.size() > 1 && !n.output(1).empty());
  std::vector<int64_t> red;
  int64_t count = 1;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    if (i != 1) {
      red.push_back(i);
      count *= s[i];
    }
  Value mean, var;
  if (training) {
    mean = b.scale(b.reduce_sum(x, red), 1.0 / count);
    Value d = b.sub(x, b.broadcast(mean, s, {1}));
    var = b.scale(b.reduce_sum(b.mul(d, d), red), 1.0 / count);
  } else {
    mean = c.value(in[3]);
    var = c.value(in[4]);
  }
  Value inv = b.rsqrt(b.add_scalar(var, eps));
  Value y = b.mul(b.sub(x, b.broadcast(mean, s, {1})), b.broadcast(inv, s, {1}));
  y = b.add(b.mul(y, b.broadcast(c.value(in[1]), s, {1})), b.broadcast(c.value(in[2]), s, {1}));
  out[0] = OValue::of(y);
  // Running statistics pass through unchanged (training updates only the weights).
  for (size_t i = 1; i < out.size() && i < 3; ++i) out[i] = in[i + 2];
  return ok_status();
}

Status loss_op(Ctx& c, const onnx::NodeProto& n, Ins& in, Ins& out) {
  ALPA_RETURN_IF_ERROR(need(c, n, in, 2));
  if (in.size() > 2 && in[2].present())
    return node_error(c, n, "class weights are not supported", "train without class weights");
  const std::string reduction = attr_string(n, "reduction", "mean");
  if (reduction != "mean" && reduction != "sum" && reduction != "none")
    return node_error(c, n, cat("unknown reduction '", reduction, "'"));
  std::optional<int64_t> ignore;
  if (find_attr(n, "ignore_index")) ignore = attr_int(n, "ignore_index", -100);
  Builder& b = c.b;
  Value scores = c.value(in[0]);
  if (b.type(scores).rank() < 2) return node_error(c, n, "scores must be (N, C, ...)");
  Value target = c.value(in[1]);
  if (b.type(target).dtype != DType::kI32) return node_error(c, n, "labels must be integers");
  Value logp = scores;
  if (n.op_type() == "SoftmaxCrossEntropyLoss") logp = softmax(b, scores, 1, /*log=*/true);
  out[0] = OValue::of(nll_loss(c, logp, target, 1, ignore, reduction));
  if (out.size() > 1) out[1] = OValue::of(logp);
  return ok_status();
}

}  // namespace

void register_nn_ops(std::map<std::string, Converter>& t) {
  t["MatMul"] = matmul;
  t["Gemm"] = gemm;
  t["Einsum"] = einsum;
  t["Conv"] = conv;
  t["ConvTranspose"] = conv_transpose;
  t["MaxPool"] = pool;
  t["AveragePool"] = pool;
  t["GlobalAveragePool"] = global_avg_pool;
  t["BatchNormalization"] = batch_norm;
  t["NegativeLogLikelihoodLoss"] = loss_op;
  t["SoftmaxCrossEntropyLoss"] = loss_op;
}

const std::map<std::string, Converter>& converters() {
  static const std::map<std::string, Converter> table = [] {
    std::map<std::string, Converter> t;
    register_elementwise(t);
    register_shape_ops(t);
    register_nn_ops(t);
    return t;
  }();
  return table;
}

}  // namespace alpa::onnx_import
