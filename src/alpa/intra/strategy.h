// Sharding strategies of every node of a graph on a logical 2-D mesh.
//
// A Strategy is one way to compute a node: the layout of its output, the layout it needs of
// each operand, and what it costs (seconds of compute, bytes of output per device). Strategies
// come from two generators:
//
// - Enumerated (parameters, dot_general, conv2d and its gradients, gather, scatter_add): the
//   op's FactorRule (rules as data: which tensor dims carry the same loop factor, which factors
//   are contracted) is sharded by choosing, for each mesh axis of extent > 1, at most one factor
//   to split. A split contracted factor makes the output a partial sum on that axis. Such a
//   strategy also comes resolved at the producer: with an all-reduce (non-partial output), and
//   with prefer_reduce_scatter and one partial axis, a reduce-scatter onto each dim that can
//   take the split; the
//   collective is the node's own `comm` cost, paid once however many users read the result.
//   This is the generic form of Alpa's dot/conv strategy tables ("SS = SR x RS",
//   "SR = SS x SR" with its all-reduce, and the reduce-scatter of weight-update sharding).
// - Follow (elementwise, movement, reductions): one strategy per strategy of a *leader*
//   operand, deriving the output layout from the leader's (Alpa's follow / merge of light ops).
//   A follower's strategy i corresponds to its leader's strategy i, so the cost graph merges it
//   into the leader: it adds no ILP variable.
// - Free (constants, iota): any layout at no cost; they do not enter the cost graph.
// - The second moment of AdamW ("<w>.adam_v") follows its first moment ("<w>.adam_m"): both
//   are updated elementwise from the same gradient, so they share one layout (and one ILP
//   variable).
//
// Partial sums pass through linear ops (add, sub, neg, convert, transpose, reshape, broadcast,
// slice, reduce_sum, mul or div by a non-partial value); other ops need non-partial operands,
// which the consumer's resharding resolves (all-reduce or reduce-scatter).
#pragma once

#include <string>
#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/ir/graph.h"
#include "alpa/sharding/sharding_spec.h"

namespace alpa {

struct ShardingOptions {
  // Input parameters (data) split their dim 0 (batch) over this mesh axis: -1 none, 0 or 1;
  // kAutoBatchAxis: axis 0 when both axes have extent > 1, otherwise the larger axis.
  static constexpr int kAutoBatchAxis = -2;
  int force_batch_dim_to_mesh_dim = kAutoBatchAxis;
  // Allow a dim split over both mesh axes (S01, Alpa's mixed mesh shape).
  bool allow_mixed_mesh_shape = false;
  // Weight-update sharding (ZeRO-2-like, Alpa §2.10): optimizer state (parameters with
  // role=state) is split over every mesh axis of extent > 1 wherever its shape allows, so the
  // gradient arrives by reduce-scatter and the update is gathered; otherwise state is placed
  // by cost alone (usually replicated, like plain data parallelism).
  bool prefer_reduce_scatter = false;
  // Let contractions repeat work along a mesh axis (a strategy that splits nothing over an
  // axis of extent > 1). Off by default, as in Alpa: it multiplies the strategies of every
  // heavy op. Parameters always have their replicated layouts.
  bool allow_replicated_compute = false;
  // Per node, the program it runs in (empty: one program). Values read across programs are
  // stored, not fused (fused_values): a pipeline stage's forward, backward and update tasks.
  std::vector<int> fusion_group;
};

struct Strategy {
  std::string name;  // e.g. "S0R = S0R x RR"
  ShardingSpec output;
  // The layout the op itself produces from `operands`; differs from `output` only when the
  // strategy resolves the op's partial sum with its own collective (all-reduce /
  // reduce-scatter).
  ShardingSpec native;
  std::vector<ShardingSpec> operands;  // required layout of each operand
  double compute = 0;                  // seconds on one device
  double comm = 0;                     // seconds of the node's own collective (resolving
                                       // its partial sum: all-reduce or reduce-scatter)
  double memory = 0;                   // bytes of the output held by one device
};

enum class StrategyKind : uint8_t { kEnumerated, kFollow, kFree };

struct NodeStrategies {
  StrategyKind kind = StrategyKind::kEnumerated;
  ValueId leader = kNoValue;  // kFollow: the operand whose strategies this node's correspond to
  std::vector<Strategy> strategies;
};

// The input parameters' batch axis after resolving kAutoBatchAxis (-1: none).
int resolve_batch_axis(const ShardingOptions& options, const MeshShape& mesh);

// Strategies of every node (indexed by ValueId). Errors: a graph that contains collectives.
Result<std::vector<NodeStrategies>> generate_strategies(const Graph& g, const MeshLinks& mesh,
                                                        const DeviceSpec& device,
                                                        const ShardingOptions& options);

// The output layout and operand requirements of one follow-op for a given layout of its
// leader operand (exposed for SPMD lowering and tests). Fails if the op is not a follow-op.
Result<Strategy> follow_strategy(const Graph& g, ValueId id, ValueId leader,
                                 const ShardingSpec& leader_spec, const MeshShape& mesh);

}  // namespace alpa
