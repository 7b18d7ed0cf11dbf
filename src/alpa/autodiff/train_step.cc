#include "alpa/autodiff/train_step.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

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

// The step's scalars the update reads besides the weights and state.
struct UpdateScalars {
  Value step_count;  // AdamW's "step"
  Value lr;          // the scheduled learning rate, or invalid (opt.learning_rate)
  Value finite;      // with loss scaling: 1 when the gradients are finite, else 0 (keep all)
};

// The new value of a weight or state: `updated`, or with loss scaling the old one when the
// step's gradients overflowed.
Value kept_unless_finite(Builder& b, const UpdateScalars& u, Value updated, Value old) {
  if (!u.finite.valid()) return updated;
  // The flag travels between stages as an f32 0/1; each user tests it on its own stage.
  Value ok = b.compare(u.finite, b.scalar(0.5), CompareDir::kGt);
  return b.select(b.broadcast(ok, b.shape(old), {}), updated, old);
}

// `x` times the learning rate (and a constant factor), in x's dtype.
Value times_lr(Builder& b, const OptimizerOptions& opt, const UpdateScalars& u, Value x,
               double factor = 1.0) {
  if (!u.lr.valid()) return b.scale(x, opt.learning_rate * factor);
  const DType dt = b.type(x).dtype;
  Value lr = factor == 1.0 ? u.lr : b.scale(u.lr, factor);
  return b.mul(x, b.broadcast(dt == DType::kF32 ? lr : b.convert(lr, dt), b.shape(x), {}));
}

// The optimizer update (torch.optim.SGD / AdamW) of every weight from its gradient `grads`
// (the mean over the micro-batches, clipped where asked): the new weights and state as
// outputs aliasing them.
void append_update(Builder& b, const OptimizerOptions& opt, const TrainStep& step,
                   const std::vector<Value>& weights, const std::vector<Value>& grads,
                   const std::vector<std::vector<Value>>& state, const UpdateScalars& u) {
  AdamScalars adam;
  Value new_step;
  if (opt.kind == OptimizerKind::kAdamW) {
    new_step = b.add_scalar(u.step_count, 1.0);
    auto one_minus_pow = [&](double beta) {
      Value p = b.pow(b.scalar(beta), new_step);
      return b.sub(b.scalar(1.0), p);
    };
    adam.bias1 = one_minus_pow(opt.beta1);
    adam.bias2 = one_minus_pow(opt.beta2);
  }
  for (size_t i = 0; i < weights.size(); ++i) {
    Value w = weights[i];
    Value g = grads[i];
    const Shape shape = b.shape(w);
    const std::string& name = step.weights[i];
    if (opt.kind == OptimizerKind::kSgd) {
      // torch.optim.SGD: g += wd * w; buf = momentum * buf + g; w -= lr * buf
      if (opt.weight_decay != 0.0) g = b.add(g, b.scale(w, opt.weight_decay));
      Value buf = b.add(b.scale(state[i][0], opt.momentum), g);
      Value nw = b.sub(w, times_lr(b, opt, u, buf));
      b.output(name, kept_unless_finite(b, u, nw, w), w);
      b.output(step.states[i], kept_unless_finite(b, u, buf, state[i][0]), state[i][0]);
    } else {
      // torch.optim.AdamW: w *= 1 - lr * wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
      // w -= lr * (m / bc1) / (sqrt(v / bc2) + eps)
      Value m = b.add(b.scale(state[i][0], opt.beta1), b.scale(g, 1.0 - opt.beta1));
      Value v = b.add(b.scale(state[i][1], opt.beta2), b.scale(b.mul(g, g), 1.0 - opt.beta2));
      Value decayed = w;
      if (opt.weight_decay != 0.0)
        decayed = u.lr.valid() ? b.sub(w, times_lr(b, opt, u, w, opt.weight_decay))
                               : b.scale(w, 1.0 - opt.learning_rate * opt.weight_decay);
      // The bias corrections are f32 scalars; the update runs in the weight's dtype.
      const DType dt = b.type(w).dtype;
      auto expand = [&](Value s) {
        return b.broadcast(dt == DType::kF32 ? s : b.convert(s, dt), shape, {});
      };
      Value m_hat = b.div(m, expand(adam.bias1));
      Value v_hat = b.div(v, expand(adam.bias2));
      Value denom = b.add_scalar(b.sqrt(v_hat), opt.epsilon);
      Value nw = b.sub(decayed, times_lr(b, opt, u, b.div(m_hat, denom)));
      b.output(name, kept_unless_finite(b, u, nw, w), w);
      b.output(name + ".adam_m", kept_unless_finite(b, u, m, state[i][0]), state[i][0]);
      b.output(name + ".adam_v", kept_unless_finite(b, u, v, state[i][1]), state[i][1]);
    }
  }
  if (opt.kind == OptimizerKind::kAdamW)
    b.output("step", kept_unless_finite(b, u, new_step, u.step_count), u.step_count);
}

// The step's scalar states besides AdamW's counter (invalid where not asked for).
struct StepScalars {
  Value lr, grad_norm, scale_exp, scale_good;
};

// The loss scale 2^(loss_scale_log2 + e) (dynamic loss scaling).
Value scale_of(Builder& b, const OptimizerOptions& opt, const StepScalars& sc,
               bool inverse = false) {
  Value e = b.add_scalar(sc.scale_exp, opt.loss_scale_log2);
  return b.pow(b.scalar(2.0), inverse ? b.neg(e) : e);
}

