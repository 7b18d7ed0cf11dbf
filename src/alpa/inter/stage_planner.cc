#include "alpa/inter/stage_planner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <unordered_map>

#include "alpa/cluster/mesh.h"
#include "alpa/ir/text.h"
#include "alpa/support/check.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

uint64_t mix(uint64_t h, uint64_t x) {
  h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
  return h;
}
uint64_t hash_str(std::string_view s) {
  uint64_t h = 1469598103934665603ull;
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Per node of a graph: op, type, attributes and name with digit runs replaced, so nodes of
// repeated layers hash alike ("h12.attn.wq" -> "h#.attn.wq").
std::vector<uint64_t> node_hashes(const Graph& g) {
  std::vector<uint64_t> out(static_cast<size_t>(g.size()));
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& node = g.node(v);
    std::string name;
    for (char c : node.name) {
      if (std::isdigit(static_cast<unsigned char>(c))) {
        if (name.empty() || name.back() != '#') name += '#';
      } else {
        name += c;
      }
    }
    out[v] = hash_str(
        cat(op_name(node.op), "|", node.type.to_string(), "|", print_attrs(node.attrs), "|", name));
  }
  return out;
}

// A stage graph's structure: every node (by its step node's hash, or its own for received
// values), its operands, the outputs and the cost weights.
uint64_t stage_graph_hash(const StageGraph& sg, const std::vector<uint64_t>& step_hashes,
                          const Graph& step_graph) {
  uint64_t h = 0x51ed;
  const Graph& g = sg.graph;
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    const bool received =
        n.op == OpKind::kParameter && step_graph.node(sg.source[v]).op != OpKind::kParameter;
    h = mix(h, received ? hash_str(cat("recv|", n.type.to_string(), "|", print_attrs(n.attrs)))
                        : step_hashes[sg.source[v]]);
    for (ValueId o : n.operands) h = mix(h, static_cast<uint64_t>(o) + 1);
    h = mix(h, static_cast<uint64_t>(sg.weight[v] * 1e6));
  }
  for (const GraphOutput& o : g.outputs()) {
    h = mix(h, static_cast<uint64_t>(o.value) * 31 + 7);
    h = mix(h, static_cast<uint64_t>(o.alias + 2));
  }
  return h;
}

double local_bytes(const TensorType& t, const ShardingSpec& s, const MeshShape& mesh) {
  return static_cast<double>(num_elements(s.local_shape(t.shape, mesh)) * dtype_bytes(t.dtype));
}

// Seconds to move `bytes` across a stage boundary into a stage on `submesh`.
double boundary_seconds(double bytes, const SubmeshShape& submesh, const Cluster& c) {
  if (c.hosts > 1 && submesh.size() >= c.devices_per_host)
    return c.inter_host.latency +
           bytes / (c.inter_host.bandwidth * static_cast<double>(submesh.hosts));
  return c.intra_host.latency + bytes / (c.intra_host.bandwidth *
                                         static_cast<double>(std::max<int64_t>(1, submesh.size())));
}

// The cost of one stage graph on one mesh.
struct StageCost {
  bool feasible = false;
  double compute_s = 0, communication_s = 0, transfer_s = 0;
  double peak_bytes = 0;   // one micro-batch in flight, accumulators included
  double stash_bytes = 0;  // per extra micro-batch in flight
  int max_succ = -1;
  ShardingPlan plan;
  double time() const { return compute_s + communication_s + transfer_s; }
};

// Memory of a planned stage: accumulators and the per-micro-batch stash.
void stage_memory(const StageGraph& sg, const ShardingPlan& p, double* acc_bytes,
                  double* stash_bytes) {
  const Graph& g = sg.graph;
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  *acc_bytes = 0;
  *stash_bytes = 0;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (p.strategy[v] < 0) continue;  // free
    const TaskKind t = sg.task[v];
    if (t == TaskKind::kUpdate) continue;
    const bool param = g.node(v).op == OpKind::kParameter;
    bool read_by_b = false, read_by_u = false;
    for (ValueId u : users[v]) {
      read_by_b = read_by_b || sg.task[u] == TaskKind::kBackward;
      read_by_u = read_by_u || sg.task[u] == TaskKind::kUpdate;
    }
    const double bytes = local_bytes(g.type(v), p.specs[v], p.mesh);
    const bool per_mb = !param || g.node(v).attr<ParameterAttrs>().role == ParamRole::kInput;
    if (t == TaskKind::kForward && read_by_b && per_mb) *stash_bytes += bytes;
    if (!param && read_by_u) *acc_bytes += bytes;
  }
}

