#include <CLI/CLI.hpp>

#include "alpa/cli/commands.h"

namespace alpa {
namespace {

// CLI11 fills plain integers; 0 means "not given" (the options only accept positive values).
struct OverrideSlots {
  int64_t batch = 0, seq = 0, layers = 0, hidden = 0, heads = 0, vocab = 0;
};

}  // namespace

void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--model", f.model,
                 "Model: gpt, mlp, or the path of a text IR file (a forward graph with "
                 "parameters marked role=weight/input and a scalar output named loss)")
      ->capture_default_str();
  app.add_option("--size", f.size,
                 "Named size of a built-in model. gpt: tiny, small, 125m, 350m, 760m, 1.3b, "
                 "2.6b, 6.7b, 15b, 39b; mlp: tiny, small, large")
      ->capture_default_str();
  auto add = [&](const char* name, std::optional<int64_t>* slot, const char* help) {
    app.add_option_function<int64_t>(
           name, [slot](const int64_t& v) { *slot = v; }, help)
        ->check(CLI::PositiveNumber)
        ->group("Model overrides");
  };
  add("--batch", &f.batch, "Global batch size (sequences or samples per training step)");
  add("--seq", &f.seq, "GPT sequence length");
  add("--layers", &f.layers, "Number of layers");
  add("--hidden", &f.hidden, "Hidden size");
  add("--heads", &f.heads, "GPT attention heads");
  add("--vocab", &f.vocab, "GPT vocabulary size");
  app.add_option("--dtype", f.dtype,
                 "Element type for cost and memory accounting: f32, f16, bf16 (execution is f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->group("Model overrides");
}

Result<ModelSpec> resolve_model_flags(const ModelFlags& f) {
  ModelOverrides o;
  o.batch = f.batch;
  o.seq = f.seq;
  o.layers = f.layers;
  o.hidden = f.hidden;
  o.heads = f.heads;
  o.vocab = f.vocab;
  if (!f.dtype.empty()) o.dtype = parse_dtype(f.dtype);
  return resolve_model(f.model, f.size, o);
}

void add_optimizer_flags(CLI::App& app, OptimizerFlags& f) {
  app.add_option("--optimizer", f.optimizer, "Optimizer: adamw or sgd (with momentum)")
      ->check(CLI::IsMember({"adamw", "adam", "sgd"}))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--lr", f.lr, "Learning rate")
      ->check(CLI::PositiveNumber)
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--momentum", f.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--weight-decay", f.weight_decay,
                 "Weight decay (AdamW: decoupled; SGD: L2 on the gradient)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str()
      ->group("Optimizer");
}

}  // namespace alpa
