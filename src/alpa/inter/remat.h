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
//   full       layer checkpointing: everything inside a layer is recomputed from the layer's
//              inputs, which alone stay stashed.
// Copies read copies only within one segment (a layer of the planner's clustering), so what a
// layer reads from an earlier layer is its stashed input, and a copy never crosses a stage.
// Copies are emitted just before the first backward node that reads them, so a layer is
// recomputed right before its own backward (the recomputed activations of one layer at a time).
//
// Not the planner: stage_planner.cc prices the modes (remat_layer_stats) and chooses.
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
// backward as above. `segment`, per node: the layer of each forward node (others ignored).
// Node ids of the original step are not preserved; forward nodes keep their order.
Result<TrainStep> rematerialize(const TrainStep& step, std::span<const int> segment,
                                std::span<const char> recompute);

// Per node: the layer of each forward op (forward_ops order, layer_of from the clustering).
std::vector<int> segments_from_layers(const TrainStep& step, std::span<const int> layer_of);

// Per layer, what a mode costs and saves (whole tensors, one micro-batch): the bytes of the
// forward values its backward reads (the stash) and the FLOPs recomputed.
struct RematLayerStats {
  std::vector<double> stash_bytes;
  std::vector<double> recompute_flops;
  std::vector<double> flops;  // forward + backward FLOPs of the layer (per micro-batch)
};
RematLayerStats remat_layer_stats(const TrainStep& step, std::span<const int> segment,
                                  int num_layers, RematMode mode);

}  // namespace alpa
