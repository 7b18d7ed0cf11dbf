#include "alpa/sim/simulator.h"

#include <algorithm>
#include <map>

#include "alpa/cost/collective.h"
#include "alpa/cost/compute.h"
#include "alpa/cost/transfer_cost.h"
#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

double type_bytes(const TensorType& t) {
  return static_cast<double>(t.num_elements()) * static_cast<double>(dtype_bytes(t.dtype));
}

// The values of one task program that hold no memory (ir/analysis.h): as in the stage graph
// the program was lowered from, constants and what is computed from them alone are generated
// at their users wherever the program places them (one fusion group for the whole program).
std::vector<char> program_fused_values(const Graph& g) {
  return fused_values(g, std::vector<int>(static_cast<size_t>(g.size()), 0));
}

// Peak bytes of a program's intermediates (non-parameters) alive at once.
double program_peak_bytes(const Graph& g) {
  const std::vector<ValueId> last = compute_last_use(g);
  const std::vector<char> fused = program_fused_values(g);
  std::vector<std::vector<ValueId>> dies(static_cast<size_t>(g.size()) + 1);
  for (ValueId v = 0; v < g.size(); ++v) dies[static_cast<size_t>(last[v])].push_back(v);
  double live = 0, peak = 0;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (g.node(v).op != OpKind::kParameter && !fused[v]) live += type_bytes(g.type(v));
    peak = std::max(peak, live);
    for (ValueId d : dies[static_cast<size_t>(v)])
      if (g.node(d).op != OpKind::kParameter && !fused[d]) live -= type_bytes(g.type(d));
  }
  return peak;
}

}  // namespace

double program_time(const Graph& g, const MeshLinks& mesh, const DeviceSpec& device,
                    double* communication_s) {
  double total = 0, comm = 0;
  const std::vector<char> fused = program_fused_values(g);
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (n.op == OpKind::kParameter || n.op == OpKind::kConstant) continue;
    double t = 0;
    auto collective = [&](Collective c, double bytes) {
      const auto& a = n.attr<CollectiveAttrs>();
      t = collective_time(mesh, c, axes_of(a.axes), bytes);
      comm += t;
    };
    switch (n.op) {
      case OpKind::kAllReduce: collective(Collective::kAllReduce, type_bytes(n.type)); break;
      case OpKind::kAllGather: collective(Collective::kAllGather, type_bytes(n.type)); break;
      case OpKind::kReduceScatter:
        collective(Collective::kReduceScatter, type_bytes(g.type(n.operands[0])));
        break;
      case OpKind::kAllToAll: collective(Collective::kAllToAll, type_bytes(n.type)); break;
      case OpKind::kShardSlice:
      case OpKind::kToPartial:
        // Local resharding: the part kept is read and written (intra/reshard.h).
        t = compute_time(device, n.type.dtype, 0, 2 * type_bytes(n.type));
        break;
      default: {
        const double bytes =
            node_memory_traffic(g, v, fused, [&](ValueId x, int) { return type_bytes(g.type(x)); });
        t = compute_time(device, n.type.dtype, node_flops(g, v), bytes);
      }
    }
    total += t;
  }
  if (communication_s) *communication_s = comm;
  return total;
}

