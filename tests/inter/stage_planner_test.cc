// The whole inter-op pass on real training graphs: a plan for GPT-tiny on four local devices is
// well formed (contiguous layer ranges, disjoint device ranges covering the cluster, step time
// = pipeline_timing of the stages, the micro-batch search keeps the fastest count); repeated layers
// reuse intra-op solves; a model that fits nowhere names the smallest memory per device that
// works, and that memory does work.
#include "alpa/inter/stage_planner.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include "alpa/inter/stage_dp.h"
#include "alpa/models/registry.h"

namespace alpa {
namespace {

Cluster local(int devices) {
  return with_devices(cluster_preset("local").value(), devices).value();
}

void expect_well_formed(const PipelinePlan& p, int devices) {
  ASSERT_FALSE(p.stages.empty());
  int layer = 0;
  std::vector<int> owner(static_cast<size_t>(devices), -1);
  std::vector<StageCandidate> timed;
  for (size_t s = 0; s < p.stages.size(); ++s) {
    const PlannedStage& st = p.stages[s];
    EXPECT_EQ(st.first_layer, layer) << "stage " << s;
    EXPECT_LE(st.first_layer, st.last_layer) << "stage " << s;
    layer = st.last_layer + 1;
    const int64_t n = st.logical.shape[0] * st.logical.shape[1];
    EXPECT_EQ(n, st.submesh.size()) << "stage " << s;
    for (int64_t d = st.first_device; d < st.first_device + n; ++d) {
      ASSERT_LT(d, devices) << "stage " << s;
      EXPECT_EQ(owner[static_cast<size_t>(d)], -1) << "device " << d << " in two stages";
      owner[static_cast<size_t>(d)] = static_cast<int>(s);
    }
    EXPECT_GT(st.time_s, 0);
    EXPECT_GT(st.peak_memory_bytes, 0);
    EXPECT_GE(st.transfer_s, 0) << "stage " << s;
    EXPECT_LE(st.transfer_s, st.time_s) << "stage " << s;
    timed.push_back({st.time_s, 0, st.transfer_s});
  }
  EXPECT_EQ(layer, p.layers.num_layers);
  for (int d = 0; d < devices; ++d) EXPECT_GE(owner[static_cast<size_t>(d)], 0) << "device " << d;
  EXPECT_NEAR(p.predicted_step_time_s, pipeline_timing(timed, p.micro_batches).step,
              1e-9 * p.predicted_step_time_s);
}

TEST(StagePlanner, GptTinyOnFourDevicesWithMicroBatchSearch) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  PipelinePlannerOptions o;
  o.micro_batches = 0;
  o.batch = spec.batch;
  Result<PipelinePlan> p = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_well_formed(*p, 4);
  EXPECT_EQ(spec.batch % p->micro_batches, 0);
  ASSERT_FALSE(p->micro_batch_search.empty());
  double fastest = std::numeric_limits<double>::infinity();
  for (const auto& [b, t] : p->micro_batch_search) {
    EXPECT_EQ(spec.batch % b, 0) << b;
    fastest = std::min(fastest, t);
  }
  EXPECT_DOUBLE_EQ(p->predicted_step_time_s, fastest);
  EXPECT_GT(p->candidates, 0);
  EXPECT_GT(p->intra_solves, 0);
  EXPECT_GT(p->total_s, 0);
  // The other counts' best plans, fastest first, each a whole plan for its own count.
  int feasible = 0;
  for (const auto& [b, t] : p->micro_batch_search) feasible += std::isfinite(t) ? 1 : 0;
  EXPECT_EQ(static_cast<int>(p->alternatives.size()), feasible - 1);
  double previous = p->predicted_step_time_s;
  for (const PipelinePlan& a : p->alternatives) {
    EXPECT_NE(a.micro_batches, p->micro_batches);
    EXPECT_GE(a.predicted_step_time_s, previous);
    previous = a.predicted_step_time_s;
    expect_well_formed(a, 4);
  }
}

// Stage candidates solved side by side on threads give the plan one thread gives, with the
// same number of intra-op solves (a solve made ahead is not counted as reused).
TEST(StagePlanner, SolvesSideBySideGiveTheSamePlan) {
  ModelSpec spec = resolve_model("wresnet", "tiny", {}).value();
  PipelinePlannerOptions o;
  o.micro_batches = 4;
  o.batch = spec.batch;
  o.imbalance_tolerance = 100;
  o.threads = 1;
  o.solve_threads = 1;
  Result<PipelinePlan> one = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.solve_threads = 3;
  Result<PipelinePlan> three = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(three.ok()) << three.status().to_string();
  EXPECT_EQ(one->predicted_step_time_s, three->predicted_step_time_s);
  ASSERT_EQ(one->stages.size(), three->stages.size());
  for (size_t s = 0; s < one->stages.size(); ++s) {
    EXPECT_EQ(one->stages[s].first_layer, three->stages[s].first_layer) << s;
    EXPECT_EQ(one->stages[s].last_layer, three->stages[s].last_layer) << s;
    EXPECT_EQ(one->stages[s].submesh.to_string(), three->stages[s].submesh.to_string()) << s;
    EXPECT_EQ(one->stages[s].time_s, three->stages[s].time_s) << s;
  }
  EXPECT_EQ(one->candidates, three->candidates);
  EXPECT_EQ(one->intra_solves, three->intra_solves);
  EXPECT_EQ(one->cache_hits, three->cache_hits);
  EXPECT_GT(one->intra_solves, 4);
}

TEST(StagePlanner, PlanSpacesOfTheAblations) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  PipelinePlannerOptions o;
  o.micro_batches = 4;
  o.batch = spec.batch;
  o.num_layers = 4;
  o.imbalance_tolerance = 100;
  o.space = PlanSpace::kIntraOnly;
  Result<PipelinePlan> intra = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(intra.ok()) << intra.status().to_string();
  expect_well_formed(*intra, 4);
  ASSERT_EQ(intra->stages.size(), 1u);  // auto-sharding alone: one stage on every device
  EXPECT_EQ(intra->stages[0].submesh.size(), 4);
  o.space = PlanSpace::kInterOnly;
  Result<PipelinePlan> inter = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(inter.ok()) << inter.status().to_string();
  expect_well_formed(*inter, 4);
  ASSERT_EQ(inter->stages.size(), 4u);  // pipeline alone: one device per stage
  for (const PlannedStage& st : inter->stages) EXPECT_EQ(st.submesh.size(), 1);
  // More devices than layers: no inter-only plan (the paper's "x" for MoE at 32 GPUs).
  o.num_layers = 2;
  EXPECT_FALSE(plan_pipeline(spec, {}, local(4), o).ok());
  EXPECT_EQ(parse_plan_space("inter-only").value(), PlanSpace::kInterOnly);
  EXPECT_FALSE(parse_plan_space("both").ok());
}

