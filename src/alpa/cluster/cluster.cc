#include "alpa/cluster/cluster.h"

#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"
#include "alpa/support/text.h"

#include <charconv>
#include <climits>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace alpa {
namespace {

using Json = nlohmann::json;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// ---------------------------------------------------------------------------------------------
// Presets. Figures are vendor datasheet values unless marked as an assumption.
// ---------------------------------------------------------------------------------------------

// AWS p3.16xlarge, Alpa's testbed (OSDI'22 §8): 8x V100-SXM2-16GB in a hybrid cube-mesh of
// NVLink 2.0, 25 Gbit/s network.
//  - V100 SXM2: 15.7 TFLOP/s FP32, 125 TFLOP/s FP16 tensor core, 16 GB HBM2 at 900 GB/s
//    (NVIDIA Tesla V100 datasheet).
//  - NVLink: 6 links x 25 GB/s per direction = 150 GB/s per direction (300 GB/s aggregate). The
//    cube-mesh is not fully connected, so a ring cannot use every link at every step;
//    assumption: an effective 130 GB/s per device for ring collectives, about what NCCL's
//    all-reduce "bus bandwidth" reaches on 8x V100 NVLink machines (DGX-1V class).
//  - Network: 25 Gbit/s per host = 3.125e9 B/s (AWS p3 instance page).
//  - Latencies (assumption, order of NCCL small-message collective latency): 10 us inside a
//    host, 30 us across hosts (TCP, no EFA on p3).
Cluster preset_p3() {
  Cluster c;
  c.name = "p3.16xlarge";
  c.source =
      "NVIDIA Tesla V100 datasheet (SXM2: 15.7 TFLOP/s fp32, 125 TFLOP/s fp16 tensor, 16 GB HBM2 "
      "at 900 GB/s, NVLink 300 GB/s aggregate); AWS p3 page (8 GPUs, 25 Gbit/s network). "
      "Assumptions: 130 GB/s effective per-device ring bandwidth in the NVLink cube-mesh; "
      "latency 10 us intra-host, 30 us inter-host";
  c.hosts = 1;
  c.devices_per_host = 8;
  c.device = {"V100-SXM2-16GB", 15.7e12, 125e12, 16 * kGiB, 900e9};
  c.intra_host = {130e9, 10e-6};
  c.inter_host = {3.125e9, 30e-6};
  return c;
}

// AWS p4d.24xlarge: 8x A100-SXM4-40GB on NVSwitch, 400 Gbit/s EFA.
//  - A100 SXM4 40GB: 19.5 TFLOP/s FP32, 312 TFLOP/s FP16/BF16 dense tensor core, 1555 GB/s
//    HBM2 (NVIDIA A100 datasheet).
//  - NVLink 3 through NVSwitch: 600 GB/s aggregate per GPU = 300 GB/s per direction; NVSwitch
//    is fully connected, so a ring step can use all of it (an upper bound: NCCL measures
//    somewhat less).
//  - Network: 4x 100 Gbit/s EFA = 400 Gbit/s per host = 50e9 B/s (AWS p4d page).
//  - Latencies (assumption): 10 us inside a host, 20 us across hosts (EFA, RDMA).
Cluster preset_p4d() {
  Cluster c;
  c.name = "p4d.24xlarge";
  c.source =
      "NVIDIA A100 datasheet (SXM4 40GB: 19.5 TFLOP/s fp32, 312 TFLOP/s fp16/bf16 dense tensor, "
      "1555 GB/s HBM2, NVLink/NVSwitch 600 GB/s aggregate = 300 GB/s per direction); AWS p4d "
      "page (8 GPUs, 400 Gbit/s EFA). Assumptions: latency 10 us intra-host, 20 us inter-host";
  c.hosts = 1;
  c.devices_per_host = 8;
  c.device = {"A100-SXM4-40GB", 19.5e12, 312e12, 40 * kGiB, 1555e9};
  c.intra_host = {300e9, 10e-6};
  c.inter_host = {50e9, 20e-6};
  return c;
}

// AWS p4de.24xlarge: 8x A100-SXM4-80GB on NVSwitch, 400 Gbit/s EFA — p4d with the 80 GB part.
//  - A100 SXM4 80GB: 19.5 TFLOP/s FP32, 312 TFLOP/s FP16/BF16 dense tensor core, 80 GB HBM2e
//    at 2039 GB/s (NVIDIA A100 datasheet, the 80GB SXM column).
//  - NVLink 3 through NVSwitch and 4x 100 Gbit/s EFA, as p4d (AWS p4 instance page: p4de has
//    p4d's interconnect).
//  - Latencies (assumption, as p4d): 10 us inside a host, 20 us across hosts.
Cluster preset_p4de() {
  Cluster c = preset_p4d();
  c.name = "p4de.24xlarge";
  c.source =
      "NVIDIA A100 datasheet (SXM4 80GB: 19.5 TFLOP/s fp32, 312 TFLOP/s fp16/bf16 dense tensor, "
      "2039 GB/s HBM2e, NVLink/NVSwitch 600 GB/s aggregate = 300 GB/s per direction); AWS p4 "
      "page (p4de: 8 GPUs, 400 Gbit/s EFA as p4d). Assumptions: latency 10 us intra-host, "
      "20 us inter-host";
  c.device = {"A100-SXM4-80GB", 19.5e12, 312e12, 80 * kGiB, 2039e9};
  return c;
}

// NVIDIA DGX H100: 8x H100-SXM5-80GB on NVSwitch (NVLink 4), 8x 400 Gbit/s InfiniBand NDR.
//  - H100 SXM5: 67 TFLOP/s FP32, 989 TFLOP/s FP16/BF16 dense tensor core (1979 with
//    sparsity), 80 GB HBM3 at 3.35 TB/s (NVIDIA H100 datasheet).
//  - NVLink 4: 900 GB/s aggregate per GPU = 450 GB/s per direction (upper bound, as for p4d).
//  - Network: 8x 400 Gbit/s ConnectX-7 = 3.2 Tbit/s = 400e9 B/s per host (DGX H100 user guide).
//  - Latencies (assumption): 10 us inside a host, 20 us across hosts.
Cluster preset_dgx_h100() {
  Cluster c;
  c.name = "dgx-h100";
  c.source =
      "NVIDIA H100 datasheet (SXM5 80GB: 67 TFLOP/s fp32, 989 TFLOP/s fp16/bf16 dense tensor, "
      "3.35 TB/s HBM3, NVLink 4 900 GB/s aggregate = 450 GB/s per direction); DGX H100 guide "
      "(8 GPUs, 8x 400 Gbit/s InfiniBand = 400 GB/s per host). Assumptions: latency 10 us "
      "intra-host, 20 us inter-host";
  c.hosts = 1;
  c.devices_per_host = 8;
  c.device = {"H100-SXM5-80GB", 67e12, 989e12, 80 * kGiB, 3.35e12};
  c.intra_host = {450e9, 10e-6};
  c.inter_host = {400e9, 20e-6};
  return c;
}

// This machine's virtual devices: the runtime's threads backend, one thread per device.
//  - 150 GFLOP/s per device: measured OpenBLAS SGEMM on one core. There is no f16 hardware
//    (f16 executes as f32), so the f16 peak is the same.
//  - 4 GiB per device (a share of host RAM); 14 GB/s memory bandwidth per core (estimate).
//  - Intra-host: shared-memory collectives, 5 GB/s per device, 5 us latency (estimate).
//  - Inter-host: 10 GbE = 1.25e9 B/s, 50 us (only for simulating several such machines).
Cluster preset_local() {
  Cluster c;
  c.name = "local";
  c.source =
      "this machine's threads backend: measured OpenBLAS SGEMM 150 GFLOP/s per core (f16 "
      "executes as f32). Estimates: 4 GiB and 14 GB/s memory per device, shared-memory "
      "collectives 5 GB/s with 5 us latency, inter-host 10 GbE (1.25 GB/s, 50 us) for simulated "
      "multi-host runs";
  c.hosts = 1;
  c.devices_per_host = 8;
  c.device = {"cpu-thread", 150e9, 150e9, 4 * kGiB, 14e9};
  c.intra_host = {5e9, 5e-6};
  c.inter_host = {1.25e9, 50e-6};
  return c;
}

struct Preset {
  const char* name;
  Cluster (*make)();
};

constexpr Preset kPresets[] = {
    {"p3.16xlarge", preset_p3},    {"p4d.24xlarge", preset_p4d}, {"p4de.24xlarge", preset_p4de},
    {"dgx-h100", preset_dgx_h100}, {"local", preset_local},
};

std::string preset_list() {
  std::string s;
  for (const Preset& p : kPresets) {
    if (!s.empty()) s += ", ";
    s += p.name;
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// The fields, once: JSON parsing, validation and printing all walk these tables.
// ---------------------------------------------------------------------------------------------

enum class NumberKind { kPositive, kNonNegative };

struct DeviceField {
  const char* key;
  double DeviceSpec::*member;
  NumberKind kind;
  const char* meaning;
};

constexpr DeviceField kDeviceFields[] = {
    {"peak_flops_f32", &DeviceSpec::peak_flops_f32, NumberKind::kPositive,
     "peak FP32 FLOP/s of one device, e.g. 1.57e13 for a V100"},
    {"peak_flops_f16", &DeviceSpec::peak_flops_f16, NumberKind::kPositive,
     "peak FP16/BF16 FLOP/s of one device (tensor cores), e.g. 1.25e14 for a V100; use the "
     "FP32 figure for devices without FP16 units"},
    {"memory_bytes", &DeviceSpec::memory_bytes, NumberKind::kPositive,
     "bytes of memory on one device, e.g. 17179869184 for 16 GiB"},
    {"memory_bandwidth", &DeviceSpec::memory_bandwidth, NumberKind::kPositive,
     "device memory bandwidth in bytes/s, e.g. 9e11 for a V100"},
};

struct LinkField {
  const char* key;
  double LinkSpec::*member;
  NumberKind kind;
};

constexpr LinkField kLinkFields[] = {
    {"bandwidth", &LinkSpec::bandwidth, NumberKind::kPositive},
    {"latency", &LinkSpec::latency, NumberKind::kNonNegative},
};

struct LinkLevel {
  const char* key;
  LinkSpec Cluster::*member;
  const char* bandwidth_meaning;
};

constexpr LinkLevel kLinkLevels[] = {
    {"intra_host", &Cluster::intra_host,
     "bytes/s one device can send to another in the same host (one direction), e.g. 1.3e11 "
     "for V100 NVLink"},
    {"inter_host", &Cluster::inter_host,
     "bytes/s of one host's network interface (one direction), e.g. 3.125e9 for 25 Gbit/s"},
};

constexpr const char* kTopFields[] = {"name",   "source",     "hosts",      "devices_per_host",
                                      "device", "intra_host", "inter_host", "collectives"};
constexpr const char* kCollectiveNames[] = {"all-reduce", "all-gather", "reduce-scatter",
                                            "all-to-all"};

std::string format_number(double v);

// A profile table's points: [x, y] pairs, x strictly increasing and positive, y in range.
Status check_points(const std::vector<ProfilePoint>& pts, std::string_view path, double y_max,
                    const char* y_meaning) {
  if (pts.empty())
    return invalid_argument(cat("field \"", path, "\" must list at least one [x, y] point"),
                            "measure it with `alpa profile`, or leave the field out");
  for (size_t i = 0; i < pts.size(); ++i) {
    const ProfilePoint& p = pts[i];
    const std::string at = cat(path, "[", i, "]");
    if (!std::isfinite(p.x) || p.x <= 0)
      return invalid_argument(
          cat("field \"", at, "\": x must be a positive number, got ", format_number(p.x)));
    if (!std::isfinite(p.y) || p.y <= 0 || p.y > y_max)
      return invalid_argument(cat("field \"", at, "\": ", y_meaning, ", got ", format_number(p.y)));
    if (i > 0 && p.x <= pts[i - 1].x)
      return invalid_argument(cat("field \"", at, "\": x must increase from point to point"),
                              "sort the points by x and drop duplicates");
  }
  return ok_status();
}

Status read_points(const Json& v, std::string_view path, std::vector<ProfilePoint>& out) {
  if (!v.is_array())
    return invalid_argument(
        cat("field \"", path, "\" must be a list of [x, y] pairs, got ", json_excerpt(v)));
  for (size_t i = 0; i < v.size(); ++i) {
    const Json& p = v[i];
    if (!p.is_array() || p.size() != 2 || !p[0].is_number() || !p[1].is_number())
      return invalid_argument(cat("field \"", path, "[", i,
                                  "]\" must be a pair of numbers [x, y], got ", json_excerpt(p)));
    out.push_back({p[0].get<double>(), p[1].get<double>()});
  }
  return ok_status();
}

// Shortest text that reads back as the same double ("-1", "1.57e+13", "1e-05").
std::string format_number(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
}

std::string join_path(std::string_view prefix, std::string_view key) {
  return prefix.empty() ? std::string(key) : cat(prefix, ".", key);
}

std::string kind_phrase(NumberKind kind) {
  return kind == NumberKind::kPositive ? "a positive number" : "a non-negative number";
}

bool number_ok(NumberKind kind, double v) {
  if (!std::isfinite(v)) return false;
  return kind == NumberKind::kPositive ? v > 0 : v >= 0;
}

std::string field_meaning(std::string_view path) {
  for (const DeviceField& f : kDeviceFields)
    if (path == join_path("device", f.key)) return cat("\"", path, "\" is the ", f.meaning);
  for (const LinkLevel& l : kLinkLevels) {
    if (path == join_path(l.key, "bandwidth"))
      return cat("\"", path, "\" is the ", l.bandwidth_meaning);
    if (path == join_path(l.key, "latency"))
      return cat("\"", path, "\" is the per-step latency in seconds, e.g. 1e-05");
  }
  if (path == "hosts") return "\"hosts\" is the number of hosts (machines), e.g. 1";
  if (path == "devices_per_host")
    return "\"devices_per_host\" is the number of devices (GPUs) in one host, e.g. 8";
  if (path == "name") return "\"name\" names the cluster, e.g. \"p3.16xlarge\"";
  return "";
}

Status bad_number(std::string_view path, NumberKind kind, std::string_view got) {
  return invalid_argument(cat("field \"", path, "\" must be ", kind_phrase(kind), ", got ", got),
                          field_meaning(path));
}

Status bad_count(std::string_view path, std::string_view got) {
  return invalid_argument(cat("field \"", path, "\" must be an integer >= 1, got ", got),
                          field_meaning(path));
}

// ---------------------------------------------------------------------------------------------
// JSON reading helpers. Each names the full field path in its error.
// ---------------------------------------------------------------------------------------------

template <typename Keys>
Status check_known_fields(const Json& obj, std::string_view prefix, const Keys& known) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& key = it.key();
    bool found = false;
    for (std::string_view k : known) found = found || key == k;
    if (found) continue;
    std::string list;
    std::vector<std::string_view> names;
    for (std::string_view k : known) {
      if (!list.empty()) list += ", ";
      list += k;
      names.push_back(k);
    }
    std::string hint = prefix.empty() ? cat("known top-level fields: ", list)
                                      : cat("known fields of \"", prefix, "\": ", list);
    const std::string best = closest_match(key, names);
    if (!best.empty()) hint += cat("; did you mean \"", join_path(prefix, best), "\"?");
    return invalid_argument(cat("unknown field \"", join_path(prefix, key), "\""), hint);
  }
  return ok_status();
}

// The member `key` of `obj`, or an error naming `prefix.key` when it is missing.
Result<const Json*> get_field(const Json& obj, std::string_view prefix, std::string_view key) {
  auto it = obj.find(key);
  if (it == obj.end()) {
    std::string path = join_path(prefix, key);
    return invalid_argument(cat("missing field \"", path, "\""), field_meaning(path));
  }
  return &*it;
}

Status read_string(const Json& obj, std::string_view prefix, std::string_view key, bool required,
                   std::string& out) {
  if (!required && !obj.contains(key)) return ok_status();
  ALPA_ASSIGN_OR_RETURN(const Json* v, get_field(obj, prefix, key));
  if (!v->is_string())
    return invalid_argument(
        cat("field \"", join_path(prefix, key), "\" must be a string, got ", json_excerpt(*v)));
  out = v->get<std::string>();
  return ok_status();
}

Status read_count(const Json& obj, std::string_view key, int& out) {
  ALPA_ASSIGN_OR_RETURN(const Json* v, get_field(obj, "", key));
  if (!v->is_number_integer()) return bad_count(key, json_excerpt(*v));
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(INT_MAX))
      return invalid_argument(cat("field \"", key, "\" must be an integer in [1, ", INT_MAX,
                                  "], got ", json_excerpt(*v)));
    out = static_cast<int>(u);
    return ok_status();
  }
  int64_t s = v->get<int64_t>();
  if (s < 1) return bad_count(key, json_excerpt(*v));
  if (s > INT_MAX)  // unreachable for nlohmann (positive integers are unsigned), kept for safety
    return invalid_argument(cat("field \"", key, "\" must be an integer in [1, ", INT_MAX,
                                "], got ", json_excerpt(*v)));
  out = static_cast<int>(s);
  return ok_status();
}

