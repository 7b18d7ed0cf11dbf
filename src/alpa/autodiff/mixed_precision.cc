#include "alpa/autodiff/mixed_precision.h"

#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/ir/op.h"

namespace alpa {

bool is_mixed_precision_contraction(OpKind op) {
  return op == OpKind::kDotGeneral || op == OpKind::kConv2d || op == OpKind::kConv2dGradInput ||
         op == OpKind::kConv2dGradFilter;
}

namespace {

TensorType as_master(TensorType t) {
  if (is_float(t.dtype)) t.dtype = DType::kF32;
  return t;
}

class Rewriter {
 public:
  Rewriter(const Graph& forward, DType compute)
      : g_(forward),
        compute_(compute),
        b_(forward.name()),
        map_(static_cast<size_t>(forward.size())),
        low_(static_cast<size_t>(forward.size())) {}

  Result<Graph> run() {
    for (ValueId id = 0; id < g_.size(); ++id) {
      const Node& n = g_.node(id);
      map_[id] = rewrite(n);
      if (!n.name.empty() && n.op != OpKind::kParameter && map_[id].valid() &&
          b_.graph().node(map_[id].id).name.empty())
        b_.name(map_[id], n.name);
    }
    for (const GraphOutput& o : g_.outputs())
      b_.output(o.name, map_[o.value], o.alias == kNoValue ? Value{} : map_[o.alias]);
    return b_.finish();
  }

 private:
  Value emit(const Node& n, std::span<const Value> operands, const TensorType& type) {
    const bool declared = op_info(n.op).result_type == ResultTypeRule::kDeclared;
    return b_.emit(n.op, operands, n.attrs, declared ? &type : nullptr);
  }

  // The operand `id` of a contraction in the compute type (converted once per value).
  Value low(ValueId id) {
    if (!is_float(g_.type(id).dtype)) return map_[id];
    if (!low_[id].valid()) low_[id] = b_.convert(map_[id], compute_);
    return low_[id];
  }

  Value rewrite(const Node& n) {
    const TensorType type = as_master(n.type);
    if (n.op == OpKind::kParameter) {
      const auto& pa = n.attr<ParameterAttrs>();
      return b_.parameter(n.name, type, pa.role, pa.init, pa.scale);
    }
    std::vector<Value> operands;
    for (ValueId op : n.operands) operands.push_back(map_[op]);
    if (n.op == OpKind::kConvert && b_.type(operands[0]) == type) return operands[0];
    if (!is_mixed_precision_contraction(n.op) || !is_float(n.type.dtype))
      return emit(n, operands, type);
    for (size_t i = 0; i < operands.size(); ++i) operands[i] = low(n.operands[i]);
    TensorType low_type = type;
    low_type.dtype = compute_;
    return b_.convert(emit(n, operands, low_type), DType::kF32);
  }

  const Graph& g_;
  DType compute_;
  Builder b_;
  std::vector<Value> map_;  // forward id -> value in b_
  std::vector<Value> low_;  // forward id -> its conversion to compute_, once made
};

}  // namespace

Result<Graph> mixed_precision(const Graph& forward, DType compute) {
  if (compute != DType::kBF16 && compute != DType::kF16)
    return invalid_argument(
        cat("mixed precision computes in bf16 or f16, not ", dtype_name(compute)),
        "use --dtype bf16 or --dtype f16 (f32 needs no pass)");
  return Rewriter(forward, compute).run();
}

}  // namespace alpa
