// The memory of a planned pipeline stage per device, in the parts of the shared memory model
// (cost/memory.h), from its stage graph and intra-op plan — counted the way the simulator
// (sim/simulator.h) counts the program the stage lowers to:
//   owned      the weights and optimizer state the stage holds (sg.owned), in their layouts;
//   per_step   what is held once per step besides: gradient accumulators (forward/backward
//              values read by the update) and values received once per step that the forward
//              or backward reads (a tied weight); those only the update reads (a tied weight's
//              gradient from a later stage, AdamW's bias corrections) arrive after the last
//              backward and count at the update's moment alone (update_received);
//   stash      per micro-batch in flight: forward values the backward reads, data inputs and
//              values the forward receives every micro-batch;
//   received   what the backward receives every micro-batch (a later stage's cotangents):
//              it arrives just before that micro-batch's backward and is freed after it, so
//              only the micro-batch in its backward holds it, not every one in flight;
//   working    each task's own intermediates (forward, backward, then the once-per-step tasks
//              apart): a task's value lives from its definition to its last use inside the
//              task, or to the task's end when another task, another stage or the step's
//              result reads it; parameters and other tasks' values are not the task's own
//              (they are owned or stored). Fused values (ir/analysis.h) hold no memory.
// A forward or backward task runs with every in-flight micro-batch's stash stored; the update
// runs after the last backward, when only owned and per-step values remain.
//
// Not the planner's ILP: the ILP's memory rows bound its liveness over the whole stage graph;
// this is what the stage holds when it runs as separate task programs.
#pragma once

#include <algorithm>
#include <vector>

#include "alpa/cost/memory.h"
#include "alpa/inter/stage_graph.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/sharding/sharding_spec.h"

namespace alpa {

struct StageMemoryParts {
  double owned = 0, per_step = 0, accumulators = 0;  // accumulators: part of per_step
  double stash = 0;
  double received = 0;         // beside the backward of one micro-batch
  double working = 0;          // the larger of the forward's and the backward's (+ received)
  double forward_working = 0;  // the forward's, less the stash it stores (working's other side)
  double update_working = 0;   // the once-per-step tasks'
  double update_received = 0;  // received once per step for the once-per-step tasks alone
  // Of per_step, what is still held when the once-per-step tasks run: the values they read
  // (a tied weight the forward reads, an accumulator sent to another stage, are freed by then).
  double update_held = 0;
  // The peak with `in_flight` micro-batches' stashes held (at least 1).
  double peak(int in_flight) const {
    return std::max(owned + per_step + in_flight * stash + working,
                    owned + update_held + update_received + update_working);
  }
  // The peak's parts (cost/memory.h): the forward/backward moment or the update's.
  MemoryBreakdown breakdown(int in_flight) const;
};

// The values a stage adds into gradient accumulators every micro-batch: computed outside the
// update and read by it, or sent once per step as their mean (sent_accumulated).
std::vector<char> accumulated_values(const StageGraph& sg);

// `plan`: the stage's intra-op plan (strategy < 0: a free node, not held; a value read in
// another layout than its own is copied for its readers, a buffer of the reading task).
// `micro_batches` (0: several): with one, an accumulator is first written by the ACC after the
// only backward, so the forward and backward run without any (they count at the update).
StageMemoryParts stage_memory_parts(const StageGraph& sg, const ShardingPlan& plan,
                                    int micro_batches = 0);

}  // namespace alpa
