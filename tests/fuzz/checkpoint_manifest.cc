// Checkpoint manifests: the input is a step's manifest.json beside one small rank file; any
// bytes give a checkpoint or an error, never a crash or an allocation beyond the files' size.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "alpa/runtime/checkpoint.h"
#include "fuzz_target.h"

namespace {

std::filesystem::path step_dir() {
  static const std::filesystem::path dir = [] {
    const std::filesystem::path d =
        std::filesystem::temp_directory_path() / ("alpa-fuzz-ckpt-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    // 8 floats: the rank file the seeds' manifests describe.
    std::ofstream(d / "rank-00000.bin", std::ios::binary) << std::string(32, '\0');
    return d;
  }();
  return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::filesystem::path dir = step_dir();
  {
    std::ofstream out(dir / "manifest.json", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  (void)alpa::read_checkpoint(dir.string());
  return 0;
}
