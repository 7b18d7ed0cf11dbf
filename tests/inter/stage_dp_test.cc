// The stage-mesh DP against brute force on random tiny instances and against a plain
// (unpruned) t_max enumeration on medium ones; the evaluator against both; hand-made cases where
// pipelining wins, where one stage wins, and where memory forces a split; the JSON form; and the
// errors when no plan exists.
#include "alpa/inter/stage_dp.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iostream>

#include "alpa/support/rng.h"

namespace alpa {
namespace {

constexpr double kInf = kInfStageTime;

StageDpRequest make_request(int layers, int64_t hosts, int64_t m, int micro_batches) {
  StageDpRequest r;
  r.num_layers = layers;
  r.hosts = hosts;
  r.devices_per_host = m;
  r.micro_batches = micro_batches;
  r.submeshes = submesh_choices(hosts, m);
  r.reset_candidates();
  return r;
}

// Random times (continuous or on a coarse grid, so that ties occur), some infinite, random
// max_succ including -1.
StageDpRequest random_request(uint64_t seed, int max_layers, bool quantized) {
  Rng rng(seed);
  const std::vector<std::pair<int64_t, int64_t>> clusters = {
      {1, 4}, {2, 2}, {1, 8}, {2, 4}, {1, 2}};
  const auto [hosts, m] = clusters[rng.below(clusters.size())];
  const int layers = 1 + static_cast<int>(rng.below(max_layers));
  const int b[] = {1, 2, 4, 8, 32};
  StageDpRequest r = make_request(layers, hosts, m, b[rng.below(5)]);
  for (int l = 0; l < layers; ++l)
    for (int e = l; e < layers; ++e)
      for (int s = 0; s < r.num_submeshes(); ++s) {
        StageCandidate& c = r.at(l, e, s);
        if (rng.below(10) == 0) continue;  // infeasible
        const double work = e - l + 1;
        const double size = static_cast<double>(r.submeshes[s].size());
        c.time = quantized ? static_cast<double>(1 + rng.below(6))
                           : work / std::pow(size, 0.8) * (0.5 + rng.uniform());
        c.max_succ = static_cast<int>(rng.below(layers + 1)) - 1;
      }
  return r;
}

TEST(StageDp, MatchesBruteForceOnRandomTinyInstances) {
  int feasible = 0, infeasible = 0, multi_stage = 0;
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    const StageDpRequest r = random_request(seed, 5, seed % 3 == 0);
    Result<StageDpSolution> dp = solve_stage_dp(r);
    Result<StageDpSolution> bf = solve_stage_bruteforce(r);
    ASSERT_EQ(dp.ok(), bf.ok()) << "seed " << seed << ": dp " << dp.status().to_string()
                                << " / brute force " << bf.status().to_string() << "\n"
                                << stage_dp_to_json(r);
    if (!dp.ok()) {
      ++infeasible;
      EXPECT_EQ(dp.status().code(), bf.status().code()) << "seed " << seed;
      EXPECT_FALSE(dp.status().hint().empty());
      continue;
    }
    ++feasible;
    multi_stage += dp->stages.size() > 1;
    EXPECT_NEAR(dp->total_time, bf->total_time, 1e-9 * bf->total_time) << "seed " << seed << "\n"
                                                                       << stage_dp_to_json(r);
    std::vector<std::string> why;
    EXPECT_EQ(evaluate_stages(r, dp->stages, &why), dp->total_time) << "seed " << seed;
    EXPECT_TRUE(why.empty()) << why.front();
    EXPECT_EQ(evaluate_stages(r, bf->stages), bf->total_time) << "seed " << seed;
    EXPECT_GE(dp->tmax_values_tried, 1);
    EXPECT_EQ(dp->first_device.size(), dp->stages.size());
    double sum = 0, mx = 0;
    for (const StageChoice& c : dp->stages) {
      sum += r.at(c.first_layer, c.last_layer, c.submesh).time;
      mx = std::max(mx, r.at(c.first_layer, c.last_layer, c.submesh).time);
    }
    EXPECT_DOUBLE_EQ(dp->sum_stage_time, sum);
    EXPECT_EQ(dp->max_stage_time, mx);
  }
  EXPECT_GT(feasible, 200);
  EXPECT_GT(infeasible, 5);
  EXPECT_GT(multi_stage, 50);
}

// A share of each time is receiving (transfer): the DP within its 0.5% t_max grid of brute force.
TEST(StageDp, WithTransfersWithinTheGridOfBruteForce) {
  int compared = 0, above = 0;
  for (uint64_t seed = 1; seed <= 300; ++seed) {
    StageDpRequest r = random_request(seed, 5, seed % 3 == 0);
    Rng rng(seed * 7919);
    for (StageCandidate& c : r.candidates)
      if (std::isfinite(c.time)) c.transfer = c.time * 0.7 * rng.uniform();
    Result<StageDpSolution> dp = solve_stage_dp(r);
    Result<StageDpSolution> bf = solve_stage_bruteforce(r);
    ASSERT_EQ(dp.ok(), bf.ok()) << "seed " << seed << "\n" << stage_dp_to_json(r);
    if (!dp.ok()) continue;
    ++compared;
    EXPECT_GE(dp->total_time, bf->total_time * (1 - 1e-9)) << "seed " << seed;
    EXPECT_LE(dp->total_time, bf->total_time * 1.005 + 1e-12) << "seed " << seed << "\n"
                                                              << stage_dp_to_json(r);
    above += dp->total_time > bf->total_time * (1 + 1e-9);
    EXPECT_EQ(evaluate_stages(r, dp->stages), dp->total_time) << "seed " << seed;
  }
  EXPECT_GT(compared, 150);
  EXPECT_LT(above, compared / 10) << "the grid should rarely cost anything";
}

// Transfers overlap compute, but a 1F1B stage waits for its micro-batches' round trips.
TEST(StageDp, PipelineTimingCountsRoundTrips) {
  // Two stages, 1.0 s each of which 0.2 s receiving: latency 2.0; busy 0.8 per stage; stage 0
  // holds two micro-batches, its round trip 0.8 + 1.0 = 1.8 -> period 0.9.
  std::vector<StageCandidate> two = {{1.0, 0, 0.2}, {1.0, 0, 0.2}};
  PipelineTiming p = pipeline_timing(two, 5);
  EXPECT_DOUBLE_EQ(p.latency, 2.0);
  EXPECT_DOUBLE_EQ(p.period, 0.9);
  EXPECT_DOUBLE_EQ(p.step, 2.0 + 4 * 0.9);
  // A quick last stage: the first stage's compute bounds the period.
  std::vector<StageCandidate> uneven = {{3.0, 0, 0.1}, {1.0, 0, 0.5}};
  p = pipeline_timing(uneven, 3);
  EXPECT_DOUBLE_EQ(p.period, 2.9);  // round trip (2.9 + 1.0) / 2 = 1.95 < 2.9
  // A transfer longer than any compute bounds it.
  std::vector<StageCandidate> slow_link = {{0.5, 0, 0.0}, {1.0, 0, 0.8}};
  EXPECT_DOUBLE_EQ(pipeline_timing(slow_link, 2).period, 0.8);
  // Without transfers: Alpa's sum + (B - 1) * max.
  std::vector<StageCandidate> plain = {{1.0, 0}, {3.0, 0}, {2.0, 0}};
  p = pipeline_timing(plain, 4);
  EXPECT_DOUBLE_EQ(p.latency, 6.0);
  EXPECT_DOUBLE_EQ(p.period, 3.0);
  EXPECT_DOUBLE_EQ(p.step, 6.0 + 3 * 3.0);
}

// Alpa's training_dp without any pruning: every distinct t_max, F(s, k, d) over all candidates
// with time <= t_max, scored with t_max itself.
double reference_dp(const StageDpRequest& r) {
  const int L = r.num_layers, S = r.num_submeshes();
  const int D = static_cast<int>(r.num_devices());
  std::vector<double> times;
  for (int l = 0; l < L; ++l)
    for (int e = l; e < L; ++e)
      for (int s = 0; s < S; ++s)
        if (std::isfinite(r.at(l, e, s).time)) times.push_back(r.at(l, e, s).time);
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  double best = kInf;
  auto idx = [&](int s, int k, int d) {
    return (static_cast<size_t>(s) * (L + 1) + k) * (D + 1) + d;
  };
  for (double t_max : times) {
    std::vector<double> f(static_cast<size_t>(L + 1) * (L + 1) * (D + 1), kInf);
    f[idx(0, L, 0)] = 0;
    for (int s = 1; s <= L; ++s)
      for (int k = L - 1; k >= 0; --k)
        for (int d = 1; d <= D; ++d)
          for (int i = k; i < L; ++i)
            for (int m = 0; m < S; ++m) {
              const StageCandidate& c = r.at(k, i, m);
              const int size = static_cast<int>(r.submeshes[m].size());
              if (size > d || c.time > t_max || c.max_succ < s - 1) continue;
              f[idx(s, k, d)] = std::min(f[idx(s, k, d)], c.time + f[idx(s - 1, i + 1, d - size)]);
            }
    for (int s = 1; s <= L; ++s)
      best = std::min(best, f[idx(s, 0, D)] + (r.micro_batches - 1) * t_max);
  }
  return best;
}

TEST(StageDp, MatchesUnprunedEnumerationOnMediumInstances) {
  int compared = 0;
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    Rng rng(seed);
    const bool quantized = seed % 2 == 0;
    StageDpRequest r = make_request(6 + static_cast<int>(rng.below(5)), seed % 3 == 0 ? 1 : 2,
                                    seed % 3 == 0 ? 8 : 4, 1 + static_cast<int>(rng.below(40)));
    for (int l = 0; l < r.num_layers; ++l)
      for (int e = l; e < r.num_layers; ++e)
        for (int s = 0; s < r.num_submeshes(); ++s) {
          const double size = static_cast<double>(r.submeshes[s].size());
          const double t = (e - l + 1) / std::pow(size, 0.7) * (0.8 + 0.4 * rng.uniform());
          r.at(l, e, s).time = quantized ? std::round(t * 4) / 4 : t;
          r.at(l, e, s).max_succ = static_cast<int>(rng.below(8)) - 1;
        }
    Result<StageDpSolution> dp = solve_stage_dp(r);
    const double ref = reference_dp(r);
    ASSERT_EQ(dp.ok(), std::isfinite(ref)) << "seed " << seed << ": " << dp.status().to_string();
    if (!dp.ok()) continue;
    EXPECT_NEAR(dp->total_time, ref, 1e-9 * ref) << "seed " << seed;
    ++compared;
  }
  EXPECT_GT(compared, 30);
}