StageCost solve_stage(const StageGraph& sg, const Mesh& mesh, const Cluster& cluster,
                      const SubmeshShape& submesh, const AutoShardingOptions& base,
                      int micro_batches, double memory, int successors_needed,
                      bool include_transfer, int* solves) {
  StageCost c;
  AutoShardingOptions o = base;
  o.node_weight = sg.weight;
  o.memory_budget_bytes = 0;
  auto evaluate = [&](const ShardingPlan& p) {
    double acc = 0, stash = 0;
    stage_memory(sg, p, &acc, &stash);
    c.peak_bytes = p.peak_memory_bytes + acc;
    c.stash_bytes = stash;
    const double room = memory - c.peak_bytes;
    if (room < 0) return false;
    c.max_succ = stash > 0 ? static_cast<int>(std::min(1e6, std::floor(room / stash))) : 1000000;
    return c.max_succ >= successors_needed;
  };
  ++*solves;
  Result<ShardingPlan> p = auto_shard(sg.graph, mesh, cluster.device, o);
  bool ok = p.ok() && evaluate(*p);
  if (!ok && p.ok()) {
    // Re-plan under a budget that leaves room for the accumulators.
    double acc = 0, stash = 0;
    stage_memory(sg, *p, &acc, &stash);
    const double budget = memory - acc - successors_needed * stash;
    if (budget > 0) {
      o.memory_budget_bytes = budget;
      ++*solves;
      Result<ShardingPlan> q = auto_shard(sg.graph, mesh, cluster.device, o);
      if (q.ok() && evaluate(*q)) {
        p = std::move(q);
        ok = true;
      }
    }
  }
  if (!p.ok()) return c;
  c.plan = std::move(*p);
  c.feasible = ok || c.max_succ >= 0;
  c.compute_s = c.plan.compute_s;
  c.communication_s = c.plan.communication_s;
  if (include_transfer) {
    for (size_t j = 0; j < sg.received.size(); ++j) {
      const TensorType& t = sg.graph.type(sg.received[j]);
      const double bytes = static_cast<double>(num_elements(t.shape) * dtype_bytes(t.dtype));
      const bool per_mb =
          sg.graph.node(sg.received[j]).attr<ParameterAttrs>().role == ParamRole::kInput;
      c.transfer_s += boundary_seconds(bytes, submesh, cluster) / (per_mb ? 1.0 : micro_batches);
    }
  }
  return c;
}

// The stage of every forward op for stages over layer ranges.
std::vector<int> stages_from_layers(const TrainStep& step, const std::vector<ValueId>& ops,
                                    const std::vector<int>& layer_of,
                                    const std::vector<int>& stage_of_layer) {
  std::vector<int> fs(static_cast<size_t>(step.graph.size()), 0);
  for (size_t i = 0; i < ops.size(); ++i) fs[ops[i]] = stage_of_layer[layer_of[i]];
  return fs;
}

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> d;
  for (int64_t i = 1; i <= n; ++i)
    if (n % i == 0) d.push_back(i);
  return d;
}

struct CacheEntry {
  StageCost cost;
};

