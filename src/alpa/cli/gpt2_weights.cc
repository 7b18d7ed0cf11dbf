#include "alpa/cli/gpt2_weights.h"

#include <cmath>
#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += cat(i ? "," : "", shape[i]);
  return s + "]";
}

// One Hugging Face tensor and the built-in parameters it holds, concatenated on its last dim.
struct Mapping {
  std::string hf;                  // without the "transformer." prefix
  std::vector<std::string> parts;  // alpa names
  std::vector<int64_t> shape;      // the Hugging Face shape
};

std::vector<Mapping> gpt2_mappings(const GptConfig& c) {
  const int64_t C = c.hidden, V = c.vocab, T = c.seq;
  std::vector<Mapping> m = {{"wte.weight", {"wte"}, {V, C}}, {"wpe.weight", {"wpe"}, {T, C}}};
  for (int64_t l = 0; l < c.layers; ++l) {
    const std::string h = cat("h.", l, "."), a = cat("h", l, ".");
    m.push_back({h + "ln_1.weight", {a + "ln1.g"}, {C}});
    m.push_back({h + "ln_1.bias", {a + "ln1.b"}, {C}});
    m.push_back(
        {h + "attn.c_attn.weight", {a + "attn.wq", a + "attn.wk", a + "attn.wv"}, {C, 3 * C}});
    m.push_back({h + "attn.c_attn.bias", {a + "attn.bq", a + "attn.bk", a + "attn.bv"}, {3 * C}});
    m.push_back({h + "attn.c_proj.weight", {a + "attn.wo"}, {C, C}});
    m.push_back({h + "attn.c_proj.bias", {a + "attn.bo"}, {C}});
    m.push_back({h + "ln_2.weight", {a + "ln2.g"}, {C}});
    m.push_back({h + "ln_2.bias", {a + "ln2.b"}, {C}});
    m.push_back({h + "mlp.c_fc.weight", {a + "mlp.w1"}, {C, 4 * C}});
    m.push_back({h + "mlp.c_fc.bias", {a + "mlp.b1"}, {4 * C}});
    m.push_back({h + "mlp.c_proj.weight", {a + "mlp.w2"}, {4 * C, C}});
    m.push_back({h + "mlp.c_proj.bias", {a + "mlp.b2"}, {C}});
  }
  m.push_back({"ln_f.weight", {"lnf.g"}, {C}});
  m.push_back({"ln_f.bias", {"lnf.b"}, {C}});
  return m;
}

// Concatenates `parts` (each [rows, cols_i] or [cols_i]) along their last dim.
std::vector<float> concat_last(const std::vector<const NamedTensor*>& parts) {
  const int64_t rows = parts[0]->shape.size() == 2 ? parts[0]->shape[0] : 1;
  std::vector<float> out;
  for (int64_t r = 0; r < rows; ++r)
    for (const NamedTensor* p : parts) {
      const int64_t cols = p->shape.back();
      out.insert(out.end(), p->values.begin() + r * cols, p->values.begin() + (r + 1) * cols);
    }
  return out;
}

// config.json's integer field, in [lo, hi].
Result<int64_t> config_int(const nlohmann::json& j, const char* key, const std::string& where,
                           int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number_integer() || it->get<int64_t>() < lo ||
      it->get<int64_t>() > hi)
    return invalid_argument(cat(where, ": \"", key, "\" must be an integer in [", lo, ", ", hi,
                                "], got ", it == j.end() ? "nothing" : json_excerpt(*it)),
                            "a GPT-2 config.json has n_embd, n_layer, n_head, n_positions and "
                            "vocab_size");
  return it->get<int64_t>();
}

