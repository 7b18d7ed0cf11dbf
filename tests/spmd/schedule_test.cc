// Schedule invariants (spmd/schedule.h): every micro-batch's forward and backward run once
// on every stage, the forward before the backward; the orders can be stepped together without
// deadlock; 1F1B keeps at most (stages - i) micro-batches in flight on stage i (0-based),
// GPipe keeps all of them. Interleaved 1F1B (v stages per mesh): every (stage, micro-batch)
// pass once on its mesh, Megatron-LM's warm-up and order, chunk g's forward after chunk g-1's
// and the backwards in reverse, at most warm-up + 1 passes in flight, and a latency of
// 2 (v B + S - 1) chunk passes against 1F1B's 2 (B + S - 1) stage passes.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

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

// Megatron-LM's interleaved schedule, by its own formulas
// (forward_backward_pipelining_with_interleaving): warm-up (S - rank - 1) * 2 + (v - 1) * S
// capped at v B; the k-th pass takes micro-batch (k / (S v)) S + k mod S through chunk
// (k mod S v) / S (reversed for backwards); then one forward, one backward; then the rest.
std::vector<ScheduleStep> megatron_order(int S, int rank, int B, int v) {
  const int total = v * B;
  const int warmup = std::min((S - rank - 1) * 2 + (v - 1) * S, total);
  auto pass = [&](int k, bool forward) {
    int chunk = (k % (S * v)) / S;
    if (!forward) chunk = v - chunk - 1;
    return ScheduleStep{forward ? TaskKind::kForward : TaskKind::kBackward,
                        (k / (S * v)) * S + k % S, chunk};
  };
  std::vector<ScheduleStep> o;
  for (int k = 0; k < warmup; ++k) o.push_back(pass(k, true));
  for (int k = 0; k < total - warmup; ++k) {
    o.push_back(pass(k + warmup, true));
    o.push_back(pass(k, false));
  }
  for (int k = total - warmup; k < total; ++k) o.push_back(pass(k, false));
  return o;
}

// Most (chunk, micro-batch) passes whose forward has run and backward has not.
int max_chunks_in_flight(const std::vector<ScheduleStep>& order) {
  return max_in_flight(order);
}

TEST(InterleavedSchedule, InvariantsAndMegatronOrder) {
  for (int S = 1; S <= 5; ++S)
    for (int v = 2; v <= 4; ++v)
      for (int B = S; B <= 3 * S; B += S) {
        SCOPED_TRACE(cat("S=", S, " v=", v, " B=", B));
        const auto order = pipeline_schedule(ScheduleKind::kInterleaved1F1B, S, B, v);
        ASSERT_EQ(order.size(), static_cast<size_t>(S));
        for (int i = 0; i < S; ++i) {
          const std::vector<ScheduleStep>& o = order[static_cast<size_t>(i)];
          EXPECT_EQ(o, megatron_order(S, i, B, v)) << "mesh " << i;
          // Every (chunk, micro-batch) forward and backward exactly once, forward first.
          ASSERT_EQ(o.size(), static_cast<size_t>(2 * v * B));
          std::set<std::tuple<int, int, int>> seen;
          for (size_t p = 0; p < o.size(); ++p) {
            EXPECT_TRUE(
                seen.insert({static_cast<int>(o[p].task), o[p].chunk, o[p].micro_batch}).second);
            if (o[p].task == TaskKind::kBackward) {
              EXPECT_TRUE(
                  seen.count({static_cast<int>(TaskKind::kForward), o[p].chunk, o[p].micro_batch}))
                  << "backward before forward, mesh " << i << " pass " << p;
            }
          }
          // In flight: the warm-up's passes and the one forward before each backward.
          const int w = warmup_passes(ScheduleKind::kInterleaved1F1B, S, i, B, v);
          EXPECT_EQ(w, std::min(2 * (S - 1 - i) + (v - 1) * S, v * B));
          EXPECT_EQ(max_chunks_in_flight(o), std::min(w + 1, v * B));
        }
        // Stepped together: forward of stage g after stage g-1's, backwards in reverse order,
        // no deadlock, and the latency of (S - 1) chunk passes of bubble each way.
        const auto ticks = schedule_ticks(order);
        const int G = S * v;
        std::vector<std::vector<int>> f(G, std::vector<int>(B, -1)), b = f;
        for (size_t t = 0; t < ticks.size(); ++t)
          for (int i = 0; i < S; ++i)
            if (const auto& x = ticks[t][static_cast<size_t>(i)])
              (x->task == TaskKind::kForward ? f : b)[x->chunk * S + i][x->micro_batch] =
                  static_cast<int>(t);
        for (int g = 0; g < G; ++g)
          for (int m = 0; m < B; ++m) {
            ASSERT_GE(f[g][m], 0);
            ASSERT_GE(b[g][m], 0);
            if (g > 0) {
              EXPECT_LT(f[g - 1][m], f[g][m]);
            }
            if (g + 1 < G) {
              EXPECT_LT(b[g + 1][m], b[g][m]);
            }
            EXPECT_LT(f[g][m], b[g][m]);
          }
        EXPECT_EQ(ticks.size(), static_cast<size_t>(2 * (v * B + S - 1)));
        // In stage passes (v chunk passes each), the bubble is (S - 1) / v of 1F1B's.
        const size_t one_f_one_b =
            schedule_ticks(pipeline_schedule(ScheduleKind::k1F1B, S, B)).size();
        if (S > 1) {
          EXPECT_LT(ticks.size(), v * one_f_one_b);
        }
      }
}

