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

}  // namespace alpa::testing
