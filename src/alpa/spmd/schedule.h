// Pipeline schedules: the order in which each stage runs the forward and backward passes of
// the micro-batches (Alpa §4.2).
//
// - GPipe: every forward (micro-batches in order), then every backward (in order).
// - 1F1B (PipeDream-Flush, Alpa's default): stage i of S first runs min(S - 1 - i, B) warm-up
//   forwards, then alternates one forward and one backward, then the remaining backwards. Stage
//   i then holds at most S - i micro-batches' activations; GPipe holds all B.
// Both have the same latency, (B + S - 1) forward and backward slots per stage.
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

enum class ScheduleKind : uint8_t { kGPipe, k1F1B };
std::string_view schedule_name(ScheduleKind k);  // "gpipe", "1f1b"
Result<ScheduleKind> parse_schedule(std::string_view name);

struct ScheduleStep {
  TaskKind task = TaskKind::kForward;  // kForward or kBackward
  int micro_batch = 0;
  friend bool operator==(const ScheduleStep&, const ScheduleStep&) = default;
};

// Per stage (0..stages-1): its forward and backward runs in order. stages, micro_batches >= 1.
std::vector<std::vector<ScheduleStep>> pipeline_schedule(ScheduleKind kind, int stages,
                                                         int micro_batches);

// Clock ticks: the orders stepped together, each stage running its next step as soon as its
// inputs exist (forward of micro-batch m on stage s after stage s-1's; backward after stage
// s+1's backward and its own forward). ticks[t][s] is what stage s runs at tick t.
std::vector<std::vector<std::optional<ScheduleStep>>> schedule_ticks(
    const std::vector<std::vector<ScheduleStep>>& order);

// "F0 F1 B0 ..." per stage, one line each (for explanations and tests).
std::string schedule_to_string(const std::vector<std::vector<ScheduleStep>>& order);

}  // namespace alpa
