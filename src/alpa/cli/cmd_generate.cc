// alpa generate: one prompt through the serving engine, the completion printed.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/serve_commands.h"
#include "alpa/infer/compiled_decoder.h"
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
  CLI::Option* text = cmd->add_option("--prompt", g.prompt, "Prompt text");
  CLI::Option* ids =
      cmd->add_option("--prompt-ids", g.prompt_ids,
                      "Instead of --prompt: the prompt as token ids, comma-separated (a model "
                      "without a tokenizer; the completion is then printed as ids too)")
          ->delimiter(',');
  text->excludes(ids);
  cmd->callback([text, ids] {
    if (text->count() == 0 && ids->count() == 0)
      throw CLI::RequiredError("--prompt or --prompt-ids");
  });
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
  cmd->add_flag("--compiled", g.compiled,
                "Run through the compile driver: the prefill and decode steps as IR graphs, "
                "planned for --mesh (any RxC; with --pipeline S, each of S stages of clustered "
                "layers on such a mesh) by the intra-op ILP with the weights and KV cache in its "
                "memory model, lowered and run by the training runtime; greedy decoding only. "
                "With --devices N --objective, each split of N devices is compiled and "
                "simulated and the objective's best runs. Prints the plan's split and "
                "predictions");
  cmd->add_option("--context", g.context,
                  "With --compiled: KV cache positions (0: prompt + max tokens)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 20));
  cmd->add_option("--chunk", g.chunk, "With --compiled: prompt tokens per prefill step")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 16))
      ->capture_default_str();
  cmd->add_option("--memory-mb", g.memory_mb,
                  "With --compiled: memory per device (MB) the plan must fit, weights and KV "
                  "cache included (0: the local preset's)")
      ->check(CLI::Range(0.0, 1e9));
  cmd->add_option("--backend", g.backend,
                  "With --compiled: threads (one process, a thread per device) or mpi (one "
                  "device per process: mpirun -np N alpa generate --compiled --backend mpi "
                  "--mesh ... with N = stages x mesh devices; process 0 prints)")
      ->check(CLI::IsMember({"threads", "mpi"}))
      ->capture_default_str();
  return cmd;
}

