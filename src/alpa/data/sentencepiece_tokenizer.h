// SentencePiece tokenization (LLaMA, T5, Mistral and others ship a `tokenizer.model`): a
// serialized model (a protocol-buffer ModelProto: the pieces with their scores and types, the
// trainer and normalizer settings) run by Debian's libsentencepiece, so ids are exactly those of
// `spm_encode --output_format=id` with the same model (unigram or BPE models, byte fallback,
// user-defined symbols, the model's normalization).
//
// Loading checks the file before the library sees it, because the library trusts what it
// reads: the protocol-buffer framing of every field, one or more non-empty pieces, and each
// precompiled normalization map (a double-array trie searched with the input's bytes) for
// reads inside the map from any input; what the library then refuses is reported too. A file
// that is not a model (empty, truncated, JSON, text, random bytes) is an error naming it.
//
// Special tokens: unk/bos/eos/pad ids come from the model (-1 where it has none); control
// pieces (<s>, </s>) are never produced by encoding and decode to nothing; user-defined pieces
// are matched wherever their text appears; with byte fallback, characters outside the pieces
// become <0xNN> byte pieces and decode back to the same bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/data/tokenizer.h"
#include "alpa/support/status.h"

namespace alpa {

class SentencePieceTokenizer : public Tokenizer {
 public:
  // A piece's type, as the model stores it.
  enum class PieceType : uint8_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };

  // A serialized model; `name` (the file) is named in errors.
  static Result<SentencePieceTokenizer> from_bytes(std::string_view model,
                                                   std::string_view name = "tokenizer.model");
  static Result<SentencePieceTokenizer> load(const std::string& path);

  SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept;
  SentencePieceTokenizer& operator=(SentencePieceTokenizer&&) noexcept;
  ~SentencePieceTokenizer() override;

  // Ids of `text` (UTF-8; bytes that are not are an error naming the offset).
  Result<std::vector<int32_t>> encode(std::string_view text) const;
  // The pieces of `text` (as `spm_encode --output_format=piece` prints them).
  Result<std::vector<std::string>> encode_pieces(std::string_view text) const;
  // The text of `ids`: pieces joined, the whitespace marker U+2581 back to spaces, byte pieces
  // back to bytes, control pieces dropped. Ids outside the vocabulary are an error.
  Result<std::string> decode(const std::vector<int32_t>& ids) const override;

  // Tokenizer: "sentencepiece"; documents end with the model's eos.
  std::string kind() const override { return "sentencepiece"; }
  Result<std::vector<int32_t>> encode_document(std::string_view text) const override {
    return encode(text);
  }
  int32_t vocab_size() const override { return static_cast<int32_t>(pieces_.size()); }
  int32_t eos_id() const override { return eos_; }
  int32_t bos_id() const { return bos_; }
  int32_t unk_id() const { return unk_; }
  int32_t pad_id() const { return pad_; }

  // The id of `piece`, or -1 when the vocabulary has no such piece.
  int32_t piece_id(std::string_view piece) const;
  // The piece and type of `id` (0 <= id < vocab_size()).
  const std::string& piece(int32_t id) const;
  PieceType type(int32_t id) const;
  // "unigram", "bpe", "word" or "char" (the trainer's --model_type).
  const std::string& model_type() const { return model_type_; }
  // Whether characters outside the pieces become byte pieces (trained with --byte_fallback).
  bool byte_fallback() const { return byte_fallback_; }

 private:
  SentencePieceTokenizer();
  struct Impl;  // the library's processor
  std::unique_ptr<Impl> impl_;
  std::vector<std::string> pieces_;
  std::vector<PieceType> types_;
  std::string model_type_ = "unigram";
  bool byte_fallback_ = false;
  int32_t unk_ = -1, bos_ = -1, eos_ = -1, pad_ = -1;
};

}  // namespace alpa
