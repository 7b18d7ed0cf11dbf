// Program: what compile emits and every backend runs — the executable form of a plan, with no
// planner types inside.
//
// A program is a list of stages, each on its own placed mesh of devices (world ranks): one
// stage is one device or one mesh; several are a pipeline. A stage has
//   - values: the tensors it holds between instructions — weights and optimizer state it owns,
//     data inputs, values received from other stages, values its tasks compute — each with its
//     whole type (one micro-batch's for per-micro-batch values) and the layout it is held in on
//     the stage's mesh (sharding/sharding_spec.h), so every device knows its block's shape;
//   - tasks: per-device programs (graphs with local shapes and collectives over the stage's
//     mesh axes), each reading and writing stage values;
//   - one instruction list that every device of the stage executes in order:
//       RECV t m   receive transfer t of micro-batch m (m = -1: once per step)
//       RUN k m    run task k on micro-batch m (its data inputs are rows m of the step's input)
//       ACC v m    add micro-batch m's value v into its per-step accumulator; after the last
//                  micro-batch the accumulator holds the mean
//       SEND t m   send transfer t's value
//       FREE v m   drop value v of micro-batch m (m = -1: the per-step copy)
// Transfers move a value from one stage's mesh to another's: a cross-mesh plan
// (sharding/cross_mesh.h) from the sender's layout to a receive layout, and optionally a
// restoring program on the destination (all-gathers into the receiver's layout).
//
// Values live in a store keyed by (value, micro-batch): a per-step value (owned weights and
// state, update values, accumulators, values received once per step) under micro-batch -1.
// An owned value is loaded before the first step and updated in place by the task output that
// aliases its program parameter; it is never freed.
//
// Invariants (verify.h checks them): every index is in range; every task's parameters and
// outputs have exactly the local types their values' layouts give on the stage's mesh; every
// RECV has its SEND; every stored value is written before it is read and freed after its last
// read; the stages' meshes are disjoint and cover devices [0, num_devices).
//
// The text form (io.h) is JSON, versioned ("alpa-program/1"), and round-trips exactly.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/attrs.h"
#include "alpa/ir/graph.h"
#include "alpa/sharding/cross_mesh.h"
#include "alpa/sharding/mesh.h"
#include "alpa/sharding/sharding_spec.h"

namespace alpa {

// A parameter of the training step the program runs, in the step graph's order: what a driver
// loads (weights, optimizer state) and feeds (data inputs).
struct StepParam {
  std::string name;
  TensorType type;  // whole; a data input holds every micro-batch along dim 0
  ParameterAttrs attrs;

  friend bool operator==(const StepParam&, const StepParam&) = default;
};
inline bool is_input(const StepParam& p) {
  return p.attrs.role == ParamRole::kInput;
}

enum class ValueKind : uint8_t {
  kOwned,     // a weight or state the stage holds across steps (param: its StepParam)
  kInput,     // a data input, fed per micro-batch (param: its StepParam)
  kReceived,  // received from another stage
  kComputed,  // written by one of the stage's tasks or an ACC
};
std::string_view value_kind_name(ValueKind k);  // "owned", "input", "received", "computed"

struct StageValue {
  std::string name;     // for messages and traces
  TensorType type;      // whole (a per-micro-batch value: one micro-batch's)
  ShardingSpec layout;  // how the stage's mesh holds it (canonical for the mesh)
  ValueKind kind = ValueKind::kComputed;
  int param = -1;            // kOwned, kInput: index into Program::params
  bool per_step = false;     // held once per step (micro-batch -1), not per micro-batch
  bool accumulated = false;  // ACC sums its micro-batches into the per-step mean

  friend bool operator==(const StageValue&, const StageValue&) = default;
};

struct Task {
  std::string name;          // "forward", "backward", "update", "step", ...; unique in its stage
  Graph program;             // per-device: local shapes, collectives over the stage's mesh
  std::vector<int> inputs;   // per program parameter: the stage value it reads
  std::vector<int> outputs;  // per program output: the stage value it writes (an output that
                             // aliases a parameter writes the owned value that parameter reads)

  friend bool operator==(const Task&, const Task&) = default;
};

enum class InstrKind : uint8_t { kRecv, kRun, kAccumulate, kSend, kFree };

struct Instruction {
  InstrKind kind = InstrKind::kRun;
  int micro_batch = -1;  // -1: once per step
  int task = -1;         // kRun
  int transfer = -1;     // kRecv, kSend
  int value = -1;        // kAccumulate, kFree

  friend bool operator==(const Instruction&, const Instruction&) = default;
};

struct Stage {
  PlacedMesh mesh;
  std::vector<StageValue> values;
  std::vector<Task> tasks;
  std::vector<Instruction> instructions;
  int loss = -1;  // the per-step value holding the step's loss, if this stage computes it

  friend bool operator==(const Stage&, const Stage&) = default;
};

struct Transfer {
  int from_stage = 0, from_value = -1;
  int to_stage = 0, to_value = -1;
  // From the sender's layout on its mesh to plan.receive_spec on the receiver's mesh.
  CrossMeshPlan plan;
  // On the receiver's mesh: plan.receive_spec -> the receiving value's layout (all-gathers);
  // absent when they are the same.
  std::optional<Graph> restore;

  friend bool operator==(const Transfer&, const Transfer&) = default;
};

// The most devices one program spans (sharding/mesh.h).
inline constexpr int kMaxProgramDevices = static_cast<int>(kMaxDevices);

struct Program {
  std::string model;  // what it was compiled from (informational)
  // How to rebuild the model it was compiled from (the front end's flags, key -> value), so a
  // driver can make its data and check it against the program; opaque here.
  std::map<std::string, std::string> source;
  std::string step_fingerprint;  // the training graph's fingerprint (plan/plan.h)
  int num_devices = 1;
  int micro_batches = 1;          // micro-batches the instruction lists run per step
  std::string schedule = "none";  // "1f1b", "gpipe", "interleaved-1f1b" or "none" (informational)
  // Pipeline stages per stage of the program (interleaved: each program stage is one mesh
  // running this many model chunks, its tasks named "forward.c" for chunk c and "move..."
  // for values moved between chunks of the mesh); 1 otherwise (informational).
  int virtual_stages = 1;
  double predicted_step_time_s = 0;  // informational
  std::vector<StepParam> params;
  std::vector<Stage> stages;
  std::vector<Transfer> transfers;

  friend bool operator==(const Program&, const Program&) = default;
};

// "RUN forward mb0", "RECV t2 step", "ACC v7 mb1" (task names from the stage).
std::string to_string(const Stage& stage, const Instruction& in);
// The trace category: "compute" (RUN), "communication" (SEND/RECV), "memory" (ACC/FREE). The
// simulator and the runtime label their traces alike.
const char* instruction_category(const Instruction& in);
// The stage a device belongs to, or -1.
int stage_of_device(const Program& p, int device);
// A device's list: its stage's list without the transfers it takes no part in.
std::vector<Instruction> device_instructions(const Program& p, int device);
// Stage s's list, one instruction per line.
std::string instructions_to_string(const Program& p, int stage);
// Communicating ops in every task program (collectives per step, for reports).
int64_t count_collectives(const Program& p);
// Whether value `a` of stage `sa` and value `b` of stage `sb` (of two programs) are owned values
// held alike: the same name, type and layout on the same placed mesh, so every device holds the
// same block of both (two programs of one model that may share their blocks).
bool held_alike(const Stage& sa, const StageValue& a, const Stage& sb, const StageValue& b);

}  // namespace alpa
