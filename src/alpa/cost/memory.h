// The memory model of a pipeline stage's device, shared by the planner (inter/stage_planner.h)
// and the simulator (sim/simulator.h), so both report the same parts and add them the same way.
//
// One device of a stage holds, at its peak:
//   weights      the weights and optimizer state it owns (in their layouts), for the whole step;
//   accumulators the gradients added up over the micro-batches (once per step);
//   stash        per micro-batch in flight, the forward values its backward reads, the values
//                received from other stages and the gradients not yet accumulated: under 1F1B
//                a stage followed by s stages keeps s + 1 micro-batches in flight, so
//                `in_flight` x `stash_per_micro_batch`;
//   working      the running task's own intermediates (its liveness peak), gathered copies of
//                split weights and collective buffers included (the recomputed forward of a
//                rematerialized layer too).
// peak = weights + accumulators + in_flight x stash_per_micro_batch + working.
//
// The planner fills it from a stage's intra-op plan (its liveness over the stage graph of one
// micro-batch); the simulator fills it at the moment of each device's peak (the store of
// per-micro-batch values it tracks instruction by instruction, and the liveness peak of the
// task's lowered per-device program).
#pragma once

#include <string>

namespace alpa {

struct MemoryBreakdown {
  double weights = 0;       // weights and optimizer state (owned)
  double accumulators = 0;  // gradient accumulators
  double stash_per_micro_batch = 0;
  int in_flight = 1;   // micro-batches whose stash is held at the peak
  double working = 0;  // the running task's intermediates
  double total() const {
    return weights + accumulators + in_flight * stash_per_micro_batch + working;
  }
};

// Micro-batches a 1F1B stage followed by `successors` stages keeps in flight (at least 1).
inline int in_flight_1f1b(int successors) {
  return successors < 0 ? 1 : successors + 1;
}

// "12.0 GB = weights 4.1 + accumulators 1.3 + 3 x stash 1.9 + working 0.9" (GB, one decimal).
std::string to_string(const MemoryBreakdown& m);

}  // namespace alpa
