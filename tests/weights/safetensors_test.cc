// The safetensors reader and writer: round trips in every stored dtype, exact f16/bf16
// rounding, sharded indexes, and every malformed file refused with an error naming the file
// and the tensor.
#include "alpa/data/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "alpa/support/files.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

std::vector<NamedTensor> sample_tensors() {
  NamedTensor a{"a.weight", {2, 3}, {1.0f, -2.5f, 0.125f, 3.0f, 1e-3f, -7.75f}};
  NamedTensor b{"b", {4}, {0.0f, -0.0f, 65504.0f, 1.0f / 1024}};
  NamedTensor s{"scalar", {}, {42.0f}};
  NamedTensor e{"empty", {0, 3}, {}};
  return {a, b, s, e};
}

std::string temp_dir(const std::string& name) {
  // Per process: ctest runs this binary's tests side by side.
  const std::string d =
      ::testing::TempDir() + "/safetensors_" + name + "_" + std::to_string(::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A file of `header` (JSON text) and `data_bytes` zero bytes of data.
std::string raw_file(const std::string& header, size_t data_bytes) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  return out + header + std::string(data_bytes, '\0');
}

// The error of parsing `bytes` as "f.safetensors" (the test fails if it parses).
std::string parse_error_of(const std::string& bytes) {
  Result<SafetensorsFile> f = SafetensorsFile::parse(bytes, "f.safetensors");
  EXPECT_FALSE(f.ok());
  if (f.ok()) return "";
  EXPECT_NE(f.status().message().find("f.safetensors"), std::string::npos) << f.status().message();
  return f.status().message();
}

TEST(Safetensors, RoundTripF32IsExact) {
  const std::vector<NamedTensor> in = sample_tensors();
  Result<std::string> bytes = encode_safetensors(in, StoredDType::kF32, {{"format", "pt"}});
  ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
  uint64_t header = 0;
  std::memcpy(&header, bytes->data(), 8);
  EXPECT_EQ(header % 8, 0u);  // the data starts 8-byte aligned
  Result<SafetensorsFile> f = SafetensorsFile::parse(*bytes, "mem");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->metadata().at("format"), "pt");
  ASSERT_EQ(f->tensors().size(), in.size());
  for (const NamedTensor& t : in) {
    const SafetensorsEntry* e = f->find(t.name);
    ASSERT_NE(e, nullptr) << t.name;
    EXPECT_EQ(e->dtype, "F32");
    EXPECT_EQ(e->shape, t.shape);
    Result<std::vector<float>> v = f->values(*e);
    ASSERT_TRUE(v.ok());
    ASSERT_EQ(v->size(), t.values.size());
    for (size_t i = 0; i < v->size(); ++i)
      EXPECT_EQ(std::memcmp(&(*v)[i], &t.values[i], 4), 0) << t.name << " " << i;
  }
  EXPECT_EQ(f->find("missing"), nullptr);
}

TEST(Safetensors, RoundTripF16AndBf16RoundToNearest) {
  NamedTensor t{"w", {1000}, {}};
  uint64_t x = 12345;
  for (int i = 0; i < 1000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    t.values.push_back(static_cast<float>(static_cast<int64_t>(x >> 11) % 200000) / 1000.0f -
                       100.0f);
  }
  for (StoredDType d : {StoredDType::kF16, StoredDType::kBF16}) {
    Result<std::string> bytes = encode_safetensors({t}, d);
    ASSERT_TRUE(bytes.ok());
    Result<SafetensorsFile> f = SafetensorsFile::parse(*bytes, "mem");
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    EXPECT_EQ(f->tensors()[0].dtype, safetensors_dtype_name(d));
    EXPECT_EQ(f->tensors()[0].end - f->tensors()[0].begin, 2000);
    Result<std::vector<float>> v = f->values(f->tensors()[0]);
    ASSERT_TRUE(v.ok());
    const double rel = d == StoredDType::kF16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    for (size_t i = 0; i < t.values.size(); ++i) {
      EXPECT_EQ((*v)[i], round_to_stored(t.values[i], d));
      EXPECT_LE(std::fabs((*v)[i] - t.values[i]), rel * std::fabs(t.values[i]) + 1e-7);
    }
  }
}

