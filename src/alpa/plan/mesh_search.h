// The automatic plan of one mesh, never worse than a manual one by its own cost model.
//
// `--plan auto` used to run the ILP once under fixed defaults (the batch of every input forced
// onto mesh axis 0, no dimension split over both axes), which shut it out of plans a one-word
// manual plan reaches (a two-tower model on 2x4: tensor parallelism over all eight devices).
// search_mesh_plan instead plans a set of candidates with the same cost model and keeps the
// cheapest predicted step (compute + communication) among those that fit the device memory:
//
// - auto: the batch axis left to the ILP and mixed mesh shapes allowed (the widest space);
//   when its ILP stops at the time limit, also each forced batch axis with and without mixed
//   shapes (smaller spaces the solver may finish);
// - every manual plan that applies to the mesh (manual.h: data-parallel, zero, zero3,
//   tensor-parallel, 2d), completed by the ILP as `--plan NAME` would be.
//
// Options the user forced (--batch-axis, --allow-mixed-mesh-shape, --prefer-reduce-scatter)
// are kept: that candidate wins whatever it costs, and a warning says how much the automatic
// choice would save.
#pragma once

#include <string>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/ir/graph.h"

namespace alpa {

struct MeshSearchOptions {
  // The user forced some of `base`'s options: plan them as given (the winner), compare.
  bool forced = false;
  std::string forced_what;     // e.g. "--batch-axis 0", for the warning
  bool compare_manual = true;  // manual plans as candidates
};

struct MeshCandidate {
  std::string name;  // "auto", "auto (batch axis 0)", "data-parallel", "as given", ...
  bool planned = false;
  double step_s = 0;  // predicted compute + communication
  double peak_memory_bytes = 0;
  bool fits = false;     // peak within the device memory
  std::string rejected;  // why it has no plan: "not supported: ..." or "does not fit: ..."
};

struct MeshSearchResult {
  ShardingPlan plan;            // the winner's
  AutoShardingOptions options;  // the winner's options (what a plan file records)
  std::string winner;
  std::vector<MeshCandidate> candidates;
  std::vector<std::string> warnings;
};

Result<MeshSearchResult> search_mesh_plan(const Graph& train_step, const MeshLinks& mesh,
                                          const DeviceSpec& device, const AutoShardingOptions& base,
                                          const MeshSearchOptions& search = {});

}  // namespace alpa
