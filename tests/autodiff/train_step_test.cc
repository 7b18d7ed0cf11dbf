// Checks build_train_step (autodiff/train_step.h), evaluated in double by the reference
// interpreter: micro-batching (k = 2 equals one step on the whole batch within 1e-9 relative,
// for SGD and AdamW), and three steps of each optimizer against PyTorch's update formulas
// (torch.optim.SGD with momentum and weight decay, torch.optim.AdamW) computed by hand, within
// 1e-12 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "alpa/autodiff/train_step.h"
#include "alpa/ir/builder.h"
#include "alpa/support/rng.h"
#include "support/reference_eval.h"

namespace alpa {
namespace {

using Vec = std::vector<double>;
using Named = std::map<std::string, Vec>;

TensorType f32(Shape s) {
  return {DType::kF32, std::move(s)};
}

Graph finish(Builder& b) {
  Result<Graph> g = b.finish();
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return std::move(g).value();
}

// Runs `g` in the reference with parameters given by name; returns the outputs by name.
Named run_named(const Graph& g, const Named& params) {
  std::vector<Vec> values;
  for (ValueId id : g.parameters()) {
    auto it = params.find(g.node(id).name);
    EXPECT_NE(it, params.end()) << "no value for parameter " << g.node(id).name;
    values.push_back(it == params.end() ? Vec(g.type(id).num_elements(), 0.0) : it->second);
  }
  Result<std::vector<Vec>> r = reference_eval(g, values);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  Named out;
  if (!r.ok()) return out;
  for (size_t i = 0; i < g.outputs().size(); ++i) out[g.outputs()[i].name] = r->at(i);
  return out;
}

// |a - b| <= tol * max|a| elementwise (relative to the tensor's magnitude).
void expect_close(const Vec& a, const Vec& b, double tol, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  double scale = 0;
  for (double x : a) scale = std::max(scale, std::fabs(x));
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_LE(std::fabs(a[i] - b[i]), tol * scale)
        << what << "[" << i << "]: " << a[i] << " vs " << b[i];
}

// ---- micro-batching -----------------------------------------------------------------------

// MLP for one micro-batch of `batch` rows: loss = mean((tanh(x w1 + b1) w2 - y)^2).
Graph mlp(int64_t batch) {
  Builder b("mlp");
  Value x = b.parameter("x", f32({batch, 3}), ParamRole::kInput);
  Value w1 = b.parameter("w1", f32({3, 5}), ParamRole::kWeight, ParamInit::kNormal, 0.5);
  Value b1 = b.parameter("b1", f32({5}));
  Value y = b.parameter("y", f32({batch, 2}), ParamRole::kInput);
  Value w2 = b.parameter("w2", f32({5, 2}), ParamRole::kWeight, ParamInit::kNormal, 0.5);
  Value h = b.tanh(b.add(b.matmul(x, w1), b.broadcast_to(b1, {batch, 5})));
  Value d = b.sub(b.matmul(h, w2), y);
  b.output("loss", b.mean_all(b.mul(d, d)));
  return finish(b);
}

Named random_named(const Graph& g, uint64_t seed) {
  Rng rng(seed);
  Named values;
  for (ValueId id : g.parameters()) {
    Vec v(static_cast<size_t>(g.type(id).num_elements()));
    const std::string& name = g.node(id).name;
    for (double& e : v) e = rng.normal() * 0.7;
    if (name.ends_with(".adam_v"))
      for (double& e : v) e = e * e * 0.01;  // second moments are non-negative
    if (name == "step") v = {3};
    values[name] = std::move(v);
  }
  return values;
}

void check_micro_batches_match(OptimizerKind kind) {
  TrainStepOptions whole, split;
  whole.optimizer.kind = split.optimizer.kind = kind;
  whole.optimizer.learning_rate = split.optimizer.learning_rate = 0.1;
  whole.optimizer.weight_decay = split.optimizer.weight_decay = 0.01;
  split.micro_batches = 2;
  Result<TrainStep> one = build_train_step(mlp(8), whole);
  Result<TrainStep> two = build_train_step(mlp(4), split);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  ASSERT_TRUE(two.ok()) << two.status().to_string();
  // Same interface: parameter names and types, output names.
  ASSERT_EQ(one->graph.parameters().size(), two->graph.parameters().size());
  for (size_t i = 0; i < one->graph.parameters().size(); ++i) {
    const Node& a = one->graph.node(one->graph.parameters()[i]);
    const Node& b = two->graph.node(two->graph.parameters()[i]);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.type, b.type) << a.name;
  }
  EXPECT_EQ(one->states, two->states);
  EXPECT_GT(two->graph.size(), one->graph.size());  // forward + backward twice

