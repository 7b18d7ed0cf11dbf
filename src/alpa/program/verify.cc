#include "alpa/program/verify.h"

#include <map>
#include <set>

#include "alpa/ir/verifier.h"

namespace alpa {
namespace {

using Key = std::pair<int, int>;  // (value, micro-batch)

bool in_range(int i, size_t n) {
  return i >= 0 && static_cast<size_t>(i) < n;
}

std::string value_where(const Stage& st, int s, int v) {
  return cat("stage ", s, " value ", v, " (", st.values[static_cast<size_t>(v)].name, ")");
}

Status check_params(const Program& p) {
  std::set<std::string> names;
  for (size_t i = 0; i < p.params.size(); ++i) {
    const StepParam& sp = p.params[i];
    if (sp.name.empty()) return invalid_argument(cat("params[", i, "] has no name"));
    if (!names.insert(sp.name).second)
      return invalid_argument(cat("params[", i, "]: the name '", sp.name, "' appears twice"));
  }
  return ok_status();
}

Status check_meshes(const Program& p) {
  std::vector<int> owner(static_cast<size_t>(p.num_devices), -1);
  for (size_t s = 0; s < p.stages.size(); ++s) {
    const PlacedMesh& m = p.stages[s].mesh;
    ALPA_RETURN_IF_ERROR(m.validate().with_context(cat("stage ", s)));
    for (int d : m.devices) {
      if (d >= p.num_devices)
        return invalid_argument(
            cat("stage ", s, " uses device ", d, " of a program for ", p.num_devices, " devices"));
      if (owner[static_cast<size_t>(d)] >= 0)
        return invalid_argument(
            cat("stages ", owner[static_cast<size_t>(d)], " and ", s, " both use device ", d));
      owner[static_cast<size_t>(d)] = static_cast<int>(s);
    }
  }
  for (size_t d = 0; d < owner.size(); ++d)
    if (owner[d] < 0) return invalid_argument(cat("no stage uses device ", d));
  return ok_status();
}

Status check_value(const Program& p, const Stage& st, int s, int v) {
  const StageValue& x = st.values[static_cast<size_t>(v)];
  const std::string where = value_where(st, s, v);
  ALPA_RETURN_IF_ERROR(x.layout.validate(x.type.shape, st.mesh.shape).with_context(where));
  if (x.kind != ValueKind::kComputed && x.layout.partial != 0)
    return invalid_argument(cat(where, ": a ", value_kind_name(x.kind), " value cannot be held as ",
                                "a partial sum (", x.layout.to_string(), ")"));
  if (x.kind != ValueKind::kOwned && x.kind != ValueKind::kInput) {
    if (x.param != -1)
      return invalid_argument(cat(where, ": only owned and input values have a param"));
    return ok_status();
  }
  if (!in_range(x.param, p.params.size()))
    return invalid_argument(
        cat(where, ": param ", x.param, " out of range (", p.params.size(), " params)"));
  const StepParam& sp = p.params[static_cast<size_t>(x.param)];
  const bool input = sp.attrs.role == ParamRole::kInput;
  if (input != (x.kind == ValueKind::kInput))
    return invalid_argument(cat(where, " is ", value_kind_name(x.kind), " but param '", sp.name,
                                "' is a ", enum_name(sp.attrs.role)));
  if (x.kind == ValueKind::kOwned) {
    if (!x.per_step) return invalid_argument(cat(where, ": an owned value is held per step"));
    if (x.type != sp.type)
      return invalid_argument(cat(where, " has type ", x.type.to_string(), " but param '", sp.name,
                                  "' is ", sp.type.to_string()));
    return ok_status();
  }
  TensorType whole = x.type;
  if (whole.rank() > 0) whole.shape[0] *= p.micro_batches;
  if (x.per_step || whole != sp.type)
    return invalid_argument(cat(where, ": input of type ", x.type.to_string(), " per micro-batch ",
                                "does not split param '", sp.name, "' (", sp.type.to_string(),
                                ") into ", p.micro_batches, " micro-batches"));
  return ok_status();
}

// The local type a value of the stage has on each device.
TensorType local_type(const Stage& st, int v) {
  const StageValue& x = st.values[static_cast<size_t>(v)];
  return {x.type.dtype, x.layout.canonical(st.mesh.shape).local_shape(x.type.shape, st.mesh.shape)};
}

Status check_task(const Stage& st, int s, int k) {
  const Task& t = st.tasks[static_cast<size_t>(k)];
  const std::string where = cat("stage ", s, " task ", k, " (", t.name, ")");
  for (int j = 0; j < k; ++j)
    if (st.tasks[static_cast<size_t>(j)].name == t.name)
      return invalid_argument(cat(where, ": the name is used by task ", j));
  ALPA_RETURN_IF_ERROR(verify(t.program).with_context(where));
  const std::vector<ValueId> params = t.program.parameters();
  if (t.inputs.size() != params.size() || t.outputs.size() != t.program.outputs().size())
    return invalid_argument(cat(where, ": ", t.inputs.size(), " inputs and ", t.outputs.size(),
                                " outputs for a program with ", params.size(), " parameters and ",
                                t.program.outputs().size(), " outputs"));
  auto check = [&](const char* what, size_t i, int v, const TensorType& got) -> Status {
    if (!in_range(v, st.values.size()))
      return invalid_argument(cat(where, " ", what, " ", i, ": value ", v, " out of range (",
                                  st.values.size(), " values)"));
    const TensorType want = local_type(st, v);
    if (got != want)
      return invalid_argument(cat(where, " ", what, " ", i, " is ", got.to_string(), " but ",
                                  value_where(st, s, v), " is held as ", want.to_string(), " (",
                                  st.values[static_cast<size_t>(v)].layout.to_string(), " on ",
                                  st.mesh.shape.to_string(), ")"));
    return ok_status();
  };
  for (size_t i = 0; i < params.size(); ++i)
    ALPA_RETURN_IF_ERROR(check("input", i, t.inputs[i], t.program.type(params[i])));
  for (size_t o = 0; o < t.outputs.size(); ++o) {
    const GraphOutput& out = t.program.outputs()[o];
    ALPA_RETURN_IF_ERROR(check("output", o, t.outputs[o], t.program.type(out.value)));
    if (out.alias == kNoValue) continue;
    size_t pos = 0;
    while (pos < params.size() && params[pos] != out.alias) ++pos;
    const int owned = pos < params.size() ? t.inputs[pos] : -1;
    if (owned != t.outputs[o] || st.values[static_cast<size_t>(owned)].kind != ValueKind::kOwned)
      return invalid_argument(cat(where, " output ", o, " updates a parameter, so it must write ",
                                  "the owned value that parameter reads"));
  }
  return ok_status();
}

Status check_instruction(const Program& p, const Stage& st, int s, size_t i) {
  const Instruction& x = st.instructions[i];
  auto where = [&] { return cat("stage ", s, " instruction ", i, " (", to_string(st, x), ")"); };
  if (x.micro_batch < -1 || x.micro_batch >= p.micro_batches)
    return invalid_argument(cat(where(), ": micro-batch out of range (", p.micro_batches, ")"));
  switch (x.kind) {
    case InstrKind::kRun:
      if (!in_range(x.task, st.tasks.size()))
        return invalid_argument(cat(where(), ": task out of range (", st.tasks.size(), " tasks)"));
      break;
    case InstrKind::kSend:
    case InstrKind::kRecv: {
      if (!in_range(x.transfer, p.transfers.size()))
        return invalid_argument(
            cat(where(), ": transfer out of range (", p.transfers.size(), " transfers)"));
      const Transfer& t = p.transfers[static_cast<size_t>(x.transfer)];
      if ((x.kind == InstrKind::kSend ? t.from_stage : t.to_stage) != s)
        return invalid_argument(cat(where(), ": transfer ", x.transfer, " goes from stage ",
                                    t.from_stage, " to stage ", t.to_stage));
      break;
    }
    case InstrKind::kAccumulate:
    case InstrKind::kFree:
      if (!in_range(x.value, st.values.size()))
        return invalid_argument(
            cat(where(), ": value out of range (", st.values.size(), " values)"));
      if (x.kind == InstrKind::kAccumulate &&
          (!st.values[static_cast<size_t>(x.value)].accumulated || x.micro_batch < 0))
        return invalid_argument(cat(where(), ": ACC needs an accumulated value and a micro-batch"));
      break;
  }
  return ok_status();
}

Status check_transfer(const Program& p, size_t k) {
  const Transfer& t = p.transfers[k];
  const std::string where = cat("transfer ", k);
  if (!in_range(t.from_stage, p.stages.size()) || !in_range(t.to_stage, p.stages.size()) ||
      t.from_stage == t.to_stage)
    return invalid_argument(cat(where, ": stages ", t.from_stage, " -> ", t.to_stage,
                                " (the program has ", p.stages.size(), ")"));
  const Stage& from = p.stages[static_cast<size_t>(t.from_stage)];
  const Stage& to = p.stages[static_cast<size_t>(t.to_stage)];
  if (!in_range(t.from_value, from.values.size()) || !in_range(t.to_value, to.values.size()))
    return invalid_argument(cat(where, ": value out of range"));
  const StageValue& a = from.values[static_cast<size_t>(t.from_value)];
  const StageValue& b = to.values[static_cast<size_t>(t.to_value)];
  if (b.kind != ValueKind::kReceived)
    return invalid_argument(cat(where, " writes ", value_where(to, t.to_stage, t.to_value),
                                ", which is ", value_kind_name(b.kind), ", not received"));
  if (a.type != b.type || t.plan.shape != a.type.shape)
    return invalid_argument(cat(where, " sends ", a.type.to_string(), " into ", b.type.to_string(),
                                " with a plan for ", shape_to_string(t.plan.shape)));
  const ShardingSpec src = a.layout.canonical(from.mesh.shape);
  if (!(t.plan.src == from.mesh) || !(t.plan.dst == to.mesh) ||
      !(t.plan.src_spec.canonical(from.mesh.shape) == src))
    return invalid_argument(cat(where, ": its plan goes from ", t.plan.src_spec.to_string(), " on ",
                                t.plan.src.to_string(), " to ", t.plan.dst.to_string(),
                                ", not from the sender's ", src.to_string(), " on ",
                                from.mesh.to_string(), " to ", to.mesh.to_string()));
  ALPA_RETURN_IF_ERROR(validate_cross_mesh_plan(t.plan).with_context(where));
  const MeshShape& m = to.mesh.shape;
  const ShardingSpec want = b.layout.canonical(m);
  if (!t.restore) {
    if (!(t.plan.receive_spec.canonical(m) == want))
      return invalid_argument(cat(where, " receives ", t.plan.receive_spec.to_string(), " but ",
                                  "the receiver holds ", want.to_string(), " and there is no ",
                                  "restoring program"));
    return ok_status();
  }
  ALPA_RETURN_IF_ERROR(verify(*t.restore).with_context(where + " restore"));
  const std::vector<ValueId> params = t.restore->parameters();
  const TensorType in{b.type.dtype, t.plan.receive_spec.canonical(m).local_shape(b.type.shape, m)};
  const TensorType out{b.type.dtype, want.local_shape(b.type.shape, m)};
  if (params.size() != 1 || t.restore->outputs().size() != 1 ||
      t.restore->type(params[0]).shape != in.shape ||
      t.restore->type(t.restore->outputs()[0].value).shape != out.shape)
    return invalid_argument(cat(where, ": the restoring program must take ",
                                shape_to_string(in.shape), " and give ",
                                shape_to_string(out.shape)));
  return ok_status();
}

// One stage's store, stepped through its instructions.
Status check_stage_dataflow(const Program& p, const Stage& st, int s) {
  std::set<Key> store;
  auto key = [&](int v, int m) {
    return Key{v, st.values[static_cast<size_t>(v)].per_step ? -1 : m};
  };
  auto need = [&](const auto& where, int v, int m) -> Status {
    const StageValue& x = st.values[static_cast<size_t>(v)];
    if (x.kind == ValueKind::kOwned) return ok_status();
    if (x.kind == ValueKind::kInput) {
      if (m < 0) return invalid_argument(cat(where(), " reads input ", x.name, " once per step"));
      return ok_status();
    }
    if (!store.count(key(v, m)))
      return invalid_argument(cat(where(), " reads ", value_where(st, s, v), " of ",
                                  m < 0 ? std::string("the step") : cat("micro-batch ", m),
                                  ", which is not held there (never written, or already freed)"));
    return ok_status();
  };
  for (size_t i = 0; i < st.instructions.size(); ++i) {
    const Instruction& x = st.instructions[i];
    auto where = [&] { return cat("stage ", s, " instruction ", i, " (", to_string(st, x), ")"); };
    const int m = x.micro_batch;
    switch (x.kind) {
      case InstrKind::kRecv:
        store.insert(key(p.transfers[static_cast<size_t>(x.transfer)].to_value, m));
        break;
      case InstrKind::kSend:
        ALPA_RETURN_IF_ERROR(
            need(where, p.transfers[static_cast<size_t>(x.transfer)].from_value, m));
        break;
      case InstrKind::kRun: {
        const Task& t = st.tasks[static_cast<size_t>(x.task)];
        for (int v : t.inputs) ALPA_RETURN_IF_ERROR(need(where, v, m));
        for (size_t o = 0; o < t.outputs.size(); ++o)
          if (t.program.outputs()[o].alias == kNoValue) store.insert(key(t.outputs[o], m));
        break;
      }
      case InstrKind::kAccumulate:
        ALPA_RETURN_IF_ERROR(need(where, x.value, m));
        store.insert({x.value, -1});
        break;
      case InstrKind::kFree:
        if (!store.erase({x.value, m}))
          return invalid_argument(
              cat(where(), " frees ", value_where(st, s, x.value), ", which is not held there"));
        break;
    }
  }
  store.erase({st.loss, -1});
  if (!store.empty())
    return invalid_argument(cat("stage ", s, ": ", value_where(st, s, store.begin()->first), " of ",
                                store.begin()->second < 0
                                    ? std::string("the step")
                                    : cat("micro-batch ", store.begin()->second),
                                " is never freed"));
  return ok_status();
}

// Every RECV has exactly one SEND, and the stages run to the end in lockstep.
Status check_schedule(const Program& p) {
  std::map<Key, int> sends, recvs;
  for (const Stage& st : p.stages)
    for (const Instruction& x : st.instructions) {
      if (x.kind == InstrKind::kSend) ++sends[{x.transfer, x.micro_batch}];
      if (x.kind == InstrKind::kRecv) ++recvs[{x.transfer, x.micro_batch}];
    }
  for (const auto& [k, n] : recvs)
    if (n != 1 || sends[k] != 1)
      return invalid_argument(
          cat("transfer ", k.first, " of ",
              k.second < 0 ? std::string("the step") : cat("micro-batch ", k.second),
              " is received ", n, " time(s) and sent ", sends[k], " time(s)"));
  for (const auto& [k, n] : sends)
    if (!recvs.count(k))
      return invalid_argument(
          cat("transfer ", k.first, " of micro-batch ", k.second, " is sent but never received"));
  std::vector<size_t> pc(p.stages.size(), 0);
  std::set<Key> sent;
  for (bool progress = true; progress;) {
    progress = false;
    for (size_t s = 0; s < p.stages.size(); ++s) {
      const std::vector<Instruction>& in = p.stages[s].instructions;
      while (pc[s] < in.size()) {
        const Instruction& x = in[pc[s]];
        if (x.kind == InstrKind::kRecv && !sent.count({x.transfer, x.micro_batch})) break;
        if (x.kind == InstrKind::kSend) sent.insert({x.transfer, x.micro_batch});
        ++pc[s];
        progress = true;
      }
    }
  }
  for (size_t s = 0; s < p.stages.size(); ++s)
    if (pc[s] < p.stages[s].instructions.size())
      return invalid_argument(cat("the stages wait for each other forever: stage ", s,
                                  " waits at instruction ", pc[s], " (",
                                  to_string(p.stages[s], p.stages[s].instructions[pc[s]]),
                                  ") for a send that comes after a receive of its own"));
  return ok_status();
}

}  // namespace

Status verify_program(const Program& p) {
  if (p.num_devices < 1 || p.num_devices > kMaxProgramDevices)
    return invalid_argument(
        cat("devices must be from 1 to ", kMaxProgramDevices, ", got ", p.num_devices));
  if (p.micro_batches < 1)
    return invalid_argument(cat("micro_batches must be >= 1, got ", p.micro_batches));
  if (p.stages.empty()) return invalid_argument("a program needs at least one stage");
  ALPA_RETURN_IF_ERROR(check_params(p));
  ALPA_RETURN_IF_ERROR(check_meshes(p));
  for (size_t s = 0; s < p.stages.size(); ++s) {
    const Stage& st = p.stages[s];
    const int si = static_cast<int>(s);
    if (st.loss != -1 && !in_range(st.loss, st.values.size()))
      return invalid_argument(cat("stage ", s, ": loss value ", st.loss, " out of range"));
    for (size_t v = 0; v < st.values.size(); ++v)
      ALPA_RETURN_IF_ERROR(check_value(p, st, si, static_cast<int>(v)));
    for (size_t k = 0; k < st.tasks.size(); ++k)
      ALPA_RETURN_IF_ERROR(check_task(st, si, static_cast<int>(k)));
    for (size_t i = 0; i < st.instructions.size(); ++i)
      ALPA_RETURN_IF_ERROR(check_instruction(p, st, si, i));
  }
  for (size_t k = 0; k < p.transfers.size(); ++k) ALPA_RETURN_IF_ERROR(check_transfer(p, k));
  for (size_t s = 0; s < p.stages.size(); ++s)
    ALPA_RETURN_IF_ERROR(check_stage_dataflow(p, p.stages[s], static_cast<int>(s)));
  return check_schedule(p);
}

}  // namespace alpa
