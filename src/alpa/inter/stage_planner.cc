#include "alpa/inter/stage_planner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <thread>
#include <unordered_map>

#include "alpa/cost/mesh_links.h"
#include "alpa/inter/stage_memory.h"
#include "alpa/ir/analysis.h"
#include "alpa/ir/text.h"
#include "alpa/support/check.h"
#include "alpa/support/hash.h"
#include "alpa/support/thread_pool.h"

namespace alpa {

std::string_view plan_space_name(PlanSpace s) {
  switch (s) {
    case PlanSpace::kFull: return "full";
    case PlanSpace::kIntraOnly: return "intra-only";
    case PlanSpace::kInterOnly: return "inter-only";
  }
  return "?";
}

Result<PlanSpace> parse_plan_space(std::string_view name) {
  for (PlanSpace s : {PlanSpace::kFull, PlanSpace::kIntraOnly, PlanSpace::kInterOnly})
    if (name == plan_space_name(s)) return s;
  return invalid_argument(cat("unknown plan space '", name, "'"), "full, intra-only or inter-only");
}
namespace {

std::string memory_text(double bytes, bool up);  // below

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
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
    h = hash_combine(
        h, received ? hash_string(cat("recv|", n.type.to_string(), "|", print_attrs(n.attrs)))
                    : step_hashes[sg.source[v]]);
    for (ValueId o : n.operands) h = hash_combine(h, static_cast<uint64_t>(o) + 1);
    h = hash_combine(h, static_cast<uint64_t>(sg.weight[v] * 1e6));
  }
  for (const GraphOutput& o : g.outputs()) {
    h = hash_combine(h, static_cast<uint64_t>(o.value) * 31 + 7);
    h = hash_combine(h, static_cast<uint64_t>(o.alias + 2));
  }
  return h;
}

// A stage graph's structure without its shapes: the same layers at another micro-batch size
// hash alike, so a plan of one may stand for the other (AutoShardingOptions::hint).
uint64_t stage_graph_shape_free_hash(const StageGraph& sg) {
  uint64_t h = 0x5f1e;
  const Graph& g = sg.graph;
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    h = hash_combine(h, hash_string(cat(op_name(n.op), "|", n.type.rank(), "|",
                                        static_cast<int>(n.type.dtype), "|", n.name)));
    for (ValueId o : n.operands) h = hash_combine(h, static_cast<uint64_t>(o) + 1);
  }
  for (const GraphOutput& o : g.outputs()) h = hash_combine(h, static_cast<uint64_t>(o.value) + 1);
  return h;
}

// Seconds to move `bytes` across a stage boundary into a stage on `submesh`: over the hosts'
// network cards when the stages sit on different hosts (each byte crosses once, the local
// all-gather restores the layout), else over the receiving devices' own links. Where the stages
// will sit is not known while candidates are costed: then a stage that fills whole hosts is
// taken to receive across hosts and a smaller one not (`across` unset).
double boundary_seconds(double bytes, const SubmeshShape& submesh, const Cluster& c,
                        std::optional<bool> across = std::nullopt) {
  if (across.value_or(c.hosts > 1 && submesh.size() >= c.devices_per_host))
    return c.inter_host.latency +
           bytes /
               (c.inter_host.bandwidth * static_cast<double>(std::max<int64_t>(1, submesh.hosts)));
  return c.intra_host.latency + bytes / (c.intra_host.bandwidth *
                                         static_cast<double>(std::max<int64_t>(1, submesh.size())));
}

// Whether two placed stages are on different hosts (stages hold disjoint devices, so a stage
// over several hosts is on other hosts than any other stage).
bool across_hosts(const PlannedStage& a, const PlannedStage& b, const Cluster& c) {
  auto hosts = [&](const PlannedStage& s) {
    return std::make_pair(s.first_device / c.devices_per_host,
                          (s.first_device + s.submesh.size() - 1) / c.devices_per_host);
  };
  return hosts(a) != hosts(b);
}

// Per value stage `s` receives (sg.received), whether its sender sits on another host.
std::vector<char> received_across_hosts(const StageGraph& sg, const PipelineSplit& split,
                                        const std::vector<PlannedStage>& stages, int s,
                                        const Cluster& c) {
  std::vector<char> across;
  for (int t : sg.received_transfer)
    across.push_back(across_hosts(stages[split.transfers[t].from_stage], stages[s], c));
  return across;
}

// The cost of one stage graph on one mesh.
struct StageCost {
  bool solved = false;  // the intra-op pass found a plan
  double compute_s = 0, communication_s = 0, transfer_s = 0;
  double peak_bytes = 0;    // one micro-batch in flight, accumulators included
  double acc_bytes = 0;     // gradient accumulators (held across micro-batches)
  double stash_bytes = 0;   // per extra micro-batch in flight
  StageMemoryParts memory;  // peak_bytes's parts (stage_memory.h)
  RematMode remat = RematMode::kNone;
  int full_layers = 0;  // the first layers recomputed fully (the others: `remat`)
  ShardingPlan plan;
  double time() const { return compute_s + communication_s + transfer_s; }
  // Later stages that fit in `memory` (-1: not even this stage alone).
  int max_succ(double memory) const {
    if (!solved) return -1;
    const double room = memory - peak_bytes;
    if (room < 0) return -1;
    return stash_bytes > 0 ? static_cast<int>(std::min(1e6, std::floor(room / stash_bytes)))
                           : 1000000;
  }
};

// The cost's memory from its parts (stage_memory.h): peak_bytes with one micro-batch in
// flight (the update's peak when larger, so max_succ errs on the safe side).
void set_memory(StageCost& c, const StageMemoryParts& m) {
  c.memory = m;
  c.acc_bytes = m.accumulators;
  c.stash_bytes = m.stash;
  c.peak_bytes = m.peak(1);
}

// A planned stage's time and memory from its cost, with `successors` later stages.
void set_figures(PlannedStage& ps, const StageCost& c, int successors, double memory) {
  ps.time_s = c.time();
  ps.compute_s = c.compute_s;
  ps.communication_s = c.communication_s;
  ps.transfer_s = c.transfer_s;
  ps.stash_bytes = c.stash_bytes;
  ps.remat = c.remat;
  ps.full_remat_layers = c.full_layers;
  ps.max_succ = c.max_succ(memory);
  ps.peak_memory_bytes = c.memory.peak(in_flight_1f1b(successors));
  ps.memory = c.memory.breakdown(in_flight_1f1b(successors));
}

// The pipeline step time of planned stages (pipeline_timing, stage_dp.h).
double predicted_step_time(const std::vector<PlannedStage>& stages, int micro_batches) {
  std::vector<StageCandidate> t;
  for (const PlannedStage& ps : stages) t.push_back({ps.time_s, 0, ps.transfer_s});
  return pipeline_timing(t, micro_batches).step;
}

// Intra-op options for a stage graph as its lowered programs run it: update nodes weighted
// 1/micro-batches, values sent to other stages leave whole (pipeline/program.h), and forward,
// backward and update are separate programs, so what crosses between them is stored; gradients
// are added into accumulators every micro-batch.
AutoShardingOptions stage_sharding_options(const StageGraph& sg, AutoShardingOptions o) {
  o.node_weight = sg.weight;
  o.whole_outputs = true;
  o.sharding.fusion_group.clear();
  for (TaskKind t : sg.task) o.sharding.fusion_group.push_back(static_cast<int>(t));
  o.accumulated = accumulated_values(sg);
  return o;
}

// The intra-op plan of a stage graph on a mesh (under a memory budget if > 0) and its cost.
// `received_across` (if given): per received value, whether it comes from another host.
StageCost solve_stage(const StageGraph& sg, const MeshLinks& mesh, const Cluster& cluster,
                      const SubmeshShape& submesh, const AutoShardingOptions& base,
                      int micro_batches, double budget, bool include_transfer, int* solves,
                      const std::vector<char>* received_across = nullptr) {
  StageCost c;
  AutoShardingOptions o = stage_sharding_options(sg, base);
  o.explain_infeasible_memory = false;
  if (budget > 0) o.memory_budget_bytes = budget;
  ++*solves;
  Result<ShardingPlan> p = auto_shard(sg.graph, mesh, cluster.device, o);
  if (!p.ok()) return c;
  c.solved = true;
  c.plan = std::move(*p);
  set_memory(c, stage_memory_parts(sg, c.plan, micro_batches));
  // Includes adding every micro-batch's gradients into the accumulators (the ILP's options).
  c.compute_s = c.plan.compute_s;
  c.communication_s = c.plan.communication_s;
  if (include_transfer) {
    for (size_t j = 0; j < sg.received.size(); ++j) {
      const TensorType& t = sg.graph.type(sg.received[j]);
      const double bytes = static_cast<double>(num_elements(t.shape) * dtype_bytes(t.dtype));
      const bool per_mb =
          sg.graph.node(sg.received[j]).attr<ParameterAttrs>().role == ParamRole::kInput;
      const double seconds =
          received_across != nullptr
              ? boundary_seconds(bytes, submesh, cluster, (*received_across)[j] != 0)
              : boundary_seconds(bytes, submesh, cluster);
      c.transfer_s += seconds / (per_mb ? 1.0 : micro_batches);
    }
  }
  return c;
}

// The memory budget of the intra-op ILP (its liveness over the whole stage graph) that should
// bring a stage over `memory` with `successors` later stages down to it: the ILP's own peak
// less the excess, as the stage's memory (stage_memory.h) counts it.
double ilp_budget(const StageCost& c, double memory, int successors) {
  const double excess = c.peak_bytes + successors * c.stash_bytes - memory;
  if (c.plan.peak_memory_bytes > 0) return c.plan.peak_memory_bytes - excess;
  return memory - c.acc_bytes - successors * c.stash_bytes;
}

// The stage's plan for `memory` with `successors` later stages: the unconstrained plan if it
// fits, else one planned under the budget that leaves room for them.
StageCost fit_stage(const StageGraph& sg, const MeshLinks& mesh, const Cluster& cluster,
                    const SubmeshShape& submesh, const AutoShardingOptions& base, int micro_batches,
                    double memory, int successors, bool include_transfer, int* solves,
                    const std::vector<char>* received_across = nullptr) {
  StageCost c = solve_stage(sg, mesh, cluster, submesh, base, micro_batches, 0, include_transfer,
                            solves, received_across);
  if (!c.solved || c.max_succ(memory) >= successors) return c;
  const double budget = ilp_budget(c, memory, successors);
  if (budget <= 0) return c;
  StageCost b = solve_stage(sg, mesh, cluster, submesh, base, micro_batches, budget,
                            include_transfer, solves, received_across);
  return b.solved ? b : c;
}

