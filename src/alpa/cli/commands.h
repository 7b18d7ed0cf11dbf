// The `alpa` commands as library functions: each parses nothing itself (flags are filled by
// CLI11 in main.cc), writes its report to `out` (one JSON object with --json) and errors to
// `err`, and returns the process exit code. Tests call these directly.
#pragma once

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>

#include "alpa/models/registry.h"
#include "alpa/support/status.h"

namespace CLI {
class App;
}

namespace alpa {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUserError = 1;

// Flags shared by every command that takes a model.
struct ModelFlags {
  std::string model = "gpt";
  std::string size = "tiny";
  std::optional<int64_t> batch, seq, layers, hidden, heads, vocab;
  std::string dtype;  // empty: the size's default
};
void add_model_flags(CLI::App& app, ModelFlags& flags);
Result<ModelSpec> resolve_model_flags(const ModelFlags& flags);

struct OptimizerFlags {
  std::string optimizer = "adamw";
  double lr = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
};
void add_optimizer_flags(CLI::App& app, OptimizerFlags& flags);

struct TrainFlags {
  ModelFlags model;
  OptimizerFlags optimizer;
  int steps = 20;
  uint64_t seed = 0;
  int micro_batches = 1;
  int threads = 0;
  bool profile = false;  // print time per op kind
  bool json = false;
};
int run_train(const TrainFlags& flags, std::ostream& out, std::ostream& err);

struct GraphFlags {
  ModelFlags model;
  OptimizerFlags optimizer;
  int micro_batches = 1;
  std::string emit;      // "", "forward" or "train-step": print the text IR
  std::string out_path;  // with --emit: write it to this file instead of stdout
  bool json = false;
};
int run_graph(const GraphFlags& flags, std::ostream& out, std::ostream& err);

struct DemoFlags {
  int steps = 300;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
};
int run_demo(const DemoFlags& flags, std::ostream& out, std::ostream& err);

// Prints a user error ("error: ...", "hint: ...") to err and, with --json, a JSON object
// {"error": ..., "hint": ...} to out. Returns kExitUserError.
int report_error(const Status& status, bool json, std::ostream& out, std::ostream& err);

}  // namespace alpa