Status read_number(const Json& obj, std::string_view prefix, std::string_view key, NumberKind kind,
                   double& out) {
  ALPA_ASSIGN_OR_RETURN(const Json* v, get_field(obj, prefix, key));
  std::string path = join_path(prefix, key);
  if (!v->is_number()) return bad_number(path, kind, json_excerpt(*v));
  double d = v->get<double>();
  if (!number_ok(kind, d)) return bad_number(path, kind, json_excerpt(*v));
  out = d;
  return ok_status();
}

Result<const Json*> get_object(const Json& obj, std::string_view key,
                               const std::vector<std::string_view>& keys) {
  ALPA_ASSIGN_OR_RETURN(const Json* v, get_field(obj, "", key));
  if (!v->is_object()) {
    std::string list;
    for (std::string_view k : keys) list += cat(list.empty() ? "" : ", ", "\"", k, "\": ...");
    return invalid_argument(cat("field \"", key, "\" must be an object, got ", json_excerpt(*v)),
                            cat("write \"", key, "\": {", list, "}"));
  }
  return v;
}

// Parses `text`, reporting the parser's position, and rejects duplicate keys (nlohmann would
// keep the last one silently, hiding a copy-paste mistake).
Result<Json> parse_json(std::string_view text) {
  struct Frame {
    std::set<std::string> keys;
    std::string last;
  };
  std::vector<Frame> frames;
  std::string duplicate;
  auto callback = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start: frames.emplace_back(); break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!frames.empty()) frames.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!frames.empty() && parsed.is_string()) {
          std::string key = parsed.get<std::string>();
          if (!frames.back().keys.insert(key).second && duplicate.empty()) {
            for (size_t i = 0; i + 1 < frames.size(); ++i)
              duplicate += (frames[i].last.empty() ? "[]" : frames[i].last) + ".";
            duplicate += key;
          }
          frames.back().last = key;
        }
        break;
      case Json::parse_event_t::value: break;
    }
    return true;
  };
  Json j;
  try {
    j = Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    std::string what = e.what();
    // Drop nlohmann's "[json.exception.parse_error.101] " prefix; keep "parse error at line
    // L, column C: ...".
    if (size_t close = what.find("] ");
        what.rfind("[json.exception", 0) == 0 && close != std::string::npos)
      what = what.substr(close + 2);
    const bool overflow = what.find("number overflow") != std::string::npos;
    return parse_error(cat("invalid JSON: ", what),
                       overflow ? "numbers must fit a double (magnitude below about 1.8e308)"
                                : "check the file for a missing comma, quote or brace near that "
                                  "position");
  }
  if (!duplicate.empty())
    return invalid_argument(cat("duplicate field \"", duplicate, "\""),
                            "each field may appear once; remove one of the copies");
  return j;
}