// Two layers on one host of 2 devices: each layer alone on one device, or both on both.
StageDpRequest two_layer_request(int micro_batches) {
  StageDpRequest r = make_request(2, 1, 2, micro_batches);  // submeshes 1x1, 1x2
  r.at(0, 0, 0) = {1.0, 4};
  r.at(1, 1, 0) = {1.0, 4};
  r.at(0, 1, 0) = {2.0, 4};
  r.at(0, 0, 1) = {0.6, 4};
  r.at(1, 1, 1) = {0.6, 4};
  r.at(0, 1, 1) = {1.5, 4};  // both layers on both devices: imperfect scaling
  return r;
}

TEST(StageDp, PipeliningWinsWithManyMicroBatches) {
  const StageDpRequest r = two_layer_request(8);
  Result<StageDpSolution> s = solve_stage_dp(r);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->stages.size(), 2u);
  EXPECT_EQ(s->stages[0], (StageChoice{0, 0, 0}));
  EXPECT_EQ(s->stages[1], (StageChoice{1, 1, 0}));
  EXPECT_DOUBLE_EQ(s->total_time, 2.0 + 7 * 1.0);  // vs one stage: 1.5 + 7 * 1.5
  EXPECT_EQ(s->first_device, (std::vector<int>{0, 1}));
}

