// Hand-made pipeline plans for tests: `meshes.size()` stages over `layers` layer clusters,
// split as evenly as integers allow, each stage on consecutive devices with its logical mesh.
#pragma once

#include <vector>

#include "alpa/inter/stage_planner.h"

namespace alpa::testing {

inline PipelinePlan manual_stage_plan(const std::vector<MeshShape>& meshes, int layers,
                                      int micro_batches) {
  PipelinePlan p;
  p.micro_batches = micro_batches;
  p.layers.num_layers = layers;
  const int S = static_cast<int>(meshes.size());
  int first = 0;
  for (int s = 0; s < S; ++s) {
    PlannedStage ps;
    ps.first_layer = s * layers / S;
    ps.last_layer = (s + 1) * layers / S - 1;
    ps.logical.shape = meshes[s];
    ps.submesh = {1, meshes[s][0] * meshes[s][1]};
    ps.first_device = first;
    first += static_cast<int>(meshes[s][0] * meshes[s][1]);
    p.stages.push_back(ps);
  }
  return p;
}

// Interleaved (inter/virtual_stages.h): meshes.size() x v stages over `layers` layers, split as
// evenly as integers allow, stage c on the devices and logical mesh of stage c mod meshes.
inline PipelinePlan manual_interleaved_plan(const std::vector<MeshShape>& meshes, int v, int layers,
                                            int micro_batches) {
  PipelinePlan one = manual_stage_plan(meshes, layers, micro_batches);
  const int S = static_cast<int>(meshes.size()), C = S * v;
  PipelinePlan p = one;
  p.stages.clear();
  for (int c = 0; c < C; ++c) {
    PlannedStage ps = one.stages[static_cast<size_t>(c % S)];
    ps.first_layer = c * layers / C;
    ps.last_layer = (c + 1) * layers / C - 1;
    p.stages.push_back(ps);
  }
  return p;
}

}  // namespace alpa::testing
