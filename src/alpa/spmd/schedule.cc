#include "alpa/spmd/schedule.h"

#include <algorithm>

#include "alpa/support/check.h"

namespace alpa {

std::string_view schedule_name(ScheduleKind k) {
  switch (k) {
    case ScheduleKind::kGPipe: return "gpipe";
    case ScheduleKind::k1F1B: return "1f1b";
    case ScheduleKind::kInterleaved1F1B: return "interleaved-1f1b";
  }
  return "?";
}

Result<ScheduleKind> parse_schedule(std::string_view name) {
  if (name == "gpipe") return ScheduleKind::kGPipe;
  if (name == "1f1b") return ScheduleKind::k1F1B;
  if (name == "interleaved" || name == "interleaved-1f1b") return ScheduleKind::kInterleaved1F1B;
  return invalid_argument(cat("unknown pipeline schedule '", name, "'"),
                          "use 1f1b, gpipe or interleaved (interleaved-1f1b)");
}

Status check_schedule_sizes(ScheduleKind kind, int meshes, int micro_batches, int virtual_stages) {
  if (meshes < 1 || micro_batches < 1)
    return invalid_argument(cat("a pipeline schedule needs meshes and micro-batches >= 1, got ",
                                meshes, " and ", micro_batches));
  if (kind != ScheduleKind::kInterleaved1F1B) {
    if (virtual_stages != 1)
      return invalid_argument(cat(schedule_name(kind), " runs one stage per mesh, not ",
                                  virtual_stages, " virtual stages"),
                              "use --schedule interleaved for several stages per mesh");
    return ok_status();
  }
  if (virtual_stages < 2)
    return invalid_argument(
        cat("the interleaved schedule needs at least 2 virtual stages per mesh, got ",
            virtual_stages),
        "give --virtual-stages 2 or more (one stage per mesh is --schedule 1f1b)");
  if (micro_batches % meshes != 0)
    return invalid_argument(
        cat("the interleaved schedule needs the micro-batches to be a multiple of the ", meshes,
            " pipeline meshes (as Megatron-LM requires), got ", micro_batches),
        cat("use --micro-batches ", meshes * std::max(1, micro_batches / meshes),
            " (or another multiple of ", meshes, "), or --schedule 1f1b"));
  return ok_status();
}

int warmup_passes(ScheduleKind kind, int meshes, int mesh, int micro_batches, int virtual_stages) {
  switch (kind) {
    case ScheduleKind::kGPipe: return micro_batches;
    case ScheduleKind::k1F1B: return std::min(meshes - 1 - mesh, micro_batches);
    case ScheduleKind::kInterleaved1F1B:
      return std::min(2 * (meshes - 1 - mesh) + (virtual_stages - 1) * meshes,
                      virtual_stages * micro_batches);
  }
  return 0;
}

std::vector<std::vector<ScheduleStep>> pipeline_schedule(ScheduleKind kind, int meshes,
                                                         int micro_batches, int virtual_stages) {
  const Status sizes = check_schedule_sizes(kind, meshes, micro_batches, virtual_stages);
  ALPA_CHECK(sizes.ok()) << "pipeline_schedule: " << sizes.to_string();
  const int S = meshes, B = micro_batches, v = virtual_stages;
  std::vector<std::vector<ScheduleStep>> order(static_cast<size_t>(S));
  // The k-th forward or backward pass of a mesh: which micro-batch through which chunk. With
  // one chunk: micro-batch k.
  auto pass = [&](TaskKind task, int k) {
    const int group = k / (S * v), in_group = k % (S * v);
    int chunk = in_group / S;
    if (task == TaskKind::kBackward) chunk = v - 1 - chunk;
    return ScheduleStep{task, group * S + in_group % S, chunk};
  };
  for (int i = 0; i < S; ++i) {
    std::vector<ScheduleStep>& o = order[static_cast<size_t>(i)];
    const int total = v * B;
    const int warmup = warmup_passes(kind, S, i, B, v);
    int f = 0, b = 0;
    if (v == 1) {  // GPipe and 1F1B: passes in micro-batch order
      for (; f < warmup; ++f) o.push_back({TaskKind::kForward, f, 0});
      while (f < total) {
        o.push_back({TaskKind::kForward, f++, 0});
        o.push_back({TaskKind::kBackward, b++, 0});
      }
      while (b < total) o.push_back({TaskKind::kBackward, b++, 0});
      continue;
    }
    for (; f < warmup; ++f) o.push_back(pass(TaskKind::kForward, f));
    while (f < total) {
      o.push_back(pass(TaskKind::kForward, f++));
      o.push_back(pass(TaskKind::kBackward, b++));
    }
    while (b < total) o.push_back(pass(TaskKind::kBackward, b++));
  }
  return order;
}

std::vector<std::vector<std::optional<ScheduleStep>>> schedule_ticks(
    const std::vector<std::vector<ScheduleStep>>& order) {
  const int S = static_cast<int>(order.size());
  int micro_batches = 0, v = 1;
  size_t steps = 0;
  for (const auto& o : order) {
    steps += o.size();
    for (const ScheduleStep& st : o) {
      micro_batches = std::max(micro_batches, st.micro_batch + 1);
      v = std::max(v, st.chunk + 1);
    }
  }
  const int G = S * v;  // stages
  // done_f[g][m] / done_b[g][m]: tick at which stage g ran the pass (-1: not yet).
  std::vector<std::vector<int>> done_f(static_cast<size_t>(G), std::vector<int>(micro_batches, -1));
  std::vector<std::vector<int>> done_b = done_f;
  auto done_before = [](int at, int t) { return at >= 0 && at < t; };
  std::vector<size_t> next(static_cast<size_t>(S), 0);
  std::vector<std::vector<std::optional<ScheduleStep>>> ticks;
  for (int t = 0; steps > 0; ++t) {
    std::vector<std::optional<ScheduleStep>> row(static_cast<size_t>(S));
    bool ran = false;
    for (int s = 0; s < S; ++s) {
      if (next[s] >= order[s].size()) continue;
      const ScheduleStep st = order[s][next[s]];
      const int m = st.micro_batch, g = st.chunk * S + s;
      const bool ready =
          st.task == TaskKind::kForward
              ? g == 0 || done_before(done_f[g - 1][m], t)
              : done_before(done_f[g][m], t) && (g == G - 1 || done_before(done_b[g + 1][m], t));
      if (ready) {
        row[s] = st;
        ran = true;
      }
    }
    ALPA_CHECK(ran) << "schedule_ticks: the orders deadlock at tick " << t;
    for (int s = 0; s < S; ++s) {
      if (!row[s]) continue;
      const int g = row[s]->chunk * S + s;
      (row[s]->task == TaskKind::kForward ? done_f : done_b)[g][row[s]->micro_batch] = t;
      ++next[s];
      --steps;
    }
    ticks.push_back(std::move(row));
  }
  return ticks;
}

std::string schedule_to_string(const std::vector<std::vector<ScheduleStep>>& order) {
  bool chunks = false;
  for (const auto& o : order)
    for (const ScheduleStep& st : o) chunks = chunks || st.chunk > 0;
  std::string out;
  for (size_t s = 0; s < order.size(); ++s) {
    out += cat(chunks ? "mesh " : "stage ", s, ":");
    for (const ScheduleStep& st : order[s])
      out += cat(" ", st.task == TaskKind::kForward ? "F" : "B", st.micro_batch,
                 chunks ? cat("/", st.chunk) : std::string());
    out += "\n";
  }
  return out;
}

}  // namespace alpa
