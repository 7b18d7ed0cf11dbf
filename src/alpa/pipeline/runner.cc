#include "alpa/pipeline/runner.h"

#include <cstring>
#include <numeric>
#include <optional>
#include <set>

#include "alpa/runtime/blas.h"
#include "alpa/runtime/device.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/sub_communicator.h"
#include "alpa/runtime/transfer.h"
#include "alpa/runtime/shard.h"
#include "alpa/support/check.h"

namespace alpa {

using Key = std::pair<ValueId, int>;

struct PipelineRunner::Device {
  int rank = 0;
  int stage = 0;
  std::unique_ptr<SubCommunicator> sub;
  DeviceContext ctx;
  std::optional<Executor> exec[kNumTaskKinds];
  std::map<int, Executor> restore;  // per transfer received here with a restoring gather
  std::map<ValueId, Tensor> owned;  // weights and state of the stage: this device's shards
  std::map<Key, Tensor> store;
  std::map<ValueId, int> acc_count;
  std::map<ValueId, size_t> input_index;  // data input -> step-graph parameter position
  PipelineDeviceStats stats;
  std::vector<TraceEvent> trace;
};

namespace {

int transfer_tag(int transfer, int micro_batch, int micro_batches) {
  return 1 + transfer * (micro_batches + 1) + (micro_batch + 1);
}

// Rows [m*b, (m+1)*b) of a whole input whose dim 0 holds every micro-batch.
Tensor micro_batch_rows(const Tensor& whole, const TensorType& type, int m) {
  Tensor out(type);
  const int64_t n = out.size();
  std::memcpy(out.data(), whole.data() + static_cast<int64_t>(m) * n,
              static_cast<size_t>(n) * sizeof(float));
  return out;
}

int64_t bytes_of(const Tensor& t) {
  return t.size() * static_cast<int64_t>(sizeof(float));
}

}  // namespace

PipelineRunner::PipelineRunner(PipelineProgram program, const Graph& step_graph,
                               PipelineRunOptions options, World* world)
    : program_(std::move(program)), options_(options) {
  for (ValueId p : step_graph.parameters()) param_types_.push_back(step_graph.type(p));
  const int n = program_.num_devices;
  ALPA_CHECK(n >= 1) << "PipelineRunner: a program without devices";
  if (world == nullptr) {
    own_world_ = std::make_unique<ThreadWorld>(n, options_.timeout_s);
    world = own_world_.get();
  }
  ALPA_CHECK(world->size() == n) << "PipelineRunner: a world of " << world->size()
                                 << " ranks for " << n << " devices";
  world_ = world;
  local_ = world_->local_ranks();
  std::vector<PlacedMesh> meshes;
  for (const PipelineStage& st : program_.stages) meshes.push_back(st.placement);
  ALPA_CHECK(prepare_mesh_groups(*world_, meshes).ok())
      << "PipelineRunner: preparing the stages' communicators failed";
  select_blas_kernels();
  set_blas_threads(1);
  devices_.resize(static_cast<size_t>(n));
  for (int r : local_) {
    auto d = std::make_unique<Device>();
    d->rank = r;
    d->stage = stage_of_rank(program_, r);
    ALPA_CHECK(d->stage >= 0) << "device " << r << " has no stage";
    const PipelineStage& st = program_.stages[static_cast<size_t>(d->stage)];
    d->sub = std::make_unique<SubCommunicator>(&world_->comm(r), st.placement.devices);
    d->ctx.comm = d->sub.get();
    d->ctx.mesh = st.placement.shape;
    d->ctx.coords = st.placement.coords_of(r);
    ExecutorOptions eo;
    eo.num_threads = options_.threads_per_device;
    eo.fuse_elementwise = options_.fuse_elementwise;
    eo.device = &d->ctx;
    for (int k = 0; k < kNumTaskKinds; ++k)
      if (!st.tasks[k].empty) d->exec[k].emplace(st.tasks[k].spmd.program, eo);
    for (size_t t = 0; t < program_.transfers.size(); ++t) {
      const PipelineTransfer& tr = program_.transfers[t];
      if (tr.split.to_stage == d->stage && tr.restore)
        d->restore.emplace(static_cast<int>(t), Executor(tr.restore->program, eo));
    }
    for (size_t p = 0; p < program_.param_home.size(); ++p)
      for (const auto& [s, v] : program_.param_home[p])
        if (s == d->stage && st.origin[v] == ValueOrigin::kInput) d->input_index[v] = p;
    devices_[static_cast<size_t>(r)] = std::move(d);
  }
}

PipelineRunner::~PipelineRunner() = default;

const PipelineDeviceStats& PipelineRunner::stats(int rank) const {
  ALPA_CHECK(rank >= 0 && rank < num_devices() && devices_[static_cast<size_t>(rank)])
      << "rank " << rank << " is not run by this process";
  return devices_[static_cast<size_t>(rank)]->stats;
}

const std::vector<TraceEvent>& PipelineRunner::trace(int rank) const {
  ALPA_CHECK(rank >= 0 && rank < num_devices() && devices_[static_cast<size_t>(rank)])
      << "rank " << rank << " is not run by this process";
  return devices_[static_cast<size_t>(rank)]->trace;
}

std::vector<PipelineRunner::OwnedValue> PipelineRunner::owned_values() const {
  std::vector<OwnedValue> out;
  for (size_t p = 0; p < program_.param_home.size(); ++p)
    for (const auto& [s, v] : program_.param_home[p])
      if (program_.stages[static_cast<size_t>(s)].origin[v] == ValueOrigin::kOwned)
        out.push_back({p, s, v});
  return out;
}

const Tensor* PipelineRunner::owned_block(int rank, int stage, ValueId value) const {
  if (rank < 0 || rank >= num_devices() || !devices_[static_cast<size_t>(rank)]) return nullptr;
  const Device& d = *devices_[static_cast<size_t>(rank)];
  if (d.stage != stage) return nullptr;
  auto it = d.owned.find(value);
  return it == d.owned.end() ? nullptr : &it->second;
}

Status PipelineRunner::load_parameters(const std::vector<Tensor>& whole) {
  if (whole.size() != param_types_.size())
    return invalid_argument(cat("load_parameters: ", whole.size(), " tensors for ",
                                param_types_.size(), " parameters"));
  for (auto& d : devices_) {
    if (!d) continue;
    d->owned.clear();
    d->stats.owned_bytes = 0;
    d->stats.owned_shapes.clear();
  }
  for (size_t p = 0; p < whole.size(); ++p) {
    for (const auto& [s, v] : program_.param_home[p]) {
      const PipelineStage& st = program_.stages[static_cast<size_t>(s)];
      if (st.origin[v] != ValueOrigin::kOwned) continue;
      if (whole[p].type() != param_types_[p])
        return invalid_argument(cat("parameter ", p, " has type ", whole[p].type().to_string(),
                                    ", expected ", param_types_[p].to_string()));
      for (int r : st.placement.devices) {
        if (!devices_[static_cast<size_t>(r)]) continue;
        Device& d = *devices_[static_cast<size_t>(r)];
        d.owned[v] = shard_tensor(whole[p], st.stored_spec[v], st.placement.shape, d.ctx.coords);
      }
    }
  }
  for (auto& d : devices_) {
    if (!d) continue;
    for (const auto& [v, t] : d->owned) {
      d->stats.owned_bytes += bytes_of(t);
      d->stats.owned_shapes.push_back(t.shape());
    }
  }
  return ok_status();
}

Result<std::vector<Tensor>> PipelineRunner::gather_parameters() {
  std::vector<Tensor> out(param_types_.size());
  for (const OwnedValue& o : owned_values()) {
    const PipelineStage& st = program_.stages[static_cast<size_t>(o.stage)];
    // Tags above every transfer's (transfer_tag) so they never meet a step's messages.
    const int tag = (1 << 24) + static_cast<int>(o.param);
    ALPA_ASSIGN_OR_RETURN(
        Tensor t,
        gather_tensor(*world_, 0, st.stored_spec[o.value], st.placement.shape,
                      st.placement.first_device(), param_types_[o.param],
                      [&](int rank) { return owned_block(rank, o.stage, o.value); }, tag));
    if (t.size() > 0 || out[o.param].size() == 0) out[o.param] = std::move(t);
  }
  return out;
}

Status PipelineRunner::run_device(int rank, const std::vector<Tensor>& inputs) {
  Device& d = *devices_[static_cast<size_t>(rank)];
  const PipelineStage& st = program_.stages[static_cast<size_t>(d.stage)];
  const int B = program_.micro_batches;
  Communicator& world = world_->comm(rank);
  d.store.clear();
  d.acc_count.clear();
  d.stats.peak_store_bytes = 0;
  d.stats.peak_live_micro_batches = 0;
  int64_t store_bytes = 0;
  auto put = [&](Key k, Tensor t) {
    store_bytes += bytes_of(t);
    auto [it, inserted] = d.store.insert_or_assign(k, std::move(t));
    (void)it;
    (void)inserted;
    d.stats.peak_store_bytes = std::max(d.stats.peak_store_bytes, store_bytes);
    std::set<int> mbs;
    for (const auto& [key, value] : d.store)
      if (key.second >= 0) mbs.insert(key.second);
    d.stats.peak_live_micro_batches =
        std::max(d.stats.peak_live_micro_batches, static_cast<int>(mbs.size()));
  };
  auto find = [&](Key k) -> Result<const Tensor*> {
    auto it = d.store.find(k);
    if (it == d.store.end())
      return internal_error(cat("stage ", d.stage, ": value %", k.first, " of micro-batch ",
                                k.second, " is not in the store"));
    return &it->second;
  };
  auto key_of = [&](ValueId v, int m) { return Key{v, st.per_step[v] ? -1 : m}; };

  d.trace.clear();
  auto since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
  };
  for (const Instruction& x : st.instructions) {
    const double t_begin = options_.record_trace ? since_start() : 0.0;
    switch (x.kind) {
      case InstrKind::kRecv: {
        const PipelineTransfer& tr = program_.transfers[static_cast<size_t>(x.transfer)];
        const int tag = transfer_tag(x.transfer, x.micro_batch, B);
        ALPA_ASSIGN_OR_RETURN(Tensor t, recv_cross_mesh(tr.plan, rank, world, tag));
        auto it = d.restore.find(x.transfer);
        if (it != d.restore.end()) {
          std::vector<Tensor> in;
          in.push_back(std::move(t));
          ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> out, it->second.run(std::move(in)));
          t = std::move(out[0]);
        }
        put(key_of(tr.to_value, x.micro_batch), std::move(t));
        break;
      }
      case InstrKind::kSend: {
        const PipelineTransfer& tr = program_.transfers[static_cast<size_t>(x.transfer)];
        const Tensor* t = nullptr;
        if (st.origin[tr.from_value] == ValueOrigin::kOwned) {
          t = &d.owned.at(tr.from_value);
        } else {
          const Key k =
              tr.split.accumulated ? Key{tr.from_value, -1} : key_of(tr.from_value, x.micro_batch);
          ALPA_ASSIGN_OR_RETURN(t, find(k));
        }
        ALPA_RETURN_IF_ERROR(
            send_cross_mesh(tr.plan, rank, *t, world, transfer_tag(x.transfer, x.micro_batch, B)));
        break;
      }
      case InstrKind::kRun: {
        const TaskProgram& tp = st.tasks[static_cast<int>(x.task)];
        Executor& exec = *d.exec[static_cast<int>(x.task)];
        std::vector<Tensor> params;
        params.reserve(tp.param_source.size());
        for (ValueId v : tp.param_source) {
          switch (st.origin[v]) {
            case ValueOrigin::kOwned:
              params.push_back(d.owned.at(v));
              break;
            case ValueOrigin::kInput: {
              if (x.micro_batch < 0)
                return internal_error(cat("the update of stage ", d.stage, " reads a data input"));
              const size_t index = d.input_index.at(v);
              if (index >= inputs.size() || inputs[index].size() == 0)
                return invalid_argument(cat("no data for input ", value_ref(st.graph.graph, v)));
              const TensorType& mb_type = st.graph.graph.type(v);
              const Tensor rows = micro_batch_rows(inputs[index], mb_type, x.micro_batch);
              params.push_back(
                  shard_tensor(rows, st.stored_spec[v], st.placement.shape, d.ctx.coords));
              break;
            }
            default: {
              const bool acc = x.task == TaskKind::kUpdate && st.accumulated[v];
              ALPA_ASSIGN_OR_RETURN(const Tensor* t,
                                    find(acc ? Key{v, -1} : key_of(v, x.micro_batch)));
              params.push_back(*t);
            }
          }
        }
        Result<std::vector<Tensor>> out = exec.run(std::move(params));
        if (!out.ok())
          return out.status().with_context(
              cat("stage ", d.stage, " ", task_name(x.task),
                  x.micro_batch >= 0 ? cat(" micro-batch ", x.micro_batch) : ""));
        const Graph& prog = tp.spmd.program;
        for (size_t o = 0; o < out->size(); ++o) {
          const ValueId alias = prog.outputs()[o].alias;
          if (alias != kNoValue) {
            // The update of an owned weight or state: its parameter position in the program.
            const std::vector<ValueId> pp = prog.parameters();
            const size_t pos =
                static_cast<size_t>(std::find(pp.begin(), pp.end(), alias) - pp.begin());
            d.owned[tp.param_source[pos]] = std::move((*out)[o]);
            continue;
          }
          put(key_of(tp.output_source[o], x.micro_batch), std::move((*out)[o]));
        }
        break;
      }
      case InstrKind::kAccumulate: {
        ALPA_ASSIGN_OR_RETURN(const Tensor* t, find(Key{x.value, x.micro_batch}));
        const Key k{x.value, -1};
        auto it = d.store.find(k);
        if (it == d.store.end()) {
          put(k, *t);
          it = d.store.find(k);
        } else {
          float* a = it->second.data();
          const float* b = t->data();
          for (int64_t i = 0; i < t->size(); ++i) a[i] += b[i];
        }
        if (++d.acc_count[x.value] == B && B > 1) {
          const float inv = 1.0f / static_cast<float>(B);
          float* a = it->second.data();
          for (int64_t i = 0; i < it->second.size(); ++i) a[i] *= inv;
        }
        break;
      }
      case InstrKind::kFree: {
        auto it = d.store.find(Key{x.value, x.micro_batch});
        if (it != d.store.end()) {
          store_bytes -= bytes_of(it->second);
          d.store.erase(it);
        }
        break;
      }
    }
    if (options_.record_trace && x.kind != InstrKind::kFree)
      d.trace.push_back({to_string(x), instruction_category(x), rank, 0, t_begin,
                         since_start() - t_begin, d.stage, x.micro_batch});
  }
  if (st.graph.loss_output >= 0) {
    const ValueId loss = st.graph.graph.outputs()[st.graph.loss_output].value;
    ALPA_ASSIGN_OR_RETURN(const Tensor* t, find(Key{loss, -1}));
    if (rank == st.placement.first_device()) last_loss_ = t->item();
  }
  return ok_status();
}

Result<double> PipelineRunner::run_step(const std::vector<Tensor>& inputs) {
  for (const auto& d : devices_)
    if (d && d->owned.empty() &&
        !program_.stages[static_cast<size_t>(d->stage)].graph.owned.empty())
      return failed_precondition("load_parameters before run_step");
  step_start_ = std::chrono::steady_clock::now();
  const Status s =
      world_->run([&](int rank, Communicator&) -> Status { return run_device(rank, inputs); });
  if (!s.ok()) return s;
  if (world_->num_processes() > 1) {
    // The loss lives on the first device of the stage that computes it; every process gets it.
    int owner = 0;
    for (const PipelineStage& st : program_.stages)
      if (st.graph.loss_output >= 0) owner = st.placement.first_device();
    std::string bytes(sizeof(double), '\0');
    std::memcpy(bytes.data(), &last_loss_, sizeof(double));
    ALPA_RETURN_IF_ERROR(world_->broadcast_bytes(bytes, world_->process_of(owner)));
    std::memcpy(&last_loss_, bytes.data(), sizeof(double));
  }
  return last_loss_;
}

}  // namespace alpa