// The per-segment figures of every rematerialization mode (remat.h) of one micro-batch's step.
struct RematTable {
  RematSegments segments;
  RematSegmentStats none, selective, full;
  const RematSegmentStats& of(RematMode m) const {
    return m == RematMode::kFull ? full : m == RematMode::kSelective ? selective : none;
  }
};

RematTable remat_table(const TrainStep& step, const LayerClustering& layers) {
  RematTable t;
  t.segments = remat_segments(step, layers.layer_of, layers.num_layers);
  const std::vector<int>& seg = t.segments.of_node;
  const int n = t.segments.count();
  t.none = remat_segment_stats(step, seg, n, RematMode::kNone);
  t.selective = remat_segment_stats(step, seg, n, RematMode::kSelective);
  t.full = remat_segment_stats(step, seg, n, RematMode::kFull);
  return t;
}

// Layers [l, r] of a stage under `mode` (its first `full_layers` layers under full), priced
// from its plan without recomputation: the recomputed FLOPs add to its compute time at the
// plan's own seconds per FLOP; the stash shrinks by the modes' share (in the plan's layouts),
// and the working memory grows by the largest of the segments' recomputed values live at once
// (during a segment's backward).
StageCost with_remat(const StageCost& base, const RematTable& t, int l, int r, RematMode mode,
                     int full_layers = 0) {
  if (!base.solved || ((mode == RematMode::kNone || mode == RematMode::kAuto) && full_layers == 0))
    return base;
  const RematSegmentStats& none = t.none;
  const std::vector<int>& first = t.segments.first_of_layer;  // [L+1]
  const int split = first.at(static_cast<size_t>(l + full_layers));
  double stash0 = 0, stash1 = 0, flops = 0, extra = 0, recomputed_live = 0;
  for (int x = first.at(static_cast<size_t>(l)); x < first.at(static_cast<size_t>(r) + 1); ++x) {
    const RematSegmentStats& m = t.of(x < split ? RematMode::kFull : mode);
    stash0 += none.stash_bytes[x];
    stash1 += m.stash_bytes[x];
    flops += none.flops[x];
    extra += m.recompute_flops[x];
    recomputed_live = std::max(recomputed_live, m.recompute_peak_bytes[x]);
  }
  StageCost c = base;
  c.remat = mode;
  c.full_layers = full_layers;
  if (flops > 0) c.compute_s = base.compute_s * (1 + extra / flops);
  if (stash0 <= 0) return c;
  const double scale = base.stash_bytes / stash0;  // local bytes per byte
  StageMemoryParts parts = base.memory;
  parts.stash = stash1 * scale;
  parts.working += recomputed_live * scale;
  set_memory(c, parts);
  return c;
}

// The mode of layers [l, r] with `successors` later stages: the forced one, or (kAuto) none if
// it fits, else the fastest mode or mix of full and another mode that fits (none if nothing
// does).
StageCost choose_remat(const StageCost& base, const RematTable& t, int l, int r, RematMode policy,
                       double memory, int successors) {
  if (policy != RematMode::kAuto) return with_remat(base, t, l, r, policy);
  if (!base.solved || base.max_succ(memory) >= successors) return base;
  StageCost best = base;
  auto consider = [&](StageCost c) {
    if (c.max_succ(memory) < successors) return;
    if (best.max_succ(memory) < successors || c.time() < best.time()) best = std::move(c);
  };
  for (RematMode m : {RematMode::kSelective, RematMode::kFull})
    consider(with_remat(base, t, l, r, m));
  // Full recomputation of the first k layers only, the rest none or selective: the memory of
  // full where it is needed, the FLOPs of less elsewhere.
  for (RematMode m : {RematMode::kNone, RematMode::kSelective})
    for (int k = 1; k <= r - l; ++k) consider(with_remat(base, t, l, r, m, k));
  return best;
}

// Intra-op options for costing a candidate stage on a logical mesh: its batch axis, and the
// planner's per-candidate ILP time limit and gap.
AutoShardingOptions candidate_options(const PipelinePlannerOptions& o,
                                      const LogicalMeshChoice& logical) {
  AutoShardingOptions so = o.sharding;
  so.sharding.force_batch_dim_to_mesh_dim = logical.batch_axis;
  so.ilp.time_limit_s = std::min(so.ilp.time_limit_s, o.stage_ilp_time_limit_s);
  so.ilp.relative_gap = std::max(so.ilp.relative_gap, o.stage_ilp_relative_gap);
  return so;
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

// Intra-op results by (stage graph, mesh): unconstrained plans, and plans under a budget.
// Pointers into `base` stay valid (node-based map).
struct CostCache {
  std::unordered_map<uint64_t, StageCost> base;
  std::unordered_map<uint64_t, StageCost> budgeted;
  // Solved runs of repeated layers by (run structure, inner count 2 or 3, mesh): the cost and
  // the layer range it was solved for.
  struct Exemplar {
    const StageCost* cost;
    int first_layer, last_layer;
  };
  std::unordered_map<uint64_t, Exemplar> runs;
};

// Searched stage plans of one micro-batch count by (stage graph without shapes, mesh): the
// counts planned after it cost the same stages by them (AutoShardingOptions::hint) instead of
// searching again.
// Strategy names held once for every count (a hint names one per node of a stage graph, and
// the names are few: as strings, the hints of Wide-ResNet-13B on 64 GPUs took 460 MB).
class StrategyNames {
 public:
  std::vector<uint32_t> ids(const std::vector<std::string>& names) {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint32_t> out;
    out.reserve(names.size());
    for (const std::string& n : names) {
      const auto [it, added] = ids_.emplace(n, static_cast<uint32_t>(names_.size()));
      if (added) names_.push_back(&it->first);
      out.push_back(it->second);
    }
    return out;
  }
  std::vector<std::string> names(const std::vector<uint32_t>& ids) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> out;
    out.reserve(ids.size());
    for (uint32_t id : ids) out.push_back(*names_[id]);
    return out;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<const std::string*> names_;  // by id (the map's keys stay in place)
};
using StrategyHints = std::unordered_map<uint64_t, std::vector<uint32_t>>;
struct HintExchange {
  StrategyNames* names = nullptr;  // shared by the counts
  StrategyHints own;               // this count's searched plans
  // Counts finished before this one, nearest first.
  std::vector<const HintExchange*> earlier;
};

// The cost of a run with `extra` more repeated layers than `c3`, from the runs with 2 (c2) and
// 3 (c3): every per-layer quantity grows by c3 - c2 per layer.
StageCost affine(const StageCost& c2, const StageCost& c3, int extra) {
  StageCost c;
  c.solved = true;
  auto grow = [&](double a2, double a3) { return std::max(0.0, a3 + extra * (a3 - a2)); };
  c.compute_s = grow(c2.compute_s, c3.compute_s);
  c.communication_s = grow(c2.communication_s, c3.communication_s);
  c.transfer_s = grow(c2.transfer_s, c3.transfer_s);
  StageMemoryParts m;
  m.owned = grow(c2.memory.owned, c3.memory.owned);
  m.per_step = grow(c2.memory.per_step, c3.memory.per_step);
  m.accumulators = grow(c2.memory.accumulators, c3.memory.accumulators);
  m.stash = grow(c2.memory.stash, c3.memory.stash);
  m.received = grow(c2.memory.received, c3.memory.received);
  m.working = grow(c2.memory.working, c3.memory.working);
  m.forward_working = grow(c2.memory.forward_working, c3.memory.forward_working);
  m.update_working = grow(c2.memory.update_working, c3.memory.update_working);
  m.update_received = grow(c2.memory.update_received, c3.memory.update_received);
  m.update_held = grow(c2.memory.update_held, c3.memory.update_held);
  set_memory(c, m);
  return c;
}

// Per layer: a hash of its forward ops (op, type, attributes, digit-free name) and their
// operands (a position inside the layer, or the hash of an outside value), so repeated
// transformer layers hash alike.
std::vector<uint64_t> layer_hashes(const std::vector<ValueId>& ops, const LayerClustering& lc,
                                   const std::vector<uint64_t>& step_hashes, const Graph& g) {
  std::vector<uint64_t> h(static_cast<size_t>(lc.num_layers), 0x1a7e);
  std::unordered_map<ValueId, std::pair<int, int>> pos;  // op -> (layer, index within it)
  std::vector<int> count(static_cast<size_t>(lc.num_layers), 0);
  for (size_t i = 0; i < ops.size(); ++i) {
    const int layer = lc.layer_of[i];
    pos[ops[i]] = {layer, count[layer]++};
    uint64_t x = step_hashes[ops[i]];
    for (ValueId o : g.node(ops[i]).operands) {
      auto it = pos.find(o);
      const bool inside = it != pos.end() && it->second.first == layer;
      x = hash_combine(x, inside ? static_cast<uint64_t>(it->second.second) + 1
                                 : hash_combine(step_hashes[o], 0xe47));
    }
    h[layer] = hash_combine(h[layer], x);
  }
  return h;
}

}  // namespace

std::vector<double> heavy_op_seconds(const TrainStep& step, const LayerClustering& lc,
                                     const DeviceSpec& device) {
  const Graph& g = step.graph;
  const std::vector<ValueId> ops = forward_ops(step);
  std::vector<int> layer(static_cast<size_t>(g.size()), -1);
  for (size_t i = 0; i < ops.size(); ++i) layer[ops[i]] = lc.layer_of[i];
  double eff = device.gemm_efficiency.empty() ? 1.0 : 0.01;
  for (const auto& pt : device.gemm_efficiency) eff = std::max(eff, std::clamp(pt.y, 0.01, 1.0));
  std::vector<double> seconds(static_cast<size_t>(lc.num_layers), 0.0);
  for (ValueId v = 0; v < g.size(); ++v) {
    if (!is_heavy_op(g, v)) continue;
    const StepPhase phase = step.phase[v];
    const ValueId owner = phase == StepPhase::kForward    ? v
                          : phase == StepPhase::kBackward ? step.origin[v]
                                                          : kNoValue;
    if (owner == kNoValue || layer[owner] < 0) continue;
    seconds[layer[owner]] += node_flops(g, v) / (peak_flops(device, g.type(v).dtype) * eff);
  }
  return seconds;
}

