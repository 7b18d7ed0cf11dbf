// alpa data prepare: text files -> a token dataset (data/token_dataset.h).
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <vector>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/data/sentencepiece_tokenizer.h"
#include "alpa/data/token_dataset.h"
#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

namespace {

// The entropy of the training split's unigram distribution, in nats per token: the loss of a
// model that knows only token frequencies, the bar a trained model must clear.
double unigram_entropy(const TokenDataset& ds) {
  std::vector<int64_t> count(static_cast<size_t>(ds.info().vocab_size), 0);
  const int64_t n = ds.size(Split::kTrain);
  for (int64_t i = 0; i < n; ++i) ++count[static_cast<size_t>(ds.token(Split::kTrain, i))];
  double h = 0;
  for (int64_t c : count)
    if (c > 0) {
      const double p = static_cast<double>(c) / static_cast<double>(n);
      h -= p * std::log(p);
    }
  return h;
}

// --tokenizer FILE: a Hugging Face tokenizer.json (JSON: its first non-blank byte is '{') or
// a SentencePiece model (a binary protocol buffer, which never starts so).
Result<std::unique_ptr<Tokenizer>> load_tokenizer_file(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  const size_t first = bytes.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && bytes[first] == '{') {
    ALPA_ASSIGN_OR_RETURN(BpeTokenizer bpe, BpeTokenizer::from_tokenizer_json(bytes, path));
    return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(std::move(bpe)));
  }
  ALPA_ASSIGN_OR_RETURN(SentencePieceTokenizer sp, SentencePieceTokenizer::from_bytes(bytes, path));
  return std::unique_ptr<Tokenizer>(std::make_unique<SentencePieceTokenizer>(std::move(sp)));
}

Result<std::unique_ptr<Tokenizer>> load_tokenizer(const DataPrepareFlags& f) {
  if (!f.tokenizer_json.empty()) return load_tokenizer_file(f.tokenizer_json);
  ALPA_ASSIGN_OR_RETURN(BpeTokenizer bpe, BpeTokenizer::load(f.vocab, f.merges));
  return std::unique_ptr<Tokenizer>(std::make_unique<BpeTokenizer>(std::move(bpe)));
}

}  // namespace

int run_data_prepare(const DataPrepareFlags& f, std::ostream& out, std::ostream& err) {
  auto fail = [&](const Status& s) { return report_error(s, f.json, out, err); };
  const auto t0 = std::chrono::steady_clock::now();
  if (f.tokenizer_json.empty() == (f.vocab.empty() || f.merges.empty()))
    return fail(invalid_argument("give either --vocab and --merges, or --tokenizer",
                                 "GPT-2's files: --vocab encoder.json --merges vocab.bpe; a "
                                 "Hugging Face model's: --tokenizer tokenizer.json; a "
                                 "SentencePiece model's: --tokenizer tokenizer.model"));
  Result<std::unique_ptr<Tokenizer>> tok = load_tokenizer(f);
  if (!tok.ok()) return fail(tok.status());
  Result<TokenDatasetInfo> info = write_token_dataset(
      f.out, **tok, f.files, f.validation, [&](const std::string& file, int64_t tokens) {
        if (!f.json) err << "  " << file << ": " << format_count(tokens) << " tokens\n";
      });
  if (!info.ok()) return fail(info.status());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Result<TokenDataset> ds = TokenDataset::open(f.out);  // read back: what training will see
  if (!ds.ok()) return fail(ds.status());
  const double entropy = unigram_entropy(*ds);
  if (f.json) {
    nlohmann::ordered_json j = {{"command", "data prepare"},
                                {"out", f.out},
                                {"tokenizer", info->tokenizer},
                                {"vocab_size", info->vocab_size},
                                {"documents", info->documents},
                                {"train_tokens", info->train_tokens},
                                {"validation_tokens", info->validation_tokens},
                                {"unigram_entropy_nats", entropy},
                                {"seconds", seconds}};
    out << json_line(j) << "\n";
    return kExitOk;
  }
  const int64_t total = info->train_tokens + info->validation_tokens;
  out << "alpa data prepare: " << info->documents << " documents, " << format_count(total)
      << " tokens (vocabulary " << format_count(info->vocab_size) << ") in "
      << format_seconds(seconds) << "\n"
      << "  train       " << format_count(info->train_tokens) << " tokens\n"
      << "  validation  " << format_count(info->validation_tokens) << " tokens\n"
      << "  unigram entropy of the training tokens: " << format_fixed(entropy, 3)
      << " nats/token (a model that learns only token frequencies reaches this loss)\n"
      << "wrote " << f.out << " (train on it: alpa train --data " << f.out << " --vocab "
      << info->vocab_size << ")\n";
  return kExitOk;
}

}  // namespace alpa