// GPT-tiny with `layers` blocks; options planning it as that many layers with `micro_batches`.
ModelSpec tiny_gpt(int layers) {
  ModelOverrides m;
  m.layers = layers;
  return resolve_model("gpt", "tiny", m).value();
}

PipelinePlannerOptions layer_options(const ModelSpec& spec, int micro_batches) {
  PipelinePlannerOptions o;
  o.micro_batches = micro_batches;
  o.batch = spec.batch;
  o.num_layers = static_cast<int>(spec.gpt.layers);
  return o;
}

TEST(StagePlanner, RepeatedLayersReuseIntraOpSolves) {
  const ModelSpec spec = tiny_gpt(4);
  PipelinePlannerOptions o = layer_options(spec, 2);
  Result<PipelinePlan> p = plan_pipeline(spec, {}, local(2), o);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  expect_well_formed(*p, 2);
  EXPECT_GT(p->cache_hits, 0);
  EXPECT_LT(p->intra_solves, p->candidates);
}

// The micro-batch search plans counts after the first only for plans that could come within
// slower_count_margin of the best so far: a stage too slow for that is not planned under a
// memory budget (the slowest solves). The chosen plan is the one the unbounded search finds,
// counts within the margin are planned alike, the others no faster, with fewer solves, and
// the search stops at the first count beyond the margin.
// GPT-1.3B's shape with 8 layers and a batch of 16, and four hosts of one device on a slow
// network: pipelines, and stages tight in 4 GB.
struct TightPipeline {
  ModelSpec spec;
  Cluster cluster;
  TightPipeline() {
    ModelOverrides m;
    m.layers = 8;
    m.batch = 16;
    spec = resolve_model("gpt", "1.3b", m).value();
    cluster = cluster_preset("p3.16xlarge").value();
    cluster.hosts = 4;
    cluster.devices_per_host = 1;
    cluster.inter_host.bandwidth = 1.25e9;
  }
  PipelinePlannerOptions options() const {
    PipelinePlannerOptions o = layer_options(spec, 0);
    o.memory_per_device = 4e9;
    return o;
  }
};

