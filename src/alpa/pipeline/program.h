// PipelineProgram: everything a pipeline-parallel training step runs, as data — per stage its
// mesh, its three per-device programs (forward, backward, update: SPMD-lowered task graphs),
// the cross-mesh transfers between stages, and one instruction list that every device of the
// stage executes in order (Alpa §4.3: emitted by stepping the schedule symbolically).
//
// Instructions (per stage; a device skips the parts of a SEND/RECV it takes no part in):
//   RECV t m   receive transfer t of micro-batch m (m = -1: once per step) into the store
//   RUN k m    run task k (forward / backward of micro-batch m, or the update) on the store
//   ACC v m    add micro-batch m's value v into its accumulator (the mean over micro-batches
//              is what the update reads or a stage sends)
//   SEND t m   send transfer t's value
//   FREE v m   drop value v of micro-batch m from the store (after its last reader)
// A value is held between instructions in one layout on its stage's mesh (`stored_spec`): its
// planned layout, partial sums included (a gradient's partial sums are accumulated and resolved
// once, in the update), except values that leave the stage, which are whole. Transfers move a
// value from its stored layout on one mesh to the receiving stage's layout (spmd/cross_mesh.h),
// optionally receiving it more finely split and all-gathering it on the destination mesh.
//
// Not a planner: the stages, meshes and per-stage plans are inputs.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/cluster/cluster.h"
#include "alpa/inter/stage_graph.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/pipeline/schedule.h"
#include "alpa/sharding/cross_mesh.h"
#include "alpa/spmd/lower.h"

namespace alpa {

enum class InstrKind : uint8_t { kRecv, kRun, kAccumulate, kSend, kFree };

struct Instruction {
  InstrKind kind = InstrKind::kRun;
  TaskKind task = TaskKind::kForward;  // kRun
  int micro_batch = -1;                // -1: once per step
  int transfer = -1;                   // kRecv / kSend: index into PipelineProgram::transfers
  ValueId value = kNoValue;            // kAccumulate / kFree: stage-graph value
  friend bool operator==(const Instruction&, const Instruction&) = default;
};
std::string to_string(const Instruction& in);
// The trace category of an instruction: "compute" (RUN), "communication" (SEND/RECV),
// "memory" (ACC/FREE). The simulator and the runner label their traces alike.
const char* instruction_category(const Instruction& in);

struct TaskProgram {
  TaskKind task = TaskKind::kForward;
  bool empty = true;                   // the stage has nothing to do in this task
  SpmdProgram spmd;                    // the per-device program
  std::vector<ValueId> param_source;   // per program parameter: its stage-graph value
  std::vector<ValueId> output_source;  // per program output: its stage-graph value
};

// Where a stage-graph value comes from, for the runtime.
enum class ValueOrigin : uint8_t {
  kOwned,     // a weight or state this stage holds across steps
  kInput,     // a data input (fed per micro-batch)
  kReceived,  // received from another stage
  kComputed,  // computed by one of the stage's tasks
};

struct PipelineStage {
  StageGraph graph;
  ShardingPlan plan;
  PlacedMesh placement;  // the stage's logical mesh on world ranks
  TaskProgram tasks[kNumTaskKinds];
  std::vector<ShardingSpec> stored_spec;  // per stage-graph value
  std::vector<ValueOrigin> origin;        // per stage-graph value
  std::vector<char> per_step;             // per value: held once per step (not per micro-batch)
  std::vector<char> accumulated;          // per value: its mean over micro-batches is kept
  std::vector<Instruction> instructions;
};

struct PipelineTransfer {
  StageTransfer split;            // from the split (step-graph value, stages, rate)
  ValueId from_value = kNoValue;  // stage-graph value on the sending stage
  ValueId to_value = kNoValue;    // stage-graph parameter on the receiving stage
  CrossMeshPlan plan;
  std::optional<SpmdProgram> restore;  // receive layout -> wanted layout on the destination
  double predicted_s = 0;              // one transfer (cross_mesh_seconds + restore)
};

struct PipelineProgram {
  int micro_batches = 1;
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int num_devices = 0;
  std::vector<PipelineStage> stages;
  std::vector<PipelineTransfer> transfers;
  // Per parameter of the step graph (its parameters() order): the stage holding it and its
  // stage-graph value (weights and state), or every stage reading it (data inputs).
  std::vector<std::vector<std::pair<int, ValueId>>> param_home;
};

struct PipelineBuildOptions {
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int micro_batches = 1;
  bool local_all_gather = true;      // cross-mesh: receive split finer, all-gather locally
  const Cluster* cluster = nullptr;  // for transfer time predictions (optional)
};

// Lowers each stage's task graphs with its plan, plans the transfers and emits the
// instruction lists. stage_graphs/plans/placements: one per stage of `split`; placements are
// disjoint and together cover ranks [0, num_devices).
Result<PipelineProgram> build_pipeline_program(const TrainStep& step, const PipelineSplit& split,
                                               std::vector<StageGraph> stage_graphs,
                                               std::vector<ShardingPlan> plans,
                                               const std::vector<PlacedMesh>& placements,
                                               const PipelineBuildOptions& options);

// The instruction list of one device (world rank): its stage's list without the transfers it
// takes no part in. Explanations and tests use it.
std::vector<Instruction> device_instructions(const PipelineProgram& p, int rank);

// The stage a world rank belongs to, or -1.
int stage_of_rank(const PipelineProgram& p, int rank);

// Stage s's list as text, one instruction per line.
std::string instructions_to_string(const PipelineProgram& p, int stage);

}  // namespace alpa
