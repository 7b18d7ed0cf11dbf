#include "alpa/data/bpe_tokenizer.h"

#include <unicode/uchar.h>

#include <limits>
#include <nlohmann/json.hpp>

#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

// ---- UTF-8 --------------------------------------------------------------------------------

// Decodes `text` into code points; the error names the byte offset of an invalid sequence.
Status decode_utf8(std::string_view text, std::vector<char32_t>& out) {
  out.clear();
  size_t i = 0;
  while (i < text.size()) {
    const auto b0 = static_cast<unsigned char>(text[i]);
    int len = b0 < 0x80 ? 1 : (b0 >> 5) == 6 ? 2 : (b0 >> 4) == 14 ? 3 : (b0 >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + static_cast<size_t>(len) > text.size())
      return invalid_argument(cat("the text is not valid UTF-8 at byte ", i));
    char32_t c = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(text[i + static_cast<size_t>(k)]);
      if ((b >> 6) != 2) return invalid_argument(cat("the text is not valid UTF-8 at byte ", i));
      c = (c << 6) | (b & 0x3F);
    }
    const char32_t min = len == 1 ? 0 : len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      return invalid_argument(cat("the text is not valid UTF-8 at byte ", i));
    out.push_back(c);
    i += static_cast<size_t>(len);
  }
  return ok_status();
}

void append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

// ---- character classes of the pattern (JavaScript's \s, \p{L}, \p{N}) ---------------------

bool is_space(char32_t c) {
  switch (c) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0xA0:
    case 0xFEFF:
    case 0x2028:
    case 0x2029: return true;
    default: return u_charType(static_cast<UChar32>(c)) == U_SPACE_SEPARATOR;
  }
}
bool is_letter(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_L_MASK) != 0;
}
bool is_number(char32_t c) {
  return (U_GET_GC_MASK(static_cast<UChar32>(c)) & U_GC_N_MASK) != 0;
}
bool is_other(char32_t c) {
  return !is_space(c) && !is_letter(c) && !is_number(c);
}

// The end of the pre-token that starts at i (GPT-2's alternatives, tried in order).
size_t piece_end(const std::vector<char32_t>& s, size_t i) {
  const size_t n = s.size();
  if (s[i] == '\'') {
    for (const char* c : {"s", "t", "re", "ve", "m", "ll", "d"}) {
      size_t k = 0;
      while (c[k] && i + 1 + k < n && s[i + 1 + k] == static_cast<char32_t>(c[k])) ++k;
      if (!c[k]) return i + 1 + k;
    }
  }
  for (bool (*cls)(char32_t) : {is_letter, is_number, is_other}) {
    size_t j = i + (s[i] == ' ' ? 1 : 0);
    if (j < n && cls(s[j])) {
      while (j < n && cls(s[j])) ++j;
      return j;
    }
  }
  size_t k = i;  // a whitespace run; all but its last character when text follows it
  while (k < n && is_space(s[k])) ++k;
  if (k < n && k - i >= 2) return k - 1;
  return k;
}

}  // namespace

// ---- loading ------------------------------------------------------------------------------