namespace {

// The DP's stages costed where they sit: the DP costs a candidate before it knows its place,
// so it takes a stage that fills whole hosts to receive across hosts and a smaller one not;
// once placed, a stage whose sender is on another host receives over the network (plans on
// several hosts; the plan's figures and predicted step are replaced).
// Then, if o.balance_within_layers, stages cut between heavy ops inside layers (beyond Alpa,
// whose stages hold whole layers: a transformer's last stage then carries the LM head on top
// of as many blocks as the others). With the DP's stages and meshes kept:
// 1. Re-cut all: each stage's time per FLOP (its exact solve) gives the FLOPs it should hold
//    for all stages to take equally long; each boundary goes to the heavy-op cut that best
//    trades the imbalance left (FLOPs off target x time per FLOP) against moving the bytes
//    live there (forward and backward). Again from the new times, at most three rounds.
// 2. Move one boundary: the slowest stage hands FLOPs to its faster neighbour (so that both
//    would take equally long), at least one cut's worth; only these two are re-solved.
// Every re-cut is solved exactly and kept only if its stages fit and the predicted step is
// faster. A kept re-cut leaves one layer per stage.
class StageBalancer {
 public:
  StageBalancer(const TrainStep& step, const std::vector<ValueId>& ops, const Cluster& cluster,
                const PipelinePlannerOptions& o, double memory, PipelinePlan& plan)
      : step_(step),
        ops_(ops),
        cluster_(cluster),
        o_(o),
        memory_(memory),
        plan_(plan),
        S_(static_cast<int>(plan.stages.size())),
        B_(plan.micro_batches),
        costs_(static_cast<size_t>(S_)),
        all_(static_cast<size_t>(S_)) {
    std::iota(all_.begin(), all_.end(), 0);
  }

  Status run() {
    ALPA_ASSIGN_OR_RETURN(cuts_, heavy_op_cuts(step_.graph, ops_));
    before_.assign(ops_.size() + 1, 0.0);  // heavy-op FLOPs of ops [0, i)
    for (size_t i = 0; i < ops_.size(); ++i)
      before_[i + 1] =
          before_[i] + (is_heavy_op(step_.graph, ops_[i]) ? node_flops(step_.graph, ops_[i]) : 0);
    // start[s]: the position in `ops` where stage s begins; start[S] = ops.size().
    start_.assign(static_cast<size_t>(S_) + 1, static_cast<int>(ops_.size()));
    for (int s = S_ - 1; s >= 0; --s)
      for (size_t i = 0; i < ops_.size(); ++i)
        if (plan_.layers.layer_of[i] == plan_.stages[s].first_layer) {
          start_[s] = static_cast<int>(i);
          break;
        }
    time_.resize(static_cast<size_t>(S_));
    for (int s = 0; s < S_; ++s) time_[s] = plan_.stages[s].time_s;
    // The DP's stages costed where they are placed (which stages receive across hosts).
    if (cluster_.hosts > 1) {
      ALPA_ASSIGN_OR_RETURN(bool fits, solve(start_, all_));
      if (!fits) return ok_status();
      for (int s = 0; s < S_; ++s) {
        set_figures(plan_.stages[s], costs_[s], S_ - 1 - s, memory_);
        time_[s] = costs_[s].time();
      }
      plan_.predicted_step_time_s = predicted_step_time(plan_.stages, B_);
    }
    if (!o_.balance_within_layers) return ok_status();
    ALPA_ASSIGN_OR_RETURN(bool go_on, recut_all());
    return go_on ? move_boundaries() : ok_status();
  }

 private:
  double rate(int s) const {  // seconds per FLOP of stage s (0 when it has no FLOPs)
    const double f = before_[start_[s + 1]] - before_[start_[s]];
    return f > 0 ? time_[s] / f : 0.0;
  }

  // The `k` cuts in (lo, hi) positions nearest a FLOP target with the transfer they add, best
  // first (fewer if there are not as many).
  std::vector<size_t> choose(double target, int lo, int hi, double per_flop, int s,
                             size_t k) const {
    std::vector<std::pair<double, size_t>> scored;
    for (size_t c = 0; c < cuts_.size(); ++c) {
      if (cuts_[c].position <= lo || cuts_[c].position >= hi) continue;
      scored.push_back(
          {std::abs(cuts_[c].flops_before - target) * per_flop +
               2 * boundary_seconds(cuts_[c].live_bytes, plan_.stages[s].submesh, cluster_,
                                    across_hosts(plan_.stages[s - 1], plan_.stages[s], cluster_)),
           c});
    }
    k = std::min(k, scored.size());
    std::partial_sort(scored.begin(), scored.begin() + static_cast<std::ptrdiff_t>(k),
                      scored.end());
    std::vector<size_t> best;
    for (size_t i = 0; i < k; ++i) best.push_back(scored[i].second);
    return best;
  }

  // The layers of the cut `next` (one per stage).
  Status cut(const std::vector<int>& next) {
    ALPA_ASSIGN_OR_RETURN(layers_, layers_from_boundaries(step_.graph, ops_,
                                                          std::span<const int>(next).subspan(
                                                              1, static_cast<size_t>(S_ - 1))));
    return ok_status();
  }

  // Solves the stages `which` of the cut `next`; false if one does not fit.
  Result<bool> solve(const std::vector<int>& next, const std::vector<int>& which) {
    ALPA_RETURN_IF_ERROR(cut(next));
    std::vector<int> stage_of_layer(static_cast<size_t>(S_));
    std::iota(stage_of_layer.begin(), stage_of_layer.end(), 0);
    ALPA_ASSIGN_OR_RETURN(
        PipelineSplit split,
        split_train_step(step_, stages_from_layers(step_, ops_, layers_.layer_of, stage_of_layer),
                         S_));
    for (int s : which) {
      const PlannedStage& ps = plan_.stages[s];
      ALPA_ASSIGN_OR_RETURN(StageGraph sg, build_stage_graph(step_, split, s, B_));
      ALPA_ASSIGN_OR_RETURN(MeshLinks mesh, mesh_links(cluster_, ps.logical.shape, 0));
      const std::vector<char> across = received_across_hosts(sg, split, plan_.stages, s, cluster_);
      costs_[s] =
          fit_stage(sg, mesh, cluster_, ps.submesh, candidate_options(o_, ps.logical), B_, memory_,
                    S_ - 1 - s, o_.include_transfer_cost, &plan_.intra_solves, &across);
      if (costs_[s].max_succ(memory_) < S_ - 1 - s) return false;
    }
    return true;
  }

  // Keeps the solved stages `which` of `next` if the step is faster.
  bool keep_if_faster(const std::vector<int>& next, const std::vector<int>& which) {
    std::vector<double> t = time_;
    std::vector<PlannedStage> timed = plan_.stages;
    for (int s : which) {
      t[s] = timed[s].time_s = costs_[s].time();
      timed[s].transfer_s = costs_[s].transfer_s;
    }
    const double step_time = predicted_step_time(timed, B_);
    if (step_time >= plan_.predicted_step_time_s * (1 - 1e-9)) return false;
    plan_.layers = layers_;
    for (int s = 0; s < S_; ++s) plan_.stages[s].first_layer = plan_.stages[s].last_layer = s;
    for (int s : which) set_figures(plan_.stages[s], costs_[s], S_ - 1 - s, memory_);
    plan_.predicted_step_time_s = step_time;
    ++plan_.balance_rounds;
    time_ = std::move(t);
    start_ = next;
    return true;
  }

  // 1. Every boundary re-cut so that all stages would take equally long (at most 3 rounds).
  // False: balancing cannot go on (a stage without FLOPs, or no cut where one is needed).
  Result<bool> recut_all() {
    for (int round = 0; round < 3; ++round) {
      double per_time = 0;  // FLOPs per second, all stages
      for (int s = 0; s < S_; ++s) {
        if (rate(s) <= 0) return false;
        per_time += 1 / rate(s);
      }
      const double T = before_.back() / per_time;  // every stage's time when balanced
      std::vector<int> next = start_;
      double target = 0;
      for (int s = 1; s < S_; ++s) {
        target += T / rate(s - 1);
        const std::vector<size_t> c =
            choose(target, next[s - 1], start_[S_], std::max(rate(s - 1), rate(s)), s, 1);
        if (c.empty()) return false;
        next[s] = cuts_[c[0]].position;
      }
      if (next == start_) break;
      ALPA_ASSIGN_OR_RETURN(bool fits, solve(next, all_));
      if (!fits || !keep_if_faster(next, all_)) break;
    }
    return true;
  }

  // 2. The slowest stage hands work to a faster neighbour: the few cuts nearest the target are
  // each solved (a cut's cost to the stages is more than its transfer: a value leaving a stage
  // is gathered whole first), the fastest is kept.
  Status move_boundaries() {
    constexpr size_t kTries = 4;
    for (int move = 0; move < 2 * S_; ++move) {
      const int slow =
          static_cast<int>(std::max_element(time_.begin(), time_.end()) - time_.begin());
      std::vector<int> sides;
      if (slow > 0) sides.push_back(slow - 1);
      if (slow + 1 < S_) sides.push_back(slow + 1);
      std::sort(sides.begin(), sides.end(), [&](int a, int b) { return time_[a] < time_[b]; });
      bool moved = false;
      for (int n : sides) {
        const int b = std::max(slow, n);  // the boundary between them: where stage b starts
        const double per_flop = rate(slow) + rate(n);
        if (per_flop <= 0) continue;
        const double f = (time_[slow] - time_[n]) / per_flop;  // FLOPs to hand over
        const double at = before_[start_[b]];
        // Cuts on the side of the boundary that shrinks the slow stage.
        const int lo = n > slow ? start_[b - 1] : start_[b];
        const int hi = n > slow ? start_[b] : start_[b + 1];
        std::vector<int> best;
        std::vector<StageCost> best_costs;
        double best_worst = time_[slow];
        for (size_t c : choose(n > slow ? at - f : at + f, lo, hi, per_flop, b, kTries)) {
          std::vector<int> next = start_;
          next[b] = cuts_[c].position;
          ALPA_ASSIGN_OR_RETURN(bool fits, solve(next, {b - 1, b}));
          const double worst = std::max(costs_[b - 1].time(), costs_[b].time());
          if (fits && worst < best_worst) {
            best_worst = worst;
            best = next;
            best_costs = {costs_[b - 1], costs_[b]};
          }
        }
        if (best.empty()) continue;
        costs_[b - 1] = best_costs[0];
        costs_[b] = best_costs[1];
        ALPA_RETURN_IF_ERROR(cut(best));
        if (keep_if_faster(best, {b - 1, b})) {
          moved = true;
          break;
        }
      }
      if (!moved) break;
    }
    return ok_status();
  }

