// A pipeline plan chosen and checked by simulation — compile's plan phase for pipelines.
//
// The planner ranks plans by its stage-cost estimate (pipeline_timing); the simulator
// runs the program the runtime would run (accumulation, transfers, the schedule's real
// bubble). plan_pipeline_checked simulates the planner's plan and its best plans for the other
// micro-batch counts it tried (at most `max_candidates`), and — in the whole plan space, on
// several devices — its best one-stage plan (auto-sharding alone) and its best plan of
// one-device stages (pipelining alone), corners of the same space its estimate may mis-rank,
// and keeps the fastest that fits: the same judge the baselines (baseline.h) face. The
// candidates are simulated side by side (options.threads, 0: the cores, at most 4); the
// choice does not depend on the order they finish in (ties go to the earlier candidate).
//
// The planner's memory model (the intra-op ILP's liveness over the stage graph, plus the
// accumulators and the 1F1B stash) does not see what lowering adds: gathered copies of split
// weights, collective buffers, layout changes. plan_pipeline_checked plans, materializes,
// lowers and simulates the plan's step; while a device's simulated peak exceeds its memory,
// it plans again with the planner's memory lowered in proportion to the excess (at most
// `max_rounds` plans), so a plan it returns fits as the simulator — and the runtime it
// mirrors — counts memory. When the planner's favourite overflows but a slower candidate
// fits, the favourite's micro-batch count is planned once more for memory lowered the same
// way, and that plan wins if it fits and is faster.
#pragma once

#include <vector>

#include "alpa/inter/stage_planner.h"
#include "alpa/models/registry.h"
#include "alpa/program/program.h"
#include "alpa/sim/simulator.h"
#include "alpa/spmd/schedule.h"

namespace alpa {

// The program of a materialized pipeline (spmd/build_program.h), with the step's parameters,
// micro-batches and schedule.
Result<Program> pipeline_program(const TrainStep& step, const MaterializedPipeline& pipeline,
                                 ScheduleKind schedule, int micro_batches);

struct SimulatedCandidate {
  int micro_batches = 0;
  int stages = 0;
  double step_time_s = 0;
  double peak_memory_bytes = 0;
};

struct CheckedPipelinePlan {
  TrainStep step;  // one micro-batch
  PipelinePlan plan;
  MaterializedPipeline pipeline;
  Program program;
  SimReport sim;
  double peak_memory_bytes = 0;  // simulated, the largest over devices
  double planner_memory = 0;     // the memory per device the last plan was made for
  int rounds = 1;                // plans made
  double plan_s = 0;             // all rounds' planning (the last round's statistics in plan)
  std::vector<SimulatedCandidate> simulated;  // every candidate simulated, in order
};

Result<CheckedPipelinePlan> plan_pipeline_checked(const ModelSpec& model,
                                                  const OptimizerOptions& optimizer,
                                                  const Cluster& cluster,
                                                  const PipelinePlannerOptions& options,
                                                  ScheduleKind schedule, int max_rounds = 3,
                                                  int max_candidates = 4);

}  // namespace alpa
