#include "alpa/spmd/build_program.h"

#include <algorithm>
#include <map>

#include "alpa/spmd/lower.h"
#include "alpa/support/check.h"

namespace alpa {
namespace {

// ---- one stage of a pipeline, indexed by its stage graph's values ------------------------

struct TaskBuild {
  bool empty = true;
  SpmdProgram spmd;
  std::vector<ValueId> param_source;   // per program parameter: its stage-graph value
  std::vector<ValueId> output_source;  // per program output: its stage-graph value
};

// A mesh's list in sections: the weights sent at the start (phase 0); the schedule's passes
// (phase 1, `pos` their index in the mesh's order); the accumulated sends (2); the gradient
// norms (3) and the update (4), stage after stage.
struct PosKey {
  int phase = 0, pos = 0, stage = 0;
  friend auto operator<=>(const PosKey&, const PosKey&) = default;
};

// While building, RUN's `task` is a TaskKind and ACC/FREE's `value` a stage-graph value.
struct StageBuild {
  const StageGraph* sg = nullptr;
  const ShardingPlan* plan = nullptr;
  PlacedMesh mesh;
  std::vector<ShardingSpec> stored;  // per stage-graph value: its layout between instructions
  std::vector<ValueKind> kind;
  std::vector<char> per_step, accumulated;
  TaskBuild tasks[kNumTaskKinds];
  std::vector<Instruction> instructions;
  // Per instruction: where it goes in its mesh's list, which runs the instructions of all the
  // mesh's stages (chunks) sorted by this key (stably: a stage's own order is kept).
  std::vector<PosKey> keys;
};

struct TransferBuild {
  StageTransfer split;
  ValueId from_value = kNoValue, to_value = kNoValue;  // stage-graph values
  CrossMeshPlan plan;
  std::optional<Graph> restore;
  // Between two stages of one mesh (interleaved): no transfer but a task of the mesh, `move`,
  // from the sender's layout to the receiver's, run where the sender would send.
  bool local = false;
  std::optional<Graph> move;
};

// The plan of a task graph: its nodes keep the stage plan's choices; its parameters are held
// in their stored layouts.
ShardingPlan task_plan(const TaskGraph& tg, const StageBuild& st) {
  ShardingPlan p;
  p.mesh = st.plan->mesh;
  const size_t n = static_cast<size_t>(tg.graph.size());
  p.strategy.resize(n);
  p.specs.resize(n);
  p.native_specs.resize(n);
  p.operand_specs.resize(n);
  p.strategy_names.resize(n);
  for (ValueId v = 0; v < tg.graph.size(); ++v) {
    const ValueId src = tg.source[v];
    if (tg.graph.node(v).op == OpKind::kParameter) {
      p.strategy[v] = 0;
      p.specs[v] = st.stored[src];
      p.native_specs[v] = p.specs[v];
      p.strategy_names[v] = "held";
      continue;
    }
    p.strategy[v] = st.plan->strategy[src];
    p.specs[v] = st.plan->specs[src];
    p.native_specs[v] = st.plan->native_specs[src];
    p.operand_specs[v] = st.plan->operand_specs[src];
    p.strategy_names[v] = st.plan->strategy_names[src];
  }
  return p;
}

// A program on the destination mesh turning a received layout into the wanted one.
Result<Graph> restore_program(const TensorType& type, const ShardingSpec& from,
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
  ALPA_ASSIGN_OR_RETURN(SpmdProgram low, lower_to_spmd(g, plan, lo));
  return std::move(low.program);
}

Result<int> check_meshes(const std::vector<PlacedMesh>& meshes) {
  std::vector<int> owner;
  for (size_t s = 0; s < meshes.size(); ++s) {
    if (!meshes[s].validate().ok())
      return invalid_argument(cat("stage ", s, " has an invalid mesh ", meshes[s].to_string()));
    for (int r : meshes[s].devices) {
      if (static_cast<int>(owner.size()) <= r) owner.resize(static_cast<size_t>(r) + 1, -1);
      if (owner[static_cast<size_t>(r)] >= 0)
        return invalid_argument(
            cat("stages ", owner[static_cast<size_t>(r)], " and ", s, " both use device ", r),
            "give every stage its own devices");
      owner[static_cast<size_t>(r)] = static_cast<int>(s);
    }
  }
  for (size_t r = 0; r < owner.size(); ++r)
    if (owner[r] < 0) return invalid_argument(cat("no stage uses device ", r));
  return static_cast<int>(owner.size());
}

// Stored layouts, kinds and rates of a stage's values.
Status prepare_stage(StageBuild& st, const PipelineSplit& split, int s) {
  const StageGraph& sg = *st.sg;
  const Graph& g = sg.graph;
  const size_t n = static_cast<size_t>(g.size());
  if (st.plan->specs.size() != n)
    return invalid_argument(cat("the plan of stage ", s, " is for another graph"));
  if (st.plan->mesh != st.mesh.shape)
    return invalid_argument(cat("the plan of stage ", s, " is for mesh ", st.plan->mesh.to_string(),
                                " but the stage runs on ", st.mesh.shape.to_string()));
  st.kind.assign(n, ValueKind::kComputed);
  for (ValueId v : sg.owned) st.kind[v] = ValueKind::kOwned;
  for (ValueId v : sg.inputs) st.kind[v] = ValueKind::kInput;
  for (ValueId v : sg.received) st.kind[v] = ValueKind::kReceived;
  std::vector<char> stage_output(n, 0);
  for (const GraphOutput& o : g.outputs()) stage_output[o.value] = 1;
  st.stored.resize(n);
  st.per_step.assign(n, 0);
  st.accumulated.assign(n, 0);
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  for (ValueId v = 0; v < g.size(); ++v) {
    ShardingSpec spec = st.plan->specs[v].canonical(st.mesh.shape);
    if (stage_output[v]) spec = spec.without_partial();
    if (st.kind[v] != ValueKind::kComputed && spec.partial)
      return internal_error(
          cat("stage ", s, ": parameter ", value_ref(g, v), " is planned as a partial sum"));
    st.stored[v] = spec;
    const TaskKind task = sg.task[v];
    if (st.kind[v] == ValueKind::kOwned) st.per_step[v] = 1;
    if (st.kind[v] == ValueKind::kComputed && once_per_step(task)) st.per_step[v] = 1;
    if (st.kind[v] == ValueKind::kComputed && !once_per_step(task) &&
        g.node(v).op != OpKind::kParameter) {
      bool acc = sg.loss_output >= 0 && g.outputs()[sg.loss_output].value == v;
      for (ValueId u : users[v]) acc = acc || once_per_step(sg.task[u]);
      st.accumulated[v] = acc;
    }
  }
  for (size_t j = 0; j < sg.received.size(); ++j) {
    const StageTransfer& t = split.transfers[sg.received_transfer[j]];
    st.per_step[sg.received[j]] = t.rate == TransferRate::kPerStep;
  }
  for (size_t t = 0; t < split.transfers.size(); ++t)
    if (split.transfers[t].from_stage == s && split.transfers[t].accumulated)
      st.accumulated[g.outputs()[sg.sent_output[t]].value] = 1;
  return ok_status();
}

Status lower_tasks(StageBuild& st, int s) {
  for (int k = 0; k < kNumTaskKinds; ++k) {
    TaskBuild& tb = st.tasks[k];
    const TaskKind kind = static_cast<TaskKind>(k);
    ALPA_ASSIGN_OR_RETURN(TaskGraph tg, build_task_graph(*st.sg, kind));
    bool work = false;
    for (const Node& node : tg.graph.nodes()) work = work || node.op != OpKind::kParameter;
    if (!work && tg.graph.outputs().empty()) continue;
    tb.empty = false;
    LowerOptions lo;
    for (ValueId v : tg.output_source) lo.output_specs.push_back(st.stored[v]);
    Result<SpmdProgram> low = lower_to_spmd(tg.graph, task_plan(tg, st), lo);
    if (!low.ok()) return low.status().with_context(cat("stage ", s, " ", task_name(kind)));
    tb.spmd = std::move(*low);
    tb.param_source = tg.param_source;
    tb.output_source = tg.output_source;
  }
  return ok_status();
}

// Which mesh runs each stage: the first stage placed as stage 0 begins the second round, so
// the first S stages take S meshes (check_meshes: disjoint) and stage c must run on the mesh
// of stage c mod S (interleaved); with no repeat, S is the stage count.
struct MeshGroups {
  int meshes = 0, virtual_stages = 1;
  std::vector<int> mesh_of;        // per stage
  std::vector<int> chunk_of;       // per stage: its chunk on its mesh (c / S)
  std::vector<PlacedMesh> placed;  // per mesh
};

Result<MeshGroups> group_meshes(const std::vector<PlacedMesh>& meshes) {
  MeshGroups g;
  const int C = static_cast<int>(meshes.size());
  int S = C;
  for (int c = 1; c < C; ++c)
    if (meshes[static_cast<size_t>(c)] == meshes[0]) {
      S = c;
      break;
    }
  if (C % S != 0)
    return invalid_argument(cat("stage ", S, " runs on the mesh of stage 0, so the ", C,
                                " stages should be a multiple of ", S, " meshes"),
                            "interleaved stages take the meshes in turn: stage c on the mesh of "
                            "stage c mod (meshes)");
  for (int c = S; c < C; ++c)
    if (!(meshes[static_cast<size_t>(c)] == meshes[static_cast<size_t>(c % S)]))
      return invalid_argument(
          cat("stage ", c, " runs on ", meshes[static_cast<size_t>(c)].to_string(),
              ", not on the mesh of stage ", c % S, " (",
              meshes[static_cast<size_t>(c % S)].to_string(), ")"),
          "interleaved stages take the meshes in turn: stage c on the mesh of stage c mod "
          "(meshes)");
  g.meshes = S;
  g.virtual_stages = C / S;
  for (int c = 0; c < C; ++c) {
    g.mesh_of.push_back(c % S);
    g.chunk_of.push_back(c / S);
  }
  g.placed.assign(meshes.begin(), meshes.begin() + S);
  return g;
}

Result<std::vector<TransferBuild>> plan_transfers(const TrainStep& step, const PipelineSplit& split,
                                                  const std::vector<StageBuild>& stages,
                                                  const MeshGroups& groups,
                                                  const PipelineBuildOptions& options) {
  std::vector<TransferBuild> out;
  for (size_t t = 0; t < split.transfers.size(); ++t) {
    const StageTransfer& tr = split.transfers[t];
    const StageBuild& from = stages[static_cast<size_t>(tr.from_stage)];
    const StageBuild& to = stages[static_cast<size_t>(tr.to_stage)];
    TransferBuild tb;
    tb.split = tr;
    const int o = from.sg->sent_output[t];
    ALPA_CHECK(o >= 0) << "transfer " << t << " has no output on its stage";
    tb.from_value = from.sg->graph.outputs()[o].value;
    for (size_t j = 0; j < to.sg->received.size(); ++j)
      if (to.sg->received_transfer[j] == static_cast<int>(t)) tb.to_value = to.sg->received[j];
    ALPA_CHECK(tb.to_value != kNoValue) << "transfer " << t << " is not received";
    const TensorType& type = step.graph.type(tr.value);
    const MeshShape& m = to.mesh.shape;
    if (groups.mesh_of[static_cast<size_t>(tr.from_stage)] ==
        groups.mesh_of[static_cast<size_t>(tr.to_stage)]) {
      tb.local = true;
      Result<Graph> move =
          restore_program(type, from.stored[tb.from_value], to.stored[tb.to_value], m);
      if (!move.ok())
        return move.status().with_context(cat("moving ", value_ref(step.graph, tr.value),
                                              " from stage ", tr.from_stage, " to stage ",
                                              tr.to_stage, " on one mesh"));
      tb.move = std::move(*move);
      tb.move->set_name("move");
      out.push_back(std::move(tb));
      continue;
    }
    CrossMeshOptions co;
    co.local_all_gather = options.local_all_gather;
    Result<CrossMeshPlan> cm = plan_cross_mesh(type.shape, from.mesh, from.stored[tb.from_value],
                                               to.mesh, to.stored[tb.to_value], co);
    if (!cm.ok())
      return cm.status().with_context(cat("sending ", value_ref(step.graph, tr.value),
                                          " from stage ", tr.from_stage, " to stage ",
                                          tr.to_stage));
    tb.plan = std::move(*cm);
    if (!(tb.plan.receive_spec.canonical(m) == to.stored[tb.to_value].canonical(m))) {
      ALPA_ASSIGN_OR_RETURN(Graph r,
                            restore_program(type, tb.plan.receive_spec, to.stored[tb.to_value], m));
      tb.restore = std::move(r);
    }
    out.push_back(std::move(tb));
  }
  return out;
}

// Stage s's instructions: sends and receives of weights at the start, the schedule's passes
// with their transfers and accumulations, then the update and what it sends. `passes`: the
// stage's passes with their index in its mesh's order. A transfer to a stage of the same mesh
// is emitted as SEND and RECV here too (so FREE placement sees them); merge_mesh turns them
// into the move.
void emit_instructions(StageBuild& st, int s,
                       const std::vector<std::pair<int, ScheduleStep>>& passes,
                       const std::vector<TransferBuild>& transfers, const Graph& step_graph) {
  PosKey key{0, 0, s};
  auto emit = [&](InstrKind k, int mb, int transfer = -1, int task = -1, int value = -1) {
    st.instructions.push_back(Instruction{k, mb, task, transfer, value});
    st.keys.push_back(key);
  };
  auto is_param = [&](ValueId v) { return step_graph.node(v).op == OpKind::kParameter; };
  const int T = static_cast<int>(transfers.size());
  auto each = [&](auto pred, auto fn) {
    for (int t = 0; t < T; ++t)
      if (pred(transfers[static_cast<size_t>(t)].split)) fn(t);
  };
  each([&](const StageTransfer& tr) { return tr.from_stage == s && is_param(tr.value); },
       [&](int t) { emit(InstrKind::kSend, -1, t); });
  each([&](const StageTransfer& tr) { return tr.to_stage == s && is_param(tr.value); },
       [&](int t) { emit(InstrKind::kRecv, -1, t); });
  for (const auto& [pos, step] : passes) {
    key = PosKey{1, pos, s};
    const int m = step.micro_batch;
    each(
        [&](const StageTransfer& tr) {
          return tr.to_stage == s && tr.rate == TransferRate::kPerMicroBatch &&
                 tr.to_task == step.task;
        },
        [&](int t) { emit(InstrKind::kRecv, m, t); });
    const TaskBuild& tb = st.tasks[static_cast<int>(step.task)];
    if (!tb.empty) {
      emit(InstrKind::kRun, m, -1, static_cast<int>(step.task));
      for (ValueId v : tb.output_source)
        if (st.accumulated[v]) emit(InstrKind::kAccumulate, m, -1, -1, v);
    }
    each(
        [&](const StageTransfer& tr) {
          return tr.from_stage == s && tr.rate == TransferRate::kPerMicroBatch &&
                 tr.from_task == step.task;
        },
        [&](int t) { emit(InstrKind::kSend, m, t); });
  }
  key = PosKey{2, 0, s};
  each([&](const StageTransfer& tr) { return tr.from_stage == s && tr.accumulated; },
       [&](int t) { emit(InstrKind::kSend, -1, t); });
  // Once per step: the gradient norms, then the update, each after what it receives.
  for (TaskKind task : {TaskKind::kGradNorm, TaskKind::kUpdate}) {
    key = PosKey{task == TaskKind::kGradNorm ? 3 : 4, 0, s};
    each(
        [&](const StageTransfer& tr) {
          return tr.to_stage == s && tr.rate == TransferRate::kPerStep && !is_param(tr.value) &&
                 tr.to_task == task;
        },
        [&](int t) { emit(InstrKind::kRecv, -1, t); });
    if (!st.tasks[static_cast<int>(task)].empty)
      emit(InstrKind::kRun, -1, -1, static_cast<int>(task));
    each(
        [&](const StageTransfer& tr) {
          return tr.from_stage == s && tr.rate == TransferRate::kPerStep && !tr.accumulated &&
                 !is_param(tr.value) && tr.from_task == task;
        },
        [&](int t) { emit(InstrKind::kSend, -1, t); });
  }
}

using Key = std::pair<ValueId, int>;

// Appends FREE after the last reader of every stored value (values nobody reads are freed
// right after they are written). Owned weights and state are never freed; the loss stays for
// the runner to read at the end of the step.
void insert_frees(StageBuild& st, const std::vector<TransferBuild>& transfers) {
  const std::vector<Instruction>& in = st.instructions;
  std::map<Key, size_t> last_read, written;
  auto key_of = [&](ValueId v, int mb) { return Key{v, st.per_step[v] ? -1 : mb}; };
  for (size_t i = 0; i < in.size(); ++i) {
    const Instruction& x = in[i];
    switch (x.kind) {
      case InstrKind::kRun: {
        const TaskBuild& tb = st.tasks[x.task];
        for (ValueId v : tb.param_source)
          if (st.kind[v] != ValueKind::kOwned && st.kind[v] != ValueKind::kInput)
            last_read[key_of(v, x.micro_batch)] = i;
        for (size_t o = 0; o < tb.output_source.size(); ++o)
          if (tb.spmd.program.outputs()[o].alias == kNoValue)
            written.emplace(key_of(tb.output_source[o], x.micro_batch), i);
        break;
      }
      case InstrKind::kAccumulate:
        last_read[Key{x.value, x.micro_batch}] = i;
        written.emplace(Key{x.value, -1}, i);
        break;
      case InstrKind::kSend: {
        const TransferBuild& t = transfers[static_cast<size_t>(x.transfer)];
        if (st.kind[t.from_value] != ValueKind::kOwned)
          last_read[key_of(t.from_value, x.micro_batch)] = i;
        break;
      }
      case InstrKind::kRecv:
        written.emplace(key_of(transfers[static_cast<size_t>(x.transfer)].to_value, x.micro_batch),
                        i);
        break;
      case InstrKind::kFree: break;
    }
  }
  std::vector<std::vector<Instruction>> after(in.size());
  const StageGraph& sg = *st.sg;
  const ValueId loss = sg.loss_output >= 0 ? sg.graph.outputs()[sg.loss_output].value : kNoValue;
  for (const auto& [key, at] : written) {
    if (key == Key{loss, -1}) continue;
    auto it = last_read.find(key);
    const size_t pos = it == last_read.end() ? at : std::max(at, it->second);
    after[pos].push_back(Instruction{InstrKind::kFree, key.second, -1, -1, key.first});
  }
  std::vector<Instruction> out;
  std::vector<PosKey> keys;
  for (size_t i = 0; i < in.size(); ++i) {
    out.push_back(in[i]);
    keys.push_back(st.keys[i]);
    for (const Instruction& f : after[i]) {
      out.push_back(f);
      keys.push_back(st.keys[i]);
    }
  }
  st.instructions = std::move(out);
  st.keys = std::move(keys);
}

// The stage in program form: only values that live between instructions, numbered owned
// first, then inputs, received and computed values by stage-graph id.
Stage finish_stage(const StageBuild& st, const Graph& step_graph,
                   const std::map<ValueId, int>& param_of, std::vector<int>& index) {
  const StageGraph& sg = *st.sg;
  std::vector<char> used(static_cast<size_t>(sg.graph.size()), 0);
  for (const TaskBuild& tb : st.tasks) {
    for (ValueId v : tb.param_source) used[v] = 1;
    for (ValueId v : tb.output_source) used[v] = 1;
  }
  for (ValueId v : sg.owned) used[v] = 1;
  for (ValueId v : sg.inputs) used[v] = 1;
  for (ValueId v : sg.received) used[v] = 1;
  for (const Instruction& x : st.instructions)
    if (x.value >= 0) used[x.value] = 1;
  Stage out;
  out.mesh = st.mesh;
  index.assign(used.size(), -1);
  for (ValueKind kind :
       {ValueKind::kOwned, ValueKind::kInput, ValueKind::kReceived, ValueKind::kComputed})
    for (ValueId v = 0; v < sg.graph.size(); ++v) {
      if (!used[v] || st.kind[v] != kind) continue;
      index[v] = static_cast<int>(out.values.size());
      StageValue x;
      x.name = value_ref(step_graph, sg.source[v]).substr(1);
      x.type = sg.graph.type(v);
      x.layout = st.stored[v];
      x.kind = kind;
      if (kind == ValueKind::kOwned || kind == ValueKind::kInput)
        x.param = param_of.at(sg.source[v]);
      x.per_step = st.per_step[v];
      x.accumulated = st.accumulated[v];
      out.values.push_back(std::move(x));
    }
  int task_index[kNumTaskKinds];
  std::fill(std::begin(task_index), std::end(task_index), -1);
  for (int k = 0; k < kNumTaskKinds; ++k) {
    const TaskBuild& tb = st.tasks[k];
    if (tb.empty) continue;
    task_index[k] = static_cast<int>(out.tasks.size());
    Task t;
    t.name = std::string(task_name(static_cast<TaskKind>(k)));
    t.program = tb.spmd.program;
    for (ValueId v : tb.param_source) t.inputs.push_back(index[v]);
    const std::vector<ValueId> params = t.program.parameters();
    for (size_t o = 0; o < tb.output_source.size(); ++o) {
      const ValueId alias = t.program.outputs()[o].alias;
      if (alias == kNoValue) {
        t.outputs.push_back(index[tb.output_source[o]]);
        continue;
      }
      // An update of an owned value writes that value.
      const size_t pos =
          static_cast<size_t>(std::find(params.begin(), params.end(), alias) - params.begin());
      t.outputs.push_back(t.inputs[pos]);
    }
    out.tasks.push_back(std::move(t));
  }
  for (Instruction x : st.instructions) {
    if (x.kind == InstrKind::kRun) x.task = task_index[x.task];
    if (x.value >= 0) x.value = index[x.value];
    out.instructions.push_back(x);
  }
  if (sg.loss_output >= 0) out.loss = index[sg.graph.outputs()[sg.loss_output].value];
  return out;
}

// The stages (chunks) of mesh i as one program stage: their values and tasks side by side
// (tasks named "forward.c" for stage c when the mesh runs several), their instructions in the
// mesh's order (PosKey), a SEND to a stage of the same mesh as a RUN of its move task and the
// matching RECV dropped; transfers renumbered to the program's.
Stage merge_mesh(int i, const MeshGroups& groups, const std::vector<Stage>& built,
                 const std::vector<StageBuild>& builds, const std::vector<std::vector<int>>& index,
                 const std::vector<TransferBuild>& transfers,
                 const std::vector<int>& transfer_index, const Graph& step_graph) {
  const int C = static_cast<int>(built.size());
  Stage out;
  out.mesh = groups.placed[static_cast<size_t>(i)];
  std::vector<int> value_base(static_cast<size_t>(C), 0);
  struct Keyed {
    PosKey key;
    Instruction x;
  };
  std::vector<Keyed> list;
  for (int c = 0; c < C; ++c) {
    if (groups.mesh_of[static_cast<size_t>(c)] != i) continue;
    const Stage& st = built[static_cast<size_t>(c)];
    const int vb = static_cast<int>(out.values.size());
    const int tbase = static_cast<int>(out.tasks.size());
    value_base[static_cast<size_t>(c)] = vb;
    out.values.insert(out.values.end(), st.values.begin(), st.values.end());
    for (Task t : st.tasks) {
      if (groups.virtual_stages > 1) t.name = cat(t.name, ".", c);
      for (int& x : t.inputs) x += vb;
      for (int& x : t.outputs) x += vb;
      out.tasks.push_back(std::move(t));
    }
    if (st.loss >= 0) out.loss = st.loss + vb;
    const std::vector<PosKey>& keys = builds[static_cast<size_t>(c)].keys;
    ALPA_CHECK(keys.size() == st.instructions.size()) << "stage " << c << ": keys out of step";
    for (size_t k = 0; k < st.instructions.size(); ++k) {
      Instruction x = st.instructions[k];
      if (x.kind == InstrKind::kRun) x.task += tbase;
      if (x.value >= 0) x.value += vb;
      list.push_back({keys[k], x});
    }
  }
  // One move task per transfer inside the mesh.
  std::map<int, int> move_task;
  for (size_t t = 0; t < transfers.size(); ++t) {
    const TransferBuild& tb = transfers[t];
    if (!tb.local || groups.mesh_of[static_cast<size_t>(tb.split.from_stage)] != i) continue;
    const int from = tb.split.from_stage, to = tb.split.to_stage;
    Task m;
    m.name = cat("move.", value_ref(step_graph, tb.split.value).substr(1), ".", from, ">", to);
    m.program = *tb.move;
    m.inputs = {value_base[static_cast<size_t>(from)] +
                index[static_cast<size_t>(from)][tb.from_value]};
    m.outputs = {value_base[static_cast<size_t>(to)] + index[static_cast<size_t>(to)][tb.to_value]};
    move_task[static_cast<int>(t)] = static_cast<int>(out.tasks.size());
    out.tasks.push_back(std::move(m));
  }
  std::stable_sort(list.begin(), list.end(),
                   [](const Keyed& a, const Keyed& b) { return a.key < b.key; });
  for (Keyed& k : list) {
    Instruction x = k.x;
    if (x.kind == InstrKind::kSend || x.kind == InstrKind::kRecv) {
      const TransferBuild& tb = transfers[static_cast<size_t>(x.transfer)];
      if (tb.local) {
        if (x.kind == InstrKind::kRecv) continue;  // the move wrote it
        x = Instruction{InstrKind::kRun, x.micro_batch, move_task.at(x.transfer), -1, -1};
      } else {
        x.transfer = transfer_index[static_cast<size_t>(x.transfer)];
      }
    }
    out.instructions.push_back(x);
  }
  return out;
}

}  // namespace

std::vector<StepParam> step_params(const Graph& step_graph, int micro_batches) {
  std::vector<StepParam> out;
  for (ValueId v : step_graph.parameters()) {
    const Node& n = step_graph.node(v);
    StepParam p{n.name, n.type, n.attr<ParameterAttrs>()};
    if (p.attrs.role == ParamRole::kInput && p.type.rank() > 0) p.type.shape[0] *= micro_batches;
    out.push_back(std::move(p));
  }
  return out;
}

Result<Program> build_mesh_program(const Graph& step_graph, const ShardingPlan& plan,
                                   const PlacedMesh& mesh) {
  ALPA_RETURN_IF_ERROR(mesh.validate());
  if (plan.mesh != mesh.shape)
    return invalid_argument(
        cat("the plan is for mesh ", plan.mesh.to_string(), ", not ", mesh.shape.to_string()));
  Program p;
  p.num_devices = static_cast<int>(mesh.size());
  p.params = step_params(step_graph, 1);
  Stage st;
  st.mesh = mesh;
  Task t;
  t.name = "step";
  std::vector<ShardingSpec> param_specs, output_specs;
  if (mesh.size() == 1) {
    t.program = step_graph;  // one device: the graph itself
    for (ValueId v : step_graph.parameters())
      param_specs.push_back(ShardingSpec::replicated(step_graph.type(v).rank()));
    for (const GraphOutput& o : step_graph.outputs())
      output_specs.push_back(ShardingSpec::replicated(step_graph.type(o.value).rank()));
  } else {
    ALPA_ASSIGN_OR_RETURN(SpmdProgram low, lower_to_spmd(step_graph, plan));
    t.program = std::move(low.program);
    param_specs = std::move(low.param_specs);
    output_specs = std::move(low.output_specs);
  }
  const std::vector<ValueId> params = step_graph.parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    const StepParam& sp = p.params[i];
    const bool input = sp.attrs.role == ParamRole::kInput;
    st.values.push_back({sp.name, sp.type, param_specs[i].canonical(mesh.shape),
                         input ? ValueKind::kInput : ValueKind::kOwned, static_cast<int>(i), !input,
                         false});
    t.inputs.push_back(static_cast<int>(i));
  }
  for (size_t o = 0; o < step_graph.outputs().size(); ++o) {
    const GraphOutput& out = step_graph.outputs()[o];
    if (out.alias != kNoValue) {
      const size_t pos =
          static_cast<size_t>(std::find(params.begin(), params.end(), out.alias) - params.begin());
      t.outputs.push_back(static_cast<int>(pos));
      continue;
    }
    const int v = static_cast<int>(st.values.size());
    st.values.push_back({out.name, step_graph.type(out.value),
                         output_specs[o].canonical(mesh.shape), ValueKind::kComputed, -1, true,
                         false});
    t.outputs.push_back(v);
    if (out.name == "loss" && st.loss < 0) st.loss = v;
  }
  st.tasks.push_back(std::move(t));
  st.instructions.push_back(Instruction{InstrKind::kRun, 0, 0, -1, -1});
  for (int v : st.tasks[0].outputs)
    if (st.values[static_cast<size_t>(v)].kind == ValueKind::kComputed && v != st.loss)
      st.instructions.push_back(Instruction{InstrKind::kFree, -1, -1, -1, v});
  p.stages.push_back(std::move(st));
  return p;
}