  const TrainStep& step_;
  const std::vector<ValueId>& ops_;
  const Cluster& cluster_;
  const PipelinePlannerOptions& o_;
  const double memory_;
  PipelinePlan& plan_;
  const int S_, B_;
  std::vector<OpCut> cuts_;
  std::vector<double> before_, time_;
  std::vector<int> start_;
  LayerClustering layers_;
  std::vector<StageCost> costs_;
  std::vector<int> all_;
};

Status place_and_balance_stages(const TrainStep& step, const std::vector<ValueId>& ops,
                                const Cluster& cluster, const PipelinePlannerOptions& o,
                                double memory, PipelinePlan& plan) {
  if (plan.stages.size() < 2) return ok_status();
  // The balancer re-solves stages without recomputation: stages that recompute keep the DP's
  // boundaries and figures.
  if (o.remat == RematMode::kFull || o.remat == RematMode::kSelective) return ok_status();
  for (const PlannedStage& ps : plan.stages)
    if (ps.remat != RematMode::kNone || ps.full_remat_layers > 0) return ok_status();
  const Clock::time_point t0 = Clock::now();
  const Status st = StageBalancer(step, ops, cluster, o, memory, plan).run();
  plan.balance_s += since(t0);
  return st;
}

// The layers a training step's forward operators are clustered into.
Result<LayerClustering> choose_layers(const TrainStep& step, const std::vector<ValueId>& ops,
                                      const PipelinePlannerOptions& o,
                                      const std::vector<uint64_t>& step_hashes) {
  LayerClusteringOptions lo;
  lo.num_layers = o.num_layers;
  lo.max_layers = o.max_auto_layers;
  lo.eps = o.layer_eps;
  ALPA_ASSIGN_OR_RETURN(LayerClustering layers, cluster_layers(step.graph, ops, lo));
  if (o.num_layers != 0 || !o.extrapolate_repeated_layers) return layers;
  // A stack of repeated blocks (transformers, MoE) is cut at block boundaries with the same
  // blocks per layer, so that equal stages exist (as Megatron-LM forms them) and runs of
  // identical layers are costed by extrapolation. Otherwise prefer a layer count (down to
  // half the automatic one) whose inner layers are identical, as Alpa's benchmark suites
  // choose theirs.
  Result<LayerClustering> blocks = cluster_repeated_blocks(step.graph, ops, o.max_block_layers);
  if (blocks.ok() && blocks->num_layers >= 4) layers = std::move(*blocks);
  auto uniform = [&](const LayerClustering& lc) {
    const std::vector<uint64_t> h = layer_hashes(ops, lc, step_hashes, step.graph);
    if (lc.num_layers < 4) return false;
    for (int i = 2; i + 1 < lc.num_layers; ++i)
      if (h[i] != h[1]) return false;
    return true;
  };
  if (uniform(layers)) return layers;
  for (int n = layers.num_layers - 1; n >= std::max(4, layers.num_layers / 2); --n) {
    LayerClusteringOptions fixed = lo;
    fixed.num_layers = n;
    Result<LayerClustering> c = cluster_layers(step.graph, ops, fixed);
    if (c.ok() && uniform(*c)) return std::move(*c);
  }
  return layers;
}

// A stage's place in the DP: a submesh shape and a logical view of it.
struct MeshConfig {
  SubmeshShape submesh;
  LogicalMeshChoice logical;
};

// Every (submesh shape, logical mesh) pair of the plan space.
Result<std::vector<MeshConfig>> mesh_configs(const TrainStep& step, const Cluster& cluster,
                                             PlanSpace space) {
  std::vector<SubmeshShape> shapes = submesh_choices(cluster.hosts, cluster.devices_per_host);
  if (space != PlanSpace::kFull) {
    const int64_t want = space == PlanSpace::kIntraOnly ? cluster.num_devices() : 1;
    std::erase_if(shapes, [&](const SubmeshShape& s) { return s.size() != want; });
  }
  int64_t mb_size = 1;
  for (ValueId p : step.graph.parameters(ParamRole::kInput))
    if (step.graph.type(p).rank() > 0) mb_size = step.graph.type(p).shape[0];
  std::vector<MeshConfig> configs;
  for (const SubmeshShape& s : shapes)
    for (const LogicalMeshChoice& l : logical_mesh_choices(s, cluster.devices_per_host, mb_size))
      configs.push_back({s, l});
  if (configs.empty())
    return failed_precondition(cat("no submesh of ", cluster.num_devices(),
                                   " devices is allowed in the plan space ",
                                   plan_space_name(space)));
  return configs;
}

// Plans the stages for a fixed micro-batch count and memory per device (plan_pipeline runs
// one per count): layers, the cost of every (layer range, mesh) candidate, the stage DP with
// exact re-checks of the stages it picks, and the boundaries balanced within layers.
class FixedPlanner {
 public:
  FixedPlanner(const TrainStep& step, const Cluster& cluster, const PipelinePlannerOptions& o,
               int B, double memory, CostCache& cache, const std::atomic<bool>* cancel,
               double step_bound, HintExchange* hints)
      : step_(step),
        cluster_(cluster),
        o_(o),
        B_(B),
        memory_(memory),
        step_bound_(step_bound),
        cache_(cache),
        cancel_(cancel),
        hints_(hints) {}

  // Whether the plan failed because every plan left was bounded out (slower than the bound).
  bool slower() const { return slower_; }

  Result<PipelinePlan> plan() {
    plan_.micro_batches = B_;
    const Clock::time_point t0 = Clock::now();
    ops_ = forward_ops(step_);
    step_hashes_ = structural_node_hashes(step_.graph);
    ALPA_ASSIGN_OR_RETURN(plan_.layers, choose_layers(step_, ops_, o_, step_hashes_));
    plan_.clustering_s = since(t0);
    L_ = plan_.layers.num_layers;
    if (o_.remat != RematMode::kNone) remat_ = remat_table(step_, plan_.layers);
    const std::vector<double> heavy = heavy_op_seconds(step_, plan_.layers, cluster_.device);
    heavy_prefix_.assign(static_cast<size_t>(L_) + 1, 0.0);
    for (int l = 0; l < L_; ++l) heavy_prefix_[l + 1] = heavy_prefix_[l] + heavy[l];
    const Clock::time_point t1 = Clock::now();
    ALPA_ASSIGN_OR_RETURN(configs_, mesh_configs(step_, cluster_, o_.space));
    ALPA_RETURN_IF_ERROR(cost_candidates());
    plan_.stage_costs_s = since(t1);
    const Clock::time_point t2 = Clock::now();
    Result<StageDpSolution> sol = solve_and_verify();
    plan_.dp_s = since(t2) - plan_.verify_s;
    if (!sol.ok() && plan_.slower > 0) {
      slower_ = true;
      return failed_precondition(cat("slower: no plan can beat ", step_bound_, " s per step (",
                                     plan_.slower, " of ", plan_.candidates,
                                     " candidate stages are slower alone)"));
    }
    if (!sol.ok()) {
      if (too_large_ > 0 || !exact_costs_.empty())
        return resource_exhausted(
            cat("no pipeline plan fits in memory (", too_large_, " of ", plan_.candidates,
                " candidate stages do not fit",
                std::isfinite(least_excess_)
                    ? cat("; the closest needs ", memory_text(least_excess_, true),
                          " more than the ", memory_text(memory_, false), " per device")
                    : std::string(),
                ")"));
      return sol.status();
    }
    plan_.predicted_step_time_s = sol->total_time;
    const int S = static_cast<int>(sol->stages.size());
    for (int i = 0; i < S; ++i) {
      const StageChoice& ch = sol->stages[i];
      PlannedStage ps;
      ps.first_layer = ch.first_layer;
      ps.last_layer = ch.last_layer;
      ps.submesh = configs_[ch.submesh].submesh;
      ps.logical = configs_[ch.submesh].logical;
      ps.first_device = sol->first_device[i];
      set_figures(ps, *costs_.at(req_.index(ch.first_layer, ch.last_layer, ch.submesh)), S - 1 - i,
                  memory_);
      plan_.stages.push_back(ps);
    }
    ALPA_RETURN_IF_ERROR(place_and_balance_stages(step_, ops_, cluster_, o_, memory_, plan_));
    if (o_.progress && plan_.balance_rounds > 0)
      o_.progress(cat("  micro-batches ", B_,
                      ": stage boundaries balanced within layers, predicted step ",
                      plan_.predicted_step_time_s, " s"));
    return std::move(plan_);
  }

 private:
  // The stage graph of layers [l, r] (stages before and after as neighbours) and its
  // structural hash, built when an intra-op solve needs it (the last few are kept).
  struct RangeGraph {
    std::shared_ptr<const StageGraph> graph;
    uint64_t hash = 0;
    uint64_t shape_free = 0;  // stage_graph_shape_free_hash
  };

  Result<RangeGraph> range_graph(int l, int r) {
    auto it = graphs_.find({l, r});
    if (it != graphs_.end()) return it->second;
    std::vector<int> stage_of_layer(static_cast<size_t>(L_));
    const int mid = l > 0 ? 1 : 0;
    for (int x = 0; x < L_; ++x) stage_of_layer[x] = x < l ? 0 : x <= r ? mid : mid + 1;
    const int S = mid + 1 + (r < L_ - 1 ? 1 : 0);
    const std::vector<int> fs =
        stages_from_layers(step_, ops_, plan_.layers.layer_of, stage_of_layer);
    ALPA_ASSIGN_OR_RETURN(PipelineSplit split, split_train_step(step_, fs, S));
    ALPA_ASSIGN_OR_RETURN(StageGraph g, build_stage_graph(step_, split, mid, B_));
    RangeGraph rg;
    rg.hash = stage_graph_hash(g, step_hashes_, step_.graph);
    if (hints_ != nullptr) rg.shape_free = stage_graph_shape_free_hash(g);
    rg.graph = std::make_shared<const StageGraph>(std::move(g));
    if (graphs_.size() > 64) graphs_.clear();
    graphs_[{l, r}] = rg;
    return rg;
  }

  // The configurations a range [l, r] may take, by the share of the devices and FLOPs.
  std::vector<int> configs_for(int l, int r) const {
    const double share = (prefix_[r + 1] - prefix_[l]) / total_flops_;
    const double devices = static_cast<double>(cluster_.num_devices());
    std::vector<int> ids;
    for (size_t k = 0; k < configs_.size(); ++k) {
      const double dshare = static_cast<double>(configs_[k].submesh.size()) / devices;
      // A stage on the whole cluster is the whole model (Alpa prunes the same way).
      if ((configs_[k].submesh.size() == cluster_.num_devices()) != (l == 0 && r == L_ - 1))
        continue;
      if (std::isfinite(o_.imbalance_tolerance) &&
          (dshare > share * (1 + o_.imbalance_tolerance) ||
           dshare < share / (1 + o_.imbalance_tolerance))) {
        ++imbalance_skipped_;
        continue;
      }
      ids.push_back(static_cast<int>(k));
    }
    return ids;
  }

