// The reference interpreter: one function per op, each a direct transcription of the op's
// semantics into loops over multi-indices. Clarity over speed everywhere.
#include "support/reference_eval.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace alpa {
namespace {

using Vec = std::vector<double>;
using Index = std::vector<int64_t>;

// ---- multi-index helpers ------------------------------------------------------------------

int64_t count(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

// Row-major flat position of `idx` in `shape`.
int64_t ravel(const Index& idx, const Shape& shape) {
  int64_t flat = 0;
  for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + idx[d];
  return flat;
}

// The multi-index of row-major position `flat` in `shape`.
Index unravel(int64_t flat, const Shape& shape) {
  Index idx(shape.size(), 0);
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = flat % shape[d];
    flat /= shape[d];
  }
  return idx;
}

bool contains(const std::vector<int64_t>& v, int64_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

// ---- rounding to narrow float formats -----------------------------------------------------

// Rounds x to a binary format with `precision` significant bits (including the implicit one),
// smallest normal exponent `min_exp` (value 2^min_exp) and largest finite value `max_finite`.
// Below 2^min_exp the quantum stays 2^(min_exp - precision + 1): subnormals.
double round_to_format(double x, int precision, int min_exp, double max_finite) {
  if (x == 0.0 || std::isnan(x) || std::isinf(x)) return x;
  const double a = std::fabs(x);
  int e2 = 0;
  std::frexp(a, &e2);  // a = m * 2^e2, m in [0.5, 1): the leading bit has exponent e2 - 1
  const int lead = std::max(e2 - 1, min_exp);
  const double quantum = std::ldexp(1.0, lead - (precision - 1));
  const double q = a / quantum;  // exact: division by a power of two
  double r = std::floor(q);
  const double frac = q - r;
  if (frac > 0.5 || (frac == 0.5 && std::fmod(r, 2.0) != 0.0)) r += 1.0;  // nearest, ties even
  double result = r * quantum;
  if (result > max_finite) result = std::numeric_limits<double>::infinity();
  return x < 0 ? -result : result;
}

double convert_value(double x, DType to, const ReferenceOptions& options) {
  switch (to) {
    case DType::kF32:
      return options.round_float_converts ? static_cast<double>(static_cast<float>(x)) : x;
    case DType::kF16: return options.round_float_converts ? round_to_f16(x) : x;
    case DType::kBF16: return options.round_float_converts ? round_to_bf16(x) : x;
    case DType::kI32: return std::isnan(x) ? 0.0 : std::trunc(x);
    case DType::kPred: return x != 0.0 ? 1.0 : 0.0;
  }
  return x;
}

// ---- ops ----------------------------------------------------------------------------------

struct Ctx {
  const Graph& g;
  const std::vector<Vec>& values;  // by node id, filled up to the current node
  const ReferenceOptions& options;
  const Node& node;
  const Vec& in(size_t i) const { return values[node.operands[i]]; }
  const Shape& in_shape(size_t i) const { return g.type(node.operands[i]).shape; }
  const Shape& out_shape() const { return node.type.shape; }
};

Vec eval_unary(const Ctx& c) {
  const Vec& x = c.in(0);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i];
    switch (c.node.op) {
      case OpKind::kNeg: out[i] = -v; break;
      case OpKind::kExp: out[i] = std::exp(v); break;
      case OpKind::kLog: out[i] = std::log(v); break;
      case OpKind::kTanh: out[i] = std::tanh(v); break;
      case OpKind::kSqrt: out[i] = std::sqrt(v); break;
      case OpKind::kRsqrt: out[i] = 1.0 / std::sqrt(v); break;
      case OpKind::kErf: out[i] = std::erf(v); break;
      case OpKind::kStopGradient: out[i] = v; break;
      case OpKind::kConvert: out[i] = convert_value(v, c.node.type.dtype, c.options); break;
      default: ALPA_UNREACHABLE() << op_name(c.node.op);
    }
  }
  return out;
}

double compare(double a, double b, CompareDir dir) {
  switch (dir) {
    case CompareDir::kEq: return a == b;
    case CompareDir::kNe: return a != b;
    case CompareDir::kLt: return a < b;
    case CompareDir::kLe: return a <= b;
    case CompareDir::kGt: return a > b;
    case CompareDir::kGe: return a >= b;
  }
  return 0.0;
}

