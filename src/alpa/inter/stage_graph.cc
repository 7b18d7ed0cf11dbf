#include "alpa/inter/stage_graph.h"

#include <algorithm>
#include <map>

#include "alpa/ir/analysis.h"
#include "alpa/support/check.h"

namespace alpa {

std::string_view task_name(TaskKind t) {
  switch (t) {
    case TaskKind::kForward: return "forward";
    case TaskKind::kBackward: return "backward";
    case TaskKind::kGradNorm: return "grad_norm";
    case TaskKind::kUpdate: return "update";
  }
  return "?";
}

namespace {

ParamRole role_of(const Node& n) {
  return n.attr<ParameterAttrs>().role;
}

int task_rank(TaskKind t) {
  return static_cast<int>(t);
}

// The split's transfers: one per (value, reading stage), each at the rate its tasks need.
Status add_transfers(const Graph& g, const std::vector<std::vector<ValueId>>& users,
                     PipelineSplit& sp) {
  auto is_param = [&](ValueId v) { return g.node(v).op == OpKind::kParameter; };
  for (ValueId v = 0; v < g.size(); ++v) {
    if (sp.free[v] || sp.stage[v] == kNoStage) continue;
    const bool param = is_param(v);
    std::map<int, int> first_task;  // stage -> lowest task rank reading v there
    std::map<int, bool> reads_update;
    for (ValueId u : users[v]) {
      if (sp.free[u] || sp.stage[u] == kNoStage) continue;
      const int s = sp.stage[u];
      if (s == sp.stage[v]) continue;
      auto it = first_task.find(s);
      const int r = task_rank(sp.task[u]);
      if (it == first_task.end() || r < it->second) first_task[s] = r;
      if (once_per_step(sp.task[u])) reads_update[s] = true;
    }
    for (const auto& [s, r] : first_task) {
      StageTransfer t;
      t.value = v;
      t.from_stage = sp.stage[v];
      t.to_stage = s;
      t.from_task = param ? TaskKind::kForward : sp.task[v];
      t.to_task = static_cast<TaskKind>(r);
      if (param || once_per_step(sp.task[v])) {
        t.rate = TransferRate::kPerStep;
      } else if (once_per_step(t.to_task)) {
        t.rate = TransferRate::kPerStep;
        t.accumulated = true;
      } else {
        t.rate = TransferRate::kPerMicroBatch;
        if (reads_update[s])
          return internal_error(cat(value_ref(g, v), " is read on stage ", s,
                                    " both per micro-batch and by the update"));
        if (sp.task[v] == TaskKind::kBackward && t.to_task == TaskKind::kBackward &&
            s > t.from_stage)
          return internal_error(cat("the backward value ", value_ref(g, v), " of stage ",
                                    t.from_stage, " is read by the backward of the later stage ",
                                    s));
      }
      sp.transfers.push_back(t);
    }
  }
  return ok_status();
}

}  // namespace

Result<PipelineSplit> split_train_step(const TrainStep& step, std::span<const int> forward_stage,
                                       int num_stages) {
  const Graph& g = step.graph;
  const int32_t n = g.size();
  if (num_stages < 1)
    return invalid_argument(cat("a pipeline needs at least one stage, got ", num_stages));
  if (forward_stage.size() != static_cast<size_t>(n))
    return invalid_argument(
        cat("forward_stage has ", forward_stage.size(), " entries for a graph of ", n, " nodes"));
  if (step.phase.size() != static_cast<size_t>(n) || step.origin.size() != static_cast<size_t>(n))
    return invalid_argument("the training step carries no phases (build it with build_train_step)");
  if (step.micro_batches != 1)
    return invalid_argument("a pipeline splits a training step built for one micro-batch",
                            "build the step with micro_batches = 1; the pipeline runs the "
                            "micro-batches");
  PipelineSplit sp;
  sp.num_stages = num_stages;
  sp.stage.assign(static_cast<size_t>(n), kNoStage);
  sp.task.assign(static_cast<size_t>(n), TaskKind::kForward);
  sp.free = free_values(g);
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  auto is_param = [&](ValueId v) { return g.node(v).op == OpKind::kParameter; };

  // Forward nodes.
  for (ValueId v = 0; v < n; ++v) {
    if (is_param(v) || sp.free[v] || step.phase[v] != StepPhase::kForward) continue;
    const int s = forward_stage[v];
    if (s < 0 || s >= num_stages)
      return invalid_argument(cat("forward node ", value_ref(g, v), " is given stage ", s,
                                  ", outside [0, ", num_stages, ")"));
    for (ValueId u : g.node(v).operands)
      if (sp.stage[u] != kNoStage && !is_param(u) && sp.stage[u] > s)
        return invalid_argument(cat("forward node ", value_ref(g, v), " on stage ", s, " reads ",
                                    value_ref(g, u), " of the later stage ", sp.stage[u]),
                                "stages must be contiguous ranges of the forward pass");
    sp.stage[v] = s;
  }
  // Weights live on the first stage that reads them; state with its weight; state of no weight
  // (an inference step's KV cache) on the first stage whose forward reads or updates it; the
  // rest on 0.
  const std::vector<ValueId> params = g.parameters();
  std::map<std::string, ValueId> weight_id;
  for (ValueId p : params) {
    const ParamRole role = role_of(g.node(p));
    if (role != ParamRole::kWeight) continue;
    int s = num_stages;
    for (ValueId u : users[p])
      if (step.phase[u] == StepPhase::kForward && sp.stage[u] != kNoStage)
        s = std::min(s, sp.stage[u]);
    sp.stage[p] = s == num_stages ? 0 : s;
    weight_id[g.node(p).name] = p;
  }
  for (size_t i = 0; i < step.states.size(); ++i) {
    const ValueId p = g.find(step.states[i]);
    if (p == kNoValue)
      return internal_error(cat("state '", step.states[i], "' is not a parameter"));
    const int w = i < step.state_weight.size() ? step.state_weight[i] : -1;
    sp.stage[p] = 0;
    if (w >= 0) {
      auto it = weight_id.find(step.weights[static_cast<size_t>(w)]);
      if (it != weight_id.end()) sp.stage[p] = sp.stage[it->second];
      continue;
    }
    int s = num_stages;
    for (ValueId u : users[p])
      if (step.phase[u] == StepPhase::kForward && sp.stage[u] != kNoStage)
        s = std::min(s, sp.stage[u]);
    for (const GraphOutput& o : g.outputs())
      if (o.alias == p && step.phase[o.value] == StepPhase::kForward &&
          sp.stage[o.value] != kNoStage)
        s = std::min(s, sp.stage[o.value]);
    if (s < num_stages) sp.stage[p] = s;
  }
  // Backward nodes: with their origin. A weight's gradient sums join its update. Squared
  // gradient norms: with their weight.
  std::vector<char> update(static_cast<size_t>(n), 0);
  for (ValueId v = 0; v < n; ++v) {
    if (sp.free[v] || is_param(v)) continue;
    if (step.phase[v] == StepPhase::kGradNorm) {
      const ValueId o = step.origin[v];
      if (o == kNoValue || !is_param(o) || sp.stage[o] == kNoStage)
        return internal_error(cat("gradient norm node ", value_ref(g, v), " has no weight"));
      sp.stage[v] = sp.stage[o];
      sp.task[v] = TaskKind::kGradNorm;
      continue;
    }
    if (step.phase[v] == StepPhase::kUpdate) {
      update[v] = 1;
      continue;
    }
    if (step.phase[v] != StepPhase::kBackward) continue;
    const ValueId o = step.origin[v];
    if (o == kNoValue)
      return internal_error(cat("backward node ", value_ref(g, v), " has no origin"));
    if (is_param(o)) {
      update[v] = 1;
      continue;
    }
    if (sp.stage[o] == kNoStage)
      return internal_error(cat("backward node ", value_ref(g, v), " belongs to ", value_ref(g, o),
                                ", which has no stage"));
    sp.stage[v] = sp.stage[o];
    sp.task[v] = TaskKind::kBackward;
  }
  // A backward sum whose two operands come from one later stage (the partial gradients of a
  // value a later stage reads several times) runs there: one sum crosses the boundary instead
  // of each partial.
  for (ValueId v = 0; v < n; ++v) {
    const Node& node = g.node(v);
    if (sp.task[v] != TaskKind::kBackward || sp.stage[v] == kNoStage || node.op != OpKind::kAdd ||
        sp.free[v])
      continue;
    const ValueId a = node.operands[0], b = node.operands[1];
    const int s = sp.stage[a];
    if (s == kNoStage || s <= sp.stage[v] || sp.stage[b] != s || sp.free[a] || sp.free[b] ||
        sp.task[a] != TaskKind::kBackward || sp.task[b] != TaskKind::kBackward ||
        g.type(a).num_elements() != g.type(v).num_elements() ||
        g.type(b).num_elements() != g.type(v).num_elements())
      continue;
    sp.stage[v] = s;
  }
  // Update nodes: on the first stage among their users (and the stage of what they update).
  std::vector<int> alias_stage(static_cast<size_t>(n), num_stages);
  for (const GraphOutput& o : g.outputs())
    if (o.alias != kNoValue)
      alias_stage[o.value] = std::min(alias_stage[o.value], sp.stage[o.alias]);
  for (ValueId v = n - 1; v >= 0; --v) {
    if (!update[v]) continue;
    int s = alias_stage[v];
    for (ValueId u : users[v])
      if (!sp.free[u] && sp.stage[u] != kNoStage) s = std::min(s, sp.stage[u]);
    sp.stage[v] = s == num_stages ? 0 : s;
    sp.task[v] = TaskKind::kUpdate;
  }
  // What a gradient norm reads on its stage (the gradient sums) runs before it.
  for (ValueId v = n - 1; v >= 0; --v) {
    if (!update[v]) continue;
    for (ValueId u : users[v])
      if (!sp.free[u] && sp.task[u] == TaskKind::kGradNorm && sp.stage[u] == sp.stage[v])
        sp.task[v] = TaskKind::kGradNorm;
  }
  for (const GraphOutput& o : g.outputs())
    if (o.alias != kNoValue && sp.stage[o.value] != sp.stage[o.alias] && !sp.free[o.value])
      return internal_error(cat("the update of ", value_ref(g, o.alias), " runs on stage ",
                                sp.stage[o.value], " but it lives on stage ", sp.stage[o.alias]));

  ALPA_RETURN_IF_ERROR(add_transfers(g, users, sp));
  return sp;
}

Result<StageGraph> build_stage_graph(const TrainStep& step, const PipelineSplit& split, int stage,
                                     int micro_batches) {
  const Graph& g = step.graph;
  const int32_t n = g.size();
  if (stage < 0 || stage >= split.num_stages)
    return invalid_argument(cat("stage ", stage, " is outside [0, ", split.num_stages, ")"));
  if (micro_batches < 1) return invalid_argument("micro_batches must be >= 1");
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  auto is_param = [&](ValueId v) { return g.node(v).op == OpKind::kParameter; };

  // Nodes this stage computes, and the free nodes they need.
  std::vector<char> take(static_cast<size_t>(n), 0);
  for (ValueId v = n - 1; v >= 0; --v) {
    if (is_param(v)) continue;
    if (!split.free[v]) {
      take[v] = split.stage[v] == stage;
      continue;
    }
    for (ValueId u : users[v]) take[v] = take[v] || take[u];
  }
  // Lowest task among the nodes of this stage reading v.
  auto first_reader = [&](ValueId v) {
    int r = kNumTaskKinds;
    for (ValueId u : users[v])
      if (take[u] && !split.free[u]) r = std::min(r, task_rank(split.task[u]));
    return r == kNumTaskKinds ? TaskKind::kForward : static_cast<TaskKind>(r);
  };

  StageGraph sg;
  sg.stage = stage;
  sg.graph = Graph(cat(g.name(), ".stage", stage));
  std::vector<ValueId> map(static_cast<size_t>(n), kNoValue);
  auto add = [&](Node node, ValueId source, TaskKind task) {
    const ValueId id = sg.graph.add_node(std::move(node));
    sg.source.push_back(source);
    sg.task.push_back(task);
    sg.weight.push_back(once_per_step(task) ? 1.0 / micro_batches : 1.0);
    return id;
  };
  // 1. Weights and state held here; 2. data inputs read here; 3. received values.
  for (ValueId p : g.parameters()) {
    const ParamRole role = role_of(g.node(p));
    if (role == ParamRole::kInput || split.stage[p] != stage) continue;
    map[p] = add(g.node(p), p, first_reader(p));
    sg.owned.push_back(map[p]);
  }
  for (ValueId p : g.parameters(ParamRole::kInput)) {
    bool read = false;
    for (ValueId u : users[p]) read = read || (take[u] && !split.free[u]);
    if (!read) continue;
    map[p] = add(g.node(p), p, first_reader(p));
    sg.inputs.push_back(map[p]);
  }
  for (size_t t = 0; t < split.transfers.size(); ++t) {
    const StageTransfer& tr = split.transfers[t];
    if (tr.to_stage != stage) continue;
    const Node& src = g.node(tr.value);
    Node p;
    p.op = OpKind::kParameter;
    p.type = src.type;
    p.name = cat("recv.", src.name.empty() ? std::to_string(tr.value) : src.name);
    const ParamRole role =
        tr.rate == TransferRate::kPerMicroBatch ? ParamRole::kInput : ParamRole::kWeight;
    p.attrs = ParameterAttrs{role, ParamInit::kZeros, 1.0};
    map[tr.value] = add(std::move(p), tr.value, tr.to_task);
    sg.received.push_back(map[tr.value]);
    sg.received_transfer.push_back(static_cast<int>(t));
  }
  // 4. The stage's nodes in step order.
  for (ValueId v = 0; v < n; ++v) {
    if (!take[v]) continue;
    Node node = g.node(v);
    for (ValueId& op : node.operands) {
      if (map[op] == kNoValue)
        return internal_error(cat("stage ", stage, ": ", value_ref(g, v), " reads ",
                                  value_ref(g, op),
                                  ", which the stage neither computes nor receives"));
      op = map[op];
    }
    map[v] = add(std::move(node), v, split.free[v] ? TaskKind::kForward : split.task[v]);
  }
  // 5. Outputs: values sent, the loss, updated weights and state.
  sg.sent_output.assign(split.transfers.size(), -1);
  std::map<ValueId, int> sent_by_value;
  for (size_t t = 0; t < split.transfers.size(); ++t) {
    const StageTransfer& tr = split.transfers[t];
    if (tr.from_stage != stage) continue;
    auto it = sent_by_value.find(tr.value);
    if (it == sent_by_value.end()) {
      const Node& src = g.node(tr.value);
      const int index = static_cast<int>(sg.graph.outputs().size());
      sg.graph.add_output(
          {cat("send.", src.name.empty() ? std::to_string(tr.value) : src.name), map[tr.value]});
      it = sent_by_value.emplace(tr.value, index).first;
      if (tr.accumulated) sg.sent_accumulated.push_back(map[tr.value]);
    }
    sg.sent_output[t] = it->second;
  }
  for (const GraphOutput& o : g.outputs()) {
    if (o.alias != kNoValue) {
      if (split.stage[o.alias] != stage) continue;
      if (map[o.value] == kNoValue)
        return internal_error(cat("stage ", stage, " holds ", value_ref(g, o.alias),
                                  " but does not compute its update"));
      sg.graph.add_output({o.name, map[o.value], map[o.alias]});
    } else if (!split.free[o.value] && split.stage[o.value] == stage) {
      if (o.name == "loss") sg.loss_output = static_cast<int>(sg.graph.outputs().size());
      sg.graph.add_output({o.name, map[o.value]});
    }
  }
  return sg;
}

Result<TaskGraph> build_task_graph(const StageGraph& sg, TaskKind task) {
  const Graph& g = sg.graph;
  const int32_t n = g.size();
  const std::vector<char> free = free_values(g);
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  auto is_param = [&](ValueId v) { return g.node(v).op == OpKind::kParameter; };
  auto mine = [&](ValueId v) { return !is_param(v) && !free[v] && sg.task[v] == task; };

  std::vector<char> take(static_cast<size_t>(n), 0);
  for (ValueId v = n - 1; v >= 0; --v) {
    if (mine(v)) {
      take[v] = 1;
    } else if (free[v]) {
      for (ValueId u : users[v]) take[v] = take[v] || take[u];
    }
  }
  // What the task reads from elsewhere: parameters of the stage and other tasks' values.
  std::vector<char> needed(static_cast<size_t>(n), 0);
  for (ValueId v = 0; v < n; ++v) {
    if (!take[v]) continue;
    for (ValueId op : g.node(v).operands)
      if (!take[op]) needed[op] = 1;
  }
  // Aliased outputs whose update this task computes also need their parameter (its buffer).
  std::vector<char> stage_output(static_cast<size_t>(n), 0);
  for (const GraphOutput& o : g.outputs()) {
    stage_output[o.value] = 1;
    if (o.alias != kNoValue && take[o.value]) needed[o.alias] = 1;
  }

  TaskGraph tg;
  tg.task = task;
  tg.graph = Graph(cat(g.name(), ".", task_name(task)));
  std::vector<ValueId> map(static_cast<size_t>(n), kNoValue);
  for (ValueId v = 0; v < n; ++v) {
    if (!needed[v]) continue;
    Node p;
    p.op = OpKind::kParameter;
    p.type = g.type(v);
    if (is_param(v)) {
      p = g.node(v);
    } else {
      p.name = cat("in.", g.node(v).name.empty() ? std::to_string(v) : g.node(v).name);
      p.attrs = ParameterAttrs{ParamRole::kInput, ParamInit::kZeros, 1.0};
    }
    map[v] = tg.graph.add_node(std::move(p));
    tg.source.push_back(v);
    tg.param_source.push_back(v);
  }
  for (ValueId v = 0; v < n; ++v) {
    if (!take[v]) continue;
    Node node = g.node(v);
    for (ValueId& op : node.operands) op = map[op];
    map[v] = tg.graph.add_node(std::move(node));
    tg.source.push_back(v);
  }
  // Outputs: values other tasks read, and the stage's outputs this task computes.
  for (ValueId v = 0; v < n; ++v) {
    if (!take[v] || free[v]) continue;
    bool later = stage_output[v] != 0;
    for (ValueId u : users[v]) later = later || (!free[u] && !take[u]);
    if (!later) continue;
    ValueId alias = kNoValue;
    std::string name = cat("out.", g.node(v).name.empty() ? std::to_string(v) : g.node(v).name);
    for (const GraphOutput& o : g.outputs())
      if (o.value == v && o.alias != kNoValue) {
        alias = map[o.alias];
        name = o.name;
      }
    tg.graph.add_output({name, map[v], alias});
    tg.output_source.push_back(v);
  }
  return tg;
}

}  // namespace alpa
