// The inter-operator pass (Alpa §3): choose pipeline stages, their submeshes and logical mesh
// shapes, each stage's intra-op plan, and (optionally) the number of micro-batches, to
// minimise the step time of a 1F1B pipeline (pipeline_timing, stage_dp.h: Alpa's
// T = sum_i t_i + (B - 1) * max_i t_i with transfers overlapping compute and 1F1B round trips).
//
//   forward ops --cluster_layers--> L layers
//   every layer range x submesh x logical shape --stage graph + auto_shard--> t, memory
//   stage DP (stage_dp.h) --> stages;  place_submeshes --> device ranges
//
// A candidate's cost is the intra-op plan of its stage graph (stage_graph.h: forward and
// backward of one micro-batch, the update weighted 1/B) on a canonical placement of the
// submesh, plus the time to receive its per-micro-batch inputs from the neighbouring stages
// (Alpa leaves this out). Memory under 1F1B: a stage followed by s stages holds s + 1
// micro-batches' stashed activations; a candidate whose plan does not fit even with none in
// flight is re-planned under a memory budget, and is infeasible if that fails. Stage graphs
// that are structurally identical (the same ops, types and edges, names aside: ranges of
// repeated transformer layers) share one intra-op solve per mesh shape.
// With micro_batches = 0 the planner also searches the micro-batch count among the divisors
// of the batch (Alpa leaves it to the user): from the most micro-batches (the smallest
// activations) down, stopping when a count no longer fits or the step time has risen twice.
//
// Not the runtime: materialize_pipeline turns a plan into the pieces build_pipeline_program
// takes.
#pragma once

#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/cluster/cluster.h"
#include "alpa/cost/memory.h"
#include "alpa/inter/layer_clustering.h"
#include "alpa/inter/remat.h"
#include "alpa/inter/stage_dp.h"
#include "alpa/inter/stage_graph.h"
#include "alpa/inter/submesh.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/models/registry.h"