namespace {

// "5 17 3": what a model without a tokenizer prints.
std::string ids_text(const std::vector<int32_t>& ids) {
  std::string text;
  for (int32_t t : ids) text += cat(text.empty() ? "" : " ", t);
  return text;
}

Result<std::vector<int32_t>> prompt_from_ids(const std::vector<int64_t>& ids, int64_t vocab) {
  std::vector<int32_t> out;
  for (int64_t id : ids) {
    if (id < 0 || id >= vocab)
      return invalid_argument(
          cat("--prompt-ids: token id ", id, " is outside the vocabulary [0, ", vocab, ")"));
    out.push_back(static_cast<int32_t>(id));
  }
  return out;
}

// alpa generate --compiled: greedy decoding through compiled prefill and decode programs.
int run_generate_compiled(const GenerateFlags& g, const serve::LoadedModel& model,
                          const std::vector<int32_t>& prompt, std::ostream& out,
                          std::ostream& err) {
  const bool sampling =
      g.temperature != 0 || g.top_k != 0 || g.top_p != 1.0 || g.logprobs >= 0 || !g.stop.empty();
  if (sampling)
    return report_error(
        invalid_argument("--compiled decodes greedily: --temperature, --top-k, --top-p, --stop "
                         "and --logprobs are the engine's",
                         "give --temperature 0 and none of the others, or drop --compiled"),
        g.json, out, err);
  if (g.parallel.devices > 0 && (!g.parallel.mesh.empty() || g.parallel.pipeline != 1))
    return report_error(invalid_argument("--devices cannot be combined with --mesh or --pipeline",
                                         "give either --devices N [--objective latency|"
                                         "throughput] or --mesh RxC / --pipeline S"),
                        g.json, out, err);
  infer::CompiledDecoderOptions o;
  o.stages = g.parallel.pipeline;
  MpiJob job;
  MpiWorld* world = nullptr;
  if (g.backend == "mpi") {
    Result<MpiJob> started =
        start_mpi_job(120, "mpirun -np N alpa generate --compiled --backend mpi --mesh 1xN ...");
    if (!started.ok()) return report_error(started.status(), g.json, out, err);
    job = std::move(started).value();
    world = job.world.get();
    o.world = world;
    // As alpa serve: without a split, the processes form a 1xN mesh.
    if (g.parallel.mesh.empty() && g.parallel.pipeline == 1) o.mesh = {1, world->size()};
  }
  // Under MPI only process 0 prints.
  const bool printing = world == nullptr || world->process_index() == 0;
  std::ostringstream quiet;
  std::ostream& shown_out = printing ? out : quiet;
  std::ostream& shown_err = printing ? err : quiet;
  if (!g.parallel.mesh.empty()) {
    Result<MeshShape> mesh = parse_mesh_shape(g.parallel.mesh);
    if (!mesh.ok()) return report_error(mesh.status(), g.json, shown_out, shown_err);
    o.mesh = *mesh;
  }
  const int64_t needed = static_cast<int64_t>(prompt.size()) + g.max_tokens;
  o.context = g.context > 0 ? g.context : std::min(needed, model.config.max_positions);
  o.chunk = std::min<int64_t>(g.chunk, std::max<int64_t>(1, static_cast<int64_t>(prompt.size())));
  o.memory_budget_bytes = g.memory_mb * 1e6;
  nlohmann::json split = nullptr;
  if (g.parallel.devices > 0) {
    // The objective's choice among the splits of N devices, each compiled and simulated.
    Result<infer::SplitChoice> choice =
        infer::choose_split(model.config, infer::checkpoint_prefix(model.config, *model.weights),
                            g.parallel.devices, g.parallel.objective == "throughput", o);
    if (!choice.ok()) return report_error(choice.status(), g.json, shown_out, shown_err);
    const infer::SplitCandidate& c = choice->candidates[static_cast<size_t>(choice->chosen)];
    o.stages = c.stages;
    o.mesh = c.mesh;
    split = {{"objective", g.parallel.objective}, {"reason", choice->reason}};
    for (const infer::SplitCandidate& k : choice->candidates) {
      split["candidates"].push_back({{"stages", k.stages},
                                     {"mesh", cat(k.mesh.n0, "x", k.mesh.n1)},
                                     {"batch", k.batch},
                                     {"step_seconds", k.step_s},
                                     {"tokens_per_second", k.tokens_per_s},
                                     {"peak_bytes", k.peak_bytes},
                                     {"why_not", k.why_not}});
      if (!g.json)
        shown_err << "split " << k.stages << " stage(s) of " << k.mesh.n0 << "x" << k.mesh.n1
                  << ": "
                  << (k.batch > 0 ? cat(k.step_s * 1e3, " ms per decode step at ", k.batch,
                                        " row(s), ", k.tokens_per_s, " tokens/s (simulated)")
                                  : k.why_not)
                  << (&k == &c ? "  <- chosen" : "") << "\n";
    }
  }
  // --threads, else the cores shared by this process's devices.
  const int local_devices = world != nullptr ? 1 : o.stages * static_cast<int>(o.mesh.size());
  o.threads_per_device =
      g.threads > 0
          ? g.threads
          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / local_devices);
  const auto t0 = std::chrono::steady_clock::now();
  Result<std::unique_ptr<infer::CompiledDecoder>> made =
      infer::CompiledDecoder::create(model.config, *model.weights, o);
  if (!made.ok()) return report_error(made.status(), g.json, shown_out, shown_err);
  infer::CompiledDecoder& d = **made;
  const auto t1 = std::chrono::steady_clock::now();
  const int64_t room = o.context + 1 - static_cast<int64_t>(prompt.size());
  const int64_t wanted = std::clamp<int64_t>(room, 0, g.max_tokens);
  Result<std::vector<int32_t>> tokens =
      d.generate(prompt, wanted, g.ignore_eos ? -1 : model.eos_id);
  if (!tokens.ok()) return report_error(tokens.status(), g.json, shown_out, shown_err);
  const auto t2 = std::chrono::steady_clock::now();
  const std::string reason =
      !tokens->empty() && !g.ignore_eos && tokens->back() == model.eos_id ? "stop" : "length";
  std::vector<int32_t> shown = *tokens;
  if (reason == "stop") shown.pop_back();
  std::string text = ids_text(shown);
  if (model.tokenizer) {
    Result<std::string> decoded = model.decode(shown);
    if (!decoded.ok()) return report_error(decoded.status(), g.json, shown_out, shown_err);
    text = *decoded;
  }
  const double compile_s = std::chrono::duration<double>(t1 - t0).count();
  const double gen_s = std::chrono::duration<double>(t2 - t1).count();
  const nlohmann::json plan = infer::describe(d);
  if (g.json) {
    nlohmann::json j = {{"text", text},
                        {"tokens", shown},
                        {"finish_reason", reason},
                        {"prompt_tokens", prompt.size()},
                        {"compiled", plan},
                        {"split", split},
                        {"timing",
                         {{"load_seconds", compile_s},
                          {"generate_seconds", gen_s},
                          {"prefill_seconds", d.last_prefill_s()},
                          {"decode_seconds", d.last_decode_s()}}}};
    shown_out << serve::dump_json(j) << "\n";
    return kExitOk;
  }
  shown_out << text << "\n";
  shown_err << "[" << model.name << ": " << prompt.size() << " prompt tokens, " << shown.size()
            << " generated (" << reason << ") in " << gen_s << " s; compiled and loaded in "
            << compile_s << " s]\n"
            << infer::describe_text(d);
  return kExitOk;
}

}  // namespace

