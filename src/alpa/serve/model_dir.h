// A model directory in Hugging Face layout: config.json, the weights (model.safetensors, or
// shards named by model.safetensors.index.json; F32, F16 or BF16), and a tokenizer:
//   vocab.json + merges.txt      GPT-2's byte-level BPE (GPT-2, OPT)
//   tokenizer.json               a byte-level BPE model in Hugging Face's tokenizers format
//   tokenizer.model              SentencePiece (LLaMA), preferred when present
// A directory without a tokenizer loads (token ids in, token ids out) but cannot take text.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/data/tokenizer.h"
#include "alpa/serve/decoder.h"
#include "alpa/support/status.h"

namespace alpa::serve {

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

struct LoadedModel {
  std::string name;  // the directory's last component: the API's model id
  std::string dir;
  std::shared_ptr<const Decoder> decoder;
  std::shared_ptr<const Tokenizer> tokenizer;  // null: none in the directory
  int32_t bos_id = -1;                         // prepended to prompts when >= 0
  int32_t eos_id = -1;

  // Prompt text to ids (with the bos id); an error without a tokenizer.
  Result<std::vector<int32_t>> encode(std::string_view text) const;
  Result<std::string> decode(const std::vector<int32_t>& ids) const;
};

Result<LoadedModel> load_model_dir(const std::string& dir);

// The prompt of a chat. The checkpoint's chat templates are Jinja programs, which are not
// evaluated here; every model gets this documented format instead:
//   "<role>: <content>\n" per message (role capitalized: System, User, Assistant), then
//   "Assistant:".
std::string chat_prompt(const std::vector<ChatMessage>& messages);

}  // namespace alpa::serve
