// SPMD lowering: a single-device graph plus its sharding plan becomes ONE per-device program
// (the same on every device; only the device's mesh coordinates differ at run time).
//
// Every value gets its local shape (its layout's shard of the global shape). Each node runs on
// the local layouts of its operands that the plan asks for; when a producer's layout differs,
// the steps of plan_reshard (intra/reshard.h) are emitted as collective ops (all_reduce,
// all_gather, reduce_scatter, all_to_all) or local ops (shard_slice, to_partial). That is the
// only place collectives are decided. A contraction whose strategy resolves its own partial sum
// is followed by that all-reduce / reduce-scatter.
//
// Free values (constants, iota and what is computed from them alone) are generated locally in
// each layout a user needs. Graph outputs come out in their planned layout with partial sums
// resolved; aliased outputs keep their parameter's layout, so a runtime can feed them back.
//
//   graph:    %y = dot_general(%x, %w)                        x: S0R, w: RR  (plan: y S0R)
//   program:  %y = dot_general(%x, %w) : f32[B/n0, N]  (no collective)
//
// Not done here: running the program (runtime/spmd_runner.h), pipeline stages.
#pragma once

#include <vector>

#include "alpa/intra/auto_sharding.h"
#include "alpa/ir/graph.h"

namespace alpa {

struct SpmdProgram {
  Graph program;  // the per-device program
  MeshShape mesh{1, 1};
  std::vector<ShardingSpec> param_specs;   // layout of each parameter (the graph's order)
  std::vector<ShardingSpec> output_specs;  // layout of each output (partial sums resolved)
  int64_t collectives = 0;                 // communicating ops inserted
};

struct LowerOptions {
  // The layout each graph output leaves the program in (empty: its planned layout with partial
  // sums resolved). A partial layout is allowed: a pipeline stage hands a gradient's partial
  // sums to its accumulator and resolves them once per step.
  std::vector<ShardingSpec> output_specs;
};

Result<SpmdProgram> lower_to_spmd(const Graph& g, const ShardingPlan& plan,
                                  const LowerOptions& options = {});

}  // namespace alpa