  // Costs every (layer range, configuration) candidate into the DP request, ranges by
  // increasing length, so that the short ranges a long one extrapolates from come first.
  Status cost_candidates() {
    req_.num_layers = L_;
    req_.hosts = cluster_.hosts;
    req_.devices_per_host = cluster_.devices_per_host;
    req_.micro_batches = B_;
    for (const MeshConfig& c : configs_) req_.submeshes.push_back(c.submesh);
    req_.reset_candidates();
    never_fits_.assign(req_.candidates.size(), 0);
    total_flops_ = 0;
    for (double x : plan_.layers.layer_flops) total_flops_ += x;
    total_flops_ = std::max(1.0, total_flops_);
    prefix_.assign(static_cast<size_t>(L_) + 1, 0.0);
    for (int l = 0; l < L_; ++l) prefix_[l + 1] = prefix_[l] + plan_.layers.layer_flops[l];
    layer_hash_ = layer_hashes(ops_, plan_.layers, step_hashes_, step_.graph);
    for (int n = 1; n <= L_; ++n) {
      std::vector<std::vector<int>> ids;
      for (int l = 0; l + n - 1 < L_; ++l) ids.push_back(configs_for(l, l + n - 1));
      ALPA_RETURN_IF_ERROR(solve_side_by_side(n, ids));
      for (int l = 0; l + n - 1 < L_; ++l)
        for (int k : ids[static_cast<size_t>(l)]) {
          if (cancel_ != nullptr && cancel_->load())
            return failed_precondition("planning of this micro-batch count was abandoned");
          ALPA_RETURN_IF_ERROR(cost_candidate(l, l + n - 1, k));
        }
      if (o_.progress)
        o_.progress(cat("  micro-batches ", B_, ": costed stages of ", n, "/", L_, " layers (",
                        plan_.intra_solves, " intra-op solves, ", plan_.cache_hits, " reused, ",
                        plan_.extrapolated, " extrapolated)"));
    }
    return ok_status();
  }

  // The intra-op solves the candidates of length n will need without a budget (those not
  // extrapolated from repeated layers, not cached), solved on `o_.solve_threads` threads into
  // the cache before the candidates are costed in order, so the plan is the one a single
  // thread finds. Stage graphs are built here, in order; only the ILPs run side by side.
  Status solve_side_by_side(int n, const std::vector<std::vector<int>>& ids) {
    const int threads = std::max(1, o_.solve_threads);
    if (threads <= 1) return ok_status();
    struct Job {
      std::shared_ptr<const StageGraph> graph;
      MeshLinks mesh;
      AutoShardingOptions options;
      SubmeshShape submesh;
      uint64_t key = 0, hint_key = 0;
      const std::vector<uint32_t>* hint = nullptr;
      std::vector<uint32_t> searched;  // the layouts, when searched
      StageCost cost;
      int solves = 0, reused = 0;
      bool done = false;
    };
    std::vector<Job> jobs;
    std::set<uint64_t> queued;
    for (int l = 0; l + n - 1 < L_; ++l) {
      const int r = l + n - 1;
      if (may_extrapolate(run_key(l, r), l, r)) continue;
      for (int k : ids[static_cast<size_t>(l)]) {
        if (never_fits(l, r, k) || beyond_bound(l, r, k)) continue;
        const MeshConfig& c = configs_[static_cast<size_t>(k)];
        Result<MeshLinks> mesh = mesh_links(cluster_, c.logical.shape, 0);
        if (!mesh.ok()) continue;
        ALPA_ASSIGN_OR_RETURN(RangeGraph rg, range_graph(l, r));
        const uint64_t key = hash_combine(rg.hash, config_key(c));
        if (cache_.base.count(key) || !queued.insert(key).second) continue;
        const uint64_t hint_key = layouts_key(rg, config_key(c), false);
        jobs.push_back({rg.graph,
                        std::move(*mesh),
                        candidate_options(o_, c.logical),
                        c.submesh,
                        key,
                        hint_key,
                        hint_for(hint_key, l, r),
                        {},
                        StageCost{},
                        0,
                        0,
                        false});
      }
    }
    if (jobs.size() < 2) return ok_status();
    run_side_by_side(jobs.size(), threads, [&](size_t j) {
      if (cancel_ != nullptr && cancel_->load()) return;
      Job& job = jobs[j];
      job.cost = cost_stage(*job.graph, job.hint, job.mesh, job.submesh, job.options, 0,
                            &job.solves, &job.reused, &job.searched);
      job.cost.plan = ShardingPlan{};  // as solve_range keeps it
      job.done = true;
    });
    for (Job& job : jobs) {
      if (!job.done) continue;  // abandoned
      plan_.intra_solves += job.solves;
      plan_.reused_across_counts += job.reused;
      keep_hint(job.hint_key, std::move(job.searched));
      cache_.base.emplace(job.key, std::move(job.cost));
      solved_ahead_.insert(job.key);
    }
    return ok_status();
  }

  // Whether layers [l, r] on configuration k cannot fit even alone because a range inside it
  // on the same configuration could not, with recomputation and under the memory budget: a
  // stage holding more layers holds at least their weights, state and activations, so its
  // solves are skipped (ranges are costed by increasing length, so both ranges one layer
  // shorter are known).
  bool never_fits(int l, int r, int k) const {
    if (l == r || never_fits_.empty() || !o_.prune_ranges_that_cannot_fit) return false;
    return never_fits_[req_.index(l, r - 1, k)] != 0 || never_fits_[req_.index(l + 1, r, k)] != 0;
  }

  // Whether no plan with layers [l, r] on configuration k can beat the step bound: every stage
  // j of a plan takes at least B times its time per micro-batch less receiving
  // (pipeline_timing: the latency holds one, the period at least t - x of each stage), at
  // least its heavy ops' time over its devices (or `busy`, its unconstrained plan's t - x,
  // when known: a memory budget only adds); the other stages share the other devices, so one
  // of them takes at least the rest of the model's heavy ops over those.
  bool beyond_bound(int l, int r, int k, double busy = 0) const {
    if (!std::isfinite(step_bound_)) return false;
    const double D = static_cast<double>(cluster_.num_devices());
    const double d = static_cast<double>(configs_[static_cast<size_t>(k)].submesh.size());
    const double own = heavy_prefix_[r + 1] - heavy_prefix_[l];
    const double rest = heavy_prefix_[L_] - own;
    double slowest = std::max(own / d, busy);
    if (d < D) slowest = std::max(slowest, rest / (D - d));
    return B_ * slowest >= step_bound_;
  }

  // Whether [l, r] with this run key is costed from its runs of 2 and 3 repeated layers
  // (when those are solved) rather than solved itself.
  bool may_extrapolate(uint64_t run_key, int l, int r) const {
    return run_key != 0 && r - l - 1 >= 4 && o_.extrapolate_repeated_layers;
  }

  static uint64_t config_key(const MeshConfig& c) {
    return hash_string(cat(c.logical.shape[0], "x", c.logical.shape[1], "|", c.logical.batch_axis,
                           "|", c.submesh.to_string()));
  }

  // Repeated layers: first layer, k copies of one layer, last layer. The key of [l, r]'s run
  // structure, or 0 when its inner layers are not all the same.
  uint64_t run_key(int l, int r) const {
    bool uniform = r - l + 1 >= 4;
    for (int x = l + 2; uniform && x < r; ++x) uniform = layer_hash_[x] == layer_hash_[l + 1];
    if (!uniform) return 0;
    return hash_combine(hash_combine(hash_combine(hash_combine(hash_combine(layer_hash_[l], l == 0),
                                                               layer_hash_[l + 1]),
                                                  layer_hash_[r]),
                                     r == L_ - 1),
                        0x7275);
  }

  // The cost of one candidate: solved, or extrapolated for long runs of repeated layers (k = 2
  // and k = 3 are solved; longer runs are affine in k: merged layers take the same strategies).
  Status cost_candidate(int l, int r, int k) {
    const MeshConfig& c = configs_[static_cast<size_t>(k)];
    ++plan_.candidates;
    if (never_fits(l, r, k)) {
      ++too_large_;
      ++plan_.pruned;
      never_fits_[req_.index(l, r, k)] = 1;
      return ok_status();
    }
    if (beyond_bound(l, r, k)) {
      ++plan_.slower;
      return ok_status();
    }
    Candidate cand{l, r, c, run_key(l, r), config_key(c)};
    Result<MeshLinks> mesh = mesh_links(cluster_, c.logical.shape, 0);
    if (!mesh.ok()) return ok_status();
    cand.mesh = &*mesh;
    const AutoShardingOptions so = candidate_options(o_, c.logical);
    cand.options = &so;
    const int k_inner = r - l - 1;
    const StageCost* cost = nullptr;
    const CostCache::Exemplar* run2 = nullptr;
    const CostCache::Exemplar* run3 = nullptr;
    if (may_extrapolate(cand.run_key, l, r)) {
      ALPA_ASSIGN_OR_RETURN(const CostCache::Exemplar* e2, exemplar(cand, 2));
      ALPA_ASSIGN_OR_RETURN(const CostCache::Exemplar* e3, exemplar(cand, 3));
      if (e2 != nullptr && e3 != nullptr && e2->cost->solved && e3->cost->solved) {
        run2 = e2;
        run3 = e3;
        extrapolated_.push_back(
            std::make_unique<StageCost>(affine(*run2->cost, *run3->cost, k_inner - 3)));
        cost = extrapolated_.back().get();
        ++plan_.extrapolated;
      }
    }
    if (cost == nullptr) {
      ALPA_ASSIGN_OR_RETURN(cost, solve_range(cand, l, r, 0));
      if (cand.run_key != 0 && (k_inner == 2 || k_inner == 3))
        cache_.runs.emplace(hash_combine(hash_combine(cand.run_key, k_inner), cand.config_key),
                            CostCache::Exemplar{cost, l, r});
    }
    if (cost->solved && o_.remat != RematMode::kNone) {
      // Recomputation where the stage would not fit with as many later stages as could follow.
      const int need =
          std::min(L_ - 1 - r, static_cast<int>(cluster_.num_devices() - c.submesh.size()));
      StageCost chosen = choose_remat(*cost, remat_, l, r, o_.remat, memory_, need);
      if (chosen.remat != RematMode::kNone || chosen.full_layers > 0) {
        extrapolated_.push_back(std::make_unique<StageCost>(std::move(chosen)));
        cost = extrapolated_.back().get();
      }
    }
    const bool memory_bound = cost->solved && cost->max_succ(memory_) < 0;
    // Planning it under a memory budget (the slowest solves) is not needed if it is too slow.
    if (memory_bound && beyond_bound(l, r, k, cost->time() - cost->transfer_s)) {
      ++plan_.slower;
      return ok_status();
    }
    if (memory_bound) {
      ALPA_ASSIGN_OR_RETURN(cost, fit_candidate(cand, cost, run2, run3));
    }
    const int succ = cost->max_succ(memory_);
    if (succ < 0) {
      ++too_large_;
      if (memory_bound) never_fits_[req_.index(l, r, k)] = 1;
      if (cost->solved) least_excess_ = std::min(least_excess_, cost->peak_bytes - memory_);
      return ok_status();
    }
    StageCandidate& dp = req_.at(l, r, k);
    dp.time = cost->time();
    dp.transfer = cost->transfer_s;
    dp.max_succ = succ;
    costs_[req_.index(l, r, k)] = cost;
    return ok_status();
  }