// An uneven split whose boundary transfer overlaps compute beats one stage, though charging
// the transfer in series would not.
TEST(StageDp, OverlappedTransfersMakePipeliningWorthIt) {
  StageDpRequest r = two_layer_request(16);
  r.at(0, 0, 0) = {0.3, 4};
  r.at(1, 1, 0) = {0.9, 4, 0.3};  // 0.6 s compute + 0.3 s receiving
  r.at(0, 1, 1) = {0.85, 4};      // in series the split costs 1.2 + 15 * 0.9 = 14.7 > 13.6
  Result<StageDpSolution> s = solve_stage_dp(r);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->stages.size(), 2u);
  // Stage 1's compute and stage 0's round trip (0.3 + 0.9) / 2 set the period.
  EXPECT_DOUBLE_EQ(s->max_stage_time, 0.6);
  EXPECT_DOUBLE_EQ(s->sum_stage_time, 1.2);
  EXPECT_DOUBLE_EQ(s->total_time, 1.2 + 15 * 0.6);
}

TEST(StageDp, OneStageWinsWithOneMicroBatch) {
  const StageDpRequest r = two_layer_request(1);
  Result<StageDpSolution> s = solve_stage_dp(r);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->stages.size(), 1u);
  EXPECT_EQ(s->stages[0], (StageChoice{0, 1, 1}));
  EXPECT_DOUBLE_EQ(s->total_time, 1.5);
}