// Section 4 of the step: each weight's mean gradient (unscaled; its squared norm tagged with
// the weight), the global norm, the clip factor, the overflow test and the loss-scale update,
// then the optimizer.
void append_norm_and_update(Builder& b, const OptimizerOptions& opt, int k, const TrainStep& step,
                            const std::vector<Value>& weights, const std::vector<Value>& grad_sum,
                            const std::vector<std::vector<Value>>& state, Value step_count,
                            const StepScalars& sc,
                            const std::function<void(StepPhase, ValueId)>& mark) {
  const bool norm = sc.grad_norm.valid();
  std::vector<Value> grads(weights.size());
  std::vector<Value> squares;
  for (size_t i = 0; i < weights.size(); ++i) {
    grads[i] = k == 1 ? grad_sum[i] : b.scale(grad_sum[i], 1.0 / k);
    if (sc.scale_exp.valid()) {  // unscaled on the weight's own stage
      const DType dt = b.type(grads[i]).dtype;
      Value inv = scale_of(b, opt, sc, true);
      grads[i] = b.mul(grads[i], b.broadcast(dt == DType::kF32 ? inv : b.convert(inv, dt),
                                             b.shape(grads[i]), {}));
    }
    if (!norm) continue;
    Value g32 = b.type(grads[i]).dtype == DType::kF32 ? grads[i] : b.convert(grads[i], DType::kF32);
    squares.push_back(b.sum_all(b.mul(g32, g32)));
    mark(StepPhase::kGradNorm, weights[i].id);
  }
  mark(StepPhase::kUpdate, kNoValue);
  UpdateScalars u{step_count, sc.lr, Value()};
  if (norm) {
    Value total = squares[0];
    for (size_t i = 1; i < squares.size(); ++i) total = b.add(total, squares[i]);
    Value n = b.sqrt(total);
    b.output("grad_norm", n, sc.grad_norm);
    if (opt.clip_norm > 0) {
      Value coef = b.min(b.div(b.scalar(opt.clip_norm), b.add_scalar(n, 1e-6)), b.scalar(1.0));
      for (size_t i = 0; i < grads.size(); ++i) {
        const DType dt = b.type(grads[i]).dtype;
        grads[i] = b.mul(grads[i], b.broadcast(dt == DType::kF32 ? coef : b.convert(coef, dt),
                                               b.shape(grads[i]), {}));
      }
    }
    if (sc.scale_exp.valid()) {
      // Finite gradients: count the good step, and grow the scale after an interval of them;
      // an overflow: halve the scale and start counting again.
      Value finite =
          b.compare(n, b.scalar(std::numeric_limits<double>::infinity()), CompareDir::kLt);
      u.finite = b.select(finite, b.scalar(1.0), b.scalar(0.0));
      Value good = b.add_scalar(sc.scale_good, 1.0);
      Value grow = b.compare(good, b.scalar(opt.loss_scale_interval), CompareDir::kGe);
      Value exp_if_good = b.select(grow, b.add_scalar(sc.scale_exp, 1.0), sc.scale_exp);
      b.output("loss_scale_exp", b.select(finite, exp_if_good, b.add_scalar(sc.scale_exp, -1.0)),
               sc.scale_exp);
      b.output("loss_scale_good",
               b.select(finite, b.select(grow, b.scalar(0.0), good), b.scalar(0.0)), sc.scale_good);
    }
  }
  append_update(b, opt, step, weights, grads, state, u);
  mark(StepPhase::kUpdate, kNoValue);
}

}  // namespace

std::vector<ValueId> forward_ops(const TrainStep& step) {
  std::vector<ValueId> ops;
  for (ValueId v = 0; v < step.graph.size(); ++v)
    if (step.phase[v] == StepPhase::kForward && step.graph.node(v).op != OpKind::kParameter)
      ops.push_back(v);
  return ops;
}

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
  auto scalar_state = [&](const char* name) {
    step.states.push_back(name);
    step.state_weight.push_back(-1);
    return b.parameter(name, {DType::kF32, {}}, ParamRole::kState, ParamInit::kZeros);
  };
  StepScalars sc;
  sc.lr = opt.scheduled_lr ? scalar_state("lr") : Value();
  if (opt.track_grad_norm || opt.clip_norm > 0 || opt.loss_scaling)
    sc.grad_norm = scalar_state("grad_norm");
  if (opt.loss_scaling) {
    sc.scale_exp = scalar_state("loss_scale_exp");
    sc.scale_good = scalar_state("loss_scale_good");
  }
  const Value loss_scale = opt.loss_scaling ? scale_of(b, opt, sc) : Value();
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
    // With loss scaling the backward starts from the scale instead of 1.
    Value seed = loss_scale;
    if (seed.valid() && b.type(loss).dtype != DType::kF32)
      seed = b.convert(seed, b.type(loss).dtype);
    mark(StepPhase::kForward);
    ALPA_ASSIGN_OR_RETURN(std::vector<Value> grads,
                          append_backward(b, loss, weights, &origin, seed));
    mark(StepPhase::kBackward);
    for (size_t i = 0; i < weights.size(); ++i) {
      grad_sum[i] = grad_sum[i].valid() ? b.add(grad_sum[i], grads[i]) : grads[i];
      mark(StepPhase::kBackward, weights[i].id);
    }
  }
  Value loss = k == 1 ? loss_sum : b.scale(loss_sum, 1.0 / k);
  b.output("loss", loss);
  mark(StepPhase::kForward);

  // 4. The mean gradients; their global norm, clipping and unscaling; the optimizer update.
  append_norm_and_update(b, opt, k, step, weights, grad_sum, state, step_count, sc, mark);
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
