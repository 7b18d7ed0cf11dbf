#include "alpa/pipeline/program.h"

#include "alpa/cost/transfer_cost.h"

#include <algorithm>
#include <map>
#include <numeric>

#include "alpa/support/check.h"

namespace alpa {

std::string to_string(const Instruction& in) {
  const std::string mb = in.micro_batch < 0 ? "step" : cat("mb", in.micro_batch);
  switch (in.kind) {
    case InstrKind::kRecv:
      return cat("RECV t", in.transfer, " ", mb);
    case InstrKind::kRun:
      return cat("RUN ", task_name(in.task), " ", mb);
    case InstrKind::kAccumulate:
      return cat("ACC %", in.value, " ", mb);
    case InstrKind::kSend:
      return cat("SEND t", in.transfer, " ", mb);
    case InstrKind::kFree:
      return cat("FREE %", in.value, " ", mb);
  }
  return "?";
}

const char* instruction_category(const Instruction& in) {
  switch (in.kind) {
    case InstrKind::kRun:
      return "compute";
    case InstrKind::kRecv:
    case InstrKind::kSend:
      return "communication";
    default:
      return "memory";
  }
}

namespace {

// The plan of a task graph: its nodes keep the stage plan's choices; its parameters are held
// in their stored layouts.
ShardingPlan task_plan(const TaskGraph& tg, const PipelineStage& st) {
  ShardingPlan p;
  p.mesh = st.plan.mesh;
  const int32_t n = tg.graph.size();
  p.strategy.resize(static_cast<size_t>(n));
  p.specs.resize(static_cast<size_t>(n));
  p.native_specs.resize(static_cast<size_t>(n));
  p.operand_specs.resize(static_cast<size_t>(n));
  p.strategy_names.resize(static_cast<size_t>(n));
  for (ValueId v = 0; v < n; ++v) {
    const ValueId src = tg.source[v];
    if (tg.graph.node(v).op == OpKind::kParameter) {
      p.strategy[v] = 0;
      p.specs[v] = st.stored_spec[src];
      p.native_specs[v] = p.specs[v];
      p.strategy_names[v] = "held";
      continue;
    }
    p.strategy[v] = st.plan.strategy[src];
    p.specs[v] = st.plan.specs[src];
    p.native_specs[v] = st.plan.native_specs[src];
    p.operand_specs[v] = st.plan.operand_specs[src];
    p.strategy_names[v] = st.plan.strategy_names[src];
  }
  return p;
}

// A program on the destination mesh turning a received layout into the wanted one.
Result<SpmdProgram> restore_program(const TensorType& type, const ShardingSpec& from,
                                    const ShardingSpec& to, const MeshShape& mesh) {
  Graph g("restore");
  Node p;
  p.op = OpKind::kParameter;
  p.type = type;
  p.name = "x";
  p.attrs = ParameterAttrs{ParamRole::kInput, ParamInit::kZeros, 1.0};
  g.add_node(std::move(p));
  g.add_output({"y", 0});
  ShardingPlan plan;
  plan.mesh = mesh;
  plan.strategy = {0};
  plan.specs = {from};
  plan.native_specs = {from};
  plan.operand_specs = {{}};
  plan.strategy_names = {"received"};
  LowerOptions lo;
  lo.output_specs = {to};
  return lower_to_spmd(g, plan, lo);
}

// Key of a value in a stage's store.
using Key = std::pair<ValueId, int>;

// Appends FREE after the last reader of every stored value (values nobody reads are freed
// right after they are written). Owned weights and state are never freed.
void insert_frees(PipelineStage& st, const std::vector<PipelineTransfer>& transfers) {
  const std::vector<Instruction>& in = st.instructions;
  std::map<Key, size_t> last_read, written;
  auto key_of = [&](ValueId v, int mb) { return Key{v, st.per_step[v] ? -1 : mb}; };
  for (size_t i = 0; i < in.size(); ++i) {
    const Instruction& x = in[i];
    switch (x.kind) {
      case InstrKind::kRun: {
        const TaskProgram& tp = st.tasks[static_cast<int>(x.task)];
        for (ValueId v : tp.param_source) {
          if (st.origin[v] == ValueOrigin::kOwned || st.origin[v] == ValueOrigin::kInput) continue;
          const bool acc = x.task == TaskKind::kUpdate && st.accumulated[v];
          last_read[acc ? Key{v, -1} : key_of(v, x.micro_batch)] = i;
        }
        for (size_t o = 0; o < tp.output_source.size(); ++o) {
          const ValueId v = tp.output_source[o];
          if (tp.spmd.program.outputs()[o].alias != kNoValue) continue;  // an owned update
          written.emplace(key_of(v, x.micro_batch), i);
        }
        break;
      }
      case InstrKind::kAccumulate:
        last_read[Key{x.value, x.micro_batch}] = i;
        written.emplace(Key{x.value, -1}, i);
        break;
      case InstrKind::kSend: {
        const PipelineTransfer& t = transfers[static_cast<size_t>(x.transfer)];
        if (st.origin[t.from_value] == ValueOrigin::kOwned) break;
        last_read[t.split.accumulated ? Key{t.from_value, -1}
                                      : key_of(t.from_value, x.micro_batch)] = i;
        break;
      }
      case InstrKind::kRecv: {
        const PipelineTransfer& t = transfers[static_cast<size_t>(x.transfer)];
        written.emplace(key_of(t.to_value, x.micro_batch), i);
        break;
      }
      case InstrKind::kFree:
        break;
    }
  }
  std::vector<std::vector<Instruction>> after(in.size());
  const ValueId loss =
      st.graph.loss_output >= 0 ? st.graph.graph.outputs()[st.graph.loss_output].value : kNoValue;
  for (const auto& [key, at] : written) {
    if (key == Key{loss, -1}) continue;  // the step's loss: read by the runner at the end
    auto it = last_read.find(key);
    const size_t pos = it == last_read.end() ? at : std::max(at, it->second);
    Instruction f;
    f.kind = InstrKind::kFree;
    f.value = key.first;
    f.micro_batch = key.second;
    after[pos].push_back(f);
  }
  std::vector<Instruction> out;
  for (size_t i = 0; i < in.size(); ++i) {
    out.push_back(in[i]);
    for (const Instruction& f : after[i]) out.push_back(f);
  }
  st.instructions = std::move(out);
}

}  // namespace

Result<PipelineProgram> build_pipeline_program(const TrainStep& step, const PipelineSplit& split,
                                               std::vector<StageGraph> stage_graphs,
                                               std::vector<ShardingPlan> plans,
                                               const std::vector<PlacedMesh>& placements,
                                               const PipelineBuildOptions& options) {
  const int S = split.num_stages;
  const int B = options.micro_batches;
  if (B < 1) return invalid_argument(cat("micro_batches must be >= 1, got ", B));
  if (static_cast<int>(stage_graphs.size()) != S || static_cast<int>(plans.size()) != S ||
      static_cast<int>(placements.size()) != S)
    return invalid_argument(
        cat("a pipeline of ", S, " stages needs ", S, " stage graphs, plans and placements"));
  PipelineProgram prog;
  prog.micro_batches = B;
  prog.schedule = options.schedule;
  // Placements: disjoint, covering [0, num_devices).
  std::vector<int> owner;
  for (int s = 0; s < S; ++s) {
    const PlacedMesh& pl = placements[s];
    if (!pl.validate().ok())
      return invalid_argument(cat("stage ", s, " has an invalid mesh placement"));
    for (int r : pl.devices) {
      if (static_cast<int>(owner.size()) <= r) owner.resize(static_cast<size_t>(r) + 1, -1);
      if (owner[r] >= 0)
        return invalid_argument(cat("stages ", owner[r], " and ", s, " both use device ", r),
                                "give every stage its own devices");
      owner[r] = s;
    }
  }
  for (size_t r = 0; r < owner.size(); ++r)
    if (owner[r] < 0) return invalid_argument(cat("no stage uses device ", r));
  prog.num_devices = static_cast<int>(owner.size());

  // Stages: stored layouts, value origins, task programs.
  prog.stages.resize(static_cast<size_t>(S));
  for (int s = 0; s < S; ++s) {
    PipelineStage& st = prog.stages[s];
    st.graph = std::move(stage_graphs[s]);
    st.plan = std::move(plans[s]);
    st.placement = placements[s];
    const Graph& g = st.graph.graph;
    const int32_t n = g.size();
    if (st.plan.specs.size() != static_cast<size_t>(n))
      return invalid_argument(cat("the plan of stage ", s, " is for another graph"));
    if (st.plan.mesh != st.placement.shape)
      return invalid_argument(cat("the plan of stage ", s, " is for mesh ", st.plan.mesh[0], "x",
                                  st.plan.mesh[1], " but the stage runs on ", st.placement.shape[0],
                                  "x", st.placement.shape[1]));
    const MeshShape mesh = st.placement.shape;
    st.origin.assign(static_cast<size_t>(n), ValueOrigin::kComputed);
    for (ValueId v : st.graph.owned) st.origin[v] = ValueOrigin::kOwned;
    for (ValueId v : st.graph.inputs) st.origin[v] = ValueOrigin::kInput;
    for (ValueId v : st.graph.received) st.origin[v] = ValueOrigin::kReceived;
    std::vector<char> stage_output(static_cast<size_t>(n), 0);
    for (const GraphOutput& o : g.outputs()) stage_output[o.value] = 1;
    st.stored_spec.resize(static_cast<size_t>(n));
    st.per_step.assign(static_cast<size_t>(n), 0);
    st.accumulated.assign(static_cast<size_t>(n), 0);
    const std::vector<std::vector<ValueId>> users = compute_users(g);
    for (ValueId v = 0; v < n; ++v) {
      ShardingSpec spec = st.plan.specs[v].canonical(mesh);
      if (stage_output[v]) spec = spec.without_partial();
      if (st.origin[v] != ValueOrigin::kComputed && spec.partial)
        return internal_error(
            cat("stage ", s, ": parameter ", value_ref(g, v), " is planned as a partial sum"));
      st.stored_spec[v] = spec;
      const TaskKind task = st.graph.task[v];
      if (st.origin[v] == ValueOrigin::kOwned) st.per_step[v] = 1;
      if (st.origin[v] == ValueOrigin::kComputed && task == TaskKind::kUpdate) st.per_step[v] = 1;
      if (st.origin[v] == ValueOrigin::kComputed && task != TaskKind::kUpdate &&
          g.node(v).op != OpKind::kParameter) {
        bool acc = st.graph.loss_output >= 0 && g.outputs()[st.graph.loss_output].value == v;
        for (ValueId u : users[v]) acc = acc || st.graph.task[u] == TaskKind::kUpdate;
        st.accumulated[v] = acc;
      }
    }
    for (size_t j = 0; j < st.graph.received.size(); ++j) {
      const StageTransfer& t = split.transfers[st.graph.received_transfer[j]];
      st.per_step[st.graph.received[j]] = t.rate == TransferRate::kPerStep;
    }
    for (size_t t = 0; t < split.transfers.size(); ++t)
      if (split.transfers[t].from_stage == s && split.transfers[t].accumulated) {
        const int o = st.graph.sent_output[t];
        st.accumulated[g.outputs()[o].value] = 1;
      }
    for (int k = 0; k < kNumTaskKinds; ++k) {
      TaskProgram& tp = st.tasks[k];
      tp.task = static_cast<TaskKind>(k);
      ALPA_ASSIGN_OR_RETURN(TaskGraph tg, build_task_graph(st.graph, tp.task));
      bool work = false;
      for (const Node& node : tg.graph.nodes()) work = work || node.op != OpKind::kParameter;
      if (!work && tg.graph.outputs().empty()) continue;
      tp.empty = false;
      const ShardingPlan plan = task_plan(tg, st);
      LowerOptions lo;
      for (ValueId v : tg.output_source) lo.output_specs.push_back(st.stored_spec[v]);
      Result<SpmdProgram> low = lower_to_spmd(tg.graph, plan, lo);
      if (!low.ok()) return low.status().with_context(cat("stage ", s, " ", task_name(tp.task)));
      tp.spmd = std::move(*low);
      tp.param_source = tg.param_source;
      tp.output_source = tg.output_source;
    }
  }

  // Transfers.
  for (size_t t = 0; t < split.transfers.size(); ++t) {
    const StageTransfer& tr = split.transfers[t];
    PipelineStage& from = prog.stages[tr.from_stage];
    PipelineStage& to = prog.stages[tr.to_stage];
    PipelineTransfer pt;
    pt.split = tr;
    const int out = from.graph.sent_output[t];
    ALPA_CHECK(out >= 0) << "transfer " << t << " has no output on its stage";
    pt.from_value = from.graph.graph.outputs()[out].value;
    for (size_t j = 0; j < to.graph.received.size(); ++j)
      if (to.graph.received_transfer[j] == static_cast<int>(t)) pt.to_value = to.graph.received[j];
    ALPA_CHECK(pt.to_value != kNoValue) << "transfer " << t << " is not received";
    const TensorType& type = step.graph.type(tr.value);
    CrossMeshOptions co;
    co.local_all_gather = options.local_all_gather;
    Result<CrossMeshPlan> cm =
        plan_cross_mesh(type.shape, from.placement, from.stored_spec[pt.from_value],
                        to.placement, to.stored_spec[pt.to_value], co);
    if (!cm.ok())
      return cm.status().with_context(cat("sending ", value_ref(step.graph, tr.value),
                                          " from stage ", tr.from_stage, " to stage ",
                                          tr.to_stage));
    pt.plan = std::move(*cm);
    if (!(pt.plan.receive_spec.canonical(to.placement.shape) ==
          to.stored_spec[pt.to_value].canonical(to.placement.shape))) {
      ALPA_ASSIGN_OR_RETURN(SpmdProgram r,
                            restore_program(type, pt.plan.receive_spec, to.stored_spec[pt.to_value],
                                            to.placement.shape));
      pt.restore = std::move(r);
    }
    if (options.cluster != nullptr)
      pt.predicted_s = cross_mesh_seconds(pt.plan, dtype_bytes(type.dtype), *options.cluster);
    prog.transfers.push_back(std::move(pt));
  }

  // Where the step's parameters live.
  const std::vector<ValueId> params = step.graph.parameters();
  prog.param_home.resize(params.size());
  std::map<ValueId, size_t> param_index;
  for (size_t i = 0; i < params.size(); ++i) param_index[params[i]] = i;
  for (int s = 0; s < S; ++s) {
    const PipelineStage& st = prog.stages[s];
    for (ValueId v : st.graph.owned)
      prog.param_home[param_index.at(st.graph.source[v])].push_back({s, v});
    for (ValueId v : st.graph.inputs)
      prog.param_home[param_index.at(st.graph.source[v])].push_back({s, v});
  }

  // Instruction lists.
  const std::vector<std::vector<ScheduleStep>> order = pipeline_schedule(options.schedule, S, B);
  auto is_param = [&](ValueId v) { return step.graph.node(v).op == OpKind::kParameter; };
  for (int s = 0; s < S; ++s) {
    PipelineStage& st = prog.stages[s];
    std::vector<Instruction>& in = st.instructions;
    auto emit = [&](InstrKind k, int mb, int transfer = -1, TaskKind task = TaskKind::kForward,
                    ValueId value = kNoValue) {
      Instruction x;
      x.kind = k;
      x.micro_batch = mb;
      x.transfer = transfer;
      x.task = task;
      x.value = value;
      in.push_back(x);
    };
    const int T = static_cast<int>(prog.transfers.size());
    // Start of the step: weights other stages read.
    for (int t = 0; t < T; ++t) {
      const StageTransfer& tr = prog.transfers[t].split;
      if (tr.from_stage == s && is_param(tr.value)) emit(InstrKind::kSend, -1, t);
    }
    for (int t = 0; t < T; ++t) {
      const StageTransfer& tr = prog.transfers[t].split;
      if (tr.to_stage == s && is_param(tr.value)) emit(InstrKind::kRecv, -1, t);
    }
    for (const ScheduleStep& step_ : order[s]) {
      const int m = step_.micro_batch;
      for (int t = 0; t < T; ++t) {
        const StageTransfer& tr = prog.transfers[t].split;
        if (tr.to_stage == s && tr.rate == TransferRate::kPerMicroBatch && tr.to_task == step_.task)
          emit(InstrKind::kRecv, m, t);
      }
      const TaskProgram& tp = st.tasks[static_cast<int>(step_.task)];
      if (!tp.empty) {
        emit(InstrKind::kRun, m, -1, step_.task);
        for (ValueId v : tp.output_source)
          if (st.accumulated[v]) emit(InstrKind::kAccumulate, m, -1, step_.task, v);
      }
      for (int t = 0; t < T; ++t) {
        const StageTransfer& tr = prog.transfers[t].split;
        if (tr.from_stage == s && tr.rate == TransferRate::kPerMicroBatch &&
            tr.from_task == step_.task)
          emit(InstrKind::kSend, m, t);
      }
    }
    // End of the step: accumulated values out, update inputs in, the update, its values out.
    for (int t = 0; t < T; ++t) {
      const StageTransfer& tr = prog.transfers[t].split;
      if (tr.from_stage == s && tr.accumulated) emit(InstrKind::kSend, -1, t);
    }
    for (int t = 0; t < T; ++t) {
      const StageTransfer& tr = prog.transfers[t].split;
      if (tr.to_stage == s && tr.rate == TransferRate::kPerStep && !is_param(tr.value))
        emit(InstrKind::kRecv, -1, t);
    }
    if (!st.tasks[static_cast<int>(TaskKind::kUpdate)].empty)
      emit(InstrKind::kRun, -1, -1, TaskKind::kUpdate);
    for (int t = 0; t < T; ++t) {
      const StageTransfer& tr = prog.transfers[t].split;
      if (tr.from_stage == s && tr.rate == TransferRate::kPerStep && !tr.accumulated &&
          !is_param(tr.value))
        emit(InstrKind::kSend, -1, t);
    }
    insert_frees(st, prog.transfers);
  }
  return prog;
}

int stage_of_rank(const PipelineProgram& p, int rank) {
  for (size_t s = 0; s < p.stages.size(); ++s) {
    if (p.stages[s].placement.contains(rank)) return static_cast<int>(s);
  }
  return -1;
}

std::vector<Instruction> device_instructions(const PipelineProgram& p, int rank) {
  const int s = stage_of_rank(p, rank);
  if (s < 0) return {};
  std::vector<Instruction> out;
  for (const Instruction& x : p.stages[s].instructions) {
    if (x.kind == InstrKind::kSend || x.kind == InstrKind::kRecv) {
      const CrossMeshPlan& plan = p.transfers[static_cast<size_t>(x.transfer)].plan;
      bool part = false;
      for (const CrossMeshTransfer& t : plan.transfers)
        part = part || (x.kind == InstrKind::kSend ? t.src_rank : t.dst_rank) == rank;
      // A receiver with a restoring all-gather takes part even when it receives nothing.
      if (x.kind == InstrKind::kRecv && p.transfers[static_cast<size_t>(x.transfer)].restore)
        part = true;
      if (!part) continue;
    }
    out.push_back(x);
  }
  return out;
}

std::string instructions_to_string(const PipelineProgram& p, int stage) {
  std::string out;
  for (const Instruction& x : p.stages[static_cast<size_t>(stage)].instructions)
    out += to_string(x) + "\n";
  return out;
}

}  // namespace alpa