TEST(StageDp, MemoryForcesASplit) {
  StageDpRequest r = two_layer_request(1);
  r.at(0, 1, 1).max_succ = -1;  // the whole model does not fit on both devices
  Result<StageDpSolution> s = solve_stage_dp(r);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->stages.size(), 2u);
  EXPECT_DOUBLE_EQ(s->total_time, 2.0);
}

TEST(StageDp, MemoryLimitsTheNumberOfLaterStages) {
  // Three layers on 1x4 (1x1, 1x2, 1x4), time = layers / sqrt(devices), 16 micro-batches.
  // Three one-layer stages on 1x1, 1x1, 1x2 are best (T = 2.71 + 15 * 1), but once layer 0 can
  // hold activations for only one later stage, two stages or one must do.
  StageDpRequest r = make_request(3, 1, 4, 16);
  for (int l = 0; l < 3; ++l)
    for (int e = l; e < 3; ++e)
      for (int s = 0; s < 3; ++s)
        r.at(l, e, s) = {(e - l + 1) / std::sqrt(static_cast<double>(r.submeshes[s].size())), 8};
  Result<StageDpSolution> free_plan = solve_stage_dp(r);
  ASSERT_TRUE(free_plan.ok());
  ASSERT_EQ(free_plan->stages.size(), 3u);
  for (int s = 0; s < 3; ++s) r.at(0, 0, s).max_succ = 1;
  Result<StageDpSolution> limited = solve_stage_dp(r);
  ASSERT_TRUE(limited.ok());
  EXPECT_LT(limited->stages.size(), 3u);
  EXPECT_GT(limited->total_time, free_plan->total_time);
  EXPECT_NEAR(limited->total_time, solve_stage_bruteforce(r)->total_time, 1e-12);
}

TEST(StageDp, NoFeasiblePlanIsAClearError) {
  StageDpRequest r = two_layer_request(4);
  for (StageCandidate& c : r.candidates) c.max_succ = -1;
  Result<StageDpSolution> s = solve_stage_dp(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(s.status().message().find("memory"), std::string::npos) << s.status().to_string();
  EXPECT_FALSE(s.status().hint().empty());
  EXPECT_EQ(solve_stage_bruteforce(r).status().code(), StatusCode::kResourceExhausted);

  // Layer 1 has no finite time anywhere.
  r = two_layer_request(4);
  for (int s2 = 0; s2 < 2; ++s2) r.at(1, 1, s2).time = r.at(0, 1, s2).time = kInf;
  s = solve_stage_dp(r);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find("covers every layer"), std::string::npos)
      << s.status().to_string();

  // Only plans that leave a device idle: the single-device stage for both layers.
  r = two_layer_request(4);
  r.at(0, 1, 1).time = kInf;
  r.at(0, 0, 1).time = r.at(1, 1, 1).time = kInf;
  r.at(0, 0, 0).time = kInf;
  s = solve_stage_dp(r);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("exactly 2 devices"), std::string::npos)
      << s.status().to_string();
}

