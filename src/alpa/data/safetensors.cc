#include "alpa/data/safetensors.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// Larger headers are refused before they are parsed (Hugging Face's own limit is 100 MB).
constexpr int64_t kMaxHeaderBytes = int64_t{100} << 20;
constexpr int kMaxRank = 8;
constexpr int64_t kMaxElements = int64_t{1} << 48;

struct DTypeInfo {
  const char* name;
  int bytes;
};
constexpr DTypeInfo kDTypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2},  {"BF16", 2},    {"I64", 8},
    {"I32", 4}, {"I16", 2}, {"I8", 1},   {"U64", 8},     {"U32", 4},
    {"U16", 2}, {"U8", 1},  {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1},
};

int dtype_bytes(std::string_view name) {
  for (const DTypeInfo& d : kDTypes)
    if (name == d.name) return d.bytes;
  return 0;
}

std::string dtype_list() {
  std::string s;
  for (const DTypeInfo& d : kDTypes) s += cat(s.empty() ? "" : ", ", d.name);
  return s;
}

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}
float float_of(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += cat(i ? "," : "", shape[i]);
  return s + "]";
}

// A non-negative integer JSON value, or -1.
int64_t json_count(const Json& v) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ? -1
                                                                          : static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>() < 0 ? -1 : v.get<int64_t>();
  return -1;
}

Status entry_error(const std::string& where, const std::string& name, const std::string& what) {
  return invalid_argument(cat(where, ": tensor '", name, "' ", what),
                          "the file is damaged or not a safetensors file; write it again");
}

// One header entry, checked against the data section's size.
Result<SafetensorsEntry> parse_entry(const std::string& where, const std::string& name,
                                     const Json& v, int64_t data_bytes) {
  if (!v.is_object()) return entry_error(where, name, cat("is not an object: ", json_excerpt(v)));
  SafetensorsEntry e;
  e.name = name;
  e.dtype = json_string_or(v, "dtype");
  const int size = dtype_bytes(e.dtype);
  if (size == 0)
    return entry_error(where, name,
                       cat("has unknown dtype ",
                           v.contains("dtype") ? json_excerpt(v["dtype"]) : std::string("(none)"),
                           " (safetensors dtypes: ", dtype_list(), ")"));
  auto shape = v.find("shape");
  if (shape == v.end() || !shape->is_array() || shape->size() > kMaxRank)
    return entry_error(
        where, name, cat("has no valid \"shape\" (an array of at most ", kMaxRank, " dimensions)"));
  int64_t n = 1;
  for (const Json& d : *shape) {
    const int64_t extent = json_count(d);
    if (extent < 0) return entry_error(where, name, cat("has a bad dimension ", json_excerpt(d)));
    e.shape.push_back(extent);
    if (extent > 0 && n > kMaxElements / extent)
      return entry_error(where, name, cat("has more than 2^48 elements"));
    n *= extent;
  }
  auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2 || json_count((*off)[0]) < 0 ||
      json_count((*off)[1]) < 0)
    return entry_error(where, name, "has no valid \"data_offsets\" (two byte offsets)");
  e.begin = json_count((*off)[0]);
  e.end = json_count((*off)[1]);
  if (e.begin > e.end || e.end > data_bytes)
    return entry_error(where, name,
                       cat("has data_offsets [", e.begin, ", ", e.end,
                           "] outside the data section of ", data_bytes, " bytes"));
  if (e.end - e.begin != n * size)
    return entry_error(where, name,
                       cat("has ", e.end - e.begin, " bytes of data, but ", e.dtype, " ",
                           shape_text(e.shape), " needs ", n * size));
  return e;
}

// The header's `__metadata__`: string -> string.
Status parse_metadata(const std::string& where, const Json& v,
                      std::map<std::string, std::string>& out) {
  if (!v.is_object())
    return invalid_argument(cat(where, ": __metadata__ is not an object: ", json_excerpt(v)));
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (!it->is_string())
      return invalid_argument(
          cat(where, ": __metadata__ value '", it.key(), "' is not a string: ", json_excerpt(*it)));
    out[it.key()] = it->get<std::string>();
  }
  return ok_status();
}

// Little-endian, as the format stores it (this project's hosts are little-endian).
template <typename T>
T load(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

Result<Json> parse_json_file(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  Json j = Json::parse(text, nullptr, false);
  if (j.is_discarded()) return parse_error(cat(path, ": not valid JSON"));
  return j;
}

}  // namespace