Result<Cluster> cluster_from_parsed(const Json& j) {
  if (!j.is_object())
    return invalid_argument(cat("a cluster must be a JSON object, got ", j.type_name()),
                            "write one object with the fields name, source, hosts, "
                            "devices_per_host, device, intra_host, inter_host");
  ALPA_RETURN_IF_ERROR(check_known_fields(j, "", kTopFields));
  Cluster c;
  ALPA_RETURN_IF_ERROR(read_string(j, "", "name", /*required=*/true, c.name));
  ALPA_RETURN_IF_ERROR(read_string(j, "", "source", /*required=*/false, c.source));
  ALPA_RETURN_IF_ERROR(read_count(j, "hosts", c.hosts));
  ALPA_RETURN_IF_ERROR(read_count(j, "devices_per_host", c.devices_per_host));

  std::vector<std::string_view> device_keys = {"name"};
  for (const DeviceField& f : kDeviceFields) device_keys.push_back(f.key);
  device_keys.push_back("gemm_efficiency");
  ALPA_ASSIGN_OR_RETURN(const Json* device, get_object(j, "device", device_keys));
  ALPA_RETURN_IF_ERROR(check_known_fields(*device, "device", device_keys));
  ALPA_RETURN_IF_ERROR(read_string(*device, "device", "name", /*required=*/true, c.device.name));
  for (const DeviceField& f : kDeviceFields)
    ALPA_RETURN_IF_ERROR(read_number(*device, "device", f.key, f.kind, c.device.*f.member));
  if (device->contains("gemm_efficiency"))
    ALPA_RETURN_IF_ERROR(read_points(device->at("gemm_efficiency"), "device.gemm_efficiency",
                                     c.device.gemm_efficiency));
  if (j.contains("collectives")) {
    const Json& list = j.at("collectives");
    if (!list.is_array())
      return invalid_argument(cat("field \"collectives\" must be a list, got ", json_excerpt(list)),
                              "write \"collectives\": [{\"collective\": \"all-reduce\", "
                              "\"group\": 2, \"points\": [[bytes, seconds], ...]}, ...]");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string at = cat("collectives[", i, "]");
      const Json& t = list[i];
      if (!t.is_object())
        return invalid_argument(cat("field \"", at, "\" must be an object, got ", json_excerpt(t)));
      const std::vector<std::string_view> keys = {"collective", "group", "points"};
      ALPA_RETURN_IF_ERROR(check_known_fields(t, at, keys));
      CollectiveTable ct;
      ALPA_RETURN_IF_ERROR(read_string(t, at, "collective", /*required=*/true, ct.collective));
      ALPA_ASSIGN_OR_RETURN(const Json* g, get_field(t, at, "group"));
      if (!g->is_number_integer() || g->get<int64_t>() < 2 || g->get<int64_t>() > INT_MAX)
        return invalid_argument(
            cat("field \"", at, ".group\" must be an integer >= 2, got ", json_excerpt(*g)),
            "the number of devices the table was measured on");
      ct.group = static_cast<int>(g->get<int64_t>());
      ALPA_ASSIGN_OR_RETURN(const Json* pts, get_field(t, at, "points"));
      ALPA_RETURN_IF_ERROR(read_points(*pts, cat(at, ".points"), ct.points));
      c.collectives.push_back(std::move(ct));
    }
  }

  std::vector<std::string_view> link_keys;
  for (const LinkField& f : kLinkFields) link_keys.push_back(f.key);
  for (const LinkLevel& level : kLinkLevels) {
    ALPA_ASSIGN_OR_RETURN(const Json* link, get_object(j, level.key, link_keys));
    ALPA_RETURN_IF_ERROR(check_known_fields(*link, level.key, link_keys));
    for (const LinkField& f : kLinkFields)
      ALPA_RETURN_IF_ERROR(
          read_number(*link, level.key, f.key, f.kind, (c.*level.member).*f.member));
  }
  ALPA_RETURN_IF_ERROR(validate_cluster(c));
  return c;
}

}  // namespace