TEST(StageDp, EvaluatorListsViolations) {
  const StageDpRequest r = two_layer_request(4);
  std::vector<std::string> why;
  const std::vector<StageChoice> gap = {{0, 0, 0}};
  EXPECT_EQ(evaluate_stages(r, gap, &why), kInf);
  ASSERT_FALSE(why.empty());
  EXPECT_NE(why[0].find("cover"), std::string::npos) << why[0];
  why.clear();
  const std::vector<StageChoice> too_many = {{0, 0, 1}, {1, 1, 1}};
  EXPECT_EQ(evaluate_stages(r, too_many, &why), kInf);
  ASSERT_EQ(why.size(), 1u);
  EXPECT_NE(why[0].find("4 devices"), std::string::npos) << why[0];
  why.clear();
  StageDpRequest tight = r;
  tight.at(0, 0, 0).max_succ = 0;
  const std::vector<StageChoice> pipe = {{0, 0, 0}, {1, 1, 0}};
  EXPECT_EQ(evaluate_stages(tight, pipe, &why), kInf);
  ASSERT_EQ(why.size(), 1u);
  EXPECT_NE(why[0].find("max_succ = 0"), std::string::npos) << why[0];
  EXPECT_DOUBLE_EQ(evaluate_stages(r, pipe), 2.0 + 3 * 1.0);
}

TEST(StageDp, BadRequestsAndOptionsAreErrors) {
  StageDpRequest r = two_layer_request(2);
  StageDpOptions o;
  o.tmax_gap = -1;
  EXPECT_EQ(solve_stage_dp(r, o).status().code(), StatusCode::kInvalidArgument);
  r.at(0, 1, 0).max_succ = -2;
  Result<StageDpSolution> s = solve_stage_dp(r);
  EXPECT_NE(s.status().message().find("max_succ -2"), std::string::npos) << s.status().to_string();
  r = two_layer_request(2);
  r.submeshes.clear();
  EXPECT_FALSE(check_stage_dp_request(r).hint().empty());
  std::vector<std::string> why;
  EXPECT_EQ(evaluate_stages(r, std::vector<StageChoice>{{0, 1, 0}}, &why), kInf);
  EXPECT_EQ(why.size(), 1u);
  // Brute force refuses large instances.
  const StageDpRequest big = make_request(16, 1, 8, 4);
  Result<StageDpSolution> b = solve_stage_bruteforce(big);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().hint().find("solve_stage_dp"), std::string::npos) << b.status().to_string();
}

TEST(StageDp, JsonRoundTrip) {
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    StageDpRequest r = random_request(seed, 4, seed % 2 == 0);
    if (seed % 4 == 1)
      for (StageCandidate& c : r.candidates)
        if (std::isfinite(c.time)) c.transfer = c.time / 4;
    const std::string text = stage_dp_to_json(r);
    Result<StageDpRequest> back = stage_dp_from_json(text);
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, r) << text;
    EXPECT_EQ(stage_dp_to_json(*back), text);
  }
}