Result<StoredDType> parse_stored_dtype(std::string_view t) {
  if (t == "f32" || t == "F32" || t == "float32") return StoredDType::kF32;
  if (t == "f16" || t == "F16" || t == "float16") return StoredDType::kF16;
  if (t == "bf16" || t == "BF16" || t == "bfloat16") return StoredDType::kBF16;
  return invalid_argument(cat("unknown weight dtype '", t, "'"), "use f32, f16 or bf16");
}

const char* safetensors_dtype_name(StoredDType d) {
  switch (d) {
    case StoredDType::kF16: return "F16";
    case StoredDType::kBF16: return "BF16";
    default: return "F32";
  }
}

uint16_t f32_to_f16_bits(float value) {
  const uint32_t x = bits_of(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u)  // inf or NaN (NaN keeps a quiet payload bit)
    return sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u);
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  if (abs < 0x38800000u) {                        // below 2^-14: subnormal or zero in f16
    // value * 2^24 rounded to nearest even is the subnormal's mantissa.
    const float scaled = std::fabs(value) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  // Normal: rebias the exponent (127 -> 15), round 13 mantissa bits to nearest even.
  const uint32_t rebased = abs - ((127u - 15u) << 23);
  const uint32_t round = 0xfffu + ((rebased >> 13) & 1u);
  return sign | static_cast<uint16_t>((rebased + round) >> 13);
}

float f16_bits_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {  // zero or subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  if (exp == 31) return float_of(sign | 0x7f800000u | (mant << 13));
  return float_of(sign | ((exp + 127u - 15u) << 23) | (mant << 13));
}

uint16_t f32_to_bf16_bits(float value) {
  const uint32_t x = bits_of(value);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  const uint32_t round = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>((x + round) >> 16);
}

float bf16_bits_to_f32(uint16_t b) {
  return float_of(static_cast<uint32_t>(b) << 16);
}

float round_to_stored(float v, StoredDType d) {
  switch (d) {
    case StoredDType::kF16: return f16_bits_to_f32(f32_to_f16_bits(v));
    case StoredDType::kBF16: return bf16_bits_to_f32(f32_to_bf16_bits(v));
    default: return v;
  }
}

int64_t NamedTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

int64_t SafetensorsEntry::num_elements() const {
  int64_t n = 1;
  for (int64_t e : shape) n *= e;
  return n;
}

Result<std::string> encode_safetensors(const std::vector<NamedTensor>& tensors, StoredDType dtype,
                                       const std::map<std::string, std::string>& metadata) {
  const int64_t size = dtype == StoredDType::kF32 ? 4 : 2;
  Json header = Json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::set<std::string> seen;
  int64_t offset = 0;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || !seen.insert(t.name).second)
      return invalid_argument(cat("cannot write tensor named '", t.name,
                                  "': names must be non-empty, unique and not __metadata__"));
    int64_t n = 1;
    for (int64_t e : t.shape) n *= e;
    if (n != static_cast<int64_t>(t.values.size()))
      return invalid_argument(cat("tensor '", t.name, "' has ", t.values.size(),
                                  " values but shape ", shape_text(t.shape)));
    header[t.name] = {{"dtype", safetensors_dtype_name(dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + n * size}}};
    offset += n * size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // the data section starts 8-byte aligned
  std::string out(8, '\0');
  const uint64_t n = text.size();
  std::memcpy(out.data(), &n, 8);
  out += text;
  out.reserve(out.size() + static_cast<size_t>(offset));
  // The header lists tensors sorted by name (a JSON object); the data follows the offsets.
  for (const NamedTensor& t : tensors) {
    for (float v : t.values) {
      if (dtype == StoredDType::kF32) {
        out.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        const uint16_t b = dtype == StoredDType::kF16 ? f32_to_f16_bits(v) : f32_to_bf16_bits(v);
        out.append(reinterpret_cast<const char*>(&b), 2);
      }
    }
  }
  return out;
}

Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                         StoredDType dtype, const std::map<std::string, std::string>& metadata) {
  ALPA_ASSIGN_OR_RETURN(std::string bytes, encode_safetensors(tensors, dtype, metadata));
  return write_file(path, bytes);
}

struct SafetensorsFile::Data {
  std::string bytes;  // the whole file, when parsed from memory
  ReadOnlyFile file;  // else the open file
  std::atomic<int64_t> read{0};
};

