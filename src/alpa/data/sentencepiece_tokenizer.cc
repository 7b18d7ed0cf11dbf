#include "alpa/data/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <optional>
#include <set>
#include <utility>

#include "alpa/support/files.h"

namespace alpa {

struct SentencePieceTokenizer::Impl {
  sentencepiece::SentencePieceProcessor processor;
};

namespace {

using PieceType = SentencePieceTokenizer::PieceType;

constexpr const char* kHint =
    "give a SentencePiece model: a .model file written by spm_train, or a model's "
    "tokenizer.model (a Hugging Face tokenizer.json is read as byte-level BPE instead)";

// The library's limits on matches along one input prefix: its normalizer keeps 32 (a trie
// with more overruns a fixed array), its user-defined symbol matcher 64.
constexpr int kMaxNormalizerMatches = 32;
constexpr int kMaxUserDefinedMatches = 64;

// What the checks and the tokenizer need from a ModelProto.
struct ModelFacts {
  std::vector<std::string> pieces;
  std::vector<PieceType> types;
  std::string model_type = "unigram";
  bool byte_fallback = false;
  std::string charsmap;    // normalizer_spec.precompiled_charsmap
  std::string decharsmap;  // denormalizer_spec.precompiled_charsmap
};

// One field of a protocol-buffer message: its number, wire type and value.
struct Field {
  uint64_t number = 0;
  int wire = 0;            // 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32
  uint64_t varint = 0;     // wire 0
  std::string_view body;   // wire 2
  size_t offset = 0;       // of the field's tag in the file
  size_t body_offset = 0;  // of `body` in the file
};

bool read_varint(std::string_view s, size_t& pos, uint64_t& value) {
  value = 0;
  for (int shift = 0; shift < 64 && pos < s.size(); shift += 7) {
    const auto byte = static_cast<unsigned char>(s[pos++]);
    value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if (!(byte & 0x80)) return true;
  }
  return false;
}

// Calls `visit(field)` for each field of the message `msg`, which starts at byte `base` of the
// file; a malformed field is an error with its offset. Groups (wire types 3, 4), which no
// model has, count as malformed.
template <typename Visit>
Status for_each_field(std::string_view msg, size_t base, Visit&& visit) {
  size_t pos = 0;
  while (pos < msg.size()) {
    Field f;
    f.offset = base + pos;
    uint64_t tag = 0;
    if (!read_varint(msg, pos, tag)) return parse_error(cat("a field tag at byte ", f.offset));
    f.number = tag >> 3;
    f.wire = static_cast<int>(tag & 7);
    if (f.number == 0 || f.number > (uint64_t{1} << 29))
      return parse_error(cat("field number ", f.number, " at byte ", f.offset));
    const size_t at = pos;
    uint64_t length = 0;
    switch (f.wire) {
      case 0:
        if (!read_varint(msg, pos, f.varint))
          return parse_error(cat("an integer at byte ", base + at));
        break;
      case 1:
      case 5:
        length = f.wire == 1 ? 8 : 4;
        if (msg.size() - pos < length)
          return parse_error(cat("a number cut short at byte ", base + at));
        pos += length;
        break;
      case 2:
        if (!read_varint(msg, pos, length) || length > msg.size() - pos)
          return parse_error(cat("a length at byte ", base + at, " past the end"));
        f.body = msg.substr(pos, length);
        f.body_offset = base + pos;
        pos += length;
        break;
      default: return parse_error(cat("wire type ", f.wire, " at byte ", f.offset));
    }
    ALPA_RETURN_IF_ERROR(visit(f));
  }
  return ok_status();
}

Status want_wire(const Field& f, int wire, const char* what) {
  if (f.wire == wire) return ok_status();
  return parse_error(cat(what, " at byte ", f.offset, " has wire type ", f.wire, ", not ", wire));
}

// ModelProto.pieces[i]: 1 piece (string), 2 score (float), 3 type (enum).
Status read_piece(const Field& outer, ModelFacts& m) {
  ALPA_RETURN_IF_ERROR(want_wire(outer, 2, "a piece"));
  std::string piece;
  PieceType type = PieceType::kNormal;
  const size_t index = m.pieces.size();
  ALPA_RETURN_IF_ERROR(for_each_field(outer.body, outer.body_offset, [&](const Field& f) {
    if (f.number == 1) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 2, "a piece's text"));
      piece = std::string(f.body);
    } else if (f.number == 2) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 5, "a piece's score"));
    } else if (f.number == 3) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 0, "a piece's type"));
      if (f.varint < 1 || f.varint > 6)
        return parse_error(cat("piece ", index, " has type ", f.varint, " (types are 1 to 6)"));
      type = static_cast<PieceType>(f.varint);
    }
    return ok_status();
  }));
  if (piece.empty()) return parse_error(cat("piece ", index, " is empty"));
  m.pieces.push_back(std::move(piece));
  m.types.push_back(type);
  return ok_status();
}

