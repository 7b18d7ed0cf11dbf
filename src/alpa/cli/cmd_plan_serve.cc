// alpa plan-serve: how a decoder is split for serving on a cluster (serve_plan/inference_plan.h),
// every tensor x pipeline candidate with its predicted memory, latency and throughput.
#include <CLI/CLI.hpp>

#include <cstdio>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/serve_plan/inference_plan.h"

namespace alpa {

CLI::App* add_plan_serve_command(CLI::App& app, PlanServeFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "plan-serve",
      "Plan serving a decoder on a cluster: every tensor-parallel (inside a host) x pipeline "
      "(across) split of the devices with its predicted memory per device, KV-cache capacity, "
      "time to first token, time per output token and throughput, and the split the objective "
      "chooses. Nothing is loaded or run; the model is its shape.\n"
      "Examples: alpa plan-serve --model opt-175b --cluster p4de.24xlarge --gpus 8\n"
      "          alpa plan-serve --model ./gpt2 --cluster local --gpus 1 --dtype f32");
  cmd->add_option(
         "--model", f.model,
         "A model directory (its config.json) or a named shape: " +
             [] {
               std::string s;
               for (const std::string& n : serve::decoder_preset_names())
                 s += (s.empty() ? "" : ", ") + n;
               return s;
             }())
      ->required();
  cmd->add_option("--cluster", f.cluster, "Cluster preset or cluster JSON file")
      ->capture_default_str();
  cmd->add_option("--gpus", f.gpus, "Devices to serve on (a multiple of a host's devices)")
      ->check(CLI::Range(1, 1 << 16))
      ->capture_default_str();
  cmd->add_option("--objective", f.objective,
                  "latency: the least time per output token; throughput: the most tokens/s")
      ->check(CLI::IsMember({"latency", "throughput"}))
      ->capture_default_str();
  cmd->add_option("--dtype", f.dtype, "Weights, activations and KV cache")
      ->check(CLI::IsMember({"f16", "bf16", "f32"}))
      ->capture_default_str();
  cmd->add_option("--prompt-len", f.prompt_len, "Prompt tokens per sequence")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--output-len", f.output_len, "Generated tokens per sequence")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24))
      ->capture_default_str();
  cmd->add_option("--batch", f.batch,
                  "Sequences generated together for the latency figures (throughput uses the "
                  "largest batch the KV cache admits, up to --max-batch)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-batch", f.max_batch, "The most sequences in flight for throughput")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--rate", f.rate,
                  "Requests/s (of --output-len tokens each) a split must sustain; the objective "
                  "chooses among those that do (0: no requirement)")
      ->check(CLI::Range(0.0, 1e9))
      ->capture_default_str();
  cmd->add_flag("--json", f.json, "Print one JSON object instead of text");
  return cmd;
}