Result<BpeTokenizer> BpeTokenizer::from_text(std::string_view vocab_json, std::string_view merges,
                                             std::vector<std::string> special,
                                             std::string_view vocab_name,
                                             std::string_view merges_name) {
  BpeTokenizer t;
  nlohmann::json vocab = nlohmann::json::parse(vocab_json, nullptr, /*allow_exceptions=*/false);
  if (vocab.is_discarded() || !vocab.is_object())
    return invalid_argument(cat(vocab_name, ": not a JSON object of symbol -> id"),
                            "give GPT-2's encoder.json / a tokenizer's vocab.json");
  const int64_t n = static_cast<int64_t>(vocab.size());
  if (n < 256 || n > (int64_t{1} << 24))
    return invalid_argument(cat(vocab_name, ": ", n, " symbols; a byte-level BPE vocabulary has ",
                                "at least the 256 byte symbols"));
  t.symbols_.assign(static_cast<size_t>(n), std::string());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() >= n)
      return invalid_argument(
          cat(vocab_name, ": the id of '", it.key(), "' is not an integer in ", "[0, ", n, ")"));
    const auto id = static_cast<int32_t>(it->get<int64_t>());
    if (!t.symbols_[static_cast<size_t>(id)].empty())
      return invalid_argument(cat(vocab_name, ": id ", id, " is given to '", it.key(), "' and '",
                                  t.symbols_[static_cast<size_t>(id)], "'"));
    t.symbols_[static_cast<size_t>(id)] = it.key();
    t.ids_[it.key()] = id;
  }
  // The byte symbols: printable Latin-1 bytes stand for themselves, the others for 256 + k.
  char32_t next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t c = printable ? static_cast<char32_t>(b) : next++;
    append_utf8(c, t.byte_symbol_[b]);
    t.symbol_byte_[c] = static_cast<uint8_t>(b);
    if (!t.ids_.count(t.byte_symbol_[b]))
      return invalid_argument(cat(vocab_name, ": the symbol of byte ", b, " is missing"),
                              "a byte-level BPE vocabulary holds all 256 byte symbols");
  }
  size_t line_no = 0, start = 0;
  int32_t rank = 0;
  while (start <= merges.size()) {
    size_t end = merges.find('\n', start);
    if (end == std::string_view::npos) end = merges.size();
    std::string_view line = merges.substr(start, end - start);
    ++line_no;
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || (line_no == 1 && line.rfind("#version", 0) == 0)) {
      if (end == merges.size()) break;
      continue;
    }
    const size_t sp = line.find(' ');
    if (sp == 0 || sp == std::string_view::npos || sp + 1 == line.size() ||
        line.find(' ', sp + 1) != std::string_view::npos)
      return invalid_argument(cat(merges_name, ":", line_no, ": expected \"left right\", got \"",
                                  line.substr(0, 60), "\""));
    t.ranks_.emplace(std::string(line), rank++);
    if (end == merges.size()) break;
  }
  if (rank == 0)
    return invalid_argument(cat(merges_name, ": no merges"), "give GPT-2's vocab.bpe / merges.txt");
  for (std::string& s : special) {
    auto it = t.ids_.find(s);
    if (it == t.ids_.end())
      return invalid_argument(
          cat(vocab_name, ": special token '", s, "' is not in the vocabulary"));
    t.special_[s] = it->second;
  }
  return t;
}

Result<BpeTokenizer> BpeTokenizer::load(const std::string& vocab_path,
                                        const std::string& merges_path) {
  ALPA_ASSIGN_OR_RETURN(std::string vocab, read_file(vocab_path));
  ALPA_ASSIGN_OR_RETURN(std::string merges, read_file(merges_path));
  return from_text(vocab, merges, {"<|endoftext|>"}, vocab_path, merges_path);
}

Result<BpeTokenizer> BpeTokenizer::from_tokenizer_json(std::string_view text,
                                                       std::string_view name) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& what) {
    return invalid_argument(cat(name, ": ", what),
                            "give a Hugging Face tokenizer.json of a byte-level BPE tokenizer");
  };
  if (j.is_discarded() || !j.is_object()) return bad("not a JSON object");
  if (!j.contains("model") || !j["model"].is_object()) return bad("no \"model\" object");
  const nlohmann::json& model = j["model"];
  if (json_string_or(model, "type") != "BPE")
    return bad(cat("model.type is ", json_excerpt(model.value("type", nlohmann::json())),
                   ", not \"BPE\""));
  if (!model.contains("vocab") || !model["vocab"].is_object()) return bad("no model.vocab object");
  if (!model.contains("merges") || !model["merges"].is_array()) return bad("no model.merges list");
  std::string merges;
  size_t i = 0;
  for (const nlohmann::json& m : model["merges"]) {
    if (m.is_string()) {
      merges += m.get<std::string>();
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges += m[0].get<std::string>() + " " + m[1].get<std::string>();
    } else {
      return bad(cat("model.merges[", i, "] is ", json_excerpt(m), ", not \"a b\" or [a, b]"));
    }
    merges += '\n';
    ++i;
  }
  std::vector<std::string> special;
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const nlohmann::json& t : j["added_tokens"])
      if (t.is_object() && json_bool_or(t, "special", false) && t.contains("content") &&
          t["content"].is_string())
        special.push_back(t["content"].get<std::string>());
  return from_text(json_line(model["vocab"]), merges, special, cat(name, " model.vocab"),
                   cat(name, " model.merges"));
}

