// SentencePiece models (data/sentencepiece_tokenizer.h) against Debian's spm_encode and
// spm_decode: a unigram model (NFKC normalization) and a LLaMA-style BPE model (identity
// normalization, whitespace kept, digits split), both with byte fallback and a user-defined
// symbol, trained at test time by spm_train (the data.sentencepiece_reference fixture, see
// tools/sentencepiece_reference.sh). Every line of licences, docs, code, a Unicode sample and a
// whitespace sample must give the reference's ids; decoding must give spm_decode's text; files
// that are not models are refused naming them, and damaged models never crash; `alpa data
// prepare --tokenizer X.model` writes a dataset with the model's vocabulary and eos.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/data/sentencepiece_tokenizer.h"
#include "alpa/data/token_dataset.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;
using PieceType = SentencePieceTokenizer::PieceType;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void spill(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Lines as spm_encode reads them (std::getline: no final empty line after a last '\n').
std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<int32_t> ids_of(const std::string& line) {
  std::vector<int32_t> ids;
  std::istringstream in(line);
  for (int32_t id; in >> id;) ids.push_back(id);
  return ids;
}

std::string model_path(const std::string& name) {
  return std::string(SP_DIR) + "/" + name + ".model";
}

const SentencePieceTokenizer& model(const std::string& path) {
  static std::map<std::string, SentencePieceTokenizer> loaded;
  auto it = loaded.find(path);
  if (it == loaded.end()) {
    Result<SentencePieceTokenizer> r = SentencePieceTokenizer::load(path);
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    it = loaded.emplace(path, std::move(r).value()).first;
  }
  return it->second;
}

struct Case {
  std::string model, text, ids, decoded;
};
std::vector<Case> manifest() {
  std::vector<Case> cases;
  for (const std::string& line : lines_of(slurp(std::string(SP_DIR) + "/manifest.tsv"))) {
    std::istringstream in(line);
    Case c;
    std::getline(in, c.model, '\t');
    std::getline(in, c.text, '\t');
    std::getline(in, c.ids, '\t');
    std::getline(in, c.decoded, '\t');
    cases.push_back(c);
  }
  return cases;
}

std::string ids_text(const std::vector<int32_t>& ids, size_t from) {
  std::string s;
  for (size_t i = from; i < ids.size() && i < from + 8; ++i) s += std::to_string(ids[i]) + " ";
  return s;
}

struct Tally {
  int64_t texts = 0, lines = 0, tokens = 0, mismatched = 0, byte_tokens = 0, user_tokens = 0;
};

TEST(SentencePiece, SameIdsAsSpmEncodeLineByLine) {
  const std::vector<Case> cases = manifest();
  ASSERT_GE(cases.size(), 10u);
  std::map<std::string, Tally> by_model;
  for (const Case& c : cases) {
    const SentencePieceTokenizer& sp = model(c.model);
    const std::vector<std::string> lines = lines_of(slurp(c.text));
    const std::vector<std::string> want = lines_of(slurp(c.ids));
    ASSERT_EQ(lines.size(), want.size()) << c.text << " vs " << c.ids;
    Tally& t = by_model[fs::path(c.model).stem().string()];
    ++t.texts;
    for (size_t i = 0; i < lines.size(); ++i) {
      Result<std::vector<int32_t>> got = sp.encode(lines[i]);
      ASSERT_TRUE(got.ok()) << c.text << ":" << i + 1 << ": " << got.status().to_string();
      const std::vector<int32_t> ref = ids_of(want[i]);
      ++t.lines;
      t.tokens += static_cast<int64_t>(ref.size());
      for (int32_t id : *got) {
        t.byte_tokens += sp.type(id) == PieceType::kByte;
        t.user_tokens += sp.type(id) == PieceType::kUserDefined;
      }
      if (*got == ref) continue;
      size_t at = 0;
      while (at < ref.size() && at < got->size() && (*got)[at] == ref[at]) ++at;
      if (++t.mismatched <= 5)
        ADD_FAILURE() << c.model << " on " << c.text << ":" << i + 1 << ": ids differ at token "
                      << at << ": spm_encode " << ids_text(ref, at) << "vs " << ids_text(*got, at);
    }
  }
  ASSERT_EQ(by_model.size(), 2u);
  for (const auto& [name, t] : by_model) {
    std::printf(
        "%s: compared %lld lines of %lld texts, %lld tokens: %lld lines differ "
        "(%lld byte-fallback tokens, %lld user-defined)\n",
        name.c_str(), static_cast<long long>(t.lines), static_cast<long long>(t.texts),
        static_cast<long long>(t.tokens), static_cast<long long>(t.mismatched),
        static_cast<long long>(t.byte_tokens), static_cast<long long>(t.user_tokens));
    EXPECT_EQ(t.mismatched, 0) << name;
    EXPECT_GT(t.tokens, 50000) << name;  // a large comparison, not a token sample
    EXPECT_GT(t.byte_tokens, 0) << name << ": byte fallback never exercised";
    EXPECT_GT(t.user_tokens, 0) << name << ": the user-defined symbol never matched";
  }
}

TEST(SentencePiece, DecodeGivesSpmDecodesTextAndTheLlamaStyleModelRoundTrips) {
  int64_t lines = 0, round_trips = 0;
  for (const Case& c : manifest()) {
    const SentencePieceTokenizer& sp = model(c.model);
    const std::vector<std::string> ids = lines_of(slurp(c.ids));
    const std::vector<std::string> want = lines_of(slurp(c.decoded));
    const std::vector<std::string> text = lines_of(slurp(c.text));
    ASSERT_EQ(ids.size(), want.size()) << c.decoded;
    for (size_t i = 0; i < ids.size(); ++i) {
      Result<std::string> got = sp.decode(ids_of(ids[i]));
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      EXPECT_EQ(*got, want[i]) << c.model << " on " << c.ids << ":" << i + 1;
      ++lines;
      // Identity normalization keeping whitespace: decoding gives back the very text.
      if (sp.model_type() != "bpe") continue;
      EXPECT_EQ(*sp.decode(*sp.encode(text[i])), text[i]) << c.text << ":" << i + 1;
      ++round_trips;
    }
  }
  std::printf("decoded %lld lines as spm_decode does; %lld exact round trips\n",
              static_cast<long long>(lines), static_cast<long long>(round_trips));
  EXPECT_GT(round_trips, 1000);
}

TEST(SentencePiece, SpecialTokensAndByteFallbackComeFromTheModel) {
  const SentencePieceTokenizer& uni = model(model_path("unigram"));
  const SentencePieceTokenizer& bpe = model(model_path("bpe"));
  EXPECT_EQ(uni.vocab_size(), 1000);
  EXPECT_EQ(uni.kind(), "sentencepiece");
  EXPECT_EQ(uni.model_type(), "unigram");
  EXPECT_EQ(bpe.model_type(), "bpe");
  EXPECT_TRUE(uni.byte_fallback() && bpe.byte_fallback());
  // spm_train's defaults, and --pad_id=3 for the unigram model.
  EXPECT_EQ(uni.unk_id(), 0);
  EXPECT_EQ(uni.bos_id(), 1);
  EXPECT_EQ(uni.eos_id(), 2);
  EXPECT_EQ(uni.pad_id(), 3);
  EXPECT_EQ(bpe.pad_id(), -1);
  EXPECT_EQ(uni.piece(1), "<s>");
  EXPECT_EQ(uni.piece(2), "</s>");
  EXPECT_EQ(uni.type(0), PieceType::kUnknown);
  EXPECT_EQ(uni.type(2), PieceType::kControl);
  EXPECT_EQ(uni.piece_id("no such piece"), -1);
  for (const SentencePieceTokenizer* sp : {&uni, &bpe}) {
    const int32_t sep = sp->piece_id("<|sep|>");
    ASSERT_GE(sep, 0);
    EXPECT_EQ(sp->type(sep), PieceType::kUserDefined);
    const std::vector<int32_t> ids = *sp->encode("a<|sep|>b");
    EXPECT_NE(std::find(ids.begin(), ids.end(), sep), ids.end());
    // Control pieces are not matched in text and decode to nothing.
    const std::vector<int32_t> s = *sp->encode("<s></s>");
    EXPECT_EQ(std::count(s.begin(), s.end(), sp->bos_id()), 0);
    EXPECT_EQ(*sp->decode({sp->bos_id(), ids[0], sp->eos_id()}), *sp->decode({ids[0]}));
    // A character no piece covers (U+F0000, private use: in no training text) becomes its
    // four UTF-8 bytes as byte pieces, and decodes back to it.
    const std::string private_use = "\xf3\xb0\x80\x80";
    const std::vector<int32_t> fallback = *sp->encode(private_use);
    int bytes = 0;
    for (int32_t id : fallback) bytes += sp->type(id) == PieceType::kByte;
    EXPECT_EQ(bytes, 4) << ids_text(fallback, 0);
    EXPECT_EQ(sp->piece_id("<0xF3>"), fallback[fallback.size() - 4]);
    EXPECT_EQ(*sp->decode(fallback), private_use);
    // Bad input is an error, not a crash.
    Result<std::vector<int32_t>> bad = sp->encode("abc \xff");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(bad.status().message().find("not UTF-8 at byte 4"), std::string::npos)
        << bad.status().message();
    EXPECT_FALSE(sp->encode("\xed\xa0\x80").ok());  // a surrogate
    EXPECT_FALSE(sp->decode({sp->vocab_size()}).ok());
    EXPECT_FALSE(sp->decode({-1}).ok());
  }
}

// The body (offset, length) of the first length-delimited field `number` of a message.
std::pair<size_t, size_t> field_body(const std::string& msg, size_t from, size_t to,
                                     uint64_t number) {
  auto varint = [&](size_t& p) {
    uint64_t v = 0;
    for (int shift = 0; p < to; shift += 7) {
      const auto b = static_cast<unsigned char>(msg[p++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  };
  size_t p = from;
  while (p < to) {
    const uint64_t tag = varint(p);
    const int wire = static_cast<int>(tag & 7);
    uint64_t len = 0;
    if (wire == 0) varint(p);
    if (wire == 1 || wire == 5) p += wire == 1 ? 8 : 4;
    if (wire == 2) len = varint(p);
    if (wire == 2 && (tag >> 3) == number) return {p, static_cast<size_t>(len)};
    p += static_cast<size_t>(len);
  }
  return {0, 0};
}

void expect_refused(const std::string& path, const std::string& why) {
  Result<SentencePieceTokenizer> r = SentencePieceTokenizer::load(path);
  ASSERT_FALSE(r.ok()) << path;
  const std::string& m = r.status().message();
  EXPECT_NE(m.find(path), std::string::npos) << m;
  EXPECT_NE(m.find(why), std::string::npos) << m;
  EXPECT_FALSE(r.status().hint().empty()) << m;
}

TEST(SentencePiece, FilesThatAreNotModelsAreRefusedNamingThem) {
  const std::string dir = ::testing::TempDir();
  const std::string good = slurp(model_path("unigram"));
  std::mt19937 rng(7);
  std::string noise(4096, '\0');
  for (char& ch : noise) ch = static_cast<char>(rng());
  const std::vector<std::pair<std::string, std::string>> files = {
      {"empty.model", ""},
      {"garbage.model", noise},
      {"truncated.model", good.substr(0, good.size() / 2)},
      {"tokenizer.json", R"({"model": {"type": "BPE", "vocab": {}, "merges": []}})"},
      {"readme.model", slurp(std::string(ALPA_SOURCE_DIR) + "/README.md")},
      {"zeros.model", std::string(64, '\0')}};
  for (const auto& [name, bytes] : files) {
    spill(dir + "/" + name, bytes);
    expect_refused(dir + "/" + name, "not a SentencePiece model");
  }
  EXPECT_FALSE(SentencePieceTokenizer::load(dir + "/no-such.model").ok());
  expect_refused(dir + "/readme.model", "the file is text (it begins \"# alpa-cpp");

  // Planted damage in the normalization map, which the library would search out of bounds.
  const auto [spec, spec_len] = field_body(good, 0, good.size(), 3);       // normalizer_spec
  const auto [map, map_len] = field_body(good, spec, spec + spec_len, 2);  // its charsmap
  ASSERT_GT(map_len, 1024u) << "the unigram model has no normalization map";
  std::string far = good;
  const uint32_t root = 0x3FFFFFu << 10;  // the root's children 4M units away
  std::memcpy(&far[map + 4], &root, 4);
  spill(dir + "/far.model", far);
  expect_refused(dir + "/far.model", "normalization map: node 0's children lie outside");
  std::string oversized = good;
  const uint32_t trie_bytes = 0x7FFFFFF0u;
  std::memcpy(&oversized[map], &trie_bytes, 4);
  spill(dir + "/oversized.model", oversized);
  expect_refused(dir + "/oversized.model", "normalization map: a trie of");
}

// Damaged copies of a model (bytes changed, the end cut) each load and tokenize a varied text,
// or are refused naming the file; none may crash the process.
TEST(SentencePiece, DamagedModelsNeverCrash) {
  const std::string good = slurp(model_path("unigram"));
  const std::string text = slurp(std::string(ALPA_SOURCE_DIR) + "/tests/data/unicode_sample.txt") +
                           " code(x) {  }\t<|sep|>\n";
  std::mt19937 rng(2024);
  int loaded = 0, refused = 0;
  for (int k = 0; k < 600; ++k) {
    std::string bytes = good;
    if (k % 3 == 0) {
      bytes.resize(rng() % bytes.size());
    } else {
      for (int f = 1 + static_cast<int>(rng() % 8); f > 0; --f)
        bytes[rng() % bytes.size()] = static_cast<char>(rng());
    }
    Result<SentencePieceTokenizer> t = SentencePieceTokenizer::from_bytes(bytes, "damaged.model");
    if (!t.ok()) {
      ++refused;
      EXPECT_EQ(t.status().message().rfind("damaged.model: ", 0), 0u) << t.status().message();
      continue;
    }
    ++loaded;
    Result<std::vector<int32_t>> ids = t->encode(text);
    if (ids.ok()) (void)t->decode(*ids);
  }
  std::printf("600 damaged models: %d loaded and tokenized, %d refused\n", loaded, refused);
  EXPECT_GT(loaded, 0);
  EXPECT_GT(refused, 0);
}

using test_support::CmdRun;
CmdRun prepare(const std::string& tokenizer, const std::string& out_dir,
               const std::vector<std::string>& files) {
  DataPrepareFlags f;
  f.tokenizer_json = tokenizer;
  f.out = out_dir;
  f.files = files;
  f.json = true;
  return test_support::run(run_data_prepare, f);
}

TEST(SentencePieceDataset, PrepareWritesTheModelsVocabularyAndEos) {
  const std::string dir = (fs::path(::testing::TempDir()) / "sp_dataset").string();
  fs::remove_all(dir);
  const std::vector<std::string> files = {
      std::string(ALPA_SOURCE_DIR) + "/README.md",
      std::string(ALPA_SOURCE_DIR) + "/tests/data/unicode_sample.txt"};
  const SentencePieceTokenizer& sp = model(model_path("unigram"));
  const CmdRun r = prepare(model_path("unigram"), dir, files);
  ASSERT_EQ(r.code, kExitOk) << r.err << r.out;
  EXPECT_EQ(nlohmann::json::parse(r.out)["vocab_size"], 1000) << r.out;
  const nlohmann::json header = nlohmann::json::parse(slurp(dir + "/header.json"));
  EXPECT_EQ(header["tokenizer"], "sentencepiece");
  EXPECT_EQ(header["vocab_size"], sp.vocab_size());
  EXPECT_EQ(header["eot"], sp.eos_id());
  Result<TokenDataset> ds = TokenDataset::open(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().to_string();
  EXPECT_EQ(ds->info().vocab_size, 1000);
  EXPECT_EQ(ds->info().eot, 2);
  // The stream is each file's ids followed by the model's eos.
  std::vector<int32_t> want, got;
  for (const std::string& f : files) {
    const std::vector<int32_t> ids = *sp.encode(slurp(f));
    want.insert(want.end(), ids.begin(), ids.end());
    want.push_back(sp.eos_id());
  }
  for (Split s : {Split::kTrain, Split::kValidation})
    for (int64_t i = 0; i < ds->size(s); ++i) got.push_back(ds->token(s, i));
  EXPECT_EQ(got, want);

  // A model without eos cannot separate documents; a file that is neither format says so; a
  // JSON file goes to the tokenizer.json reader.
  const CmdRun noeos = prepare(model_path("noeos"), dir + "_noeos", files);
  EXPECT_EQ(noeos.code, kExitUserError);
  EXPECT_NE(noeos.out.find("no end-of-text token"), std::string::npos) << noeos.out;
  const std::string junk = (fs::path(::testing::TempDir()) / "junk.model").string();
  spill(junk, "not a model at all\n");
  const CmdRun bad = prepare(junk, dir + "_junk", files);
  EXPECT_EQ(bad.code, kExitUserError);
  EXPECT_NE(bad.out.find(junk + ": not a SentencePiece model"), std::string::npos) << bad.out;
  const std::string json = (fs::path(::testing::TempDir()) / "unigram.json").string();
  spill(json, R"({"model": {"type": "Unigram"}})");
  const CmdRun js = prepare(json, dir + "_json", files);
  EXPECT_EQ(js.code, kExitUserError);
  EXPECT_NE(js.out.find(json), std::string::npos) << js.out;
  EXPECT_EQ(js.out.find("SentencePiece model"), std::string::npos) << js.out;
}

}  // namespace
}  // namespace alpa
