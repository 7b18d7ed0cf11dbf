// Plan: a parallelization plan as a value with a JSON form a person can read and edit.
//
//   {
//     "format": "alpa-plan/1",
//     "model": "gpt-tiny", "cluster": "local", "mesh": [2, 2], "micro_batches": 1,
//     "graph_fingerprint": "9f3c...",            // optional: the training graph it was made for
//     "options": {"force_batch_dim_to_mesh_dim": -2, "prefer_reduce_scatter": false,
//                 "allow_mixed_mesh_shape": false, "memory_budget_bytes": 0},
//     "layouts": {"%h0.attn.wq": "RS1", "%tokens": "S0R", ...},
//     "predicted": {"step_time_s": ..., "compute_s": ..., "communication_s": ...,
//                   "peak_memory_bytes": ...}
//   }
//
// `layouts` maps values (their reference in the text IR: "%name" or "%<id>") to ShardingSpecs
// in the paper's notation. A plan written by `alpa plan` lists every value; a person may write
// only some (the weights of a Megatron split, say) and the ILP completes the rest. Either way
// the plan goes through the same auto-sharding, lowering and runtime.
//
// A pipeline plan has stages instead of one mesh (docs/plans.md):
//   "pipeline": {"devices": 8, "layers": 4, "schedule": "1f1b"},
//   "stages": [{"layers": [0, 1], "mesh": [2, 2], "first_device": 0, "batch_axis": "auto",
//               "layouts": {"%h0.mlp.w1": "RS1"}, "remat": "none"}, ...]
// Layers are the clusters of forward operators (inter/layer_clustering.h) of the model's
// training step for one micro-batch; each stage takes a contiguous range of them and a logical
// mesh over consecutive devices; its layouts (step-graph value references) are optional
// constraints for its intra-op plan; "remat" (none, selective or full; default none) is what
// its backward recomputes (inter/remat.h), and "full_remat_layers": k (optional, default 0) makes
// its first k layers recompute fully and the others what "remat" says. An interleaved plan
// ("schedule": "interleaved-1f1b", "virtual_stages": v) lists S x v stages, stage c on the devices
// and mesh of stage c mod S (which it may leave out).
#pragma once

#include <map>
#include <string>

#include "alpa/inter/stage_planner.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct PlanStage {
  int first_layer = 0, last_layer = 0;  // inclusive
  MeshShape mesh{1, 1};                 // logical mesh of the stage
  int first_device = 0;
  int batch_axis = ShardingOptions::kAutoBatchAxis;
  std::map<std::string, ShardingSpec> layouts;
  RematMode remat = RematMode::kNone;  // what its backward recomputes (none, selective, full)
  int full_remat_layers = 0;           // its first layers recompute fully (PlannedStage)
  double predicted_time_s = 0;         // per micro-batch (informational)
  double predicted_peak_memory_bytes = 0;
};

struct Plan {
  std::string model;
  std::string cluster = "local";
  MeshShape mesh{1, 1};
  int micro_batches = 1;
  std::string graph_fingerprint;  // empty: not checked
  ShardingOptions options;
  double memory_budget_bytes = 0;
  std::map<std::string, ShardingSpec> layouts;
  // Predictions (informational; recomputed when the plan is used).
  double predicted_step_time_s = 0;
  double predicted_compute_s = 0;
  double predicted_communication_s = 0;
  double predicted_peak_memory_bytes = 0;
  // Pipeline plans.
  int devices = 0;          // devices in all
  int pipeline_layers = 0;  // layer clusters the stages refer to
  // Where layers 1.. begin among the forward operators (indices into forward_ops of the
  // training step the fingerprint names); empty: the layers are re-clustered (Alpa's
  // clustering into pipeline_layers). The planner writes them, so that stages it cut inside
  // blocks are rebuilt exactly.
  std::vector<int> layer_starts;
  std::string schedule = "1f1b";  // "1f1b", "gpipe" or "interleaved-1f1b"
  int virtual_stages = 1;         // interleaved: stages per mesh (stages.size() / meshes)
  std::vector<PlanStage> stages;
  bool is_pipeline() const { return !stages.empty(); }
};

// A short hash of the graph's text form: plans record it to detect a different model.
std::string graph_fingerprint(const Graph& g);

// The complete plan of a solved sharding (every non-free value's layout).
Plan plan_from_sharding(const Graph& g, const ShardingPlan& sp, const std::string& model,
                        const std::string& cluster, int micro_batches);

std::string plan_to_json(const Plan& p);
Result<Plan> plan_from_json(std::string_view text, std::string_view source_name = "<plan>");
Result<Plan> load_plan(const std::string& path);
Status save_plan(const Plan& p, const std::string& path);

// The auto-sharding options that realise `p` on graph `g`: its layouts as fixed constraints
// and its options. Fails if the plan was made for another graph (fingerprint) or names
// values the graph does not have.
Result<AutoShardingOptions> plan_constraints(const Plan& p, const Graph& g);

// A pipeline plan file's stages as a PipelinePlan (layers to be clustered: layers.layer_of
// is empty), and back.
Result<PipelinePlan> pipeline_plan_of(const Plan& p);
Plan plan_from_pipeline(const PipelinePlan& pp, const std::string& model,
                        const std::string& cluster, int devices, const std::string& schedule,
                        const std::string& fingerprint);

}  // namespace alpa
