#include "alpa/ir/builder.h"

#include <filesystem>

#include "alpa/ir/verifier.h"

namespace alpa {
namespace {

std::string where(const SourceLoc& loc) {
  return cat(std::filesystem::path(loc.file_name()).filename().string(), ":", loc.line());
}

}  // namespace

Builder::Builder(std::string graph_name) : graph_(std::move(graph_name)) {}
Builder::Builder(Graph graph) : graph_(std::move(graph)) {}

void Builder::fail(std::string message, std::string hint, Loc loc) {
  if (!status_.ok()) return;
  status_ = invalid_argument(cat(where(loc), ": ", message), std::move(hint));
}

TensorType Builder::type(Value v) const {
  if (!v.valid() || v.id >= graph_.size()) return TensorType{DType::kF32, {}};
  return graph_.type(v.id);
}

bool Builder::check_operands(std::span<const Value> operands, std::string_view op, Loc loc) {
  if (!status_.ok()) return false;
  for (size_t i = 0; i < operands.size(); ++i) {
    if (!operands[i].valid() || operands[i].id >= graph_.size()) {
      fail(cat(op, ": operand ", i, " is not a value of this graph"), {}, loc);
      return false;
    }
  }
  return true;
}

Value Builder::emit(OpKind op, std::span<const Value> operands, Attrs attrs,
                    const TensorType* declared, Loc loc) {
  if (!check_operands(operands, op_name(op), loc)) return Value{};
  std::vector<TensorType> types;
  types.reserve(operands.size());
  for (Value v : operands) types.push_back(graph_.type(v.id));
  Result<TensorType> t = infer_result_type(op, attrs, types, declared);
  if (!t.ok()) {
    std::string operand_list;
    for (size_t i = 0; i < operands.size(); ++i)
      operand_list +=
          cat(i ? ", " : "", value_ref(graph_, operands[i].id), ": ", types[i].to_string());
    fail(cat("invalid ", op_name(op), "(", operand_list, "): ", t.status().message()),
         t.status().hint(), loc);
    return Value{};
  }
  Node n;
  n.op = op;
  n.type = std::move(t).value();
  n.attrs = std::move(attrs);
  for (Value v : operands) n.operands.push_back(v.id);
  return Value{graph_.add_node(std::move(n))};
}

Value Builder::name(Value v, std::string name, Loc loc) {
  if (!check_operands({&v, 1}, "name", loc)) return Value{};
  if (!is_valid_node_name(name)) {
    fail(cat("invalid node name '", name, "'"),
         "names start with a letter or '_' and use letters, digits, '_' and '.'", loc);
    return Value{};
  }
  const ValueId existing = graph_.find(name);
  if (existing != kNoValue && existing != v.id) {
    fail(cat("node name '", name, "' is already used by ", value_ref(graph_, existing)), {}, loc);
    return Value{};
  }
  graph_.rename(v.id, std::move(name));
  return v;
}

Value Builder::parameter(std::string name, TensorType type, ParamRole role, ParamInit init,
                         double scale, Loc loc) {
  if (!status_.ok()) return Value{};
  Value v = emit(OpKind::kParameter, {}, ParameterAttrs{role, init, scale}, &type, loc);
  return v.valid() ? this->name(v, std::move(name), loc) : v;
}

Value Builder::constant(double value, TensorType type, Loc loc) {
  return emit(OpKind::kConstant, {}, ConstantAttrs{{value}}, &type, loc);
}

Value Builder::constant(std::vector<double> values, TensorType type, Loc loc) {
  return emit(OpKind::kConstant, {}, ConstantAttrs{std::move(values)}, &type, loc);
}

Value Builder::scalar(double value, DType dtype, Loc loc) {
  return constant(value, TensorType{dtype, {}}, loc);
}

Value Builder::iota(TensorType type, int64_t dim, Loc loc) {
  return emit(OpKind::kIota, {}, IotaAttrs{dim}, &type, loc);
}

Value Builder::unary(OpKind op, Value x, Loc loc) {
  return emit(op, {&x, 1}, NoAttrs{}, nullptr, loc);
}
Value Builder::binary(OpKind op, Value a, Value b, Loc loc) {
  const Value ops[] = {a, b};
  return emit(op, ops, NoAttrs{}, nullptr, loc);
}

Value Builder::neg(Value x, Loc loc) {
  return unary(OpKind::kNeg, x, loc);
}
Value Builder::exp(Value x, Loc loc) {
  return unary(OpKind::kExp, x, loc);
}
Value Builder::log(Value x, Loc loc) {
  return unary(OpKind::kLog, x, loc);
}
Value Builder::tanh(Value x, Loc loc) {
  return unary(OpKind::kTanh, x, loc);
}
Value Builder::sqrt(Value x, Loc loc) {
  return unary(OpKind::kSqrt, x, loc);
}
Value Builder::rsqrt(Value x, Loc loc) {
  return unary(OpKind::kRsqrt, x, loc);
}
Value Builder::erf(Value x, Loc loc) {
  return unary(OpKind::kErf, x, loc);
}
Value Builder::convert(Value x, DType dtype, Loc loc) {
  if (!check_operands({&x, 1}, "convert", loc)) return Value{};
  TensorType t{dtype, type(x).shape};
  return emit(OpKind::kConvert, {&x, 1}, NoAttrs{}, &t, loc);
}
Value Builder::stop_gradient(Value x, Loc loc) {
  return unary(OpKind::kStopGradient, x, loc);
}
Value Builder::add(Value a, Value b, Loc loc) {
  return binary(OpKind::kAdd, a, b, loc);
}
Value Builder::sub(Value a, Value b, Loc loc) {
  return binary(OpKind::kSub, a, b, loc);
}
Value Builder::mul(Value a, Value b, Loc loc) {
  return binary(OpKind::kMul, a, b, loc);
}
Value Builder::div(Value a, Value b, Loc loc) {
  return binary(OpKind::kDiv, a, b, loc);
}
Value Builder::max(Value a, Value b, Loc loc) {
  return binary(OpKind::kMax, a, b, loc);
}
Value Builder::min(Value a, Value b, Loc loc) {
  return binary(OpKind::kMin, a, b, loc);
}
Value Builder::pow(Value a, Value b, Loc loc) {
  return binary(OpKind::kPow, a, b, loc);
}

Value Builder::compare(Value a, Value b, CompareDir dir, Loc loc) {
  const Value ops[] = {a, b};
  return emit(OpKind::kCompare, ops, CompareAttrs{dir}, nullptr, loc);
}

Value Builder::select(Value pred, Value on_true, Value on_false, Loc loc) {
  const Value ops[] = {pred, on_true, on_false};
  return emit(OpKind::kSelect, ops, NoAttrs{}, nullptr, loc);
}

Value Builder::broadcast(Value x, Shape shape, std::vector<int64_t> dims, Loc loc) {
  if (!check_operands({&x, 1}, "broadcast", loc)) return Value{};
  TensorType t{type(x).dtype, std::move(shape)};
  return emit(OpKind::kBroadcast, {&x, 1}, BroadcastAttrs{std::move(dims)}, &t, loc);
}

Value Builder::reshape(Value x, Shape shape, Loc loc) {
  if (!check_operands({&x, 1}, "reshape", loc)) return Value{};
  if (type(x).shape == shape) return x;
  TensorType t{type(x).dtype, std::move(shape)};
  return emit(OpKind::kReshape, {&x, 1}, NoAttrs{}, &t, loc);
}

Value Builder::transpose(Value x, std::vector<int64_t> perm, Loc loc) {
  return emit(OpKind::kTranspose, {&x, 1}, TransposeAttrs{std::move(perm)}, nullptr, loc);
}

Value Builder::slice(Value x, std::vector<int64_t> start, std::vector<int64_t> limit, Loc loc) {
  return emit(OpKind::kSlice, {&x, 1}, SliceAttrs{std::move(start), std::move(limit)}, nullptr,
              loc);
}

Value Builder::pad(Value x, std::vector<int64_t> low, std::vector<int64_t> high, double value,
                   Loc loc) {
  return emit(OpKind::kPad, {&x, 1}, PadAttrs{std::move(low), std::move(high), value}, nullptr,
              loc);
}

Value Builder::concat(std::vector<Value> xs, int64_t dim, Loc loc) {
  return emit(OpKind::kConcat, xs, ConcatAttrs{dim}, nullptr, loc);
}

Value Builder::reduce_sum(Value x, std::vector<int64_t> dims, Loc loc) {
  return emit(OpKind::kReduceSum, {&x, 1}, ReduceAttrs{std::move(dims)}, nullptr, loc);
}

Value Builder::reduce_max(Value x, std::vector<int64_t> dims, Loc loc) {
  return emit(OpKind::kReduceMax, {&x, 1}, ReduceAttrs{std::move(dims)}, nullptr, loc);
}

Value Builder::dot_general(Value lhs, Value rhs, DotAttrs attrs, Loc loc) {
  const Value ops[] = {lhs, rhs};
  return emit(OpKind::kDotGeneral, ops, std::move(attrs), nullptr, loc);
}

Value Builder::conv2d(Value input, Value filter, ConvAttrs attrs, Loc loc) {
  const Value ops[] = {input, filter};
  return emit(OpKind::kConv2d, ops, std::move(attrs), nullptr, loc);
}

Value Builder::conv2d_grad_input(Value grad_out, Value filter, ConvAttrs attrs,
                                 TensorType input_type, Loc loc) {
  const Value ops[] = {grad_out, filter};
  return emit(OpKind::kConv2dGradInput, ops, std::move(attrs), &input_type, loc);
}

Value Builder::conv2d_grad_filter(Value input, Value grad_out, ConvAttrs attrs,
                                  TensorType filter_type, Loc loc) {
  const Value ops[] = {input, grad_out};
  return emit(OpKind::kConv2dGradFilter, ops, std::move(attrs), &filter_type, loc);
}

Value Builder::gather(Value table, Value indices, int64_t axis, Loc loc) {
  const Value ops[] = {table, indices};
  return emit(OpKind::kGather, ops, GatherAttrs{axis}, nullptr, loc);
}

Value Builder::scatter_add(Value indices, Value updates, int64_t axis, TensorType result_type,
                           Loc loc) {
  const Value ops[] = {indices, updates};
  return emit(OpKind::kScatterAdd, ops, GatherAttrs{axis}, &result_type, loc);
}

Value Builder::matmul(Value a, Value b, Loc loc) {
  const Value ops[] = {a, b};
  if (!check_operands(ops, "matmul", loc)) return Value{};
  const int64_t ra = type(a).rank();
  if (ra < 1 || type(b).rank() != 2) {
    fail(cat("matmul needs a rank>=1 lhs and a rank-2 rhs, got ", type(a).to_string(), " and ",
             type(b).to_string()),
         {}, loc);
    return Value{};
  }
  return dot_general(a, b, DotAttrs{{}, {}, {ra - 1}, {0}}, loc);
}

Value Builder::broadcast_to(Value x, Shape shape, Loc loc) {
  if (!check_operands({&x, 1}, "broadcast_to", loc)) return Value{};
  const TensorType t = type(x);
  if (t.shape == shape) return x;
  const int64_t offset = static_cast<int64_t>(shape.size()) - t.rank();
  if (offset < 0) {
    fail(cat("cannot broadcast ", t.to_string(), " to the lower-rank shape ",
             shape_to_string(shape)),
         {}, loc);
    return Value{};
  }
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < t.rank(); ++i) dims.push_back(offset + i);
  return broadcast(x, std::move(shape), std::move(dims), loc);
}

