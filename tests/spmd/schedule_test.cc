// Schedule invariants (pipeline/schedule.h): every micro-batch's forward and backward run once
// on every stage, the forward before the backward; the orders can be stepped together without
// deadlock; 1F1B keeps at most (stages - i) micro-batches in flight on stage i (0-based),
// GPipe keeps all of them.
#include <gtest/gtest.h>

#include <algorithm>

#include "alpa/spmd/schedule.h"

namespace alpa {
namespace {

// Most micro-batches whose forward has run and backward has not, on one stage.
int max_in_flight(const std::vector<ScheduleStep>& order) {
  int live = 0, peak = 0;
  for (const ScheduleStep& s : order) {
    live += s.task == TaskKind::kForward ? 1 : -1;
    peak = std::max(peak, live);
  }
  return peak;
}

TEST(Schedule, EveryStepOnceForwardBeforeBackward) {
  for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B})
    for (int S = 1; S <= 5; ++S)
      for (int B = 1; B <= 8; ++B) {
        const auto order = pipeline_schedule(kind, S, B);
        ASSERT_EQ(order.size(), static_cast<size_t>(S));
        for (int s = 0; s < S; ++s) {
          ASSERT_EQ(order[s].size(), static_cast<size_t>(2 * B));
          for (int m = 0; m < B; ++m) {
            auto f =
                std::find(order[s].begin(), order[s].end(), ScheduleStep{TaskKind::kForward, m});
            auto b =
                std::find(order[s].begin(), order[s].end(), ScheduleStep{TaskKind::kBackward, m});
            ASSERT_NE(f, order[s].end());
            ASSERT_NE(b, order[s].end());
            EXPECT_LT(f - order[s].begin(), b - order[s].begin())
                << schedule_name(kind) << " S=" << S << " B=" << B << " stage " << s << " mb " << m;
          }
        }
      }
}

TEST(Schedule, OneFOneBBoundsInFlightMicroBatches) {
  for (int S = 1; S <= 5; ++S)
    for (int B = 1; B <= 8; ++B) {
      const auto f1b = pipeline_schedule(ScheduleKind::k1F1B, S, B);
      const auto gpipe = pipeline_schedule(ScheduleKind::kGPipe, S, B);
      for (int s = 0; s < S; ++s) {
        EXPECT_LE(max_in_flight(f1b[s]), S - s) << "S=" << S << " B=" << B << " stage " << s;
        EXPECT_EQ(max_in_flight(f1b[s]), std::min(S - s, B));
        EXPECT_EQ(max_in_flight(gpipe[s]), B);
      }
    }
}

TEST(Schedule, TicksRespectDependenciesAndHaveTheSameLatency) {
  for (int S = 1; S <= 4; ++S)
    for (int B = 1; B <= 6; ++B) {
      size_t latency[2];
      int k = 0;
      for (ScheduleKind kind : {ScheduleKind::kGPipe, ScheduleKind::k1F1B}) {
        const auto ticks = schedule_ticks(pipeline_schedule(kind, S, B));
        // Forward of stage s at tick t needs stage s-1's forward at an earlier tick.
        std::vector<std::vector<int>> f(S, std::vector<int>(B, -1)), b = f;
        for (size_t t = 0; t < ticks.size(); ++t)
          for (int s = 0; s < S; ++s)
            if (ticks[t][s])
              (ticks[t][s]->task == TaskKind::kForward ? f : b)[s][ticks[t][s]->micro_batch] =
                  static_cast<int>(t);
        for (int s = 0; s < S; ++s)
          for (int m = 0; m < B; ++m) {
            ASSERT_GE(f[s][m], 0);
            ASSERT_GE(b[s][m], 0);
            if (s > 0) EXPECT_LT(f[s - 1][m], f[s][m]);
            if (s + 1 < S) EXPECT_LT(b[s + 1][m], b[s][m]);
            EXPECT_LT(f[s][m], b[s][m]);
          }
        latency[k++] = ticks.size();
      }
      EXPECT_EQ(latency[0], latency[1]) << "S=" << S << " B=" << B;
      EXPECT_EQ(latency[1], static_cast<size_t>(2 * (B + S - 1)));
    }
}

TEST(Schedule, NamesRoundTripAndUnknownIsAnError) {
  EXPECT_EQ(parse_schedule("1f1b").value(), ScheduleKind::k1F1B);
  EXPECT_EQ(parse_schedule("gpipe").value(), ScheduleKind::kGPipe);
  Result<ScheduleKind> bad = parse_schedule("pipedream");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().hint().find("1f1b"), std::string::npos);
  EXPECT_EQ(schedule_to_string(pipeline_schedule(ScheduleKind::k1F1B, 2, 2)),
            "stage 0: F0 F1 B0 B1\nstage 1: F0 B0 F1 B1\n");
}

}  // namespace
}  // namespace alpa