double peak_flops(const DeviceSpec& d, DType dtype) {
  switch (dtype) {
    case DType::kF16:
    case DType::kBF16: return d.peak_flops_f16;
    case DType::kF32:
    case DType::kI32:
    case DType::kPred: return d.peak_flops_f32;
  }
  return d.peak_flops_f32;
}

std::vector<std::string> cluster_preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.emplace_back(p.name);
  return names;
}

Result<Cluster> cluster_preset(std::string_view name) {
  for (const Preset& p : kPresets)
    if (name == p.name) return p.make();
  return not_found(cat("unknown cluster preset '", name, "'"),
                   cat("presets: ", preset_list(), "; or give the path of a cluster JSON file"));
}

Status validate_cluster(const Cluster& c) {
  if (c.name.empty())
    return invalid_argument("field \"name\" must be a non-empty string", field_meaning("name"));
  if (c.hosts < 1) return bad_count("hosts", std::to_string(c.hosts));
  if (c.devices_per_host < 1)
    return bad_count("devices_per_host", std::to_string(c.devices_per_host));
  if (static_cast<int64_t>(c.hosts) * c.devices_per_host > INT_MAX)
    return invalid_argument(cat("hosts x devices_per_host = ", c.hosts, " x ", c.devices_per_host,
                                " exceeds the limit of ", INT_MAX, " devices"));
  if (c.device.name.empty())
    return invalid_argument("field \"device.name\" must be a non-empty string",
                            "e.g. \"V100-SXM2-16GB\"");
  for (const DeviceField& f : kDeviceFields) {
    double v = c.device.*f.member;
    if (!number_ok(f.kind, v))
      return bad_number(join_path("device", f.key), f.kind, format_number(v));
  }
  for (const LinkLevel& level : kLinkLevels) {
    for (const LinkField& f : kLinkFields) {
      double v = (c.*level.member).*f.member;
      if (!number_ok(f.kind, v))
        return bad_number(join_path(level.key, f.key), f.kind, format_number(v));
    }
  }
  if (!c.device.gemm_efficiency.empty())
    ALPA_RETURN_IF_ERROR(
        check_points(c.device.gemm_efficiency, "device.gemm_efficiency", 1.5,
                     "the efficiency y must be a fraction of the peak in (0, 1.5]"));
  for (size_t i = 0; i < c.collectives.size(); ++i) {
    const CollectiveTable& t = c.collectives[i];
    const std::string at = cat("collectives[", i, "]");
    bool known = false;
    std::string names;
    for (const char* n : kCollectiveNames) {
      known = known || t.collective == n;
      names += cat(names.empty() ? "" : ", ", n);
    }
    if (!known)
      return invalid_argument(cat("field \"", at, ".collective\" is '", t.collective, "'"),
                              cat("one of ", names));
    if (t.group < 2)
      return invalid_argument(cat("field \"", at, ".group\" must be >= 2, got ", t.group));
    ALPA_RETURN_IF_ERROR(
        check_points(t.points, cat(at, ".points"), 1e6, "the time y must be positive seconds"));
  }
  return ok_status();
}