Vec eval_binary(const Ctx& c) {
  const Vec &x = c.in(0), &y = c.in(1);
  Vec out(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = x[i], b = y[i];
    switch (c.node.op) {
      case OpKind::kAdd: out[i] = a + b; break;
      case OpKind::kSub: out[i] = a - b; break;
      case OpKind::kMul: out[i] = a * b; break;
      case OpKind::kDiv: out[i] = a / b; break;
      case OpKind::kMax: out[i] = std::max(a, b); break;
      case OpKind::kMin: out[i] = std::min(a, b); break;
      case OpKind::kPow: out[i] = std::pow(a, b); break;
      case OpKind::kCompare: out[i] = compare(a, b, c.node.attr<CompareAttrs>().dir); break;
      default: ALPA_UNREACHABLE() << op_name(c.node.op);
    }
  }
  return out;
}

Vec eval_select(const Ctx& c) {
  const Vec &p = c.in(0), &t = c.in(1), &f = c.in(2);
  Vec out(p.size());
  for (size_t i = 0; i < p.size(); ++i) out[i] = p[i] != 0.0 ? t[i] : f[i];
  return out;
}

Vec eval_iota(const Ctx& c) {
  const Shape& s = c.out_shape();
  const int64_t dim = c.node.attr<IotaAttrs>().dim;
  Vec out(count(s));
  for (int64_t i = 0; i < count(s); ++i) out[i] = static_cast<double>(unravel(i, s)[dim]);
  return out;
}

Vec eval_constant(const Ctx& c) {
  const auto& values = c.node.attr<ConstantAttrs>().values;
  const int64_t n = count(c.out_shape());
  if (values.size() == 1) return Vec(n, values[0]);
  return Vec(values.begin(), values.end());
}

Vec eval_broadcast(const Ctx& c) {
  // Operand dim i is result dim dims[i]; an operand dim of extent 1 repeats.
  const auto& dims = c.node.attr<BroadcastAttrs>().dims;
  const Shape &in = c.in_shape(0), &out = c.out_shape();
  const Vec& x = c.in(0);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    const Index ridx = unravel(r, out);
    Index oidx(in.size());
    for (size_t i = 0; i < in.size(); ++i) oidx[i] = in[i] == 1 ? 0 : ridx[dims[i]];
    result[r] = x[ravel(oidx, in)];
  }
  return result;
}

Vec eval_transpose(const Ctx& c) {
  // Result dim i is operand dim perm[i].
  const auto& perm = c.node.attr<TransposeAttrs>().perm;
  const Shape &in = c.in_shape(0), &out = c.out_shape();
  const Vec& x = c.in(0);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    const Index ridx = unravel(r, out);
    Index oidx(in.size());
    for (size_t i = 0; i < perm.size(); ++i) oidx[perm[i]] = ridx[i];
    result[r] = x[ravel(oidx, in)];
  }
  return result;
}

Vec eval_slice(const Ctx& c) {
  const auto& start = c.node.attr<SliceAttrs>().start;
  const Shape &in = c.in_shape(0), &out = c.out_shape();
  const Vec& x = c.in(0);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    Index idx = unravel(r, out);
    for (size_t d = 0; d < idx.size(); ++d) idx[d] += start[d];
    result[r] = x[ravel(idx, in)];
  }
  return result;
}

Vec eval_pad(const Ctx& c) {
  const auto& a = c.node.attr<PadAttrs>();
  const Shape &in = c.in_shape(0), &out = c.out_shape();
  const Vec& x = c.in(0);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    Index idx = unravel(r, out);
    bool inside = true;
    for (size_t d = 0; d < idx.size(); ++d) {
      idx[d] -= a.low[d];
      if (idx[d] < 0 || idx[d] >= in[d]) inside = false;
    }
    result[r] = inside ? x[ravel(idx, in)] : a.value;
  }
  return result;
}

Vec eval_concat(const Ctx& c) {
  const int64_t dim = c.node.attr<ConcatAttrs>().dim;
  const Shape& out = c.out_shape();
  Vec result(count(out));
  int64_t offset = 0;
  for (size_t k = 0; k < c.node.operands.size(); ++k) {
    const Shape& in = c.in_shape(k);
    const Vec& x = c.in(k);
    for (int64_t i = 0; i < count(in); ++i) {
      Index idx = unravel(i, in);
      idx[dim] += offset;
      result[ravel(idx, out)] = x[i];
    }
    offset += in[dim];
  }
  return result;
}

