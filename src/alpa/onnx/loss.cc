// The loss of an imported model: the graph's own (an output named loss) or one added on an
// output (--loss cross_entropy|mse); and the loss operators (NegativeLogLikelihoodLoss,
// SoftmaxCrossEntropyLoss).
#include "alpa/onnx/import_context.h"
#include "alpa/onnx/onnx_model.h"
#include "alpa/support/text.h"

namespace alpa::onnx_import {

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += cat(i ? ", " : "", v[i]);
  return s;
}

Value nll_loss(Ctx& c, Value logp, Value target, int64_t class_axis,
               std::optional<int64_t> ignore_index, const std::string& reduction) {
  Builder& b = c.b;
  const Shape s = b.shape(logp);
  std::vector<int64_t> keep;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i)
    if (i != class_axis) keep.push_back(i);
  c.note_bound(target, s[static_cast<size_t>(class_axis)]);
  Value classes = b.iota({DType::kI32, s}, class_axis);
  Value wide = b.broadcast(target, s, keep);
  Value onehot = b.convert(b.compare(classes, wide, CompareDir::kEq), DType::kF32);
  Value picked = b.reduce_sum(b.mul(onehot, logp), {class_axis});
  Value mask;
  if (ignore_index) {
    Value ignore = b.constant(static_cast<double>(*ignore_index), b.type(target));
    mask = b.convert(b.compare(target, ignore, CompareDir::kNe), DType::kF32);
    picked = b.mul(picked, mask);
  }
  if (reduction == "none") return b.neg(picked);
  Value total = b.neg(b.sum_all(picked));
  if (reduction == "sum") return total;
  if (mask.valid()) return b.div(total, b.sum_all(mask));
  return b.scale(total,
                 1.0 / static_cast<double>(std::max<int64_t>(1, b.type(picked).num_elements())));
}

namespace {

Result<Value> added_loss(Ctx& c, const OnnxLoss& loss, Value y, const std::string& output) {
  Builder& b = c.b;
  const TensorType t = b.type(y);
  if (!is_float(t.dtype) || t.rank() < 1)
    return invalid_argument(cat(c.path, ": --loss ", loss.kind,
                                " needs a float output of rank >= 1; '", output, "' is ",
                                t.to_string()));
  if (loss.kind == "mse") {
    Value labels = b.parameter(c.ir_name("labels"), t, ParamRole::kInput, ParamInit::kNormal, 1.0);
    Value d = b.sub(y, labels);
    return b.mean_all(b.mul(d, d));
  }
  Shape ls(t.shape.begin(), t.shape.end() - 1);
  const int64_t classes = t.shape.back();
  Value labels = b.parameter(c.ir_name("labels"), {DType::kI32, ls}, ParamRole::kInput,
                             ParamInit::kRandint, static_cast<double>(classes));
  Value logp = softmax(b, y, t.rank() - 1, /*log=*/true);
  return nll_loss(c, logp, labels, t.rank() - 1, std::nullopt, "mean");
}

}  // namespace

Status add_loss(Ctx& c, const OnnxLoss& loss, std::vector<std::string>& outputs, bool probe,
                bool with_outputs) {
  const onnx::GraphProto& g = c.model.graph();
  std::vector<std::string> names;
  for (const onnx::ValueInfoProto& o : g.output()) {
    if (!c.values.count(o.name()))
      return invalid_argument(cat(c.path, ": graph output '", o.name(), "' is never computed"));
    names.push_back(o.name());
  }
  if (probe) return ok_status();
  Value loss_value;
  if (loss.kind.empty()) {
    auto it = c.values.find("loss");
    bool is_output = false;
    for (const std::string& n : names) is_output = is_output || n == "loss";
    if (!is_output || it == c.values.end())
      return invalid_argument(
          cat(c.path, ": the graph has no output named 'loss' (its outputs: ", join_names(names),
              ")"),
          "return the loss from the module and export with output_names=['loss'], or add one "
          "with --loss cross_entropy|mse[:OUTPUT]");
    loss_value = c.value(it->second);
    const TensorType t = c.b.type(loss_value);
    if (!t.shape.empty() || !is_float(t.dtype))
      return invalid_argument(
          cat(c.path, ": output 'loss' must be a float scalar, got ", t.to_string()),
          "reduce the loss to its mean in the module");
  } else {
    const std::string out = loss.output.empty() ? (names.empty() ? "" : names[0]) : loss.output;
    auto it = c.values.find(out);
    bool is_output = false;
    for (const std::string& n : names) is_output = is_output || n == out;
    if (!is_output || it == c.values.end())
      return invalid_argument(
          cat(c.path, ": --loss names output '", out, "', which the graph does not have"),
          cat("its outputs: ", join_names(names)));
    ALPA_ASSIGN_OR_RETURN(loss_value, added_loss(c, loss, c.value(it->second), out));
  }
  c.b.output("loss", loss_value);
  if (with_outputs) {
    for (const std::string& n : names) {
      if (n == "loss") continue;
      const std::string ir = c.ir_name(n);
      c.b.output(ir, c.value(c.values.at(n)));
      outputs.push_back(ir);
    }
  }
  return c.b.ok() ? ok_status() : c.b.status();
}

}  // namespace alpa::onnx_import