TEST(StagePlanner, SlowerMicroBatchCountsAreLeftOutEarly) {
  const TightPipeline t;
  const ModelSpec& spec = t.spec;
  const Cluster& cl = t.cluster;
  PipelinePlannerOptions o = t.options();
  o.threads = 1;  // each count bounded by every count before it
  o.slower_count_margin = std::numeric_limits<double>::infinity();
  Result<PipelinePlan> all = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(all.ok()) << all.status().to_string();
  o.slower_count_margin = 0.05;
  Result<PipelinePlan> bounded = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(bounded.ok()) << bounded.status().to_string();
  EXPECT_EQ(all->slower, 0);
  EXPECT_GT(bounded->slower, 0);
  EXPECT_LT(bounded->intra_solves, all->intra_solves);
  EXPECT_EQ(bounded->micro_batches, all->micro_batches);
  EXPECT_DOUBLE_EQ(bounded->predicted_step_time_s, all->predicted_step_time_s);
  ASSERT_EQ(bounded->stages.size(), all->stages.size());
  for (size_t s = 0; s < all->stages.size(); ++s) {
    EXPECT_EQ(bounded->stages[s].last_layer, all->stages[s].last_layer) << s;
    EXPECT_EQ(bounded->stages[s].submesh.to_string(), all->stages[s].submesh.to_string()) << s;
  }
  // The bounded search also stops at the first count beyond the margin: a prefix.
  ASSERT_LE(bounded->micro_batch_search.size(), all->micro_batch_search.size());
  ASSERT_GE(bounded->micro_batch_search.size(), 2u);
  for (size_t i = 0; i < bounded->micro_batch_search.size(); ++i) {
    const auto [b, t] = all->micro_batch_search[i];
    EXPECT_EQ(bounded->micro_batch_search[i].first, b);
    if (t < all->predicted_step_time_s * 1.05)
      EXPECT_DOUBLE_EQ(bounded->micro_batch_search[i].second, t) << b << " micro-batches";
    else
      EXPECT_GE(bounded->micro_batch_search[i].second, t * (1 - 1e-9)) << b << " micro-batches";
  }
}

// A micro-batch count costs its stage candidates by the layouts the counts finished before it
// searched for the same stages (no ILP) and searches only the stages it chooses: fewer
// solves, a well-formed plan within 2% of searching every candidate, and the same plan
// however the counts' threads run (a count only reads counts judged before it starts).
TEST(StagePlanner, CountsReuseTheLayoutsOfCountsBefore) {
  const TightPipeline t;
  const ModelSpec& spec = t.spec;
  const Cluster& cl = t.cluster;
  PipelinePlannerOptions o = t.options();
  o.threads = 2;
  o.slower_count_margin = std::numeric_limits<double>::infinity();  // every count planned
  Result<PipelinePlan> reused = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(reused.ok()) << reused.status().to_string();
  Result<PipelinePlan> again = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  o.reuse_across_counts = false;
  Result<PipelinePlan> searched = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(searched.ok()) << searched.status().to_string();
  EXPECT_GE(reused->micro_batch_search.size(), 3u);
  EXPECT_GT(reused->reused_across_counts, 0);
  EXPECT_EQ(searched->reused_across_counts, 0);
  EXPECT_LT(reused->intra_solves, searched->intra_solves);
  expect_well_formed(*reused, 4);
  EXPECT_NEAR(reused->predicted_step_time_s, searched->predicted_step_time_s,
              0.02 * searched->predicted_step_time_s);
  EXPECT_EQ(again->predicted_step_time_s, reused->predicted_step_time_s);
  EXPECT_EQ(again->micro_batch_search, reused->micro_batch_search);
  EXPECT_EQ(again->reused_across_counts, reused->reused_across_counts);
}

