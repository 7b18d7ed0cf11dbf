// Trace: timelines in the Chrome trace-event format (JSON), which chrome://tracing and
// Perfetto (ui.perfetto.dev) open. The simulator writes one from its predicted schedule and the
// pipeline runtime one from measured timestamps, in the same form, so the two can be compared
// side by side: one process per device ("device 3"), one complete event ("ph": "X") per
// instruction, named "forward mb 2" etc., with the stage and micro-batch as arguments.
//
// Not a profiler: callers record the events; this only holds and writes them.
#pragma once

#include <string>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

struct TraceEvent {
  std::string name;      // "forward mb 2", "send t3 mb 2", "update"
  std::string category;  // "compute", "communication", "memory"
  int device = 0;        // shown as process "device <n>"
  int lane = 0;          // thread within the device (0: its instruction stream)
  double start_s = 0;    // from the start of the step
  double duration_s = 0;
  int stage = -1;
  int micro_batch = -1;
};

// The events as a Chrome trace JSON document; `title` names the trace in its metadata.
std::string chrome_trace_json(const std::vector<TraceEvent>& events, const std::string& title);
// Writes chrome_trace_json to `path` (kIoError naming the path on failure).
Status write_chrome_trace(const std::string& path, const std::vector<TraceEvent>& events,
                          const std::string& title);

}  // namespace alpa
