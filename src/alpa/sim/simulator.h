// Simulator: a program's training step executed in simulated time under the cost model, the
// way the runtime would run it on the cluster the plan was made for.
//
// Every stage's devices run the stage's instruction list (program/program.h) in lockstep, so
// one clock per stage stands for them. RUN k m takes the task program's time: per node of the
// per-device program, the roofline time of its local work (cost/compute.h, as the ILP costs
// it) or, for a collective, its alpha-beta time on the stage's mesh (cost/collective.h). SEND
// posts a transfer that arrives after its predicted cross-mesh time (and costs the sender
// nothing: sends are buffered); RECV waits for the arrival; ACC costs its bytes through device
// memory. Memory is tracked per device: owned weights and state, the store of per-micro-batch
// values (added by RUN/RECV/ACC, dropped by FREE) and the running task's own intermediates
// (liveness peak of its program). Instructions of different stages interleave by their
// dependencies, so the bubble of GPipe, 1F1B and interleaved 1F1B comes out of the schedule
// itself (an interleaved program has one stage per mesh, its v model stages inside it).
//
// Outputs: step time, busy time and bubble fraction per stage, peak memory per device, and
// one trace event per instruction of each stage's first device (support/trace.h).
//
// Not a network simulator: links are the cost model's alpha-beta per mesh axis, with no
// contention between stages; compute has no efficiency tables unless the cluster has them.
// Not a runtime and not a planner: it reads a Program and the cost model, nothing else.
#pragma once

#include <vector>

#include "alpa/cluster/cluster.h"
#include "alpa/cost/memory.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/ir/graph.h"
#include "alpa/program/program.h"
#include "alpa/support/status.h"
#include "alpa/support/trace.h"

namespace alpa {

// The cost-model time of one per-device program on `mesh`; its communication part in *comm.
double program_time(const Graph& program, const MeshLinks& mesh, const DeviceSpec& device,
                    double* communication_s = nullptr);

struct SimStage {
  int first_device = 0;
  int devices = 1;
  double busy_s = 0;             // compute and communication on this stage's devices
  double compute_s = 0;          // of which computing
  double communication_s = 0;    // of which collectives inside the stage
  double owned_bytes = 0;        // weights and optimizer state per device
  double peak_memory_bytes = 0;  // per device: owned + store + the running task's own
  double peak_store_bytes = 0;
  int peak_live_micro_batches = 0;
  // The parts of peak_memory_bytes (cost/memory.h) at the moment of the peak: owned, the
  // per-step store (accumulators), the per-micro-batch store over the micro-batches it holds,
  // and the running task's intermediates.
  MemoryBreakdown peak_breakdown;
};

struct SimReport {
  double step_time_s = 0;
  double bubble_fraction = 0;  // 1 - busy / (devices x step time), over all devices
  std::vector<SimStage> stages;
  std::vector<TraceEvent> events;  // each stage's first device
  int64_t instructions = 0;
  // The largest peak over the stages' devices.
  double peak_memory_bytes() const {
    double peak = 0;
    for (const SimStage& s : stages) peak = peak > s.peak_memory_bytes ? peak : s.peak_memory_bytes;
    return peak;
  }
};

// Simulates one training step of `program` on `cluster` (at least program.num_devices devices;
// world rank = device id).
Result<SimReport> simulate(const Program& program, const Cluster& cluster);

}  // namespace alpa
