#include "alpa/serve/model_dir.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "alpa/data/bpe_tokenizer.h"
#include "alpa/data/safetensors.h"
#include "alpa/data/sentencepiece_tokenizer.h"

namespace alpa::serve {
namespace fs = std::filesystem;

Result<std::vector<int32_t>> LoadedModel::encode(std::string_view text) const {
  if (tokenizer == nullptr)
    return failed_precondition(cat(dir, ": the model has no tokenizer"),
                               "add vocab.json + merges.txt, tokenizer.json or tokenizer.model, "
                               "or send token ids");
  std::vector<int32_t> ids;
  if (bos_id >= 0) ids.push_back(bos_id);
  Result<std::vector<int32_t>> body = Result<std::vector<int32_t>>(std::vector<int32_t>{});
  if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(tokenizer.get())) {
    body = bpe->encode(text, /*allow_special=*/true);
  } else {
    body = tokenizer->encode_document(text);
  }
  if (!body.ok()) return body.status();
  ids.insert(ids.end(), body->begin(), body->end());
  return ids;
}

Result<std::string> LoadedModel::decode(const std::vector<int32_t>& ids) const {
  if (tokenizer == nullptr) return failed_precondition(cat(dir, ": the model has no tokenizer"));
  return tokenizer->decode(ids);
}

Result<std::string> LoadedModel::chat_text(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt) const {
  if (chat_template == nullptr) return chat_prompt(messages);
  return chat_template->render(messages, bos_token, eos_token, add_generation_prompt);
}

Result<std::vector<int32_t>> LoadedModel::encode_chat(const std::vector<ChatMessage>& messages,
                                                      bool add_generation_prompt) const {
  ALPA_ASSIGN_OR_RETURN(std::string text, chat_text(messages, add_generation_prompt));
  if (chat_template == nullptr) return encode(text);
  if (tokenizer == nullptr) return encode(text);  // the error
  // Ordinary stretches go through the tokenizer; special-token texts become their ids.
  std::vector<int32_t> ids;
  size_t start = 0, at = 0;
  auto flush = [&](size_t end) -> Status {
    if (end == start) return ok_status();
    const std::string_view stretch = std::string_view(text).substr(start, end - start);
    Result<std::vector<int32_t>> body = Result<std::vector<int32_t>>(std::vector<int32_t>{});
    if (const auto* bpe = dynamic_cast<const BpeTokenizer*>(tokenizer.get())) {
      body = bpe->encode(stretch, /*allow_special=*/true);
    } else {
      body = tokenizer->encode_document(stretch);
    }
    if (!body.ok()) return body.status();
    ids.insert(ids.end(), body->begin(), body->end());
    return ok_status();
  };
  bool first_byte[256] = {};
  for (const auto& st : special_tokens) first_byte[static_cast<unsigned char>(st.first[0])] = true;
  while (at < text.size()) {
    const std::pair<std::string, int32_t>* hit = nullptr;
    if (first_byte[static_cast<unsigned char>(text[at])])
      for (const auto& st : special_tokens)
        if (text.compare(at, st.first.size(), st.first) == 0) {
          hit = &st;
          break;
        }
    if (hit == nullptr) {
      ++at;
      continue;
    }
    ALPA_RETURN_IF_ERROR(flush(at));
    ids.push_back(hit->second);
    at += hit->first.size();
    start = at;
  }
  ALPA_RETURN_IF_ERROR(flush(text.size()));
  return ids;
}