// heavy_op_seconds bounds what a stage computes: for every stage of planned pipelines (a
// transformer, a convolutional network and a mixture of experts; stages on one device and on
// several), its layers' heavy-op seconds over its devices are at most its compute per
// micro-batch.
TEST(StagePlanner, HeavyOpSecondsBoundEveryStagesCompute) {
  const Cluster cl = with_devices(cluster_preset("p3.16xlarge").value(), 8).value();
  for (const char* name : {"gpt", "wresnet", "moe"}) {
    const ModelSpec spec = resolve_model(name, "small", {}).value();
    PipelinePlannerOptions o;
    o.micro_batches = 2;
    o.batch = spec.batch;
    o.imbalance_tolerance = std::numeric_limits<double>::infinity();
    Result<PipelinePlan> p = plan_pipeline(spec, {}, cl, o);
    ASSERT_TRUE(p.ok()) << name << ": " << p.status().to_string();
    const TrainStep step = micro_batch_step(spec, {}, o.micro_batches).value();
    const std::vector<double> heavy = heavy_op_seconds(step, p->layers, cl.device);
    ASSERT_EQ(static_cast<int>(heavy.size()), p->layers.num_layers);
    std::vector<PipelinePlan> plans = p->alternatives;
    plans.push_back(*p);
    for (const PipelinePlan& plan : plans)
      for (const PlannedStage& st : plan.stages) {
        double sum = 0;
        for (int l = st.first_layer; l <= st.last_layer; ++l) sum += heavy[l];
        const double bound = sum / static_cast<double>(st.submesh.size());
        EXPECT_LE(bound, st.compute_s * (1 + 1e-9))
            << name << " layers " << st.first_layer << "-" << st.last_layer;
        EXPECT_GT(bound, 0) << name << " layers " << st.first_layer << "-" << st.last_layer;
      }
  }
}

// Long runs of repeated layers costed by extrapolation from runs of 2 and 3 give the same
// plan quality as solving every range.
TEST(StagePlanner, ExtrapolatedRunsMatchExactSolves) {
  const ModelSpec spec = tiny_gpt(8);
  PipelinePlannerOptions o = layer_options(spec, 4);
  Cluster cl = with_devices(cluster_preset("p3.16xlarge").value(), 4).value();
  Result<PipelinePlan> fast = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(fast.ok()) << fast.status().to_string();
  o.extrapolate_repeated_layers = false;
  Result<PipelinePlan> exact = plan_pipeline(spec, {}, cl, o);
  ASSERT_TRUE(exact.ok()) << exact.status().to_string();
  EXPECT_GT(fast->extrapolated, 0);
  EXPECT_EQ(exact->extrapolated, 0);
  EXPECT_LT(fast->intra_solves, exact->intra_solves);
  expect_well_formed(*fast, 4);
  EXPECT_NEAR(fast->predicted_step_time_s, exact->predicted_step_time_s,
              0.02 * exact->predicted_step_time_s);
}

// A planning cache carries the stage solves from one call to the next: planning again (here
// in another plan space, as the checked planner's corner plans do) solves nothing twice and
// finds the same plan as without the cache.
TEST(StagePlanner, ACacheSharesStageSolvesBetweenCalls) {
  const ModelSpec spec = tiny_gpt(4);
  PipelinePlannerOptions o = layer_options(spec, 2);
  const std::shared_ptr<PlanningCache> cache = make_planning_cache();
  Result<PipelinePlan> first = plan_pipeline(spec, {}, local(2), o, cache.get());
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_GT(first->intra_solves, 0);
  Result<PipelinePlan> again = plan_pipeline(spec, {}, local(2), o, cache.get());
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_DOUBLE_EQ(again->predicted_step_time_s, first->predicted_step_time_s);
  o.space = PlanSpace::kIntraOnly;
  Result<PipelinePlan> corner = plan_pipeline(spec, {}, local(2), o, cache.get());
  ASSERT_TRUE(corner.ok()) << corner.status().to_string();
  Result<PipelinePlan> alone = plan_pipeline(spec, {}, local(2), o);
  ASSERT_TRUE(alone.ok()) << alone.status().to_string();
  EXPECT_DOUBLE_EQ(corner->predicted_step_time_s, alone->predicted_step_time_s);
  EXPECT_GT(alone->intra_solves, 0);
  EXPECT_LT(corner->intra_solves, alone->intra_solves);
  // The exact re-check of the chosen stages solves with its successors in mind; the costing of
  // candidates solved before is all reuse.
  EXPECT_LT(again->intra_solves, first->intra_solves);
}

