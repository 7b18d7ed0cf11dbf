#include "alpa/serve/config.h"

#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace alpa::serve {

const char* family_name(Family family) {
  switch (family) {
    case Family::kGpt2: return "gpt2";
    case Family::kOpt: return "opt";
    case Family::kLlama: return "llama";
  }
  return "?";
}

namespace {

using nlohmann::json;

// Reads an integer field; `fallback` < 0 means required.
Result<int64_t> int_field(const json& j, const char* key, const std::string& where,
                          int64_t fallback = -1, int64_t min_value = 1) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (fallback >= 0) return fallback;
    return invalid_argument(cat(where, ": field \"", key, "\" is missing"),
                            "a Hugging Face config.json of a gpt2, opt or llama model has it");
  }
  if (!it->is_number_integer())
    return invalid_argument(
        cat(where, ": field \"", key, "\" must be an integer, not ", it->type_name()));
  int64_t v = it->get<int64_t>();
  if (v < min_value || v > (int64_t{1} << 31))
    return invalid_argument(cat(where, ": field \"", key, "\" = ", v, " is out of range"),
                            cat("expected ", min_value, " .. 2^31"));
  return v;
}

Result<double> real_field(const json& j, const char* key, const std::string& where,
                          double fallback) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_number())
    return invalid_argument(cat(where, ": field \"", key, "\" must be a number"));
  double v = it->get<double>();
  if (!(v > 0) || v > 1e12)
    return invalid_argument(cat(where, ": field \"", key, "\" = ", v, " must be positive"));
  return v;
}

// A token id: an integer, or the first of a list; absent or null gives -1.
int32_t token_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return -1;
  const json* v = &*it;
  if (v->is_array() && !v->empty()) v = &(*v)[0];
  if (!v->is_number_integer()) return -1;
  int64_t id = v->get<int64_t>();
  return id >= 0 && id < (int64_t{1} << 31) ? static_cast<int32_t>(id) : -1;
}

Status check_string(const json& j, const char* key, const char* expected,
                    const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return ok_status();
  if (!it->is_string() || it->get<std::string>() != expected)
    return invalid_argument(cat(where, ": field \"", key, "\" = ", it->dump(), " is not supported"),
                            cat("only \"", expected, "\" is implemented"));
  return ok_status();
}

Status read_gpt2(const json& j, const std::string& where, DecoderConfig& c) {
  ALPA_ASSIGN_OR_RETURN(c.vocab, int_field(j, "vocab_size", where));
  ALPA_ASSIGN_OR_RETURN(c.hidden, int_field(j, "n_embd", where));
  ALPA_ASSIGN_OR_RETURN(c.layers, int_field(j, "n_layer", where));
  ALPA_ASSIGN_OR_RETURN(c.heads, int_field(j, "n_head", where));
  ALPA_ASSIGN_OR_RETURN(c.max_positions, int_field(j, "n_positions", where, 1024));
  ALPA_ASSIGN_OR_RETURN(c.intermediate, int_field(j, "n_inner", where, 4 * c.hidden));
  ALPA_ASSIGN_OR_RETURN(c.norm_eps, real_field(j, "layer_norm_epsilon", where, 1e-5));
  c.activation = Activation::kGeluTanh;
  auto act = j.find("activation_function");
  if (act != j.end() && act->is_string() && act->get<std::string>() == "gelu") {
    c.activation = Activation::kGeluExact;  // `alpa export` writes the exact GELU
  } else if (!(act != j.end() && act->is_string() &&
               act->get<std::string>() == "gelu_pytorch_tanh")) {
    ALPA_RETURN_IF_ERROR(check_string(j, "activation_function", "gelu_new", where));
  }
  c.kv_heads = c.heads;
  c.tie_embeddings = true;
  return ok_status();
}

Status read_opt(const json& j, const std::string& where, DecoderConfig& c) {
  ALPA_ASSIGN_OR_RETURN(c.vocab, int_field(j, "vocab_size", where));
  ALPA_ASSIGN_OR_RETURN(c.hidden, int_field(j, "hidden_size", where));
  ALPA_ASSIGN_OR_RETURN(c.layers, int_field(j, "num_hidden_layers", where));
  ALPA_ASSIGN_OR_RETURN(c.heads, int_field(j, "num_attention_heads", where));
  ALPA_ASSIGN_OR_RETURN(c.intermediate, int_field(j, "ffn_dim", where));
  ALPA_ASSIGN_OR_RETURN(c.max_positions, int_field(j, "max_position_embeddings", where, 2048));
  ALPA_ASSIGN_OR_RETURN(int64_t proj, int_field(j, "word_embed_proj_dim", where, c.hidden));
  if (proj != c.hidden)
    return invalid_argument(cat(where, ": field \"word_embed_proj_dim\" = ", proj,
                                " differs from hidden_size ", c.hidden),
                            "OPT models with projected embeddings (opt-350m) are not supported");
  auto pre = j.find("do_layer_norm_before");
  if (pre != j.end() && !(pre->is_boolean() && pre->get<bool>()))
    return invalid_argument(cat(where, ": field \"do_layer_norm_before\" must be true"),
                            "post-LayerNorm OPT models (opt-350m) are not supported");
  ALPA_RETURN_IF_ERROR(check_string(j, "activation_function", "relu", where));
  c.kv_heads = c.heads;
  c.activation = Activation::kRelu;
  c.tie_embeddings = true;
  return ok_status();
}