  // A chosen stage solved exactly with `successors` later stages: without recomputation if
  // it fits, else (kAuto) the fastest mode that fits, else planned under a memory budget.
  StageCost exact_stage(const StageGraph& sg, const MeshLinks& mesh, const MeshConfig& c,
                        const AutoShardingOptions& so, int l, int r, int successors) {
    StageCost base = solve_stage(sg, mesh, cluster_, c.submesh, so, B_, 0, o_.include_transfer_cost,
                                 &plan_.intra_solves);
    StageCost chosen = choose_remat(base, remat_, l, r, o_.remat, memory_, successors);
    if (!base.solved || chosen.max_succ(memory_) >= successors) return chosen;
    if (o_.remat != RematMode::kAuto && o_.remat != RematMode::kNone) return chosen;
    const double budget = ilp_budget(base, memory_, successors);
    if (budget <= 0) return chosen;
    StageCost b = solve_stage(sg, mesh, cluster_, c.submesh, so, B_, budget,
                              o_.include_transfer_cost, &plan_.intra_solves);
    return b.solved ? b : chosen;
  }

  // What a candidate's solves share.
  struct Candidate {
    int l, r;
    const MeshConfig& config;
    uint64_t run_key;
    uint64_t config_key;
    const MeshLinks* mesh = nullptr;
    const AutoShardingOptions* options = nullptr;
  };

  // The plan of layers [fl, ll] on the candidate's mesh, under a memory budget if > 0 (cached).
  Result<const StageCost*> solve_range(const Candidate& c, int fl, int ll, double budget) {
    static const StageCost kUnsolved;
    if (budget < 0) return &kUnsolved;  // no room at all
    ALPA_ASSIGN_OR_RETURN(RangeGraph rg, range_graph(fl, ll));
    const uint64_t key = hash_combine(rg.hash, c.config_key);
    auto& table = budget > 0 ? cache_.budgeted : cache_.base;
    const uint64_t tkey = budget > 0 ? hash_combine(key, static_cast<uint64_t>(budget)) : key;
    auto it = table.find(tkey);
    if (it != table.end()) {
      // A solve made ahead for this candidate is its own solve, not a reuse.
      if (budget > 0 || solved_ahead_.erase(tkey) == 0) ++plan_.cache_hits;
      return &it->second;
    }
    // Plans under a budget hint for plans under a budget only.
    const uint64_t hint_key = layouts_key(rg, c.config_key, budget > 0);
    std::vector<uint32_t> searched;
    StageCost sc =
        cost_stage(*rg.graph, hint_for(hint_key, fl, ll), *c.mesh, c.config.submesh, *c.options,
                   budget, &plan_.intra_solves, &plan_.reused_across_counts, &searched);
    keep_hint(hint_key, std::move(searched));
    sc.plan = ShardingPlan{};  // the plan is re-derived for the chosen stages
    return &table.emplace(tkey, std::move(sc)).first->second;
  }

  // The searched plan of the same stage graph (hint_key: its shape-free hash and mesh) at the
  // nearest count finished before this one, if any. Layers [l, r] holding the whole model are
  // always searched: one stage on every device is the plan without pipelining (MoE-690M on 2
  // GPUs: layouts carried from a quarter of its micro-batch size costed it 6.6% above its
  // search, and another plan, 1.1% slower when simulated, was chosen).
  const std::vector<uint32_t>* hint_for(uint64_t hint_key, int l, int r) const {
    if (hints_ == nullptr || (l == 0 && r == L_ - 1)) return nullptr;
    for (const HintExchange* h : hints_->earlier) {
      auto it = h->own.find(hint_key);
      if (it != h->own.end()) return &it->second;
    }
    return nullptr;
  }

  // The key of a stage graph's layouts among the counts: its shape-free hash, the mesh, and
  // whether they were planned under a budget (those hint for plans under a budget only).
  static uint64_t layouts_key(const RangeGraph& rg, uint64_t config_key, bool budgeted) {
    return hash_combine(hash_combine(rg.shape_free, config_key), budgeted);
  }

  // Keeps a searched plan's layouts (cost_stage's `searched`) for the counts after this one.
  void keep_hint(uint64_t hint_key, std::vector<uint32_t> searched) {
    if (hints_ != nullptr && !searched.empty()) hints_->own.emplace(hint_key, std::move(searched));
  }

  // A stage graph's cost (under a memory budget if > 0): the plan of the same stage at another
  // micro-batch count (`hint`) costed here, when it applies within the budget (counted in
  // `reused`): the stage DP's exact re-check solves a chosen stage again. Else searched
  // (counted in `solves`), its layouts as strategy-name ids into `searched` for the counts after.
  StageCost cost_stage(const StageGraph& sg, const std::vector<uint32_t>* hint,
                       const MeshLinks& mesh, const SubmeshShape& submesh,
                       const AutoShardingOptions& so, double budget, int* solves, int* reused,
                       std::vector<uint32_t>* searched) const {
    if (hint != nullptr) {
      AutoShardingOptions hinted = so;
      hinted.hint = hints_->names->names(*hint);
      int costed = 0;
      StageCost c = solve_stage(sg, mesh, cluster_, submesh, hinted, B_, budget,
                                o_.include_transfer_cost, &costed);
      if (c.solved) {
        ++*reused;
        return c;
      }
    }
    StageCost c =
        solve_stage(sg, mesh, cluster_, submesh, so, B_, budget, o_.include_transfer_cost, solves);
    if (hints_ != nullptr && c.solved) *searched = hints_->names->ids(c.plan.strategy_names);
    return c;
  }

  // The solved run of `inner` repeated layers with the candidate's first and last layer (the
  // range itself if it has that many, else one sharing its first or its last layer, solved
  // now if no shorter range was costed on this mesh).
  Result<const CostCache::Exemplar*> exemplar(const Candidate& c, int inner) {
    const uint64_t ek = hash_combine(hash_combine(c.run_key, inner), c.config_key);
    auto it = cache_.runs.find(ek);
    if (it != cache_.runs.end()) return &it->second;
    const int l = c.l, r = c.r;
    auto same_run = [&](int fl, int ll) {
      if (fl < 0 || ll >= L_ || layer_hash_[fl] != layer_hash_[l] ||
          layer_hash_[ll] != layer_hash_[r] || (fl == 0) != (l == 0) ||
          (ll == L_ - 1) != (r == L_ - 1))
        return false;
      for (int x = fl + 1; x < ll; ++x)
        if (layer_hash_[x] != layer_hash_[l + 1]) return false;
      return true;
    };
    int fl = l, ll = l + inner + 1;
    if (!same_run(fl, ll)) fl = r - inner - 1, ll = r;
    if (!same_run(fl, ll)) return nullptr;
    ALPA_ASSIGN_OR_RETURN(const StageCost* cost, solve_range(c, fl, ll, 0));
    return &cache_.runs.emplace(ek, CostCache::Exemplar{cost, fl, ll}).first->second;
  }

  // A candidate too large unconstrained, planned under the memory budget. A long run of
  // repeated layers: the two short runs are planned under budgets that leave them the same
  // fraction of their unconstrained memory (rounded down to 1/8, so runs of similar length
  // share them), and those plans extrapolated.
  Result<const StageCost*> fit_candidate(const Candidate& c, const StageCost* cost,
                                         const CostCache::Exemplar* run2,
                                         const CostCache::Exemplar* run3) {
    const double budget = memory_ - cost->acc_bytes;
    if (run2 == nullptr) return solve_range(c, c.l, c.r, budget > 0 ? budget : -1);
    const double need = cost->peak_bytes - cost->acc_bytes;
    const double fraction = need > 0 ? std::floor(8 * budget / need) / 8 : 0;
    const StageCost* b2 = nullptr;
    const StageCost* b3 = nullptr;
    if (fraction > 0) {
      auto short_budget = [&](const CostCache::Exemplar& e) {
        return fraction * (e.cost->peak_bytes - e.cost->acc_bytes);
      };
      ALPA_ASSIGN_OR_RETURN(
          b2, solve_range(c, run2->first_layer, run2->last_layer, short_budget(*run2)));
      ALPA_ASSIGN_OR_RETURN(
          b3, solve_range(c, run3->first_layer, run3->last_layer, short_budget(*run3)));
    }
    extrapolated_.push_back(std::make_unique<StageCost>());
    if (b2 != nullptr && b3 != nullptr && b2->solved && b3->solved)
      *extrapolated_.back() = affine(*b2, *b3, c.r - c.l - 1 - 3);
    return extrapolated_.back().get();
  }