TEST(InterleavedSchedule, MegatronsPictureForTwoMeshes) {
  EXPECT_EQ(schedule_to_string(pipeline_schedule(ScheduleKind::kInterleaved1F1B, 2, 4, 2)),
            "mesh 0: F0/0 F1/0 F0/1 F1/1 F2/0 B0/1 F3/0 B1/1 F2/1 B0/0 F3/1 B1/0 B2/1 B3/1 B2/0 "
            "B3/0\n"
            "mesh 1: F0/0 F1/0 F0/1 B0/1 F1/1 B1/1 F2/0 B0/0 F3/0 B1/0 F2/1 B2/1 F3/1 B3/1 B2/0 "
            "B3/0\n");
}

TEST(InterleavedSchedule, SizeErrorsAreUserErrors) {
  Status odd = check_schedule_sizes(ScheduleKind::kInterleaved1F1B, 4, 6, 2);
  ASSERT_FALSE(odd.ok());
  EXPECT_EQ(odd.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(odd.message().find("multiple of the 4"), std::string::npos) << odd.to_string();
  EXPECT_NE(odd.hint().find("--micro-batches 4"), std::string::npos) << odd.to_string();
  Status one = check_schedule_sizes(ScheduleKind::kInterleaved1F1B, 2, 4, 1);
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.hint().find("1f1b"), std::string::npos);
  Status many = check_schedule_sizes(ScheduleKind::k1F1B, 2, 4, 2);
  ASSERT_FALSE(many.ok());
  EXPECT_NE(many.hint().find("interleaved"), std::string::npos);
  EXPECT_TRUE(check_schedule_sizes(ScheduleKind::kInterleaved1F1B, 3, 6, 4).ok());
  EXPECT_TRUE(check_schedule_sizes(ScheduleKind::kGPipe, 3, 5, 1).ok());
}

TEST(Schedule, NamesRoundTripAndUnknownIsAnError) {
  EXPECT_EQ(parse_schedule("interleaved").value(), ScheduleKind::kInterleaved1F1B);
  EXPECT_EQ(parse_schedule("interleaved-1f1b").value(), ScheduleKind::kInterleaved1F1B);
  EXPECT_EQ(schedule_name(ScheduleKind::kInterleaved1F1B), "interleaved-1f1b");
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