// The settings the built-in GPT fixes: activation, epsilon, inner size, no cross-attention.
Status check_fixed_settings(const nlohmann::json& j, const std::string& where, int64_t hidden) {
  if (j.contains("model_type") && json_string_or(j, "model_type") != "gpt2")
    return failed_precondition(
        cat(where, ": model_type is ", json_excerpt(j["model_type"]), ", not \"gpt2\""),
        "the built-in GPT reads GPT-2 models only");
  // Hugging Face's default is gelu_new (the tanh approximation).
  const std::string act = json_string_or(j, "activation_function", "gelu_new");
  if (act != "gelu")
    return failed_precondition(
        cat(where, ": activation_function is \"", act, "\"; the built-in GPT uses the exact ",
            "(erf) GELU, \"gelu\""),
        "the tanh approximation differs from the exact GELU by up to 1e-3 per activation, so "
        "these weights would not give the model's logits here");
  auto eps = j.find("layer_norm_epsilon");
  if (eps != j.end() && (!eps->is_number() || std::fabs(eps->get<double>() - 1e-5) > 1e-12))
    return failed_precondition(
        cat(where, ": layer_norm_epsilon is ", json_excerpt(*eps), "; the built-in GPT's is 1e-5"));
  auto inner = j.find("n_inner");
  if (inner != j.end() && !inner->is_null() &&
      !(inner->is_number_integer() && inner->get<int64_t>() == 4 * hidden))
    return failed_precondition(cat(where, ": n_inner is ", json_excerpt(*inner),
                                   "; the built-in GPT's MLP is 4 x n_embd = ", 4 * hidden));
  for (const char* flag : {"scale_attn_by_inverse_layer_idx", "add_cross_attention"})
    if (json_bool_or(j, flag, false))
      return failed_precondition(
          cat(where, ": ", flag, " is true; the built-in GPT has no such ", "variant"));
  if (j.contains("scale_attn_weights") && !json_bool_or(j, "scale_attn_weights", true))
    return failed_precondition(
        cat(where, ": scale_attn_weights is false; the built-in GPT scales by 1/sqrt(head dim)"));
  return ok_status();
}

std::string size_flags(const GptConfig& c) {
  return cat("--layers ", c.layers, " --hidden ", c.hidden, " --heads ", c.heads, " --vocab ",
             c.vocab, " --seq ", c.seq);
}

// config.json's sizes against the model's, naming the flag that differs.
Status check_sizes(const GptConfig& file, const GptConfig& model, const std::string& where) {
  struct Field {
    const char* key;
    const char* flag;
    int64_t in_file, in_model;
  };
  const Field fields[] = {{"n_layer", "--layers", file.layers, model.layers},
                          {"n_embd", "--hidden", file.hidden, model.hidden},
                          {"n_head", "--heads", file.heads, model.heads},
                          {"vocab_size", "--vocab", file.vocab, model.vocab}};
  for (const Field& f : fields)
    if (f.in_file != f.in_model)
      return failed_precondition(
          cat(where, ": ", f.key, " is ", f.in_file, ", but the model has ", f.flag, " ",
              f.in_model),
          cat("give the model flags of these weights: --model gpt ", size_flags(file)));
  if (model.seq > file.seq)
    return failed_precondition(cat(where, ": n_positions is ", file.seq, ", shorter than the ",
                                   "model's --seq ", model.seq),
                               cat("pass --seq ", file.seq, " or less"));
  return ok_status();
}

// The tensors a GPT-2 file may hold besides the mapped ones: mask buffers and a tied head.
bool ignorable(const std::string& name, const std::string& prefix) {
  if (name == "lm_head.weight") return true;
  const std::string n =
      name.compare(0, prefix.size(), prefix) == 0 ? name.substr(prefix.size()) : name;
  auto ends_with = [&](const std::string& s) {
    return n.size() > s.size() && n.compare(n.size() - s.size(), s.size(), s) == 0;
  };
  return n.rfind("h.", 0) == 0 && (ends_with(".attn.bias") || ends_with(".attn.masked_bias"));
}

