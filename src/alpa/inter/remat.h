// Rematerialization (activation recomputation) of a training step, per pipeline stage.
//
// A training step keeps every forward value its backward reads from the forward of a
// micro-batch until that micro-batch's backward: under 1F1B a stage followed by s stages holds
// s + 1 micro-batches of these ("the stash"). Rematerialization trades FLOPs for that memory:
// chosen forward nodes are duplicated into the backward phase (each copy belongs to the node
// it copies, so the pipeline split puts it in the backward task of that node's stage), and the
// backward reads the copies, so the originals die inside the forward task.
//
// Modes, per stage:
//   none       nothing recomputed;
//   selective  the cheap and the quadratic parts (as Megatron-LM's selective recompute):
//              every forward node that is not a contraction, and the contractions of two
//              data-dependent operands (the attention core, QK^T and PV); the outputs of
//              contractions with a weight (linear layers, convolutions) stay stashed;
//   full       activation checkpointing: everything inside a segment is recomputed from the
//              segment's inputs, which alone stay stashed.
// Copies read copies only within one segment, so what a segment reads from an earlier one is
// its stashed input, and a copy never crosses a stage. A segment is a layer of the planner's
// clustering, cut further where each repeated block (a transformer block) begins: full
// recomputation checkpoints every block, as Megatron-LM does, not a whole stage-sized layer.
// Copies are emitted just before the first backward node that reads them, so a segment is
// recomputed right before its own backward (the recomputed activations of one segment at a
// time).
//
// Not the planner: stage_planner.cc prices the modes (remat_segment_stats) and chooses.
#pragma once

#include <span>
#include <string_view>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/support/status.h"

namespace alpa {

// kAuto only as an option: the planner chooses per stage.
enum class RematMode : uint8_t { kAuto, kNone, kSelective, kFull };
std::string_view remat_name(RematMode m);  // "auto", "none", "selective", "full"
Result<RematMode> parse_remat(std::string_view name);

// Per node of step.graph: whether `mode` recomputes it (forward, non-parameter nodes that are
// not free; never for kNone or kAuto).
std::vector<char> remat_selection(const TrainStep& step, RematMode mode);

// The step with the selected forward nodes (`recompute`, per node) duplicated into the
// backward as above. `segment`, per node: the segment of each forward node (others ignored).
// Node ids of the original step are not preserved; forward nodes keep their order.
// `copied_from` (optional), per node of the result: the node of `step` it copies (kNoValue
// for all but the copies).
Result<TrainStep> rematerialize(const TrainStep& step, std::span<const int> segment,
                                std::span<const char> recompute,
                                std::vector<ValueId>* copied_from = nullptr);

// The segments of a step whose forward ops (forward_ops order) lie in layers `layer_of`:
// a new segment wherever a layer or a repeated block begins (layer_clustering.h's
// repeated_block_starts; layers alone for a model without one).
struct RematSegments {
  std::vector<int> of_node;         // per node of step.graph: its segment (non-forward: 0)
  std::vector<int> first_of_layer;  // [L+1]: layer x holds segments [first[x], first[x+1])
  int count() const { return first_of_layer.empty() ? 0 : first_of_layer.back(); }
};
RematSegments remat_segments(const TrainStep& step, std::span<const int> layer_of, int num_layers);

// Per segment, what a mode costs and saves (whole tensors, one micro-batch): the bytes of the
// forward values its backward reads (the stash, counted in the segment that produces them)
// and the FLOPs recomputed.
struct RematSegmentStats {
  std::vector<double> stash_bytes;
  std::vector<double> recompute_flops;
  std::vector<double> flops;  // forward + backward FLOPs of the segment (per micro-batch)
  // The most bytes of the segment's recomputed values live at once during its backward (as
  // the transformed step frees each after its last reader).
  std::vector<double> recompute_peak_bytes;
};
RematSegmentStats remat_segment_stats(const TrainStep& step, std::span<const int> segment,
                                      int num_segments, RematMode mode);

}  // namespace alpa
