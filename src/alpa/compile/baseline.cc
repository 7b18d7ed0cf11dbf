#include "alpa/compile/baseline.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "alpa/inter/layer_clustering.h"
#include "alpa/support/thread_pool.h"

namespace alpa {
namespace {

// Degrees that divide n, ascending.
std::vector<int> divisors(int n) {
  std::vector<int> d;
  for (int i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}

// The data x tensor x pipeline shapes (and per-stage plans, schedules) the baseline searches;
// `layers`: the model's transformer layers (0: none to interleave).
std::vector<BaselineConfig> grid(BaselineKind kind, int devices, int devices_per_host,
                                 int max_stages, const BaselineOptions& o, int layers) {
  const bool moe = o.moe;
  std::vector<BaselineConfig> out;
  auto stage_kind = [](int dp, int tp) {
    if (dp > 1 && tp > 1) return ManualPlanKind::kTwoD;
    return tp > 1 ? ManualPlanKind::kTensorParallel : ManualPlanKind::kDataParallel;
  };
  switch (kind) {
    case BaselineKind::kMegatron:
      // Tensor parallelism inside a host (Megatron's rule), pipeline over what remains.
      for (int tp : divisors(std::min(devices, devices_per_host)))
        for (int pp : divisors(devices / tp)) {
          if (devices % (tp * pp) != 0 || pp > max_stages) continue;
          const int dp = devices / (tp * pp);
          out.push_back({dp, tp, pp, 1, stage_kind(dp, tp), false, RematMode::kFull});
          for (int v : o.interleave)
            if (v > 1 && pp > 1 && layers > 0 && layers % (pp * v) == 0 && pp * v <= max_stages)
              out.push_back({dp, tp, pp, 1, stage_kind(dp, tp), false, RematMode::kFull, v});
        }
      break;
    case BaselineKind::kDeepSpeed:
      for (ManualPlanKind z : {ManualPlanKind::kZero, ManualPlanKind::kZero3})
        for (RematMode r : {RematMode::kNone, RematMode::kFull})
          out.push_back({devices, 1, 1, 1, z, moe, r});
      break;
    case BaselineKind::kPpDp:
      for (int pp : divisors(devices))
        if (pp <= max_stages)
          out.push_back({devices / pp, 1, pp, 1, ManualPlanKind::kDataParallel, false});
      break;
  }
  return out;
}

double param_bytes(const Graph& g) {
  double b = 0;
  for (ParamRole r : {ParamRole::kWeight, ParamRole::kState})
    for (ValueId v : g.parameters(r))
      b += static_cast<double>(g.type(v).num_elements()) *
           static_cast<double>(dtype_bytes(g.type(v).dtype));
  return b;
}

// A lower bound of the weights and optimizer state one device holds under `c`.
double owned_lower_bound(BaselineKind kind, const BaselineConfig& c, double params) {
  switch (kind) {
    case BaselineKind::kMegatron: return params / (c.tp * c.pp);
    case BaselineKind::kDeepSpeed: return params / c.dp;
    case BaselineKind::kPpDp: return params / c.pp;
  }
  return 0;
}

std::string gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GB", bytes / 1e9);
  return buf;
}

// The model's layers (transformer blocks), 0 when the family has no such count.
int model_layers(const ModelSpec& m) {
  switch (m.family) {
    case ModelFamily::kGpt: return static_cast<int>(m.gpt.layers);
    case ModelFamily::kMoe: return static_cast<int>(m.moe.layers);
    default: return 0;
  }
}

// The configuration's stages compiled as fixed choices and simulated. With activation
// checkpointing, each stage is clustered into its share of the model's `layers` (so a layer's
// input is what stays stashed, as checkpointing per transformer block does). Interleaved
// (virtual_stages v > 1): pp x v stages of equal layers, stage c on the devices of c mod pp.
Result<Compiled> evaluate(const BaselineConfig& c, const TrainStep& step, const Cluster& cluster,
                          const BaselineOptions& o, int layers) {
  PipelinePlan plan;
  LayerClusteringOptions lo;
  const std::vector<ValueId> ops = forward_ops(step);
  const int v = std::max(1, c.virtual_stages);
  const int stages = c.pp * v;
  const int per_stage_layers =
      c.remat == RematMode::kNone && v == 1
          ? 1
          : std::clamp(layers / stages, 1, std::max(1, static_cast<int>(ops.size()) / stages));
  lo.num_layers = stages * per_stage_layers;
  ALPA_ASSIGN_OR_RETURN(plan.layers, cluster_layers(step.graph, ops, lo));
  plan.micro_batches = c.micro_batches;
  const int64_t per_stage = static_cast<int64_t>(c.dp) * c.tp;
  const int64_t dph = cluster.devices_per_host;
  for (int s = 0; s < stages; ++s) {
    PlannedStage ps;
    ps.first_layer = s * per_stage_layers;
    ps.last_layer = ps.first_layer + per_stage_layers - 1;
    ps.submesh = per_stage <= dph ? SubmeshShape{1, per_stage} : SubmeshShape{per_stage / dph, dph};
    ps.logical.shape = {c.dp, c.tp};
    ps.logical.batch_axis = 0;
    ps.first_device = static_cast<int>((s % c.pp) * per_stage);
    ps.remat = c.remat;
    plan.stages.push_back(ps);
  }
  auto hook = [&](int, const StageGraph& sg, const MeshShape& shape,
                  AutoShardingOptions& so) -> Status {
    ALPA_ASSIGN_OR_RETURN(AutoShardingOptions m,
                          manual_plan(sg.graph, shape, c.per_stage, c.expert_parallel));
    so.fixed = std::move(m.fixed);
    so.sharding.prefer_reduce_scatter = m.sharding.prefer_reduce_scatter;
    so.sharding.allow_mixed_mesh_shape = m.sharding.allow_mixed_mesh_shape;
    so.sharding.force_batch_dim_to_mesh_dim = m.sharding.force_batch_dim_to_mesh_dim;
    return ok_status();
  };
  // A hand-written system does not re-plan what its rules leave open to save memory: the ILP
  // chooses those layouts for time alone, and the configuration fits or not as simulated.
  CompileOptions co;
  co.pipeline = true;
  co.devices = cluster.num_devices();
  co.schedule = v > 1 ? ScheduleKind::kInterleaved1F1B : o.schedule;
  co.virtual_stages = v > 1 ? v : 0;
  co.sharding.memory_budget_bytes = std::numeric_limits<double>::max();
  return compile_stages(step, std::move(plan), cluster, co, hook);
}

}  // namespace

std::string_view baseline_name(BaselineKind k) {
  switch (k) {
    case BaselineKind::kMegatron: return "megatron";
    case BaselineKind::kDeepSpeed: return "deepspeed";
    case BaselineKind::kPpDp: return "pp-dp";
  }
  return "?";
}

Result<BaselineKind> parse_baseline(std::string_view name) {
  for (BaselineKind k : {BaselineKind::kMegatron, BaselineKind::kDeepSpeed, BaselineKind::kPpDp})
    if (baseline_name(k) == name) return k;
  return invalid_argument(
      cat("unknown baseline '", name, "'"),
      "baselines: megatron (data x tensor x pipeline grid), deepspeed (ZeRO-2/3 "
      "data parallel, expert parallel for MoE), pp-dp (pipeline + data parallel)");
}

std::string BaselineConfig::to_string() const {
  return cat("dp ", dp, " x tp ", tp, " x pp ", pp, ", ", micro_batches, " micro-batch",
             micro_batches > 1 ? "es" : "", " (", manual_plan_name(per_stage),
             expert_parallel ? " + expert parallel" : "",
             remat != RematMode::kNone ? cat(", ", remat_name(remat), " recompute") : "",
             virtual_stages > 1 ? cat(", interleaved x", virtual_stages) : "", ")");
}

Result<BaselineResult> plan_baseline(BaselineKind kind, const ModelSpec& model,
                                     const OptimizerOptions& optimizer, const Cluster& cluster,
                                     const BaselineOptions& o) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  const int devices = cluster.num_devices();
  if (o.batch < 1) return invalid_argument("a baseline needs a batch of at least 1");
  const double memory = o.memory_per_device > 0 ? o.memory_per_device : cluster.device.memory_bytes;
  // One training step per micro-batch count, built once for all shapes.
  std::mutex steps_mutex;
  std::map<int, std::shared_ptr<const TrainStep>> steps;
  auto step_for = [&](int B) -> Result<std::shared_ptr<const TrainStep>> {
    std::lock_guard<std::mutex> lock(steps_mutex);
    auto it = steps.find(B);
    if (it == steps.end()) {
      ALPA_ASSIGN_OR_RETURN(TrainStep s, micro_batch_step(model, optimizer, B));
      it = steps.emplace(B, std::make_shared<const TrainStep>(std::move(s))).first;
    }
    return it->second;
  };
  ALPA_ASSIGN_OR_RETURN(std::shared_ptr<const TrainStep> first, step_for(1));
  const double params = param_bytes(first->graph);
  const int max_stages = o.max_pipeline_stages > 0 ? o.max_pipeline_stages
                                                   : static_cast<int>(forward_ops(*first).size());
  std::mutex progress_mutex;
  auto progress = [&](const std::string& line) {
    if (!o.progress) return;
    std::lock_guard<std::mutex> lock(progress_mutex);
    o.progress(line);
  };