// Splits Hugging Face tensor `m` into the built-in parameters, checking its shape.
Status split_tensor(const SafetensorsSet& set, const std::string& name, const Mapping& m,
                    const GptConfig& model, const std::string& fix, GptWeights& out) {
  const SafetensorsEntry* e = set.find(name);
  if (!e)
    return not_found(cat(set.source(), ": no tensor '", name, "'"),
                     "the weights are not a complete GPT-2 of config.json's sizes");
  const bool positions = m.parts[0] == "wpe";  // [n_positions, C]: the first seq rows are used
  if (e->shape != m.shape)
    return failed_precondition(
        cat(set.file_of(name), ": tensor '", name, "' has shape ", shape_text(e->shape),
            ", but config.json's GPT-2 has ", shape_text(m.shape)),
        fix);
  ALPA_ASSIGN_OR_RETURN(std::vector<float> v, set.values(name));
  if (positions) v.resize(static_cast<size_t>(model.seq * model.hidden));
  const int64_t rows = m.shape.size() == 2 ? m.shape[0] : 1;
  const int64_t total = m.shape.back();
  const int64_t cols = total / static_cast<int64_t>(m.parts.size());
  for (size_t p = 0; p < m.parts.size(); ++p) {
    NamedTensor t;
    t.name = m.parts[p];
    t.shape = m.shape.size() == 2 ? std::vector<int64_t>{positions ? model.seq : rows, cols}
                                  : std::vector<int64_t>{cols};
    const int64_t use_rows = positions ? model.seq : rows;
    for (int64_t r = 0; r < use_rows; ++r) {
      const auto* begin = v.data() + r * total + static_cast<int64_t>(p) * cols;
      t.values.insert(t.values.end(), begin, begin + cols);
    }
    out[t.name] = std::move(t);
  }
  return ok_status();
}

}  // namespace

Result<std::vector<NamedTensor>> gpt2_tensors(const GptConfig& c, const GptWeights& weights) {
  std::vector<NamedTensor> out;
  std::set<std::string> used;
  const std::string fix =
      cat("give the model flags the checkpoint was trained with (these are ", size_flags(c), ")");
  for (const Mapping& m : gpt2_mappings(c)) {
    std::vector<int64_t> part_shape = m.shape;
    part_shape.back() /= static_cast<int64_t>(m.parts.size());
    std::vector<const NamedTensor*> parts;
    for (const std::string& p : m.parts) {
      auto it = weights.find(p);
      if (it == weights.end())
        return failed_precondition(cat("the weights have no parameter '", p, "'"), fix);
      if (it->second.shape != part_shape ||
          it->second.values.size() != static_cast<size_t>(it->second.num_elements()))
        return failed_precondition(
            cat("parameter '", p, "' has shape ", shape_text(it->second.shape), ", the model's is ",
                shape_text(part_shape)),
            fix);
      parts.push_back(&it->second);
      used.insert(p);
    }
    out.push_back({"transformer." + m.hf, m.shape, concat_last(parts)});
  }
  for (const auto& [name, t] : weights)
    if (!used.count(name))
      return failed_precondition(
          cat("parameter '", name, "' is not part of a GPT with ", c.layers, " layers"), fix);
  return out;
}

nlohmann::ordered_json gpt2_config_json(const GptConfig& c, StoredDType dtype) {
  const char* torch_dtype = dtype == StoredDType::kF16    ? "float16"
                            : dtype == StoredDType::kBF16 ? "bfloat16"
                                                          : "float32";
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"activation_function", "gelu"},
          {"n_embd", c.hidden},
          {"n_layer", c.layers},
          {"n_head", c.heads},
          {"n_positions", c.seq},
          {"n_ctx", c.seq},
          {"n_inner", nullptr},
          {"vocab_size", c.vocab},
          {"layer_norm_epsilon", 1e-5},
          {"initializer_range", c.init_std},
          {"scale_attn_weights", true},
          {"tie_word_embeddings", true},
          {"resid_pdrop", 0.0},
          {"embd_pdrop", 0.0},
          {"attn_pdrop", 0.0},
          {"bos_token_id", c.vocab - 1},
          {"eos_token_id", c.vocab - 1},
          {"torch_dtype", torch_dtype}};
}

