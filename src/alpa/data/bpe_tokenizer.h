// Byte-level BPE tokenization as GPT-2 (and OPT, GPT-J) define it: text is split into
// pre-tokens (contractions, letter runs, digit runs, other symbols, whitespace runs, each
// letter/digit/symbol run taking one leading space), each pre-token's UTF-8 bytes are mapped to
// printable characters and merged pairwise by the merge list's ranks, and the merged symbols
// are looked up in the vocabulary. Decoding inverts the byte mapping exactly, so
// decode(encode(text)) == text for any valid UTF-8.
//
// Files: `vocab.json` / `encoder.json` (symbol -> id, a JSON object) and `merges.txt` /
// `vocab.bpe` (one "left right" pair per line, highest priority first, after an optional
// "#version" line), as GPT-2's release and the Hugging Face hub ship them.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "alpa/data/tokenizer.h"
#include "alpa/support/status.h"

namespace alpa {

class BpeTokenizer : public Tokenizer {
 public:
  // Parses the vocabulary (JSON object of symbol -> id) and merges; errors name the file and
  // the line or symbol. `special` tokens (e.g. "<|endoftext|>") must be in the vocabulary.
  static Result<BpeTokenizer> from_text(std::string_view vocab_json, std::string_view merges,
                                        std::vector<std::string> special = {"<|endoftext|>"},
                                        std::string_view vocab_name = "vocab.json",
                                        std::string_view merges_name = "merges.txt");
  static Result<BpeTokenizer> load(const std::string& vocab_path, const std::string& merges_path);
  // A Hugging Face tokenizer.json of a byte-level BPE model ("model": {"type": "BPE",
  // "vocab": {...}, "merges": ["a b", ...] or [["a", "b"], ...]}, "pre_tokenizer" ByteLevel);
  // its added tokens marked special become special tokens.
  static Result<BpeTokenizer> from_tokenizer_json(std::string_view text,
                                                  std::string_view name = "tokenizer.json");
  static Result<BpeTokenizer> load_tokenizer_json(const std::string& path);

  // Token ids of `text` (UTF-8). Special tokens in the text are encoded as themselves when
  // `allow_special`, else as ordinary text. Bytes that are not valid UTF-8 are an error.
  Result<std::vector<int32_t>> encode(std::string_view text, bool allow_special = true) const;
  // The text of `ids` (ids out of range are an error).
  Result<std::string> decode(const std::vector<int32_t>& ids) const override;

  int32_t vocab_size() const override { return static_cast<int32_t>(symbols_.size()); }
  // Tokenizer: "gpt2-bpe"; a document's special-token spellings are ordinary text; its end is
  // <|endoftext|>.
  std::string kind() const override { return "gpt2-bpe"; }
  Result<std::vector<int32_t>> encode_document(std::string_view text) const override {
    return encode(text, /*allow_special=*/false);
  }
  int32_t eos_id() const override { return special_id("<|endoftext|>"); }
  // The id of a special token, or -1.
  int32_t special_id(std::string_view token) const;

  // The pre-tokens of `text` (for tests): GPT-2's pattern
  //   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  static Result<std::vector<std::string>> pre_tokenize(std::string_view text);

 private:
  BpeTokenizer() = default;
  // Ids of one pre-token, merged by rank (memoised).
  void encode_piece(const std::string& piece, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> ids_;    // symbol -> id
  std::vector<std::string> symbols_;                // id -> symbol
  std::unordered_map<std::string, int32_t> ranks_;  // "left right" -> rank
  std::map<std::string, int32_t, std::less<>> special_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
  std::string byte_symbol_[256];                       // byte -> its printable symbol (UTF-8)
  std::unordered_map<uint32_t, uint8_t> symbol_byte_;  // code point -> byte
};

}  // namespace alpa
