// Cluster: the hardware a plan is made for — hosts x devices, each device's peak FLOP/s per
// dtype, memory and memory bandwidth, and two link levels (inside a host, between hosts) with
// bandwidth and latency.
//
// Invariants (validate_cluster): hosts, devices_per_host >= 1 and their product fits an int;
// every FLOP/s, memory and bandwidth figure is a positive finite number; latencies are finite
// and >= 0; name is non-empty. Presets carry real, sourced figures (`source` says where from).
// Device ids are d = host * devices_per_host + local index.
//
// It is not a topology model: a host is a fully connected group of devices behind one NIC.
// Meshes over a cluster (logical 2-D views with per-axis alpha/beta) live in mesh.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/types.h"
#include "alpa/support/status.h"

namespace alpa {

struct LinkSpec {
  // Bytes/s available to one host's traffic on this link level. Intra-host: per device, one
  // direction (what a ring step can send); inter-host: one host's NIC, one direction.
  double bandwidth = 0;
  double latency = 0;  // s, per collective step (alpha)

  friend bool operator==(const LinkSpec&, const LinkSpec&) = default;
};

// One measured point of a profile table: x (FLOPs of one op, or bytes of a collective) and y
// (its efficiency, or seconds). Tables are sorted by x, strictly increasing.
struct ProfilePoint {
  double x = 0, y = 0;
  friend bool operator==(const ProfilePoint&, const ProfilePoint&) = default;
};

// y at x by piecewise-linear interpolation; below the first point, the first y; above the
// last, the last segment extended (an empty table is an error: CHECK).
double interpolate(const std::vector<ProfilePoint>& table, double x);

// Measured time of one collective over groups of `group` devices (alpa profile).
struct CollectiveTable {
  std::string collective;            // "all-reduce", "all-gather", "reduce-scatter", "all-to-all"
  int group = 2;                     // devices in the group
  std::vector<ProfilePoint> points;  // (bytes as cost/collective.h counts them, seconds)
  friend bool operator==(const CollectiveTable&, const CollectiveTable&) = default;
};

struct DeviceSpec {
  std::string name;             // "V100-SXM2-16GB"
  double peak_flops_f32 = 0;    // FLOP/s
  double peak_flops_f16 = 0;    // FLOP/s (tensor cores); also used for bf16
  double memory_bytes = 0;      // bytes of device memory
  double memory_bandwidth = 0;  // bytes/s
  // Optional (alpa profile): the fraction of the peak one op reaches, by its FLOPs; the cost
  // model scales the peak by it (cost/compute.h). Empty: the peak is reached.
  std::vector<ProfilePoint> gemm_efficiency;

  friend bool operator==(const DeviceSpec&, const DeviceSpec&) = default;
};

// Peak FLOP/s of `d` for `dtype`: f32 -> f32 peak; f16/bf16 -> f16 peak; i32/pred -> f32 peak.
double peak_flops(const DeviceSpec& d, DType dtype);

struct Cluster {
  std::string name;    // "p3.16xlarge"
  std::string source;  // where the figures come from (datasheet / measurement), free text
  int hosts = 1;
  int devices_per_host = 1;
  DeviceSpec device;
  LinkSpec intra_host;  // NVLink / shared memory: per-device bandwidth
  LinkSpec inter_host;  // network: bandwidth of one host's NIC
  // Optional (alpa profile): measured collective times inside one host, which the cost model
  // uses instead of alpha-beta for a group of that size (cost/collective.h).
  std::vector<CollectiveTable> collectives;

  int num_devices() const { return hosts * devices_per_host; }
  double peak_flops(DType dtype) const { return alpa::peak_flops(device, dtype); }

  friend bool operator==(const Cluster&, const Cluster&) = default;
};

// The preset names, in a stable order: "p3.16xlarge", "p4d.24xlarge", "p4de.24xlarge",
// "dgx-h100", "local".
std::vector<std::string> cluster_preset_names();
// A preset with hosts = 1 (size it with with_devices). Unknown names: kNotFound, hint lists
// presets.
Result<Cluster> cluster_preset(std::string_view name);

// OK, or kInvalidArgument naming the field path ("device.memory_bytes") and the fix.
Status validate_cluster(const Cluster& c);

// Parses the JSON form (see cluster_to_json) and validates it. Every field is required except
// "source"; unknown fields are rejected with the list of known ones. Errors start with
// `source_name: ` (the file name); malformed JSON is kParseError with the parser's position.
Result<Cluster> cluster_from_json(std::string_view text, std::string_view source_name = "<json>");
// Pretty JSON, fields in declaration order; numbers in shortest round-trip form, so
// cluster_from_json(cluster_to_json(c)) == c exactly.
std::string cluster_to_json(const Cluster& c);
// A preset name, else the path of a cluster JSON file. Neither: kNotFound listing the presets.
Result<Cluster> load_cluster(const std::string& preset_or_path);

// The same cluster sized to `num_devices` devices: if num_devices <= devices_per_host, 1 host
// with num_devices devices; else num_devices must be a multiple of devices_per_host and the
// result has num_devices / devices_per_host hosts.
Result<Cluster> with_devices(const Cluster& c, int num_devices);

}  // namespace alpa
