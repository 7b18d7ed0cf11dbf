#include "alpa/autodiff/vjp.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace alpa {
namespace {

using Vs = std::vector<Value>;

// ---- sources and non-differentiable ops ----
Vs vjp_none(const VjpArgs& a) {
  return Vs(a.node.operands.size());
}

// ---- elementwise unary: y = f(x) ----
Vs vjp_neg(const VjpArgs& a) {
  return {a.b.neg(a.g)};
}
Vs vjp_exp(const VjpArgs& a) {
  return {a.b.mul(a.g, a.result)};
}
Vs vjp_log(const VjpArgs& a) {
  return {a.b.div(a.g, a.operand(0))};
}
Vs vjp_tanh(const VjpArgs& a) {
  // g * (1 - y^2)
  Builder& b = a.b;
  Value y2 = b.mul(a.result, a.result);
  return {b.mul(a.g, b.sub(b.full_like(y2, 1.0), y2))};
}
Vs vjp_sqrt(const VjpArgs& a) {
  // g / (2 y)
  return {a.b.div(a.g, a.b.scale(a.result, 2.0))};
}
Vs vjp_rsqrt(const VjpArgs& a) {
  // y = x^-1/2, dy/dx = -1/2 y^3
  Builder& b = a.b;
  Value y3 = b.mul(b.mul(a.result, a.result), a.result);
  return {b.mul(a.g, b.scale(y3, -0.5))};
}
Vs vjp_erf(const VjpArgs& a) {
  // 2/sqrt(pi) * exp(-x^2)
  Builder& b = a.b;
  Value x = a.operand(0);
  Value e = b.exp(b.neg(b.mul(x, x)));
  return {b.mul(a.g, b.scale(e, 2.0 / std::sqrt(M_PI)))};
}
Vs vjp_convert(const VjpArgs& a) {
  const DType from = a.b.type(a.operand(0)).dtype;
  if (!is_float(from) || !is_float(a.node.type.dtype)) return {Value{}};
  return {a.b.convert(a.g, from)};
}

// ---- elementwise binary ----
Vs vjp_add(const VjpArgs& a) {
  return {a.g, a.g};
}
Vs vjp_sub(const VjpArgs& a) {
  return {a.g, a.b.neg(a.g)};
}
Vs vjp_mul(const VjpArgs& a) {
  return {a.b.mul(a.g, a.operand(1)), a.b.mul(a.g, a.operand(0))};
}
Vs vjp_div(const VjpArgs& a) {
  // d/dx x/y = 1/y ; d/dy x/y = -x/y^2 = -result/y
  Builder& b = a.b;
  Value gx = b.div(a.g, a.operand(1));
  Value gy = b.neg(b.div(b.mul(a.g, a.result), a.operand(1)));
  return {gx, gy};
}
// max/min: the gradient goes to the selected operand; ties split it evenly (as PyTorch does).
Vs minmax(const VjpArgs& a, CompareDir wins) {
  Builder& b = a.b;
  Value x = a.operand(0), y = a.operand(1);
  Value zero = b.full_like(a.g, 0.0);
  Value half = b.scale(a.g, 0.5);
  Value x_wins = b.compare(x, y, wins);
  Value tie = b.compare(x, y, CompareDir::kEq);
  Value gx = b.select(x_wins, a.g, b.select(tie, half, zero));
  Value y_wins = b.compare(y, x, wins);
  Value gy = b.select(y_wins, a.g, b.select(tie, half, zero));
  return {gx, gy};
}
Vs vjp_max(const VjpArgs& a) {
  return minmax(a, CompareDir::kGt);
}
Vs vjp_min(const VjpArgs& a) {
  return minmax(a, CompareDir::kLt);
}
Vs vjp_pow(const VjpArgs& a) {
  // y = x^p: dx = p x^(p-1); dp = y log(x) (taken as 0 where x <= 0)
  Builder& b = a.b;
  Value x = a.operand(0), p = a.operand(1);
  Value gx = b.mul(a.g, b.mul(p, b.pow(x, b.sub(p, b.full_like(p, 1.0)))));
  Value zero = b.full_like(x, 0.0);
  Value positive = b.compare(x, zero, CompareDir::kGt);
  Value safe_x = b.select(positive, x, b.full_like(x, 1.0));
  Value logx = b.select(positive, b.log(safe_x), zero);
  Value gp = b.mul(a.g, b.mul(a.result, logx));
  return {gx, gp};
}
Vs vjp_select(const VjpArgs& a) {
  Builder& b = a.b;
  Value zero = b.full_like(a.g, 0.0);
  return {Value{}, b.select(a.operand(0), a.g, zero), b.select(a.operand(0), zero, a.g)};
}

// ---- movement ----
Vs vjp_broadcast(const VjpArgs& a) {
  // Sum over result dims that are not operand dims, and over operand dims of extent 1 that
  // were expanded; then reshape to the operand's shape.
  Builder& b = a.b;
  const auto& dims = a.node.attr<BroadcastAttrs>().dims;
  const Shape in = b.shape(a.operand(0));
  const Shape& out = a.node.type.shape;
  std::vector<int64_t> reduce;
  for (int64_t d = 0; d < static_cast<int64_t>(out.size()); ++d) {
    auto it = std::find(dims.begin(), dims.end(), d);
    if (it == dims.end()) {
      reduce.push_back(d);
    } else if (in[it - dims.begin()] == 1 && out[d] != 1) {
      reduce.push_back(d);
    }
  }
  Value s = reduce.empty() ? a.g : b.reduce_sum(a.g, reduce);
  return {b.reshape(s, in)};
}
Vs vjp_reshape(const VjpArgs& a) {
  return {a.b.reshape(a.g, a.b.shape(a.operand(0)))};
}
Vs vjp_transpose(const VjpArgs& a) {
  const auto& perm = a.node.attr<TransposeAttrs>().perm;
  std::vector<int64_t> inverse(perm.size());
  for (size_t i = 0; i < perm.size(); ++i) inverse[perm[i]] = static_cast<int64_t>(i);
  return {a.b.transpose(a.g, inverse)};
}
Vs vjp_slice(const VjpArgs& a) {
  const auto& s = a.node.attr<SliceAttrs>();
  const Shape& in = a.b.shape(a.operand(0));
  std::vector<int64_t> high(in.size());
  for (size_t d = 0; d < in.size(); ++d) high[d] = in[d] - s.limit[d];
  return {a.b.pad(a.g, s.start, high, 0.0)};
}
Vs vjp_pad(const VjpArgs& a) {
  const auto& p = a.node.attr<PadAttrs>();
  const Shape& in = a.b.shape(a.operand(0));
  std::vector<int64_t> limit(in.size());
  for (size_t d = 0; d < in.size(); ++d) limit[d] = p.low[d] + in[d];
  return {a.b.slice(a.g, p.low, limit)};
}
Vs vjp_concat(const VjpArgs& a) {
  const int64_t dim = a.node.attr<ConcatAttrs>().dim;
  Vs grads;
  int64_t offset = 0;
  for (size_t i = 0; i < a.node.operands.size(); ++i) {
    const Shape& in = a.b.shape(a.operand(i));
    std::vector<int64_t> start(in.size(), 0), limit = a.node.type.shape;
    start[dim] = offset;
    limit[dim] = offset + in[dim];
    offset += in[dim];
    grads.push_back(a.b.slice(a.g, start, limit));
  }
  return grads;
}

// ---- reductions ----
std::vector<int64_t> kept_dims(int64_t rank, const std::vector<int64_t>& reduced) {
  std::vector<int64_t> kept;
  for (int64_t d = 0; d < rank; ++d)
    if (std::find(reduced.begin(), reduced.end(), d) == reduced.end()) kept.push_back(d);
  return kept;
}
Vs vjp_reduce_sum(const VjpArgs& a) {
  const Shape& in = a.b.shape(a.operand(0));
  const auto kept = kept_dims(static_cast<int64_t>(in.size()), a.node.attr<ReduceAttrs>().dims);
  return {a.b.broadcast(a.g, in, kept)};
}
Vs vjp_reduce_max(const VjpArgs& a) {
  // The gradient goes to the maximal elements, split evenly among ties (as torch.amax).
  Builder& b = a.b;
  Value x = a.operand(0);
  const Shape& in = b.shape(x);
  const auto& reduced = a.node.attr<ReduceAttrs>().dims;
  const auto kept = kept_dims(static_cast<int64_t>(in.size()), reduced);
  Value is_max = b.compare(x, b.broadcast(a.result, in, kept), CompareDir::kEq);
  Value count = b.reduce_sum(b.convert(is_max, b.type(x).dtype), reduced);
  Value share = b.broadcast(b.div(a.g, count), in, kept);
  return {b.select(is_max, share, b.full_like(x, 0.0))};
}

// ---- contractions ----
// Position of each operand dim in the result of the gradient dot, for the transpose back.
// Given the gradient dot's result layout [batch (nb), then `first` dims, then `second` dims]
// where `first`/`second` list operand dims in the order they appear, returns perm with
// result dim perm[d] = operand dim d, i.e. the argument of transpose to restore the layout.
std::vector<int64_t> restore_perm(const std::vector<int64_t>& batch,
                                  const std::vector<int64_t>& first,
                                  const std::vector<int64_t>& second, int64_t rank) {
  std::vector<int64_t> pos(rank);
  int64_t p = 0;
  for (int64_t d : batch) pos[d] = p++;
  for (int64_t d : first) pos[d] = p++;
  for (int64_t d : second) pos[d] = p++;
  return pos;  // transpose(result, pos): output dim d = result dim pos[d]
}
bool is_identity(const std::vector<int64_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i)
    if (perm[i] != static_cast<int64_t>(i)) return false;
  return true;
}
std::vector<int64_t> free_dims(int64_t rank, const std::vector<int64_t>& batch,
                               const std::vector<int64_t>& contract) {
  std::vector<int64_t> f;
  for (int64_t d = 0; d < rank; ++d)
    if (std::find(batch.begin(), batch.end(), d) == batch.end() &&
        std::find(contract.begin(), contract.end(), d) == contract.end())
      f.push_back(d);
  return f;
}
std::vector<int64_t> sorted(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}
std::vector<int64_t> iota_from(int64_t start, int64_t n) {
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + i;
  return v;
}
Vs vjp_dot_general(const VjpArgs& a) {
  // y[batch, Fa, Fb] = sum_C lhs[Ba, Fa, Ca] rhs[Bb, Fb, Cb]
  Builder& b = a.b;
  const auto& d = a.node.attr<DotAttrs>();
  Value lhs = a.operand(0), rhs = a.operand(1);
  const int64_t lrank = b.type(lhs).rank(), rrank = b.type(rhs).rank();
  const int64_t nb = static_cast<int64_t>(d.lhs_batch.size());
  const auto lfree = free_dims(lrank, d.lhs_batch, d.lhs_contract);
  const auto rfree = free_dims(rrank, d.rhs_batch, d.rhs_contract);
  const int64_t nlf = static_cast<int64_t>(lfree.size()), nrf = static_cast<int64_t>(rfree.size());
  const std::vector<int64_t> g_batch = iota_from(0, nb);
  const std::vector<int64_t> g_lfree = iota_from(nb, nlf);
  const std::vector<int64_t> g_rfree = iota_from(nb + nlf, nrf);

  // Each gradient is a dot of g with the other operand. Both operand orders give the same
  // values in different layouts; the one that already has the operand's layout saves a
  // transpose (e.g. the embedding gradient of a tied LM head).
  // rhs contract dims in rhs order, mapped to their lhs partners, and vice versa.
  std::vector<int64_t> lhs_of_rhs_contract, rhs_of_lhs_contract;
  for (int64_t rd : sorted(d.rhs_contract)) {
    const auto it = std::find(d.rhs_contract.begin(), d.rhs_contract.end(), rd);
    lhs_of_rhs_contract.push_back(d.lhs_contract[it - d.rhs_contract.begin()]);
  }
  for (int64_t ld : sorted(d.lhs_contract)) {
    const auto it = std::find(d.lhs_contract.begin(), d.lhs_contract.end(), ld);
    rhs_of_lhs_contract.push_back(d.rhs_contract[it - d.lhs_contract.begin()]);
  }
  auto finish = [&](Value v, const std::vector<int64_t>& perm) {
    return is_identity(perm) ? v : b.transpose(v, perm);
  };

  // d lhs: dot(g, rhs) -> [batch, lhs free, rhs contract order]
  //    or  dot(rhs, g) -> [batch, rhs contract order, lhs free]
  Value dl;
  {
    const auto perm_a = restore_perm(d.lhs_batch, lfree, lhs_of_rhs_contract, lrank);
    const auto perm_b = restore_perm(d.lhs_batch, lhs_of_rhs_contract, lfree, lrank);
    if (!is_identity(perm_a) && is_identity(perm_b)) {
      dl = b.dot_general(rhs, a.g, DotAttrs{d.rhs_batch, g_batch, rfree, g_rfree});
    } else {
      dl = finish(b.dot_general(a.g, rhs, DotAttrs{g_batch, d.rhs_batch, g_rfree, rfree}), perm_a);
    }
  }
  // d rhs: dot(lhs, g) -> [batch, lhs contract order, rhs free]
  //    or  dot(g, lhs) -> [batch, rhs free, lhs contract order]
  Value dr;
  {
    const auto perm_a = restore_perm(d.rhs_batch, rhs_of_lhs_contract, rfree, rrank);
    const auto perm_b = restore_perm(d.rhs_batch, rfree, rhs_of_lhs_contract, rrank);
    if (!is_identity(perm_a) && is_identity(perm_b)) {
      dr = b.dot_general(a.g, lhs, DotAttrs{g_batch, d.lhs_batch, g_lfree, lfree});
    } else {
      dr = finish(b.dot_general(lhs, a.g, DotAttrs{d.lhs_batch, g_batch, lfree, g_lfree}), perm_a);
    }
  }
  return {dl, dr};
}
Vs vjp_conv2d(const VjpArgs& a) {
  Builder& b = a.b;
  const auto& c = a.node.attr<ConvAttrs>();
  Value x = a.operand(0), w = a.operand(1);
  return {b.conv2d_grad_input(a.g, w, c, b.type(x)), b.conv2d_grad_filter(x, a.g, c, b.type(w))};
}
Vs vjp_conv2d_grad_input(const VjpArgs& a) {
  // dx = conv2d_grad_input(dy, w) is linear in dy and w.
  Builder& b = a.b;
  const auto& c = a.node.attr<ConvAttrs>();
  Value dy = a.operand(0), w = a.operand(1);
  return {b.conv2d(a.g, w, c), b.conv2d_grad_filter(a.g, dy, c, b.type(w))};
}
Vs vjp_conv2d_grad_filter(const VjpArgs& a) {
  // dw = conv2d_grad_filter(x, dy) is linear in x and dy.
  Builder& b = a.b;
  const auto& c = a.node.attr<ConvAttrs>();
  Value x = a.operand(0), dy = a.operand(1);
  return {b.conv2d_grad_input(dy, a.g, c, b.type(x)), b.conv2d(x, a.g, c)};
}