Vec eval_reduce(const Ctx& c) {
  const auto& dims = c.node.attr<ReduceAttrs>().dims;
  const Shape &in = c.in_shape(0), &out = c.out_shape();
  const Vec& x = c.in(0);
  const bool is_max = c.node.op == OpKind::kReduceMax;
  Vec result(count(out), is_max ? -std::numeric_limits<double>::infinity() : 0.0);
  for (int64_t i = 0; i < count(in); ++i) {
    const Index idx = unravel(i, in);
    Index kept;
    for (size_t d = 0; d < idx.size(); ++d)
      if (!contains(dims, static_cast<int64_t>(d))) kept.push_back(idx[d]);
    double& acc = result[ravel(kept, out)];
    acc = is_max ? std::max(acc, x[i]) : acc + x[i];
  }
  return result;
}

Vec eval_dot(const Ctx& c) {
  // result = [batch (lhs order)..., lhs free..., rhs free...]; sum over the contracting dims.
  const auto& a = c.node.attr<DotAttrs>();
  const Shape &ls = c.in_shape(0), &rs = c.in_shape(1), &out = c.out_shape();
  const Vec &lhs = c.in(0), &rhs = c.in(1);
  std::vector<int64_t> lfree, rfree;
  for (int64_t d = 0; d < static_cast<int64_t>(ls.size()); ++d)
    if (!contains(a.lhs_batch, d) && !contains(a.lhs_contract, d)) lfree.push_back(d);
  for (int64_t d = 0; d < static_cast<int64_t>(rs.size()); ++d)
    if (!contains(a.rhs_batch, d) && !contains(a.rhs_contract, d)) rfree.push_back(d);
  Shape contract_shape;
  for (int64_t d : a.lhs_contract) contract_shape.push_back(ls[d]);
  const int64_t nc = count(contract_shape);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    const Index ridx = unravel(r, out);
    Index li(ls.size()), ri(rs.size());
    size_t p = 0;
    for (size_t k = 0; k < a.lhs_batch.size(); ++k, ++p) {
      li[a.lhs_batch[k]] = ridx[p];
      ri[a.rhs_batch[k]] = ridx[p];
    }
    for (int64_t d : lfree) li[d] = ridx[p++];
    for (int64_t d : rfree) ri[d] = ridx[p++];
    double sum = 0.0;
    for (int64_t k = 0; k < nc; ++k) {
      const Index cidx = unravel(k, contract_shape);
      for (size_t j = 0; j < cidx.size(); ++j) {
        li[a.lhs_contract[j]] = cidx[j];
        ri[a.rhs_contract[j]] = cidx[j];
      }
      sum += lhs[ravel(li, ls)] * rhs[ravel(ri, rs)];
    }
    result[r] = sum;
  }
  return result;
}

// The geometry shared by conv2d and its two gradients: input (N, C, H, W), filter
// (O, C/groups, KH, KW), output (N, O, OH, OW). `visit(x_flat, w_flat, y_flat)` is called once
// per multiply-add of the forward convolution whose input position lies inside the input.
template <typename F>
void for_each_conv_term(const ConvAttrs& a, const Shape& x, const Shape& w, const Shape& y,
                        F visit) {
  const int64_t n_batch = x[0], c_in = x[1], h = x[2], wd = x[3];
  const int64_t o_out = w[0], c_per_group = w[1], kh = w[2], kw = w[3];
  const int64_t oh = y[2], ow = y[3];
  const int64_t o_per_group = o_out / a.groups;
  for (int64_t n = 0; n < n_batch; ++n)
    for (int64_t o = 0; o < o_out; ++o) {
      const int64_t group = o / o_per_group;
      for (int64_t yi = 0; yi < oh; ++yi)
        for (int64_t xi = 0; xi < ow; ++xi)
          for (int64_t ci = 0; ci < c_per_group; ++ci)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < kw; ++kj) {
                const int64_t ih = yi * a.stride[0] - a.padding[0] + ki * a.dilation[0];
                const int64_t iw = xi * a.stride[1] - a.padding[2] + kj * a.dilation[1];
                if (ih < 0 || ih >= h || iw < 0 || iw >= wd) continue;
                const int64_t c = group * c_per_group + ci;
                visit(ravel({n, c, ih, iw}, x), ravel({o, ci, ki, kj}, w),
                      ravel({n, o, yi, xi}, y));
              }
    }
  (void)c_in;
}

