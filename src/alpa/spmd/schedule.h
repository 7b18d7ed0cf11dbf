// Pipeline schedules: the order in which each mesh runs the forward and backward passes of
// the micro-batches through its stages (Alpa §4.2; Megatron-LM's interleaved schedule).
//
// A pipeline of S meshes runs S x v stages ("chunks"): stage c on mesh c mod S, so mesh i holds
// its v chunks i, i + S, ..., i + (v - 1) S (v = 1 but for the interleaved schedule). A step of
// the order names the mesh's chunk j (0..v-1), that is, stage j S + i.
//
// - GPipe: every forward (micro-batches in order), then every backward (in order). v = 1.
// - 1F1B (PipeDream-Flush, Alpa's default): stage i of S first runs min(S - 1 - i, B) warm-up
//   forwards, then alternates one forward and one backward, then the remaining backwards. Stage
//   i then holds at most S - i micro-batches' activations; GPipe holds all B. v = 1.
// - Interleaved 1F1B (Megatron-LM, Narayanan et al. 2021 §2.2), v >= 2 chunks per mesh and B a
//   multiple of S: 1F1B over the mesh's v B (chunk, micro-batch) passes. The k-th forward is
//   micro-batch (k / (S v)) S + k mod S of chunk (k mod S v) / S — groups of S micro-batches
//   go through chunk 0, then the same S through chunk 1, ...; the k-th backward is the same
//   micro-batch of chunk v - 1 - (k mod S v) / S (the chunks in reverse). Mesh i first runs
//   W_i = min(2 (S - 1 - i) + (v - 1) S, v B) warm-up forwards, then one forward and one
//   backward at a time, then the remaining backwards. Megatron starts every pass as warm-up
//   when B == S; here the general rule holds for B == S too (sends never block, and the
//   orders are checked to step to the end, tests/spmd/schedule_test.cc).
// Latency in passes of one chunk (a stage's time / v): 1F1B and GPipe take 2 (B + S - 1) stage
// passes, interleaved 2 (v B + S - 1) chunk passes: the bubble shrinks from (S - 1) to
// (S - 1) / v stage times, for v times the transfers between meshes. Interleaved holds up to
// W_i + 1 chunk activations in flight on mesh i (mesh 0: about (1 + (S - 1) / (S v)) S stage
// activations' worth, slightly more than 1F1B's S).
//
// The update (once per step, after every backward) is not part of the order; the instruction
// emitter appends it. Not the instruction lists (program.h) and not a runtime.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/inter/stage_graph.h"
#include "alpa/support/status.h"

namespace alpa {

enum class ScheduleKind : uint8_t { kGPipe, k1F1B, kInterleaved1F1B };
std::string_view schedule_name(ScheduleKind k);  // "gpipe", "1f1b", "interleaved-1f1b"
// Also "interleaved" for kInterleaved1F1B.
Result<ScheduleKind> parse_schedule(std::string_view name);

// The virtual stages (chunks per mesh) of the interleaved schedule when none are given.
inline constexpr int kDefaultVirtualStages = 2;

// User errors for a schedule of `meshes` meshes, `micro_batches` micro-batches and
// `virtual_stages` chunks per mesh: GPipe and 1F1B run one stage per mesh; interleaved needs
// v >= 2 and micro-batches a multiple of the meshes (as Megatron-LM requires).
Status check_schedule_sizes(ScheduleKind kind, int meshes, int micro_batches, int virtual_stages);

struct ScheduleStep {
  TaskKind task = TaskKind::kForward;  // kForward or kBackward
  int micro_batch = 0;
  int chunk = 0;  // the mesh's chunk (0..v-1): stage chunk * meshes + mesh
  friend bool operator==(const ScheduleStep&, const ScheduleStep&) = default;
};

// Per mesh (0..meshes-1): its forward and backward passes in order. The sizes must pass
// check_schedule_sizes (CHECK).
std::vector<std::vector<ScheduleStep>> pipeline_schedule(ScheduleKind kind, int meshes,
                                                         int micro_batches, int virtual_stages = 1);

// Forward passes run before the first backward on mesh `mesh` (the warm-up).
int warmup_passes(ScheduleKind kind, int meshes, int mesh, int micro_batches,
                  int virtual_stages = 1);

// Clock ticks: the orders stepped together, each mesh running its next pass as soon as its
// inputs exist (forward of micro-batch m on stage g after stage g-1's; backward after stage
// g+1's backward and its own forward; stage g = chunk * meshes + mesh). ticks[t][i] is what
// mesh i runs at tick t; one tick is one chunk's pass. CHECKs that the orders do not deadlock.
std::vector<std::vector<std::optional<ScheduleStep>>> schedule_ticks(
    const std::vector<std::vector<ScheduleStep>>& order);

// "F0 F1 B0 ..." per mesh, one line each (for explanations and tests); with several chunks per
// mesh each pass is "F<micro-batch>/<chunk>", e.g. "F0/1".
std::string schedule_to_string(const std::vector<std::vector<ScheduleStep>>& order);

}  // namespace alpa