int run_generate(const GenerateFlags& g, std::ostream& out, std::ostream& err) {
  using namespace serve;
  const auto t0 = std::chrono::steady_clock::now();
  Result<LoadedModel> model = load_model_dir(g.model, ModelWeights::kOnDemand);
  if (!model.ok()) return report_error(model.status(), g.json, out, err);
  Result<std::vector<int32_t>> prompt = !g.prompt_ids.empty()
                                            ? prompt_from_ids(g.prompt_ids, model->config.vocab)
                                        : g.chat ? model->encode_chat({{"user", g.prompt}})
                                                 : model->encode(g.prompt);
  if (!prompt.ok()) return report_error(prompt.status(), g.json, out, err);
  if (g.compiled) return run_generate_compiled(g, *model, *prompt, out, err);
  if (g.backend != "threads")
    return report_error(invalid_argument("alpa generate --backend mpi runs --compiled only",
                                         "add --compiled, or serve with `mpirun -np N alpa "
                                         "serve --backend mpi`"),
                        g.json, out, err);
  Result<ParallelShape> shape = serve_parallel_shape(g.parallel, model->config);
  if (!shape.ok()) return report_error(shape.status(), g.json, out, err);
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
    j["tokens"] = done.tokens();
    out << dump_json(j) << "\n";
    return kExitOk;
  }
  out << (model->tokenizer ? done.text() : ids_text(done.tokens())) << "\n";
  err << "[" << model->name << ": " << prompt->size() << " prompt tokens, " << n << " generated ("
      << done.finish_reason() << ") in " << gen_s << " s, "
      << (gen_s > 0 ? static_cast<double>(n) / gen_s : 0) << " tokens/s; loaded in " << load_s
      << " s; " << engine.parallel_description() << "]\n";
  return kExitOk;
}

}  // namespace alpa
