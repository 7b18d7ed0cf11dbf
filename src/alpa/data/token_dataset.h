// Token datasets: text files tokenized once into flat token arrays a training run reads
// memory-mapped.
//
// A dataset is a directory:
//   header.json      {"format": "alpa-tokens/1", "tokenizer": "gpt2-bpe", "vocab_size": 50257,
//                     "dtype": "uint16", "eot": 50256, "documents": 12, "files": [...],
//                     "train": {"file": "train.bin", "tokens": N, "checksum": "..."},
//                     "validation": {"file": "validation.bin", "tokens": M, "checksum": "..."}}
//   train.bin        N tokens, little-endian uint16 (uint32 when the vocabulary needs it)
//   validation.bin   M tokens
// Each input file is one document, followed by the end-of-text token; the last
// `validation_fraction` of the token stream is held out for validation.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "alpa/data/bpe_tokenizer.h"
#include "alpa/data/tokenizer.h"
#include "alpa/support/status.h"

namespace alpa {

inline constexpr std::string_view kTokenDatasetFormat = "alpa-tokens/1";

struct TokenDatasetInfo {
  std::string tokenizer = "gpt2-bpe";
  int64_t vocab_size = 0;
  int32_t eot = -1;
  int64_t documents = 0;
  int64_t train_tokens = 0;
  int64_t validation_tokens = 0;
  std::vector<std::string> files;
  int bytes_per_token() const { return vocab_size <= 65536 ? 2 : 4; }
};

// Tokenizes `files` (each a document, followed by the tokenizer's eos id) into a dataset in
// `dir` (created; its files written through temporaries). `progress`, if set, is called after
// each file.
Result<TokenDatasetInfo> write_token_dataset(
    const std::string& dir, const Tokenizer& tokenizer, const std::vector<std::string>& files,
    double validation_fraction = 0.1,
    const std::function<void(const std::string& file, int64_t tokens)>& progress = {});

enum class Split { kTrain, kValidation };

class TokenDataset {
 public:
  // Opens and checks a dataset: the header's fields, each file's size against its token count,
  // its checksum, and every token below the vocabulary size. Errors name the file and field.
  static Result<TokenDataset> open(const std::string& dir);
  ~TokenDataset();
  TokenDataset(TokenDataset&&) noexcept;
  TokenDataset& operator=(TokenDataset&&) noexcept;

  const TokenDatasetInfo& info() const { return info_; }
  int64_t size(Split s) const {
    return s == Split::kTrain ? info_.train_tokens : info_.validation_tokens;
  }
  int32_t token(Split s, int64_t i) const;

 private:
  TokenDataset() = default;
  struct Mapped;
  TokenDatasetInfo info_;
  std::unique_ptr<Mapped> train_, validation_;
};

}  // namespace alpa