Vec eval_conv(const Ctx& c) {
  const auto& a = c.node.attr<ConvAttrs>();
  Vec result(count(c.out_shape()), 0.0);
  switch (c.node.op) {
    case OpKind::kConv2d: {  // (input, filter) -> output
      const Vec &x = c.in(0), &w = c.in(1);
      for_each_conv_term(a, c.in_shape(0), c.in_shape(1), c.out_shape(),
                         [&](int64_t xi, int64_t wi, int64_t yi) { result[yi] += x[xi] * w[wi]; });
      break;
    }
    case OpKind::kConv2dGradInput: {  // (grad_out, filter) -> input-shaped
      const Vec &dy = c.in(0), &w = c.in(1);
      for_each_conv_term(a, c.out_shape(), c.in_shape(1), c.in_shape(0),
                         [&](int64_t xi, int64_t wi, int64_t yi) { result[xi] += dy[yi] * w[wi]; });
      break;
    }
    case OpKind::kConv2dGradFilter: {  // (input, grad_out) -> filter-shaped
      const Vec &x = c.in(0), &dy = c.in(1);
      for_each_conv_term(a, c.in_shape(0), c.out_shape(), c.in_shape(1),
                         [&](int64_t xi, int64_t wi, int64_t yi) { result[wi] += x[xi] * dy[yi]; });
      break;
    }
    default: ALPA_UNREACHABLE() << op_name(c.node.op);
  }
  return result;
}

// Splits a gather-layout index (A..., I..., B...) into the table-layout index
// (A..., indices[I...], B...). Fails if the looked-up index is outside [0, extent).
Result<Index> table_index(const Index& idx, int64_t axis, const Shape& index_shape,
                          const Vec& indices, const Shape& table_shape, const char* op) {
  const size_t ni = index_shape.size();
  Index iidx(idx.begin() + axis, idx.begin() + axis + static_cast<int64_t>(ni));
  const int64_t pos = ravel(iidx, index_shape);
  const double raw = indices[pos];
  const int64_t v = static_cast<int64_t>(raw);
  if (raw != static_cast<double>(v) || v < 0 || v >= table_shape[axis])
    return invalid_argument(cat(op, " index ", raw, " at position ", pos, " is outside [0, ",
                                table_shape[axis], ") along axis ", axis));
  Index t(idx.begin(), idx.begin() + axis);
  t.push_back(v);
  t.insert(t.end(), idx.begin() + axis + static_cast<int64_t>(ni), idx.end());
  return t;
}

Result<Vec> eval_gather(const Ctx& c) {
  const int64_t axis = c.node.attr<GatherAttrs>().axis;
  const Shape &ts = c.in_shape(0), &is = c.in_shape(1), &out = c.out_shape();
  const Vec &table = c.in(0), &indices = c.in(1);
  Vec result(count(out));
  for (int64_t r = 0; r < count(out); ++r) {
    ALPA_ASSIGN_OR_RETURN(Index t, table_index(unravel(r, out), axis, is, indices, ts, "gather"));
    result[r] = table[ravel(t, ts)];
  }
  return result;
}

Result<Vec> eval_scatter_add(const Ctx& c) {
  const int64_t axis = c.node.attr<GatherAttrs>().axis;
  const Shape &is = c.in_shape(0), &us = c.in_shape(1), &out = c.out_shape();
  const Vec &indices = c.in(0), &updates = c.in(1);
  Vec result(count(out), 0.0);
  for (int64_t u = 0; u < count(us); ++u) {
    ALPA_ASSIGN_OR_RETURN(Index t,
                          table_index(unravel(u, us), axis, is, indices, out, "scatter_add"));
    result[ravel(t, out)] += updates[u];
  }
  return result;
}

