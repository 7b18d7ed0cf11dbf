// Auto-sharding: the intra-operator pass (Alpa §2). Chooses a layout for every value of a
// graph on one logical 2-D mesh that minimises predicted step time (compute + resharding
// communication) within an optional per-device memory budget.
//
//   strategies (strategy.h)  ->  cost graph  ->  ILP (ilp.h, CBC)  ->  ShardingPlan
//
// The cost graph has one variable per leader node (followers share their leader's index), a
// cost per strategy (compute time of the node and its followers, plus resharding inside the
// group), and one cost matrix per pair of connected groups (resharding time of every edge
// between them, from reshard.h). Aliased outputs (updated weights and optimizer state) must
// keep their parameter's layout. `fixed` pins the layout of named values: a hand-written or
// partial plan is a set of constraints and the ILP completes it.
//
// Not done here: lowering the plan to per-device programs (spmd), pipeline stages (inter).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/intra/ilp.h"
#include "alpa/intra/strategy.h"
#include "alpa/ir/graph.h"
#include "alpa/sharding/sharding_spec.h"

namespace alpa {

struct AutoShardingOptions {
  ShardingOptions sharding;
  double memory_budget_bytes = 0;  // per device; 0: no constraint
  IlpOptions ilp;
  // Give structurally identical nodes (repeated layers) one shared ILP variable: identical
  // layers then choose identical layouts, as hand-written plans do, and the ILP has about one
  // layer's worth of variables however deep the model is. Nodes match when their op, type,
  // attributes and parameter names with digits removed ("h#.attn.wq") agree three levels deep
  // and they have the same strategies and the same pinned layout in `fixed` (if any). A
  // restriction, not a relaxation.
  bool merge_repeated_layers = true;
  // Required layouts, keyed by the value's reference in the text form ("%h0.attn.wq", "%57").
  // A complete set checks and costs a given plan; a partial set is completed by the ILP.
  std::map<std::string, ShardingSpec> fixed;
  // How often each node runs per step, relative to the graph (empty: every node once). A
  // pipeline stage's graph holds one micro-batch's forward and backward (weight 1) and the
  // once-per-step optimizer update (weight 1/micro-batches): the ILP then resolves gradient
  // partial sums in the update, once per step, when that is cheaper. Node costs and the
  // resharding into a node are scaled by its weight; so are the plan's predicted times.
  std::vector<double> node_weight;
  // Per node (empty: none): its value is added into an accumulator every time the graph runs
  // (a pipeline stage's gradients, summed over micro-batches): the accumulator is read and
  // written and the value read, 3x its local bytes through device memory, charged to the
  // node's strategies (scaled by its weight) so that the ILP sees what a replicated gradient
  // costs beside a sharded one.
  std::vector<char> accumulated;
  // Graph outputs that are not aliases leave the graph whole (no partial sums), as a pipeline
  // stage's values sent to other stages do: resolving a partial layout is charged to the
  // producer (scaled by its weight), like any resharding.
  bool whole_outputs = false;
  // When no sharding fits the memory budget, find the smallest budget that would (a second
  // ILP) for the error message. Planners that only need "does not fit" turn it off.
  bool explain_infeasible_memory = true;
  // Under a budget, a memory row for every candidate peak from the start. Otherwise the ILP
  // starts with the rows of the largest peaks under the smallest and largest layouts, and rows
  // a solution overflows are added and the ILP solved again (a few rounds, then every row):
  // the same optimum with far fewer rows on large graphs.
  bool all_memory_rows = false;
  // After solving, resolve a partial sum at its producer when its users would otherwise
  // resolve it (or values derived from it) separately (resolve_once.h). On for one mesh
  // (compile); pipeline stages do not use it yet.
  bool resolve_partials_once = false;
  // Per node (empty: none): the strategy name to take (ShardingPlan::strategy_names of a plan
  // of a graph of the same structure, a pipeline stage at another micro-batch size). The plan
  // is then costed, not searched: no ILP is solved. An error (kFailedPrecondition) when a node
  // has no strategy of that name or a merged group's nodes name different ones, and
  // kResourceExhausted when it breaks the memory budget or a pinned layout; the caller then
  // searches.
  std::vector<std::string> hint;
};

struct ShardingPlan {
  MeshShape mesh{1, 1};
  // Per node. Free nodes (constants, iota and ops of only those) have strategy -1: they are
  // computed locally in whatever layout each user needs; their spec is replicated.
  std::vector<int> strategy;
  std::vector<ShardingSpec> specs;                       // output layout
  std::vector<ShardingSpec> native_specs;                // layout the op itself produces
  std::vector<std::vector<ShardingSpec>> operand_specs;  // layout each operand is used in
  std::vector<std::string> strategy_names;
  // The output layouts the ILP chose, when resolve_partials_once changed some (empty: as
  // `specs`): what a plan file records, since the ILP reproduces them and the pass reapplies.
  std::vector<ShardingSpec> ilp_specs;
  int resolved_once = 0;  // partial sums resolve_partials_once moved to their producer

  // Predictions for one execution of the graph on one device.
  double compute_s = 0;
  double communication_s = 0;
  double peak_memory_bytes = 0;

  // Planning statistics.
  IlpStats ilp;
  int leader_nodes = 0;     // nodes that choose a strategy (followers share theirs)
  int ilp_nodes = 0;        // ILP nodes after merging repeated layers
  double strategies_s = 0;  // strategy generation
  double cost_graph_s = 0;  // resharding costs and the request
  double total_s = 0;
};

Result<ShardingPlan> auto_shard(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                                const AutoShardingOptions& options = {});

// The ILP request auto_shard builds (for inspection, benchmarks and solver tests).
Result<IlpRequest> build_sharding_ilp(const Graph& g, const MeshLinks& mesh,
                                      const DeviceSpec& device, const AutoShardingOptions& options);

// Where a plan communicates: one entry per resharding of an edge (producer -> user) and per
// node that resolves its own partial sum, with the collectives and their predicted seconds.
struct CommEntry {
  ValueId producer = kNoValue;
  ValueId user = kNoValue;  // kNoValue: the producer's own collective
  std::string collectives;  // e.g. "all-reduce(axis 1)"
  double seconds = 0;
};
std::vector<CommEntry> plan_communication(const Graph& g, const ShardingPlan& plan,
                                          const MeshLinks& mesh);

// Peak bytes per device when the graph runs in definition order with every value freed after
// its last use, each value held in its layout; weights and state no output updates (an
// inference step's weights) are held for the whole step, as the devices keep what they own. Free
// nodes (strategy -1: constants, iotas and what is computed from them alone) are not counted: the
// executor generates them inside fused loops instead of holding them. Fusion as fused_values(g,
// fusion_group).
double plan_peak_memory(const Graph& g, const std::vector<ShardingSpec>& specs,
                        const std::vector<int>& strategy, const MeshShape& mesh,
                        std::span<const int> fusion_group = {});

}  // namespace alpa