  const Named params = random_named(one->graph, 7);
  const Named a = run_named(one->graph, params), b = run_named(two->graph, params);
  ASSERT_EQ(a.size(), b.size());
  ASSERT_EQ(a.size(), 1 + one->weights.size() + one->states.size());
  for (const auto& [name, value] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    expect_close(value, b.at(name), 1e-9, name);
  }
  // The step did something: weights moved.
  for (const std::string& w : one->weights) EXPECT_NE(a.at(w), params.at(w)) << w;
}

TEST(TrainStep, TwoMicroBatchesEqualOneStepSgd) {
  check_micro_batches_match(OptimizerKind::kSgd);
}

TEST(TrainStep, TwoMicroBatchesEqualOneStepAdamW) {
  check_micro_batches_match(OptimizerKind::kAdamW);
}

// Phases and origins place every node for a pipeline: forward, then backward nodes that each
// belong to a forward node (or a weight), then the update; nothing the update computes feeds
// the forward or backward pass. With the gradient norm: each weight's squared norm in between,
// belonging to its weight.
void check_phases(int micro_batches, OptimizerKind kind, double clip = 0, bool schedule = false) {
  TrainStepOptions o;
  o.micro_batches = micro_batches;
  o.optimizer.kind = kind;
  o.optimizer.clip_norm = clip;
  o.optimizer.scheduled_lr = schedule;
  Result<TrainStep> step = build_train_step(mlp(4), o);
  ASSERT_TRUE(step.ok()) << step.status().to_string();
  const Graph& g = step->graph;
  ASSERT_EQ(step->phase.size(), static_cast<size_t>(g.size()));
  ASSERT_EQ(step->origin.size(), static_cast<size_t>(g.size()));
  ASSERT_EQ(step->state_weight.size(), step->states.size());
  int counts[4] = {0, 0, 0, 0};
  for (ValueId v = 0; v < g.size(); ++v) {
    const StepPhase p = step->phase[v];
    ++counts[static_cast<int>(p)];
    if (g.node(v).op == OpKind::kParameter) {
      EXPECT_EQ(p, StepPhase::kForward);
    }
    for (ValueId op : g.node(v).operands) {
      EXPECT_LE(static_cast<int>(step->phase[op]), static_cast<int>(p))
          << "%" << v << " (" << op_name(g.node(v).op) << ") reads a later phase";
    }
    const ValueId o = step->origin[v];
    if (p == StepPhase::kBackward) {
      ASSERT_NE(o, kNoValue) << "backward node %" << v << " has no origin";
      EXPECT_EQ(step->phase[o], StepPhase::kForward);
      EXPECT_LT(o, v);
    } else if (p == StepPhase::kGradNorm) {
      ASSERT_NE(o, kNoValue) << "gradient norm node %" << v << " has no weight";
      EXPECT_EQ(g.node(o).op, OpKind::kParameter);
    } else {
      EXPECT_EQ(o, kNoValue);
    }
  }
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);
  EXPECT_EQ(counts[2] > 0, clip > 0);
  EXPECT_GT(counts[3], 0);
  // A dot's VJP belongs to the dot: some backward dot_general has a forward dot as origin.
  bool dot_vjp = false;
  for (ValueId v = 0; v < g.size(); ++v)
    if (step->phase[v] == StepPhase::kBackward && g.node(v).op == OpKind::kDotGeneral)
      dot_vjp |= g.node(step->origin[v]).op == OpKind::kDotGeneral;
  EXPECT_TRUE(dot_vjp);
  // States name their weight.
  for (size_t i = 0; i < step->states.size(); ++i) {
    if (step->state_weight[i] < 0) {
      EXPECT_TRUE(step->states[i] == "step" || step->states[i] == "lr" ||
                  step->states[i] == "grad_norm")
          << step->states[i];
    } else {
      EXPECT_TRUE(step->states[i].starts_with(step->weights[step->state_weight[i]] + "."));
    }
  }
}

