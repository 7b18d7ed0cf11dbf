#include "alpa/program/program.h"

namespace alpa {

std::string_view value_kind_name(ValueKind k) {
  switch (k) {
    case ValueKind::kOwned: return "owned";
    case ValueKind::kInput: return "input";
    case ValueKind::kReceived: return "received";
    case ValueKind::kComputed: return "computed";
  }
  return "?";
}

std::string to_string(const Stage& stage, const Instruction& in) {
  const std::string mb = in.micro_batch < 0 ? "step" : cat("mb", in.micro_batch);
  switch (in.kind) {
    case InstrKind::kRecv: return cat("RECV t", in.transfer, " ", mb);
    case InstrKind::kRun: {
      const bool named = in.task >= 0 && in.task < static_cast<int>(stage.tasks.size());
      return cat("RUN ", named ? stage.tasks[static_cast<size_t>(in.task)].name : cat("#", in.task),
                 " ", mb);
    }
    case InstrKind::kAccumulate: return cat("ACC v", in.value, " ", mb);
    case InstrKind::kSend: return cat("SEND t", in.transfer, " ", mb);
    case InstrKind::kFree: return cat("FREE v", in.value, " ", mb);
  }
  return "?";
}

const char* instruction_category(const Instruction& in) {
  switch (in.kind) {
    case InstrKind::kRun: return "compute";
    case InstrKind::kRecv:
    case InstrKind::kSend: return "communication";
    default: return "memory";
  }
}

int stage_of_device(const Program& p, int device) {
  for (size_t s = 0; s < p.stages.size(); ++s)
    if (p.stages[s].mesh.contains(device)) return static_cast<int>(s);
  return -1;
}

std::vector<Instruction> device_instructions(const Program& p, int device) {
  const int s = stage_of_device(p, device);
  if (s < 0) return {};
  std::vector<Instruction> out;
  for (const Instruction& x : p.stages[static_cast<size_t>(s)].instructions) {
    if (x.kind == InstrKind::kSend || x.kind == InstrKind::kRecv) {
      const Transfer& t = p.transfers[static_cast<size_t>(x.transfer)];
      bool part = false;
      for (const CrossMeshTransfer& c : t.plan.transfers)
        part = part || (x.kind == InstrKind::kSend ? c.src_rank : c.dst_rank) == device;
      // A receiver with a restoring all-gather takes part even when it receives nothing.
      if (x.kind == InstrKind::kRecv && t.restore) part = true;
      if (!part) continue;
    }
    out.push_back(x);
  }
  return out;
}

std::string instructions_to_string(const Program& p, int stage) {
  const Stage& st = p.stages[static_cast<size_t>(stage)];
  std::string out;
  for (const Instruction& x : st.instructions) out += to_string(st, x) + "\n";
  return out;
}

int64_t count_collectives(const Program& p) {
  int64_t n = 0;
  for (const Stage& st : p.stages)
    for (const Task& t : st.tasks)
      for (const Node& node : t.program.nodes()) n += is_communicating(node.op);
  return n;
}

bool held_alike(const Stage& sa, const StageValue& a, const Stage& sb, const StageValue& b) {
  return a.kind == ValueKind::kOwned && b.kind == ValueKind::kOwned && a.name == b.name &&
         a.type == b.type && sa.mesh == sb.mesh &&
         a.layout.canonical(sa.mesh.shape) == b.layout.canonical(sb.mesh.shape);
}

}  // namespace alpa