  // The fastest configuration that fits so far, by (step time, shape index): the choice does
  // not depend on which shape finishes first.
  std::mutex best_mutex;
  std::optional<Compiled> best;
  BaselineConfig best_config;
  size_t best_shape = 0;
  auto offer = [&](size_t shape, const BaselineConfig& c, Compiled&& e) {
    std::lock_guard<std::mutex> lock(best_mutex);
    const double t = e.sim->step_time_s;
    if (best && (t > best->sim->step_time_s || (t == best->sim->step_time_s && shape > best_shape)))
      return;
    best = std::move(e);
    best_config = c;
    best_shape = shape;
  };
  // One shape of the grid: its micro-batch sizes tried in order, its fastest offered.
  struct ShapeResult {
    std::vector<BaselineTrial> trials;
    double peak_seen = std::numeric_limits<double>::infinity();
  };
  auto run_shape = [&](size_t index, const BaselineConfig& shape) {
    ShapeResult out;
    const double bound = owned_lower_bound(kind, shape, params);
    if (bound > memory) {
      BaselineTrial t{
          shape, false, false,
          0,     bound, cat("weights and optimizer state alone need ", gb(bound), " per device")};
      t.config.micro_batches = 0;
      out.trials.push_back(std::move(t));
      out.peak_seen = bound;
      return out;
    }
    int worse = 0;
    double fastest = std::numeric_limits<double>::infinity();
    // Per-replica micro-batch sizes 1, 2, 4, ...: fewer, larger micro-batches.
    for (int64_t m = 1; o.batch % (static_cast<int64_t>(shape.dp) * m) == 0; m *= 2) {
      BaselineConfig c = shape;
      c.micro_batches = static_cast<int>(o.batch / (shape.dp * m));
      // Interleaving needs micro-batches a multiple of the pipeline stages (larger micro-batch
      // sizes only halve the count further).
      if (c.virtual_stages > 1 && c.micro_batches % c.pp != 0) break;
      BaselineTrial t{c, false, false, 0, 0, ""};
      Result<std::shared_ptr<const TrainStep>> step = step_for(c.micro_batches);
      Result<Compiled> e = step.ok() ? evaluate(c, **step, cluster, o, model_layers(model))
                                     : Result<Compiled>(step.status());
      if (!e.ok()) {
        t.note = e.status().message();
        progress(cat(baseline_name(kind), ": ", c.to_string(), ": ", t.note));
        out.trials.push_back(std::move(t));
        break;
      }
      const double peak = e->sim->peak_memory_bytes();
      t.simulated = true;
      t.step_time_s = e->sim->step_time_s;
      t.peak_memory_bytes = peak;
      t.fits = peak <= memory;
      if (!t.fits) t.note = cat("needs ", gb(peak), " per device");
      out.peak_seen = std::min(out.peak_seen, peak);
      progress(cat(baseline_name(kind), ": ", c.to_string(), ": step ", t.step_time_s, " s, peak ",
                   gb(peak), t.fits ? "" : " (does not fit)"));
      out.trials.push_back(t);
      if (!t.fits) break;  // larger micro-batches only need more
      if (t.step_time_s < fastest) {
        fastest = t.step_time_s;
        offer(index, c, std::move(*e));
        worse = 0;
      } else if (++worse >= 2) {
        break;
      }
    }
    return out;
  };