  // The stage DP, then an exact intra-op solve of each chosen stage that was costed by
  // extrapolation or without its successors in mind: if it is slower or does not fit where
  // the DP put it, its candidate takes the exact figures and the DP runs again.
  Result<StageDpSolution> solve_and_verify() {
    Result<StageDpSolution> sol = solve_stage_dp(req_);
    if (!sol.ok() && imbalance_skipped_ > 0 &&
        sol.status().message().find("no chain of stages") != std::string::npos)
      return failed_precondition(
          cat(sol.status().message(), "; the stage imbalance tolerance (", o_.imbalance_tolerance,
              ") kept ", imbalance_skipped_, " (layer range, submesh) ",
              "candidates out: their share of the devices was more than ",
              1 + o_.imbalance_tolerance, "x off their share of the FLOPs"),
          "--stage-imbalance 1e9 considers every candidate (or give fewer devices or more layers "
          "with --pipeline-layers)");
    std::set<std::pair<size_t, int>> verified;  // (candidate, successors) solved exactly
    for (int round = 0; sol.ok() && round < 32; ++round) {
      bool worse = false;
      const int S = static_cast<int>(sol->stages.size());
      for (int i = 0; i < S; ++i) {
        const StageChoice& ch = sol->stages[i];
        const size_t idx = req_.index(ch.first_layer, ch.last_layer, ch.submesh);
        if (!verified.insert({idx, S - 1 - i}).second) continue;
        const MeshConfig& c = configs_[static_cast<size_t>(ch.submesh)];
        ALPA_ASSIGN_OR_RETURN(MeshLinks mesh, mesh_links(cluster_, c.logical.shape, 0));
        const AutoShardingOptions so = candidate_options(o_, c.logical);
        const Clock::time_point tv = Clock::now();
        ALPA_ASSIGN_OR_RETURN(RangeGraph rg, range_graph(ch.first_layer, ch.last_layer));
        StageCost exact =
            exact_stage(*rg.graph, mesh, c, so, ch.first_layer, ch.last_layer, S - 1 - i);
        plan_.verify_s += since(tv);
        exact.plan = ShardingPlan{};
        StageCandidate& cand = req_.at(ch.first_layer, ch.last_layer, ch.submesh);
        const int succ = exact.max_succ(memory_);
        if (succ < S - 1 - i || exact.time() > cand.time * (1 + 1e-9)) worse = true;
        cand.time = exact.solved ? exact.time() : kInfStageTime;
        cand.transfer = exact.solved ? exact.transfer_s : 0;
        cand.max_succ = succ;
        exact_costs_.push_back(std::make_unique<StageCost>(std::move(exact)));
        costs_[idx] = exact_costs_.back().get();
      }
      if (!worse) break;
      if (o_.progress)
        o_.progress(cat("  micro-batches ", B_, ": re-planning stages after exact costs (round ",
                        round + 1, ")"));
      sol = solve_stage_dp(req_);
    }
    return sol;
  }

  const TrainStep& step_;
  const Cluster& cluster_;
  const PipelinePlannerOptions& o_;
  const int B_;
  const double memory_;
  const double step_bound_;  // plans at least this slow are not wanted (+inf: every plan)
  bool slower_ = false;
  std::vector<double> heavy_prefix_;  // heavy_op_seconds of layers [0, l)
  CostCache& cache_;
  const std::atomic<bool>* cancel_;
  PipelinePlan plan_;
  std::vector<ValueId> ops_;
  std::vector<uint64_t> step_hashes_, layer_hash_;
  int L_ = 0;
  RematTable remat_;
  std::vector<MeshConfig> configs_;
  StageDpRequest req_;
  double total_flops_ = 1;
  mutable int64_t imbalance_skipped_ = 0;  // candidates configs_for left out by the tolerance
  std::vector<double> prefix_;
  std::map<size_t, const StageCost*> costs_;
  std::vector<std::unique_ptr<StageCost>> extrapolated_, exact_costs_;
  int too_large_ = 0;             // candidates left out because they do not fit in memory
  std::vector<char> never_fits_;  // per DP candidate: too large alone (see never_fits)
  double least_excess_ = std::numeric_limits<double>::infinity();  // their bytes over, least
  std::map<std::pair<int, int>, RangeGraph> graphs_;
  std::set<uint64_t> solved_ahead_;  // base-cache keys solve_side_by_side filled, not yet used
  HintExchange* hints_;              // plans of the same stages at other counts (may be null)
};

// `step_bound`: plans at least this slow are not wanted; `*slower` (if given) says whether
// the error is that no plan beats it.
Result<PipelinePlan> plan_fixed(const TrainStep& step, const Cluster& cluster,
                                const PipelinePlannerOptions& o, int B, double memory,
                                CostCache& cache, const std::atomic<bool>* cancel = nullptr,
                                double step_bound = std::numeric_limits<double>::infinity(),
                                bool* slower = nullptr, HintExchange* hints = nullptr) {
  FixedPlanner planner(step, cluster, o, B, memory, cache, cancel, step_bound, hints);
  Result<PipelinePlan> plan = planner.plan();
  if (slower != nullptr) *slower = planner.slower();
  return plan;
}

// Adds `from`'s planning statistics (solves, phase times) to `into`'s.
void add_statistics(PipelinePlan& into, const PipelinePlan& from) {
  into.intra_solves += from.intra_solves;
  into.cache_hits += from.cache_hits;
  into.extrapolated += from.extrapolated;
  into.reused_across_counts += from.reused_across_counts;
  into.pruned += from.pruned;
  into.slower += from.slower;
  into.candidates += from.candidates;
  into.clustering_s += from.clustering_s;
  into.stage_costs_s += from.stage_costs_s;
  into.dp_s += from.dp_s;
  into.verify_s += from.verify_s;
  into.balance_s += from.balance_s;
}

// Bytes in decimal units with 3 significant digits, rounded up if `up` (a bound that must
// hold), to nearest otherwise: "1.24 GB", "465 KB".
std::string memory_text(double bytes, bool up) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (u < 4 && bytes >= 1000) {
    bytes /= 1000;
    ++u;
  }
  const double scale = bytes >= 100 ? 1 : bytes >= 10 ? 10 : 100;
  const double v = (up ? std::ceil(bytes * scale - 1e-9) : std::round(bytes * scale)) / scale;
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g %s", v, units[u]);
  return buf;
}

}  // namespace

Result<LayerClustering> plan_layers(const TrainStep& step, const PipelinePlan& plan) {
  const std::vector<ValueId> ops = forward_ops(step);
  if (!plan.layer_starts.empty()) {
    Result<LayerClustering> l = layers_from_boundaries(step.graph, ops, plan.layer_starts);
    if (!l.ok()) return l.status().with_context("pipeline.layer_starts");
    return l;
  }
  LayerClusteringOptions lo;
  lo.num_layers = plan.layers.num_layers;
  return cluster_layers(step.graph, ops, lo);
}

std::vector<int> forward_stages(const TrainStep& step, const PipelinePlan& plan) {
  const std::vector<ValueId> ops = forward_ops(step);
  std::vector<int> stage_of_layer(static_cast<size_t>(plan.layers.num_layers), 0);
  for (size_t s = 0; s < plan.stages.size(); ++s)
    for (int l = plan.stages[s].first_layer; l <= plan.stages[s].last_layer; ++l)
      if (l >= 0 && l < plan.layers.num_layers) stage_of_layer[l] = static_cast<int>(s);
  return stages_from_layers(step, ops, plan.layers.layer_of, stage_of_layer);
}

std::string remat_text(const PlannedStage& ps) {
  const int layers = ps.last_layer - ps.first_layer + 1;
  const int full = std::clamp(ps.full_remat_layers, 0, layers);
  if (full == 0 || ps.remat == RematMode::kFull) return std::string(remat_name(ps.remat));
  if (full == layers) return "full";
  auto range = [](int a, int b) { return a == b ? cat("layer ", a) : cat("layers ", a, "-", b); };
  return cat("full on ", range(ps.first_layer, ps.first_layer + full - 1), ", ",
             remat_name(ps.remat), " on ", range(ps.first_layer + full, ps.last_layer));
}

int PipelinePlannerOptions::side_by_side() const {
  return side_by_side_threads(threads);
}

// Per micro-batch count, its costs (the counts planned side by side take their own).
class PlanningCache {
 public:
  CostCache& of_count(int64_t B) {
    std::lock_guard<std::mutex> lock(mu_);
    std::unique_ptr<CostCache>& c = by_count_[B];
    if (!c) c = std::make_unique<CostCache>();
    // Runs of repeated layers name layer indices of one clustering: kept within a call only.
    c->runs.clear();
    return *c;
  }

 private:
  std::mutex mu_;
  std::map<int64_t, std::unique_ptr<CostCache>> by_count_;
};

std::shared_ptr<PlanningCache> make_planning_cache() {
  return std::make_shared<PlanningCache>();
}

namespace {

// The error when no plan fits `memory`: the smallest memory per device that works, with B
// (the most micro-batches tried: the smallest activations) found by doubling until a plan
// fits, then bisecting; `last_error` if none does.
Status no_fit_error(const ModelSpec& model, const OptimizerOptions& optimizer,
                    const Cluster& cluster, const PipelinePlannerOptions& options, int B,
                    double memory, const Status& last_error) {
  ALPA_ASSIGN_OR_RETURN(TrainStep step, micro_batch_step(model, optimizer, B));
  PipelinePlannerOptions quiet = options;
  quiet.progress = nullptr;
  CostCache cache;
  double lo = memory, hi = memory;
  bool found = false;
  for (int k = 0; k < 40 && !found; ++k) {
    hi *= 2;
    found = plan_fixed(step, cluster, quiet, B, hi, cache).ok();
    if (!found) lo = hi;
  }
  if (!found) return last_error;
  for (int k = 0; k < 8; ++k) {
    const double mid = 0.5 * (lo + hi);
    if (plan_fixed(step, cluster, quiet, B, mid, cache).ok())
      hi = mid;
    else
      lo = mid;
  }
  return resource_exhausted(
      cat("no pipeline plan fits ", memory_text(memory, false), " per device on ",
          cluster.num_devices(), " devices of ", cluster.name,
          "; the smallest memory per device that works is ", memory_text(hi, true), " (", B,
          " micro-batches)"),
      options.micro_batches > 0
          ? "more micro-batches hold smaller activations: leave out --micro-batches to let the "
            "planner choose a count that fits; or use devices with that much memory "
            "(--memory-budget), more devices, or a smaller batch"
          : "use devices with that much memory (--memory-budget), more devices, or a smaller "
            "batch");
}

}  // namespace

