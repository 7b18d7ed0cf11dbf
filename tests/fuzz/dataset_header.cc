// Token dataset headers: the input is header.json beside small train.bin and validation.bin
// files; any bytes give a dataset or an error, never a read beyond the files.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "alpa/data/token_dataset.h"
#include "fuzz_target.h"

namespace {

std::filesystem::path dataset_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d = std::filesystem::temp_directory_path() /
                                    ("alpa-fuzz-dataset-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    // 6 and 2 uint16 tokens: the files the seed header describes.
    std::ofstream(d / "train.bin", std::ios::binary)
        << std::string("\x01\x00\x02\x00\x03\x00\x04\x00\x05\x00\x06\x00", 12);
    std::ofstream(d / "validation.bin", std::ios::binary) << std::string("\x07\x00\x08\x00", 4);
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path dir = dataset_dir();
  {
    std::ofstream out(dir / "header.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  alpa::Result<alpa::TokenDataset> ds = alpa::TokenDataset::open(dir.string());
  if (ds.ok())
    for (alpa::Split s : {alpa::Split::kTrain, alpa::Split::kValidation})
      for (int64_t i = 0; i < ds->size(s); ++i) (void)ds->token(s, i);
  return 0;
}