TEST(StageDp, MalformedJsonIsAnError) {
  const std::string good = stage_dp_to_json(two_layer_request(2));
  ASSERT_TRUE(stage_dp_from_json(good).ok());
  EXPECT_EQ(stage_dp_from_json("{").status().code(), StatusCode::kParseError);
  EXPECT_EQ(stage_dp_from_json("{\"num_layers\": 2}").status().code(), StatusCode::kParseError);
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    const size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  Result<StageDpRequest> r = stage_dp_from_json(edit("\"num_layers\":2", "\"num_layers\":3"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("expected"), std::string::npos) << r.status().to_string();
  r = stage_dp_from_json(edit("\"submeshes\":[[1,1]", "\"submeshes\":[[1,1,1]"));
  EXPECT_EQ(r.status().code(), StatusCode::kParseError);
  r = stage_dp_from_json(edit("\"time\":[1.0", "\"time\":[-1.0"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("time -1"), std::string::npos) << r.status().to_string();
  r = stage_dp_from_json(edit("\"micro_batches\":2", "\"micro_batches\":0"));
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  r = stage_dp_from_json(edit("\"submeshes\":[[1,1]", "\"submeshes\":[[2,1]"));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("submeshes[0]"), std::string::npos) << r.status().to_string();
}

// 64 layers on 8 hosts x 8 devices with the 11 shapes of submesh_choices: stage time = work /
// devices^0.85 plus a per-stage overhead, memory limits from a per-layer activation size. Not
// timed as an assertion; the time is printed.
TEST(StageDp, SixtyFourLayersOnSixtyFourDevices) {
  Rng rng(42);
  StageDpRequest r = make_request(64, 8, 8, 32);
  ASSERT_EQ(r.num_submeshes(), 11);
  std::vector<double> work(64), act(64);
  for (int l = 0; l < 64; ++l) work[l] = 1.0 + 0.2 * rng.uniform(), act[l] = 1.0 + rng.uniform();
  for (int l = 0; l < 64; ++l) {
    double w = 0, a = 0;
    for (int e = l; e < 64; ++e) {
      w += work[e];
      a += act[e];
      for (int s = 0; s < 11; ++s) {
        const double d = static_cast<double>(r.submeshes[s].size());
        // Quantised to 1e-3 s: a few hundred distinct times.
        const double t = std::round((w / std::pow(d, 0.85) + 0.05 * std::log2(d)) * 1e3) / 1e3;
        const double free_mem = 40 * d - 2 * a;  // weights take 2 per layer, spread over d
        const int succ = static_cast<int>(std::floor(free_mem / (a / d))) - 1;
        r.at(l, e, s) = {t, std::clamp(succ, -1, 1 << 20)};
      }
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  Result<StageDpSolution> s = solve_stage_dp(r);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(evaluate_stages(r, s->stages), s->total_time);
  std::cout << "[ stage DP ] 64 layers x 11 submeshes x 64 devices: " << s->stages.size()
            << " stages, T = " << s->total_time << ", " << s->tmax_values_tried << " t_max runs, "
            << secs * 1e3 << " ms\n";
  // Exact against the gap-skipping variant: never worse than it.
  StageDpOptions gap;
  gap.tmax_gap = 1e-2;
  Result<StageDpSolution> coarse = solve_stage_dp(r, gap);
  ASSERT_TRUE(coarse.ok());
  EXPECT_LE(s->total_time, coarse->total_time + 1e-12);
}

TEST(StageDp, RandomSixtyFourLayerInstance) {
  Rng rng(5);
  StageDpRequest r = make_request(64, 8, 8, 16);
  for (int l = 0; l < 64; ++l)
    for (int e = l; e < 64; ++e)
      for (int s = 0; s < 11; ++s)
        r.at(l, e, s) = {(e - l + 1) * (0.2 + rng.uniform()) /
                             std::sqrt(static_cast<double>(r.submeshes[s].size())),
                         static_cast<int>(rng.below(66)) - 1};
  const auto t0 = std::chrono::steady_clock::now();
  Result<StageDpSolution> s = solve_stage_dp(r);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(evaluate_stages(r, s->stages), s->total_time);
  std::cout << "[ stage DP ] random 64 x 11 x 64 (continuous times): " << s->stages.size()
            << " stages, " << s->tmax_values_tried << " t_max runs, " << secs * 1e3 << " ms\n";
}

}  // namespace
}  // namespace alpa
