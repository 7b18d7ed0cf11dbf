#include "alpa/sim/simulator.h"

#include <algorithm>
#include <map>

#include "alpa/cost/collective.h"
#include "alpa/cost/compute.h"
#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

double type_bytes(const TensorType& t) {
  return static_cast<double>(t.num_elements()) * static_cast<double>(dtype_bytes(t.dtype));
}

uint8_t axes_mask(const std::vector<int64_t>& axes) {
  uint8_t m = 0;
  for (int64_t a : axes) m |= a == 0 ? kAxis0 : kAxis1;
  return m;
}

// Peak bytes of a program's intermediates (non-parameters) alive at once.
double program_peak_bytes(const Graph& g) {
  const std::vector<ValueId> last = compute_last_use(g);
  const std::vector<char> fused = fused_values(g);
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
  const std::vector<char> fused = fused_values(g);
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (n.op == OpKind::kParameter || n.op == OpKind::kConstant) continue;
    double t = 0;
    auto collective = [&](Collective c, double bytes) {
      const auto& a = n.attr<CollectiveAttrs>();
      t = collective_time(mesh, c, axes_mask(a.axes), bytes);
      comm += t;
    };
    switch (n.op) {
      case OpKind::kAllReduce:
        collective(Collective::kAllReduce, type_bytes(n.type));
        break;
      case OpKind::kAllGather:
        collective(Collective::kAllGather, type_bytes(n.type));
        break;
      case OpKind::kReduceScatter:
        collective(Collective::kReduceScatter, type_bytes(g.type(n.operands[0])));
        break;
      case OpKind::kAllToAll:
        collective(Collective::kAllToAll, type_bytes(n.type));
        break;
      case OpKind::kShardSlice:
      case OpKind::kToPartial:
        // Local resharding: the part kept is read and written (intra/reshard.h).
        t = compute_time(device, n.type.dtype, 0, 2 * type_bytes(n.type));
        break;
      default: {
        const double bytes = node_memory_traffic(
            g, v, fused, [&](ValueId x, int) { return type_bytes(g.type(x)); });
        t = compute_time(device, n.type.dtype, node_flops(g, v), bytes);
      }
    }
    total += t;
  }
  if (communication_s) *communication_s = comm;
  return total;
}

