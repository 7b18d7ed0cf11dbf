// alpa graph: builds a model's training step and reports its size, FLOPs and memory.
#include <chrono>
#include <fstream>

#include <nlohmann/json.hpp>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/ir/analysis.h"
#include "alpa/ir/text.h"
#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

int run_graph(const GraphFlags& flags, std::ostream& out, std::ostream& err) {
  const auto t0 = std::chrono::steady_clock::now();
  Result<ModelSpec> spec = resolve_model_flags(flags.model);
  if (!spec.ok()) return report_error(spec.status(), flags.json, out, err);
  Result<Graph> forward = build_forward(*spec, flags.micro_batches);
  if (!forward.ok()) return report_error(forward.status(), flags.json, out, err);
  TrainStepOptions tso;
  Result<OptimizerOptions> optimizer = optimizer_options(flags.optimizer);
  if (!optimizer.ok()) return report_error(optimizer.status(), flags.json, out, err);
  tso.optimizer = *optimizer;
  tso.micro_batches = flags.micro_batches;
  Result<TrainStep> ts = build_train_step(*forward, tso);
  if (!ts.ok()) return report_error(ts.status(), flags.json, out, err);
  const double build_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  if (!flags.emit.empty()) {
    if (flags.emit != "forward" && flags.emit != "train-step")
      return report_error(
          invalid_argument(cat("--emit must be forward or train-step, got '", flags.emit, "'")),
          flags.json, out, err);
    const Graph& g = flags.emit == "forward" ? *forward : ts->graph;
    std::string text;
    if (flags.emit == "forward") {  // with the batch declared, so the file micro-batches
      Result<EmittedForward> e = emit_forward(*spec, flags.micro_batches);
      if (!e.ok()) return report_error(e.status(), flags.json, out, err);
      if (!e->batch_declared)
        err << "note: the batch is not declared in the written graph (" << e->why_no_batch
            << "), so it cannot be micro-batched or given another --batch\n";
      text = std::move(e->text);
    } else {
      text = print_graph(g);
    }
    if (flags.out_path.empty()) {
      out << text;
    } else {
      Status s = write_file(flags.out_path, text);
      if (!s.ok()) return report_error(s, flags.json, out, err);
      err << "wrote " << flags.out_path << " (" << g.size() << " nodes)\n";
    }
    return kExitOk;
  }

  const GraphStats s = graph_stats(ts->graph);
  const GraphStats fs = graph_stats(*forward);
  if (flags.json) {
    nlohmann::json j;
    j["command"] = "graph";
    j["model"] = spec->name;
    j["batch"] = spec->batch;
    j["micro_batches"] = flags.micro_batches;
    j["optimizer"] = std::string(optimizer_name(optimizer->kind));
    j["nodes"] = s.num_nodes;
    j["forward_nodes"] = fs.num_nodes;
    j["parameters"] = s.parameters;
    j["flops_per_step"] = s.flops;
    j["forward_flops"] = fs.flops;
    j["parameter_bytes"] = s.parameter_bytes;
    j["optimizer_state_bytes"] = s.state_bytes;
    j["input_bytes"] = s.input_bytes;
    j["activation_bytes"] = s.peak_activation_bytes;
    j["ops_by_kind"] = s.ops_by_kind;
    j["build_time_s"] = build_s;
    out << json_line(j) << "\n";
    return kExitOk;
  }
  out << spec->name << ": training step (" << optimizer_name(optimizer->kind) << "), global batch "
      << spec->batch << ", " << flags.micro_batches << " micro-batch"
      << (flags.micro_batches > 1 ? "es" : "") << "\n"
      << "  nodes                 " << format_count(s.num_nodes) << " (forward "
      << format_count(fs.num_nodes) << ")\n"
      << "  parameters            " << format_count(s.parameters) << " ("
      << format_count_short(static_cast<double>(s.parameters)) << ")\n"
      << "  FLOPs per step        " << format_si(s.flops, "FLOP") << " (forward "
      << format_si(fs.flops, "FLOP") << ")\n"
      << "  parameter bytes       " << format_bytes(static_cast<double>(s.parameter_bytes)) << "\n"
      << "  optimizer state       " << format_bytes(static_cast<double>(s.state_bytes)) << "\n"
      << "  input bytes           " << format_bytes(static_cast<double>(s.input_bytes)) << "\n"
      << "  peak activations      " << format_bytes(static_cast<double>(s.peak_activation_bytes))
      << " (live intermediates in program order, one device)\n"
      << "  built in              " << format_seconds(build_s) << "\n"
      << "ops by kind:\n";
  for (const auto& [op, count] : s.ops_by_kind)
    out << "  " << op << std::string(op.size() < 20 ? 20 - op.size() : 1, ' ')
        << format_count(count) << "\n";
  return kExitOk;
}

}  // namespace alpa
