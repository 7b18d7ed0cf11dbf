#include "alpa/spmd/schedule.h"

#include <algorithm>

#include "alpa/support/check.h"

namespace alpa {

std::string_view schedule_name(ScheduleKind k) {
  return k == ScheduleKind::kGPipe ? "gpipe" : "1f1b";
}

Result<ScheduleKind> parse_schedule(std::string_view name) {
  if (name == "gpipe") return ScheduleKind::kGPipe;
  if (name == "1f1b") return ScheduleKind::k1F1B;
  return invalid_argument(cat("unknown pipeline schedule '", name, "'"), "use 1f1b or gpipe");
}

std::vector<std::vector<ScheduleStep>> pipeline_schedule(ScheduleKind kind, int stages,
                                                         int micro_batches) {
  ALPA_CHECK(stages >= 1 && micro_batches >= 1) << "pipeline_schedule: bad sizes";
  std::vector<std::vector<ScheduleStep>> order(static_cast<size_t>(stages));
  for (int s = 0; s < stages; ++s) {
    std::vector<ScheduleStep>& o = order[static_cast<size_t>(s)];
    if (kind == ScheduleKind::kGPipe) {
      for (int m = 0; m < micro_batches; ++m) o.push_back({TaskKind::kForward, m});
      for (int m = 0; m < micro_batches; ++m) o.push_back({TaskKind::kBackward, m});
      continue;
    }
    const int warmup = std::min(stages - 1 - s, micro_batches);
    int f = 0, b = 0;
    for (; f < warmup; ++f) o.push_back({TaskKind::kForward, f});
    while (f < micro_batches) {
      o.push_back({TaskKind::kForward, f++});
      o.push_back({TaskKind::kBackward, b++});
    }
    while (b < micro_batches) o.push_back({TaskKind::kBackward, b++});
  }
  return order;
}

std::vector<std::vector<std::optional<ScheduleStep>>> schedule_ticks(
    const std::vector<std::vector<ScheduleStep>>& order) {
  const int stages = static_cast<int>(order.size());
  int micro_batches = 0;
  for (const auto& o : order)
    for (const ScheduleStep& st : o) micro_batches = std::max(micro_batches, st.micro_batch + 1);
  // done_f[s][m] / done_b[s][m]: tick after which the step finished (-1: not yet).
  std::vector<std::vector<int>> done_f(stages, std::vector<int>(micro_batches, -1));
  std::vector<std::vector<int>> done_b = done_f;
  std::vector<size_t> next(static_cast<size_t>(stages), 0);
  std::vector<std::vector<std::optional<ScheduleStep>>> ticks;
  for (int t = 0;; ++t) {
    bool any_left = false;
    std::vector<std::optional<ScheduleStep>> row(static_cast<size_t>(stages));
    for (int s = 0; s < stages; ++s) {
      if (next[s] >= order[s].size()) continue;
      any_left = true;
      const ScheduleStep st = order[s][next[s]];
      const int m = st.micro_batch;
      bool ready;
      if (st.task == TaskKind::kForward) {
        ready = s == 0 || (done_f[s - 1][m] >= 0 && done_f[s - 1][m] < t);
      } else {
        ready = done_f[s][m] >= 0 && done_f[s][m] < t &&
                (s == stages - 1 || (done_b[s + 1][m] >= 0 && done_b[s + 1][m] < t));
      }
      if (ready) row[s] = st;
    }
    if (!any_left) break;
    for (int s = 0; s < stages; ++s) {
      if (!row[s]) continue;
      (row[s]->task == TaskKind::kForward ? done_f : done_b)[s][row[s]->micro_batch] = t;
      ++next[s];
    }
    ticks.push_back(std::move(row));
    ALPA_CHECK(t < 4 * (micro_batches + stages) + 4) << "schedule_ticks: the orders deadlock";
  }
  return ticks;
}

std::string schedule_to_string(const std::vector<std::vector<ScheduleStep>>& order) {
  std::string out;
  for (size_t s = 0; s < order.size(); ++s) {
    out += cat("stage ", s, ":");
    for (const ScheduleStep& st : order[s])
      out += cat(" ", st.task == TaskKind::kForward ? "F" : "B", st.micro_batch);
    out += "\n";
  }
  return out;
}

}  // namespace alpa