// A range whose shorter range does not fit alone is left out unsolved: under a tight memory the
// plan is the one solving every range finds, with fewer intra-op solves.
TEST(StagePlanner, RangesAroundOneThatCannotFitAreLeftOut) {
  const ModelSpec spec = tiny_gpt(8);
  PipelinePlannerOptions o = layer_options(spec, 4);
  o.remat = RematMode::kNone;
  Result<PipelinePlan> whole = plan_pipeline(spec, {}, local(1), o);
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  // Half the memory one device needs for the whole model: long ranges fit on no submesh.
  o.memory_per_device = 0.5 * whole->stages.at(0).peak_memory_bytes;
  Result<PipelinePlan> pruned = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(pruned.ok()) << pruned.status().to_string();
  o.prune_ranges_that_cannot_fit = false;
  Result<PipelinePlan> every = plan_pipeline(spec, {}, local(4), o);
  ASSERT_TRUE(every.ok()) << every.status().to_string();
  EXPECT_GT(pruned->pruned, 0);
  EXPECT_EQ(every->pruned, 0);
  EXPECT_LT(pruned->intra_solves, every->intra_solves);
  EXPECT_EQ(pruned->candidates, every->candidates);
  expect_well_formed(*pruned, 4);
  EXPECT_DOUBLE_EQ(pruned->predicted_step_time_s, every->predicted_step_time_s);
  ASSERT_EQ(pruned->stages.size(), every->stages.size());
  for (size_t s = 0; s < pruned->stages.size(); ++s) {
    EXPECT_EQ(pruned->stages[s].first_layer, every->stages[s].first_layer) << "stage " << s;
    EXPECT_EQ(pruned->stages[s].submesh.size(), every->stages[s].submesh.size()) << "stage " << s;
    EXPECT_LE(pruned->stages[s].peak_memory_bytes, o.memory_per_device) << "stage " << s;
  }
}

// Whole-block layers leave two stages of a five-block GPT unequal (2 + 3 blocks); balancing
// moves the boundary inside a block: the predicted step is faster, the stages' times closer,
// each stage is one layer, and the plan lowers and runs in the simulation as predicted.
TEST(StagePlanner, StageBoundariesBalanceWithinLayers) {
  ModelOverrides five;
  five.layers = 5;
  ModelSpec spec = resolve_model("gpt", "tiny", five).value();
  PipelinePlannerOptions o;
  o.micro_batches = 4;
  o.batch = spec.batch;
  o.space = PlanSpace::kInterOnly;
  o.imbalance_tolerance = 1e9;
  o.balance_within_layers = false;
  Result<PipelinePlan> whole = plan_pipeline(spec, {}, local(2), o);
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  o.balance_within_layers = true;
  Result<PipelinePlan> balanced = plan_pipeline(spec, {}, local(2), o);
  ASSERT_TRUE(balanced.ok()) << balanced.status().to_string();
  expect_well_formed(*whole, 2);
  expect_well_formed(*balanced, 2);
  EXPECT_EQ(whole->balance_rounds, 0);
  EXPECT_GT(balanced->balance_rounds, 0);
  ASSERT_EQ(balanced->stages.size(), 2u);
  EXPECT_EQ(balanced->layers.num_layers, 2);
  EXPECT_LT(balanced->predicted_step_time_s, 0.95 * whole->predicted_step_time_s);
  auto spread = [](const PipelinePlan& p) {
    double lo = 1e30, hi = 0;
    for (const PlannedStage& s : p.stages) lo = std::min(lo, s.time_s), hi = std::max(hi, s.time_s);
    return hi / lo;
  };
  EXPECT_LT(spread(*balanced), spread(*whole));
  EXPECT_LT(spread(*balanced), 1.25);
  // The boundary is inside a block: none of the whole-block layers starts there.
  auto starts = [](const LayerClustering& c) {
    std::vector<size_t> at;
    for (size_t i = 1; i < c.layer_of.size(); ++i)
      if (c.layer_of[i] != c.layer_of[i - 1]) at.push_back(i);
    return at;
  };
  ASSERT_EQ(starts(balanced->layers).size(), 1u);
  for (size_t at : starts(whole->layers)) EXPECT_NE(at, starts(balanced->layers)[0]);
  const TrainStep step = micro_batch_step(spec, {}, 4).value();
  Result<MaterializedPipeline> m = materialize_pipeline(step, *balanced, local(2), o.sharding);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  EXPECT_NEAR(m->predicted_step_time_s, balanced->predicted_step_time_s,
              0.05 * balanced->predicted_step_time_s);
}

