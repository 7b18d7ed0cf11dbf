// Interleaved pipelines as plans (Megatron-LM's virtual pipeline stages, Narayanan et al.
// 2021 §2.2): S meshes each run v stages ("model chunks"), stage c on the mesh of stage
// c mod S, so a micro-batch goes round the meshes v times. The schedule (spmd/schedule.h)
// shrinks the bubble to (S - 1) / v of a stage's time for v times the transfers.
//
// A PipelinePlan expresses this by its stages' placements alone: stage c has the submesh,
// logical mesh and first device of stage c mod S. The stage DP (stage_dp.h) plans one stage
// per mesh under 1F1B; interleave_plan is the post-pass that re-cuts its stages into S x v,
// keeping each mesh and the share of the work the DP gave it, so the schedules can be
// compared on the same meshes (compile.h: --schedule auto simulates them).
//
// Not a schedule and not a runtime: stages and their placements only.
#pragma once

#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/inter/stage_planner.h"
#include "alpa/support/status.h"

namespace alpa {

struct PlanMeshes {
  int meshes = 0;          // S
  int virtual_stages = 1;  // v: stages per mesh
};

// The meshes of a plan's stages: the first stage placed as stage 0 (same first device, submesh
// and logical mesh) begins the second round. Errors (kInvalidArgument, naming the stage): a
// stage count that is not a multiple of the round, or stage c not placed as stage c mod S.
Result<PlanMeshes> plan_meshes(const PipelinePlan& plan);

// `plan` (one stage per mesh, layers clustered for `step`) re-cut into S x v stages: mesh i
// keeps the share of the forward FLOPs its stage had, split evenly over its v stages, each
// stage taking the stage placement, batch axis and recomputation of its mesh's stage (its
// hand-written layouts are dropped: they name values that move elsewhere). Each stage ends at
// the cut whose FLOPs before it come closest to its target: among the plan's layer
// boundaries when there are at least S x v layers, else among the places between
// consecutive heavy ops (heavy_op_cuts). The new plan has one layer per stage (layer_starts
// set, so a plan file rebuilds it exactly) and no figures (materialize_pipeline costs it).
// Errors: v < 1, or fewer places to cut than stages (kFailedPrecondition, with a hint).
Result<PipelinePlan> interleave_plan(const TrainStep& step, const PipelinePlan& plan,
                                     int virtual_stages);

// Predicted step of an interleaved pipeline from its stages' times per micro-batch:
// B max_i T_i + (sum_i T_i - max_i T_i) / v, T_i the sum over mesh i's stages. With v = 1
// it is 1F1B's sum t + (B - 1) max t; with equal meshes, B T + (S - 1) T / v.
double interleaved_step_time(const std::vector<PlannedStage>& stages, int meshes,
                             int micro_batches);

}  // namespace alpa
