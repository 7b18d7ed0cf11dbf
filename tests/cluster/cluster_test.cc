#include "alpa/cluster/cluster.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

namespace alpa {
namespace {

using Json = nlohmann::json;

Cluster p3() {
  return cluster_preset("p3.16xlarge").value();
}

// The p3 preset as JSON, edited by `edit`, then parsed back as "cluster.json".
template <typename Edit>
Result<Cluster> parse_edited(Edit edit) {
  Json j = Json::parse(cluster_to_json(p3()));
  edit(j);
  return cluster_from_json(j.dump(2), "cluster.json");
}

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ClusterPreset, EveryPresetValidatesAndRoundTrips) {
  std::vector<std::string> names = cluster_preset_names();
  ASSERT_EQ(names, (std::vector<std::string>{"p3.16xlarge", "p4d.24xlarge", "p4de.24xlarge",
                                             "dgx-h100", "local"}));
  for (const std::string& name : names) {
    SCOPED_TRACE(name);
    Result<Cluster> c = cluster_preset(name);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    EXPECT_EQ(c->name, name);
    EXPECT_FALSE(c->source.empty());
    EXPECT_EQ(c->hosts, 1);
    EXPECT_EQ(c->devices_per_host, 8);
    EXPECT_TRUE(validate_cluster(*c).ok()) << validate_cluster(*c).to_string();
    std::string text = cluster_to_json(*c);
    Result<Cluster> back = cluster_from_json(text, name);
    ASSERT_TRUE(back.ok()) << back.status().to_string() << "\n" << text;
    EXPECT_EQ(*back, *c) << text;
    EXPECT_EQ(cluster_to_json(*back), text);
  }
}

TEST(ClusterPreset, RoundTripIsExactForAwkwardNumbers) {
  Cluster c = p3();
  c.name = "odd \"name\"\n";
  c.device.peak_flops_f32 = 0.1 + 0.2;
  c.device.memory_bytes = 12345678901234.567;
  c.intra_host.latency = 0;
  c.inter_host.latency = 1.0 / 3.0;
  c.hosts = 7;
  Result<Cluster> back = cluster_from_json(cluster_to_json(c));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, c);
}

TEST(ClusterPreset, P3FiguresAndPeakPerDType) {
  Cluster c = p3();
  EXPECT_EQ(c.num_devices(), 8);
  EXPECT_EQ(c.device.peak_flops_f32, 15.7e12);
  EXPECT_EQ(c.device.peak_flops_f16, 125e12);
  EXPECT_EQ(c.device.memory_bandwidth, 900e9);
  EXPECT_EQ(c.inter_host.bandwidth, 3.125e9);
  EXPECT_EQ(c.peak_flops(DType::kF32), 15.7e12);
  EXPECT_EQ(c.peak_flops(DType::kF16), 125e12);
  EXPECT_EQ(c.peak_flops(DType::kBF16), 125e12);
  EXPECT_EQ(c.peak_flops(DType::kI32), 15.7e12);
  EXPECT_EQ(c.peak_flops(DType::kPred), 15.7e12);
  Cluster h = cluster_preset("dgx-h100").value();
  EXPECT_EQ(h.peak_flops(DType::kBF16), 989e12);
  EXPECT_EQ(h.inter_host.bandwidth, 400e9);
  Cluster a = cluster_preset("p4d.24xlarge").value();
  EXPECT_EQ(a.device.memory_bandwidth, 1555e9);
  EXPECT_EQ(a.inter_host.bandwidth, 50e9);
  Cluster l = cluster_preset("local").value();
  EXPECT_EQ(l.device.peak_flops_f32, 150e9);
  EXPECT_EQ(l.intra_host.bandwidth, 5e9);
}

TEST(ClusterPreset, UnknownPresetListsThePresets) {
  Result<Cluster> c = cluster_preset("p3.8xlarge");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(c.status().message(), "p3.8xlarge"));
  for (const std::string& name : cluster_preset_names())
    EXPECT_TRUE(contains(c.status().hint(), name)) << c.status().hint();
}

TEST(ClusterJson, MissingField) {
  Result<Cluster> c = parse_edited([](Json& j) { j["inter_host"].erase("bandwidth"); });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: missing field \"inter_host.bandwidth\"");
  EXPECT_TRUE(contains(c.status().hint(), "network")) << c.status().hint();

  c = parse_edited([](Json& j) { j.erase("device"); });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: missing field \"device\"");

  c = parse_edited([](Json& j) { j.erase("hosts"); });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: missing field \"hosts\"");
}

TEST(ClusterJson, SourceIsOptional) {
  Result<Cluster> c = parse_edited([](Json& j) { j.erase("source"); });
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->source, "");
}