Result<GptConfig> read_gpt2_config(const std::string& dir) {
  const std::string where = (fs::path(dir) / "config.json").string();
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file(where));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return parse_error(cat(where, ": not a JSON object"), "a GPT-2 config.json is a JSON object");
  GptConfig c;
  ALPA_ASSIGN_OR_RETURN(c.hidden, config_int(j, "n_embd", where, 1, int64_t{1} << 20));
  ALPA_ASSIGN_OR_RETURN(c.layers, config_int(j, "n_layer", where, 1, 4096));
  ALPA_ASSIGN_OR_RETURN(c.heads, config_int(j, "n_head", where, 1, c.hidden));
  ALPA_ASSIGN_OR_RETURN(c.seq, config_int(j, "n_positions", where, 1, int64_t{1} << 24));
  ALPA_ASSIGN_OR_RETURN(c.vocab, config_int(j, "vocab_size", where, 1, int64_t{1} << 24));
  if (c.hidden % c.heads != 0)
    return invalid_argument(cat(where, ": n_head ", c.heads, " does not divide n_embd ", c.hidden));
  ALPA_RETURN_IF_ERROR(check_fixed_settings(j, where, c.hidden));
  return c;
}

Result<GptWeights> load_gpt2_weights(const std::string& dir, const GptConfig& model) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    return not_found(cat(dir, " is not a directory"),
                     "give a directory written by `alpa export` (config.json, model.safetensors)");
  ALPA_ASSIGN_OR_RETURN(GptConfig file, read_gpt2_config(dir));
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ALPA_RETURN_IF_ERROR(check_sizes(file, model, config_path));
  ALPA_ASSIGN_OR_RETURN(SafetensorsSet set, SafetensorsSet::open(dir));
  const std::string prefix = set.contains("transformer.wte.weight") ? "transformer." : "";
  const std::string fix =
      cat("the weights do not match ", config_path, "; export them again, or fix config.json");
  GptWeights out;
  GptConfig sizes = model;
  sizes.seq = file.seq;  // the file's position table; split_tensor keeps model.seq rows
  std::set<std::string> used;
  for (const Mapping& m : gpt2_mappings(sizes)) {
    ALPA_RETURN_IF_ERROR(split_tensor(set, prefix + m.hf, m, model, fix, out));
    used.insert(prefix + m.hf);
  }
  for (const std::string& name : set.names())
    if (!used.count(name) && !ignorable(name, prefix))
      return failed_precondition(cat(set.file_of(name), ": tensor '", name,
                                     "' is not part of a GPT-2 with ", file.layers, " layers"),
                                 "the weights and config.json do not belong together (n_layer?)");
  if (set.contains("lm_head.weight")) {
    ALPA_ASSIGN_OR_RETURN(std::vector<float> head, set.values("lm_head.weight"));
    ALPA_ASSIGN_OR_RETURN(std::vector<float> wte, set.values(prefix + "wte.weight"));
    if (head != wte)
      return failed_precondition(
          cat(set.file_of("lm_head.weight"), ": lm_head.weight differs from ", prefix,
              "wte.weight; the built-in GPT ties its output layer to the token embedding"),
          "only GPT-2 models with tied embeddings can be loaded");
  }
  return out;
}

}  // namespace alpa

namespace alpa {

Result<std::map<std::string, Tensor>> init_weights_from(const std::string& dir,
                                                        const ModelSpec& spec) {
  if (spec.family != ModelFamily::kGpt)
    return failed_precondition(
        cat("--init-from reads GPT-2 weights (config.json and model.safetensors), which only the "
            "built-in GPT can start from; this run's model is ",
            spec.name),
        "train --model gpt with the sizes of the weights' config.json");
  ALPA_ASSIGN_OR_RETURN(GptWeights weights, load_gpt2_weights(dir, spec.gpt));
  std::map<std::string, Tensor> out;
  // Held as f32, as the runtime stores every dtype; the driver gives them the program's types.
  for (auto& [name, t] : weights)
    out.emplace(name, Tensor::from_values({DType::kF32, t.shape}, std::move(t.values)));
  return out;
}

}  // namespace alpa