namespace {

std::string gb(double bytes) {
  return format_fixed(bytes / 1e9, 1) + " GB";
}

nlohmann::ordered_json candidate_json(const serve::InferenceCandidate& c) {
  nlohmann::ordered_json j;
  j["tp"] = c.tp;
  j["pp"] = c.pp;
  j["layers_per_stage"] = c.layers_per_stage;
  j["fits"] = c.fits;
  if (!c.fits) j["why_not"] = c.why_not;
  j["memory"] = {{"weights_bytes", c.memory.weights}, {"workspace_bytes", c.memory.workspace},
                 {"needed_bytes", c.memory_needed},   {"capacity_bytes", c.memory_capacity},
                 {"kv_free_bytes", c.memory.kv_free}, {"kv_blocks", c.memory.kv_blocks},
                 {"kv_tokens", c.memory.kv_tokens},   {"kv_sequences", c.memory.kv_sequences}};
  j["prefill_s"] = c.prefill_s;
  j["per_token_s"] = c.per_token_s;
  j["tokens_per_s"] = c.tokens_per_s;
  j["throughput_batch"] = c.throughput_batch;
  j["max_requests_per_s"] = c.max_rate;
  j["sustains_rate"] = c.sustains_rate;
  return j;
}

nlohmann::ordered_json plan_json(const serve::InferencePlan& p) {
  nlohmann::ordered_json j;
  j["model"] = p.model;
  j["family"] = serve::family_name(p.config.family);
  j["parameters"] = serve::decoder_parameters(p.config);
  j["cluster"] = p.cluster.name;
  j["device"] = p.cluster.device.name;
  j["hosts"] = p.cluster.hosts;
  j["devices"] = p.devices;
  j["objective"] = serve::objective_name(p.objective);
  j["workload"] = {{"dtype", dtype_name(p.workload.dtype)}, {"prompt_len", p.workload.prompt_len},
                   {"output_len", p.workload.output_len},   {"batch", p.workload.batch},
                   {"max_batch", p.workload.max_batch},     {"rate", p.workload.rate}};
  j["candidates"] = nlohmann::ordered_json::array();
  for (const serve::InferenceCandidate& c : p.candidates)
    j["candidates"].push_back(candidate_json(c));
  j["skipped"] = p.skipped;
  j["chosen"] = p.chosen >= 0 ? nlohmann::ordered_json(p.chosen) : nlohmann::ordered_json();
  j["reason"] = p.reason;
  return j;
}

void print_plan(const serve::InferencePlan& p, std::ostream& out) {
  const serve::Workload& w = p.workload;
  out << "model: " << p.model << " (" << serve::family_name(p.config.family) << ", "
      << format_count_short(static_cast<double>(serve::decoder_parameters(p.config)))
      << " parameters, " << p.config.layers << " layers, hidden " << p.config.hidden << ", "
      << p.config.heads << " heads), " << dtype_name(w.dtype) << "\n"
      << "cluster: " << p.cluster.name << ", " << p.cluster.hosts << " host"
      << (p.cluster.hosts == 1 ? "" : "s") << " x " << p.cluster.devices_per_host << " "
      << p.cluster.device.name << " (" << gb(p.cluster.device.memory_bytes) << " each)\n"
      << "workload: prompt " << w.prompt_len << " tokens, output " << w.output_len
      << " tokens; latency at batch " << w.batch << ", throughput at the largest batch the KV "
      << "cache admits (at most " << w.max_batch << ")";
  if (w.rate > 0) out << "; " << format_fixed(w.rate, 1) << " requests/s to sustain";
  out << "\n\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-3s %3s %3s %11s %11s %10s %8s %10s %9s %9s %5s %8s  %s\n", "",
                "tp", "pp", "weights/dev", "needed/dev", "KV tokens", "KV seqs", "prefill",
                "ms/token", "tokens/s", "batch", "req/s", "fits");
  out << line;
  for (size_t i = 0; i < p.candidates.size(); ++i) {
    const serve::InferenceCandidate& c = p.candidates[i];
    const char* fits = !c.fits ? "no" : !c.sustains_rate ? "yes, below the rate" : "yes";
    std::snprintf(
        line, sizeof line,
        "%-3s %3d %3d %11s %11s %10lld %8lld %7.1f ms %9.2f %9.1f %5lld %8.2f  %s\n",
        static_cast<int>(i) == p.chosen ? "=>" : "", c.tp, c.pp, gb(c.memory.weights).c_str(),
        gb(c.memory_needed).c_str(), static_cast<long long>(c.memory.kv_tokens),
        static_cast<long long>(c.memory.kv_sequences), c.prefill_s * 1e3, c.per_token_s * 1e3,
        c.tokens_per_s, static_cast<long long>(c.throughput_batch), c.max_rate, fits);
    out << line;
  }
  for (const serve::InferenceCandidate& c : p.candidates)
    if (!c.fits) out << "  tp " << c.tp << " x pp " << c.pp << ": " << c.why_not << "\n";
  for (const std::string& s : p.skipped) out << "  not formed: " << s << "\n";
  out << "\n";
  if (p.chosen >= 0) {
    const serve::InferenceCandidate& c = p.candidates[p.chosen];
    out << "chosen: tp " << c.tp << " x pp " << c.pp << " — " << p.reason << "\n";
  }
}

}  // namespace

int run_plan_serve(const PlanServeFlags& f, std::ostream& out, std::ostream& err) {
  Result<serve::DecoderConfig> config = serve::load_decoder_shape(f.model);
  if (!config.ok()) return report_error(config.status(), f.json, out, err);
  Result<Cluster> cluster = load_cluster(f.cluster);
  if (!cluster.ok()) return report_error(cluster.status(), f.json, out, err);
  Result<serve::Objective> objective = serve::parse_objective(f.objective);
  if (!objective.ok()) return report_error(objective.status(), f.json, out, err);
  std::optional<DType> dtype = parse_dtype(f.dtype);
  if (!dtype || !is_float(*dtype))
    return report_error(
        invalid_argument(cat("--dtype ", f.dtype, " is not a float type"), "use f16, bf16 or f32"),
        f.json, out, err);
  serve::Workload w;
  w.prompt_len = f.prompt_len;
  w.output_len = f.output_len;
  w.batch = f.batch;
  w.max_batch = std::max(f.max_batch, f.batch);
  w.dtype = *dtype;
  w.rate = f.rate;
  Result<serve::InferencePlan> plan =
      serve::enumerate_inference(*config, *cluster, f.gpus, *objective, w);
  if (!plan.ok()) return report_error(plan.status(), f.json, out, err);
  plan->model = f.model;
  if (f.json) {
    out << plan_json(*plan).dump(2) << "\n";
  } else {
    print_plan(*plan, out);
  }
  if (plan->chosen >= 0) return kExitOk;
  // Nothing fits: the error (with a hint of what would hold it), as plan_inference words it.
  Result<serve::InferencePlan> strict =
      serve::plan_inference(*config, *cluster, f.gpus, *objective, w);
  if (f.json) {
    err << "error: " << strict.status().message() << "\n";
    if (!strict.status().hint().empty()) err << "hint: " << strict.status().hint() << "\n";
    return kExitUserError;
  }
  return report_error(strict.status(), false, out, err);
}

}  // namespace alpa