TEST(ClusterJson, NegativeAndZeroNumbers) {
  Result<Cluster> c = parse_edited([](Json& j) { j["device"]["memory_bytes"] = -1; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"device.memory_bytes\" must be a positive number, got -1");
  EXPECT_TRUE(contains(c.status().hint(), "GiB")) << c.status().hint();

  c = parse_edited([](Json& j) { j["intra_host"]["bandwidth"] = 0; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"intra_host.bandwidth\" must be a positive number, got 0");

  c = parse_edited([](Json& j) { j["inter_host"]["latency"] = -1e-6; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"inter_host.latency\" must be a non-negative number, got -1e-06");

  c = parse_edited([](Json& j) { j["intra_host"]["latency"] = 0; });
  EXPECT_TRUE(c.ok()) << c.status().to_string();  // zero latency is allowed
}

TEST(ClusterJson, WrongTypes) {
  Result<Cluster> c = parse_edited([](Json& j) { j["hosts"] = "two"; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"hosts\" must be an integer >= 1, got \"two\"");

  c = parse_edited([](Json& j) { j["devices_per_host"] = 2.5; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"devices_per_host\" must be an integer >= 1, got 2.5");

  c = parse_edited([](Json& j) { j["hosts"] = 10000000000LL; });
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(contains(c.status().message(), "field \"hosts\" must be an integer in [1, "))
      << c.status().message();

  c = parse_edited([](Json& j) { j["device"]["peak_flops_f16"] = "125T"; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(
      c.status().message(),
      "cluster.json: field \"device.peak_flops_f16\" must be a positive number, got \"125T\"");

  c = parse_edited([](Json& j) { j["device"]["memory_bandwidth"] = true; });
  ASSERT_FALSE(c.ok());
  EXPECT_TRUE(contains(c.status().message(), "\"device.memory_bandwidth\""))
      << c.status().message();

  c = parse_edited([](Json& j) { j["device"] = 5; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: field \"device\" must be an object, got 5");
  EXPECT_TRUE(contains(c.status().hint(), "\"memory_bytes\"")) << c.status().hint();

  c = parse_edited([](Json& j) { j["name"] = nullptr; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: field \"name\" must be a string, got null");

  c = parse_edited([](Json& j) { j["device"]["name"] = 3; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: field \"device.name\" must be a string, got 3");
}

TEST(ClusterJson, UnknownFieldWithTypoIsRejected) {
  Result<Cluster> c = parse_edited([](Json& j) {
    j["device"]["peak_flops_fp16"] = j["device"]["peak_flops_f16"];
    j["device"].erase("peak_flops_f16");
  });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: unknown field \"device.peak_flops_fp16\"");
  EXPECT_TRUE(contains(c.status().hint(), "did you mean \"device.peak_flops_f16\"?"))
      << c.status().hint();
  EXPECT_TRUE(contains(c.status().hint(), "memory_bandwidth")) << c.status().hint();

  // An extra field next to the right one is rejected too, not silently ignored.
  c = parse_edited([](Json& j) { j["devices_per_hosts"] = 4; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: unknown field \"devices_per_hosts\"");
  EXPECT_TRUE(contains(c.status().hint(), "did you mean \"devices_per_host\"?"))
      << c.status().hint();

  c = parse_edited([](Json& j) { j["inter_host"]["bandwith"] = 1e9; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: unknown field \"inter_host.bandwith\"");
}

TEST(ClusterJson, InvalidJsonTextReportsPosition) {
  Result<Cluster> c = cluster_from_json("{\n  \"name\": \"x\",\n  \"hosts\": 1,,\n}", "my.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kParseError);
  EXPECT_TRUE(contains(c.status().message(), "my.json: invalid JSON")) << c.status().message();
  EXPECT_TRUE(contains(c.status().message(), "line 3")) << c.status().message();
  EXPECT_TRUE(contains(c.status().message(), "column")) << c.status().message();
  EXPECT_FALSE(contains(c.status().message(), "[json.exception")) << c.status().message();

  c = cluster_from_json("", "empty.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kParseError);

  c = cluster_from_json("[1, 2]", "arr.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "arr.json: a cluster must be a JSON object, got array");
}

TEST(ClusterJson, DuplicateFieldIsRejected) {
  std::string text = cluster_to_json(p3());
  size_t at = text.find("\"memory_bytes\"");
  ASSERT_NE(at, std::string::npos);
  text.insert(at, "\"memory_bytes\": 1, ");
  Result<Cluster> c = cluster_from_json(text, "dup.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "dup.json: duplicate field \"device.memory_bytes\"");
}

TEST(ClusterJson, HostsZero) {
  Result<Cluster> c = parse_edited([](Json& j) { j["hosts"] = 0; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), "cluster.json: field \"hosts\" must be an integer >= 1, got 0");

  c = parse_edited([](Json& j) { j["devices_per_host"] = -8; });
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(),
            "cluster.json: field \"devices_per_host\" must be an integer >= 1, got -8");
}

TEST(ClusterValidate, NamesTheField) {
  Cluster c = p3();
  c.hosts = 0;
  EXPECT_EQ(validate_cluster(c).message(), "field \"hosts\" must be an integer >= 1, got 0");
  c = p3();
  c.device.peak_flops_f32 = std::numeric_limits<double>::quiet_NaN();
  EXPECT_TRUE(contains(validate_cluster(c).message(), "\"device.peak_flops_f32\""));
  c = p3();
  c.inter_host.latency = std::numeric_limits<double>::infinity();
  EXPECT_TRUE(contains(validate_cluster(c).message(), "\"inter_host.latency\""));
  c = p3();
  c.name = "";
  EXPECT_TRUE(contains(validate_cluster(c).message(), "\"name\""));
  c = p3();
  c.hosts = 1 << 20;
  c.devices_per_host = 1 << 12;
  EXPECT_TRUE(contains(validate_cluster(c).message(), "exceeds"));
}

// Random byte edits of a valid file never crash the parser; whatever parses is valid.
TEST(ClusterJson, RandomEditsNeverCrash) {
  const std::string base = cluster_to_json(p3());
  std::mt19937 rng(1234);
  const std::string alphabet = "{}[]\":,.-+e0123456789 \nabcxyz\\";
  int accepted = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string text = base;
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      size_t pos = rng() % text.size();
      switch (rng() % 3) {
        case 0: text[pos] = alphabet[rng() % alphabet.size()]; break;
        case 1: text.erase(pos, 1 + rng() % 8); break;
        default: text.insert(pos, 1, alphabet[rng() % alphabet.size()]); break;
      }
    }
    Result<Cluster> c = cluster_from_json(text, "fuzz.json");
    if (c.ok()) {
      ++accepted;
      EXPECT_TRUE(validate_cluster(*c).ok()) << text;
    } else {
      EXPECT_FALSE(c.status().message().empty());
    }
  }
  EXPECT_LT(accepted, 3000);  // the edits do break files
}

class LoadClusterTest : public ::testing::Test {
 protected:
  // Per process: ctest runs this binary's tests side by side.
  std::filesystem::path dir_ = std::filesystem::path(::testing::TempDir()) /
                               ("alpa_cluster_test_load_" + std::to_string(::getpid()));
  void SetUp() override { std::filesystem::create_directories(dir_); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::filesystem::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
};

TEST_F(LoadClusterTest, PresetName) {
  Result<Cluster> c = load_cluster("dgx-h100");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, cluster_preset("dgx-h100").value());
}

TEST_F(LoadClusterTest, FilePath) {
  Cluster want = p3();
  want.name = "my-cluster";
  want.hosts = 4;
  std::string path = write("mine.json", cluster_to_json(want));
  Result<Cluster> c = load_cluster(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, want);
}

TEST_F(LoadClusterTest, BadFileNamesThePath) {
  std::string path = write("bad.json", "{\"name\": \"x\"}");
  Result<Cluster> c = load_cluster(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().message(), path + ": missing field \"hosts\"");
}

TEST_F(LoadClusterTest, MissingFileIsNotFound) {
  std::string path = (dir_ / "nope.json").string();
  Result<Cluster> c = load_cluster(path);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(contains(c.status().message(), path)) << c.status().message();
  EXPECT_TRUE(contains(c.status().message(), "no such file")) << c.status().message();
  EXPECT_TRUE(contains(c.status().hint(), "p3.16xlarge")) << c.status().hint();

  c = load_cluster("");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kNotFound);
}

TEST_F(LoadClusterTest, DirectoryIsAnError) {
  Result<Cluster> c = load_cluster(dir_.string());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("is a directory"), std::string::npos);
  // A device is not read (reading /dev/zero would never end).
  Result<Cluster> dev = load_cluster("/dev/zero");
  ASSERT_FALSE(dev.ok());
  EXPECT_NE(dev.status().message().find("not a regular file"), std::string::npos);
}

TEST(WithDevices, SizesHosts) {
  Cluster c = p3();
  Result<Cluster> r = with_devices(c, 8);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hosts, 1);
  EXPECT_EQ(r->devices_per_host, 8);

  r = with_devices(c, 64);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hosts, 8);
  EXPECT_EQ(r->devices_per_host, 8);
  EXPECT_EQ(r->num_devices(), 64);
  EXPECT_EQ(r->device, c.device);
  EXPECT_EQ(r->inter_host, c.inter_host);

  r = with_devices(c, 4);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->hosts, 1);
  EXPECT_EQ(r->devices_per_host, 4);

  r = with_devices(c, 1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->num_devices(), 1);
}

TEST(WithDevices, RejectsPartialHostsAndZero) {
  Result<Cluster> r = with_devices(p3(), 12);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(contains(r.status().message(), "12 devices")) << r.status().message();
  EXPECT_TRUE(contains(r.status().hint(), "multiple of 8")) << r.status().hint();

  r = with_devices(p3(), 0);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), ">= 1")) << r.status().message();

  r = with_devices(p3(), -8);
  EXPECT_FALSE(r.ok());
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

// Profile tables (alpa profile): optional, round-trip exactly, interpolate piecewise-linearly,
// and bad tables are refused naming the field.
Cluster profiled() {
  Cluster c = p3();
  c.device.gemm_efficiency = {{1e6, 0.3}, {1e9, 0.9}};
  c.collectives = {{"all-reduce", 2, {{4096, 1e-5}, {1 << 20, 2e-4}}},
                   {"all-gather", 4, {{4096, 2e-5}}}};
  return c;
}

TEST(ClusterProfile, TablesRoundTripAndPresetsHaveNone) {
  const Cluster c = profiled();
  ASSERT_TRUE(validate_cluster(c).ok());
  Result<Cluster> back = cluster_from_json(cluster_to_json(c), "profiled.json");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, c);
  EXPECT_TRUE(p3().device.gemm_efficiency.empty());
  EXPECT_TRUE(p3().collectives.empty());
  EXPECT_FALSE(contains(cluster_to_json(p3()), "collectives"));
}

TEST(ClusterProfile, InterpolationIsPiecewiseLinearAndClamped) {
  const std::vector<ProfilePoint> t = {{1, 10}, {3, 30}, {5, 10}};
  EXPECT_DOUBLE_EQ(interpolate(t, 0.5), 10);  // below: the first value
  EXPECT_DOUBLE_EQ(interpolate(t, 2), 20);
  EXPECT_DOUBLE_EQ(interpolate(t, 3), 30);
  EXPECT_DOUBLE_EQ(interpolate(t, 4), 20);
  EXPECT_DOUBLE_EQ(interpolate(t, 7), -10);  // above: the last segment extended
  EXPECT_DOUBLE_EQ(interpolate({{2, 5}}, 100), 5);
}

// A field nested 100,000 deep is quoted as a short excerpt, not dumped whole (which
// overflowed the stack), and a huge integer is refused, not truncated.
TEST(ClusterJson, HostileValuesGiveShortErrors) {
  Json j = Json::parse(cluster_to_json(p3()));
  std::string text = j.dump();
  const std::string name = "\"name\":\"" + j["name"].get<std::string>() + "\"";
  ASSERT_NE(text.find(name), std::string::npos);
  text.replace(text.find(name), name.size(),
               "\"name\":" + std::string(100000, '[') + std::string(100000, ']'));
  Result<Cluster> r = cluster_from_json(text, "deep.json");
  ASSERT_FALSE(r.ok());
  EXPECT_LT(r.status().message().size(), 300u);
  EXPECT_TRUE(contains(r.status().message(), "[[[[...]]]]")) << r.status().message();
  j["devices_per_host"] = 4294967304ULL;  // 2^32 + 8: 8 if truncated
  r = cluster_from_json(j.dump(), "big.json");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "devices_per_host")) << r.status().message();
}

TEST(ClusterProfile, BadTablesNameTheField) {
  auto error_of = [](auto edit) {
    Json j = Json::parse(cluster_to_json(profiled()));
    edit(j);
    Result<Cluster> r = cluster_from_json(j.dump(), "p.json");
    EXPECT_FALSE(r.ok());
    return r.ok() ? std::string() : r.status().message() + " | " + r.status().hint();
  };
  EXPECT_TRUE(contains(error_of([](Json& j) { j["device"]["gemm_efficiency"][1][1] = 3.0; }),
                       "device.gemm_efficiency[1]"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["device"]["gemm_efficiency"][1][0] = 10; }),
                       "x must increase"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["device"]["gemm_efficiency"] = "fast"; }),
                       "list of [x, y] pairs"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["collectives"][0]["collective"] = "gossip"; }),
                       "collectives[0].collective"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["collectives"][1]["group"] = 1; }),
                       "collectives[1].group"));
  EXPECT_TRUE(contains(error_of([](Json& j) {
                         j["collectives"][0]["points"][0] = {1, -2};
                       }),
                       "collectives[0].points[0]"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["collectives"][0]["pointz"] = 1; }),
                       "collectives[0].pointz"));
  EXPECT_TRUE(contains(error_of([](Json& j) { j["collectives"][0]["points"] = Json::array(); }),
                       "at least one"));
}

}  // namespace
}  // namespace alpa
