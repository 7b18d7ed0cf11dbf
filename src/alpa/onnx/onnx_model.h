// ONNX models (the files torch.onnx.export writes) as forward graphs of the IR.
//
// An ONNX file is read with the protocol-buffer classes Debian's libonnx generates (onnx.proto,
// ONNX-ML); every field the importer uses is checked before it is read. Import turns
//   - initializers of float type into weight parameters (their values kept: initial_values()),
//     integer and boolean initializers into constants;
//   - graph inputs into data parameters (int64/int32 as i32, bool as pred, float as f32), with
//     a symbolic first dimension (the batch, shared by every input that has it) set to the
//     batch asked for, so one file serves any batch and micro-batch;
//   - nodes into IR ops (see docs/onnx.md for the operator list), shape computations (Shape,
//     Constant, ConstantOfShape, Gather/Concat/Unsqueeze/... on them) folded on the host;
//   - the loss into the output "loss": the graph's output named loss (a scalar), or
//     `--loss cross_entropy|mse[:OUTPUT]`, which adds a "labels" input for OUTPUT (default: the
//     first graph output).
// Unsupported operators are refused all at once: every op type with the nodes that use it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

// How the loss is made: from the graph (kind empty) or added on a named output.
struct OnnxLoss {
  std::string kind;    // "", "cross_entropy" (class dim last) or "mse"
  std::string output;  // the graph output it is applied to ("" = the first output)
};
// "cross_entropy", "mse:logits", ... -> OnnxLoss; errors name the accepted forms.
Result<OnnxLoss> parse_onnx_loss(std::string_view text);

// A weight's whole value, as an initializer holds it (f32).
struct OnnxWeight {
  std::string name;         // the weight parameter's name in the IR graph
  std::string initializer;  // the initializer's name in the ONNX file
  Shape shape;
  std::vector<float> values;
};

// The imported forward graph of one batch size.
struct OnnxImport {
  Graph graph;
  // The file's outputs (besides "loss") as graph outputs when asked for, in the file's order.
  std::vector<std::string> outputs;
  std::map<std::string, std::string> weight_initializer;  // IR weight -> initializer name
};

class OnnxModel {
 public:
  ~OnnxModel();
  OnnxModel(const OnnxModel&) = delete;
  OnnxModel& operator=(const OnnxModel&) = delete;

  // Reads and checks an ONNX file (a ModelProto: opset 13-17 of the default domain).
  static Result<std::shared_ptr<const OnnxModel>> load(const std::string& path);
  // The same from bytes in memory (`path` names it in errors).
  static Result<std::shared_ptr<const OnnxModel>> parse(std::string_view bytes,
                                                        const std::string& path);

  const std::string& path() const { return path_; }
  int64_t opset() const { return opset_; }
  // The symbolic batch dimension's name ("" when every input shape is fixed), and the batch
  // of the file's shapes when fixed (0 when symbolic).
  const std::string& batch_param() const { return batch_param_; }
  int64_t fixed_batch() const { return fixed_batch_; }

  // The forward graph at `batch` (a fixed batch must be that one), with the output "loss" and,
  // with `with_outputs`, the file's other outputs.
  Result<OnnxImport> import(int64_t batch, const OnnxLoss& loss, bool with_outputs = false) const;

  // The weights' values as the file holds them, by IR parameter name.
  std::vector<OnnxWeight> initial_values() const;

  // The file with the initializers of `weights` (by IR parameter name, whole f32 values of
  // the initializer's shape) replaced: same graph, new weights. Every weight must be given.
  Result<std::string> with_weights(const std::map<std::string, std::vector<float>>& weights) const;

 private:
  struct Impl;
  explicit OnnxModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  std::string path_;
  int64_t opset_ = 0;
  std::string batch_param_;
  int64_t fixed_batch_ = 0;
};

// Whether `path` names an ONNX file (by its extension, .onnx).
bool is_onnx_path(std::string_view path);

}  // namespace alpa
