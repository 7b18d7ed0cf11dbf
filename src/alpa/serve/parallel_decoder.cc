#include "alpa/serve/parallel_decoder.h"

#include <algorithm>
#include <cstring>

#include "alpa/runtime/blas.h"
#include "alpa/support/check.h"
#include "alpa/support/thread_pool.h"

namespace alpa::serve {

std::vector<std::pair<int64_t, int64_t>> stage_layers(int64_t layers, int stages,
                                                      double head_layers) {
  // best[s][l]: the least largest stage cost putting layers [0, l) into stages [0, s); the
  // last stage also carries the head. At least one layer per stage.
  const int64_t L = layers;
  const double inf = 1e300;
  std::vector<std::vector<double>> best(static_cast<size_t>(stages + 1),
                                        std::vector<double>(static_cast<size_t>(L + 1), inf));
  std::vector<std::vector<int64_t>> cut(best.size(), std::vector<int64_t>(best[0].size(), 0));
  best[0][0] = 0;
  for (int s = 1; s <= stages; ++s)
    for (int64_t l = s; l <= L; ++l)
      for (int64_t k = l - 1; k >= s - 1; --k) {  // ties: earlier stages larger
        const double cost = static_cast<double>(l - k) + (s == stages ? head_layers : 0.0);
        const double worst = std::max(best[s - 1][k], cost);
        if (worst < best[s][l] - 1e-12) {
          best[s][l] = worst;
          cut[s][l] = k;
        }
      }
  std::vector<std::pair<int64_t, int64_t>> out(static_cast<size_t>(stages));
  int64_t end = L;
  for (int s = stages; s >= 1; --s) {
    out[static_cast<size_t>(s - 1)] = {cut[s][end], end};
    end = cut[s][end];
  }
  return out;
}

double head_layers(const DecoderConfig& c) {
  const double layer =
      static_cast<double>(c.hidden) * (c.q_dim() + 2 * c.kv_dim()) +
      static_cast<double>(c.q_dim()) * c.hidden +
      static_cast<double>(c.hidden) * c.intermediate * (c.family == Family::kLlama ? 3 : 2);
  return static_cast<double>(c.vocab) * c.hidden / layer;
}

std::vector<std::pair<int64_t, int64_t>> stage_layers(const DecoderConfig& c, int stages) {
  return stage_layers(c.layers, stages, head_layers(c));
}

Status check_parallel(const DecoderConfig& c, const ParallelShape& shape) {
  if (shape.stages < 1)
    return invalid_argument(cat("pipeline stages ", shape.stages, " is below 1"), "use 1 or more");
  if (shape.stages > c.layers)
    return invalid_argument(cat("the model has ", c.layers, " layers, fewer than the ",
                                shape.stages, " pipeline stages asked for"),
                            cat("use at most ", c.layers, " stages (--pipeline)"));
  return check_tensor_parallel(c, shape.tensor);
}

std::string describe(const ParallelShape& shape, const DecoderConfig& c) {
  if (shape.devices() == 1) return "one device";
  std::string out;
  if (shape.tensor > 1)
    out = cat("tensor parallel over ", shape.tensor, " devices (mesh 1x", shape.tensor, ")");
  if (shape.stages > 1) {
    std::string layers;
    for (const auto& [first, last] : stage_layers(c, shape.stages))
      layers += cat(layers.empty() ? "" : " | ", first, "-", last - 1);
    out += cat(out.empty() ? "" : ", in each of ", shape.stages, " pipeline stages (layers ",
               layers, ")");
  }
  return cat(out, "; ", shape.devices(), " devices");
}

Status check_distributed(const DecoderConfig& c, const ParallelShape& shape, const World& world) {
  const int processes = world.num_processes();
  if (world.size() == shape.devices() && processes == world.size()) return ok_status();
  return invalid_argument(cat("mpirun started ", processes, " processes but the split (",
                              describe(shape, c), ") needs ", shape.devices(), ", one per device"),
                          cat("use mpirun -np ", shape.devices(), ", or a split of ", processes,
                              " devices (--mesh 1x", processes, ")"));
}

int64_t device_block_bytes(const DecoderConfig& c, const ParallelShape& shape, int64_t block_size) {
  int64_t layers = 0;  // the largest stage's
  for (const auto& [first, last] : stage_layers(c, shape.stages))
    layers = std::max(layers, last - first);
  const int64_t kv_heads = c.kv_heads / std::max(1, shape.tensor);
  return KvCacheShape{layers, kv_heads, c.head_dim, block_size, 0}.block_bytes();
}

struct ParallelDecoder::Device {
  Decoder part;
  std::unique_ptr<KvCache> cache;
  std::unique_ptr<ThreadPool> pool;
  ShardPeers peers;
  std::vector<float> x, logits;
};

ParallelDecoder::ParallelDecoder(const ParallelShape& shape, int micro_batches, World* world)
    : shape_(shape), micro_batches_(std::max(1, micro_batches)), world_(world) {
  if (world_ == nullptr) {
    threads_ = std::make_unique<ThreadWorld>(shape.devices(), 600);
    world_ = threads_.get();
  }
  devices_.resize(static_cast<size_t>(shape.devices()));
}

ParallelDecoder::~ParallelDecoder() {
  if (distributed() && started_ && world_->process_index() == 0) {
    std::string stop;  // empty: no more steps
    (void)world_->broadcast_bytes(stop, 0);
  }
}

Result<Decoder> DecoderSource::part(int64_t first, int64_t last, int part, int parts) const {
  if (whole_ != nullptr) return whole_->shard(first, last, part, parts);
  return Decoder::load_part(config_, *weights_, first, last, part, parts);
}

Status ParallelDecoder::add_device(const DecoderSource& source, int rank, int64_t block_size,
                                   int64_t num_blocks, int threads) {
  const int stage = rank / shape_.tensor, shard = rank % shape_.tensor;
  auto d = std::make_unique<Device>();
  const auto [first, last] =
      stage_layers(source.config(), shape_.stages)[static_cast<size_t>(stage)];
  ALPA_ASSIGN_OR_RETURN(d->part, source.part(first, last, shard, shape_.tensor));
  d->cache = std::make_unique<KvCache>(d->part.cache_shape(block_size, num_blocks));
  d->pool = std::make_unique<ThreadPool>(threads);
  d->peers.comm = &world_->comm(rank);
  for (int t = 0; t < shape_.tensor; ++t) d->peers.group.push_back(stage * shape_.tensor + t);
  devices_[static_cast<size_t>(rank)] = std::move(d);
  return Status();
}

int64_t ParallelDecoder::parameters_held() const {
  int64_t n = 0;
  for (const auto& d : devices_)
    if (d != nullptr) n += d->part.num_parameters();
  return n;
}

Result<std::unique_ptr<ParallelDecoder>> ParallelDecoder::create(const DecoderSource& source,
                                                                 const ParallelShape& shape,
                                                                 int64_t block_size,
                                                                 int64_t num_blocks, int threads,
                                                                 int micro_batches) {
  ALPA_RETURN_IF_ERROR(check_parallel(source.config(), shape));
  std::unique_ptr<ParallelDecoder> p(new ParallelDecoder(shape, micro_batches, nullptr));
  const int per_device = std::max(1, threads / shape.devices());
  set_blas_threads(per_device);
  // The devices' parts are read side by side (a checkpoint's reading and conversion is most of
  // the start-up); the first error in rank order is returned.
  std::vector<Status> made(static_cast<size_t>(shape.devices()));
  run_side_by_side(made.size(), std::max(1, threads), [&](size_t rank) {
    made[rank] = p->add_device(source, static_cast<int>(rank), block_size, num_blocks, per_device);
  });
  for (const Status& st : made) ALPA_RETURN_IF_ERROR(st);
  return p;
}

Result<std::unique_ptr<ParallelDecoder>> ParallelDecoder::create_distributed(
    const DecoderSource& source, const ParallelShape& shape, int64_t block_size, int64_t num_blocks,
    int threads, World& world, int micro_batches) {
  ALPA_RETURN_IF_ERROR(check_parallel(source.config(), shape));
  ALPA_RETURN_IF_ERROR(check_distributed(source.config(), shape, world));
  std::unique_ptr<ParallelDecoder> p(new ParallelDecoder(shape, micro_batches, &world));
  const int rank = world.process_index();
  set_blas_threads(std::max(1, threads));
  const Status made = p->add_device(source, rank, block_size, num_blocks, std::max(1, threads));
  // Every process learns whether every other made its part (each reads its own: a copy of the
  // checkpoint damaged on one host fails there only), so the job fails at start on every
  // process, naming the first that failed, instead of at its first step.
  ALPA_ASSIGN_OR_RETURN(std::vector<std::string> all,
                        world.gather_bytes(made.ok() ? "" : made.to_string(), 0));
  std::string failed;
  for (size_t q = 0; q < all.size() && failed.empty(); ++q)
    if (!all[q].empty()) failed = cat("process ", q, " could not make its part: ", all[q]);
  ALPA_RETURN_IF_ERROR(world.broadcast_bytes(failed, 0));
  if (!made.ok()) return made;
  if (!failed.empty()) return failed_precondition(failed, "every process needs its part");
  p->started_ = true;
  return p;
}

namespace {

// A step's chunks as process 0 sends them: [chunks, then per chunk count, start, all_logits,
// table length, the tokens, the table].
std::string pack_chunks(const std::vector<SequenceChunk>& chunks) {
  std::vector<int64_t> w{static_cast<int64_t>(chunks.size())};
  for (const SequenceChunk& ch : chunks) {
    const int64_t blocks = ch.table ? static_cast<int64_t>(ch.table->size()) : 0;
    w.insert(w.end(), {ch.count, ch.start, ch.all_logits ? 1 : 0, blocks});
    w.insert(w.end(), ch.tokens, ch.tokens + ch.count);
    if (ch.table) w.insert(w.end(), ch.table->begin(), ch.table->end());
  }
  return std::string(reinterpret_cast<const char*>(w.data()), w.size() * sizeof(int64_t));
}

// The chunks of a packed step; their tokens and tables point into `tokens` and `tables`.
Result<std::vector<SequenceChunk>> unpack_chunks(const std::string& bytes,
                                                 std::vector<std::vector<int32_t>>& tokens,
                                                 std::vector<BlockTable>& tables) {
  if (bytes.size() % sizeof(int64_t) != 0) return internal_error("a step message is truncated");
  std::vector<int64_t> w(bytes.size() / sizeof(int64_t));
  std::memcpy(w.data(), bytes.data(), bytes.size());
  size_t at = 0;
  auto take = [&](size_t n) -> Result<size_t> {
    if (n > w.size() - at) return internal_error("a step message is truncated");
    at += n;
    return at - n;
  };
  ALPA_ASSIGN_OR_RETURN(size_t head, take(1));
  const int64_t n = w[head];
  if (n < 0 || n > static_cast<int64_t>(w.size())) return internal_error("a bad step message");
  tokens.assign(static_cast<size_t>(n), {});
  tables.assign(static_cast<size_t>(n), {});
  std::vector<SequenceChunk> chunks(static_cast<size_t>(n));
  for (size_t i = 0; i < chunks.size(); ++i) {
    ALPA_ASSIGN_OR_RETURN(size_t h, take(4));
    const int64_t count = w[h], blocks = w[h + 3];
    if (count < 0 || blocks < 0) return internal_error("a bad step message");
    ALPA_ASSIGN_OR_RETURN(size_t t, take(static_cast<size_t>(count)));
    tokens[i].assign(w.begin() + static_cast<ptrdiff_t>(t),
                     w.begin() + static_cast<ptrdiff_t>(t + static_cast<size_t>(count)));
    ALPA_ASSIGN_OR_RETURN(size_t b, take(static_cast<size_t>(blocks)));
    tables[i].assign(w.begin() + static_cast<ptrdiff_t>(b),
                     w.begin() + static_cast<ptrdiff_t>(b + static_cast<size_t>(blocks)));
    chunks[i] = {tokens[i].data(), count, w[h + 1], &tables[i], w[h + 2] != 0};
  }
  return chunks;
}

int64_t logits_rows(const std::vector<SequenceChunk>& chunks) {
  int64_t rows = 0;
  for (const SequenceChunk& ch : chunks) rows += ch.all_logits ? ch.count : (ch.count > 0 ? 1 : 0);
  return rows;
}

}  // namespace

Status ParallelDecoder::run_device(int rank, Communicator& comm,
                                   const std::vector<SequenceChunk>& chunks,
                                   std::vector<float>& logits) {
  Device& d = *devices_[static_cast<size_t>(rank)];
  const int stage = rank / shape_.tensor, shard = rank % shape_.tensor;
  const bool last = stage + 1 == shape_.stages;
  const int64_t C = d.part.config().hidden, V = d.part.config().vocab;
  const int64_t n = static_cast<int64_t>(chunks.size());
  const int64_t runs = shape_.stages > 1 ? std::min<int64_t>(micro_batches_, n) : 1;
  int64_t row = 0;  // the first logits row of the run
  for (int64_t m = 0; m < runs; ++m) {
    const std::vector<SequenceChunk> run(chunks.begin() + m * n / runs,
                                         chunks.begin() + (m + 1) * n / runs);
    int64_t T = 0;
    for (const SequenceChunk& ch : run) T += ch.count;
    d.x.resize(static_cast<size_t>(T * C));
    if (stage == 0) {
      ALPA_RETURN_IF_ERROR(d.part.embed(run, d.x, &d.peers));
    } else {
      ALPA_RETURN_IF_ERROR(comm.recv(d.x.data(), T * C, rank - shape_.tensor, 0));
    }
    ALPA_RETURN_IF_ERROR(d.part.run_layers(run, *d.cache, *d.pool, d.x, &d.peers));
    if (!last) {
      ALPA_RETURN_IF_ERROR(comm.send(d.x.data(), T * C, rank + shape_.tensor, 0));
      continue;
    }
    ALPA_RETURN_IF_ERROR(d.part.head(run, d.x, *d.pool, d.logits, &d.peers));
    if (shard == 0) std::copy(d.logits.begin(), d.logits.end(), logits.begin() + row * V);
    row += static_cast<int64_t>(d.logits.size()) / V;
  }
  return Status();
}

Status ParallelDecoder::forward(const std::vector<SequenceChunk>& chunks,
                                std::vector<float>& logits) {
  const int64_t V =
      devices_[static_cast<size_t>(world_->local_ranks().front())]->part.config().vocab;
  logits.resize(static_cast<size_t>(logits_rows(chunks) * V));
  if (!distributed())
    return world_->run(
        [&](int rank, Communicator& comm) { return run_device(rank, comm, chunks, logits); });
  ALPA_CHECK(world_->process_index() == 0) << "forward is driven by process 0";
  std::string step = pack_chunks(chunks);
  ALPA_RETURN_IF_ERROR(world_->broadcast_bytes(step, 0));
  ALPA_RETURN_IF_ERROR(run_device(0, world_->comm(0), chunks, logits));
  if (logits_rank() != 0)
    ALPA_RETURN_IF_ERROR(
        world_->comm(0).recv(logits.data(), static_cast<int64_t>(logits.size()), logits_rank(), 1));
  return Status();
}

Status ParallelDecoder::follow() {
  const int rank = world_->process_index();
  ALPA_CHECK(distributed() && rank != 0) << "follow() is for the processes process 0 drives";
  Device& d = *devices_[static_cast<size_t>(rank)];
  std::vector<std::vector<int32_t>> tokens;
  std::vector<BlockTable> tables;
  std::vector<float> logits;
  for (;;) {
    std::string step;
    world_->set_next_wait_limit(1e8);  // idle between requests for as long as it takes
    ALPA_RETURN_IF_ERROR(world_->broadcast_bytes(step, 0));
    if (step.empty()) return Status();
    ALPA_ASSIGN_OR_RETURN(std::vector<SequenceChunk> chunks, unpack_chunks(step, tokens, tables));
    logits.resize(static_cast<size_t>(logits_rows(chunks) * d.part.config().vocab));
    ALPA_RETURN_IF_ERROR(run_device(rank, world_->comm(rank), chunks, logits));
    if (rank == logits_rank())
      ALPA_RETURN_IF_ERROR(
          world_->comm(rank).send(logits.data(), static_cast<int64_t>(logits.size()), 0, 1));
  }
}

}  // namespace alpa::serve