Result<Vec> eval_node(const Ctx& c) {
  if (op_info(c.node.op).family == OpFamily::kCollective)
    return failed_precondition(
        cat(op_name(c.node.op), " needs a device mesh; reference_eval ",
            "runs one device (collectives are tested on the threads backend)"));
  switch (c.node.op) {
    case OpKind::kParameter:
      ALPA_UNREACHABLE() << "parameters are bound before evaluation";
      return Vec{};
    case OpKind::kConstant: return eval_constant(c);
    case OpKind::kIota: return eval_iota(c);
    case OpKind::kNeg:
    case OpKind::kExp:
    case OpKind::kLog:
    case OpKind::kTanh:
    case OpKind::kSqrt:
    case OpKind::kRsqrt:
    case OpKind::kErf:
    case OpKind::kStopGradient:
    case OpKind::kConvert: return eval_unary(c);
    case OpKind::kAdd:
    case OpKind::kSub:
    case OpKind::kMul:
    case OpKind::kDiv:
    case OpKind::kMax:
    case OpKind::kMin:
    case OpKind::kPow:
    case OpKind::kCompare: return eval_binary(c);
    case OpKind::kSelect: return eval_select(c);
    case OpKind::kBroadcast: return eval_broadcast(c);
    case OpKind::kReshape: return c.in(0);  // row-major reinterpretation
    case OpKind::kTranspose: return eval_transpose(c);
    case OpKind::kSlice: return eval_slice(c);
    case OpKind::kPad: return eval_pad(c);
    case OpKind::kConcat: return eval_concat(c);
    case OpKind::kReduceSum:
    case OpKind::kReduceMax: return eval_reduce(c);
    case OpKind::kDotGeneral: return eval_dot(c);
    case OpKind::kConv2d:
    case OpKind::kConv2dGradInput:
    case OpKind::kConv2dGradFilter: return eval_conv(c);
    case OpKind::kGather: return eval_gather(c);
    case OpKind::kScatterAdd: return eval_scatter_add(c);
    case OpKind::kAllReduce:
    case OpKind::kAllGather:
    case OpKind::kReduceScatter:
    case OpKind::kAllToAll:
    case OpKind::kShardSlice:
    case OpKind::kToPartial: break;  // handled above
  }
  return internal_error(cat("reference_eval has no rule for op ", op_name(c.node.op)));
}

}  // namespace

double round_to_f16(double x) {
  return round_to_format(x, 11, -14, 65504.0);
}

double round_to_bf16(double x) {
  return round_to_format(x, 8, -126, std::ldexp(255.0, 127 - 7));  // (2 - 2^-7) * 2^127
}

Result<std::vector<std::vector<double>>> reference_eval(
    const Graph& g, const std::vector<std::vector<double>>& params) {
  return reference_eval(g, params, ReferenceOptions{});
}

Result<std::vector<std::vector<double>>> reference_eval(
    const Graph& g, const std::vector<std::vector<double>>& params,
    const ReferenceOptions& options) {
  const std::vector<ValueId> param_ids = g.parameters();
  if (params.size() != param_ids.size())
    return invalid_argument(cat("reference_eval: graph '", g.name(), "' has ", param_ids.size(),
                                " parameters, got ", params.size(), " values"));
  std::vector<Vec> values(static_cast<size_t>(g.size()));
  for (size_t i = 0; i < param_ids.size(); ++i) {
    const TensorType& t = g.type(param_ids[i]);
    if (static_cast<int64_t>(params[i].size()) != t.num_elements())
      return invalid_argument(cat("reference_eval: parameter ", value_ref(g, param_ids[i]), " : ",
                                  t.to_string(), " got ", params[i].size(), " values"));
    values[param_ids[i]] = params[i];
  }
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& node = g.node(id);
    if (node.op == OpKind::kParameter) continue;
    Result<Vec> v = eval_node(Ctx{g, values, options, node});
    if (!v.ok()) return v.status().with_context(cat("reference_eval of ", value_ref(g, id)));
    ALPA_CHECK(static_cast<int64_t>(v->size()) == node.type.num_elements())
        << op_name(node.op) << " produced " << v->size() << " values for " << node.type.to_string();
    values[id] = std::move(v).value();
  }
  std::vector<std::vector<double>> outputs;
  for (const GraphOutput& out : g.outputs()) outputs.push_back(values[out.value]);
  return outputs;
}

}  // namespace alpa