TEST(Safetensors, HalfPrecisionBitsAreExact) {
  EXPECT_EQ(f32_to_f16_bits(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16_bits(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16_bits(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16_bits(65520.0f), 0x7c00);  // rounds up to inf
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(1.0f, -25)), 0x0000);         // tie to even
  EXPECT_EQ(f32_to_f16_bits(std::ldexp(3.0f, -25)), 0x0002);         // tie to even
  EXPECT_EQ(f32_to_f16_bits(1.0f + std::ldexp(1.0f, -11)), 0x3c00);  // tie to even
  EXPECT_EQ(f32_to_f16_bits(1.0f + std::ldexp(3.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_f16_bits(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_f16_bits(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_TRUE(std::isnan(f16_bits_to_f32(f32_to_f16_bits(std::nanf("")))));
  EXPECT_EQ(f32_to_bf16_bits(1.0f), 0x3f80);
  EXPECT_EQ(f32_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie to even
  EXPECT_EQ(f32_to_bf16_bits(1.0f + std::ldexp(3.0f, -8)), 0x3f82);
  EXPECT_TRUE(std::isnan(bf16_bits_to_f32(f32_to_bf16_bits(std::nanf("")))));
  // Every finite 16-bit pattern survives decoding and encoding.
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t b = static_cast<uint16_t>(h);
    if (((b >> 10) & 0x1f) != 0x1f) EXPECT_EQ(f32_to_f16_bits(f16_bits_to_f32(b)), b) << h;
    if (((b >> 7) & 0xff) != 0xff) EXPECT_EQ(f32_to_bf16_bits(bf16_bits_to_f32(b)), b) << h;
  }
}

TEST(Safetensors, WritesAtomicallyAndOpensADirectory) {
  const std::string dir = temp_dir("dir");
  ASSERT_TRUE(write_safetensors(dir + "/model.safetensors", sample_tensors(), StoredDType::kF32,
                                {{"format", "pt"}})
                  .ok());
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename(), "model.safetensors");  // no temporary left behind
  Result<SafetensorsSet> set = SafetensorsSet::open(dir);
  ASSERT_TRUE(set.ok()) << set.status().to_string();
  EXPECT_EQ(set->names().size(), 4u);
  EXPECT_EQ(set->file_of("b"), dir + "/model.safetensors");
  Result<std::vector<float>> b = set->values("b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ((*b)[2], 65504.0f);
  EXPECT_FALSE(set->values("nope").ok());
  Result<SafetensorsSet> none = SafetensorsSet::open(temp_dir("empty"));
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("model.safetensors"), std::string::npos);
}

// Opening reads the header; each tensor's bytes are read when asked for, and a file cut short
// after it was opened gives an error naming the file and the tensor, never a crash.
TEST(Safetensors, ReadsTensorsWhenAskedAndRefusesAFileCutShortSince) {
  const std::string dir = temp_dir("lazy");
  const std::string path = dir + "/model.safetensors";
  ASSERT_TRUE(write_safetensors(path, sample_tensors(), StoredDType::kF32).ok());
  Result<SafetensorsSet> set = SafetensorsSet::open(dir);
  ASSERT_TRUE(set.ok()) << set.status().to_string();
  EXPECT_EQ(set->bytes_read(), 0);
  EXPECT_EQ(set->stored_bytes(set->names()), 6 * 4 + 4 * 4 + 4);
  ASSERT_TRUE(set->values("b").ok());
  EXPECT_EQ(set->bytes_read(), 16);
  EXPECT_EQ(set->stored_bytes({"b", "scalar", "nope"}), 20);
  // The data is laid out by name: a.weight, b, empty, scalar. Cut the scalar's last byte.
  fs::resize_file(path, fs::file_size(path) - 1);
  Result<std::vector<float>> scalar = set->values("scalar");
  ASSERT_FALSE(scalar.ok());
  EXPECT_NE(scalar.status().message().find("scalar"), std::string::npos)
      << scalar.status().to_string();
  EXPECT_NE(scalar.status().message().find(path), std::string::npos);
  EXPECT_NE(scalar.status().to_string().find("truncated"), std::string::npos);
  Result<std::vector<float>> a = set->values("a.weight");  // still whole in the file
  ASSERT_TRUE(a.ok());
  EXPECT_EQ((*a)[5], -7.75f);
  EXPECT_EQ(set->bytes_read(), 16 + 24);
  // Opened again, the cut file is refused before any value is read.
  EXPECT_FALSE(SafetensorsSet::open(dir).ok());
}

TEST(Safetensors, ShardedIndex) {
  const std::string dir = temp_dir("sharded");
  std::vector<NamedTensor> t = sample_tensors();
  ASSERT_TRUE(
      write_safetensors(dir + "/model-00001-of-00002.safetensors", {t[0], t[1]}, StoredDType::kF16)
          .ok());
  ASSERT_TRUE(
      write_safetensors(dir + "/model-00002-of-00002.safetensors", {t[2]}, StoredDType::kBF16)
          .ok());
  const std::string good =
      R"({"metadata": {"total_size": 22}, "weight_map": {"a.weight": "model-00001-of-00002.safetensors",
       "b": "model-00001-of-00002.safetensors", "scalar": "model-00002-of-00002.safetensors"}})";
  ASSERT_TRUE(write_file(dir + "/model.safetensors.index.json", good).ok());
  Result<SafetensorsSet> set = SafetensorsSet::open(dir);
  ASSERT_TRUE(set.ok()) << set.status().to_string();
  EXPECT_EQ(set->names(), (std::vector<std::string>{"a.weight", "b", "scalar"}));
  EXPECT_EQ(set->file_of("scalar"), dir + "/model-00002-of-00002.safetensors");
  EXPECT_EQ(set->find("a.weight")->dtype, "F16");
  EXPECT_EQ((*set->values("scalar"))[0], 42.0f);
  EXPECT_EQ((*set->values("a.weight"))[1], -2.5f);

  auto index_error = [&](const std::string& index) {
    EXPECT_TRUE(write_file(dir + "/model.safetensors.index.json", index).ok());
    Result<SafetensorsSet> s = SafetensorsSet::open(dir);
    EXPECT_FALSE(s.ok()) << index;
    return s.ok() ? std::string() : s.status().message();
  };
  EXPECT_NE(index_error(R"({"metadata": {}})").find("weight_map"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map": {"a.weight": 3}})").find("a.weight"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map": {"a.weight": "../x.safetensors"}})").find("../x"),
            std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map": {"scalar": "model-00001-of-00002.safetensors"}})")
                .find("does not hold it"),
            std::string::npos);
  // b is in the first shard but not in the map.
  const std::string partial =
      R"({"weight_map": {"a.weight": "model-00001-of-00002.safetensors",
         "scalar": "model-00002-of-00002.safetensors"}})";
  const std::string m = index_error(partial);
  EXPECT_NE(m.find("'b'"), std::string::npos) << m;
  EXPECT_NE(m.find("model-00001-of-00002.safetensors"), std::string::npos) << m;
  EXPECT_NE(index_error("[1, 2]").find("weight_map"), std::string::npos);
  EXPECT_NE(index_error("{not json").find("not valid JSON"), std::string::npos);
  EXPECT_NE(index_error(R"({"weight_map": {"x": "missing.safetensors"}})").find("missing"),
            std::string::npos);
}

