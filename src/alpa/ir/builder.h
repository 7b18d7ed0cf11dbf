// Builder: the C++ API for constructing Graphs.
//
// Each method checks its op with the op table's shape rule. The first invalid call records a
// Status naming the op, the problem and the caller's file:line; from then on every method
// returns an invalid Value and adds nothing, and finish() returns that Status. So a model
// builder can be written as straight-line code and checked once at the end:
//
//   Builder b("mlp");
//   Value x = b.parameter("x", {DType::kF32, {8, 16}}, ParamRole::kInput);
//   Value w = b.parameter("w", {DType::kF32, {16, 4}}, ParamRole::kWeight,
//                         ParamInit::kNormal, 0.1);
//   Value y = b.matmul(x, w);                        // (8, 4)
//   b.output("loss", b.mean(b.mul(y, y)));
//   Result<Graph> g = b.finish();                    // verified
#pragma once

#include <cstdint>
#include <initializer_list>
#include <source_location>
#include <span>
#include <string>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

// The caller's file and line, for the builder's errors: std::source_location where the
// standard library has it; otherwise (clang 14 with libstdc++, which the fuzz build uses) the
// same from the compiler builtins every supported compiler has.
#if defined(__cpp_lib_source_location)
using SourceLoc = std::source_location;
#else
class SourceLoc {
 public:
  static constexpr SourceLoc current(const char* file = __builtin_FILE(),
                                     int line = __builtin_LINE()) noexcept {
    SourceLoc l;
    l.file_ = file;
    l.line_ = line;
    return l;
  }
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr uint_least32_t line() const noexcept { return static_cast<uint_least32_t>(line_); }

 private:
  const char* file_ = "";
  int line_ = 0;
};
#endif

struct Value {
  ValueId id = kNoValue;
  bool valid() const { return id >= 0; }
  friend bool operator==(const Value&, const Value&) = default;
};

class Builder {
 public:
  using Loc = SourceLoc;

  explicit Builder(std::string graph_name = "main");
  // Continues building on an existing graph (its nodes keep their ids).
  explicit Builder(Graph graph);

  // ---- sources ----
  Value parameter(std::string name, TensorType type, ParamRole role = ParamRole::kWeight,
                  ParamInit init = ParamInit::kZeros, double scale = 0.0, Loc loc = Loc::current());
  // A constant of `type` with every element equal to `value`.
  Value constant(double value, TensorType type, Loc loc = Loc::current());
  Value constant(std::vector<double> values, TensorType type, Loc loc = Loc::current());
  // An f32 (or `dtype`) scalar.
  Value scalar(double value, DType dtype = DType::kF32, Loc loc = Loc::current());
  Value iota(TensorType type, int64_t dim, Loc loc = Loc::current());

  // ---- elementwise ----
  Value neg(Value x, Loc loc = Loc::current());
  Value exp(Value x, Loc loc = Loc::current());
  Value log(Value x, Loc loc = Loc::current());
  Value tanh(Value x, Loc loc = Loc::current());
  Value sqrt(Value x, Loc loc = Loc::current());
  Value rsqrt(Value x, Loc loc = Loc::current());
  Value erf(Value x, Loc loc = Loc::current());
  Value convert(Value x, DType dtype, Loc loc = Loc::current());
  // x, with no gradient flowing back through it.
  Value stop_gradient(Value x, Loc loc = Loc::current());
  Value add(Value a, Value b, Loc loc = Loc::current());
  Value sub(Value a, Value b, Loc loc = Loc::current());
  Value mul(Value a, Value b, Loc loc = Loc::current());
  Value div(Value a, Value b, Loc loc = Loc::current());
  Value max(Value a, Value b, Loc loc = Loc::current());
  Value min(Value a, Value b, Loc loc = Loc::current());
  Value pow(Value a, Value b, Loc loc = Loc::current());
  Value compare(Value a, Value b, CompareDir dir, Loc loc = Loc::current());
  Value select(Value pred, Value on_true, Value on_false, Loc loc = Loc::current());

  // ---- movement ----
  Value broadcast(Value x, Shape shape, std::vector<int64_t> dims, Loc loc = Loc::current());
  Value reshape(Value x, Shape shape, Loc loc = Loc::current());
  Value transpose(Value x, std::vector<int64_t> perm, Loc loc = Loc::current());
  Value slice(Value x, std::vector<int64_t> start, std::vector<int64_t> limit,
              Loc loc = Loc::current());
  Value pad(Value x, std::vector<int64_t> low, std::vector<int64_t> high, double value = 0.0,
            Loc loc = Loc::current());
  Value concat(std::vector<Value> xs, int64_t dim, Loc loc = Loc::current());

  // ---- reductions ----
  Value reduce_sum(Value x, std::vector<int64_t> dims, Loc loc = Loc::current());
  Value reduce_max(Value x, std::vector<int64_t> dims, Loc loc = Loc::current());

  // ---- contractions ----
  Value dot_general(Value lhs, Value rhs, DotAttrs attrs, Loc loc = Loc::current());
  Value conv2d(Value input, Value filter, ConvAttrs attrs, Loc loc = Loc::current());
  Value conv2d_grad_input(Value grad_out, Value filter, ConvAttrs attrs, TensorType input_type,
                          Loc loc = Loc::current());
  Value conv2d_grad_filter(Value input, Value grad_out, ConvAttrs attrs, TensorType filter_type,
                           Loc loc = Loc::current());

  // ---- indexing ----
  Value gather(Value table, Value indices, int64_t axis = 0, Loc loc = Loc::current());
  Value scatter_add(Value indices, Value updates, int64_t axis, TensorType result_type,
                    Loc loc = Loc::current());

  // ---- conveniences (compositions of the ops above) ----
  // (..., M, K) x (K, N) -> (..., M, N): contracts the last dim of a with dim 0 of b.
  Value matmul(Value a, Value b, Loc loc = Loc::current());
  // numpy-style broadcast of x to `shape` (trailing dims aligned).
  Value broadcast_to(Value x, Shape shape, Loc loc = Loc::current());
  // A splat of `value` with x's type.
  Value full_like(Value x, double value, Loc loc = Loc::current());
  // Sum / mean over all elements -> scalar.
  Value sum_all(Value x, Loc loc = Loc::current());
  Value mean_all(Value x, Loc loc = Loc::current());
  // x * s and x + s for a scalar constant s.
  Value scale(Value x, double s, Loc loc = Loc::current());
  Value add_scalar(Value x, double s, Loc loc = Loc::current());

  // The general form: every method above ends here.
  Value emit(OpKind op, std::span<const Value> operands, Attrs attrs, const TensorType* declared,
             Loc loc = Loc::current());

  // Names node `v` (must be a valid, unused name). Returns v.
  Value name(Value v, std::string name, Loc loc = Loc::current());
  void output(std::string name, Value v, Value alias = Value{}, Loc loc = Loc::current());

  // By value: adding nodes may move the node list, so references would dangle.
  TensorType type(Value v) const;
  Shape shape(Value v) const { return type(v).shape; }
  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  // Records a user error at `loc` (the first one wins).
  void fail(std::string message, std::string hint = {}, Loc loc = Loc::current());
  const Graph& graph() const { return graph_; }

  // Returns the verified graph, or the first error.
  Result<Graph> finish();

 private:
  Value unary(OpKind op, Value x, Loc loc);
  Value binary(OpKind op, Value a, Value b, Loc loc);
  bool check_operands(std::span<const Value> operands, std::string_view op, Loc loc);

  Graph graph_;
  Status status_;
};

}  // namespace alpa
