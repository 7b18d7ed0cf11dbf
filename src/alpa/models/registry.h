// Model registry: resolves `--model` / `--size` / override flags into a forward graph.
//
// `model` is a family name (gpt, mlp, convnet) or a path to a text IR file holding a forward graph
// with marked weights and inputs and a scalar output named "loss". Built-in families take a
// named size and optional overrides; for a file the batch is the file's.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "alpa/ir/graph.h"
#include "alpa/models/convnet.h"
#include "alpa/models/gpt.h"
#include "alpa/models/mlp.h"
#include "alpa/support/status.h"

namespace alpa {

enum class ModelFamily { kGpt, kMlp, kConvNet, kFile };

struct ModelOverrides {
  std::optional<int64_t> batch, seq, layers, hidden, heads, vocab;
  std::optional<DType> dtype;
  bool any() const { return batch || seq || layers || hidden || heads || vocab || dtype; }
};

struct ModelSpec {
  ModelFamily family = ModelFamily::kGpt;
  std::string name;  // "gpt-tiny", "mlp-small", or the file path
  GptConfig gpt;
  MlpConfig mlp;
  ConvNetConfig convnet;
  Graph file_graph;  // the parsed file (kFile)
  int64_t batch = 0;  // global batch (sequences or samples per training step)
};

Result<ModelSpec> resolve_model(std::string_view model, std::string_view size,
                                const ModelOverrides& overrides);

// The forward graph of one micro-batch (batch / micro_batches samples).
Result<Graph> build_forward(const ModelSpec& spec, int micro_batches);

// Tokens (GPT) or samples per global batch, for throughput reporting.
int64_t tokens_per_batch(const ModelSpec& spec);

}  // namespace alpa
