#include "alpa/autodiff/train_step.h"

#include <algorithm>
#include <cmath>

#include "alpa/autodiff/backward.h"
#include "alpa/ir/builder.h"
#include "alpa/ir/dce.h"

namespace alpa {

std::string_view optimizer_name(OptimizerKind kind) {
  return kind == OptimizerKind::kSgd ? "sgd" : "adamw";
}

Result<OptimizerKind> parse_optimizer(std::string_view name) {
  if (name == "sgd") return OptimizerKind::kSgd;
  if (name == "adamw" || name == "adam") return OptimizerKind::kAdamW;
  return invalid_argument(cat("unknown optimizer '", name, "'"), "use sgd or adamw");
}

Status check_trainable(const Graph& forward, const std::string& loss_output, int micro_batches) {
  const GraphOutput* loss = forward.find_output(loss_output);
  if (loss == nullptr)
    return invalid_argument(
        cat("graph '", forward.name(), "' has no output named '", loss_output, "'"),
        cat("mark the scalar loss with `output ", loss_output, " = %value`"));
  const TensorType& lt = forward.type(loss->value);
  if (!lt.shape.empty() || !is_float(lt.dtype))
    return invalid_argument(
        cat("output '", loss_output, "' must be a float scalar, got ", lt.to_string()),
        "reduce it to a scalar, e.g. a mean over the batch");
  if (forward.parameters(ParamRole::kWeight).empty())
    return invalid_argument(cat("graph '", forward.name(), "' has no weight parameters to train"),
                            "mark trainable parameters with {role=weight} (the default)");
  for (ValueId id : forward.parameters()) {
    const Node& n = forward.node(id);
    if (n.name.empty())
      return invalid_argument(cat("parameter %", id, " has no name"),
                              "name parameters, e.g. %w1 = parameter() ...");
    const ParamRole role = n.attr<ParameterAttrs>().role;
    if (role == ParamRole::kWeight && !is_float(n.type.dtype))
      return invalid_argument(cat("weight %", n.name, " has non-float type ", n.type.to_string()));
    if (role == ParamRole::kInput && micro_batches > 1 && n.type.rank() == 0)
      return invalid_argument(cat("input %", n.name,
                                  " is a scalar, so it has no batch dim to "
                                  "split into micro-batches"));
  }
  if (micro_batches < 1)
    return invalid_argument(cat("micro_batches must be >= 1, got ", micro_batches));
  return ok_status();
}

namespace {

// Re-emits the non-parameter nodes of `forward` into `b`, with parameters replaced by
// `param_map` (forward parameter id -> value in b). Returns forward id -> value in b.
std::vector<Value> inline_forward(Builder& b, const Graph& forward,
                                  const std::vector<Value>& param_map, bool keep_names,
                                  const std::string& suffix) {
  std::vector<Value> map(static_cast<size_t>(forward.size()));
  for (ValueId id = 0; id < forward.size(); ++id) {
    const Node& n = forward.node(id);
    if (n.op == OpKind::kParameter) {
      map[id] = param_map[id];
      continue;
    }
    std::vector<Value> operands;
    for (ValueId op : n.operands) operands.push_back(map[op]);
    map[id] = b.emit(n.op, operands, n.attrs, &n.type);
    if (!n.name.empty() && map[id].valid() && (keep_names || !suffix.empty()))
      b.name(map[id], n.name + suffix);
  }
  return map;
}

struct AdamScalars {
  Value bias1, bias2;  // 1 - beta^t
};

// The optimizer update (torch.optim.SGD / AdamW) of every weight from its gradients summed over
// k micro-batches: the new weights and state as outputs aliasing them.
void append_update(Builder& b, const OptimizerOptions& opt, int k, const TrainStep& step,
                   const std::vector<Value>& weights, const std::vector<Value>& grad_sum,
                   const std::vector<std::vector<Value>>& state, Value step_count) {
  AdamScalars adam;
  Value new_step;
  if (opt.kind == OptimizerKind::kAdamW) {
    new_step = b.add_scalar(step_count, 1.0);
    auto one_minus_pow = [&](double beta) {
      Value p = b.pow(b.scalar(beta), new_step);
      return b.sub(b.scalar(1.0), p);
    };
    adam.bias1 = one_minus_pow(opt.beta1);
    adam.bias2 = one_minus_pow(opt.beta2);
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    Value w = weights[i];
    Value g = k == 1 ? grad_sum[i] : b.scale(grad_sum[i], 1.0 / k);
    const Shape shape = b.shape(w);
    const std::string& name = step.weights[i];
    if (opt.kind == OptimizerKind::kSgd) {
      // torch.optim.SGD: g += wd * w; buf = momentum * buf + g; w -= lr * buf
      if (opt.weight_decay != 0.0) g = b.add(g, b.scale(w, opt.weight_decay));
      Value buf = b.add(b.scale(state[i][0], opt.momentum), g);
      Value nw = b.sub(w, b.scale(buf, opt.learning_rate));
      b.output(name, nw, w);
      b.output(step.states[i], buf, state[i][0]);
    } else {
      // torch.optim.AdamW: w *= 1 - lr * wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
      // w -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
      Value m = b.add(b.scale(state[i][0], opt.beta1), b.scale(g, 1.0 - opt.beta1));
      Value v = b.add(b.scale(state[i][1], opt.beta2), b.scale(b.mul(g, g), 1.0 - opt.beta2));
      Value decayed =
          opt.weight_decay != 0.0 ? b.scale(w, 1.0 - opt.learning_rate * opt.weight_decay) : w;
      // The bias corrections are f32 scalars; the update runs in the weight's dtype.
      const DType dt = b.type(w).dtype;
      auto expand = [&](Value s) {
        return b.broadcast(dt == DType::kF32 ? s : b.convert(s, dt), shape, {});
      };
      Value m_hat = b.div(m, expand(adam.bias1));
      Value v_hat = b.div(v, expand(adam.bias2));
      Value denom = b.add_scalar(b.sqrt(v_hat), opt.epsilon);
      Value nw = b.sub(decayed, b.scale(b.div(m_hat, denom), opt.learning_rate));
      b.output(name, nw, w);
      b.output(name + ".adam_m", m, state[i][0]);
      b.output(name + ".adam_v", v, state[i][1]);
    }
  }
  if (opt.kind == OptimizerKind::kAdamW) b.output("step", new_step, step_count);
}

}  // namespace

Result<TrainStep> build_train_step(const Graph& forward, const TrainStepOptions& options) {
  const int k = options.micro_batches;
  ALPA_RETURN_IF_ERROR(check_trainable(forward, options.loss_output, k));
  const OptimizerOptions& opt = options.optimizer;

  TrainStep step;
  step.micro_batches = k;
  Builder b(forward.name() + ".train_step");
  // Phase and origin of every node, filled in as the blocks below are emitted.
  std::vector<StepPhase> phase;
  std::vector<ValueId> origin;
  auto mark = [&](StepPhase p, ValueId owner = kNoValue) {
    const size_t n = static_cast<size_t>(b.graph().size());
    origin.resize(std::max(n, origin.size()), kNoValue);
    for (size_t v = phase.size(); v < n; ++v) {
      if (owner != kNoValue) origin[v] = owner;
    }
    phase.resize(n, p);
  };

  // 1. Weights and inputs, in the forward's order; inputs hold all micro-batches.
  std::vector<Value> params(static_cast<size_t>(forward.size()));
  std::vector<Value> weights;
  std::vector<ValueId> input_ids;
  for (ValueId id : forward.parameters()) {
    const Node& n = forward.node(id);
    const auto& pa = n.attr<ParameterAttrs>();
    TensorType t = n.type;
    if (pa.role == ParamRole::kInput) t.shape[0] *= k;
    params[id] = b.parameter(n.name, t, pa.role, pa.init, pa.scale);
    if (pa.role == ParamRole::kWeight) {
      weights.push_back(params[id]);
      step.weights.push_back(n.name);
    } else if (pa.role == ParamRole::kInput) {
      input_ids.push_back(id);
      step.inputs.push_back(n.name);
    }
  }

  // 2. Optimizer state.
  std::vector<std::vector<Value>> state(weights.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const std::string& w = step.weights[i];
    const TensorType t = b.type(weights[i]);
    const std::vector<std::string> names =
        opt.kind == OptimizerKind::kSgd ? std::vector<std::string>{w + ".momentum"}
                                        : std::vector<std::string>{w + ".adam_m", w + ".adam_v"};
    for (const std::string& s : names) {
      state[i].push_back(b.parameter(s, t, ParamRole::kState, ParamInit::kZeros));
      step.states.push_back(s);
      step.state_weight.push_back(static_cast<int>(i));
    }
  }
  Value step_count;
  if (opt.kind == OptimizerKind::kAdamW) {
    step_count = b.parameter("step", {DType::kF32, {}}, ParamRole::kState, ParamInit::kZeros);
    step.states.push_back("step");
    step.state_weight.push_back(-1);
  }
  mark(StepPhase::kForward);

  // 3. Forward and backward per micro-batch; sum losses and gradients.
  Value loss_sum;
  std::vector<Value> grad_sum(weights.size());
  for (int mb = 0; mb < k; ++mb) {
    std::vector<Value> param_map = params;
    if (k > 1) {
      for (ValueId id : input_ids) {
        const Shape& s = forward.type(id).shape;
        std::vector<int64_t> start(s.size(), 0), limit = s;
        start[0] = mb * s[0];
        limit[0] = (mb + 1) * s[0];
        param_map[id] = b.slice(params[id], start, limit);
      }
    }
    const std::vector<Value> fwd =
        inline_forward(b, forward, param_map, k == 1, k == 1 ? "" : cat(".mb", mb));
    const Value loss = fwd[forward.find_output(options.loss_output)->value];
    loss_sum = loss_sum.valid() ? b.add(loss_sum, loss) : loss;
    mark(StepPhase::kForward);
    ALPA_ASSIGN_OR_RETURN(std::vector<Value> grads, append_backward(b, loss, weights, &origin));
    mark(StepPhase::kBackward);
    for (size_t i = 0; i < weights.size(); ++i) {
      grad_sum[i] = grad_sum[i].valid() ? b.add(grad_sum[i], grads[i]) : grads[i];
      mark(StepPhase::kBackward, weights[i].id);
    }
  }
  Value loss = k == 1 ? loss_sum : b.scale(loss_sum, 1.0 / k);
  b.output("loss", loss);
  mark(StepPhase::kForward);

  // 4. Optimizer update.
  append_update(b, opt, k, step, weights, grad_sum, state, step_count);
  mark(StepPhase::kUpdate);
  ALPA_ASSIGN_OR_RETURN(Graph g, b.finish());
  std::vector<ValueId> remap;
  step.graph = eliminate_dead_code(g, &remap);  // VJP rules also emit gradients nobody needs
  step.phase.resize(static_cast<size_t>(step.graph.size()), StepPhase::kForward);
  step.origin.assign(static_cast<size_t>(step.graph.size()), kNoValue);
  for (ValueId v = 0; v < g.size(); ++v) {
    if (remap[v] == kNoValue) continue;
    step.phase[remap[v]] = phase[v];
    const ValueId o = origin[v];
    if (o != kNoValue) {
      ALPA_CHECK(remap[o] != kNoValue) << "the origin of a live node was removed";
      step.origin[remap[v]] = remap[o];
    }
  }
  return step;
}

}  // namespace alpa
