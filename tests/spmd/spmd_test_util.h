// Helpers for the SPMD tests: run a graph on one device and sharded on a mesh of virtual
// devices (threads), and compare whole tensors with a stated tolerance.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/shard.h"
#include "alpa/spmd/lower.h"
#include "runtime/mesh_runner.h"

namespace alpa::testing {

inline std::vector<Tensor> run_one_device(const Graph& g, std::vector<Tensor> params) {
  Executor ex(g, ExecutorOptions{1});
  Result<std::vector<Tensor>> r = ex.run(std::move(params));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? std::move(r).value() : std::vector<Tensor>{};
}

inline MeshLinks local_mesh(int64_t n0, int64_t n1) {
  Cluster c = with_devices(cluster_preset("local").value(), static_cast<int>(n0 * n1)).value();
  return mesh_links(c, {n0, n1}).value();
}

inline DeviceSpec local_device() {
  return cluster_preset("local").value().device;
}

struct Sharded {
  ShardingPlan plan;
  SpmdProgram program;
  std::vector<std::vector<Tensor>> device_outputs;  // [device][output]
  std::vector<Tensor> outputs;                      // assembled, whole
};

// Plans `g` on the mesh with `options`, lowers it, optionally edits the program (`mutate`),
// runs it with each device's shard of `params`, and assembles the outputs.
inline Result<Sharded> run_sharded(const Graph& g, const std::vector<Tensor>& params, int64_t n0,
                                   int64_t n1, const AutoShardingOptions& options,
                                   const std::function<void(Graph&)>& mutate = {}) {
  Sharded s;
  const MeshLinks mesh = local_mesh(n0, n1);
  ALPA_ASSIGN_OR_RETURN(s.plan, auto_shard(g, mesh, local_device(), options));
  ALPA_ASSIGN_OR_RETURN(s.program, lower_to_spmd(g, s.plan));
  Graph program = s.program.program;
  if (mutate) mutate(program);
  const int devices = static_cast<int>(n0 * n1);
  std::vector<std::vector<Tensor>> dev(devices);
  for (size_t p = 0; p < params.size(); ++p) {
    std::vector<Tensor> shards =
        shard_tensor_all(params[p], s.program.param_specs[p], mesh.shape());
    for (int d = 0; d < devices; ++d) dev[d].push_back(std::move(shards[d]));
  }
  MeshRunOptions so;
  so.mesh = mesh.shape();
  so.timeout_s = 30;
  MeshRunner runner(program, so);
  ALPA_ASSIGN_OR_RETURN(s.device_outputs, runner.run(std::move(dev)));
  for (size_t o = 0; o < g.outputs().size(); ++o) {
    std::vector<const Tensor*> blocks;
    for (int d = 0; d < devices; ++d) blocks.push_back(&s.device_outputs[d][o]);
    ALPA_ASSIGN_OR_RETURN(Tensor t, assemble_tensor(blocks, s.program.output_specs[o], mesh.shape(),
                                                    g.type(g.outputs()[o].value)));
    s.outputs.push_back(std::move(t));
  }
  return s;
}

// max |a - b| / (atol + rtol * max|b|) over one tensor (<= 1 passes).
inline double error_ratio(const Tensor& a, const Tensor& b, double rtol, double atol) {
  const std::vector<float> x = a.to_vector(), y = b.to_vector();
  if (x.size() != y.size()) return 1e30;
  double scale = 0, worst = 0;
  for (float v : y) scale = std::max(scale, static_cast<double>(std::abs(v)));
  for (size_t i = 0; i < x.size(); ++i)
    worst = std::max(worst, std::abs(static_cast<double>(x[i]) - y[i]));
  return worst / (atol + rtol * scale);
}

// The worst error ratio over all outputs, with the name of the worst.
inline std::pair<double, std::string> worst_ratio(const Graph& g, const std::vector<Tensor>& got,
                                                  const std::vector<Tensor>& want, double rtol,
                                                  double atol) {
  std::pair<double, std::string> w{0, ""};
  for (size_t o = 0; o < want.size() && o < got.size(); ++o) {
    const double r = error_ratio(got[o], want[o], rtol, atol);
    if (r > w.first) w = {r, g.outputs()[o].name};
  }
  if (got.size() != want.size()) w = {1e30, "output count"};
  return w;
}

}  // namespace alpa::testing