namespace {

Result<std::shared_ptr<const Tokenizer>> load_tokenizer(const fs::path& d) {
  if (fs::exists(d / "tokenizer.model")) {
    ALPA_ASSIGN_OR_RETURN(SentencePieceTokenizer sp,
                          SentencePieceTokenizer::load((d / "tokenizer.model").string()));
    return std::shared_ptr<const Tokenizer>(
        std::make_shared<SentencePieceTokenizer>(std::move(sp)));
  }
  if (fs::exists(d / "vocab.json") && fs::exists(d / "merges.txt")) {
    ALPA_ASSIGN_OR_RETURN(BpeTokenizer bpe, BpeTokenizer::load((d / "vocab.json").string(),
                                                               (d / "merges.txt").string()));
    return std::shared_ptr<const Tokenizer>(std::make_shared<BpeTokenizer>(std::move(bpe)));
  }
  if (fs::exists(d / "tokenizer.json")) {
    ALPA_ASSIGN_OR_RETURN(BpeTokenizer bpe,
                          BpeTokenizer::load_tokenizer_json((d / "tokenizer.json").string()));
    return std::shared_ptr<const Tokenizer>(std::make_shared<BpeTokenizer>(std::move(bpe)));
  }
  return std::shared_ptr<const Tokenizer>();
}

std::string token_text(const nlohmann::json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_object() && j.contains("content") && j["content"].is_string())
    return j["content"].get<std::string>();
  return "";
}

Result<std::string> slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io_error(cat(path.string(), ": cannot read"));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Result<nlohmann::json> read_json(const fs::path& path) {
  ALPA_ASSIGN_OR_RETURN(std::string text, slurp(path));
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return parse_error(cat(path.string(), ": not a JSON object"));
  return j;
}

// The text of token `id` as a chat template writes it.
std::string piece_text(const Tokenizer& t, int32_t id) {
  if (id < 0 || id >= t.vocab_size()) return "";
  if (const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(&t)) return sp->piece(id);
  Result<std::string> text = t.decode({id});
  return text.ok() ? *text : "";
}

// Special-token texts of the tokenizer files: tokenizer.json's and tokenizer_config.json's
// added tokens, SentencePiece control pieces, and the bos/eos tokens.
void collect_special_tokens(const fs::path& d, const nlohmann::json& config, LoadedModel& m,
                            int32_t config_bos, int32_t vocab) {
  std::vector<std::pair<std::string, int32_t>> found;
  auto add = [&](const std::string& text, int64_t id) {
    if (!text.empty() && id >= 0 && id < vocab) found.emplace_back(text, static_cast<int32_t>(id));
  };
  if (const auto* sp = dynamic_cast<const SentencePieceTokenizer*>(m.tokenizer.get()))
    for (int32_t id = 0; id < sp->vocab_size(); ++id)
      if (sp->type(id) == SentencePieceTokenizer::PieceType::kControl) add(sp->piece(id), id);
  if (fs::exists(d / "tokenizer.json")) {
    Result<nlohmann::json> tj = read_json(d / "tokenizer.json");
    if (tj.ok() && tj->contains("added_tokens") && (*tj)["added_tokens"].is_array())
      for (const nlohmann::json& t : (*tj)["added_tokens"])
        if (t.is_object() && t.contains("id") && t["id"].is_number_integer())
          add(token_text(t), t["id"].get<int64_t>());
  }
  if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object())
    for (const auto& [key, t] : config["added_tokens_decoder"].items())
      if (!key.empty() && key.find_first_not_of("0123456789") == std::string::npos &&
          key.size() < 10)
        add(token_text(t), std::stoll(key));
  add(m.bos_token, config_bos);
  add(m.eos_token, m.eos_id);
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  m.special_tokens = std::move(found);
}

