// alpa generate: one prompt through the serving engine, the completion printed.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/serve_commands.h"
#include "alpa/serve/api.h"
#include "alpa/serve/engine.h"
#include "alpa/serve_plan/inference_plan.h"

namespace alpa {

void add_serve_parallel_options(CLI::App* cmd, ServeParallelFlags& p) {
  cmd->add_option("--mesh", p.mesh,
                  "Tensor parallelism: 1xN splits every layer's heads, KV heads, MLP and "
                  "vocabulary over N devices (threads), e.g. 1x2");
  cmd->add_option("--pipeline", p.pipeline,
                  "Pipeline parallelism: S stages of consecutive layers, one device each (with "
                  "--mesh 1xN: N devices per stage)")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  cmd->add_option("--devices", p.devices,
                  "Instead of --mesh/--pipeline: N devices split as the inference planner "
                  "(alpa plan-serve, on the local preset, f32) chooses for --objective")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--objective", p.objective, "With --devices: latency or throughput")
      ->check(CLI::IsMember({"latency", "throughput"}))
      ->capture_default_str();
}

Result<serve::ParallelShape> serve_parallel_shape(const ServeParallelFlags& p,
                                                  const serve::DecoderConfig& config) {
  serve::ParallelShape shape;
  shape.stages = p.pipeline;
  if (p.devices > 0) {
    if (!p.mesh.empty() || p.pipeline != 1)
      return invalid_argument("--devices cannot be combined with --mesh or --pipeline",
                              "give either --devices N [--objective latency|throughput] or "
                              "--mesh 1xN / --pipeline S");
    // The inference planner's choice among the splits of N devices of this machine (f32).
    ALPA_ASSIGN_OR_RETURN(serve::Objective objective, serve::parse_objective(p.objective));
    ALPA_ASSIGN_OR_RETURN(Cluster local, cluster_preset("local"));
    ALPA_ASSIGN_OR_RETURN(Cluster cluster, with_devices(local, p.devices));
    serve::Workload w;
    w.dtype = DType::kF32;
    // The planner's default 512 + 128 positions, within the model's context.
    w.prompt_len = std::max<int64_t>(1, std::min<int64_t>(512, config.max_positions * 3 / 4));
    w.output_len =
        std::max<int64_t>(1, std::min<int64_t>(128, config.max_positions - w.prompt_len));
    ALPA_ASSIGN_OR_RETURN(serve::InferencePlan plan,
                          serve::plan_inference(config, cluster, p.devices, objective, w));
    const serve::InferenceCandidate& c = plan.candidates[static_cast<size_t>(plan.chosen)];
    shape.tensor = c.tp;
    shape.stages = c.pp;
    return shape;
  }
  if (p.mesh.empty()) return shape;
  const size_t x = p.mesh.find('x');
  auto number = [](const std::string& t) -> int {
    if (t.empty() || t.size() > 4 || t.find_first_not_of("0123456789") != std::string::npos)
      return -1;
    return std::stoi(t);
  };
  const int rows = x == std::string::npos ? -1 : number(p.mesh.substr(0, x));
  const int cols = x == std::string::npos ? -1 : number(p.mesh.substr(x + 1));
  if (rows != 1 || cols < 1)
    return invalid_argument(
        cat("--mesh ", p.mesh, ": serving takes a 1xN mesh (tensor parallel over N devices)"),
        "use --mesh 1xN, and --pipeline S for stages");
  shape.tensor = cols;
  return shape;
}

CLI::App* add_generate_command(CLI::App& app, GenerateFlags& g) {
  CLI::App* cmd = app.add_subcommand(
      "generate",
      "Complete a prompt with a decoder checkpoint in Hugging Face layout (GPT-2, OPT, LLaMA: "
      "config.json, model.safetensors or shards, tokenizer files) on this machine.\n"
      "Example: alpa generate --model ./gpt2 --prompt \"The capital of France is\" "
      "--max-tokens 20 --temperature 0");
  cmd->add_option("--model", g.model, "Model directory")->required();
  cmd->add_option("--prompt", g.prompt, "Prompt text")->required();
  cmd->add_flag("--chat", g.chat, "Send the prompt as a user message in the chat format");
  cmd->add_option("--max-tokens", g.max_tokens, "Tokens to generate at most")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", g.temperature, "0: greedy")
      ->check(CLI::Range(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", g.top_k, "Sample from the k most likely tokens (0: all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  cmd->add_option("--top-p", g.top_p, "Nucleus sampling threshold")->check(CLI::Range(1e-9, 1.0));
  cmd->add_option("--seed", g.seed, "Sampling seed")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 62))
      ->capture_default_str();
  cmd->add_option("--stop", g.stop, "Stop before this text (repeatable)");
  cmd->add_option("--logprobs", g.logprobs, "With --json: the n most likely tokens per step")
      ->check(CLI::Range(int64_t{0}, int64_t{20}));
  cmd->add_flag("--ignore-eos", g.ignore_eos, "Keep generating after end-of-sequence");
  cmd->add_option("--threads", g.threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_flag("--json", g.json, "Print one JSON object instead of text");
  add_serve_parallel_options(cmd, g.parallel);
  return cmd;
}

int run_generate(const GenerateFlags& g, std::ostream& out, std::ostream& err) {
  using namespace serve;
  const auto t0 = std::chrono::steady_clock::now();
  Result<LoadedModel> model = load_model_dir(g.model, ModelWeights::kOnDemand);
  if (!model.ok()) return report_error(model.status(), g.json, out, err);
  Result<ParallelShape> shape = serve_parallel_shape(g.parallel, model->config);
  if (!shape.ok()) return report_error(shape.status(), g.json, out, err);
  Result<std::vector<int32_t>> prompt =
      g.chat ? model->encode_chat({{"user", g.prompt}}) : model->encode(g.prompt);
  if (!prompt.ok()) return report_error(prompt.status(), g.json, out, err);
  SamplingParams p;
  p.max_tokens = g.max_tokens;
  p.temperature = g.temperature;
  p.top_k = g.top_k;
  p.top_p = g.top_p;
  p.seed = static_cast<uint64_t>(g.seed);
  p.has_seed = true;
  p.stop = g.stop;
  p.logprobs = g.logprobs;
  p.ignore_eos = g.ignore_eos;
  EngineOptions o;
  o.threads = g.threads;
  o.num_blocks = 0;
  o.kv_memory_mb = 64;
  o.max_step_tokens = 512;
  o.parallel = *shape;
  Result<std::unique_ptr<Engine>> made = Engine::create(*model, o);
  if (!made.ok()) return report_error(made.status(), g.json, out, err);
  Engine& engine = **made;
  const auto t1 = std::chrono::steady_clock::now();
  Result<std::shared_ptr<Request>> r = engine.submit(*prompt, p);
  if (!r.ok()) return report_error(r.status(), g.json, out, err);
  while (engine.step()) {
  }
  const auto t2 = std::chrono::steady_clock::now();
  const Request& done = **r;
  if (done.finish_reason() == "error")
    return report_error(failed_precondition(done.error()), g.json, out, err);
  const double load_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  const size_t n = done.tokens().size();
  if (g.json) {
    ApiRequest api;
    api.logprobs = g.logprobs >= 0;
    nlohmann::json j = response_body(api, done, *model, "generate", 0);
    j["timing"] = {{"load_seconds", load_s}, {"generate_seconds", gen_s}};
    j["parallel"] = engine.parallel_description();
    out << dump_json(j) << "\n";
    return kExitOk;
  }
  out << done.text() << "\n";
  err << "[" << model->name << ": " << prompt->size() << " prompt tokens, " << n << " generated ("
      << done.finish_reason() << ") in " << gen_s << " s, "
      << (gen_s > 0 ? static_cast<double>(n) / gen_s : 0) << " tokens/s; loaded in " << load_s
      << " s; " << engine.parallel_description() << "]\n";
  return kExitOk;
}

}  // namespace alpa