Result<Program> build_pipeline_program(const TrainStep& step, const PipelineSplit& split,
                                       const std::vector<StageGraph>& stage_graphs,
                                       const std::vector<ShardingPlan>& plans,
                                       const std::vector<PlacedMesh>& meshes,
                                       const PipelineBuildOptions& options) {
  const int C = split.num_stages;
  const int B = options.micro_batches;
  if (B < 1) return invalid_argument(cat("micro_batches must be >= 1, got ", B));
  if (static_cast<int>(stage_graphs.size()) != C || static_cast<int>(plans.size()) != C ||
      static_cast<int>(meshes.size()) != C)
    return invalid_argument(
        cat("a pipeline of ", C, " stages needs ", C, " stage graphs, plans and meshes"));
  if (C < 1) return invalid_argument("a pipeline needs at least one stage");
  ALPA_ASSIGN_OR_RETURN(const MeshGroups groups, group_meshes(meshes));
  const int S = groups.meshes, v = groups.virtual_stages;
  if (v > 1 && options.schedule != ScheduleKind::kInterleaved1F1B)
    return invalid_argument(
        cat("the ", C, " stages share ", S, " meshes (", v, " per mesh), which only the ",
            "interleaved schedule runs, not ", schedule_name(options.schedule)),
        "use --schedule interleaved, or give every stage its own devices");
  ALPA_RETURN_IF_ERROR(check_schedule_sizes(options.schedule, S, B, v));
  Program prog;
  ALPA_ASSIGN_OR_RETURN(prog.num_devices, check_meshes(groups.placed));
  prog.micro_batches = B;
  prog.schedule = std::string(schedule_name(options.schedule));
  prog.virtual_stages = v;
  prog.params = step_params(step.graph, B);
  std::vector<StageBuild> stages(static_cast<size_t>(C));
  for (int c = 0; c < C; ++c) {
    StageBuild& st = stages[static_cast<size_t>(c)];
    st.sg = &stage_graphs[static_cast<size_t>(c)];
    st.plan = &plans[static_cast<size_t>(c)];
    st.mesh = meshes[static_cast<size_t>(c)];
    ALPA_RETURN_IF_ERROR(prepare_stage(st, split, c));
    ALPA_RETURN_IF_ERROR(lower_tasks(st, c));
  }
  ALPA_ASSIGN_OR_RETURN(std::vector<TransferBuild> transfers,
                        plan_transfers(step, split, stages, groups, options));
  const std::vector<std::vector<ScheduleStep>> order = pipeline_schedule(options.schedule, S, B, v);
  std::map<ValueId, int> param_of;
  const std::vector<ValueId> params = step.graph.parameters();
  for (size_t i = 0; i < params.size(); ++i) param_of[params[i]] = static_cast<int>(i);
  std::vector<std::vector<int>> index(static_cast<size_t>(C));
  std::vector<Stage> built;
  for (int c = 0; c < C; ++c) {
    StageBuild& st = stages[static_cast<size_t>(c)];
    const int mesh = groups.mesh_of[static_cast<size_t>(c)];
    std::vector<std::pair<int, ScheduleStep>> passes;
    const std::vector<ScheduleStep>& o = order[static_cast<size_t>(mesh)];
    for (size_t pos = 0; pos < o.size(); ++pos)
      if (o[pos].chunk == groups.chunk_of[static_cast<size_t>(c)])
        passes.push_back({static_cast<int>(pos), o[pos]});
    emit_instructions(st, c, passes, transfers, step.graph);
    insert_frees(st, transfers);
    built.push_back(finish_stage(st, step.graph, param_of, index[static_cast<size_t>(c)]));
  }
  // Where each stage's values begin in its mesh's (merge_mesh puts them side by side, in
  // stage order).
  std::vector<int> value_base(static_cast<size_t>(C), 0), held(static_cast<size_t>(S), 0);
  for (int c = 0; c < C; ++c) {
    int& n = held[static_cast<size_t>(groups.mesh_of[static_cast<size_t>(c)])];
    value_base[static_cast<size_t>(c)] = n;
    n += static_cast<int>(built[static_cast<size_t>(c)].values.size());
  }
  // Transfers between meshes keep their order; those inside a mesh become its move tasks.
  std::vector<int> transfer_index(transfers.size(), -1);
  for (size_t t = 0; t < transfers.size(); ++t) {
    TransferBuild& tb = transfers[t];
    if (tb.local) continue;
    transfer_index[t] = static_cast<int>(prog.transfers.size());
    Transfer x;
    x.from_stage = groups.mesh_of[static_cast<size_t>(tb.split.from_stage)];
    x.to_stage = groups.mesh_of[static_cast<size_t>(tb.split.to_stage)];
    const size_t from = static_cast<size_t>(tb.split.from_stage);
    const size_t to = static_cast<size_t>(tb.split.to_stage);
    x.from_value = value_base[from] + index[from][tb.from_value];
    x.to_value = value_base[to] + index[to][tb.to_value];
    x.plan = std::move(tb.plan);
    x.restore = std::move(tb.restore);
    prog.transfers.push_back(std::move(x));
  }
  for (int i = 0; i < S; ++i)
    prog.stages.push_back(
        merge_mesh(i, groups, built, stages, index, transfers, transfer_index, step.graph));
  return prog;
}

}  // namespace alpa
