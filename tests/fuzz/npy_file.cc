// NumPy .npy files (data/npy.h): any bytes give an array whose every row reads inside the
// file, or an error naming it; never a read beyond the data.
#include <string>
#include <vector>

#include "alpa/data/npy.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alpa::Result<alpa::NpyArray> a =
      alpa::NpyArray::parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz.npy");
  if (!a.ok()) return 0;
  const int64_t n = a->row_size();
  if (n > (int64_t{1} << 20) || a->rows() > (int64_t{1} << 16)) return 0;
  std::vector<float> row(static_cast<size_t>(n));
  for (int64_t r = 0; r < a->rows(); ++r) a->read_row(r, row.data());
  return 0;
}
