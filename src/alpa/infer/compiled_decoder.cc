#include "alpa/infer/compiled_decoder.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <tuple>

#include "alpa/program/io.h"

namespace alpa::infer {
namespace {

int param_index(const Program& p, const std::string& name) {
  for (size_t i = 0; i < p.params.size(); ++i)
    if (p.params[i].name == name) return static_cast<int>(i);
  return -1;
}

// One step compiled for a mesh (one stage) or for `stages` stages of meshes.
Result<Compiled> compile_decoder_step(TrainStep step, const Cluster& cluster,
                                      const CompiledDecoderOptions& options) {
  CompileOptions co;
  co.mesh = options.mesh;
  co.sharding.memory_budget_bytes = options.memory_budget_bytes;
  co.plan_one_device = options.memory_budget_bytes > 0;  // one device checks the budget too
  if (options.stages == 1) return compile_step(std::move(step), cluster, co);
  co.pipeline = true;
  co.devices = options.stages * static_cast<int>(options.mesh.size());
  const auto t0 = std::chrono::steady_clock::now();
  PipelinePlan plan;
  plan.micro_batches = 1;
  plan.layers.num_layers = options.stages;
  ALPA_ASSIGN_OR_RETURN(plan.layers, plan_layers(step, plan));
  for (int s = 0; s < options.stages; ++s) {
    PlannedStage st;
    st.first_layer = st.last_layer = s;
    st.submesh = {1, options.mesh.size()};
    st.logical.shape = options.mesh;
    st.first_device = s * static_cast<int>(options.mesh.size());
    plan.stages.push_back(st);
  }
  ALPA_ASSIGN_OR_RETURN(Compiled c, compile_stages(std::move(step), std::move(plan), cluster, co));
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return c;
}

// The whole values of the parameters `runner` needs (ProgramRunner::needs_parameter): weights
// from the checkpoint (converted to f32) or the rotary tables, zeros for state; empty tensors
// for data inputs and for what its devices read from another runner or another process holds.
Result<std::vector<Tensor>> parameter_values(const ProgramRunner& runner,
                                             const serve::DecoderConfig& config, int64_t context,
                                             const SafetensorsSet& weights) {
  const Program& program = runner.program();
  std::vector<Tensor> values;
  for (size_t i = 0; i < program.params.size(); ++i) {
    const StepParam& p = program.params[i];
    if (p.attrs.role == ParamRole::kInput || !runner.needs_parameter(static_cast<int>(i))) {
      values.emplace_back();
      continue;
    }
    if (p.attrs.role == ParamRole::kState) {
      values.emplace_back(p.type);
      continue;
    }
    std::vector<float> v;
    // A tied head of its own (a pipeline's last stage) reads the embedding's tensor.
    const std::string name = p.name == "lm_head.weight" && !weights.contains(p.name)
                                 ? embedding_name(config, checkpoint_prefix(config, weights))
                                 : p.name;
    if (p.name == "rope.cos" || p.name == "rope.sin") {
      v = rope_table(config, context, p.name == "rope.sin");
    } else {
      const SafetensorsEntry* e = weights.find(name);
      if (e == nullptr)
        return not_found(cat(weights.source(), ": tensor \"", name, "\" is missing"),
                         "is the directory a Hugging Face checkpoint of the family "
                         "config.json names?");
      if (e->shape != p.type.shape)
        return invalid_argument(cat(weights.file_of(name), ": tensor \"", name, "\" has shape ",
                                    shape_to_string(e->shape), ", config.json implies ",
                                    shape_to_string(p.type.shape)));
      ALPA_ASSIGN_OR_RETURN(v, weights.values(name));
    }
    values.push_back(Tensor::from_values(p.type, std::move(v)));
  }
  return values;
}

// Whether programs `a` and `b` hold owned value `name` alike (held_alike): what
// ProgramRunner::share_values_of shares, decided from the programs alone, so every process
// agrees.
bool same_block(const Program& a, const Program& b, const std::string& name) {
  for (const Stage& sa : a.stages)
    for (const StageValue& va : sa.values)
      if (va.kind == ValueKind::kOwned && va.name == name)
        for (const Stage& sb : b.stages)
          for (const StageValue& vb : sb.values)
            if (held_alike(sa, va, sb, vb)) return true;
  return false;
}

// Index of the largest value of `row` (the lowest on ties).
int32_t argmax(const float* row, int64_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

}  // namespace

Result<std::unique_ptr<CompiledDecoder>> CompiledDecoder::create(
    const serve::DecoderConfig& config, const SafetensorsSet& weights,
    const CompiledDecoderOptions& options) {
  if (options.chunk < 1 || options.batch < 1)
    return invalid_argument(cat("a prefill chunk and a decode batch of at least 1, got ",
                                options.chunk, " and ", options.batch));
  if (options.stages < 1 || options.stages > config.layers)
    return invalid_argument(
        cat(options.stages, " pipeline stages for a model of ", config.layers, " layers"),
        "give 1 stage or more, at most one per layer");
  std::unique_ptr<CompiledDecoder> d(new CompiledDecoder());
  d->config_ = config;
  d->options_ = options;
  d->context_ = options.context > 0 ? options.context : config.max_positions;
  const std::string prefix = checkpoint_prefix(config, weights);
  const bool separate_head = options.stages > 1;
  ALPA_ASSIGN_OR_RETURN(
      TrainStep prefill,
      decoder_step(config, {1, options.chunk, d->context_, separate_head}, prefix));
  ALPA_ASSIGN_OR_RETURN(
      TrainStep decode,
      decoder_step(config, {options.batch, 1, d->context_, separate_head}, prefix));
  ALPA_ASSIGN_OR_RETURN(
      const Cluster cluster,
      sized_cluster(options.cluster, options.stages * static_cast<int>(options.mesh.size())));
  for (auto [step, compiled, what] : {std::tuple{&prefill, &d->prefill_, "prefill"},
                                      std::tuple{&decode, &d->decode_, "decode"}}) {
    Result<Compiled> c = compile_decoder_step(std::move(*step), cluster, options);
    if (!c.ok()) return c.status().with_context(cat("compiling the ", what, " step"));
    *compiled = std::move(*c);
  }
  World* world = options.world;
  if (world != nullptr && world->size() != d->prefill_.program.num_devices)
    return invalid_argument(
        cat("the split needs ", d->prefill_.program.num_devices, " device",
            d->prefill_.program.num_devices == 1 ? "" : "s", ", the job has ", world->size()),
        cat("run ", d->prefill_.program.num_devices,
            " processes (mpirun -np N), or change --mesh / --pipeline"));
  RunOptions ro;
  ro.threads_per_device = options.threads_per_device;
  for (auto [compiled, runner] :
       {std::pair{&d->prefill_, &d->prefill_runner_}, std::pair{&d->decode_, &d->decode_runner_}}) {
    if (world != nullptr && world->num_processes() > 1) {
      // Every process compiled alike; process 0's programs are the ones run.
      std::string text = program_to_json(compiled->program);
      const std::string mine = text;
      ALPA_RETURN_IF_ERROR(world->broadcast_bytes(text, 0));
      if (text != mine)
        return internal_error(
            cat("process ", world->process_index(), " compiled another program than process 0"));
    }
    *runner = std::make_unique<ProgramRunner>(compiled->program, ro, world);
    // The decode runner uses the prefill runner's weights, and its cache when the shapes agree
    // (one decode row), where their layouts agree.
    if (runner == &d->decode_runner_)
      d->shared_blocks_ = (*runner)->share_values_of(*d->prefill_runner_);
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> values,
                          parameter_values(**runner, config, d->context_, weights));
    ALPA_RETURN_IF_ERROR((*runner)->load_parameters(values));
  }
  return d;
}

Result<Tensor> CompiledDecoder::run(ProgramRunner& runner, const std::vector<int32_t>& tokens,
                                    int64_t rows, int64_t per_row, int64_t position) {
  const Program& p = runner.program();
  std::vector<Tensor> inputs(p.params.size());
  std::vector<float> ids(static_cast<size_t>(rows * per_row), 0.0f);
  for (size_t i = 0; i < tokens.size() && i < ids.size(); ++i)
    ids[i] = static_cast<float>(tokens[i]);
  inputs[static_cast<size_t>(param_index(p, "tokens"))] =
      Tensor::from_values({DType::kI32, {rows, per_row}}, std::move(ids));
  inputs[static_cast<size_t>(param_index(p, "positions"))] = Tensor::from_values(
      {DType::kI32, {rows}},
      std::vector<float>(static_cast<size_t>(rows), static_cast<float>(position)));
  ALPA_RETURN_IF_ERROR(runner.run_step(inputs).status());
  return runner.gather_parameter(param_index(p, "logits"));
}

Result<std::vector<float>> CompiledDecoder::prefill(const std::vector<int32_t>& tokens) {
  const int64_t n = static_cast<int64_t>(tokens.size()), V = config_.vocab, T = options_.chunk;
  if (n < 1 || n > context_)
    return invalid_argument(
        cat("a prompt of ", n, " tokens; the compiled cache holds ", context_, " positions"),
        "give a prompt of 1 token or more, or compile with a larger context");
  for (int32_t t : tokens)
    if (t < 0 || t >= V) return invalid_argument(cat("token id ", t, " is outside [0, ", V, ")"));
  std::vector<float> logits;
  for (int64_t s = 0; s < n; s += T) {
    const int64_t m = std::min(T, n - s);
    std::vector<int32_t> chunk(tokens.begin() + s, tokens.begin() + s + m);
    ALPA_ASSIGN_OR_RETURN(Tensor out, run(*prefill_runner_, chunk, 1, T, s));
    if (out.size() > 0) logits.insert(logits.end(), out.data(), out.data() + m * V);
  }
  return logits;
}

Result<std::vector<int32_t>> CompiledDecoder::generate(const std::vector<int32_t>& prompt,
                                                       int64_t max_tokens, int32_t eos) {
  const int64_t n = static_cast<int64_t>(prompt.size()), V = config_.vocab;
  if (max_tokens < 0 || n + max_tokens > context_ + 1)
    return invalid_argument(cat("a prompt of ", n, " tokens and ", max_tokens,
                                " new ones; the compiled cache holds ", context_, " positions"),
                            "ask for fewer tokens, or compile with a larger context");
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  last_prefill_s_ = last_decode_s_ = 0;
  ALPA_ASSIGN_OR_RETURN(std::vector<float> logits, prefill(prompt));
  std::vector<int32_t> out;
  if (max_tokens == 0) return out;
  int32_t first = logits.empty() ? 0 : argmax(logits.data() + (n - 1) * V, V);
  ALPA_ASSIGN_OR_RETURN(first, shared_token(first));
  out.push_back(first);
  const Clock::time_point t1 = Clock::now();
  last_prefill_s_ = std::chrono::duration<double>(t1 - t0).count();
  if (out.back() == eos || max_tokens == 1) return out;
  ALPA_RETURN_IF_ERROR(hand_over_cache());
  const int64_t rows = options_.batch;
  for (int64_t pos = n; static_cast<int64_t>(out.size()) < max_tokens && out.back() != eos; ++pos) {
    ALPA_ASSIGN_OR_RETURN(Tensor step, run(*decode_runner_, {out.back()}, rows, 1, pos));
    ALPA_ASSIGN_OR_RETURN(const int32_t next,
                          shared_token(step.size() > 0 ? argmax(step.data(), V) : 0));
    out.push_back(next);
  }
  last_decode_s_ = std::chrono::duration<double>(Clock::now() - t1).count();
  return out;
}

Result<int32_t> CompiledDecoder::shared_token(int32_t mine) {
  World& world = prefill_runner_->world();
  if (world.num_processes() == 1) return mine;
  std::string bytes(reinterpret_cast<const char*>(&mine), sizeof mine);
  ALPA_RETURN_IF_ERROR(world.broadcast_bytes(bytes, 0));
  if (bytes.size() != sizeof mine) return internal_error("process 0 sent a token of another size");
  int32_t token = 0;
  std::memcpy(&token, bytes.data(), sizeof token);
  return token;
}

Status CompiledDecoder::hand_over_cache() {
  const Program& from = prefill_runner_->program();
  const Program& to = decode_runner_->program();
  World& world = prefill_runner_->world();
  for (size_t i = 0; i < from.params.size(); ++i) {
    if (from.params[i].name.rfind("cache.", 0) != 0) continue;
    const int j = param_index(to, from.params[i].name);
    // A cache both runners share (ProgramRunner::share_values_of) holds the prompt already.
    if (same_block(from, to, from.params[i].name)) continue;
    ALPA_ASSIGN_OR_RETURN(Tensor row, prefill_runner_->gather_parameter(static_cast<int>(i)));
    Tensor rows(to.params[static_cast<size_t>(j)].type);
    // The gathered row is process 0's; every process whose devices own the cache needs it.
    std::string bytes(reinterpret_cast<const char*>(row.data()),
                      static_cast<size_t>(row.size()) * sizeof(float));
    if (world.num_processes() > 1) ALPA_RETURN_IF_ERROR(world.broadcast_bytes(bytes, 0));
    if (bytes.size() > static_cast<size_t>(rows.size()) * sizeof(float))
      return internal_error("a prompt's cache larger than the decode step's");
    std::memcpy(rows.data(), bytes.data(), bytes.size());
    ALPA_RETURN_IF_ERROR(decode_runner_->set_parameter(j, rows));
  }
  return ok_status();
}

Result<SplitChoice> choose_split(const serve::DecoderConfig& config, const std::string& prefix,
                                 int devices, bool throughput,
                                 const CompiledDecoderOptions& options, int64_t max_batch) {
  if (devices < 1) return invalid_argument(cat("a split of ", devices, " devices"));
  const int64_t context = options.context > 0 ? options.context : config.max_positions;
  ALPA_ASSIGN_OR_RETURN(const Cluster cluster, sized_cluster(options.cluster, devices));
  SplitChoice choice;
  for (int stages = 1; stages <= devices; ++stages) {
    if (devices % stages != 0) continue;
    SplitCandidate c;
    c.stages = stages;
    c.mesh = {1, devices / stages};
    if (stages > config.layers) {
      c.why_not = cat(stages, " stages for ", config.layers, " layers");
      choice.candidates.push_back(c);
      continue;
    }
    CompiledDecoderOptions o = options;
    o.stages = stages;
    o.mesh = c.mesh;
    const int64_t first = std::max<int64_t>(1, options.batch);
    for (int64_t b = first; b <= std::max(first, max_batch); b *= 2) {
      Result<TrainStep> step = decoder_step(config, {b, 1, context, stages > 1}, prefix);
      if (!step.ok()) return step.status();
      Result<Compiled> compiled = compile_decoder_step(std::move(*step), cluster, o);
      if (!compiled.ok()) {
        if (compiled.status().code() != StatusCode::kResourceExhausted &&
            compiled.status().code() != StatusCode::kInvalidArgument)
          return compiled.status();
        if (c.batch == 0) c.why_not = compiled.status().message();
        break;
      }
      c.batch = b;
      c.step_s = compiled->sim ? compiled->sim->step_time_s : 0;
      c.tokens_per_s = c.step_s > 0 ? static_cast<double>(b) / c.step_s : 0;
      c.peak_bytes = compiled->sim ? compiled->sim->peak_memory_bytes() : 0;
      if (!throughput) break;
    }
    choice.candidates.push_back(c);
  }
  for (size_t i = 0; i < choice.candidates.size(); ++i) {
    const SplitCandidate& c = choice.candidates[i];
    if (c.batch == 0) continue;
    const int best = choice.chosen;
    const bool better =
        best < 0 || (throughput ? c.tokens_per_s > choice.candidates[best].tokens_per_s
                                : c.step_s < choice.candidates[best].step_s);
    if (better) choice.chosen = static_cast<int>(i);
  }
  if (choice.chosen < 0) {
    std::string why;
    for (const SplitCandidate& c : choice.candidates)
      why += cat("\n  ", c.stages, " stage(s) of ", c.mesh.n0, "x", c.mesh.n1, ": ", c.why_not);
    return resource_exhausted(cat("no split of ", devices, " devices runs the decode step:", why),
                              "use more devices, a shorter --context or a larger --memory-mb");
  }
  const SplitCandidate& c = choice.candidates[static_cast<size_t>(choice.chosen)];
  choice.reason = throughput ? cat("the most tokens/s: ", c.tokens_per_s, " at ", c.batch,
                                   " rows per decode step (simulated)")
                             : cat("the least time per decode step: ", c.step_s * 1e3, " ms at ",
                                   c.batch, " row(s) (simulated)");
  return choice;
}

namespace {

struct StepSummary {
  double weight_bytes = 0, cache_bytes = 0;  // on the fullest stage's devices
  int split = 0, owned = 0;
  nlohmann::json layer0 = nlohmann::json::object();
};

StepSummary summarize(const Compiled& c) {
  StepSummary s;
  for (const Stage& stage : c.program.stages) {
    double weights = 0, cache = 0;
    for (const StageValue& v : stage.values) {
      if (v.kind != ValueKind::kOwned) continue;
      const Shape local = v.layout.local_shape(v.type.shape, stage.mesh.shape);
      const double bytes = static_cast<double>(num_elements(local)) * 4.0;
      const bool is_cache = v.name.rfind("cache.", 0) == 0;
      if (is_cache) cache += bytes;
      if (c.program.params[static_cast<size_t>(v.param)].attrs.role == ParamRole::kWeight)
        weights += bytes;
      ++s.owned;
      if (!v.layout.is_replicated()) ++s.split;
      const bool layer0 = is_cache ? v.name.rfind("cache.0.", 0) == 0
                                   : v.name.find(".0.") != std::string::npos ||
                                         v.name.find("h.0.") != std::string::npos;
      if (layer0) s.layer0[v.name] = v.layout.to_string();
    }
    if (weights + cache > s.weight_bytes + s.cache_bytes) {
      s.weight_bytes = weights;
      s.cache_bytes = cache;
    }
  }
  return s;
}

nlohmann::json step_json(const Compiled& c) {
  const Graph& g = c.step.graph;
  const Shape& tokens = g.type(0).shape;  // the first parameter: tokens (B, T)
  const StepSummary s = summarize(c);
  nlohmann::json j = {
      {"rows", tokens[0]},
      {"tokens", tokens[1]},
      {"stages", c.program.stages.size()},
      {"mesh", cat(c.program.stages[0].mesh.shape.n0, "x", c.program.stages[0].mesh.shape.n1)},
      {"compile_seconds", c.seconds},
      {"weight_bytes_per_device", s.weight_bytes},
      {"kv_cache_bytes_per_device", s.cache_bytes},
      {"owned_values", s.owned},
      {"owned_values_split", s.split},
      {"collectives_per_step", count_collectives(c.program)},
      {"layer0_layouts", s.layer0}};
  if (c.mesh_plan) {
    j["predicted_compute_s"] = c.mesh_plan->compute_s;
    j["predicted_communication_s"] = c.mesh_plan->communication_s;
    j["planned_peak_memory_bytes"] = c.mesh_plan->peak_memory_bytes;
  }
  if (c.sim) {
    j["simulated_step_s"] = c.sim->step_time_s;
    j["simulated_peak_memory_bytes"] = c.sim->peak_memory_bytes();
  }
  nlohmann::json phases = nlohmann::json::object();
  for (const CompilePhase& p : c.phases) phases[p.name] = p.seconds;
  j["phases"] = phases;
  return j;
}

}  // namespace

nlohmann::json describe(const CompiledDecoder& d) {
  return {{"context", d.context()},
          {"decode_blocks_shared_with_prefill", d.shared_weight_blocks()},
          {"prefill", step_json(d.prefill_compiled())},
          {"decode", step_json(d.decode_compiled())}};
}

std::string describe_text(const CompiledDecoder& d) {
  std::string out;
  for (const auto& [name, c] :
       {std::pair<const char*, const Compiled*>{"prefill", &d.prefill_compiled()},
        {"decode", &d.decode_compiled()}}) {
    const nlohmann::json j = step_json(*c);
    const double mb = 1e6;
    out += cat("compiled ", name, ": ", j["rows"].get<int64_t>(), " row(s) x ",
               j["tokens"].get<int64_t>(), " token(s), cache ", d.context(), " positions, ",
               j["stages"].get<int>() > 1 ? cat(j["stages"].get<int>(), " stages of ") : "",
               "mesh ", j["mesh"].get<std::string>(), "; ", j["owned_values_split"].get<int>(),
               " of ", j["owned_values"].get<int>(), " weights and caches split; per device ",
               j["weight_bytes_per_device"].get<double>() / mb, " MB weights + ",
               j["kv_cache_bytes_per_device"].get<double>() / mb, " MB KV cache; ",
               j["collectives_per_step"].get<int64_t>(), " collectives per step");
    if (c->sim) out += cat("; simulated ", c->sim->step_time_s * 1e3, " ms per step");
    out += cat(" (compiled in ", c->seconds, " s)\n");
  }
  return out;
}

}  // namespace alpa::infer
