// What a token dataset needs of a tokenizer: a document's text to ids, ids back to text, the
// vocabulary size and the id that ends a document. GPT-2's byte-level BPE (bpe_tokenizer.h) and
// SentencePiece models (sentencepiece_tokenizer.h) implement it; `alpa data prepare` and
// `write_token_dataset` see only this.
//
// Not a general tokenizer API: special-token handling, byte fallback and the like stay with
// each implementation (their own headers say what they do).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // The scheme's name, written into dataset headers: "gpt2-bpe", "sentencepiece".
  virtual std::string kind() const = 0;
  // The ids of one document's text (UTF-8; invalid UTF-8 is an error). Text that spells a
  // special token is ordinary text, except where the scheme itself defines otherwise.
  virtual Result<std::vector<int32_t>> encode_document(std::string_view text) const = 0;
  // The text of `ids` (ids outside the vocabulary are an error).
  virtual Result<std::string> decode(const std::vector<int32_t>& ids) const = 0;
  virtual int32_t vocab_size() const = 0;
  // The id placed after each document (GPT-2's <|endoftext|>, a SentencePiece model's eos), or
  // -1 when the vocabulary has none.
  virtual int32_t eos_id() const = 0;
};

}  // namespace alpa