TEST(TrainStep, PhasesAndOriginsPlaceEveryNode) {
  check_phases(1, OptimizerKind::kAdamW);
  check_phases(1, OptimizerKind::kSgd);
  check_phases(3, OptimizerKind::kAdamW);
  check_phases(1, OptimizerKind::kAdamW, 1.0, true);
  check_phases(2, OptimizerKind::kSgd, 0.5, true);
}

TEST(TrainStep, InvalidMicroBatchCountIsAnError) {
  TrainStepOptions options;
  options.micro_batches = 0;
  Result<TrainStep> step = build_train_step(mlp(4), options);
  ASSERT_FALSE(step.ok());
  EXPECT_NE(step.status().message().find("micro_batches"), std::string::npos)
      << step.status().to_string();
}

// ---- optimizers vs PyTorch's formulas -----------------------------------------------------

// loss = sum(c * (w - t)^2) + (s - 3)^2, w: f32[3], s: f32[] (a scalar weight).
const Vec kC = {0.5, 1.0, 2.0}, kT = {1.0, -2.0, 0.5};

Graph quadratic() {
  Builder b("quadratic");
  Value w = b.parameter("w", f32({3}));
  Value s = b.parameter("s", f32({}));
  Value d = b.sub(w, b.constant(kT, f32({3})));
  Value lw = b.reduce_sum(b.mul(b.constant(kC, f32({3})), b.mul(d, d)), {0});
  Value ds = b.add_scalar(s, -3.0);
  b.output("loss", b.add(lw, b.mul(ds, ds)));
  return finish(b);
}

double quadratic_loss(const Vec& w, double s) {
  double l = (s - 3) * (s - 3);
  for (size_t i = 0; i < 3; ++i) l += kC[i] * (w[i] - kT[i]) * (w[i] - kT[i]);
  return l;
}

// Gradients of quadratic(): dw = 2 c (w - t), ds = 2 (s - 3). Flattened as [w..., s].
Vec quadratic_grad(const Vec& p) {
  return {2 * kC[0] * (p[0] - kT[0]), 2 * kC[1] * (p[1] - kT[1]), 2 * kC[2] * (p[2] - kT[2]),
          2 * (p[3] - 3)};
}

const Vec kW0 = {0.3, 0.7, -1.2};
constexpr double kS0 = 0.5;

// Feeds each output back into the parameter it aliases.
Named next_params(const Graph& g, const Named& params, const Named& outputs) {
  Named next = params;
  for (const GraphOutput& out : g.outputs())
    if (out.alias != kNoValue) next[g.node(out.alias).name] = outputs.at(out.name);
  return next;
}

TEST(TrainStep, SgdMatchesTorchFormulasOverThreeSteps) {
  TrainStepOptions options;
  options.optimizer.kind = OptimizerKind::kSgd;
  options.optimizer.learning_rate = 0.1;
  options.optimizer.momentum = 0.9;
  options.optimizer.weight_decay = 0.01;
  Result<TrainStep> step = build_train_step(quadratic(), options);
  ASSERT_TRUE(step.ok()) << step.status().to_string();
  EXPECT_EQ(step->states, (std::vector<std::string>{"w.momentum", "s.momentum"}));

  Named params = {{"w", kW0}, {"s", {kS0}}, {"w.momentum", {0, 0, 0}}, {"s.momentum", {0}}};
  // torch.optim.SGD(momentum=0.9, weight_decay=0.01, dampening=0, nesterov=False):
  //   g = grad + wd * p; buf = g (first step) else momentum * buf + g; p -= lr * buf
  Vec p = {kW0[0], kW0[1], kW0[2], kS0}, buf(4, 0.0);
  for (int t = 1; t <= 3; ++t) {
    const double loss = quadratic_loss({p[0], p[1], p[2]}, p[3]);
    const Vec grad = quadratic_grad(p);
    for (size_t i = 0; i < 4; ++i) {
      const double g = grad[i] + 0.01 * p[i];
      buf[i] = t == 1 ? g : 0.9 * buf[i] + g;
      p[i] -= 0.1 * buf[i];
    }
    const Named out = run_named(step->graph, params);
    SCOPED_TRACE(cat("step ", t));
    expect_close(out.at("loss"), {loss}, 1e-12, "loss");
    expect_close(out.at("w"), {p[0], p[1], p[2]}, 1e-12, "w");
    expect_close(out.at("s"), {p[3]}, 1e-12, "s");
    expect_close(out.at("w.momentum"), {buf[0], buf[1], buf[2]}, 1e-12, "w.momentum");
    expect_close(out.at("s.momentum"), {buf[3]}, 1e-12, "s.momentum");
    params = next_params(step->graph, params, out);
  }
}