// The chat template (chat_template.jinja, else tokenizer_config.json's "chat_template": a
// string, or a list of {name, template} of which "default" is used), bos_token and
// eos_token, and the special tokens.
Status load_chat_template(const fs::path& d, const DecoderConfig& config, LoadedModel& m) {
  nlohmann::json tc = nlohmann::json::object();
  const fs::path tc_path = d / "tokenizer_config.json";
  if (fs::exists(tc_path)) {
    ALPA_ASSIGN_OR_RETURN(tc, read_json(tc_path));
  }
  const int32_t bos = config.bos_id;
  m.bos_token = token_text(tc.value("bos_token", nlohmann::json()));
  m.eos_token = token_text(tc.value("eos_token", nlohmann::json()));
  if (m.tokenizer != nullptr) {
    if (m.bos_token.empty()) m.bos_token = piece_text(*m.tokenizer, bos);
    if (m.eos_token.empty()) m.eos_token = piece_text(*m.tokenizer, m.eos_id);
  }
  std::string source, name;
  if (fs::exists(d / "chat_template.jinja")) {
    name = (d / "chat_template.jinja").string();
    ALPA_ASSIGN_OR_RETURN(source, slurp(d / "chat_template.jinja"));
  } else if (tc.contains("chat_template") && !tc["chat_template"].is_null()) {
    name = tc_path.string() + " chat_template";
    const nlohmann::json& t = tc["chat_template"];
    if (t.is_string()) source = t.get<std::string>();
    if (t.is_array())
      for (const nlohmann::json& e : t)
        if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
            e["template"].is_string())
          source = e["template"].get<std::string>();
    if (source.empty())
      return invalid_argument(cat(name, ": not a string, nor a list with a \"default\" template"));
  }
  if (!name.empty()) {
    Result<ChatTemplate> t = ChatTemplate::parse(source, name);
    if (!t.ok())
      return t.status().with_context(
          cat(d.string(), ": the checkpoint's chat template cannot be used"));
    m.chat_template = std::make_shared<const ChatTemplate>(std::move(*t));
  }
  if (m.tokenizer != nullptr) collect_special_tokens(d, tc, m, bos, config.vocab);
  return ok_status();
}

}  // namespace

Status LoadedModel::load_decoder() {
  if (weights == nullptr)
    return failed_precondition(cat(name, ": no weights to read the decoder from"));
  ALPA_ASSIGN_OR_RETURN(Decoder d, Decoder::load(config, *weights));
  decoder = std::make_shared<const Decoder>(std::move(d));
  return ok_status();
}

Result<LoadedModel> load_model_dir(const std::string& dir, ModelWeights what) {
  fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec))
    return not_found(cat(dir, ": not a directory"),
                     "--model takes a Hugging Face model directory (config.json, "
                     "model.safetensors, tokenizer files)");
  ALPA_ASSIGN_OR_RETURN(DecoderConfig config, read_decoder_config((d / "config.json").string()));
  ALPA_ASSIGN_OR_RETURN(SafetensorsSet weights, SafetensorsSet::open(dir));
  LoadedModel m;
  m.dir = dir;
  m.name = d.lexically_normal().filename().string();
  if (m.name.empty()) m.name = d.lexically_normal().parent_path().filename().string();
  m.config = config;
  m.weights = std::make_shared<const SafetensorsSet>(std::move(weights));
  if (what == ModelWeights::kWhole) {
    ALPA_RETURN_IF_ERROR(m.load_decoder());
  } else {  // the names and shapes now; the values when a device reads its part
    ALPA_RETURN_IF_ERROR(Decoder::check_tensors(config, *m.weights));
  }
  ALPA_ASSIGN_OR_RETURN(m.tokenizer, load_tokenizer(d));
  m.eos_id = config.eos_id;
  if (m.tokenizer != nullptr) {
    if (m.tokenizer->vocab_size() > config.vocab)
      return invalid_argument(cat(dir, ": the tokenizer has ", m.tokenizer->vocab_size(),
                                  " tokens, config.json's vocab_size is ", config.vocab));
    if (m.eos_id < 0) m.eos_id = m.tokenizer->eos_id();
  }
  // LLaMA and OPT prompts start with bos (their tokenizers add it); GPT-2's do not.
  if (config.family != Family::kGpt2) m.bos_id = config.bos_id;
  ALPA_RETURN_IF_ERROR(load_chat_template(d, config, m));
  return m;
}

std::string chat_prompt(const std::vector<ChatMessage>& messages) {
  std::string out;
  for (const ChatMessage& m : messages) {
    std::string role = m.role;
    if (!role.empty())
      role[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(role[0])));
    out += role + ": " + m.content + "\n";
  }
  return out + "Assistant:";
}

}  // namespace alpa::serve