// Stages on different hosts receive over the hosts' network: a stage whose sender is on the
// other host pays for its activations (or gradients) at the network's bandwidth, the others
// as on one host.
TEST(StagePlanner, TransfersBetweenHostsAreCostedWhereStagesSit) {
  ModelSpec spec = resolve_model("mlp", "small", {}).value();  // stages talk to neighbours only
  PipelinePlannerOptions o;
  o.micro_batches = 4;
  o.batch = spec.batch;
  o.space = PlanSpace::kInterOnly;
  o.imbalance_tolerance = 1e9;
  o.num_layers = 4;
  o.balance_within_layers = false;  // the same stages on both clusters
  Cluster one = local(4);
  Cluster two = one;
  two.hosts = 2;
  two.devices_per_host = 2;
  two.inter_host.bandwidth = one.intra_host.bandwidth / 1000;
  two.inter_host.latency = one.intra_host.latency;
  Result<PipelinePlan> a = plan_pipeline(spec, {}, one, o);
  Result<PipelinePlan> b = plan_pipeline(spec, {}, two, o);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(a->stages.size(), 4u);
  ASSERT_EQ(b->stages.size(), 4u);
  // A stage with a neighbour on the other host receives across (1000x slower links); one
  // whose neighbours share its host receives its activations as on one host.
  auto host = [&](int s) { return b->stages[s].first_device / 2; };
  int across = 0, within = 0;
  for (int s = 0; s < 4; ++s) {
    const bool far = (s > 0 && host(s - 1) != host(s)) || (s < 3 && host(s + 1) != host(s));
    if (far) {
      ++across;
      EXPECT_GT(b->stages[s].transfer_s, 20 * a->stages[s].transfer_s) << "stage " << s;
    } else {
      ++within;
      EXPECT_NEAR(b->stages[s].transfer_s, a->stages[s].transfer_s,  // labels may come across
                  0.05 * a->stages[s].transfer_s)
          << "stage " << s;
    }
  }
  EXPECT_GT(across, 0);
  EXPECT_GT(within, 0);
  EXPECT_GT(b->predicted_step_time_s, a->predicted_step_time_s);
}

// "... the smallest memory per device that works is 1.23 MB (2 micro-batches)" -> bytes.
double smallest_memory(const std::string& message) {
  const std::string key = "the smallest memory per device that works is ";
  const size_t at = message.find(key);
  if (at == std::string::npos) return -1;
  const char* p = message.c_str() + at + key.size();
  char* end = nullptr;
  const double v = std::strtod(p, &end);
  const std::string unit(end + 1, end + 3);
  const double scale = unit == "KB" ? 1e3 : unit == "MB" ? 1e6 : unit == "GB" ? 1e9 : 1;
  return v * scale;
}

TEST(StagePlanner, NoFitNamesTheSmallestMemoryThatWorks) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  PipelinePlannerOptions o;
  o.micro_batches = 2;
  o.batch = spec.batch;
  o.memory_per_device = 1000;  // 1 KB
  Result<PipelinePlan> p = plan_pipeline(spec, {}, local(2), o);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kResourceExhausted);
  const double need = smallest_memory(p.status().message());
  ASSERT_GT(need, 1000) << p.status().message();
  o.memory_per_device = need;
  Result<PipelinePlan> fits = plan_pipeline(spec, {}, local(2), o);
  ASSERT_TRUE(fits.ok()) << fits.status().to_string();
  for (const PlannedStage& st : fits->stages) EXPECT_LE(st.peak_memory_bytes, need);
  o.memory_per_device = 0.95 * need;
  EXPECT_FALSE(plan_pipeline(spec, {}, local(2), o).ok());
}

}  // namespace
}  // namespace alpa
