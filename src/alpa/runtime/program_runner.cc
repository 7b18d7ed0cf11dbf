#include "alpa/runtime/program_runner.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <set>

#include "alpa/program/verify.h"
#include "alpa/runtime/shard.h"
#include "alpa/runtime/sub_communicator.h"
#include "alpa/runtime/transfer.h"
#include "alpa/support/check.h"

namespace alpa {

using Key = std::pair<int, int>;  // (stage value, micro-batch)

struct ProgramRunner::Device {
  int rank = 0;
  int stage = 0;
  std::unique_ptr<SubCommunicator> sub;
  DeviceContext ctx;
  std::vector<std::unique_ptr<Executable>> tasks;
  std::map<int, std::unique_ptr<Executable>> restore;  // per transfer received with a restore
  std::map<int, Tensor> owned;  // weights and state of the stage: this device's blocks
  // Owned values whose blocks another runner holds (share_values_of): read, and updated, there.
  std::map<int, Tensor*> lent;
  // The block of owned value v, held or lent (CHECK: one of them).
  Tensor& held(int v) {
    auto it = lent.find(v);
    return it != lent.end() ? *it->second : owned.at(v);
  }
  const Tensor& held(int v) const {
    auto it = lent.find(v);
    return it != lent.end() ? *it->second : owned.at(v);
  }
  // held(v), or a new owned block for v.
  Tensor& held_or_new(int v) {
    auto it = lent.find(v);
    return it != lent.end() ? *it->second : owned[v];
  }
  std::map<Key, Tensor> store;
  std::map<int, int> acc_count;
  int64_t store_bytes = 0;
  int64_t step_store_bytes = 0;  // of which per-step values (micro-batch -1)
  DeviceStats stats;
  // Replaces the value stored at `k`, keeping the byte counts.
  void put(const Key& k, Tensor t);
  void erase(std::map<Key, Tensor>::iterator it);
  std::vector<TraceEvent> trace;
};

namespace {

int transfer_tag(int transfer, int micro_batch, int micro_batches) {
  return 1 + transfer * (micro_batches + 1) + (micro_batch + 1);
}

// Tags above every transfer's so that gathers never meet a step's messages.
constexpr int kGatherTag = 1 << 24;

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

// Micro-batches with values in a store (per-step values excluded).
int micro_batches_in(const std::map<Key, Tensor>& store) {
  std::set<int> mbs;
  for (const auto& [key, value] : store)
    if (key.second >= 0) mbs.insert(key.second);
  return static_cast<int>(mbs.size());
}

}  // namespace

void ProgramRunner::Device::put(const Key& k, Tensor t) {
  Tensor& slot = store[k];
  const int64_t delta = bytes_of(t) - bytes_of(slot);
  store_bytes += delta;
  if (k.second < 0) step_store_bytes += delta;
  slot = std::move(t);
}

void ProgramRunner::Device::erase(std::map<Key, Tensor>::iterator it) {
  store_bytes -= bytes_of(it->second);
  if (it->first.second < 0) step_store_bytes -= bytes_of(it->second);
  store.erase(it);
}

ProgramRunner::ProgramRunner(Program program, RunOptions options, World* world, Backend* backend)
    : program_(std::move(program)),
      options_(options),
      backend_(backend ? backend : &cpu_backend()) {
  const Status valid = verify_program(program_);
  ALPA_CHECK(valid.ok()) << "ProgramRunner: " << valid.to_string();
  const int n = program_.num_devices;
  if (world == nullptr) {
    own_world_ = std::make_unique<ThreadWorld>(n, options_.timeout_s);
    world = own_world_.get();
  }
  ALPA_CHECK(world->size() == n) << "ProgramRunner: a world of " << world->size() << " ranks for "
                                 << n << " devices";
  world_ = world;
  local_ = world_->local_ranks();
  std::vector<PlacedMesh> meshes;
  for (const Stage& st : program_.stages) meshes.push_back(st.mesh);
  ALPA_CHECK(prepare_mesh_groups(*world_, meshes).ok())
      << "ProgramRunner: preparing the stages' communicators failed";
  backend_->prepare_thread();
  for (const Stage& st : program_.stages) {
    std::vector<std::vector<char>> per_task;
    for (const Task& t : st.tasks) {
      std::vector<char> updated(t.inputs.size(), 0);
      const std::vector<ValueId> params = t.program.parameters();
      for (const GraphOutput& o : t.program.outputs())
        for (size_t i = 0; i < params.size(); ++i) updated[i] |= o.alias == params[i];
      per_task.push_back(std::move(updated));
    }
    updates_.push_back(std::move(per_task));
  }
  devices_.resize(static_cast<size_t>(n));
  LoadOptions lo;
  lo.threads = options_.threads_per_device;
  lo.fuse_elementwise = options_.fuse_elementwise;
  for (int r : local_) {
    auto d = std::make_unique<Device>();
    d->rank = r;
    d->stage = stage_of_device(program_, r);
    const Stage& st = program_.stages[static_cast<size_t>(d->stage)];
    d->sub = std::make_unique<SubCommunicator>(&world_->comm(r), st.mesh.devices);
    d->ctx.comm = d->sub.get();
    d->ctx.mesh = st.mesh.shape;
    d->ctx.coords = st.mesh.coords_of(r);
    for (const Task& t : st.tasks) d->tasks.push_back(backend_->load(t.program, d->ctx, lo));
    for (size_t t = 0; t < program_.transfers.size(); ++t) {
      const Transfer& tr = program_.transfers[t];
      if (tr.to_stage == d->stage && tr.restore)
        d->restore.emplace(static_cast<int>(t), backend_->load(*tr.restore, d->ctx, lo));
    }
    devices_[static_cast<size_t>(r)] = std::move(d);
  }
}

ProgramRunner::~ProgramRunner() = default;

ProgramRunner::Device& ProgramRunner::device(int rank) const {
  ALPA_CHECK(rank >= 0 && rank < num_devices() && devices_[static_cast<size_t>(rank)])
      << "rank " << rank << " is not run by this process";
  return *devices_[static_cast<size_t>(rank)];
}

const DeviceStats& ProgramRunner::stats(int rank) const {
  return device(rank).stats;
}

const std::vector<TraceEvent>& ProgramRunner::trace(int rank) const {
  return device(rank).trace;
}

const Executable& ProgramRunner::task(int rank, int task) const {
  const Device& d = device(rank);
  ALPA_CHECK(task >= 0 && task < static_cast<int>(d.tasks.size())) << "task " << task;
  return *d.tasks[static_cast<size_t>(task)];
}

Status ProgramRunner::load_parameters(const std::vector<Tensor>& whole) {
  if (whole.size() != program_.params.size())
    return invalid_argument(cat("load_parameters: ", whole.size(), " tensors for ",
                                program_.params.size(), " parameters"));
  // What this process's devices hold themselves: another process's weights, and weights lent
  // by another runner, may be given empty.
  std::vector<char> local_param(program_.params.size(), 0);
  for (int p = 0; p < static_cast<int>(program_.params.size()); ++p)
    local_param[static_cast<size_t>(p)] = needs_parameter(p);
  for (size_t p = 0; p < whole.size(); ++p) {
    const StepParam& sp = program_.params[p];
    if (!local_param[p] && whole[p].size() == 0) continue;
    if (sp.attrs.role != ParamRole::kInput && whole[p].type() != sp.type)
      return invalid_argument(cat("parameter '", sp.name, "' has type ",
                                  whole[p].type().to_string(), ", expected ", sp.type.to_string()));
  }
  for (int r : local_) {
    Device& d = device(r);
    const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
    d.owned.clear();
    d.stats.owned_bytes = 0;
    d.stats.owned_shapes.clear();
    for (size_t v = 0; v < st.values.size(); ++v) {
      const StageValue& x = st.values[v];
      if (x.kind != ValueKind::kOwned || d.lent.count(static_cast<int>(v)) > 0) continue;
      Tensor block =
          shard_tensor(whole[static_cast<size_t>(x.param)], x.layout, st.mesh.shape, d.ctx.coords);
      d.stats.owned_bytes += bytes_of(block);
      d.stats.owned_shapes.push_back(block.shape());
      d.owned[static_cast<int>(v)] = backend_->upload(std::move(block));
    }
  }
  return ok_status();
}

bool ProgramRunner::needs_parameter(int param) const {
  for (int r : local_) {
    const Device& d = device(r);
    const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
    for (size_t v = 0; v < st.values.size(); ++v)
      if (st.values[v].kind == ValueKind::kOwned && st.values[v].param == param &&
          d.lent.count(static_cast<int>(v)) == 0)
        return true;
  }
  return false;
}

int ProgramRunner::share_values_of(ProgramRunner& source) {
  int lent = 0;
  for (int r : local_) {
    if (r >= source.num_devices() || !source.devices_[static_cast<size_t>(r)]) continue;
    Device& d = device(r);
    Device& from = source.device(r);
    const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
    const Stage& fst = source.program_.stages[static_cast<size_t>(from.stage)];
    for (size_t v = 0; v < st.values.size(); ++v) {
      for (size_t w = 0; w < fst.values.size(); ++w) {
        if (!held_alike(st, st.values[v], fst, fst.values[w])) continue;
        auto it = from.owned.find(static_cast<int>(w));
        if (it == from.owned.end()) break;
        d.owned.erase(static_cast<int>(v));
        d.lent[static_cast<int>(v)] = &it->second;
        ++lent;
        break;
      }
    }
  }
  return lent;
}

Status ProgramRunner::set_parameter(int param, const Tensor& whole) {
  if (param < 0 || param >= static_cast<int>(program_.params.size()))
    return invalid_argument(cat("set_parameter: no parameter ", param));
  const StepParam& sp = program_.params[static_cast<size_t>(param)];
  if (whole.type() != sp.type)
    return invalid_argument(cat("parameter '", sp.name, "' has type ", sp.type.to_string(),
                                ", not ", whole.type().to_string()));
  for (int r : local_) {
    Device& d = device(r);
    const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
    for (size_t v = 0; v < st.values.size(); ++v) {
      const StageValue& x = st.values[v];
      if (x.kind != ValueKind::kOwned || x.param != param) continue;
      d.held_or_new(static_cast<int>(v)) =
          backend_->upload(shard_tensor(whole, x.layout, st.mesh.shape, d.ctx.coords));
    }
  }
  return ok_status();
}

Result<Tensor> ProgramRunner::gather_parameter(int param) {
  Tensor out;
  for (size_t s = 0; s < program_.stages.size(); ++s) {
    const Stage& st = program_.stages[s];
    for (size_t v = 0; v < st.values.size(); ++v) {
      const StageValue& x = st.values[v];
      if (x.kind != ValueKind::kOwned || x.param != param) continue;
      std::vector<Tensor> scratch(static_cast<size_t>(num_devices()));
      auto block = [&](int rank) -> const Tensor* {
        if (rank < 0 || rank >= num_devices() || !devices_[static_cast<size_t>(rank)])
          return nullptr;
        const Device& d = *devices_[static_cast<size_t>(rank)];
        const int vi = static_cast<int>(v);
        if (d.stage != static_cast<int>(s) || (d.owned.count(vi) == 0 && d.lent.count(vi) == 0))
          return nullptr;
        return &backend_->host_view(d.held(vi), scratch[static_cast<size_t>(rank)]);
      };
      ALPA_ASSIGN_OR_RETURN(Tensor t, gather_tensor(*world_, 0, x.layout, st.mesh, x.type, block,
                                                    kGatherTag + x.param));
      if (t.size() > 0 || out.size() == 0) out = std::move(t);
    }
  }
  return out;
}

Result<std::vector<Tensor>> ProgramRunner::gather_parameters() {
  std::vector<Tensor> out(program_.params.size());
  for (size_t p = 0; p < program_.params.size(); ++p)
    if (!is_input(program_.params[p])) {
      ALPA_ASSIGN_OR_RETURN(out[p], gather_parameter(static_cast<int>(p)));
    }
  return out;
}

std::vector<CheckpointBlock> ProgramRunner::checkpoint_blocks() const {
  std::vector<CheckpointBlock> out;
  std::vector<char> seen(program_.params.size(), 0);
  for (size_t s = 0; s < program_.stages.size(); ++s) {
    const Stage& st = program_.stages[s];
    for (size_t v = 0; v < st.values.size(); ++v) {
      const StageValue& x = st.values[v];
      if (x.kind != ValueKind::kOwned || seen[static_cast<size_t>(x.param)]++) continue;
      const ShardingSpec spec = x.layout.canonical(st.mesh.shape);
      for (int r : local_) {
        const Device& d = device(r);
        if (d.stage != static_cast<int>(s) || !is_primary_block(spec, st.mesh.shape, d.ctx.coords))
          continue;
        out.push_back({x.param, shard_offsets(spec, x.type.shape, st.mesh.shape, d.ctx.coords),
                       &d.held(static_cast<int>(v))});
      }
    }
  }
  return out;
}

Status ProgramRunner::run_task(Device& d, const Instruction& x, const std::vector<Tensor>& inputs) {
  const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
  const Task& task = st.tasks[static_cast<size_t>(x.task)];
  const std::vector<char>& updated =
      updates_[static_cast<size_t>(d.stage)][static_cast<size_t>(x.task)];
  std::vector<Tensor> params;
  params.reserve(task.inputs.size());
  std::vector<const Tensor*> borrowed(task.inputs.size(), nullptr);
  for (size_t i = 0; i < task.inputs.size(); ++i) {
    const int v = task.inputs[i];
    const StageValue& val = st.values[static_cast<size_t>(v)];
    if (val.kind == ValueKind::kOwned) {
      // A value the task updates is handed over (its new value comes back as an output); one
      // it only reads is lent, not copied.
      if (updated[i]) {
        params.push_back(std::move(d.held(v)));
      } else {
        params.emplace_back();
        borrowed[i] = &d.held(v);
      }
    } else if (val.kind == ValueKind::kInput) {
      if (x.micro_batch < 0)
        return internal_error(cat("a once-per-step run of stage ", d.stage, " reads a data input"));
      const Tensor& whole = inputs[static_cast<size_t>(val.param)];
      if (whole.size() == 0) return invalid_argument(cat("no data for input '", val.name, "'"));
      Tensor sliced;
      const Tensor* rows = &whole;
      if (program_.micro_batches > 1) {
        sliced = micro_batch_rows(whole, val.type, x.micro_batch);
        rows = &sliced;
      }
      params.push_back(
          backend_->upload(shard_tensor(*rows, val.layout, st.mesh.shape, d.ctx.coords)));
    } else {
      const Key k{v, val.per_step ? -1 : x.micro_batch};
      auto it = d.store.find(k);
      if (it == d.store.end())
        return internal_error(cat("stage ", d.stage, ": value ", val.name, " of micro-batch ",
                                  k.second, " is not in the store"));
      params.push_back(it->second);
    }
  }
  Executable& exec = *d.tasks[static_cast<size_t>(x.task)];
  const int64_t store_before = d.store_bytes, step_before = d.step_store_bytes;
  Result<std::vector<Tensor>> out = exec.run(std::move(params), borrowed);
  if (!out.ok())
    return out.status().with_context(
        cat("stage ", d.stage, " ", task.name,
            x.micro_batch >= 0 ? cat(" micro-batch ", x.micro_batch) : std::string()));
  const int64_t working = exec.stats().peak_live_bytes;
  d.stats.peak_task_bytes = std::max(d.stats.peak_task_bytes, working);
  if (d.stats.owned_bytes + store_before + working > d.stats.peak_bytes) {
    d.stats.peak_bytes = d.stats.owned_bytes + store_before + working;
    d.stats.peak_step_bytes = step_before;
    d.stats.peak_stash_bytes = store_before - step_before;
    d.stats.peak_in_flight = micro_batches_in(d.store);  // outputs not stored yet
    d.stats.peak_working_bytes = working;
  }
  for (size_t o = 0; o < out->size(); ++o) {
    const int v = task.outputs[o];
    const StageValue& val = st.values[static_cast<size_t>(v)];
    if (val.kind == ValueKind::kOwned) {
      auto lent = d.lent.find(v);
      (lent != d.lent.end() ? *lent->second : d.owned[v]) = std::move((*out)[o]);
      continue;
    }
    d.put(Key{v, val.per_step ? -1 : x.micro_batch}, std::move((*out)[o]));
  }
  return ok_status();
}

Status ProgramRunner::run_device(int rank, const std::vector<Tensor>& inputs) {
  Device& d = device(rank);
  const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
  const int B = program_.micro_batches;
  Communicator& world = world_->comm(rank);
  d.store.clear();
  d.acc_count.clear();
  d.store_bytes = 0;
  d.step_store_bytes = 0;
  d.stats = DeviceStats{d.stats.owned_bytes, std::move(d.stats.owned_shapes)};  // the step's peaks
  auto note_store = [&] {
    d.stats.peak_store_bytes = std::max(d.stats.peak_store_bytes, d.store_bytes);
    d.stats.peak_live_micro_batches =
        std::max(d.stats.peak_live_micro_batches, micro_batches_in(d.store));
  };
  auto put = [&](Key k, Tensor t) {
    d.put(k, std::move(t));
    note_store();
  };
  auto find = [&](Key k) -> Result<Tensor*> {
    auto it = d.store.find(k);
    if (it == d.store.end())
      return internal_error(cat("stage ", d.stage, ": value ", k.first, " of micro-batch ",
                                k.second, " is not in the store"));
    return &it->second;
  };
  auto key_of = [&](int v, int m) {
    return Key{v, st.values[static_cast<size_t>(v)].per_step ? -1 : m};
  };
  d.trace.clear();
  auto since_start = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start_).count();
  };
  for (const Instruction& x : st.instructions) {
    const double t_begin = options_.record_trace ? since_start() : 0.0;
    switch (x.kind) {
      case InstrKind::kRecv: {
        const Transfer& tr = program_.transfers[static_cast<size_t>(x.transfer)];
        const int tag = transfer_tag(x.transfer, x.micro_batch, B);
        ALPA_ASSIGN_OR_RETURN(Tensor t, recv_cross_mesh(tr.plan, rank, world, tag));
        t = backend_->upload(std::move(t));
        auto it = d.restore.find(x.transfer);
        if (it != d.restore.end()) {
          std::vector<Tensor> in;
          in.push_back(std::move(t));
          ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> out, it->second->run(std::move(in)));
          t = std::move(out[0]);
        }
        put(key_of(tr.to_value, x.micro_batch), std::move(t));
        break;
      }
      case InstrKind::kSend: {
        const Transfer& tr = program_.transfers[static_cast<size_t>(x.transfer)];
        const Tensor* t = nullptr;
        if (st.values[static_cast<size_t>(tr.from_value)].kind == ValueKind::kOwned) {
          t = &d.held(tr.from_value);
        } else {
          ALPA_ASSIGN_OR_RETURN(t, find(key_of(tr.from_value, x.micro_batch)));
        }
        Tensor scratch;
        ALPA_RETURN_IF_ERROR(send_cross_mesh(tr.plan, rank, backend_->host_view(*t, scratch), world,
                                             transfer_tag(x.transfer, x.micro_batch, B)));
        break;
      }
      case InstrKind::kRun:
        ALPA_RETURN_IF_ERROR(run_task(d, x, inputs));
        note_store();
        break;
      case InstrKind::kAccumulate: {
        ALPA_ASSIGN_OR_RETURN(Tensor * t, find(Key{x.value, x.micro_batch}));
        const Key k{x.value, -1};
        auto it = d.store.find(k);
        if (it == d.store.end()) {
          put(k, *t);
          it = d.store.find(k);
        } else {
          backend_->accumulate(it->second, *t);
        }
        if (++d.acc_count[x.value] == B && B > 1)
          backend_->scale(it->second, 1.0f / static_cast<float>(B));
        break;
      }
      case InstrKind::kFree: {
        auto it = d.store.find(Key{x.value, x.micro_batch});
        if (it != d.store.end()) d.erase(it);
        break;
      }
    }
    if (options_.record_trace && x.kind != InstrKind::kFree)
      d.trace.push_back({to_string(st, x), instruction_category(x), rank, 0, t_begin,
                         since_start() - t_begin, d.stage, x.micro_batch});
  }
  if (st.loss >= 0 && rank == st.mesh.first_device()) {
    ALPA_ASSIGN_OR_RETURN(Tensor * t, find(Key{st.loss, -1}));
    Tensor scratch;
    last_loss_ = backend_->host_view(*t, scratch).item();
  }
  return ok_status();
}

