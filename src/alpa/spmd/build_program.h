// Building the executable Program (program/program.h) from a plan: the last step of
// compilation, after which no planner type is needed to run or simulate the step.
//
// - build_mesh_program: one stage running the whole training graph on one mesh: its SPMD
//   lowering (lower.h) is the stage's one task, "step", and its parameters and outputs are the
//   stage's values in their planned layouts. On a 1x1 mesh the task is the graph itself.
// - build_pipeline_program: a pipeline of stages (Alpa §4.3). Each stage's forward, backward
//   and update task graphs (inter/stage_graph.h) are lowered with its intra-op plan; a value
//   is held between instructions in one layout on its stage's mesh: its planned layout,
//   partial sums included (a gradient's partial sums are accumulated and resolved once, in the
//   update), except values that leave the stage, which are whole. Transfers between meshes are
//   cross-mesh plans (sharding/cross_mesh.h), optionally receiving more finely split and
//   all-gathering on the destination (local all-gather, §4.5). The instruction lists come from
//   stepping the schedule (schedule.h) symbolically; FREE follows every value's last reader.
// - Interleaved (several stages per mesh): stages on the same placed mesh — stage c on the mesh
//   of stage c mod S — become ONE program stage, so the runtime and the simulator, which run a
//   list per mesh, need nothing new: its values and tasks are those of its stages side by side
//   (tasks "forward.c", "backward.c", ... for stage c), its list interleaves theirs in the
//   schedule's order, and a value one stage sends to another of the same mesh is no transfer
//   but a local task "move.<value>.<from>><to>" (an all-gather or slice where the two stages
//   hold it in different layouts, a copy otherwise), run where the send would be.
//
// Not a planner: the stages, meshes and per-stage plans are inputs.
#pragma once

#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/inter/stage_graph.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/program/program.h"
#include "alpa/sharding/mesh.h"
#include "alpa/spmd/schedule.h"

namespace alpa {

// The program of `step_graph` on one placed mesh under `plan` (plan.mesh == mesh.shape).
Result<Program> build_mesh_program(const Graph& step_graph, const ShardingPlan& plan,
                                   const PlacedMesh& mesh);

struct PipelineBuildOptions {
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int micro_batches = 1;
  bool local_all_gather = true;  // cross-mesh: receive split finer, all-gather locally
};

// `step` is the training step of ONE micro-batch; stage_graphs, plans and meshes: one per stage
// of `split`. The meshes are disjoint and together cover devices [0, num_devices), except that
// with the interleaved schedule stage c runs on the same mesh as stage c mod S (S meshes,
// stages a multiple of S; options.schedule must then be interleaved, and micro-batches a
// multiple of S: check_schedule_sizes).
Result<Program> build_pipeline_program(const TrainStep& step, const PipelineSplit& split,
                                       const std::vector<StageGraph>& stage_graphs,
                                       const std::vector<ShardingPlan>& plans,
                                       const std::vector<PlacedMesh>& meshes,
                                       const PipelineBuildOptions& options);

// The step's parameters as a program lists them; inputs hold `micro_batches` micro-batches of
// the given graph's inputs along dim 0.
std::vector<StepParam> step_params(const Graph& step_graph, int micro_batches);

}  // namespace alpa