// Plans the stages for a fixed micro-batch count.
Result<PipelinePlan> plan_fixed(const TrainStep& step, const Cluster& cluster,
                                const PipelinePlannerOptions& o, int B, double memory) {
  PipelinePlan plan;
  plan.micro_batches = B;
  const Clock::time_point t0 = Clock::now();
  const std::vector<ValueId> ops = forward_ops(step);
  LayerClusteringOptions lo;
  lo.num_layers = o.num_layers;
  lo.eps = o.layer_eps;
  ALPA_ASSIGN_OR_RETURN(plan.layers, cluster_layers(step.graph, ops, lo));
  plan.clustering_s = since(t0);
  const int L = plan.layers.num_layers;

  // DP "submeshes": every (submesh shape, logical mesh) pair.
  const Clock::time_point t1 = Clock::now();
  std::vector<SubmeshShape> shapes = submesh_choices(cluster.hosts, cluster.devices_per_host);
  int64_t mb_size = 1;
  for (ValueId p : step.graph.parameters(ParamRole::kInput))
    if (step.graph.type(p).rank() > 0) mb_size = step.graph.type(p).shape[0];
  struct Config {
    SubmeshShape submesh;
    LogicalMeshChoice logical;
  };
  std::vector<Config> configs;
  for (const SubmeshShape& s : shapes)
    for (const LogicalMeshChoice& l : logical_mesh_choices(s, cluster.devices_per_host, mb_size))
      configs.push_back({s, l});
  StageDpRequest req;
  req.num_layers = L;
  req.hosts = cluster.hosts;
  req.devices_per_host = cluster.devices_per_host;
  req.micro_batches = B;
  for (const Config& c : configs) req.submeshes.push_back(c.submesh);
  req.reset_candidates();

  const double total_flops = std::max(1.0, [&] {
    double f = 0;
    for (double x : plan.layers.layer_flops) f += x;
    return f;
  }());
  std::vector<double> prefix(static_cast<size_t>(L) + 1, 0.0);
  for (int l = 0; l < L; ++l) prefix[l + 1] = prefix[l] + plan.layers.layer_flops[l];
  const std::vector<uint64_t> step_hashes = node_hashes(step.graph);
  const double devices = static_cast<double>(cluster.num_devices());
  std::unordered_map<uint64_t, StageCost> cache;
  std::vector<StageCost> kept;  // per candidate index (only for the chosen ones later)
  std::map<size_t, StageCost> costs;
  for (int l = 0; l < L; ++l) {
    for (int r = l; r < L; ++r) {
      const double share = (prefix[r + 1] - prefix[l]) / total_flops;
      std::vector<int> cfg_ids;
      for (size_t k = 0; k < configs.size(); ++k) {
        const double dshare = static_cast<double>(configs[k].submesh.size()) / devices;
        if (configs[k].submesh.size() == cluster.num_devices() && (l != 0 || r != L - 1)) continue;
        if (std::isfinite(o.imbalance_tolerance) && (dshare > share * (1 + o.imbalance_tolerance) ||
                                                     dshare < share / (1 + o.imbalance_tolerance)))
          continue;
        cfg_ids.push_back(static_cast<int>(k));
      }
      if (cfg_ids.empty()) continue;
      // The stage graph of layers [l, r] (stages before and after as neighbours).
      std::vector<int> stage_of_layer(static_cast<size_t>(L));
      const int mid = l > 0 ? 1 : 0;
      for (int x = 0; x < L; ++x) stage_of_layer[x] = x < l ? 0 : x <= r ? mid : mid + 1;
      const int S = mid + 1 + (r < L - 1 ? 1 : 0);
      const std::vector<int> fs =
          stages_from_layers(step, ops, plan.layers.layer_of, stage_of_layer);
      ALPA_ASSIGN_OR_RETURN(PipelineSplit split, split_train_step(step, fs, S));
      ALPA_ASSIGN_OR_RETURN(StageGraph sg, build_stage_graph(step, split, mid, B));
      const uint64_t gh = stage_graph_hash(sg, step_hashes, step.graph);
      for (int k : cfg_ids) {
        const Config& c = configs[static_cast<size_t>(k)];
        ++plan.candidates;
        uint64_t key = mix(gh, hash_str(cat(c.logical.shape[0], "x", c.logical.shape[1], "|",
                                            c.logical.batch_axis, "|", c.submesh.to_string())));
        auto it = cache.find(key);
        if (it == cache.end()) {
          Result<Mesh> mesh = make_mesh(cluster, c.logical.shape[0], c.logical.shape[1], 0);
          if (!mesh.ok()) continue;
          AutoShardingOptions so = o.sharding;
          so.sharding.force_batch_dim_to_mesh_dim = c.logical.batch_axis;
          StageCost cost = solve_stage(sg, *mesh, cluster, c.submesh, so, B, memory, 0,
                                       o.include_transfer_cost, &plan.intra_solves);
          cost.plan = ShardingPlan{};  // the plan is re-derived for the chosen stages
          it = cache.emplace(key, std::move(cost)).first;
        } else {
          ++plan.cache_hits;
        }
        const StageCost& cost = it->second;
        if (!cost.feasible) continue;
        StageCandidate& cand = req.at(l, r, k);
        cand.time = cost.time();
        cand.max_succ = cost.max_succ;
        costs[req.index(l, r, k)] = cost;
      }
    }
    if (o.progress)
      o.progress(cat("  micro-batches ", B, ": costed stages starting at layer ", l + 1, "/", L,
                     " (", plan.intra_solves, " intra-op solves, ", plan.cache_hits, " reused)"));
  }
  plan.stage_costs_s = since(t1);

  const Clock::time_point t2 = Clock::now();
  Result<StageDpSolution> sol = solve_stage_dp(req);
  plan.dp_s = since(t2);
  if (!sol.ok()) return sol.status();
  plan.predicted_step_time_s = sol->total_time;
  const int S = static_cast<int>(sol->stages.size());
  for (int i = 0; i < S; ++i) {
    const StageChoice& ch = sol->stages[i];
    PlannedStage ps;
    ps.first_layer = ch.first_layer;
    ps.last_layer = ch.last_layer;
    ps.submesh = configs[ch.submesh].submesh;
    ps.logical = configs[ch.submesh].logical;
    ps.first_device = sol->first_device[i];
    const StageCost& c = costs.at(req.index(ch.first_layer, ch.last_layer, ch.submesh));
    ps.time_s = c.time();
    ps.compute_s = c.compute_s;
    ps.communication_s = c.communication_s;
    ps.transfer_s = c.transfer_s;
    ps.stash_bytes = c.stash_bytes;
    ps.max_succ = c.max_succ;
    ps.peak_memory_bytes = c.peak_bytes + (S - 1 - i) * c.stash_bytes;
    plan.stages.push_back(ps);
  }
  return plan;
}

}  // namespace