namespace {

struct StageState {
  size_t pc = 0;
  double clock = 0;
  std::vector<double> task_s, task_comm_s, task_peak;  // per task
  std::map<std::pair<int, int>, double> store;         // (value, micro-batch) -> bytes
  double store_bytes = 0;
  double step_store_bytes = 0;               // of which per-step values (accumulators)
  std::map<int, int> values_of_micro_batch;  // stored values per micro-batch (per-step excluded)
};

// Bytes one device of `st` holds of value v, in its stored layout.
double value_bytes(const Stage& st, int v) {
  const StageValue& x = st.values[static_cast<size_t>(v)];
  TensorType t = x.type;
  t.shape = x.layout.canonical(st.mesh.shape).local_shape(t.shape, st.mesh.shape);
  return type_bytes(t);
}

Status prepare(const Program& prog, const Cluster& cluster, std::vector<StageState>& state,
               SimReport& rep) {
  for (size_t s = 0; s < prog.stages.size(); ++s) {
    const Stage& st = prog.stages[s];
    ALPA_ASSIGN_OR_RETURN(MeshLinks mesh, mesh_links(cluster, st.mesh));
    StageState& ss = state[s];
    for (const Task& t : st.tasks) {
      double comm = 0;
      ss.task_s.push_back(program_time(t.program, mesh, cluster.device, &comm));
      ss.task_comm_s.push_back(comm);
      ss.task_peak.push_back(program_peak_bytes(t.program));
    }
    SimStage& out = rep.stages[s];
    out.first_device = st.mesh.first_device();
    out.devices = static_cast<int>(st.mesh.size());
    for (size_t v = 0; v < st.values.size(); ++v)
      if (st.values[v].kind == ValueKind::kOwned)
        out.owned_bytes += value_bytes(st, static_cast<int>(v));
    out.peak_memory_bytes = out.owned_bytes;
    out.peak_breakdown.weights = out.owned_bytes;
    out.peak_breakdown.in_flight = 0;
  }
  return ok_status();
}

// The stage's new peak, with the running task's own `working` bytes, and its parts.
void record_peak(SimStage& out, const StageState& ss, double working) {
  out.peak_memory_bytes = out.owned_bytes + ss.store_bytes + working;
  MemoryBreakdown& m = out.peak_breakdown;
  m.weights = out.owned_bytes;
  m.accumulators = ss.step_store_bytes;
  m.in_flight = static_cast<int>(ss.values_of_micro_batch.size());
  m.stash_per_micro_batch =
      m.in_flight > 0 ? (ss.store_bytes - ss.step_store_bytes) / m.in_flight : 0;
  m.working = working;
}

}  // namespace

