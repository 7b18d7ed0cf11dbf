#include "alpa/compile/checked.h"

#include <algorithm>
#include <chrono>
#include <mutex>
#include <optional>

#include "alpa/spmd/build_program.h"
#include "alpa/support/thread_pool.h"

namespace alpa {
namespace {

struct Simulated {
  TrainStep step;
  MaterializedPipeline pipeline;
  Program program;
  SimReport sim;
  double peak = 0;
};

Result<Simulated> simulate_plan(const ModelSpec& model, const OptimizerOptions& optimizer,
                                const Cluster& cluster, const PipelinePlan& plan,
                                const AutoShardingOptions& sharding, ScheduleKind schedule) {
  Simulated s;
  ALPA_ASSIGN_OR_RETURN(s.step, micro_batch_step(model, optimizer, plan.micro_batches));
  ALPA_ASSIGN_OR_RETURN(s.pipeline, materialize_pipeline(s.step, plan, cluster, sharding));
  ALPA_ASSIGN_OR_RETURN(s.program,
                        pipeline_program(s.step, s.pipeline, schedule, plan.micro_batches));
  ALPA_ASSIGN_OR_RETURN(s.sim, simulate(s.program, cluster));
  s.peak = s.sim.peak_memory_bytes();
  return s;
}

// Every candidate simulated, `threads` at a time, and the best kept: one that fits before one
// that does not, then the fastest, then the earliest (so the choice does not depend on the
// order the simulations finish in). `figures`: per candidate its (micro-batches, stages, step,
// peak), in order; the first candidate's planned peak (its largest stage's) and simulated peak
// in first_planned_peak and first_sim_peak.
struct SimulatedCandidates {
  std::vector<SimulatedCandidate> figures;
  std::optional<Simulated> best;
  size_t best_index = 0;
  double first_planned_peak = 0, first_sim_peak = 0;
};

Result<SimulatedCandidates> simulate_candidates(const ModelSpec& model,
                                                const OptimizerOptions& optimizer,
                                                const Cluster& cluster,
                                                const std::vector<PipelinePlan>& candidates,
                                                const AutoShardingOptions& sharding,
                                                ScheduleKind schedule, double memory, int threads) {
  SimulatedCandidates out;
  const size_t n = candidates.size();
  out.figures.resize(n);
  std::vector<Status> failed(n);
  std::mutex mu;
  auto better = [&](const Simulated& a, size_t ai, const Simulated& b, size_t bi) {
    const bool af = a.peak <= memory, bf = b.peak <= memory;
    if (af != bf) return af;
    if (a.sim.step_time_s != b.sim.step_time_s) return a.sim.step_time_s < b.sim.step_time_s;
    return ai < bi;
  };
  run_side_by_side(n, threads, [&](size_t i) {
    Result<Simulated> s =
        simulate_plan(model, optimizer, cluster, candidates[i], sharding, schedule);
    std::lock_guard<std::mutex> lock(mu);
    if (!s.ok()) {
      failed[i] = s.status();
      return;
    }
    out.figures[i] = {candidates[i].micro_batches, static_cast<int>(candidates[i].stages.size()),
                      s->sim.step_time_s, s->peak};
    if (i == 0) {
      for (const PlannedStage& ps : s->pipeline.stages)
        out.first_planned_peak = std::max(out.first_planned_peak, ps.peak_memory_bytes);
      out.first_sim_peak = s->peak;
    }
    if (!out.best || better(*s, i, *out.best, out.best_index)) {
      out.best = std::move(*s);
      out.best_index = i;
    }
  });
  for (const Status& st : failed)
    if (!st.ok()) return st;
  return out;
}

// Whether two plans run the same stages (a corner plan may be one the search already has).
bool same_stages(const PipelinePlan& a, const PipelinePlan& b) {
  if (a.micro_batches != b.micro_batches || a.stages.size() != b.stages.size() ||
      a.layers.layer_of != b.layers.layer_of)
    return false;
  for (size_t s = 0; s < a.stages.size(); ++s) {
    const PlannedStage& x = a.stages[s];
    const PlannedStage& y = b.stages[s];
    if (x.first_layer != y.first_layer || x.last_layer != y.last_layer ||
        x.first_device != y.first_device || !(x.logical == y.logical) || !(x.submesh == y.submesh))
      return false;
  }
  return true;
}

// The planning statistics of `from` (the search as a whole) on `into`.
void copy_statistics(PipelinePlan& into, const PipelinePlan& from) {
  into.clustering_s = from.clustering_s;
  into.stage_costs_s = from.stage_costs_s;
  into.dp_s = from.dp_s;
  into.total_s = from.total_s;
  into.verify_s = from.verify_s;
  into.balance_s = from.balance_s;
  into.candidates = from.candidates;
  into.intra_solves = from.intra_solves;
  into.cache_hits = from.cache_hits;
  into.extrapolated = from.extrapolated;
  into.reused_across_counts = from.reused_across_counts;
  into.pruned = from.pruned;
  into.slower = from.slower;
  into.micro_batch_search = from.micro_batch_search;
}

}  // namespace

Result<Program> pipeline_program(const TrainStep& step, const MaterializedPipeline& pipeline,
                                 ScheduleKind schedule, int micro_batches) {
  PipelineBuildOptions bo;
  bo.schedule = schedule;
  bo.micro_batches = micro_batches;
  // A stage that recomputes: the split is of the rematerialized step.
  return build_pipeline_program(pipeline.remat_step ? *pipeline.remat_step : step, pipeline.split,
                                pipeline.graphs, pipeline.plans, pipeline.placements, bo);
}

Result<CheckedPipelinePlan> plan_pipeline_checked(const ModelSpec& model,
                                                  const OptimizerOptions& optimizer,
                                                  const Cluster& cluster,
                                                  const PipelinePlannerOptions& options,
                                                  ScheduleKind schedule, int max_rounds,
                                                  int max_candidates) {
  using Clock = std::chrono::steady_clock;
  const double memory =
      options.memory_per_device > 0 ? options.memory_per_device : cluster.device.memory_bytes;
  PipelinePlannerOptions o = options;
  o.memory_per_device = memory;
  CheckedPipelinePlan r;
  // The corner plans, the refit and later rounds reuse the search's stage solves.
  const std::shared_ptr<PlanningCache> cache = make_planning_cache();
  for (int round = 1;; ++round) {
    const Clock::time_point t0 = Clock::now();
    Result<PipelinePlan> plan = plan_pipeline(model, optimizer, cluster, o, cache.get());
    if (!plan.ok()) {
      if (round == 1) return plan.status();
      return plan.status().with_context(
          cat("the plans found first need more memory than the planner estimated when "
              "simulated; planning for ",
              o.memory_per_device / 1e9, " GB per device instead"));
    }
    // The planner's choice and its best plans for other micro-batch counts, judged by
    // simulation: the fastest that fits.
    std::vector<PipelinePlan> candidates;
    candidates.push_back(*plan);
    candidates.back().alternatives.clear();
    for (const PipelinePlan& a : plan->alternatives)
      if (static_cast<int>(candidates.size()) < max_candidates) candidates.push_back(a);
    // The whole space holds the one-stage plans of auto-sharding alone and the one-device
    // stages of pipelining alone, but the estimate (pipeline_timing) can rank a plan
    // above them by less than its own error: the planner's best plan of each is simulated too.
    if (o.space == PlanSpace::kFull && cluster.num_devices() > 1) {
      for (PlanSpace corner : {PlanSpace::kIntraOnly, PlanSpace::kInterOnly}) {
        PipelinePlannerOptions sub = o;
        sub.space = corner;
        sub.progress = nullptr;
        sub.explain_no_fit = false;
        Result<PipelinePlan> one = plan_pipeline(model, optimizer, cluster, sub, cache.get());
        const bool known =
            one.ok() && std::any_of(candidates.begin(), candidates.end(),
                                    [&](const PipelinePlan& c) { return same_stages(c, *one); });
        if (one.ok() && !known) {
          one->alternatives.clear();
          candidates.push_back(std::move(*one));
        }
      }
    }
    AutoShardingOptions sharding = o.sharding;
    sharding.memory_budget_bytes = o.memory_per_device;
    ALPA_ASSIGN_OR_RETURN(SimulatedCandidates sc,
                          simulate_candidates(model, optimizer, cluster, candidates, sharding,
                                              schedule, memory, o.side_by_side()));
    r.simulated.insert(r.simulated.end(), sc.figures.begin(), sc.figures.end());
    std::optional<Simulated>& best = sc.best;
    size_t best_index = sc.best_index;
    const double first_planned_peak = sc.first_planned_peak, first_sim_peak = sc.first_sim_peak;
    // The planner's favourite overflows by the simulator's count while a slower candidate
    // fits: plan the favourite's micro-batch count again for memory scaled down by its excess
    // (a plan like it that fits), and keep it if it is faster than the one that fits.
    if (best_index != 0 && best->peak <= memory && first_sim_peak > memory &&
        first_planned_peak > 0 && r.simulated.front().step_time_s < best->sim.step_time_s) {
      PipelinePlannerOptions again = o;
      again.micro_batches = candidates[0].micro_batches;
      again.memory_per_device = 0.99 * o.memory_per_device * first_planned_peak / first_sim_peak;
      again.progress = nullptr;
      if (o.progress)
        o.progress(cat(" the fastest plan simulates at ", first_sim_peak / 1e9,
                       " GB; planning its ", again.micro_batches, " micro-batches again for ",
                       again.memory_per_device / 1e9, " GB"));
      Result<PipelinePlan> refit = plan_pipeline(model, optimizer, cluster, again, cache.get());
      if (refit.ok()) {
        refit->alternatives.clear();
        ALPA_ASSIGN_OR_RETURN(Simulated s,
                              simulate_plan(model, optimizer, cluster, *refit, sharding, schedule));
        r.simulated.push_back({refit->micro_batches, static_cast<int>(refit->stages.size()),
                               s.sim.step_time_s, s.peak});
        if (s.peak <= memory && s.sim.step_time_s < best->sim.step_time_s) {
          best = std::move(s);
          candidates.push_back(std::move(*refit));
          best_index = candidates.size() - 1;
        }
      }
    }
    r.plan_s += std::chrono::duration<double>(Clock::now() - t0).count();
    r.rounds = round;
    r.planner_memory = o.memory_per_device;
    r.plan = std::move(candidates[best_index]);
    copy_statistics(r.plan, *plan);
    r.step = std::move(best->step);
    r.pipeline = std::move(best->pipeline);
    r.program = std::move(best->program);
    r.sim = std::move(best->sim);
    r.peak_memory_bytes = best->peak;
    if (r.peak_memory_bytes <= memory || round >= max_rounds) return r;
    // Plan again for less memory: the planner's own figure for its plan scaled by how far the
    // simulation exceeds it (so that plan no longer fits by the planner's count), and at least
    // the excess less than before.
    const double scaled = first_planned_peak > 0 && first_sim_peak > 0
                              ? 0.99 * memory * first_planned_peak / first_sim_peak
                              : o.memory_per_device;
    o.memory_per_device = std::min(o.memory_per_device - (r.peak_memory_bytes - memory), scaled);
    if (o.memory_per_device <= 0) return r;
    if (o.progress)
      o.progress(cat(" simulated peak ", r.peak_memory_bytes / 1e9, " GB exceeds ", memory / 1e9,
                     " GB; planning again for ", o.memory_per_device / 1e9, " GB"));
  }
}

}  // namespace alpa