TEST(TrainStep, AdamWMatchesTorchFormulasOverThreeSteps) {
  TrainStepOptions options;
  options.optimizer.kind = OptimizerKind::kAdamW;
  options.optimizer.learning_rate = 0.05;
  options.optimizer.beta1 = 0.9;
  options.optimizer.beta2 = 0.999;
  options.optimizer.epsilon = 1e-8;
  options.optimizer.weight_decay = 0.1;
  Result<TrainStep> step = build_train_step(quadratic(), options);
  ASSERT_TRUE(step.ok()) << step.status().to_string();
  EXPECT_EQ(step->states,
            (std::vector<std::string>{"w.adam_m", "w.adam_v", "s.adam_m", "s.adam_v", "step"}));

  Named params = {{"w", kW0},
                  {"s", {kS0}},
                  {"w.adam_m", {0, 0, 0}},
                  {"w.adam_v", {0, 0, 0}},
                  {"s.adam_m", {0}},
                  {"s.adam_v", {0}},
                  {"step", {0}}};
  // torch.optim.AdamW(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, amsgrad=False):
  //   p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  //   step_size = lr / (1 - b1^t); denom = sqrt(v) / sqrt(1 - b2^t) + eps;
  //   p -= step_size * m / denom                         (g taken before the decay)
  const double lr = 0.05, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  Vec p = {kW0[0], kW0[1], kW0[2], kS0}, m(4, 0.0), v(4, 0.0);
  for (int t = 1; t <= 3; ++t) {
    const double loss = quadratic_loss({p[0], p[1], p[2]}, p[3]);
    const Vec grad = quadratic_grad(p);
    const double step_size = lr / (1 - std::pow(b1, t));
    const double bc2_sqrt = std::sqrt(1 - std::pow(b2, t));
    for (size_t i = 0; i < 4; ++i) {
      p[i] *= 1 - lr * wd;
      m[i] = b1 * m[i] + (1 - b1) * grad[i];
      v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
      const double denom = std::sqrt(v[i]) / bc2_sqrt + eps;
      p[i] -= step_size * m[i] / denom;
    }
    const Named out = run_named(step->graph, params);
    SCOPED_TRACE(cat("step ", t));
    expect_close(out.at("loss"), {loss}, 1e-12, "loss");
    expect_close(out.at("w"), {p[0], p[1], p[2]}, 1e-12, "w");
    expect_close(out.at("s"), {p[3]}, 1e-12, "s");
    expect_close(out.at("w.adam_m"), {m[0], m[1], m[2]}, 1e-12, "w.adam_m");
    expect_close(out.at("w.adam_v"), {v[0], v[1], v[2]}, 1e-12, "w.adam_v");
    expect_close(out.at("s.adam_m"), {m[3]}, 1e-12, "s.adam_m");
    expect_close(out.at("s.adam_v"), {v[3]}, 1e-12, "s.adam_v");
    expect_close(out.at("step"), {static_cast<double>(t)}, 0.0, "step");
    params = next_params(step->graph, params, out);
  }
}

}  // namespace
}  // namespace alpa