std::vector<ValueId> forward_ops(const TrainStep& step) {
  std::vector<ValueId> ops;
  for (ValueId v = 0; v < step.graph.size(); ++v)
    if (step.phase[v] == StepPhase::kForward && step.graph.node(v).op != OpKind::kParameter)
      ops.push_back(v);
  return ops;
}

std::vector<int> forward_stages(const TrainStep& step, const PipelinePlan& plan) {
  const std::vector<ValueId> ops = forward_ops(step);
  std::vector<int> stage_of_layer(static_cast<size_t>(plan.layers.num_layers), 0);
  for (size_t s = 0; s < plan.stages.size(); ++s)
    for (int l = plan.stages[s].first_layer; l <= plan.stages[s].last_layer; ++l)
      if (l >= 0 && l < plan.layers.num_layers) stage_of_layer[l] = static_cast<int>(s);
  return stages_from_layers(step, ops, plan.layers.layer_of, stage_of_layer);
}

Result<PipelinePlan> plan_pipeline(const std::function<Result<TrainStep>(int)>& build_step,
                                   const Cluster& cluster, const PipelinePlannerOptions& options) {
  const Clock::time_point t0 = Clock::now();
  ALPA_RETURN_IF_ERROR(validate_cluster(cluster));
  const double memory =
      options.memory_per_device > 0 ? options.memory_per_device : cluster.device.memory_bytes;
  std::vector<int64_t> candidates;
  if (options.micro_batches > 0) {
    if (options.batch % options.micro_batches != 0)
      return invalid_argument(cat("--micro-batches ", options.micro_batches,
                                  " does not divide the batch of ", options.batch),
                              "pick a divisor of the batch");
    candidates = {options.micro_batches};
  } else {
    candidates = divisors(std::max<int64_t>(1, options.batch));
  }
  Result<PipelinePlan> best = not_found("no plan");
  Status last_error = ok_status();
  int worse = 0;
  std::vector<std::pair<int, double>> tried;
  for (int64_t B : candidates) {
    ALPA_ASSIGN_OR_RETURN(TrainStep step, build_step(static_cast<int>(B)));
    Result<PipelinePlan> p = plan_fixed(step, cluster, options, static_cast<int>(B), memory);
    if (!p.ok()) {
      last_error = p.status();
      tried.push_back({static_cast<int>(B), std::numeric_limits<double>::infinity()});
      if (options.progress)
        options.progress(cat("micro-batches ", B, ": no plan fits (", p.status().message(), ")"));
      continue;
    }
    tried.push_back({static_cast<int>(B), p->predicted_step_time_s});
    if (options.progress)
      options.progress(cat("micro-batches ", B, ": predicted step ", p->predicted_step_time_s,
                           " s with ", p->stages.size(), " stages"));
    if (!best.ok() || p->predicted_step_time_s < best->predicted_step_time_s) {
      // Keep the statistics of every candidate tried.
      if (best.ok()) {
        p->intra_solves += best->intra_solves;
        p->cache_hits += best->cache_hits;
        p->candidates += best->candidates;
        p->clustering_s += best->clustering_s;
        p->stage_costs_s += best->stage_costs_s;
        p->dp_s += best->dp_s;
      }
      best = std::move(p);
      worse = 0;
    } else {
      best->intra_solves += p->intra_solves;
      best->cache_hits += p->cache_hits;
      best->candidates += p->candidates;
      best->clustering_s += p->clustering_s;
      best->stage_costs_s += p->stage_costs_s;
      best->dp_s += p->dp_s;
      if (++worse >= 2) break;  // the step time has turned upwards
    }
  }
  if (!best.ok()) {
    if (last_error.code() == StatusCode::kResourceExhausted || last_error.ok())
      return resource_exhausted(
          cat("no pipeline plan fits ", memory / 1e9, " GB per device on ", cluster.num_devices(),
              " devices of ", cluster.name),
          "use more devices, a smaller batch or more micro-batches, or a larger --memory-budget");
    return last_error;
  }
  best->micro_batch_search = tried;
  best->total_s = since(t0);
  return best;
}