// TrainerSpec: 3 model_type (1 unigram, 2 bpe, 3 word, 4 char), 35 byte_fallback.
Status read_trainer_spec(const Field& outer, ModelFacts& m) {
  ALPA_RETURN_IF_ERROR(want_wire(outer, 2, "the trainer settings"));
  return for_each_field(outer.body, outer.body_offset, [&](const Field& f) {
    if (f.number == 3) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 0, "the model type"));
      static const char* kTypes[] = {"unigram", "bpe", "word", "char"};
      if (f.varint < 1 || f.varint > 4)
        return parse_error(cat("model type ", f.varint, " (types are 1 to 4)"));
      m.model_type = kTypes[f.varint - 1];
    } else if (f.number == 35) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 0, "byte_fallback"));
      m.byte_fallback = f.varint != 0;
    }
    return ok_status();
  });
}

// NormalizerSpec: 2 precompiled_charsmap (bytes). A message given twice is merged by the
// library, so the last map read is the one it uses.
Status read_normalizer_spec(const Field& outer, std::string& charsmap) {
  ALPA_RETURN_IF_ERROR(want_wire(outer, 2, "the normalizer settings"));
  return for_each_field(outer.body, outer.body_offset, [&](const Field& f) {
    if (f.number == 2) {
      ALPA_RETURN_IF_ERROR(want_wire(f, 2, "the normalization map"));
      charsmap = std::string(f.body);
    }
    return ok_status();
  });
}

// ModelProto: 1 pieces, 2 trainer_spec, 3 normalizer_spec, 4 self_test_data,
// 5 denormalizer_spec; other fields are framed but not read.
Status read_model(std::string_view bytes, ModelFacts& m) {
  return for_each_field(bytes, 0, [&](const Field& f) -> Status {
    switch (f.number) {
      case 1: return read_piece(f, m);
      case 2: return read_trainer_spec(f, m);
      case 3: return read_normalizer_spec(f, m.charsmap);
      case 5: return read_normalizer_spec(f, m.decharsmap);
      default: return ok_status();
    }
  });
}

// A precompiled normalization map: <uint32 trie bytes><double-array trie><replacement strings>.
// The library searches the trie with the input's bytes (any of 256) from the root and reads a
// replacement string at each match's value. A double-array unit: bits 0-7 label, 8 has-leaf,
// 9 and 10-31 the offset to the children (shifted left by 8 when bit 9 is set); a leaf unit
// (bit 31 set) holds a value in bits 0-30.
struct Trie {
  std::string_view units;
  uint64_t size() const { return units.size() / 4; }
  uint32_t unit(uint64_t i) const {
    uint32_t u = 0;
    std::memcpy(&u, units.data() + 4 * i, 4);  // little-endian, as the library reads it here
    return u;
  }
  static uint64_t offset(uint32_t u) { return (u >> 10) << ((u & (1u << 9)) >> 6); }
  static bool has_leaf(uint32_t u) { return (u >> 8) & 1; }
  // The child of `node` by byte `c`, or -1 where there is none.
  int64_t child(uint64_t node, uint32_t c) const {
    const uint64_t id = (node ^ offset(unit(node))) ^ c;
    return (unit(id) & (0x80000000u | 0xFFu)) == c ? static_cast<int64_t>(id) : -1;
  }
};

// Checks one node the search can reach: its children's block and its leaf's value.
Status check_trie_node(const Trie& t, uint64_t node, std::string_view strings) {
  const uint32_t u = t.unit(node);
  const uint64_t base = node ^ Trie::offset(u);
  if ((base | 0xFF) >= t.size())
    return parse_error(cat("node ", node, "'s children lie outside the trie"));
  if (node == 0 || !Trie::has_leaf(u)) return ok_status();  // the root's leaf is never read
  const uint32_t value = t.unit(base) & 0x7FFFFFFFu;
  if (value >= strings.size() || strings.find('\0', value) == std::string_view::npos)
    return parse_error(cat("node ", node, " points outside the replacement strings"));
  return ok_status();
}