double interpolate(const std::vector<ProfilePoint>& t, double x) {
  ALPA_CHECK(!t.empty()) << "interpolate: an empty table";
  if (t.size() == 1 || x <= t.front().x) return t.front().y;
  size_t i = 1;
  while (i + 1 < t.size() && t[i].x < x) ++i;
  const ProfilePoint& a = t[i - 1];
  const ProfilePoint& b = t[i];
  return a.y + (b.y - a.y) * (x - a.x) / (b.x - a.x);
}

Result<Cluster> cluster_from_json(std::string_view text, std::string_view source_name) {
  const std::string context(source_name);
  Result<Json> parsed = parse_json(text);
  if (!parsed.ok()) return parsed.status().with_context(context);
  Result<Cluster> c = cluster_from_parsed(*parsed);
  if (!c.ok()) return c.status().with_context(context);
  return c;
}

std::string cluster_to_json(const Cluster& c) {
  auto str = [](const std::string& s) {
    return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
  };
  // Non-finite numbers have no JSON form; null reads back as a clear type error.
  auto num = [](double v) { return std::isfinite(v) ? format_number(v) : std::string("null"); };
  std::ostringstream os;
  os << "{\n";
  os << "  \"name\": " << str(c.name) << ",\n";
  os << "  \"source\": " << str(c.source) << ",\n";
  os << "  \"hosts\": " << c.hosts << ",\n";
  os << "  \"devices_per_host\": " << c.devices_per_host << ",\n";
  os << "  \"device\": {\n";
  os << "    \"name\": " << str(c.device.name);
  for (const DeviceField& f : kDeviceFields)
    os << ",\n    \"" << f.key << "\": " << num(c.device.*f.member);
  auto points = [&](const std::vector<ProfilePoint>& pts) {
    std::string out = "[";
    for (size_t i = 0; i < pts.size(); ++i)
      out += cat(i ? ", " : "", "[", num(pts[i].x), ", ", num(pts[i].y), "]");
    return out + "]";
  };
  if (!c.device.gemm_efficiency.empty())
    os << ",\n    \"gemm_efficiency\": " << points(c.device.gemm_efficiency);
  os << "\n  }";
  for (const LinkLevel& level : kLinkLevels) {
    os << ",\n  \"" << level.key << "\": {";
    const char* sep = "\n";
    for (const LinkField& f : kLinkFields) {
      os << sep << "    \"" << f.key << "\": " << num((c.*level.member).*f.member);
      sep = ",\n";
    }
    os << "\n  }";
  }
  if (!c.collectives.empty()) {
    os << ",\n  \"collectives\": [";
    for (size_t i = 0; i < c.collectives.size(); ++i) {
      const CollectiveTable& t = c.collectives[i];
      os << (i ? ",\n" : "\n") << "    {\"collective\": " << str(t.collective)
         << ", \"group\": " << t.group << ", \"points\": " << points(t.points) << "}";
    }
    os << "\n  ]";
  }
  os << "\n}\n";
  return os.str();
}