Value Builder::full_like(Value x, double value, Loc loc) {
  if (!check_operands({&x, 1}, "full_like", loc)) return Value{};
  return constant(value, type(x), loc);
}

Value Builder::sum_all(Value x, Loc loc) {
  if (!check_operands({&x, 1}, "sum_all", loc)) return Value{};
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < type(x).rank(); ++i) dims.push_back(i);
  return reduce_sum(x, std::move(dims), loc);
}

Value Builder::mean_all(Value x, Loc loc) {
  if (!check_operands({&x, 1}, "mean_all", loc)) return Value{};
  const double n = static_cast<double>(type(x).num_elements());
  return scale(sum_all(x, loc), 1.0 / n, loc);
}

Value Builder::scale(Value x, double s, Loc loc) {
  if (!check_operands({&x, 1}, "scale", loc)) return Value{};
  return mul(x, full_like(x, s, loc), loc);
}

Value Builder::add_scalar(Value x, double s, Loc loc) {
  if (!check_operands({&x, 1}, "add_scalar", loc)) return Value{};
  return add(x, full_like(x, s, loc), loc);
}

void Builder::output(std::string name, Value v, Value alias, Loc loc) {
  if (!check_operands({&v, 1}, "output", loc)) return;
  if (graph_.find_output(name) != nullptr) {
    fail(cat("output name '", name, "' is used twice"), {}, loc);
    return;
  }
  graph_.add_output(GraphOutput{std::move(name), v.id, alias.id});
}

Result<Graph> Builder::finish() {
  if (!status_.ok()) return status_;
  ALPA_RETURN_IF_ERROR(verify(graph_));
  return std::move(graph_);
}

}  // namespace alpa
