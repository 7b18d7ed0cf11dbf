// A model directory in Hugging Face layout: config.json, the weights (model.safetensors, or
// shards named by model.safetensors.index.json; F32, F16 or BF16), and a tokenizer:
//   vocab.json + merges.txt      GPT-2's byte-level BPE (GPT-2, OPT)
//   tokenizer.json               a byte-level BPE model in Hugging Face's tokenizers format
//   tokenizer.model              SentencePiece (LLaMA), preferred when present
// A directory without a tokenizer loads (token ids in, token ids out) but cannot take text.
//
// Chats are turned into prompts by the checkpoint's chat template (chat_template.jinja, or
// tokenizer_config.json's "chat_template"), evaluated by serve/chat_template.h; a template
// outside the supported subset is an error at load. Without a template chats use the
// documented format of chat_prompt() below.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/data/tokenizer.h"
#include "alpa/serve/chat_template.h"
#include "alpa/serve/decoder.h"
#include "alpa/support/status.h"

namespace alpa::serve {

struct LoadedModel {
  std::string name;  // the directory's last component: the API's model id
  std::string dir;
  DecoderConfig config;  // config.json's
  // The whole decoder; null when the directory was opened with ModelWeights::kOnDemand (an
  // engine then reads what its devices hold from `weights`).
  std::shared_ptr<const Decoder> decoder;
  // The checkpoint's tensors, open, their data read when asked for (null: a model in memory).
  std::shared_ptr<const SafetensorsSet> weights;
  std::shared_ptr<const Tokenizer> tokenizer;  // null: none in the directory
  int32_t bos_id = -1;                         // prepended to prompts when >= 0
  int32_t eos_id = -1;

  // The checkpoint's chat template (null: none; chats use chat_prompt's format), and the
  // values of its bos_token and eos_token (tokenizer_config.json's, else the tokenizer's).
  std::shared_ptr<const ChatTemplate> chat_template;
  std::string bos_token, eos_token;
  // Texts that stand for one token id in a rendered chat (added tokens of tokenizer.json and
  // tokenizer_config.json, SentencePiece control pieces, bos_token and eos_token), longest
  // first.
  std::vector<std::pair<std::string, int32_t>> special_tokens;

  // Reads the whole decoder from `weights` (when opened with kOnDemand).
  Status load_decoder();

  // Prompt text to ids (with the bos id); an error without a tokenizer.
  Result<std::vector<int32_t>> encode(std::string_view text) const;
  Result<std::string> decode(const std::vector<int32_t>& ids) const;

  // The prompt text of a chat: the template's rendering (its errors, e.g. raise_exception,
  // are invalid_argument), or chat_prompt(messages) when there is no template.
  Result<std::string> chat_text(const std::vector<ChatMessage>& messages,
                                bool add_generation_prompt = true) const;
  // The prompt ids of a chat. With a template, the rendered text's special tokens become
  // their ids and no bos is prepended (the template writes bos_token where the model wants
  // it); without, encode(chat_prompt(messages)).
  Result<std::vector<int32_t>> encode_chat(const std::vector<ChatMessage>& messages,
                                           bool add_generation_prompt = true) const;
};

// What load_model_dir reads of the weights: the whole decoder at once, or only the headers, the
// tensors then read by each device for its own part (or by load_decoder), so that a process of
// a split model never holds the whole. Either way every tensor's name and shape is checked.
enum class ModelWeights { kWhole, kOnDemand };

Result<LoadedModel> load_model_dir(const std::string& dir,
                                   ModelWeights weights = ModelWeights::kWhole);

// The prompt of a chat for a checkpoint without a chat template:
//   "<role>: <content>\n" per message (role capitalized: System, User, Assistant), then
//   "Assistant:".
std::string chat_prompt(const std::vector<ChatMessage>& messages);

}  // namespace alpa::serve
