// Internal to the ONNX importer: the values of an ONNX graph as it is converted, the node
// converters' signature and the helpers they share.
#pragma once

#include <onnx/onnx.pb.h>  // generated from Debian's onnx.proto (src/CMakeLists.txt)

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/support/status.h"

namespace alpa::onnx_import {

// A value known while importing: its elements (int64 shape arithmetic, small constants).
struct HostTensor {
  DType dtype = DType::kF32;
  Shape shape;
  std::vector<double> values;
  int64_t size() const { return static_cast<int64_t>(values.size()); }
};

// An ONNX value: absent (an omitted optional input), known on the host, or a graph value.
struct OValue {
  enum class Kind { kAbsent, kHost, kGraph } kind = Kind::kAbsent;
  HostTensor host;
  Value v;
  bool present() const { return kind != Kind::kAbsent; }
  bool is_host() const { return kind == Kind::kHost; }
  static OValue of(HostTensor h) {
    OValue o;
    o.kind = Kind::kHost;
    o.host = std::move(h);
    return o;
  }
  static OValue of(Value v) {
    OValue o;
    o.kind = Kind::kGraph;
    o.v = v;
    return o;
  }
};

class Ctx {
 public:
  Ctx(const onnx::ModelProto& model, int64_t batch, std::string path);

  Builder b;
  const onnx::ModelProto& model;
  int64_t batch;
  int64_t opset = 13;
  std::string path;
  // Values by ONNX name.
  std::map<std::string, OValue> values;
  // Float initializers not yet used as graph values (made weights on first use).
  std::map<std::string, const onnx::TensorProto*> pending_weights;
  // Initializers consumed as batch-norm running statistics (constants, never weights).
  std::set<std::string> running_stats;
  // IR parameter name -> initializer name, for every weight made.
  std::map<std::string, std::string> weight_initializer;
  // Data inputs: the exclusive bound of the integer values each one is used as (token ids for
  // a table of V rows: V), so synthetic data stays in range; by graph value id.
  std::map<ValueId, std::string> input_of_value;
  std::map<std::string, int64_t> int_bounds;
  std::set<std::string> used_names;

  TensorType type(const OValue& v) const;
  Shape shape(const OValue& v) const { return type(v).shape; }
  // The graph value of `v` (host values become constants).
  Value value(const OValue& v);
  // A unique IR name made from an ONNX name ([A-Za-z0-9_.], not starting with a digit).
  std::string ir_name(const std::string& onnx_name);
  // Records that integer value `v` indexes a dimension of extent `bound`.
  void note_bound(Value v, int64_t bound);
};

// A node's converter: inputs in order (absent ones included), outputs to fill (sized to the
// node's output count; unused trailing outputs may stay absent).
using Converter = Status (*)(Ctx& c, const onnx::NodeProto& node, std::vector<OValue>& in,
                             std::vector<OValue>& out);

// The converters of each family (registered by name into `table`).
void register_elementwise(std::map<std::string, Converter>& table);
void register_shape_ops(std::map<std::string, Converter>& table);
void register_nn_ops(std::map<std::string, Converter>& table);
const std::map<std::string, Converter>& converters();

// ---- attributes ----
const onnx::AttributeProto* find_attr(const onnx::NodeProto& n, const std::string& name);
int64_t attr_int(const onnx::NodeProto& n, const std::string& name, int64_t def);
double attr_float(const onnx::NodeProto& n, const std::string& name, double def);
std::string attr_string(const onnx::NodeProto& n, const std::string& name, std::string def);
std::optional<std::vector<int64_t>> attr_ints(const onnx::NodeProto& n, const std::string& name);

// ---- tensors ----
// DType an ONNX element type is held as (float kinds f32, integers i32, bool pred).
Result<DType> dtype_of(int32_t onnx_type, const std::string& what);
// The elements of an initializer or constant tensor (checked against its dims and type).
Result<HostTensor> read_tensor(const onnx::TensorProto& t, const std::string& what);

// ---- errors ----
// "FILE: node 'NAME' (OP): message".
Status node_error(const Ctx& c, const onnx::NodeProto& n, const std::string& message,
                  const std::string& hint = {});
std::string node_label(const onnx::NodeProto& n);

// ---- helpers shared by the converters ----
// A dimension index in [0, rank) from an ONNX axis (negative counts from the end).
Result<int64_t> norm_axis(int64_t axis, int64_t rank);
// The host values of input `i` as integers (it must be known when the graph is imported).
Result<std::vector<int64_t>> host_ints(Ctx& c, const onnx::NodeProto& n,
                                       const std::vector<OValue>& in, size_t i, const char* what);
// numpy broadcasting of two shapes.
Result<Shape> broadcast_shapes(const Shape& a, const Shape& b);
// `v` broadcast to `shape` (numpy rules; no-op when equal).
Value broadcast_value(Ctx& c, Value v, const Shape& shape);
// Elementwise host arithmetic on broadcast operands.
HostTensor host_binary(const HostTensor& a, const HostTensor& b, const Shape& shape, DType dtype,
                       double (*f)(double, double));
// Host tensor reshaped / indexed helpers.
HostTensor host_scalar(double v, DType dtype);
HostTensor host_vector(const std::vector<int64_t>& v);
// The negative log-likelihood of integer `target` under log-probabilities `logp` (classes
// along `class_axis`), reduced "mean" (over targets not ignored), "sum" or "none".
Value nll_loss(Ctx& c, Value logp, Value target, int64_t class_axis,
               std::optional<int64_t> ignore_index, const std::string& reduction);
std::string join_names(const std::vector<std::string>& v);
// Elements start, start + step, ... (count of them) of `x` along `dim` (step >= 1).
Value strided_slice(Builder& b, Value x, int64_t dim, int64_t start, int64_t count, int64_t step);
// out[coords] = in[map(coords, in_strides)] over every index of `shape`.
HostTensor host_take(
    const HostTensor& in, const Shape& shape,
    const std::function<int64_t(const std::vector<int64_t>&, const std::vector<int64_t>&)>& map);
// Softmax / log-softmax of `x` over `axis` (max subtracted, as torch does).
Value softmax(Builder& b, Value x, int64_t axis, bool log);

}  // namespace alpa::onnx_import
