#include "alpa/autodiff/backward.h"

#include <algorithm>

#include "alpa/autodiff/train_step.h"
#include "alpa/autodiff/vjp.h"
#include "alpa/ir/dce.h"

namespace alpa {

Result<std::vector<Value>> append_backward(Builder& b, Value loss, std::span<const Value> wrt,
                                           std::vector<ValueId>* origin, Value seed) {
  if (!b.ok()) return b.status();
  const Graph& g = b.graph();
  if (!loss.valid() || loss.id >= g.size()) return invalid_argument("loss is not a value");
  const TensorType& lt = g.type(loss.id);
  if (!lt.shape.empty() || !is_float(lt.dtype))
    return invalid_argument(cat("the loss must be a floating-point scalar, got ", lt.to_string()),
                            "reduce the loss to a scalar, e.g. with a mean over the batch");
  const ValueId end = loss.id + 1;

  // Nodes that depend on some wrt value (forward reach) and feed the loss (backward reach).
  std::vector<char> from_wrt(static_cast<size_t>(end), 0), to_loss(static_cast<size_t>(end), 0);
  for (Value w : wrt) {
    if (!w.valid() || w.id >= g.size()) return invalid_argument("a wrt value is not a value");
    if (w.id < end) from_wrt[w.id] = 1;
  }
  for (ValueId i = 0; i < end; ++i) {
    if (from_wrt[i]) continue;
    const Node& n = g.node(i);
    if (!vjp_rule(n.op).differentiable || !is_float(n.type.dtype)) continue;
    for (ValueId op : n.operands)
      if (from_wrt[op]) {
        from_wrt[i] = 1;
        break;
      }
  }
  to_loss[loss.id] = 1;
  for (ValueId i = loss.id; i >= 0; --i) {
    if (!to_loss[i]) continue;
    for (ValueId op : g.node(i).operands) to_loss[op] = 1;
  }

  // Attributes the nodes appended since the last call to `owner`.
  ValueId traced = b.graph().size();
  auto attribute = [&](ValueId owner) {
    if (origin == nullptr) return;
    const ValueId now = b.graph().size();
    origin->resize(static_cast<size_t>(std::max<ValueId>(now, ValueId(origin->size()))), kNoValue);
    for (ValueId v = traced; v < now; ++v) (*origin)[v] = owner;
    traced = now;
  };

  std::vector<Value> grad(static_cast<size_t>(end));
  grad[loss.id] = seed.valid() ? seed : b.constant(1.0, lt);
  attribute(loss.id);
  for (ValueId i = loss.id; i >= 0; --i) {
    if (!grad[i].valid() || !from_wrt[i] || !to_loss[i]) continue;
    const Node node = b.graph().node(i);  // copy: the builder appends to the node list
    if (node.operands.empty()) continue;
    const VjpRule& rule = vjp_rule(node.op);
    ALPA_CHECK(rule.fn != nullptr) << "no VJP rule for " << op_name(node.op);
    std::vector<Value> op_grads = rule.fn(VjpArgs{b, node, Value{i}, grad[i]});
    if (!b.ok()) return b.status().with_context(cat("VJP of ", op_name(node.op)));
    ALPA_CHECK(op_grads.size() == node.operands.size())
        << "VJP of " << op_name(node.op) << " returned " << op_grads.size() << " gradients";
    attribute(i);
    for (size_t k = 0; k < node.operands.size(); ++k) {
      const ValueId op = node.operands[k];
      if (!op_grads[k].valid() || !from_wrt[op] || !to_loss[op]) continue;
      if (grad[op].valid()) {
        grad[op] = b.add(grad[op], op_grads[k]);
        attribute(op);
      } else {
        grad[op] = op_grads[k];
      }
    }
  }
  std::vector<Value> result;
  for (Value w : wrt) {
    Value gw = w.id < end ? grad[w.id] : Value{};
    if (!gw.valid()) {
      gw = b.full_like(w, 0.0);
      attribute(w.id);
    }
    result.push_back(gw);
  }
  if (!b.ok()) return b.status();
  return result;
}

Result<Graph> build_gradient_graph(const Graph& forward, const std::string& loss_output) {
  ALPA_RETURN_IF_ERROR(check_trainable(forward, loss_output, 1));
  const GraphOutput* loss = forward.find_output(loss_output);
  Builder b(forward);
  std::vector<Value> weights;
  for (ValueId id : forward.parameters(ParamRole::kWeight)) weights.push_back(Value{id});
  ALPA_ASSIGN_OR_RETURN(std::vector<Value> grads, append_backward(b, Value{loss->value}, weights));
  for (size_t i = 0; i < weights.size(); ++i)
    b.output("grad." + forward.node(weights[i].id).name, grads[i]);
  ALPA_ASSIGN_OR_RETURN(Graph g, b.finish());
  return eliminate_dead_code(g);
}

}  // namespace alpa
