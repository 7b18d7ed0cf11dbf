// Reader for the PyTorch reference fixtures written by tools/torch_reference.py
// ("ALPAFIX1" format: named f32 tensors).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "alpa/ir/types.h"
#include "alpa/support/status.h"

namespace alpa::testing_support {

struct FixtureTensor {
  Shape shape;
  std::vector<float> data;
};

inline Result<std::map<std::string, FixtureTensor>> load_fixture(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return not_found("cannot open fixture " + path,
                     "generate it with /usr/bin/python3 tools/torch_reference.py");
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "ALPAFIX1", 8) != 0) return parse_error(path + ": bad magic");
  auto read_u32 = [&](uint32_t* v) {
    return static_cast<bool>(in.read(reinterpret_cast<char*>(v), 4));
  };
  uint32_t count = 0;
  if (!read_u32(&count)) return parse_error(path + ": truncated");
  std::map<std::string, FixtureTensor> out;
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0, rank = 0;
    if (!read_u32(&len) || len > 4096) return parse_error(path + ": bad name length");
    std::string name(len, '\0');
    in.read(name.data(), len);
    if (!read_u32(&rank) || rank > 16) return parse_error(path + ": bad rank");
    FixtureTensor t;
    t.shape.resize(rank);
    in.read(reinterpret_cast<char*>(t.shape.data()), 8 * rank);
    t.data.resize(static_cast<size_t>(num_elements(t.shape)));
    in.read(reinterpret_cast<char*>(t.data.data()),
            4 * static_cast<std::streamsize>(t.data.size()));
    if (!in) return parse_error(path + ": truncated tensor " + name);
    out.emplace(std::move(name), std::move(t));
  }
  return out;
}

}  // namespace alpa::testing_support