Result<PipelinePlan> plan_pipeline(const ModelSpec& model, const OptimizerOptions& optimizer,
                                   const Cluster& cluster, const PipelinePlannerOptions& options,
                                   PlanningCache* shared) {
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
    std::reverse(candidates.begin(), candidates.end());
  }
  Result<PipelinePlan> best = not_found("no plan");
  Status last_error = ok_status();
  int worse = 0;
  std::vector<std::pair<int, double>> tried;
  std::map<int, std::string> rejected;
  std::vector<PipelinePlan> others;  // the best plans of the other counts
  // Micro-batch counts are planned `workers` at a time, each on its own thread (the plans are
  // independent), and judged in order.
  const int workers = options.side_by_side();
  std::mutex progress_mutex;
  PipelinePlannerOptions threaded = options;
  // Each count's stage solves share the cores the counts side by side leave.
  if (threaded.solve_threads <= 0) {
    const int counts = std::max(1, std::min<int>(workers, static_cast<int>(candidates.size())));
    threaded.solve_threads =
        std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / counts);
  }
  if (options.progress)
    threaded.progress = [&](const std::string& line) {
      std::lock_guard<std::mutex> lock(progress_mutex);
      options.progress(line);
    };
  std::atomic<bool> abandon{false};  // tells counts still running that they are not needed
  // Counts are planned only for plans within the margin of the best of the counts judged
  // before they start (slower_count_margin); the first `workers` counts have no bound.
  double bound = std::numeric_limits<double>::infinity();
  std::vector<char> slower(candidates.size(), 0);
  // Each count's searched stage plans; count i costs stages by those of the counts finished
  // before it starts (i - workers and earlier, nearest first), so its plan does not depend on
  // timing.
  std::vector<HintExchange> hints(candidates.size());
  StrategyNames strategy_names;
  auto plan_count = [&](size_t i, double step_bound) -> Result<PipelinePlan> {
    const int64_t B = candidates[i];
    ALPA_ASSIGN_OR_RETURN(TrainStep step, micro_batch_step(model, optimizer, static_cast<int>(B)));
    CostCache own;
    CostCache& cache = shared != nullptr ? shared->of_count(B) : own;
    bool beyond = false;
    HintExchange& h = hints[i];
    h.names = &strategy_names;
    if (options.reuse_across_counts)
      for (size_t j = i + 1; j-- > 0;)
        if (j + static_cast<size_t>(workers) <= i) h.earlier.push_back(&hints[j]);
    Result<PipelinePlan> p =
        plan_fixed(step, cluster, threaded, static_cast<int>(B), memory, cache, &abandon,
                   step_bound, &beyond, options.reuse_across_counts ? &h : nullptr);
    slower[i] = beyond;
    return p;
  };
  bool stop = false;
  // Judges count i's result, in order of the counts.
  auto judge = [&](size_t i, Result<PipelinePlan> p) {
    const int64_t B = candidates[i];
    if (!p.ok()) {
      last_error = p.status();
      tried.push_back({static_cast<int>(B), std::numeric_limits<double>::infinity()});
      if (slower[i]) {  // beyond the margin: the step time has turned upwards
        rejected[static_cast<int>(B)] = p.status().message();
        if (options.progress)
          options.progress(cat("micro-batches ", B, ": ", p.status().message()));
        stop = true;
        return;
      }
      rejected[static_cast<int>(B)] = cat(
          p.status().code() == StatusCode::kResourceExhausted ? "does not fit: " : "not possible: ",
          p.status().message());
      if (options.progress)
        options.progress(cat("micro-batches ", B, ": no plan fits (", p.status().message(), ")"));
      // Fewer micro-batches only hold larger ones in memory.
      if (p.status().code() == StatusCode::kResourceExhausted) stop = true;
      return;
    }
    tried.push_back({static_cast<int>(B), p->predicted_step_time_s});
    if (options.progress)
      options.progress(cat("micro-batches ", B, ": predicted step ", p->predicted_step_time_s,
                           " s with ", p->stages.size(), " stages"));
    if (!best.ok() || p->predicted_step_time_s < best->predicted_step_time_s) {
      // Keep the statistics of every candidate tried, and the plan it replaces.
      if (best.ok()) {
        add_statistics(*p, *best);
        others.push_back(std::move(*best));
      }
      best = std::move(p);
      worse = 0;
    } else {
      // The step time has turned upwards: twice in a row, or once beyond the margin.
      const bool beyond = p->predicted_step_time_s >
                          best->predicted_step_time_s * (1 + options.slower_count_margin);
      add_statistics(*best, *p);
      others.push_back(std::move(*p));
      if (++worse >= 2 || beyond) stop = true;
    }
  };
  // A sliding window of `workers` counts, judged in order; count i starts once count
  // i - workers is judged, with the bound of the counts judged by then.
  std::deque<std::pair<size_t, std::future<Result<PipelinePlan>>>> running;
  size_t next = 0;
  auto launch = [&] {
    for (; !stop && next < candidates.size() && running.size() < static_cast<size_t>(workers);
         ++next)
      running.emplace_back(
          next, std::async(workers > 1 ? std::launch::async : std::launch::deferred, plan_count,
                           next, bound));
  };
  for (launch(); !running.empty() && !stop; launch()) {
    auto [i, result] = std::move(running.front());
    running.pop_front();
    judge(i, result.get());
    if (best.ok()) bound = best->predicted_step_time_s * (1 + options.slower_count_margin);
  }
  // Counts still running are not needed once the search stops.
  abandon = true;
  for (auto& [i, f] : running)
    if (f.valid()) f.wait();
  if (!best.ok()) {
    if (last_error.code() != StatusCode::kResourceExhausted || !options.explain_no_fit)
      return last_error;
    const int B = static_cast<int>(*std::max_element(candidates.begin(), candidates.end()));
    return no_fit_error(model, optimizer, cluster, options, B, memory, last_error);
  }
  best->micro_batch_search = tried;
  best->micro_batch_rejections = std::move(rejected);
  best->total_s = since(t0);
  std::sort(others.begin(), others.end(), [](const PipelinePlan& a, const PipelinePlan& b) {
    return a.predicted_step_time_s < b.predicted_step_time_s;
  });
  for (PipelinePlan& o : others) best->alternatives.push_back(std::move(o));
  return best;
}

namespace {

// The step a plan's stages run: `step` itself, or (a stage recomputes) its rematerialized
// form, kept in `holder`.
Result<const TrainStep*> remat_for_plan(const TrainStep& step, const PipelinePlan& plan,
                                        std::optional<TrainStep>& holder) {
  // What each layer recomputes: its stage's mode, or full on the stage's first layers.
  std::vector<RematMode> mode_of_layer(static_cast<size_t>(plan.layers.num_layers),
                                       RematMode::kNone);
  for (size_t s = 0; s < plan.stages.size(); ++s) {
    const PlannedStage& ps = plan.stages[s];
    if (ps.remat == RematMode::kAuto)
      return invalid_argument(cat("stage ", s, " has remat \"auto\""),
                              "a planned stage recomputes none, selective or full");
    const int layers = ps.last_layer - ps.first_layer + 1;
    if (ps.full_remat_layers < 0 || ps.full_remat_layers > layers)
      return invalid_argument(cat("stage ", s, " recomputes ", ps.full_remat_layers,
                                  " layers fully, and it holds ", layers),
                              cat("full_remat_layers is between 0 and ", layers));
    for (int l = ps.first_layer; l <= ps.last_layer; ++l)
      mode_of_layer[static_cast<size_t>(l)] =
          l < ps.first_layer + ps.full_remat_layers ? RematMode::kFull : ps.remat;
  }
  std::map<RematMode, std::vector<char>> selection;  // each mode's nodes, found once
  std::vector<char> recompute(static_cast<size_t>(step.graph.size()), 0);
  bool any = false;
  const std::vector<ValueId> ops = forward_ops(step);
  for (size_t i = 0; i < ops.size() && i < plan.layers.layer_of.size(); ++i) {
    const RematMode m = mode_of_layer[static_cast<size_t>(plan.layers.layer_of[i])];
    if (m == RematMode::kNone) continue;
    std::vector<char>& sel = selection[m];
    if (sel.empty()) sel = remat_selection(step, m);
    if (sel[ops[i]]) recompute[ops[i]] = any = true;
  }
  if (!any) return &step;
  const RematSegments seg = remat_segments(step, plan.layers.layer_of, plan.layers.num_layers);
  ALPA_ASSIGN_OR_RETURN(holder, rematerialize(step, seg.of_node, recompute));
  return &*holder;
}

}  // namespace

Result<MaterializedPipeline> materialize_pipeline(const TrainStep& step, const PipelinePlan& plan,
                                                  const Cluster& cluster,
                                                  const AutoShardingOptions& sharding,
                                                  const StageOptionsHook& stage_options) {
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
  ALPA_ASSIGN_OR_RETURN(const TrainStep* run, remat_for_plan(step, plan, m.remat_step));
  ALPA_ASSIGN_OR_RETURN(m.split, split_train_step(*run, forward_stages(*run, plan), S));
  const double memory =
      sharding.memory_budget_bytes > 0 ? sharding.memory_budget_bytes : cluster.device.memory_bytes;
  for (int s = 0; s < S; ++s) {
    const PlannedStage& ps = plan.stages[s];
    ALPA_ASSIGN_OR_RETURN(StageGraph sg, build_stage_graph(*run, m.split, s, plan.micro_batches));
    Result<MeshLinks> mesh =
        mesh_links(cluster, {ps.logical.shape[0], ps.logical.shape[1]}, ps.first_device);
    if (!mesh.ok()) return mesh.status().with_context(cat("stage ", s));
    AutoShardingOptions so = sharding;
    so.memory_budget_bytes = 0;  // fit_stage sets the stage's budget when it needs one
    so.sharding.force_batch_dim_to_mesh_dim = ps.logical.batch_axis;
    // Hand-written layouts name step-graph values; the stage graph keeps their nodes' names,
    // and unnamed values are found by their step id.
    so.fixed.clear();
    for (const auto& [ref, spec] : ps.layouts) {
      ValueId sv = kNoValue;
      for (ValueId v = 0; v < sg.graph.size() && sv == kNoValue; ++v)
        if (sg.graph.node(v).op != OpKind::kParameter ||
            run->graph.node(sg.source[v]).op == OpKind::kParameter)
          if (value_ref(run->graph, sg.source[v]) == ref) sv = v;
      if (sv == kNoValue)
        return invalid_argument(cat("stage ", s, " has a layout for ", ref,
                                    ", which the stage does not compute or hold"));
      so.fixed[value_ref(sg.graph, sv)] = spec;
    }
    if (stage_options) {
      Status st = stage_options(s, sg, ps.logical.shape, so);
      if (!st.ok()) return st.with_context(cat("stage ", s));
    }
    int solves = 0;
    const std::vector<char> across = received_across_hosts(sg, m.split, plan.stages, s, cluster);
    StageCost c = fit_stage(sg, *mesh, cluster, ps.submesh, so, plan.micro_batches, memory,
                            S - 1 - s, true, &solves, &across);
    c.remat = ps.remat;  // already in the stage graph: its figures are exact
    c.full_layers = ps.full_remat_layers;
    if (c.plan.specs.empty()) {
      Result<ShardingPlan> p =
          auto_shard(sg.graph, *mesh, cluster.device, stage_sharding_options(sg, so));
      if (!p.ok()) return p.status().with_context(cat("stage ", s));
      c.plan = std::move(*p);
    }
    PlannedStage placed = ps;
    set_figures(placed, c, S - 1 - s, memory);
    m.stages.push_back(std::move(placed));
    m.graphs.push_back(std::move(sg));
    m.plans.push_back(std::move(c.plan));
    m.placements.push_back(PlacedMesh::contiguous(ps.logical.shape, ps.first_device));
  }
  m.predicted_step_time_s = predicted_step_time(m.stages, plan.micro_batches);
  return m;
}

}  // namespace alpa
