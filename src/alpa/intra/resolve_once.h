// Partial sums resolved once: a pass over a solved sharding plan.
//
// The ILP prices resharding per edge, and a partial sum may pass through linear follow-ops
// (mul by a scale, add, ...) before a user needs it whole. A small gradient (a bias or
// layer-norm scale under data parallelism: reduce_sum over the split batch) then reaches the
// optimizer as a partial sum that three users resolve separately: the first-moment update
// (g * (1 - b1), all-reduced at its add), the square (g * g, with g all-reduced for the second
// operand) and the second-moment update ((g * g) * (1 - b2), all-reduced at its add): three
// all-reduces of one vector. Follow-ops have no strategy of their own that resolves at the
// producer, so the ILP cannot choose "once".
//
// This pass considers each partial value v in definition order and the values derived from it
// that stay partial (its closure: follow-ops reading a partial operand as it is). It resolves
// v at its producer (native layout partial, output layout whole: an all-reduce right after v,
// as an enumerated strategy resolving its own partial sum does), recomputes each follow-op of
// the closure from its leader's whole layout, and keeps the rewrite when the predicted
// communication of every edge into, inside and out of the closure falls (each consumer's node
// weight applied). Layouts of the plan stay consistent for lowering; the ILP's own choice is
// kept in ShardingPlan::ilp_specs (plan files record it, and auto_shard reapplies this pass).
#pragma once

#include "alpa/cluster/cluster.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/ir/graph.h"

namespace alpa {

// Rewrites `plan` in place; returns the number of values resolved at their producer. Lowers
// plan.communication_s by the predicted saving.
int resolve_partials_once(const Graph& g, ShardingPlan& plan, const MeshLinks& mesh,
                          const DeviceSpec& device, const AutoShardingOptions& options);

}  // namespace alpa