Result<double> ProgramRunner::run_step(const std::vector<Tensor>& inputs) {
  if (inputs.size() != program_.params.size())
    return invalid_argument(
        cat("run_step: ", inputs.size(), " tensors for ", program_.params.size(), " parameters"));
  for (int r : local_) {
    const Device& d = device(r);
    const Stage& st = program_.stages[static_cast<size_t>(d.stage)];
    for (const StageValue& x : st.values)
      if (x.kind == ValueKind::kOwned && d.owned.empty() && d.lent.empty())
        return failed_precondition("load_parameters before run_step");
  }
  step_start_ = std::chrono::steady_clock::now();
  last_loss_ = 0;
  const Status s =
      world_->run([&](int rank, Communicator&) -> Status { return run_device(rank, inputs); });
  if (!s.ok()) return s;
  if (world_->num_processes() > 1) {
    // The loss lives on the first device of the stage that computes it; every process gets it.
    int owner = 0;
    for (const Stage& st : program_.stages)
      if (st.loss >= 0) owner = st.mesh.first_device();
    std::string bytes(sizeof(double), '\0');
    std::memcpy(bytes.data(), &last_loss_, sizeof(double));
    ALPA_RETURN_IF_ERROR(world_->broadcast_bytes(bytes, world_->process_of(owner)));
    std::memcpy(&last_loss_, bytes.data(), sizeof(double));
  }
  return last_loss_;
}

}  // namespace alpa