Status read_llama(const json& j, const std::string& where, DecoderConfig& c) {
  ALPA_ASSIGN_OR_RETURN(c.vocab, int_field(j, "vocab_size", where));
  ALPA_ASSIGN_OR_RETURN(c.hidden, int_field(j, "hidden_size", where));
  ALPA_ASSIGN_OR_RETURN(c.layers, int_field(j, "num_hidden_layers", where));
  ALPA_ASSIGN_OR_RETURN(c.heads, int_field(j, "num_attention_heads", where));
  ALPA_ASSIGN_OR_RETURN(c.kv_heads, int_field(j, "num_key_value_heads", where, c.heads));
  ALPA_ASSIGN_OR_RETURN(c.intermediate, int_field(j, "intermediate_size", where));
  ALPA_ASSIGN_OR_RETURN(c.max_positions, int_field(j, "max_position_embeddings", where, 2048));
  ALPA_ASSIGN_OR_RETURN(c.norm_eps, real_field(j, "rms_norm_eps", where, 1e-6));
  ALPA_ASSIGN_OR_RETURN(c.rope_theta, real_field(j, "rope_theta", where, 10000.0));
  ALPA_RETURN_IF_ERROR(check_string(j, "hidden_act", "silu", where));
  auto scaling = j.find("rope_scaling");
  if (scaling != j.end() && !scaling->is_null())
    return invalid_argument(cat(where, ": field \"rope_scaling\" is not supported"),
                            "only plain rotary embeddings (rope_scaling null) are implemented");
  auto tie = j.find("tie_word_embeddings");
  c.tie_embeddings = tie != j.end() && tie->is_boolean() && tie->get<bool>();
  c.activation = Activation::kSilu;
  if (c.heads % c.kv_heads != 0)
    return invalid_argument(cat(where, ": num_attention_heads ", c.heads,
                                " is not a multiple of num_key_value_heads ", c.kv_heads));
  return ok_status();
}

}  // namespace

Result<DecoderConfig> parse_decoder_config(std::string_view json_text, const std::string& where) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return parse_error(cat(where, ": not a JSON object"), "expected a Hugging Face config.json");
  auto type = j.find("model_type");
  if (type == j.end() || !type->is_string())
    return invalid_argument(cat(where, ": field \"model_type\" is missing or not a string"),
                            "expected \"gpt2\", \"opt\" or \"llama\"");
  std::string t = type->get<std::string>();
  DecoderConfig c;
  if (t == "gpt2") {
    c.family = Family::kGpt2;
    ALPA_RETURN_IF_ERROR(read_gpt2(j, where, c));
  } else if (t == "opt") {
    c.family = Family::kOpt;
    ALPA_RETURN_IF_ERROR(read_opt(j, where, c));
  } else if (t == "llama" || t == "mistral") {
    c.family = Family::kLlama;
    ALPA_RETURN_IF_ERROR(read_llama(j, where, c));
  } else {
    return invalid_argument(cat(where, ": model_type \"", t, "\" is not supported"),
                            "supported: gpt2, opt, llama (and mistral)");
  }
  if (c.hidden % c.heads != 0)
    return invalid_argument(
        cat(where, ": hidden size ", c.hidden, " is not a multiple of the head count ", c.heads));
  ALPA_ASSIGN_OR_RETURN(c.head_dim, int_field(j, "head_dim", where, c.hidden / c.heads));
  if (c.family == Family::kLlama && c.head_dim % 2 != 0)
    return invalid_argument(cat(where, ": head_dim ", c.head_dim, " must be even for rotary"));
  c.bos_id = token_field(j, "bos_token_id");
  c.eos_id = token_field(j, "eos_token_id");
  if (c.eos_id >= c.vocab) c.eos_id = -1;
  if (c.bos_id >= c.vocab) c.bos_id = -1;
  return c;
}

Result<DecoderConfig> read_decoder_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(cat(path, ": cannot open"), "the model directory needs config.json");
  std::ostringstream ss;
  ss << in.rdbuf();
  return parse_decoder_config(ss.str(), path);
}

int64_t DecoderConfig::num_parameters() const {
  const bool llama = family == Family::kLlama;
  const int64_t C = hidden, norm = llama ? C : 2 * C;
  const int64_t up = llama ? 2 * intermediate : intermediate;
  int64_t layer = 2 * norm + C * (q_dim() + 2 * kv_dim()) + q_dim() * C + C * up + intermediate * C;
  if (!llama) layer += q_dim() + 2 * kv_dim() + C + up + C;  // biases
  int64_t n = vocab * C + layers * layer + norm;
  if (family == Family::kGpt2) n += max_positions * C;
  if (family == Family::kOpt) n += (max_positions + 2) * C;
  if (!tie_embeddings) n += vocab * C;
  return n;
}

float rope_inverse_frequency(const DecoderConfig& config, int64_t i) {
  return static_cast<float>(
      1.0 / std::pow(config.rope_theta,
                     static_cast<double>(2 * i) / static_cast<double>(config.head_dim)));
}

}  // namespace alpa::serve