// Walks every node a search can reach (the trie is a DAG: suffixes are shared) depth first,
// checking each once, refusing cycles, and counting the most matches along one path.
Status check_charsmap(std::string_view blob, const char* which) {
  if (blob.empty()) return ok_status();
  auto bad = [&](const std::string& what) {
    return parse_error(cat("the ", which, " map: ", what));
  };
  if (blob.size() <= 4) return bad(cat("only ", blob.size(), " bytes"));
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);
  if (trie_bytes > blob.size() - 4)
    return bad(cat("a trie of ", trie_bytes, " bytes in ", blob.size() - 4));
  const Trie t{blob.substr(4, trie_bytes)};
  const std::string_view strings = blob.substr(4 + trie_bytes);
  if (t.size() == 0) return bad("an empty trie");
  enum Color : uint8_t { kNew, kOpen, kDone };
  std::vector<Color> color(t.size(), kNew);
  std::vector<int> most(t.size(), 0);  // matches along the longest path below a done node
  struct Frame {
    uint64_t node;
    uint32_t next = 0;  // the next byte to follow
    int below = 0;      // most matches below, over the children done so far
  };
  std::vector<Frame> stack;
  auto open = [&](uint64_t node) -> Status {
    if (Status s = check_trie_node(t, node, strings); !s.ok()) return bad(s.message());
    color[node] = kOpen;
    stack.push_back({node});
    return ok_status();
  };
  ALPA_RETURN_IF_ERROR(open(0));
  while (!stack.empty()) {
    Frame& f = stack.back();
    if (f.next < 256) {
      const int64_t c = t.child(f.node, f.next++);
      if (c < 0) continue;
      const auto child = static_cast<uint64_t>(c);
      if (color[child] == kOpen) return bad(cat("a cycle through node ", child));
      if (color[child] == kDone) f.below = std::max(f.below, most[child]);
      if (color[child] == kNew) ALPA_RETURN_IF_ERROR(open(child));
      continue;
    }
    const uint64_t node = f.node;
    most[node] = f.below + (node != 0 && Trie::has_leaf(t.unit(node)) ? 1 : 0);
    color[node] = kDone;
    stack.pop_back();
    if (!stack.empty()) stack.back().below = std::max(stack.back().below, most[node]);
  }
  if (most[0] > kMaxNormalizerMatches)
    return bad(
        cat(most[0], " matches along one input (the library keeps ", kMaxNormalizerMatches, ")"));
  return ok_status();
}

// The library matches user-defined pieces in the text with a trie that keeps 64 matches.
Status check_user_defined(const ModelFacts& m) {
  std::set<std::string_view> defined;
  for (size_t i = 0; i < m.pieces.size(); ++i)
    if (m.types[i] == PieceType::kUserDefined) defined.insert(m.pieces[i]);
  for (std::string_view p : defined) {
    int prefixes = 0;
    for (size_t len = 1; len <= p.size(); ++len) prefixes += defined.count(p.substr(0, len));
    if (prefixes > kMaxUserDefinedMatches)
      return parse_error(cat("user-defined piece '", p, "' has ", prefixes,
                             " user-defined prefixes (at most ", kMaxUserDefinedMatches, ")"));
  }
  return ok_status();
}

// The offset of the first byte of `s` that does not begin or continue a valid UTF-8 encoding
// (no overlong forms, surrogates or code points above U+10FFFF), or npos.
size_t invalid_utf8_at(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int len = 0;
    uint32_t cp = 0, min = 0;
    if (b < 0x80)
      len = 1, cp = b;
    else if ((b & 0xE0) == 0xC0)
      len = 2, cp = b & 0x1F, min = 0x80;
    else if ((b & 0xF0) == 0xE0)
      len = 3, cp = b & 0x0F, min = 0x800;
    else if ((b & 0xF8) == 0xF0)
      len = 4, cp = b & 0x07, min = 0x10000;
    else
      return i;
    if (s.size() - i < static_cast<size_t>(len)) return i;
    for (int k = 1; k < len; ++k) {
      const auto c = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((c & 0xC0) != 0x80) return i;
      cp = (cp << 6) | (c & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) return i;
    i += static_cast<size_t>(len);
  }
  return std::string_view::npos;
}

// The first line of `bytes` (at most 40 bytes) if its first 256 bytes are printable UTF-8 text,
// else nothing: a model is binary and starts with a piece's tag byte (0x0A).
std::optional<std::string> text_start(std::string_view bytes) {
  std::string_view head = bytes.substr(0, 256);
  for (char c : head)
    if (static_cast<unsigned char>(c) < 0x20 && c != '\n' && c != '\r' && c != '\t')
      return std::nullopt;
  const size_t bad = invalid_utf8_at(head);
  if (bad != std::string_view::npos && head.size() - bad > 3) return std::nullopt;
  head = head.substr(0, std::min({head.find('\n'), head.find('\r'), size_t{40}}));
  while (!head.empty() && (static_cast<unsigned char>(head.back()) & 0x80))
    head.remove_suffix(1);  // no cut character
  return std::string(head);
}