Result<SimReport> simulate(const Program& prog, const Cluster& cluster) {
  const int S = static_cast<int>(prog.stages.size());
  if (S == 0) return invalid_argument("simulate: a program without stages");
  if (cluster.num_devices() < prog.num_devices)
    return invalid_argument(cat("simulate: the program needs ", prog.num_devices,
                                " devices, the cluster has ", cluster.num_devices()));
  std::vector<StageState> st(static_cast<size_t>(S));
  SimReport rep;
  rep.stages.resize(static_cast<size_t>(S));
  ALPA_RETURN_IF_ERROR(prepare(prog, cluster, st, rep));
  // Each transfer's time on the cluster's links, and its arrival once sent.
  std::vector<double> transfer_s;
  for (const Transfer& t : prog.transfers)
    transfer_s.push_back(cross_mesh_seconds(t.plan,
                                            dtype_bytes(prog.stages[static_cast<size_t>(t.to_stage)]
                                                            .values[static_cast<size_t>(t.to_value)]
                                                            .type.dtype),
                                            cluster));
  std::map<std::pair<int, int>, double> arrival;
  const double mem_bw = cluster.device.memory_bandwidth;
  int64_t remaining = 0;
  for (const Stage& ps : prog.stages) remaining += static_cast<int64_t>(ps.instructions.size());
  rep.instructions = remaining;
  while (remaining > 0) {
    bool progressed = false;
    for (int s = 0; s < S; ++s) {
      const Stage& ps = prog.stages[static_cast<size_t>(s)];
      StageState& ss = st[static_cast<size_t>(s)];
      SimStage& out = rep.stages[static_cast<size_t>(s)];
      auto key_of = [&](int v, int m) {
        return std::make_pair(v, ps.values[static_cast<size_t>(v)].per_step ? -1 : m);
      };
      auto put = [&](std::pair<int, int> k, double bytes) {
        auto [it, inserted] = ss.store.emplace(k, bytes);
        if (!inserted) return;
        ss.store_bytes += bytes;
        out.peak_store_bytes = std::max(out.peak_store_bytes, ss.store_bytes);
        if (k.second >= 0) ++ss.values_of_micro_batch[k.second];
        if (k.second < 0) ss.step_store_bytes += bytes;
        out.peak_live_micro_batches = std::max(out.peak_live_micro_batches,
                                               static_cast<int>(ss.values_of_micro_batch.size()));
      };
      while (ss.pc < ps.instructions.size()) {
        const Instruction& x = ps.instructions[ss.pc];
        double start = ss.clock, dur = 0;
        if (x.kind == InstrKind::kRecv) {
          auto it = arrival.find({x.transfer, x.micro_batch});
          if (it == arrival.end()) break;  // not sent yet: another stage goes first
          const Transfer& tr = prog.transfers[static_cast<size_t>(x.transfer)];
          start = std::max(ss.clock, it->second - transfer_s[static_cast<size_t>(x.transfer)]);
          dur = std::max(0.0, it->second - start);
          put(key_of(tr.to_value, x.micro_batch), value_bytes(ps, tr.to_value));
        } else if (x.kind == InstrKind::kSend) {
          arrival[{x.transfer, x.micro_batch}] =
              ss.clock + transfer_s[static_cast<size_t>(x.transfer)];
        } else if (x.kind == InstrKind::kRun) {
          const size_t k = static_cast<size_t>(x.task);
          dur = ss.task_s[k];
          out.compute_s += ss.task_s[k] - ss.task_comm_s[k];
          out.communication_s += ss.task_comm_s[k];
          if (out.owned_bytes + ss.store_bytes + ss.task_peak[k] > out.peak_memory_bytes)
            record_peak(out, ss, ss.task_peak[k]);
          for (int v : ps.tasks[k].outputs)
            if (ps.values[static_cast<size_t>(v)].kind != ValueKind::kOwned)
              put(key_of(v, x.micro_batch), value_bytes(ps, v));
        } else if (x.kind == InstrKind::kAccumulate) {
          const double b = value_bytes(ps, x.value);
          dur = 3 * b / mem_bw;
          put({x.value, -1}, b);
        } else {  // kFree
          auto it = ss.store.find({x.value, x.micro_batch});
          if (it != ss.store.end()) {
            ss.store_bytes -= it->second;
            if (it->first.second < 0) ss.step_store_bytes -= it->second;
            ss.store.erase(it);
            auto mb = ss.values_of_micro_batch.find(x.micro_batch);
            if (x.micro_batch >= 0 && mb != ss.values_of_micro_batch.end() && --mb->second == 0)
              ss.values_of_micro_batch.erase(mb);
          }
          ++ss.pc;
          --remaining;
          progressed = true;
          continue;
        }
        ss.clock = start + dur;
        if (x.kind == InstrKind::kRun || x.kind == InstrKind::kAccumulate) out.busy_s += dur;
        if (dur > 0 || x.kind == InstrKind::kSend)
          rep.events.push_back({to_string(ps, x), instruction_category(x), ps.mesh.first_device(),
                                0, start, dur, s, x.micro_batch});
        ++ss.pc;
        --remaining;
        progressed = true;
      }
    }
    if (!progressed)
      return internal_error("simulate: the schedule deadlocks (a RECV whose SEND never comes)");
  }
  double busy_device_s = 0;
  int devices = 0;
  for (int s = 0; s < S; ++s) {
    const SimStage& out = rep.stages[static_cast<size_t>(s)];
    rep.step_time_s = std::max(rep.step_time_s, st[static_cast<size_t>(s)].clock);
    busy_device_s += out.busy_s * out.devices;
    devices += out.devices;
  }
  rep.bubble_fraction =
      rep.step_time_s > 0 ? 1.0 - busy_device_s / (devices * rep.step_time_s) : 0.0;
  return rep;
}

}  // namespace alpa
