// NumPy .npy arrays: the training data of models that do not read text (one file per model
// input, the samples along dim 0), and a writer for tests and tools.
//
// Format (NumPy's format version 1.0-3.0): the magic "\x93NUMPY", a major and minor version
// byte, the header length (2 bytes little-endian in 1.0, 4 in 2.0/3.0), then a Python dict
// literal {'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), } padded with spaces to a
// multiple of 64 bytes, then the data in C order. Element types read: little-endian or
// byte-order-free f4, f8, f2, i1/i2/i4/i8, u1/u2/u4/u8 and b1, every one converted to f32 as the
// runtime holds data. Fortran order, big-endian data, structured and object dtypes are
// refused, as is a data section whose size is not the shape's.
//
// A directory of arrays is a dataset (ArrayDataset): "<input>.npy" holds the training samples
// of the model input named <input>, "<input>.val.npy" (optional, for every input or none) the
// held-out ones; every array of a split has the same number of samples.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

class NpyArray {
 public:
  // Reads and checks the file; errors name the file and what is wrong.
  static Result<NpyArray> open(const std::string& path);
  // Parses `bytes` (the whole file) as `name` for messages.
  static Result<NpyArray> parse(std::string bytes, const std::string& name);

  const std::string& path() const { return path_; }
  const std::string& descr() const { return descr_; }  // "<f4", "|u1", ...
  const std::vector<int64_t>& shape() const { return shape_; }
  int64_t rows() const { return shape_.empty() ? 1 : shape_[0]; }
  int64_t row_size() const;  // elements per sample (the product of the dims after the first)
  // Sample `row`'s elements, converted to f32, into out[0, row_size()).
  void read_row(int64_t row, float* out) const;

 private:
  std::string path_, descr_, bytes_;
  std::vector<int64_t> shape_;
  size_t data_offset_ = 0;
  char kind_ = 'f';  // 'f', 'i', 'u', 'b'
  int item_bytes_ = 4;
};

// Writes a C-order little-endian array ("<f4" or "<i4") atomically.
Status write_npy(const std::string& path, const std::vector<int64_t>& shape,
                 const std::vector<float>& values, bool int32 = false);

class ArrayDataset {
 public:
  // Opens "<name>.npy" (and "<name>.val.npy" where present) in `dir` for each input name.
  static Result<ArrayDataset> open(const std::string& dir, const std::vector<std::string>& inputs);
  // True when `dir` holds .npy files and no token dataset (header.json).
  static bool looks_like(const std::string& dir);

  const NpyArray& train(size_t input) const { return train_[input]; }
  const NpyArray* validation(size_t input) const {
    return validation_.empty() ? nullptr : &validation_[input];
  }
  int64_t train_rows() const { return train_.empty() ? 0 : train_[0].rows(); }

 private:
  std::vector<NpyArray> train_, validation_;
};

}  // namespace alpa