// ---- indexing ----
Vs vjp_gather(const VjpArgs& a) {
  const int64_t axis = a.node.attr<GatherAttrs>().axis;
  Value table = a.operand(0), idx = a.operand(1);
  return {a.b.scatter_add(idx, a.g, axis, a.b.type(table)), Value{}};
}
Vs vjp_scatter_add(const VjpArgs& a) {
  const int64_t axis = a.node.attr<GatherAttrs>().axis;
  return {Value{}, a.b.gather(a.g, a.operand(0), axis)};
}

const std::array<VjpRule, kNumOps>& rule_table() {
  static const std::array<VjpRule, kNumOps> table = [] {
    std::array<VjpRule, kNumOps> t{};
    auto set = [&](OpKind op, VjpFn fn, bool differentiable = true) {
      t[static_cast<size_t>(op)] = VjpRule{fn, differentiable};
    };
    set(OpKind::kParameter, vjp_none);
    set(OpKind::kConstant, vjp_none, false);
    set(OpKind::kIota, vjp_none, false);
    set(OpKind::kNeg, vjp_neg);
    set(OpKind::kExp, vjp_exp);
    set(OpKind::kLog, vjp_log);
    set(OpKind::kTanh, vjp_tanh);
    set(OpKind::kSqrt, vjp_sqrt);
    set(OpKind::kRsqrt, vjp_rsqrt);
    set(OpKind::kErf, vjp_erf);
    set(OpKind::kConvert, vjp_convert);
    set(OpKind::kStopGradient, vjp_none, false);
    set(OpKind::kAdd, vjp_add);
    set(OpKind::kSub, vjp_sub);
    set(OpKind::kMul, vjp_mul);
    set(OpKind::kDiv, vjp_div);
    set(OpKind::kMax, vjp_max);
    set(OpKind::kMin, vjp_min);
    set(OpKind::kPow, vjp_pow);
    set(OpKind::kCompare, vjp_none, false);
    set(OpKind::kSelect, vjp_select);
    set(OpKind::kBroadcast, vjp_broadcast);
    set(OpKind::kReshape, vjp_reshape);
    set(OpKind::kTranspose, vjp_transpose);
    set(OpKind::kSlice, vjp_slice);
    set(OpKind::kPad, vjp_pad);
    set(OpKind::kConcat, vjp_concat);
    set(OpKind::kReduceSum, vjp_reduce_sum);
    set(OpKind::kReduceMax, vjp_reduce_max);
    set(OpKind::kDotGeneral, vjp_dot_general);
    set(OpKind::kConv2d, vjp_conv2d);
    set(OpKind::kConv2dGradInput, vjp_conv2d_grad_input);
    set(OpKind::kConv2dGradFilter, vjp_conv2d_grad_filter);
    set(OpKind::kGather, vjp_gather);
    set(OpKind::kScatterAdd, vjp_scatter_add);
    // Collectives appear only in per-device programs, which SPMD lowering builds after autodiff.
    for (OpKind op : {OpKind::kAllReduce, OpKind::kAllGather, OpKind::kReduceScatter,
                      OpKind::kAllToAll, OpKind::kShardSlice, OpKind::kToPartial})
      set(op, vjp_none, false);
    return t;
  }();
  return table;
}

}  // namespace

const VjpRule& vjp_rule(OpKind op) {
  return rule_table()[static_cast<size_t>(op)];
}

}  // namespace alpa
