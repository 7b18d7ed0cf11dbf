// Model registry: resolves `--model` / `--size` / override flags into a forward graph.
//
// `model` is a family name (gpt, mlp, convnet, moe, wresnet), a path to a text IR file
// holding a forward graph with marked weights and inputs and a scalar output named "loss", or
// a path to an ONNX file (onnx/onnx_model.h; --batch sets a symbolic batch, --loss the loss).
// Built-in families take a named size and optional overrides (an override that means nothing
// for a family is an error). A text IR file that declares its batch (ir/text.h) is read at
// --batch and at each micro-batch size; one that declares none keeps its file's shapes.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "alpa/autodiff/train_step.h"
#include "alpa/ir/graph.h"
#include "alpa/models/convnet.h"
#include "alpa/models/gpt.h"
#include "alpa/models/mlp.h"
#include "alpa/models/moe.h"
#include "alpa/models/wresnet.h"
#include "alpa/onnx/onnx_model.h"
#include "alpa/support/status.h"

namespace alpa {

enum class ModelFamily { kGpt, kMlp, kConvNet, kMoe, kWResNet, kFile };

struct ModelOverrides {
  std::optional<int64_t> batch, seq, layers, hidden, heads, vocab;
  std::optional<DType> dtype;
  std::optional<std::string> loss;  // ONNX models: cross_entropy|mse[:OUTPUT]
  bool any() const { return batch || seq || layers || hidden || heads || vocab || dtype; }
};

struct ModelSpec {
  ModelFamily family = ModelFamily::kGpt;
  std::string name;  // "gpt-tiny", "mlp-small", "moe-1.3b", "wresnet-1b", or the file path
  GptConfig gpt;
  MlpConfig mlp;
  ConvNetConfig convnet;
  MoeConfig moe;
  WResNetConfig wresnet;
  Graph file_graph;  // the parsed file (kFile), at `batch`
  // A text IR file: its text, re-read at each micro-batch size when it declares its batch
  // (`graph NAME(batch=N) {`, ir/text.h).
  std::string file_text;
  bool file_batch_declared = false;
  // An ONNX file (kFile): imported at each micro-batch size by build_forward; its weights'
  // values are the training's initial weights.
  std::shared_ptr<const OnnxModel> onnx;
  OnnxLoss onnx_loss;
  int64_t batch = 0;  // global batch (sequences or samples per training step)
  // f16 or bf16: build_forward applies the mixed-precision pass (autodiff/mixed_precision.h):
  // f32 master weights and arithmetic, contractions in this type. f32: the graph as the family
  // builds it (a family built in f16 is then only typed f16, for cost and memory accounting).
  DType mixed_precision = DType::kF32;
};

Result<ModelSpec> resolve_model(std::string_view model, std::string_view size,
                                const ModelOverrides& overrides);

// The forward graph of one micro-batch (batch / micro_batches samples).
Result<Graph> build_forward(const ModelSpec& spec, int micro_batches);

// The training step of `spec` (train_step.h) with its batch split into `micro_batches`:
// the whole step (every micro-batch, the gradients averaged: what one device or one mesh runs)
// or the step of one micro-batch (what the pipeline planner costs and a pipeline's stages split).
Result<TrainStep> training_step(const ModelSpec& spec, const OptimizerOptions& optimizer,
                                int micro_batches);
Result<TrainStep> micro_batch_step(const ModelSpec& spec, const OptimizerOptions& optimizer,
                                   int micro_batches);

// The text of the forward of one micro-batch (ir/text.h) with its batch declared
// (`graph NAME(batch=N) {`, the extents and numbers that scale with it written in `batch`),
// so the file micro-batches as the model does; where that cannot be (a file with a fixed
// batch, a graph whose shape does not scale with its batch: MoE's expert capacity), the
// graph as built and the reason.
struct EmittedForward {
  std::string text;
  bool batch_declared = false;
  std::string why_no_batch;
};
Result<EmittedForward> emit_forward(const ModelSpec& spec, int micro_batches = 1);

// Tokens (GPT, MoE) or samples (images for the Wide-ResNet) per global batch, for throughput
// reporting.
int64_t tokens_per_batch(const ModelSpec& spec);

}  // namespace alpa