  // Shapes run side by side; their results are merged in grid order (ties: the first), so the
  // choice does not depend on which finishes first.
  const std::vector<BaselineConfig> shapes =
      grid(kind, devices, static_cast<int>(cluster.devices_per_host), max_stages, o,
           model_layers(model));
  std::vector<ShapeResult> results(shapes.size());
  run_side_by_side(shapes.size(), side_by_side_threads(o.threads),
                   [&](size_t i) { results[i] = run_shape(i, shapes[i]); });

  BaselineResult r;
  r.kind = kind;
  r.best = best_config;
  double best_peak_seen = std::numeric_limits<double>::infinity();
  for (ShapeResult& sr : results) {
    r.trials.insert(r.trials.end(), sr.trials.begin(), sr.trials.end());
    best_peak_seen = std::min(best_peak_seen, sr.peak_seen);
  }
  r.search_s = std::chrono::duration<double>(Clock::now() - t0).count();
  if (!best)
    return resource_exhausted(
        cat("no ", baseline_name(kind), " configuration fits ", gb(memory), " per device on ",
            devices, " devices of ", cluster.name,
            std::isfinite(best_peak_seen) ? cat(" (the smallest needs ", gb(best_peak_seen), ")")
                                          : std::string()),
        "use devices with more memory (--memory-budget), more devices, or a smaller model");
  r.compiled = std::move(*best);
  return r;
}

Result<BaselineResult> simulate_baseline_config(BaselineKind kind, const BaselineConfig& c,
                                                const ModelSpec& model,
                                                const OptimizerOptions& optimizer,
                                                const Cluster& cluster, const BaselineOptions& o) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point t0 = Clock::now();
  if (c.dp * c.tp * c.pp != cluster.num_devices() || c.micro_batches < 1)
    return invalid_argument(cat("the configuration ", c.to_string(), " does not cover the ",
                                cluster.num_devices(), " devices"));
  const double memory = o.memory_per_device > 0 ? o.memory_per_device : cluster.device.memory_bytes;
  BaselineResult r;
  r.kind = kind;
  r.best = c;
  ALPA_ASSIGN_OR_RETURN(TrainStep step, micro_batch_step(model, optimizer, c.micro_batches));
  ALPA_ASSIGN_OR_RETURN(r.compiled, evaluate(c, step, cluster, o, model_layers(model)));
  const double peak = r.compiled.sim->peak_memory_bytes();
  r.trials.push_back({c, true, peak <= memory, r.compiled.sim->step_time_s, peak, ""});
  r.search_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

}  // namespace alpa
