#include "alpa/ir/op.h"

#include <algorithm>
#include <array>

namespace alpa {
namespace {

constexpr std::array<OpInfo, kNumOps> kOpTable = {{
#define ALPA_OP(kind, name, arity, attrs, family, result) \
  {name, arity, OpFamily::family, ResultTypeRule::result, attrs_index<attrs>()},
#include "alpa/ir/ops.def"
#undef ALPA_OP
}};

std::string list_to_string(const std::vector<int64_t>& v) {
  return shape_to_string(v);
}

// Checks that `dims` are distinct and within [0, rank).
Status check_dims(const std::vector<int64_t>& dims, int64_t rank, const char* what) {
  std::vector<bool> seen(static_cast<size_t>(rank), false);
  for (int64_t d : dims) {
    if (d < 0 || d >= rank)
      return invalid_argument(
          cat(what, " ", list_to_string(dims), " has dim ", d, " outside [0, ", rank, ")"));
    if (seen[d]) return invalid_argument(cat(what, " ", list_to_string(dims), " repeats dim ", d));
    seen[d] = true;
  }
  return ok_status();
}

Status need_float(const TensorType& t, const char* what) {
  if (!is_float(t.dtype))
    return invalid_argument(cat(what, " needs a floating-point operand, got ", t.to_string()));
  return ok_status();
}

Result<TensorType> dot_type(const DotAttrs& a, const TensorType& lhs, const TensorType& rhs) {
  if (lhs.dtype != rhs.dtype)
    return invalid_argument(
        cat("dot_general operands differ in dtype: ", lhs.to_string(), " vs ", rhs.to_string()));
  ALPA_RETURN_IF_ERROR(need_float(lhs, "dot_general"));
  if (a.lhs_batch.size() != a.rhs_batch.size())
    return invalid_argument("dot_general lhs_batch and rhs_batch differ in length");
  if (a.lhs_contract.size() != a.rhs_contract.size())
    return invalid_argument("dot_general lhs_contract and rhs_contract differ in length");
  std::vector<int64_t> lhs_used = a.lhs_batch, rhs_used = a.rhs_batch;
  lhs_used.insert(lhs_used.end(), a.lhs_contract.begin(), a.lhs_contract.end());
  rhs_used.insert(rhs_used.end(), a.rhs_contract.begin(), a.rhs_contract.end());
  ALPA_RETURN_IF_ERROR(check_dims(lhs_used, lhs.rank(), "dot_general lhs batch+contract dims"));
  ALPA_RETURN_IF_ERROR(check_dims(rhs_used, rhs.rank(), "dot_general rhs batch+contract dims"));
  TensorType out{lhs.dtype, {}};
  for (size_t i = 0; i < a.lhs_batch.size(); ++i) {
    const int64_t l = lhs.shape[a.lhs_batch[i]], r = rhs.shape[a.rhs_batch[i]];
    if (l != r)
      return invalid_argument(cat("dot_general batch dim ", i, " has extent ", l, " on lhs ",
                                  lhs.to_string(), " but ", r, " on rhs ", rhs.to_string()));
    out.shape.push_back(l);
  }
  for (size_t i = 0; i < a.lhs_contract.size(); ++i) {
    const int64_t l = lhs.shape[a.lhs_contract[i]], r = rhs.shape[a.rhs_contract[i]];
    if (l != r)
      return invalid_argument(cat("dot_general contracting dim ", i, " has extent ", l, " on lhs ",
                                  lhs.to_string(), " but ", r, " on rhs ", rhs.to_string()),
                              "the contracted dims of both operands must have equal extents");
  }
  for (int64_t d = 0; d < lhs.rank(); ++d)
    if (std::find(lhs_used.begin(), lhs_used.end(), d) == lhs_used.end())
      out.shape.push_back(lhs.shape[d]);
  for (int64_t d = 0; d < rhs.rank(); ++d)
    if (std::find(rhs_used.begin(), rhs_used.end(), d) == rhs_used.end())
      out.shape.push_back(rhs.shape[d]);
  return out;
}

Status check_conv_attrs(const ConvAttrs& a) {
  if (a.stride.size() != 2 || a.stride[0] < 1 || a.stride[1] < 1)
    return invalid_argument(
        cat("conv2d stride must be two positive values, got ", list_to_string(a.stride)));
  if (a.dilation.size() != 2 || a.dilation[0] < 1 || a.dilation[1] < 1)
    return invalid_argument(
        cat("conv2d dilation must be two positive values, got ", list_to_string(a.dilation)));
  if (a.padding.size() != 4 || *std::min_element(a.padding.begin(), a.padding.end()) < 0)
    return invalid_argument(
        cat("conv2d padding must be four non-negative values {top, bottom, left, right}, got ",
            list_to_string(a.padding)));
  if (a.groups < 1) return invalid_argument(cat("conv2d groups must be >= 1, got ", a.groups));
  return ok_status();
}

// Result type of conv2d(input, filter).
Result<TensorType> conv_type(const ConvAttrs& a, const TensorType& in, const TensorType& filt) {
  ALPA_RETURN_IF_ERROR(check_conv_attrs(a));
  if (in.rank() != 4)
    return invalid_argument(cat("conv2d input must be rank 4 (N, C, H, W), got ", in.to_string()));
  if (filt.rank() != 4)
    return invalid_argument(
        cat("conv2d filter must be rank 4 (O, C/groups, KH, KW), got ", filt.to_string()));
  if (in.dtype != filt.dtype)
    return invalid_argument(
        cat("conv2d input and filter differ in dtype: ", in.to_string(), " vs ", filt.to_string()));
  ALPA_RETURN_IF_ERROR(need_float(in, "conv2d"));
  const int64_t c = in.shape[1], o = filt.shape[0];
  if (c % a.groups != 0 || o % a.groups != 0)
    return invalid_argument(cat("conv2d channels ", c, " and filters ", o,
                                " must both be divisible by groups ", a.groups));
  if (filt.shape[1] * a.groups != c)
    return invalid_argument(cat("conv2d filter ", filt.to_string(), " expects ",
                                filt.shape[1] * a.groups, " input channels, input ", in.to_string(),
                                " has ", c));
  const int64_t oh = conv_output_size(in.shape[2], filt.shape[2], a.stride[0], a.padding[0],
                                      a.padding[1], a.dilation[0]);
  const int64_t ow = conv_output_size(in.shape[3], filt.shape[3], a.stride[1], a.padding[2],
                                      a.padding[3], a.dilation[1]);
  if (oh < 1 || ow < 1)
    return invalid_argument(cat("conv2d filter ", filt.to_string(), " does not fit input ",
                                in.to_string(), " with the given padding"));
  return TensorType{in.dtype, {in.shape[0], o, oh, ow}};
}

Result<TensorType> collective_type(OpKind kind, const CollectiveAttrs& a, const TensorType& x) {
  const char* name = op_name(kind).data();
  if (a.mesh.size() != 2 || a.mesh[0] < 1 || a.mesh[1] < 1)
    return invalid_argument(
        cat(name, " mesh must be two positive extents [n0, n1], got ", list_to_string(a.mesh)));
  if (a.axes.empty() || a.axes.size() > 2 || a.axes[0] < 0 || a.axes[0] > 1 ||
      (a.axes.size() == 2 && (a.axes[0] != 0 || a.axes[1] != 1)))
    return invalid_argument(
        cat(name, " axes must be [0], [1] or [0,1], got ", list_to_string(a.axes)));
  const int64_t n = collective_group_size(a);
  TensorType out = x;
  auto check_dim = [&](int64_t d, const char* what) -> Status {
    if (d < 0 || d >= x.rank())
      return invalid_argument(cat(name, " ", what, " ", d, " outside the rank of ", x.to_string()));
    return ok_status();
  };
  switch (kind) {
    case OpKind::kAllReduce:
    case OpKind::kToPartial: return out;
    case OpKind::kAllGather:
      ALPA_RETURN_IF_ERROR(check_dim(a.dim, "dim"));
      out.shape[a.dim] *= n;
      return out;
    case OpKind::kReduceScatter:
    case OpKind::kShardSlice:
    case OpKind::kAllToAll:
      ALPA_RETURN_IF_ERROR(check_dim(a.dim, "dim"));
      if (x.shape[a.dim] % n != 0)
        return invalid_argument(cat(name, " splits dim ", a.dim, " of ", x.to_string(), " into ", n,
                                    " parts, which does not divide it"));
      out.shape[a.dim] /= n;
      if (kind == OpKind::kAllToAll) {
        ALPA_RETURN_IF_ERROR(check_dim(a.concat_dim, "concat_dim"));
        out.shape[a.concat_dim] *= n;
      }
      return out;
    default: break;
  }
  return internal_error(cat("no shape rule for ", name));
}

// Unary, binary, select and collective ops.
Result<TensorType> elementwise_type(OpKind kind, const Attrs& attrs,
                                    std::span<const TensorType> ops, const TensorType* declared) {
  switch (op_info(kind).family) {
    case OpFamily::kUnary: {
      const TensorType& x = ops[0];
      if (kind == OpKind::kConvert) {
        if (declared->shape != x.shape)
          return invalid_argument(cat("convert changes only the dtype, but ", x.to_string(), " -> ",
                                      declared->to_string(), " changes the shape"));
        return *declared;
      }
      ALPA_RETURN_IF_ERROR(need_float(x, op_name(kind).data()));
      return x;
    }
    case OpFamily::kBinary: {
      const TensorType &a = ops[0], &b = ops[1];
      if (a != b)
        return invalid_argument(
            cat(op_name(kind), " operands must have the same type, got ", a.to_string(), " and ",
                b.to_string()),
            "broadcast explicitly (broadcast op) so both operands have one shape");
      if (kind == OpKind::kCompare) return TensorType{DType::kPred, a.shape};
      if (a.dtype == DType::kPred)
        return invalid_argument(cat(op_name(kind), " is not defined on pred values"));
      if (kind == OpKind::kPow) ALPA_RETURN_IF_ERROR(need_float(a, "pow"));
      return a;
    }
    case OpFamily::kCollective:
      return collective_type(kind, std::get<CollectiveAttrs>(attrs), ops[0]);
    case OpFamily::kSelect: {
      const TensorType &p = ops[0], &t = ops[1], &f = ops[2];
      if (p.dtype != DType::kPred)
        return invalid_argument(cat("select predicate must be pred, got ", p.to_string()));
      if (t != f)
        return invalid_argument(
            cat("select branches differ: ", t.to_string(), " vs ", f.to_string()));
      if (p.shape != t.shape)
        return invalid_argument(
            cat("select predicate ", p.to_string(), " does not match branches ", t.to_string()));
      return t;
    }
    default: break;
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

// Parameters, constants and iotas: their declared type, checked.
Result<TensorType> source_type(OpKind kind, const Attrs& attrs, std::span<const TensorType> ops,
                               const TensorType* declared) {
  switch (kind) {
    case OpKind::kParameter: return *declared;
    case OpKind::kConstant: {
      const auto& a = std::get<ConstantAttrs>(attrs);
      const int64_t n = declared->num_elements();
      if (a.values.size() != 1 && static_cast<int64_t>(a.values.size()) != n)
        return invalid_argument(cat("constant has ", a.values.size(), " values for type ",
                                    declared->to_string(), " (needs 1 or ", n, ")"));
      return *declared;
    }
    case OpKind::kIota: {
      const auto& a = std::get<IotaAttrs>(attrs);
      if (a.dim < 0 || a.dim >= declared->rank())
        return invalid_argument(
            cat("iota dim ", a.dim, " outside the rank of ", declared->to_string()));
      if (declared->dtype == DType::kPred) return invalid_argument("iota cannot produce pred");
      return *declared;
    }
    default: break;
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

// Broadcast, reshape, transpose, slice, pad and concat.
Result<TensorType> movement_type(OpKind kind, const Attrs& attrs, std::span<const TensorType> ops,
                                 const TensorType* declared) {
  switch (kind) {
    case OpKind::kBroadcast: {
      const auto& a = std::get<BroadcastAttrs>(attrs);
      const TensorType& x = ops[0];
      if (declared->dtype != x.dtype)
        return invalid_argument(
            cat("broadcast cannot change dtype: ", x.to_string(), " -> ", declared->to_string()));
      if (static_cast<int64_t>(a.dims.size()) != x.rank())
        return invalid_argument(cat("broadcast dims ", list_to_string(a.dims), " must list one ",
                                    "result dim per operand dim of ", x.to_string()));
      for (size_t i = 0; i < a.dims.size(); ++i) {
        const int64_t d = a.dims[i];
        if (d < 0 || d >= declared->rank() || (i > 0 && d <= a.dims[i - 1]))
          return invalid_argument(cat("broadcast dims ", list_to_string(a.dims),
                                      " must be increasing and within the result rank ",
                                      declared->rank()));
        if (x.shape[i] != 1 && x.shape[i] != declared->shape[d])
          return invalid_argument(cat(
              "broadcast of ", x.to_string(), " to ", declared->to_string(), ": operand dim ", i,
              " (", x.shape[i], ") does not match result dim ", d, " (", declared->shape[d], ")"));
      }
      return *declared;
    }
    case OpKind::kReshape: {
      const TensorType& x = ops[0];
      if (declared->dtype != x.dtype || declared->num_elements() != x.num_elements())
        return invalid_argument(cat("reshape of ", x.to_string(), " to ", declared->to_string(),
                                    " changes the element count or dtype"));
      return *declared;
    }
    case OpKind::kTranspose: {
      const auto& a = std::get<TransposeAttrs>(attrs);
      const TensorType& x = ops[0];
      if (static_cast<int64_t>(a.perm.size()) != x.rank())
        return invalid_argument(cat("transpose perm ", list_to_string(a.perm),
                                    " must have one entry per dim of ", x.to_string()));
      ALPA_RETURN_IF_ERROR(check_dims(a.perm, x.rank(), "transpose perm"));
      TensorType out{x.dtype, {}};
      for (int64_t p : a.perm) out.shape.push_back(x.shape[p]);
      return out;
    }
    case OpKind::kSlice: {
      const auto& a = std::get<SliceAttrs>(attrs);
      const TensorType& x = ops[0];
      if (static_cast<int64_t>(a.start.size()) != x.rank() ||
          static_cast<int64_t>(a.limit.size()) != x.rank())
        return invalid_argument(
            cat("slice start and limit must have one entry per dim of ", x.to_string()));
      TensorType out{x.dtype, {}};
      for (int64_t d = 0; d < x.rank(); ++d) {
        if (a.start[d] < 0 || a.start[d] > a.limit[d] || a.limit[d] > x.shape[d])
          return invalid_argument(cat("slice [", a.start[d], ":", a.limit[d], ") of dim ", d,
                                      " is outside ", x.to_string()));
        out.shape.push_back(a.limit[d] - a.start[d]);
      }
      return out;
    }
    case OpKind::kPad: {
      const auto& a = std::get<PadAttrs>(attrs);
      const TensorType& x = ops[0];
      if (static_cast<int64_t>(a.low.size()) != x.rank() ||
          static_cast<int64_t>(a.high.size()) != x.rank())
        return invalid_argument(
            cat("pad low and high must have one entry per dim of ", x.to_string()));
      TensorType out{x.dtype, {}};
      for (int64_t d = 0; d < x.rank(); ++d) {
        if (a.low[d] < 0 || a.high[d] < 0)
          return invalid_argument("pad amounts must be non-negative");
        out.shape.push_back(x.shape[d] + a.low[d] + a.high[d]);
      }
      return out;
    }
    case OpKind::kConcat: {
      const auto& a = std::get<ConcatAttrs>(attrs);
      const TensorType& first = ops[0];
      if (a.dim < 0 || a.dim >= first.rank())
        return invalid_argument(
            cat("concat dim ", a.dim, " outside the rank of ", first.to_string()));
      TensorType out = first;
      out.shape[a.dim] = 0;
      for (const TensorType& t : ops) {
        bool same = t.dtype == first.dtype && t.rank() == first.rank();
        for (int64_t d = 0; same && d < t.rank(); ++d)
          if (d != a.dim && t.shape[d] != first.shape[d]) same = false;
        if (!same)
          return invalid_argument(cat("concat along dim ", a.dim, " of ", first.to_string(),
                                      " and ", t.to_string(), ": other dims and dtype must match"));
        out.shape[a.dim] += t.shape[a.dim];
      }
      return out;
    }
    default: break;
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

// Reductions, contractions and convolutions.
Result<TensorType> compute_type(OpKind kind, const Attrs& attrs, std::span<const TensorType> ops,
                                const TensorType* declared) {
  switch (kind) {
    case OpKind::kReduceSum:
    case OpKind::kReduceMax: {
      const auto& a = std::get<ReduceAttrs>(attrs);
      const TensorType& x = ops[0];
      ALPA_RETURN_IF_ERROR(check_dims(a.dims, x.rank(), "reduce dims"));
      if (!std::is_sorted(a.dims.begin(), a.dims.end()))
        return invalid_argument(cat("reduce dims ", list_to_string(a.dims), " must be sorted"));
      if (x.dtype == DType::kPred) return invalid_argument("cannot reduce pred values");
      TensorType out{x.dtype, {}};
      for (int64_t d = 0; d < x.rank(); ++d)
        if (std::find(a.dims.begin(), a.dims.end(), d) == a.dims.end())
          out.shape.push_back(x.shape[d]);
      return out;
    }
    case OpKind::kDotGeneral: return dot_type(std::get<DotAttrs>(attrs), ops[0], ops[1]);
    case OpKind::kConv2d: return conv_type(std::get<ConvAttrs>(attrs), ops[0], ops[1]);
    case OpKind::kConv2dGradInput: {
      // operands: (grad_out, filter) -> input type
      ALPA_ASSIGN_OR_RETURN(TensorType fwd,
                            conv_type(std::get<ConvAttrs>(attrs), *declared, ops[1]));
      if (fwd != ops[0])
        return invalid_argument(cat("conv2d_grad_input: grad_out ", ops[0].to_string(),
                                    " does not match the forward output ", fwd.to_string()));
      return *declared;
    }
    case OpKind::kConv2dGradFilter: {
      // operands: (input, grad_out) -> filter type
      ALPA_ASSIGN_OR_RETURN(TensorType fwd,
                            conv_type(std::get<ConvAttrs>(attrs), ops[0], *declared));
      if (fwd != ops[1])
        return invalid_argument(cat("conv2d_grad_filter: grad_out ", ops[1].to_string(),
                                    " does not match the forward output ", fwd.to_string()));
      return *declared;
    }
    default: break;
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

// Gather and scatter-add.
Result<TensorType> indexing_type(OpKind kind, const Attrs& attrs, std::span<const TensorType> ops,
                                 const TensorType* declared) {
  switch (kind) {
    case OpKind::kGather: {
      const auto& a = std::get<GatherAttrs>(attrs);
      const TensorType &table = ops[0], &idx = ops[1];
      if (a.axis < 0 || a.axis >= table.rank())
        return invalid_argument(
            cat("gather axis ", a.axis, " outside the rank of table ", table.to_string()));
      if (idx.dtype != DType::kI32)
        return invalid_argument(cat("gather indices must be i32, got ", idx.to_string()));
      TensorType out{table.dtype, {}};
      out.shape.assign(table.shape.begin(), table.shape.begin() + a.axis);
      out.shape.insert(out.shape.end(), idx.shape.begin(), idx.shape.end());
      out.shape.insert(out.shape.end(), table.shape.begin() + a.axis + 1, table.shape.end());
      return out;
    }
    case OpKind::kScatterAdd: {
      const auto& a = std::get<GatherAttrs>(attrs);
      const TensorType &idx = ops[0], &upd = ops[1];
      if (a.axis < 0 || a.axis >= declared->rank())
        return invalid_argument(
            cat("scatter_add axis ", a.axis, " outside the rank of ", declared->to_string()));
      if (idx.dtype != DType::kI32)
        return invalid_argument(cat("scatter_add indices must be i32, got ", idx.to_string()));
      Shape expect(declared->shape.begin(), declared->shape.begin() + a.axis);
      expect.insert(expect.end(), idx.shape.begin(), idx.shape.end());
      expect.insert(expect.end(), declared->shape.begin() + a.axis + 1, declared->shape.end());
      if (upd.shape != expect || upd.dtype != declared->dtype)
        return invalid_argument(cat("scatter_add updates ", upd.to_string(), " do not match ",
                                    "indices ", idx.to_string(), " into ", declared->to_string(),
                                    " (expected ", TensorType{declared->dtype, expect}.to_string(),
                                    ")"));
      return *declared;
    }
    default: break;
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

Result<TensorType> infer(OpKind kind, const Attrs& attrs, std::span<const TensorType> ops,
                         const TensorType* declared) {
  switch (op_info(kind).family) {
    case OpFamily::kUnary:
    case OpFamily::kBinary:
    case OpFamily::kCollective:
    case OpFamily::kSelect: return elementwise_type(kind, attrs, ops, declared);
    default: break;
  }
  switch (kind) {
    case OpKind::kParameter:
    case OpKind::kConstant:
    case OpKind::kIota: return source_type(kind, attrs, ops, declared);
    case OpKind::kBroadcast:
    case OpKind::kReshape:
    case OpKind::kTranspose:
    case OpKind::kSlice:
    case OpKind::kPad:
    case OpKind::kConcat: return movement_type(kind, attrs, ops, declared);
    case OpKind::kGather:
    case OpKind::kScatterAdd: return indexing_type(kind, attrs, ops, declared);
    default: return compute_type(kind, attrs, ops, declared);
  }
  return internal_error(cat("no shape rule for op ", op_name(kind)));
}

}  // namespace

const OpInfo& op_info(OpKind kind) {
  return kOpTable[static_cast<size_t>(kind)];
}

std::optional<OpKind> parse_op_name(std::string_view name) {
  for (int i = 0; i < kNumOps; ++i)
    if (kOpTable[i].name == name) return static_cast<OpKind>(i);
  return std::nullopt;
}

Attrs default_attrs(OpKind kind) {
  switch (kind) {
#define ALPA_OP(kind, name, arity, attrs, family, result) \
  case OpKind::k##kind:                                   \
    return attrs{};
#include "alpa/ir/ops.def"
#undef ALPA_OP
  }
  return NoAttrs{};
}

int64_t collective_group_size(const CollectiveAttrs& a) {
  if (a.mesh.size() != 2) return 0;
  int64_t n = 1;
  for (int64_t axis : a.axes) {
    if (axis < 0 || axis > 1) return 0;
    n *= a.mesh[axis];
  }
  return n;
}

int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo, int64_t pad_hi,
                         int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1;
  const int64_t padded = in + pad_lo + pad_hi;
  if (padded < span) return 0;
  return (padded - span) / stride + 1;
}

Result<TensorType> infer_result_type(OpKind kind, const Attrs& attrs,
                                     std::span<const TensorType> operands,
                                     const TensorType* declared) {
  const OpInfo& info = op_info(kind);
  if (info.arity >= 0 && static_cast<int>(operands.size()) != info.arity)
    return invalid_argument(
        cat(info.name, " takes ", info.arity, " operand(s), got ", operands.size()));
  if (info.arity < 0 && operands.empty())
    return invalid_argument(cat(info.name, " takes at least one operand"));
  if (attrs.index() != info.attrs_index)
    return invalid_argument(cat(info.name, " was given attributes of another op"));
  if (info.result_type == ResultTypeRule::kDeclared && declared == nullptr)
    return invalid_argument(cat(info.name, " needs its result type to be given"));
  if (declared != nullptr) {
    for (int64_t d : declared->shape)
      if (d < 0) return invalid_argument(cat("negative extent in ", declared->to_string()));
  }
  ALPA_ASSIGN_OR_RETURN(TensorType t, infer(kind, attrs, operands, declared));
  if (declared != nullptr && info.result_type == ResultTypeRule::kInferred && *declared != t)
    return invalid_argument(cat(info.name, " result type is ", t.to_string(), ", but ",
                                declared->to_string(), " was given"));
  return t;
}

}  // namespace alpa