Result<BpeTokenizer> BpeTokenizer::load_tokenizer_json(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return from_tokenizer_json(text, path);
}

int32_t BpeTokenizer::special_id(std::string_view token) const {
  auto it = special_.find(token);
  return it == special_.end() ? -1 : it->second;
}

// ---- encoding -----------------------------------------------------------------------------

Result<std::vector<std::string>> BpeTokenizer::pre_tokenize(std::string_view text) {
  std::vector<char32_t> cps;
  ALPA_RETURN_IF_ERROR(decode_utf8(text, cps));
  std::vector<std::string> pieces;
  for (size_t i = 0; i < cps.size();) {
    const size_t end = piece_end(cps, i);
    std::string piece;
    for (size_t k = i; k < end; ++k) append_utf8(cps[k], piece);
    pieces.push_back(std::move(piece));
    i = end;
  }
  return pieces;
}

void BpeTokenizer::encode_piece(const std::string& piece, std::vector<int32_t>& out) const {
  if (auto hit = cache_.find(piece); hit != cache_.end()) {
    out.insert(out.end(), hit->second.begin(), hit->second.end());
    return;
  }
  std::vector<std::string> word;
  for (unsigned char b : piece) word.push_back(byte_symbol_[b]);
  while (word.size() > 1) {
    int32_t best = std::numeric_limits<int32_t>::max();
    size_t at = 0;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = ranks_.find(word[i] + " " + word[i + 1]);
      if (it != ranks_.end() && it->second < best) best = it->second, at = i;
    }
    if (best == std::numeric_limits<int32_t>::max()) break;
    const std::string left = word[at], right = word[at + 1];
    std::vector<std::string> merged;
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == left && word[i + 1] == right) {
        merged.push_back(left + right);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word = std::move(merged);
  }
  std::vector<int32_t> ids;
  for (const std::string& sym : word) {
    auto it = ids_.find(sym);
    ids.push_back(it == ids_.end() ? -1 : it->second);
  }
  out.insert(out.end(), ids.begin(), ids.end());
  if (cache_.size() < (1u << 20)) cache_.emplace(piece, std::move(ids));
}

Result<std::vector<int32_t>> BpeTokenizer::encode(std::string_view text, bool allow_special) const {
  std::vector<int32_t> out;
  while (!text.empty()) {
    // The next special token, if any, ends this stretch of ordinary text.
    size_t cut = text.size();
    int32_t special = -1;
    size_t special_len = 0;
    if (allow_special)
      for (const auto& [s, id] : special_) {
        const size_t at = text.find(s);
        if (at < cut) cut = at, special = id, special_len = s.size();
      }
    ALPA_ASSIGN_OR_RETURN(std::vector<std::string> pieces, pre_tokenize(text.substr(0, cut)));
    for (const std::string& p : pieces) encode_piece(p, out);
    if (special >= 0) out.push_back(special);
    text.remove_prefix(std::min(text.size(), cut + special_len));
  }
  for (int32_t id : out)
    if (id < 0)
      return failed_precondition("a merged symbol is not in the vocabulary",
                                 "the vocabulary and merges files do not belong together");
  return out;
}

Result<std::string> BpeTokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  std::vector<char32_t> cps;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size())
      return invalid_argument(
          cat("token id ", id, " is outside the vocabulary (", vocab_size(), " symbols)"));
    const std::string& sym = symbols_[static_cast<size_t>(id)];
    if (special_.count(sym)) {
      out += sym;
      continue;
    }
    ALPA_RETURN_IF_ERROR(decode_utf8(sym, cps));
    for (char32_t c : cps) {
      auto it = symbol_byte_.find(c);
      if (it == symbol_byte_.end())
        return failed_precondition(cat("symbol '", sym, "' of token ", id, " is not byte-level"));
      out += static_cast<char>(it->second);
    }
  }
  return out;
}

}  // namespace alpa