Result<Cluster> load_cluster(const std::string& preset_or_path) {
  for (const Preset& p : kPresets)
    if (preset_or_path == p.name) return p.make();
  namespace fs = std::filesystem;
  std::error_code ec;
  if (preset_or_path.empty() || !fs::exists(preset_or_path, ec))
    return not_found(cat("unknown cluster '", preset_or_path, "': not a preset and no such file"),
                     cat("use a preset (", preset_list(), ") or the path of a cluster JSON file"));
  Result<std::string> text = read_file(preset_or_path);
  if (!text.ok()) return text.status().with_context("cluster file");
  return cluster_from_json(*text, preset_or_path);
}

Result<Cluster> with_devices(const Cluster& c, int num_devices) {
  ALPA_RETURN_IF_ERROR(validate_cluster(c));
  const int per_host = c.devices_per_host;
  if (num_devices < 1)
    return invalid_argument(cat("the number of devices must be >= 1, got ", num_devices));
  Cluster out = c;
  if (num_devices <= per_host) {
    out.hosts = 1;
    out.devices_per_host = num_devices;
    return out;
  }
  if (num_devices % per_host != 0)
    return invalid_argument(
        cat(num_devices, " devices do not fill whole hosts of cluster '", c.name, "' (", per_host,
            " devices per host)"),
        cat("use at most ", per_host, " devices (one host) or a multiple of ", per_host, " (",
            per_host, ", ", 2 * per_host, ", ", 4 * per_host, ", ...)"));
  out.hosts = num_devices / per_host;
  return out;
}

}  // namespace alpa