TEST(Safetensors, MalformedFilesAreRefusedByName) {
  EXPECT_NE(parse_error_of("abc").find("too short"), std::string::npos);
  std::string huge(8, '\0');
  huge[0] = 100;
  EXPECT_NE(parse_error_of(huge + "{}").find("runs past the end"), std::string::npos);
  std::string max(8, '\xff');
  EXPECT_NE(parse_error_of(max + "{}").find("runs past the end"), std::string::npos);
  EXPECT_NE(parse_error_of(raw_file("{nope", 0)).find("not valid JSON"), std::string::npos);
  EXPECT_NE(parse_error_of(raw_file("[1,2]", 0)).find("not a JSON object"), std::string::npos);
  auto tensor = [](const std::string& body) { return raw_file(R"({"t": )" + body + "}", 16); };
  std::string m =
      parse_error_of(tensor(R"({"dtype": "F17", "shape": [4], "data_offsets": [0, 16]})"));
  EXPECT_NE(m.find("'t'"), std::string::npos) << m;
  EXPECT_NE(m.find("unknown dtype \"F17\""), std::string::npos) << m;
  EXPECT_NE(parse_error_of(tensor(R"({"shape": [4], "data_offsets": [0, 16]})")).find("dtype"),
            std::string::npos);
  m = parse_error_of(tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [8, 24]})"));
  EXPECT_NE(m.find("outside the data section of 16 bytes"), std::string::npos) << m;
  m = parse_error_of(tensor(R"({"dtype": "F32", "shape": [0], "data_offsets": [8, 4]})"));
  EXPECT_NE(m.find("outside"), std::string::npos) << m;
  m = parse_error_of(tensor(R"({"dtype": "F32", "shape": [3], "data_offsets": [0, 16]})"));
  EXPECT_NE(m.find("needs 12"), std::string::npos) << m;
  m = parse_error_of(tensor(R"({"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 16]})"));
  EXPECT_NE(m.find("needs 8"), std::string::npos) << m;
  EXPECT_NE(parse_error_of(tensor(R"({"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]})"))
                .find("bad dimension"),
            std::string::npos);
  EXPECT_NE(parse_error_of(tensor(R"({"dtype": "F32", "shape": 4, "data_offsets": [0, 16]})"))
                .find("shape"),
            std::string::npos);
  EXPECT_NE(parse_error_of(tensor(R"({"dtype": "F32", "shape": [4], "data_offsets": [0]})"))
                .find("data_offsets"),
            std::string::npos);
  EXPECT_NE(parse_error_of(tensor(R"({"dtype": "F32", "shape": [1,1,1,1,1,1,1,1,4],
                                      "data_offsets": [0, 16]})"))
                .find("shape"),
            std::string::npos);
  EXPECT_NE(parse_error_of(tensor(R"({"dtype": "F32", "shape": [4294967296, 4294967296],
                                      "data_offsets": [0, 16]})"))
                .find("2^48"),
            std::string::npos);
  EXPECT_NE(parse_error_of(tensor("[1]")).find("not an object"), std::string::npos);
  m = parse_error_of(raw_file(R"({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                                  "y": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})",
                              16));
  EXPECT_NE(m.find("overlaps"), std::string::npos) << m;
  EXPECT_NE(m.find("'y'"), std::string::npos) << m;
  EXPECT_NE(parse_error_of(raw_file(R"({"__metadata__": [1]})", 0)).find("__metadata__"),
            std::string::npos);
  EXPECT_NE(parse_error_of(raw_file(R"({"__metadata__": {"k": 1}})", 0)).find("'k'"),
            std::string::npos);
}