Result<SafetensorsFile> SafetensorsFile::parse_header(std::string_view header, int64_t size,
                                                      const std::string& where) {
  const std::string hint = "the file is truncated or not a safetensors file";
  Json json = Json::parse(header.begin(), header.end(), nullptr, false);
  if (json.is_discarded()) return parse_error(cat(where, ": the header is not valid JSON"), hint);
  if (!json.is_object())
    return invalid_argument(cat(where, ": the header is not a JSON object: ", json_excerpt(json)),
                            hint);
  SafetensorsFile f;
  f.path_ = where;
  f.data_start_ = 8 + static_cast<int64_t>(header.size());
  const int64_t data_bytes = size - f.data_start_;
  for (auto it = json.begin(); it != json.end(); ++it) {
    if (it.key() == "__metadata__") {
      ALPA_RETURN_IF_ERROR(parse_metadata(where, *it, f.metadata_));
      continue;
    }
    if (it.key().empty()) return entry_error(where, "", "has an empty name");
    ALPA_ASSIGN_OR_RETURN(SafetensorsEntry e, parse_entry(where, it.key(), *it, data_bytes));
    f.entries_.push_back(std::move(e));
  }
  // No two tensors share a byte (empty tensors own none).
  std::vector<const SafetensorsEntry*> by_offset;
  for (const SafetensorsEntry& e : f.entries_)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      return entry_error(where, by_offset[i]->name,
                         cat("overlaps tensor '", by_offset[i - 1]->name, "' (bytes ",
                             by_offset[i]->begin, " < ", by_offset[i - 1]->end, ")"));
  f.data_ = std::make_shared<Data>();
  return f;
}

namespace {

// The header length at the start of a `size`-byte file, checked against the file.
Result<uint64_t> header_length(const char* first8, int64_t size, const std::string& where) {
  const std::string hint = "the file is truncated or not a safetensors file";
  if (size < 8)
    return invalid_argument(
        cat(where, ": ", size, " bytes, too short for the 8-byte header length"), hint);
  const uint64_t n = load<uint64_t>(first8);
  if (n > static_cast<uint64_t>(size - 8))
    return invalid_argument(
        cat(where, ": the header length ", n, " runs past the end of the ", size, "-byte file"),
        hint);
  if (static_cast<int64_t>(n) > kMaxHeaderBytes)
    return invalid_argument(
        cat(where, ": the header length ", n, " exceeds ", kMaxHeaderBytes, " bytes"), hint);
  return n;
}

}  // namespace

Result<SafetensorsFile> SafetensorsFile::parse(std::string bytes, const std::string& where) {
  const int64_t size = static_cast<int64_t>(bytes.size());
  ALPA_ASSIGN_OR_RETURN(uint64_t n, header_length(bytes.data(), size, where));
  ALPA_ASSIGN_OR_RETURN(SafetensorsFile f,
                        parse_header(std::string_view(bytes).substr(8, n), size, where));
  f.data_->bytes = std::move(bytes);
  return f;
}