namespace alpa {

// The plans the planner may choose from: everything (Alpa), or one of the paper's ablations —
// intra-operator only (one stage on every device: auto-sharding alone) or inter-operator only
// (stages of one device each: pipeline parallelism alone).
enum class PlanSpace : uint8_t { kFull, kIntraOnly, kInterOnly };
// "full", "intra-only", "inter-only"
std::string_view plan_space_name(PlanSpace s);
Result<PlanSpace> parse_plan_space(std::string_view name);

struct PipelinePlannerOptions {
  PlanSpace space = PlanSpace::kFull;
  int num_layers = 0;        // clustered layers; 0: automatic, at most max_auto_layers
  int max_auto_layers = 16;  // Alpa's GPT benchmarks use 6 to 16 automatic layers
  // A stack of repeated blocks (transformer, MoE) is clustered into whole blocks, at most this
  // many layers (one block per layer up to 48 blocks, as GPT-15B and GPT-39B have): runs of
  // identical layers are costed by extrapolation, so finer layers add stage choices (the last
  // stage with fewer blocks to make room for the head) at a moderate planning cost (GPT-39B on
  // 64 GPUs: 24 layers of two blocks plan in 22 s and simulate at 65.0 s per step, 48 layers
  // in 34 s and 58.4 s).
  int max_block_layers = 48;
  double layer_eps = 0.5;        // FLOP balance of the clustering
  int micro_batches = 0;         // 0: search the divisors of `batch`
  int64_t batch = 1;             // global batch (for the micro-batch search)
  double memory_per_device = 0;  // bytes; 0: the cluster's device memory
  // Alpa's stage_imbalance_tolerance: a candidate is considered only if its share of the
  // devices is within a factor (1 + tolerance) of its share of the FLOPs. Infinity: all
  // (Alpa's default; its GPT suite uses 1.0, `alpa plan` too).
  double imbalance_tolerance = std::numeric_limits<double>::infinity();
  bool include_transfer_cost = true;
  // Runs of four or more identical layers between a first and a last layer are costed from the
  // runs of two and three (affine in the count) instead of one intra-op solve each.
  bool extrapolate_repeated_layers = true;
  // A layer range whose shorter range (one layer less at either end) on the same submesh and
  // logical mesh does not fit even alone (with recomputation, under the memory budget) is left
  // out unsolved: holding more layers never takes less memory. Off: every range is solved.
  bool prune_ranges_that_cannot_fit = true;
  // A micro-batch count costs each stage candidate by the plan searched for the same stage
  // graph at a count planned before it, where one applies within the memory (the layouts,
  // costed at this micro-batch size: no ILP); the stages the DP chooses are searched again
  // exactly. Off: every count searches every candidate.
  bool reuse_across_counts = true;
  // Micro-batch counts planned after a first one are only planned for plans that could come
  // within this fraction of the best predicted step found so far: a stage candidate is left
  // out unsolved when a lower bound of the step of any plan holding it (its heavy ops and
  // those of the rest of the model at the device's peak, each split over its devices) is
  // beyond. A count with no such plan is rejected as slower; one beyond the margin may report
  // a slower plan than its best. The margin keeps counts whose plans the simulation may still
  // prefer (the estimate is within a few percent of it). The search stops at the first count
  // beyond the margin, or after two slower counts in a row.
  double slower_count_margin = 0.05;
  // Each stage candidate's intra-op ILP stops at this time limit or relative gap (the best
  // plan found so far is kept); the chosen stages are re-planned with `sharding.ilp`.
  double stage_ilp_time_limit_s = 1.0;
  double stage_ilp_relative_gap = 0.01;
  // After the stage DP, move the chosen stages' boundaries to between heavy ops inside
  // layers so that the stages' times are balanced (stage_planner.cc); kept only if the
  // predicted step is faster.
  bool balance_within_layers = true;
  // Rematerialization per stage (remat.h): kAuto prices none, selective and full for every
  // candidate (the recomputed FLOPs in its time, the stash it saves in its memory) and keeps
  // none wherever it fits; the others force one mode on every stage.
  RematMode remat = RematMode::kAuto;
  AutoShardingOptions sharding;  // per-stage intra-op options (memory budget set per stage)
  // When no plan fits, search for the smallest memory per device that would (for the error
  // message; several more plans). Callers that only need "does not fit" turn it off.
  bool explain_no_fit = true;
  // Micro-batch counts planned at once, each on a thread (0: the hardware's, at most 4).
  int threads = 0;
  // `threads` resolved: how many counts (or, in compile/checked.h, candidate simulations) run
  // side by side.
  int side_by_side() const;
  // Intra-op solves of one micro-batch count's stage candidates run side by side on this many
  // threads (0: the cores the counts planned side by side leave; 1: one at a time). The plan
  // does not depend on it, unless ILPs reach their time limit: CBC counts the process's CPU
  // time, so solves side by side reach it sooner (as counts side by side already do).
  int solve_threads = 0;
  // Called with a line of progress now and then (long plans), if set.
  std::function<void(const std::string&)> progress;
};

struct PlannedStage {
  int first_layer = 0, last_layer = 0;  // inclusive
  SubmeshShape submesh;
  LogicalMeshChoice logical;
  int first_device = 0;
  double time_s = 0;  // per micro-batch: forward + backward + update/B + receiving
  double compute_s = 0, communication_s = 0, transfer_s = 0;
  double peak_memory_bytes = 0;        // with the micro-batches 1F1B keeps in flight here
  double stash_bytes = 0;              // activations kept from forward to backward, per micro-batch
  int max_succ = -1;                   // stages that may follow within memory
  RematMode remat = RematMode::kNone;  // what its backward recomputes (never kAuto)
  // The stage's first this many layers recompute fully (activation checkpointing), the others
  // `remat` (none or selective): the planner mixes them where full recomputation of every
  // layer is more than the memory needs. 0: every layer recomputes `remat`.
  int full_remat_layers = 0;
  MemoryBreakdown memory;                       // peak_memory_bytes in its parts (cost/memory.h)
  std::map<std::string, ShardingSpec> layouts;  // hand-written layouts (step-graph refs)
};

struct PipelinePlan {
  int micro_batches = 1;
  LayerClustering layers;  // over forward_ops(step)
  std::vector<PlannedStage> stages;
  double predicted_step_time_s = 0;
  // Planning statistics.
  double clustering_s = 0, stage_costs_s = 0, dp_s = 0, total_s = 0;
  double verify_s = 0;     // exact re-solves of the stages the DP chose (within dp_s's loop)
  double balance_s = 0;    // balancing the stages' boundaries within layers
  int balance_rounds = 0;  // re-cuts that made the predicted step faster (kept)
  int candidates = 0;      // (layer range, submesh, logical shape) costed
  int intra_solves = 0;    // auto-sharding runs (the rest came from the cache)
  int cache_hits = 0;
  int extrapolated = 0;  // candidates costed from shorter runs of repeated layers
  // candidates costed by the plan of the same stage at another micro-batch count (no ILP)
  int reused_across_counts = 0;
  int pruned = 0;  // candidates left out unsolved: a range inside them does not fit
  int slower = 0;  // candidates left out unsolved: no plan holding them beats the bound
  std::vector<std::pair<int, double>> micro_batch_search;  // (B, predicted step time) tried
  // Why each count tried without a plan has none: "does not fit: ..." (memory, by how much),
  // "not possible: ..." (a model file that declares no batch dimension, say) or "slower: ..."
  // (no plan could come within slower_count_margin of a count tried before).
  std::map<int, std::string> micro_batch_rejections;
  // From a plan file: where layers 1.. begin among forward_ops (empty: re-cluster into
  // layers.num_layers); plan_layers turns it into `layers`.
  std::vector<int> layer_starts;
  // The best plans of the other micro-batch counts tried, fastest first (predicted): what a
  // caller that judges plans another way (by simulation, sim/checked_plan.h) chooses among.
  std::vector<PipelinePlan> alternatives;
};

// The layers of a plan read from a file (layer_of empty): its layer_starts if given, else
// Alpa's clustering into plan.layers.num_layers. Errors name a bad boundary.
Result<LayerClustering> plan_layers(const TrainStep& step, const PipelinePlan& plan);

// Per node of step.graph: the stage of each forward op under `plan` (others: 0).
std::vector<int> forward_stages(const TrainStep& step, const PipelinePlan& plan);
// What a stage recomputes, in words: "none", "selective", "full", or a mix such as "full on
// layer 1, selective on layers 2-3".
std::string remat_text(const PlannedStage& stage);

// Per layer of `layers`: a lower bound of the seconds its forward and backward take on one
// `device`, its heavy ops (matrix products and convolutions, backward ones included) at the
// device's peak and best profiled efficiency. A backward node runs on its forward node's
// stage (stage_graph.h) and an intra-op plan at best divides a node's work by its mesh's size,
// so a stage of layers [l, r] on d devices computes for at least their sum over d per
// micro-batch (what slower_count_margin's bound rests on).
std::vector<double> heavy_op_seconds(const TrainStep& step, const LayerClustering& layers,
                                     const DeviceSpec& device);

// Intra-op solves of stage graphs kept between plan_pipeline calls for the same model,
// optimizer, cluster and intra-op options (another plan space, memory or count search reuses
// them: a stage graph's solve depends on its structure and mesh alone). One per call chain;
// not for calls running at the same time.
class PlanningCache;
std::shared_ptr<PlanningCache> make_planning_cache();

// Plans the pipeline of `model`'s training step with `optimizer`: for each micro-batch count
// it tries (options.micro_batches, or the search above), the step of one micro-batch
// (models/registry.h: micro_batch_step) is built and its stages planned. With `cache`, the
// stage solves are looked up in and added to it.
Result<PipelinePlan> plan_pipeline(const ModelSpec& model, const OptimizerOptions& optimizer,
                                   const Cluster& cluster, const PipelinePlannerOptions& options,
                                   PlanningCache* cache = nullptr);

// Everything build_pipeline_program needs for a plan whose stages are chosen (by
// plan_pipeline or by hand): the split, each stage's graph, its intra-op plan on its placed
// mesh, and the placements.
struct MaterializedPipeline {
  PipelineSplit split;
  std::vector<StageGraph> graphs;
  std::vector<ShardingPlan> plans;
  std::vector<PlacedMesh> placements;  // each stage's logical mesh on its devices
  // The plan's stages with times and memory recomputed on their placed meshes.
  std::vector<PlannedStage> stages;
  double predicted_step_time_s = 0;  // pipeline_timing of the stages (stage_dp.h)
  // When a stage recomputes (PlannedStage::remat): the step with its recomputation
  // (remat.h), which `split` and `graphs` refer to; build the program from it.
  std::optional<TrainStep> remat_step;
};
// `stage_options`, if set, adjusts each stage's intra-op options after the plan's own
// (hand-written layouts, batch axis) are applied: a manual plan per stage (baselines).
using StageOptionsHook =
    std::function<Status(int stage, const StageGraph& graph, const MeshShape& logical_mesh,
                         AutoShardingOptions& options)>;
Result<MaterializedPipeline> materialize_pipeline(const TrainStep& step, const PipelinePlan& plan,
                                                  const Cluster& cluster,
                                                  const AutoShardingOptions& sharding,
                                                  const StageOptionsHook& stage_options = {});

}  // namespace alpa
