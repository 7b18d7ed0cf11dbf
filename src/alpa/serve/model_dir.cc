#include "alpa/serve/model_dir.h"

#include <filesystem>

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

}  // namespace

Result<LoadedModel> load_model_dir(const std::string& dir) {
  fs::path d(dir);
  std::error_code ec;
  if (!fs::is_directory(d, ec))
    return not_found(cat(dir, ": not a directory"),
                     "--model takes a Hugging Face model directory (config.json, "
                     "model.safetensors, tokenizer files)");
  ALPA_ASSIGN_OR_RETURN(DecoderConfig config, read_decoder_config((d / "config.json").string()));
  ALPA_ASSIGN_OR_RETURN(SafetensorsSet weights, SafetensorsSet::open(dir));
  ALPA_ASSIGN_OR_RETURN(Decoder decoder, Decoder::load(config, weights));
  LoadedModel m;
  m.dir = dir;
  m.name = d.lexically_normal().filename().string();
  if (m.name.empty()) m.name = d.lexically_normal().parent_path().filename().string();
  m.decoder = std::make_shared<const Decoder>(std::move(decoder));
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