Result<SimReport> simulate_pipeline(const PipelineProgram& prog, const Cluster& cluster) {
  const int S = static_cast<int>(prog.stages.size());
  if (S == 0) return invalid_argument("simulate: a pipeline program without stages");
  if (cluster.num_devices() < prog.num_devices)
    return invalid_argument(cat("simulate: the program needs ", prog.num_devices,
                                " devices, the cluster has ", cluster.num_devices()));
  struct StageState {
    size_t pc = 0;
    double clock = 0;
    double task_s[kNumTaskKinds] = {0, 0, 0};
    double task_comm_s[kNumTaskKinds] = {0, 0, 0};
    double task_peak[kNumTaskKinds] = {0, 0, 0};
    std::map<std::pair<ValueId, int>, double> store;
    double store_bytes = 0;
    std::map<int, int> values_of_micro_batch;  // stored values per micro-batch (per-step ones excluded)
  };
  // Bytes one device of stage s holds of value v, in its stored layout.
  auto local_bytes = [&](int s, ValueId v) {
    const PipelineStage& ps = prog.stages[static_cast<size_t>(s)];
    TensorType t = ps.graph.graph.type(v);
    t.shape = ps.stored_spec[v].canonical(ps.placement.shape).local_shape(t.shape, ps.placement.shape);
    return type_bytes(t);
  };
  std::vector<StageState> st(static_cast<size_t>(S));
  SimReport rep;
  rep.stages.resize(static_cast<size_t>(S));
  for (int s = 0; s < S; ++s) {
    const PipelineStage& ps = prog.stages[static_cast<size_t>(s)];
    ALPA_ASSIGN_OR_RETURN(MeshLinks mesh, mesh_links(cluster, ps.placement));
    for (int k = 0; k < kNumTaskKinds; ++k) {
      const TaskProgram& tp = ps.tasks[k];
      if (tp.empty) continue;
      st[s].task_s[k] = program_time(tp.spmd.program, mesh, cluster.device, &st[s].task_comm_s[k]);
      st[s].task_peak[k] = program_peak_bytes(tp.spmd.program);
    }
    SimStage& out = rep.stages[static_cast<size_t>(s)];
    out.first_device = ps.placement.first_device();
    out.devices = static_cast<int>(ps.placement.size());
    for (ValueId v : ps.graph.owned) out.owned_bytes += local_bytes(s, v);
    out.peak_memory_bytes = out.owned_bytes;
  }
  // Arrival time of each (transfer, micro-batch) once sent.
  std::map<std::pair<int, int>, double> arrival;
  const double mem_bw = cluster.device.memory_bandwidth;
  int64_t remaining = 0;
  for (const PipelineStage& ps : prog.stages) remaining += static_cast<int64_t>(ps.instructions.size());
  rep.instructions = remaining;
  while (remaining > 0) {
    bool progressed = false;
    for (int s = 0; s < S; ++s) {
      const PipelineStage& ps = prog.stages[static_cast<size_t>(s)];
      StageState& ss = st[static_cast<size_t>(s)];
      SimStage& out = rep.stages[static_cast<size_t>(s)];
      while (ss.pc < ps.instructions.size()) {
        const Instruction& x = ps.instructions[ss.pc];
        double start = ss.clock, dur = 0;
        auto key_of = [&](ValueId v, int m) {
          return std::make_pair(v, ps.per_step[v] ? -1 : m);
        };
        auto put = [&](std::pair<ValueId, int> k, double bytes) {
          auto [it, inserted] = ss.store.emplace(k, bytes);
          if (!inserted) return;
          ss.store_bytes += bytes;
          out.peak_store_bytes = std::max(out.peak_store_bytes, ss.store_bytes);
          if (k.second >= 0) ++ss.values_of_micro_batch[k.second];
          out.peak_live_micro_batches = std::max(
              out.peak_live_micro_batches, static_cast<int>(ss.values_of_micro_batch.size()));
        };
        if (x.kind == InstrKind::kRecv) {
          auto it = arrival.find({x.transfer, x.micro_batch});
          if (it == arrival.end()) break;  // not sent yet: another stage goes first
          const PipelineTransfer& tr = prog.transfers[static_cast<size_t>(x.transfer)];
          start = std::max(ss.clock, it->second - tr.predicted_s);
          dur = std::max(0.0, it->second - start);
          put(key_of(tr.to_value, x.micro_batch), local_bytes(s, tr.to_value));
        } else if (x.kind == InstrKind::kSend) {
          const PipelineTransfer& tr = prog.transfers[static_cast<size_t>(x.transfer)];
          arrival[{x.transfer, x.micro_batch}] = ss.clock + tr.predicted_s;
        } else if (x.kind == InstrKind::kRun) {
          const int k = static_cast<int>(x.task);
          dur = ss.task_s[k];
          out.compute_s += ss.task_s[k] - ss.task_comm_s[k];
          out.communication_s += ss.task_comm_s[k];
          out.peak_memory_bytes =
              std::max(out.peak_memory_bytes, out.owned_bytes + ss.store_bytes + ss.task_peak[k]);
          const TaskProgram& tp = ps.tasks[k];
          for (size_t o = 0; o < tp.output_source.size(); ++o) {
            if (tp.spmd.program.outputs()[o].alias != kNoValue) continue;  // owned update
            const ValueId v = tp.output_source[o];
            put(key_of(v, x.micro_batch), local_bytes(s, v));
          }
        } else if (x.kind == InstrKind::kAccumulate) {
          const double b = local_bytes(s, x.value);
          dur = 3 * b / mem_bw;
          put({x.value, -1}, b);
        } else {  // kFree
          auto it = ss.store.find({x.value, x.micro_batch});
          if (it != ss.store.end()) {
            ss.store_bytes -= it->second;
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
          rep.events.push_back({to_string(x), instruction_category(x), ps.placement.first_device(), 0,
                                start, dur, s, x.micro_batch});
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
    rep.step_time_s = std::max(rep.step_time_s, st[static_cast<size_t>(s)].clock);
    busy_device_s += rep.stages[static_cast<size_t>(s)].busy_s * rep.stages[static_cast<size_t>(s)].devices;
    devices += rep.stages[static_cast<size_t>(s)].devices;
  }
  rep.bubble_fraction =
      rep.step_time_s > 0 ? 1.0 - busy_device_s / (devices * rep.step_time_s) : 0.0;
  return rep;
}

}  // namespace alpa
