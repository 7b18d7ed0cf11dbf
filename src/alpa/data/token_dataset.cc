#include "alpa/data/token_dataset.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "alpa/support/files.h"
#include "alpa/support/hash.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

std::string checksum_of(std::string_view bytes) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(hash_string(bytes)));
  return buf;
}

// Little-endian tokens of `bytes_per_token` bytes each.
std::string token_bytes(const std::vector<int32_t>& tokens, size_t begin, size_t end, int width) {
  std::string out;
  out.reserve((end - begin) * static_cast<size_t>(width));
  for (size_t i = begin; i < end; ++i) {
    const auto t = static_cast<uint32_t>(tokens[i]);
    for (int b = 0; b < width; ++b) out += static_cast<char>((t >> (8 * b)) & 0xFF);
  }
  return out;
}

const char* kHint =
    "prepare the dataset again with `alpa data prepare --vocab V --merges M --out DIR FILES`";

}  // namespace

Result<TokenDatasetInfo> write_token_dataset(
    const std::string& dir, const Tokenizer& tokenizer, const std::vector<std::string>& files,
    double validation_fraction,
    const std::function<void(const std::string& file, int64_t tokens)>& progress) {
  if (files.empty()) return invalid_argument("no input files", "name the text files to tokenize");
  if (!(validation_fraction >= 0 && validation_fraction < 1))
    return invalid_argument(
        cat("the validation fraction must be in [0, 1), got ", validation_fraction));
  const int32_t eot = tokenizer.eos_id();
  if (eot < 0)
    return failed_precondition(cat("the ", tokenizer.kind(), " tokenizer has no end-of-text token"),
                               "documents are separated by it: GPT-2's <|endoftext|>, a "
                               "SentencePiece model's eos (spm_train --eos_id)");
  TokenDatasetInfo info;
  info.tokenizer = tokenizer.kind();
  info.vocab_size = tokenizer.vocab_size();
  info.eot = eot;
  std::vector<int32_t> tokens;
  for (const std::string& f : files) {
    ALPA_ASSIGN_OR_RETURN(std::string text, read_file(f));
    Result<std::vector<int32_t>> ids = tokenizer.encode_document(text);
    if (!ids.ok()) return ids.status().with_context(f);
    tokens.insert(tokens.end(), ids->begin(), ids->end());
    tokens.push_back(eot);
    ++info.documents;
    info.files.push_back(fs::path(f).filename().string());
    if (progress) progress(f, static_cast<int64_t>(ids->size()) + 1);
  }
  const auto total = static_cast<int64_t>(tokens.size());
  info.validation_tokens =
      static_cast<int64_t>(std::floor(static_cast<double>(total) * validation_fraction));
  info.train_tokens = total - info.validation_tokens;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io_error(cat("cannot create ", dir, ": ", ec.message()));
  const int width = info.bytes_per_token();
  const std::string train = token_bytes(tokens, 0, static_cast<size_t>(info.train_tokens), width);
  const std::string val =
      token_bytes(tokens, static_cast<size_t>(info.train_tokens), tokens.size(), width);
  ALPA_RETURN_IF_ERROR(write_file((fs::path(dir) / "train.bin").string(), train));
  ALPA_RETURN_IF_ERROR(write_file((fs::path(dir) / "validation.bin").string(), val));
  json header = {
      {"format", std::string(kTokenDatasetFormat)},
      {"tokenizer", info.tokenizer},
      {"vocab_size", info.vocab_size},
      {"dtype", width == 2 ? "uint16" : "uint32"},
      {"eot", info.eot},
      {"documents", info.documents},
      {"files", info.files},
      {"train",
       {{"file", "train.bin"}, {"tokens", info.train_tokens}, {"checksum", checksum_of(train)}}},
      {"validation",
       {{"file", "validation.bin"},
        {"tokens", info.validation_tokens},
        {"checksum", checksum_of(val)}}}};
  ALPA_RETURN_IF_ERROR(write_file((fs::path(dir) / "header.json").string(),
                                  json_line(header) + "\n"));  // written last
  return info;
}

// ---- reading ------------------------------------------------------------------------------

struct TokenDataset::Mapped {
  const unsigned char* data = nullptr;
  size_t bytes = 0;
  ~Mapped() {
    if (data && bytes) ::munmap(const_cast<unsigned char*>(data), bytes);
  }
};

TokenDataset::~TokenDataset() = default;
TokenDataset::TokenDataset(TokenDataset&&) noexcept = default;
TokenDataset& TokenDataset::operator=(TokenDataset&&) noexcept = default;

int32_t TokenDataset::token(Split s, int64_t i) const {
  const Mapped& m = s == Split::kTrain ? *train_ : *validation_;
  const int w = info_.bytes_per_token();
  const unsigned char* p = m.data + static_cast<size_t>(i) * static_cast<size_t>(w);
  uint32_t t = 0;
  for (int b = 0; b < w; ++b) t |= static_cast<uint32_t>(p[b]) << (8 * b);
  return static_cast<int32_t>(t);
}

