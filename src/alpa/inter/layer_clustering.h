// Layer clustering: split the forward operators of a training graph into L contiguous "layers"
// with balanced FLOPs, minimising the largest tensor set that crosses into a layer (Alpa §3.2,
// the code version `cluster_jaxpr_by_cost`, with `layer_num="auto"` as a binary search).
//
// Terms:
// - ops: node ids of g in execution order (the forward part; parameters may be left out).
//   Heavy ops are dot_general and conv2d, each costing node_flops; every other op costs 0.
// - A value counts as a cross-layer tensor only if it is produced by an op in `ops` that has
//   operands: parameters, constants and iotas never count, nor does anything outside `ops`.
// - A layer's input bytes: the bytes of the distinct counted values its ops read that earlier
//   layers produced. The objective (max_cross_bytes) is the largest input over all layers.
//
// Algorithm (cluster_layers): the op list is first coarsened into K segments, one per heavy op
// (K = #heavy ops): the cut between heavy op j-1 and heavy op j is placed, among the light ops
// between them, where the fewest bytes are live (produced before, read at or after the cut;
// earliest such point on ties), so that a boundary lands on a residual stream rather than
// beside a freshly computed tensor. Layer boundaries are then chosen among these K-1 cuts by
// Alpa's DP over (segments consumed r, layers q), minimising the max of input_sizes[k][r],
// with Alpa's feasibility rule per segment range (bound = (1+eps) * total/L; fewer than the
// heavy-op lower bound only once the bound is reached; cut off once the cost reaches the bound
// with more heavy ops than the lower bound) and tie-breaks (smaller sum of inputs within 1e-4
// relative, then smaller sum of squared layer FLOP shares — the variance of the layer costs).
// Automatic L: Alpa's binary search over [2, K/3 + 1] keeping the largest L whose objective
// stays within (1 + layer_eps) of the L = 2 objective, capped at K / heavy_op_lower_bound so
// that layers average at least that many heavy ops (1 layer when the cap is below 2).
// Cost: O(K * #operand uses) time and O(K^2) memory for the input table, O(L * allowed
// ranges) for each DP (GPT-39B: K = 385, a few milliseconds).
//
// Invariants of a LayerClustering: layer_of.size() == ops.size(), non-decreasing from 0 to
// num_layers - 1 with every layer non-empty; layer_flops and layer_input_bytes have
// num_layers entries; max_cross_bytes == max(layer_input_bytes).
//
// It is not a stage partitioner: layers are the units the stage DP (stage_dp.h) groups into
// pipeline stages; backward ops follow their forward op's layer elsewhere.
#pragma once

#include <span>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct LayerClusteringOptions {
  int num_layers = 0;  // L >= 1; 0: automatic (binary search, Alpa's layer_num="auto")
  // FLOP balance bound (1+eps) * total/L (Alpa's DEFAULT_EPS): a layer with more heavy ops
  // than the lower bound stays below it.
  double eps = 0.5;
  // A layer with fewer heavy ops is allowed only once its cost reaches the bound (Alpa's
  // LAYER_HEAVY_OP_LOWER_BOUND); lowered to floor(K/L) when the model has too few heavy ops,
  // and at least 1.
  int heavy_op_lower_bound = 3;
  double layer_eps = 0.0;  // automatic L: keep the largest L whose objective is within
                           // (1 + layer_eps) of the L = 2 objective
  int max_layers = 0;      // automatic L: at most this many (0: no cap)
};

struct LayerClustering {
  std::vector<int> layer_of;  // per entry of `ops`: its layer, non-decreasing, 0..L-1
  int num_layers = 0;
  std::vector<double> layer_flops;        // per layer: FLOPs of its heavy ops
  std::vector<double> layer_input_bytes;  // per layer: bytes read from earlier layers (0 for 0)
  double max_cross_bytes = 0;             // the DP objective: largest layer input (bytes)
  // Where each coarsened segment starts (indices into `ops`, first is 0); every layer starts at
  // one of them. Empty for layers_from_boundaries and for graphs without heavy ops.
  std::vector<int> segment_starts;
};

// Clusters `ops` into layers. Errors: empty or invalid `ops` (unknown id, duplicate, an operand
// produced later in the list) -> kInvalidArgument; more layers than heavy ops, or no split that
// meets the FLOP balance bound -> kFailedPrecondition with a hint at a smaller --layers.
// Without heavy ops: one layer (automatic), or L chunks of equal op count.
Result<LayerClustering> cluster_layers(const Graph& g, std::span<const ValueId> ops,
                                       const LayerClusteringOptions& o);

// Layers of whole repeated blocks, for models built as a stack of identical blocks
// (transformer and MoE layers): the periodic run of ops (equal structural_node_hashes at a
// distance of one period) that covers the most ops is the stack, a period is one block (for
// MoE, a dense and an MoE block), and blocks begin where the fewest bytes are live (the
// residual stream). Each layer holds the same number of blocks -- the fewest that keep at most
// `max_layers` layers, a divisor of the block count where that costs at most a quarter of the
// layers -- so the inner layers are identical and equal stages can be formed; the ops before
// the stack join the first layer, the leftover blocks and the ops after it the last layer.
// kNotFound when no run of >= 2 blocks carries at least half the heavy FLOPs.
Result<LayerClustering> cluster_repeated_blocks(const Graph& g, std::span<const ValueId> ops,
                                                int max_layers);

// Where each block of that stack starts (indices into `ops`, ascending); the same errors.
Result<std::vector<int>> repeated_block_starts(const Graph& g, std::span<const ValueId> ops);

// A place where a layer may begin between two heavy ops (finer than whole layers).
struct OpCut {
  int position = 0;         // index into `ops` of the first op after the cut
  double flops_before = 0;  // heavy-op FLOPs of ops [0, position)
  double live_bytes = 0;    // bytes produced before the cut and read after it
};

// One cut between each two consecutive heavy ops, placed among the light ops between them
// where the fewest bytes are live (as the coarsening above places segment starts), in order.
// Errors as cluster_layers for an invalid op list.
Result<std::vector<OpCut>> heavy_op_cuts(const Graph& g, std::span<const ValueId> ops);

// Manual boundaries: `starts` are the indices into `ops` where layers 1, 2, ... begin (layer 0
// begins at 0); strictly increasing, each in [1, ops.size() - 1]. Errors name the offending
// entry (kInvalidArgument).
Result<LayerClustering> layers_from_boundaries(const Graph& g, std::span<const ValueId> ops,
                                               std::span<const int> starts);

// Per layer, the bytes of distinct counted values its ops read that ops of earlier layers
// produced (the definition above), for any `layer_of` over `ops` (non-decreasing, checked).
std::vector<double> layer_input_bytes(const Graph& g, std::span<const ValueId> ops,
                                      std::span<const int> layer_of);

// True for the ops that clustering balances: dot_general and conv2d.
bool is_heavy_op(const Graph& g, ValueId id);

}  // namespace alpa