TEST(Safetensors, IntegerTensorsAreValidatedButNotReadAsWeights) {
  const std::string bytes =
      raw_file(R"({"ids": {"dtype": "I64", "shape": [2], "data_offsets": [0, 16]}})", 16);
  Result<SafetensorsFile> f = SafetensorsFile::parse(bytes, "ids.safetensors");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  Result<std::vector<float>> v = f->values(f->tensors()[0]);
  ASSERT_FALSE(v.ok());
  EXPECT_NE(v.status().message().find("ids.safetensors: tensor 'ids' is I64"), std::string::npos)
      << v.status().message();
}

TEST(Safetensors, EveryTruncationIsRefused) {
  Result<std::string> bytes = encode_safetensors(sample_tensors(), StoredDType::kF32);
  ASSERT_TRUE(bytes.ok());
  for (size_t n = 0; n < bytes->size(); ++n) {
    Result<SafetensorsFile> f = SafetensorsFile::parse(bytes->substr(0, n), "cut.safetensors");
    EXPECT_FALSE(f.ok()) << "truncated to " << n << " bytes";
  }
  // On disk too: a truncated file is an error naming it.
  const std::string dir = temp_dir("cut");
  ASSERT_TRUE(write_file(dir + "/model.safetensors", bytes->substr(0, bytes->size() - 1)).ok());
  Result<SafetensorsSet> set = SafetensorsSet::open(dir);
  ASSERT_FALSE(set.ok());
  EXPECT_NE(set.status().message().find(dir + "/model.safetensors"), std::string::npos);
}

TEST(Safetensors, EncodingRefusesBadTensors) {
  EXPECT_FALSE(encode_safetensors({{"a", {2}, {1.0f}}}, StoredDType::kF32).ok());
  EXPECT_FALSE(
      encode_safetensors({{"a", {1}, {1.0f}}, {"a", {1}, {2.0f}}}, StoredDType::kF32).ok());
  EXPECT_FALSE(encode_safetensors({{"", {1}, {1.0f}}}, StoredDType::kF32).ok());
  EXPECT_FALSE(encode_safetensors({{"__metadata__", {1}, {1.0f}}}, StoredDType::kF32).ok());
  EXPECT_TRUE(parse_stored_dtype("bf16").ok());
  EXPECT_FALSE(parse_stored_dtype("f8").ok());
}

}  // namespace
}  // namespace alpa
