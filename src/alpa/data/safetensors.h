// Safetensors: the tensor file format Hugging Face models ship their weights in, read and
// written so that models trained here can be used elsewhere and the other way round.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON, then the data:
//   {"__metadata__": {"format": "pt", ...},          string -> string, optional
//    "wte.weight": {"dtype": "F32", "shape": [128, 64], "data_offsets": [0, 32768]}, ...}
// Offsets are byte ranges of the data section; tensors are row-major, little-endian. A model
// too large for one file is split into shards named by `model.safetensors.index.json`
// ({"metadata": {...}, "weight_map": {"tensor name": "model-00001-of-00002.safetensors"}}).
//
// Values are handed out as f32: F32, F16 and BF16 (and F64) are converted; other dtypes are
// validated (their byte ranges) but their values are not read. Writing stores F32, F16 or BF16
// (rounded to nearest even), through support/files.h's atomic write_file.
//
// Reading checks everything before a value is used: the header length against the file, the
// header's JSON and types, every dtype, every tensor's byte range (inside the data, exactly
// dtype size x elements, no two overlapping), and for shards that the index names plain files
// beside it that hold exactly the tensors it maps to them. Errors name the file and the tensor.
// Opening a file reads its header only; a tensor's bytes are read when its values are asked for
// (pread, never memory-mapped), so a process reads the tensors it uses and no more (a pipeline
// stage its own layers), and a file truncated after it was opened gives an error, not a crash.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

// The dtypes a tensor is stored in when written.
enum class StoredDType { kF32, kF16, kBF16 };
// "f32", "f16", "bf16" (also "F32", "float32", "float16", "bfloat16").
Result<StoredDType> parse_stored_dtype(std::string_view text);
const char* safetensors_dtype_name(StoredDType dtype);  // "F32", "F16", "BF16"

// f32 <-> f16 / bf16 bit patterns, rounding to nearest even (NaN stays NaN, overflow is inf).
uint16_t f32_to_f16_bits(float value);
float f16_bits_to_f32(uint16_t bits);
uint16_t f32_to_bf16_bits(float value);
float bf16_bits_to_f32(uint16_t bits);
// `value` as stored in `dtype` and read back.
float round_to_stored(float value, StoredDType dtype);

// A whole tensor for writing: row-major f32 values.
struct NamedTensor {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  int64_t num_elements() const;
};

// The bytes of a safetensors file holding `tensors` (names unique and non-empty, values
// matching shapes) in `dtype`, with `metadata` as `__metadata__`.
Result<std::string> encode_safetensors(const std::vector<NamedTensor>& tensors, StoredDType dtype,
                                       const std::map<std::string, std::string>& metadata = {});
Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                         StoredDType dtype,
                         const std::map<std::string, std::string>& metadata = {});

// One tensor's header entry.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "I64", ...
  std::vector<int64_t> shape;
  int64_t begin = 0, end = 0;  // byte range in the data section
  int64_t num_elements() const;
};

// One safetensors file, its header parsed and validated; the data read when asked for.
class SafetensorsFile {
 public:
  // The bytes of a whole file, held in memory; `where` names them in errors (the path).
  static Result<SafetensorsFile> parse(std::string bytes, const std::string& where);
  // The file's header; the file stays open and each values() call reads its tensor's bytes.
  static Result<SafetensorsFile> read(const std::string& path);

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::vector<SafetensorsEntry>& tensors() const { return entries_; }  // sorted by name
  const SafetensorsEntry* find(std::string_view name) const;
  // The tensor's values as f32; an error for a dtype that is not a float type, or for a file
  // that no longer holds the bytes (truncated since it was opened). Safe from several threads.
  Result<std::vector<float>> values(const SafetensorsEntry& entry) const;
  // OK when values() can convert the tensor's dtype (a floating-point one); else its error.
  Status check_values(const SafetensorsEntry& entry) const;
  // The index ranges [first, second) of dimension `dim` of the tensor, concatenated in order,
  // as f32, reading only their bytes: dim 0 (whole rows, any rank) or dim 1 of a matrix (a
  // column block of every row, row by row). A weight matrix's shard without the rest.
  Result<std::vector<float>> slice(const SafetensorsEntry& entry, int dim,
                                   const std::vector<std::pair<int64_t, int64_t>>& ranges) const;
  // Bytes of tensor data values() and slice() have read so far (from this file and its copies).
  int64_t bytes_read() const;

 private:
  struct Data;  // the open file, or the bytes parsed from memory
  static Result<SafetensorsFile> parse_header(std::string_view header, int64_t size,
                                              const std::string& where);
  // `count` elements of the tensor from element `first`, as f32, into `out`.
  Status read_elements(const SafetensorsEntry& entry, int64_t first, int64_t count,
                       float* out) const;
  std::string path_;
  std::shared_ptr<Data> data_;
  int64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsEntry> entries_;
};

// The tensors of a model: one safetensors file, or the shards of an index.
class SafetensorsSet {
 public:
  // `path`: a .safetensors file, a model.safetensors.index.json, or a directory holding
  // model.safetensors.index.json (shards) or model.safetensors.
  static Result<SafetensorsSet> open(const std::string& path);

  // Every tensor name, sorted.
  std::vector<std::string> names() const;
  bool contains(std::string_view name) const { return where_.count(std::string(name)) > 0; }
  const SafetensorsEntry* find(std::string_view name) const;
  // The file that holds tensor `name` ("" if none).
  std::string file_of(std::string_view name) const;
  // Values as f32, read from the file now; errors name the file and the tensor.
  Result<std::vector<float>> values(std::string_view name) const;
  // SafetensorsFile::check_values of the named tensor (read nothing).
  Status check_values(std::string_view name) const;
  // SafetensorsFile::slice of the named tensor.
  Result<std::vector<float>> slice(std::string_view name, int dim,
                                   const std::vector<std::pair<int64_t, int64_t>>& ranges) const;
  // Bytes of tensor data read so far, over every file.
  int64_t bytes_read() const;
  // Bytes of tensor data the named tensors hold as stored (0 for a name not here).
  int64_t stored_bytes(const std::vector<std::string>& names) const;
  // The first file's metadata.
  const std::map<std::string, std::string>& metadata() const;
  // What was opened (the file, or the index).
  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::vector<std::shared_ptr<const SafetensorsFile>> files_;
  std::map<std::string, size_t, std::less<>> where_;  // tensor -> index into files_
};

}  // namespace alpa