Result<MaterializedPipeline> materialize_pipeline(const TrainStep& step, const PipelinePlan& plan,
                                                  const Cluster& cluster,
                                                  const AutoShardingOptions& sharding) {
  const std::vector<ValueId> ops = forward_ops(step);
  if (plan.layers.layer_of.size() != ops.size())
    return invalid_argument("the pipeline plan was made for another training graph",
                            "re-plan for this model, batch and micro-batch count");
  const int S = static_cast<int>(plan.stages.size());
  if (S < 1) return invalid_argument("a pipeline plan needs at least one stage");
  // Stages cover the layers in order.
  int next = 0;
  for (int s = 0; s < S; ++s) {
    const PlannedStage& ps = plan.stages[s];
    if (ps.first_layer != next || ps.last_layer < ps.first_layer)
      return invalid_argument(cat("stage ", s, " covers layers ", ps.first_layer, "..",
                                  ps.last_layer, "; stages must cover layers 0..",
                                  plan.layers.num_layers - 1, " in order, each at least one"));
    next = ps.last_layer + 1;
  }
  if (next != plan.layers.num_layers)
    return invalid_argument(
        cat("the stages cover layers 0..", next - 1, " of ", plan.layers.num_layers));
  MaterializedPipeline m;
  ALPA_ASSIGN_OR_RETURN(m.split, split_train_step(step, forward_stages(step, plan), S));
  const double memory = cluster.device.memory_bytes;
  for (int s = 0; s < S; ++s) {
    const PlannedStage& ps = plan.stages[s];
    ALPA_ASSIGN_OR_RETURN(StageGraph sg, build_stage_graph(step, m.split, s, plan.micro_batches));
    Result<Mesh> mesh =
        make_mesh(cluster, ps.logical.shape[0], ps.logical.shape[1], ps.first_device);
    if (!mesh.ok()) return mesh.status().with_context(cat("stage ", s));
    AutoShardingOptions so = sharding;
    so.sharding.force_batch_dim_to_mesh_dim = ps.logical.batch_axis;
    // Hand-written layouts name step-graph values; the stage graph keeps their nodes' names,
    // and unnamed values are found by their step id.
    so.fixed.clear();
    for (const auto& [ref, spec] : ps.layouts) {
      ValueId sv = kNoValue;
      for (ValueId v = 0; v < sg.graph.size() && sv == kNoValue; ++v)
        if (sg.graph.node(v).op != OpKind::kParameter ||
            step.graph.node(sg.source[v]).op == OpKind::kParameter)
          if (value_ref(step.graph, sg.source[v]) == ref) sv = v;
      if (sv == kNoValue)
        return invalid_argument(cat("stage ", s, " has a layout for ", ref,
                                    ", which the stage does not compute or hold"));
      so.fixed[value_ref(sg.graph, sv)] = spec;
    }
    int solves = 0;
    StageCost c = solve_stage(sg, *mesh, cluster, ps.submesh, so, plan.micro_batches, memory,
                              S - 1 - s, true, &solves);
    if (c.plan.specs.empty()) {
      Result<ShardingPlan> p = auto_shard(sg.graph, *mesh, cluster.device, so);
      if (!p.ok()) return p.status().with_context(cat("stage ", s));
      c.plan = std::move(*p);
    }
    m.graphs.push_back(std::move(sg));
    m.plans.push_back(std::move(c.plan));
    m.placements.push_back({ps.logical.shape, ps.first_device});
  }
  return m;
}

}  // namespace alpa
