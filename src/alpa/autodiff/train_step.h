// The training step: forward + loss + backward + optimizer update as one Graph.
//
// build_train_step takes a forward graph built for ONE micro-batch (weights, inputs whose
// dim 0 is the micro-batch, and a scalar float output named "loss") and returns a graph with
// these parameters, in order:
//   1. the forward's weights and inputs (inputs hold all micro-batches: dim 0 is
//      micro_batches x the forward's), in the forward's order;
//   2. optimizer state, role=state, init=zeros: per weight "<w>.momentum" (SGD) or
//      "<w>.adam_m", "<w>.adam_v" (AdamW); then "step" (f32 scalar, AdamW only);
// and these outputs: "loss" (the mean over micro-batches), then for every weight and state
// parameter an output with the same name that aliases it: its value after the update.
// With micro_batches = k the graph slices each input into k parts along dim 0, runs forward
// and backward on each in turn and averages the gradients: for a loss that is a mean over the
// batch this equals one step on the whole batch.
//
// Optimizers follow PyTorch's definitions (torch.optim.SGD with momentum, dampening 0;
// torch.optim.AdamW with bias correction), so results can be compared step for step.
#pragma once

#include <string>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

enum class OptimizerKind { kSgd, kAdamW };

struct OptimizerOptions {
  OptimizerKind kind = OptimizerKind::kAdamW;
  double learning_rate = 1e-3;
  double momentum = 0.9;      // SGD
  double beta1 = 0.9;         // AdamW
  double beta2 = 0.999;       // AdamW
  double epsilon = 1e-8;      // AdamW
  double weight_decay = 0.0;  // SGD: L2 added to the gradient; AdamW: decoupled decay
  // A learning-rate schedule: the rate is read each step from the f32 scalar state "lr",
  // which the driver sets before the step (runtime/train.h), instead of learning_rate.
  bool scheduled_lr = false;
  // The global gradient norm (the 2-norm over every weight's gradient, averaged over the
  // micro-batches): computed when track_grad_norm or clip_norm > 0 and written each step into
  // the f32 scalar state "grad_norm". With clip_norm > 0 the gradients are scaled by
  // min(1, clip_norm / (norm + 1e-6)) before the update, as torch.nn.utils.clip_grad_norm_.
  bool track_grad_norm = false;
  double clip_norm = 0.0;
  // Dynamic loss scaling (f16 training, as torch.cuda.amp.GradScaler): the backward starts
  // from loss x 2^(loss_scale_log2 + e), the gradients are divided by that scale, and a step
  // whose gradients hold an inf or NaN changes no weight or state (the update is skipped) and
  // lowers e by one; after `loss_scale_interval` good steps in a row e grows by one. e and the
  // count of good steps are the f32 scalar states "loss_scale_exp" and "loss_scale_good", so
  // every plan and a resumed run scale alike. Implies the gradient norm (its finiteness).
  bool loss_scaling = false;
  double loss_scale_log2 = 16;
  int loss_scale_interval = 2000;
};

struct TrainStepOptions {
  OptimizerOptions optimizer;
  int micro_batches = 1;
  std::string loss_output = "loss";
};

// Which part of the step a node of TrainStep::graph belongs to. Parameters are kForward.
enum class StepPhase : uint8_t {
  kForward,   // the forward pass and the loss (per micro-batch), and the loss average
  kBackward,  // the backward pass (per micro-batch) and the gradient sums
  kGradNorm,  // a weight's squared gradient norm (once per step, with its weight)
  kUpdate,    // the optimizer update (once per step)
};
// Nodes of these phases run once per step, not per micro-batch.
inline bool once_per_step(StepPhase p) {
  return p == StepPhase::kGradNorm || p == StepPhase::kUpdate;
}

struct TrainStep {
  Graph graph;
  std::vector<std::string> weights;  // weight names, in parameter order
  std::vector<std::string> inputs;   // input names, in parameter order
  std::vector<std::string> states;   // state names, in parameter order
  std::vector<int> state_weight;     // per state: index into `weights`, or -1 ("step")
  int micro_batches = 1;
  // Per node of `graph`: its phase, and for backward nodes the forward node (or parameter)
  // they belong to (append_backward's origin; a gradient sum over micro-batches belongs to
  // its weight); kNoValue for other nodes. Pipelines place each node by these.
  std::vector<StepPhase> phase;
  std::vector<ValueId> origin;
};

Result<TrainStep> build_train_step(const Graph& forward, const TrainStepOptions& options);

// The forward operators of a training step (forward phase, not parameters), in order: what
// the pipeline planner clusters into layers.
std::vector<ValueId> forward_ops(const TrainStep& step);

// Checks that `forward` can be trained: a scalar float output named `loss_output`, at least
// one weight, named parameters, inputs of rank >= 1 when micro-batching. Errors name the fix.
Status check_trainable(const Graph& forward, const std::string& loss_output, int micro_batches);

std::string_view optimizer_name(OptimizerKind kind);
Result<OptimizerKind> parse_optimizer(std::string_view name);

}  // namespace alpa
