// alpa forward: the logits of GPT-2 weights for token sequences, on one device of the runtime.
#include <chrono>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/gpt2_weights.h"
#include "alpa/runtime/executor.h"
#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

struct Logits {
  int64_t batch = 0, seq = 0, vocab = 0;
  std::vector<float> values;  // [batch, seq, vocab]
  std::vector<int64_t> next;  // per sequence: the argmax at its last position
  double seconds = 0;
};

// Runs the GPT of `config` (batch and seq from `tokens`) on `weights`: its logits.
Result<Logits> gpt_logits(GptConfig config, const GptWeights& weights,
                          const std::vector<std::vector<int32_t>>& tokens, int threads) {
  config.batch = static_cast<int64_t>(tokens.size());
  config.seq = static_cast<int64_t>(tokens[0].size());
  ALPA_ASSIGN_OR_RETURN(Graph graph, build_gpt(config));
  std::vector<Tensor> params;
  for (ValueId id : graph.parameters()) {
    const Node& n = graph.node(id);
    if (n.name == "tokens" || n.name == "labels") {
      std::vector<float> v;  // labels are not scored: any ids do
      for (const auto& line : tokens)
        for (int32_t t : line) v.push_back(n.name == "tokens" ? static_cast<float>(t) : 0.0f);
      params.push_back(Tensor::from_values(n.type, std::move(v)));
      continue;
    }
    auto it = weights.find(n.name);
    if (it == weights.end()) return internal_error(cat("no weight for parameter ", n.name));
    params.push_back(Tensor::from_values(n.type, it->second.values));
  }
  const int output = [&] {
    for (size_t o = 0; o < graph.outputs().size(); ++o)
      if (graph.outputs()[o].name == "logits") return static_cast<int>(o);
    return -1;
  }();
  if (output < 0) return internal_error("the GPT graph has no logits output");
  ExecutorOptions eo;
  eo.num_threads = threads > 0 ? threads : std::max(1u, std::thread::hardware_concurrency());
  Executor exec(std::move(graph), eo);
  const auto t0 = std::chrono::steady_clock::now();
  ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> outs, exec.run(std::move(params)));
  Logits r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.batch = config.batch;
  r.seq = config.seq;
  r.vocab = config.vocab;
  r.values = outs[static_cast<size_t>(output)].to_vector();
  for (int64_t b = 0; b < r.batch; ++b) {
    const float* last = r.values.data() + ((b + 1) * r.seq - 1) * r.vocab;
    r.next.push_back(std::max_element(last, last + r.vocab) - last);
  }
  return r;
}

}  // namespace

Result<std::vector<std::vector<int32_t>>> read_token_lines(const std::string& path, int64_t vocab) {
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<std::vector<int32_t>> lines;
  std::istringstream in(text);
  std::string line;
  const std::string hint = "one sequence per line, token ids separated by spaces";
  for (int number = 1; std::getline(in, line); ++number) {
    std::istringstream words(line);
    std::vector<int32_t> ids;
    std::string w;
    while (words >> w) {
      size_t used = 0;
      long long id = -1;
      try {
        id = std::stoll(w, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used != w.size() || id < 0 || id >= vocab)
        return invalid_argument(cat(path, ":", number, ": '", w.substr(0, 40),
                                    "' is not a token id in [0, ", vocab, ")"),
                                hint);
      ids.push_back(static_cast<int32_t>(id));
    }
    if (ids.empty()) continue;
    if (!lines.empty() && ids.size() != lines[0].size())
      return invalid_argument(cat(path, ":", number, ": ", ids.size(), " tokens, but the first ",
                                  "sequence has ", lines[0].size()),
                              "every sequence of a batch has the same length");
    lines.push_back(std::move(ids));
  }
  if (lines.empty()) return invalid_argument(cat(path, ": no token ids"), hint);
  return lines;
}

int run_forward(const ForwardFlags& flags, std::ostream& out, std::ostream& err) {
  auto fail = [&](const Status& s) { return report_error(s, flags.json, out, err); };
  if (flags.weights.empty() || flags.tokens.empty())
    return fail(invalid_argument("give --weights DIR and --tokens FILE"));
  Result<GptConfig> config = read_gpt2_config(flags.weights);
  if (!config.ok()) return fail(config.status());
  Result<std::vector<std::vector<int32_t>>> tokens = read_token_lines(flags.tokens, config->vocab);
  if (!tokens.ok()) return fail(tokens.status());
  const int64_t seq = static_cast<int64_t>((*tokens)[0].size());
  if (seq > config->seq)
    return fail(invalid_argument(cat(flags.tokens, ": sequences of ", seq, " tokens, but the ",
                                     "model has ", config->seq, " positions (n_positions)"),
                                 cat("give at most ", config->seq, " tokens per line")));
  GptConfig model = *config;
  model.seq = seq;
  Result<GptWeights> weights = load_gpt2_weights(flags.weights, model);
  if (!weights.ok()) return fail(weights.status());
  Result<Logits> r = gpt_logits(model, *weights, *tokens, flags.threads);
  if (!r.ok()) return fail(r.status());
  if (!flags.out.empty()) {
    std::vector<NamedTensor> t = {{"logits", {r->batch, r->seq, r->vocab}, r->values}};
    const std::map<std::string, std::string> meta = {
        {"format", "pt"}, {"alpa.weights", flags.weights}, {"alpa.tokens", flags.tokens}};
    if (Status s = write_safetensors(flags.out, t, StoredDType::kF32, meta); !s.ok())
      return fail(s);
  }
  if (flags.json) {
    nlohmann::ordered_json j = {{"command", "forward"},   {"batch", r->batch},
                                {"seq", r->seq},          {"vocab", r->vocab},
                                {"next_tokens", r->next}, {"seconds", r->seconds}};
    if (!flags.out.empty()) j["out"] = flags.out;
    out << json_line(j) << "\n";
    return kExitOk;
  }
  out << "alpa forward: " << r->batch << " sequence" << (r->batch > 1 ? "s" : "") << " of "
      << r->seq << " tokens through GPT-2 (" << model.layers << " layers, hidden " << model.hidden
      << ", vocab " << model.vocab << ") in " << format_seconds(r->seconds) << "\n";
  if (!flags.out.empty())
    out << "  logits f32[" << r->batch << "," << r->seq << "," << r->vocab << "] written to "
        << flags.out << "\n";
  out << "  next token (argmax at the last position):";
  for (int64_t t : r->next) out << " " << t;
  out << "\n";
  return kExitOk;
}

}  // namespace alpa