Status check_text(std::string_view text) {
  const size_t at = invalid_utf8_at(text);
  if (at == std::string_view::npos) return ok_status();
  return invalid_argument(cat("the text is not UTF-8 at byte ", at),
                          "convert it to UTF-8 (e.g. iconv -t UTF-8) first");
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer() : impl_(std::make_unique<Impl>()) {}
SentencePieceTokenizer::SentencePieceTokenizer(SentencePieceTokenizer&&) noexcept = default;
SentencePieceTokenizer& SentencePieceTokenizer::operator=(SentencePieceTokenizer&&) noexcept =
    default;
SentencePieceTokenizer::~SentencePieceTokenizer() = default;

Result<SentencePieceTokenizer> SentencePieceTokenizer::from_bytes(std::string_view model,
                                                                  std::string_view name) {
  auto refuse = [&](const std::string& why) {
    return invalid_argument(cat(name, ": not a SentencePiece model: ", why), kHint);
  };
  if (model.empty()) return refuse("the file is empty");
  ModelFacts m;
  if (Status s = read_model(model, m); !s.ok()) {
    if (std::optional<std::string> text = text_start(model))
      return refuse(
          cat("the file is text (it begins \"", *text, "\"); a model is a binary protocol buffer"));
    return refuse(s.message());
  }
  if (m.pieces.empty()) return refuse("it has no pieces");
  if (m.pieces.size() > (size_t{1} << 30)) return refuse("more than 2^30 pieces");
  for (const Status& s : {check_charsmap(m.charsmap, "normalization"),
                          check_charsmap(m.decharsmap, "denormalization"), check_user_defined(m)})
    if (!s.ok()) return refuse(s.message());
  SentencePieceTokenizer t;
  sentencepiece::util::Status loaded;
  try {
    loaded = t.impl_->processor.LoadFromSerializedProto(model);
  } catch (const std::exception& e) {
    return refuse(cat("the SentencePiece library failed: ", e.what()));
  }
  if (!loaded.ok()) return refuse(cat("the SentencePiece library says: ", loaded.error_message()));
  const sentencepiece::SentencePieceProcessor& p = t.impl_->processor;
  if (static_cast<size_t>(p.GetPieceSize()) != m.pieces.size())
    return refuse(
        cat("the library reads ", p.GetPieceSize(), " pieces, the file holds ", m.pieces.size()));
  t.pieces_ = std::move(m.pieces);
  t.types_ = std::move(m.types);
  t.model_type_ = std::move(m.model_type);
  t.byte_fallback_ = m.byte_fallback;
  t.unk_ = p.unk_id();
  t.bos_ = p.bos_id();
  t.eos_ = p.eos_id();
  t.pad_ = p.pad_id();
  return t;
}

Result<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string bytes, read_file(path));
  return from_bytes(bytes, path);
}

Result<std::vector<int32_t>> SentencePieceTokenizer::encode(std::string_view text) const {
  ALPA_RETURN_IF_ERROR(check_text(text));
  std::vector<int> ids;
  const sentencepiece::util::Status s = impl_->processor.Encode(text, &ids);
  if (!s.ok()) return internal_error(cat("SentencePiece encoding failed: ", s.error_message()));
  return std::vector<int32_t>(ids.begin(), ids.end());
}

Result<std::vector<std::string>> SentencePieceTokenizer::encode_pieces(
    std::string_view text) const {
  ALPA_RETURN_IF_ERROR(check_text(text));
  std::vector<std::string> pieces;
  const sentencepiece::util::Status s = impl_->processor.Encode(text, &pieces);
  if (!s.ok()) return internal_error(cat("SentencePiece encoding failed: ", s.error_message()));
  return pieces;
}

Result<std::string> SentencePieceTokenizer::decode(const std::vector<int32_t>& ids) const {
  for (size_t i = 0; i < ids.size(); ++i)
    if (ids[i] < 0 || ids[i] >= vocab_size())
      return invalid_argument(cat("token ", i, " is id ", ids[i], ", outside the vocabulary of ",
                                  vocab_size(), " pieces"));
  std::string text;
  const sentencepiece::util::Status s =
      impl_->processor.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
  if (!s.ok()) return internal_error(cat("SentencePiece decoding failed: ", s.error_message()));
  return text;
}

int32_t SentencePieceTokenizer::piece_id(std::string_view piece) const {
  const int id = impl_->processor.PieceToId(piece);
  return id >= 0 && id < vocab_size() && pieces_[static_cast<size_t>(id)] == piece ? id : -1;
}

const std::string& SentencePieceTokenizer::piece(int32_t id) const {
  ALPA_CHECK(id >= 0 && id < vocab_size()) << "piece id " << id << " out of range";
  return pieces_[static_cast<size_t>(id)];
}

SentencePieceTokenizer::PieceType SentencePieceTokenizer::type(int32_t id) const {
  ALPA_CHECK(id >= 0 && id < vocab_size()) << "piece id " << id << " out of range";
  return types_[static_cast<size_t>(id)];
}

}  // namespace alpa