Result<SafetensorsFile> SafetensorsFile::read(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(ReadOnlyFile file, ReadOnlyFile::open(path));
  char first8[8] = {};
  if (file.size() >= 8) ALPA_RETURN_IF_ERROR(file.read_at(0, first8, 8));
  ALPA_ASSIGN_OR_RETURN(uint64_t n, header_length(first8, file.size(), path));
  std::string header(static_cast<size_t>(n), '\0');
  ALPA_RETURN_IF_ERROR(file.read_at(8, header.data(), static_cast<int64_t>(n)));
  ALPA_ASSIGN_OR_RETURN(SafetensorsFile f, parse_header(header, file.size(), path));
  f.data_->file = std::move(file);
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(std::string_view name) const {
  auto it =
      std::lower_bound(entries_.begin(), entries_.end(), name,
                       [](const SafetensorsEntry& e, std::string_view n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

Status SafetensorsFile::check_values(const SafetensorsEntry& e) const {
  if (e.dtype == "F32" || e.dtype == "F16" || e.dtype == "BF16" || e.dtype == "F64")
    return ok_status();
  return invalid_argument(cat(path_, ": tensor '", e.name, "' is ", e.dtype,
                              ", not a floating-point dtype (F32, F16, BF16, F64)"),
                          "weights must be stored as floating-point tensors");
}

Status SafetensorsFile::read_elements(const SafetensorsEntry& e, int64_t first, int64_t count,
                                      float* out) const {
  ALPA_RETURN_IF_ERROR(check_values(e));
  const int size = dtype_bytes(e.dtype);
  // The stored bytes: in memory, or read from the file (F32 straight into the values).
  const int64_t at = data_start_ + e.begin + first * size, bytes = count * size;
  std::string buffer;
  const char* p = nullptr;
  if (data_->file.path().empty()) {  // parsed from memory
    p = data_->bytes.data() + at;
  } else {
    char* into = reinterpret_cast<char*>(out);
    if (e.dtype != "F32") {
      buffer.resize(static_cast<size_t>(bytes));
      into = buffer.data();
    }
    if (Status s = data_->file.read_at(at, into, bytes); !s.ok())
      return s.with_context(cat("tensor '", e.name, "'"));
    data_->read += bytes;
    if (e.dtype == "F32") return ok_status();
    p = buffer.data();
  }
  if (e.dtype == "F32") {
    std::memcpy(out, p, static_cast<size_t>(bytes));
  } else if (e.dtype == "F16") {
    for (int64_t i = 0; i < count; ++i) out[i] = f16_bits_to_f32(load<uint16_t>(p + 2 * i));
  } else if (e.dtype == "BF16") {
    for (int64_t i = 0; i < count; ++i) out[i] = bf16_bits_to_f32(load<uint16_t>(p + 2 * i));
  } else {
    for (int64_t i = 0; i < count; ++i) out[i] = static_cast<float>(load<double>(p + 8 * i));
  }
  return ok_status();
}

Result<std::vector<float>> SafetensorsFile::values(const SafetensorsEntry& e) const {
  std::vector<float> out(static_cast<size_t>(e.num_elements()));
  ALPA_RETURN_IF_ERROR(read_elements(e, 0, e.num_elements(), out.data()));
  return out;
}

Result<std::vector<float>> SafetensorsFile::slice(
    const SafetensorsEntry& e, int dim,
    const std::vector<std::pair<int64_t, int64_t>>& ranges) const {
  const int rank = static_cast<int>(e.shape.size());
  if (dim < 0 || dim >= rank || dim > 1 || (dim == 1 && rank != 2))
    return invalid_argument(cat(path_, ": tensor '", e.name, "' of rank ", rank,
                                " cannot be cut along dimension ", dim));
  const int64_t extent = e.shape[static_cast<size_t>(dim)];
  int64_t width = 0;  // indices taken along `dim`
  for (const auto& [b, end] : ranges) {
    if (b < 0 || end > extent || b > end)
      return invalid_argument(cat(path_, ": tensor '", e.name, "': range [", b, ", ", end,
                                  ") is outside dimension ", dim, " of extent ", extent));
    width += end - b;
  }
  const int64_t inner = extent == 0 ? 0 : e.num_elements() / extent;  // dim 0: one row's elements
  std::vector<float> out(static_cast<size_t>(dim == 0 ? width * inner : e.shape[0] * width));
  float* at = out.data();
  if (dim == 0) {  // whole rows: one read per range
    for (const auto& [b, end] : ranges) {
      ALPA_RETURN_IF_ERROR(read_elements(e, b * inner, (end - b) * inner, at));
      at += (end - b) * inner;
    }
    return out;
  }
  for (int64_t row = 0; row < e.shape[0]; ++row)  // a column block of every row
    for (const auto& [b, end] : ranges) {
      ALPA_RETURN_IF_ERROR(read_elements(e, row * extent + b, end - b, at));
      at += end - b;
    }
  return out;
}

int64_t SafetensorsFile::bytes_read() const {
  return data_ == nullptr ? 0 : data_->read.load();
}

namespace {

// The shards an index maps tensors to, each checked to hold exactly its tensors.
Status open_index(const std::string& index_path,
                  std::vector<std::shared_ptr<const SafetensorsFile>>& files,
                  std::map<std::string, size_t, std::less<>>& where) {
  ALPA_ASSIGN_OR_RETURN(Json index, parse_json_file(index_path));
  const std::string hint = "an index is {\"metadata\": {...}, \"weight_map\": {tensor: file}}";
  if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
    return invalid_argument(cat(index_path, ": no \"weight_map\" object"), hint);
  const fs::path dir = fs::path(index_path).parent_path();
  std::map<std::string, size_t> shard_of_file;
  for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
    if (!it->is_string())
      return invalid_argument(
          cat(index_path, ": weight_map['", it.key(), "'] is not a file name: ", json_excerpt(*it)),
          hint);
    const std::string file = it->get<std::string>();
    if (file.empty() || file == "." || file == ".." || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos)
      return invalid_argument(cat(index_path, ": weight_map['", it.key(), "'] names '", file,
                                  "', not a file beside the index"),
                              hint);
    auto [pos, fresh] = shard_of_file.emplace(file, files.size());
    if (fresh) {
      ALPA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::read((dir / file).string()));
      files.push_back(std::make_shared<const SafetensorsFile>(std::move(f)));
    }
    const SafetensorsFile& shard = *files[pos->second];
    if (!shard.find(it.key()))
      return not_found(cat(index_path, ": tensor '", it.key(), "' is mapped to ", shard.path(),
                           ", which does not hold it"),
                       "the shards and the index do not belong together");
    where.emplace(it.key(), pos->second);
  }
  for (size_t s = 0; s < files.size(); ++s)
    for (const SafetensorsEntry& e : files[s]->tensors()) {
      auto w = where.find(e.name);
      if (w == where.end() || w->second != s)
        return invalid_argument(
            cat(files[s]->path(), ": tensor '", e.name, "' is ",
                w == where.end() ? "not in the weight_map of " : "mapped to another shard by ",
                index_path),
            "the shards and the index do not belong together");
    }
  if (files.empty()) return invalid_argument(cat(index_path, ": the weight_map is empty"), hint);
  return ok_status();
}

}  // namespace

Result<SafetensorsSet> SafetensorsSet::open(const std::string& path) {
  SafetensorsSet set;
  std::error_code ec;
  std::string target = path;
  if (fs::is_directory(path, ec)) {
    const fs::path index = fs::path(path) / "model.safetensors.index.json";
    const fs::path single = fs::path(path) / "model.safetensors";
    if (fs::exists(index, ec))
      target = index.string();
    else if (fs::exists(single, ec))
      target = single.string();
    else
      return not_found(
          cat(path, " holds neither model.safetensors nor ", "model.safetensors.index.json"),
          "give a directory written by `alpa export` or a Hugging Face model");
  }
  set.source_ = target;
  if (target.size() >= 5 && target.compare(target.size() - 5, 5, ".json") == 0) {
    ALPA_RETURN_IF_ERROR(open_index(target, set.files_, set.where_));
    return set;
  }
  ALPA_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::read(target));
  set.files_.push_back(std::make_shared<const SafetensorsFile>(std::move(f)));
  for (const SafetensorsEntry& e : set.files_[0]->tensors()) set.where_.emplace(e.name, 0);
  return set;
}

std::vector<std::string> SafetensorsSet::names() const {
  std::vector<std::string> out;
  for (const auto& [name, file] : where_) out.push_back(name);
  return out;
}

const SafetensorsEntry* SafetensorsSet::find(std::string_view name) const {
  auto it = where_.find(name);
  return it == where_.end() ? nullptr : files_[it->second]->find(name);
}

std::string SafetensorsSet::file_of(std::string_view name) const {
  auto it = where_.find(name);
  return it == where_.end() ? std::string() : files_[it->second]->path();
}

Result<std::vector<float>> SafetensorsSet::values(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return not_found(cat(source_, ": no tensor '", name, "'"));
  const SafetensorsFile& f = *files_[it->second];
  return f.values(*f.find(name));
}

Status SafetensorsSet::check_values(std::string_view name) const {
  auto it = where_.find(name);
  if (it == where_.end()) return not_found(cat(source_, ": no tensor '", name, "'"));
  const SafetensorsFile& f = *files_[it->second];
  return f.check_values(*f.find(name));
}

Result<std::vector<float>> SafetensorsSet::slice(
    std::string_view name, int dim, const std::vector<std::pair<int64_t, int64_t>>& ranges) const {
  auto it = where_.find(name);
  if (it == where_.end()) return not_found(cat(source_, ": no tensor '", name, "'"));
  const SafetensorsFile& f = *files_[it->second];
  return f.slice(*f.find(name), dim, ranges);
}

int64_t SafetensorsSet::bytes_read() const {
  int64_t n = 0;
  for (const auto& f : files_) n += f->bytes_read();
  return n;
}

int64_t SafetensorsSet::stored_bytes(const std::vector<std::string>& names) const {
  int64_t n = 0;
  for (const std::string& name : names)
    if (const SafetensorsEntry* e = find(name)) n += e->end - e->begin;
  return n;
}

const std::map<std::string, std::string>& SafetensorsSet::metadata() const {
  static const std::map<std::string, std::string> kNone;
  return files_.empty() ? kNone : files_[0]->metadata();
}

}  // namespace alpa