Result<TokenDataset> TokenDataset::open(const std::string& dir) {
  const std::string header_path = (fs::path(dir) / "header.json").string();
  Result<std::string> text = read_file(header_path, int64_t{64} << 20);
  if (!text.ok())
    return text.status().with_context(cat("dataset ", dir, " (no header.json: not a dataset?)"));
  const nlohmann::json h = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return invalid_argument(cat(header_path, ": ", what), kHint);
  };
  if (h.is_discarded() || !h.is_object()) return bad("not a JSON object (truncated?)");
  if (json_string_or(h, "format") != kTokenDatasetFormat)
    return bad(cat("\"format\" must be \"", kTokenDatasetFormat, "\", got ",
                   json_excerpt(h.contains("format") ? h["format"] : nlohmann::json())));
  TokenDataset ds;
  TokenDatasetInfo& info = ds.info_;
  auto integer = [&](const nlohmann::json& j, const char* key, int64_t lo, int64_t hi,
                     int64_t& out) -> Status {
    if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() < lo ||
        j[key].get<int64_t>() > hi)
      return bad(cat("\"", key, "\" must be an integer from ", lo, " to ", hi));
    out = j[key].get<int64_t>();
    return ok_status();
  };
  ALPA_RETURN_IF_ERROR(integer(h, "vocab_size", 2, int64_t{1} << 31, info.vocab_size));
  int64_t eot = 0;
  ALPA_RETURN_IF_ERROR(integer(h, "eot", 0, info.vocab_size - 1, eot));
  info.eot = static_cast<int32_t>(eot);
  ALPA_RETURN_IF_ERROR(integer(h, "documents", 0, int64_t{1} << 40, info.documents));
  const std::string want_dtype = info.bytes_per_token() == 2 ? "uint16" : "uint32";
  if (json_string_or(h, "dtype") != want_dtype)
    return bad(cat("\"dtype\" must be \"", want_dtype, "\" for ", info.vocab_size, " symbols"));
  info.tokenizer = json_string_or(h, "tokenizer");
  for (Split s : {Split::kTrain, Split::kValidation}) {
    const char* key = s == Split::kTrain ? "train" : "validation";
    if (!h.contains(key) || !h[key].is_object()) return bad(cat("\"", key, "\" is missing"));
    const nlohmann::json& part = h[key];
    int64_t n = 0;
    ALPA_RETURN_IF_ERROR(integer(part, "tokens", 0, int64_t{1} << 40, n));
    (s == Split::kTrain ? info.train_tokens : info.validation_tokens) = n;
    const std::string file = json_string_or(part, "file");
    if (file.empty() || file.find('/') != std::string::npos)
      return bad(cat("\"", key, ".file\" must be a plain file name"));
    const std::string path = (fs::path(dir) / file).string();
    const int fd = ::open(path.c_str(), O_RDONLY);
    if (fd < 0) return not_found(cat("dataset file ", path, ": ", std::strerror(errno)), kHint);
    struct stat st {};
    ::fstat(fd, &st);
    const int64_t want = n * info.bytes_per_token();
    if (!S_ISREG(st.st_mode) || st.st_size != want) {
      ::close(fd);
      return invalid_argument(cat("dataset file ", path, " has ", st.st_size, " bytes; the ",
                                  "header says ", n, " tokens of ", info.bytes_per_token(),
                                  " bytes (", want, "): truncated or from another dataset"),
                              kHint);
    }
    auto m = std::make_unique<Mapped>();
    if (want > 0) {
      void* p = ::mmap(nullptr, static_cast<size_t>(want), PROT_READ, MAP_PRIVATE, fd, 0);
      if (p == MAP_FAILED) {
        ::close(fd);
        return io_error(cat("cannot map ", path, ": ", std::strerror(errno)));
      }
      m->data = static_cast<const unsigned char*>(p);
      m->bytes = static_cast<size_t>(want);
    }
    ::close(fd);
    const std::string_view bytes(reinterpret_cast<const char*>(m->data), m->bytes);
    if (json_string_or(part, "checksum") != checksum_of(bytes))
      return invalid_argument(cat("dataset file ", path, " does not match its checksum in ",
                                  header_path, " (corrupted?)"),
                              kHint);
    (s == Split::kTrain ? ds.train_ : ds.validation_) = std::move(m);
  }
  for (Split s : {Split::kTrain, Split::kValidation})
    for (int64_t i = 0; i < ds.size(s); ++i)
      if (ds.token(s, i) >= info.vocab_size)
        return invalid_argument(cat("dataset ", dir, ": token ", i, " is ", ds.token(s, i),
                                    ", not below the vocabulary size ", info.vocab_size),
                                kHint);
  return ds;
}

}  // namespace alpa
