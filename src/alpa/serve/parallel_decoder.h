// Tensor-parallel and pipelined inference: a decoder cut into `stages` pipeline stages of
// `tensor` shards each, one device per part, run on the runtime's World (the threads backend:
// one thread per device, the same Communicator the training runtime uses).
//
// Device rank r is shard r % tensor of stage r / tensor. Stage s holds a contiguous run of
// layers (balanced by weights: the last stage also holds the final norm and the vocabulary
// projection, counted as the layers' worth of its weights, so it gets fewer layers; stage 0
// also the embeddings, a lookup), each shard 1/tensor of every layer's heads, KV heads and
// MLP columns (Megatron's layout: q/k/v and the MLP's up projection split by columns, the
// output and down projections by rows, their partial sums all-reduced in shard order) and of
// the vocabulary (the embedding's rows, the lookups all-reduced; the projection's rows, the
// logits gathered). Every device keeps the KV cache of its own layers and
// heads only; all devices share one block table per sequence (the engine's), so a block id
// means the same positions everywhere.
//
// A step's activations go from stage to stage by send/recv. With more than one stage the batch
// is cut into `micro_batches` runs of sequences that follow each other through the stages
// (stage 0 starts the second while stage 1 runs the first), so stages overlap within a step.
// Numbers: pipelining runs the same operations as one device; tensor parallelism sums the
// projections' partial products in another order (equal within float rounding).
//
// Across processes (create_distributed, a World of one rank per process: Open MPI) each
// process holds its own device's part only (and, given a checkpoint, reads only that part). Process
// 0 drives: every forward broadcasts the step's chunks (tokens, positions, block tables) to the
// others, which wait for them in follow(); the logits come back to process 0 from the last stage's
// first shard. The devices run the same code as on threads, so the numbers are the same bits.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "alpa/runtime/threads_communicator.h"
#include "alpa/runtime/world.h"
#include "alpa/serve/decoder.h"

namespace alpa::serve {

struct ParallelShape {
  int tensor = 1;  // shards per stage: a 1 x tensor mesh
  int stages = 1;  // pipeline stages
  int devices() const { return tensor * stages; }
};

// Layers [first, last) of each stage: contiguous, at least one each, the largest stage cost
// least, where a layer costs 1 and the last stage also carries `head_layers` (the vocabulary
// projection's weights in layers' worth).
std::vector<std::pair<int64_t, int64_t>> stage_layers(int64_t layers, int stages,
                                                      double head_layers);
// The vocabulary projection's weights over one layer's (the weights read per token).
double head_layers(const DecoderConfig& config);
std::vector<std::pair<int64_t, int64_t>> stage_layers(const DecoderConfig& config, int stages);
// OK when the model splits this way; else an error naming what does not divide and the fix.
Status check_parallel(const DecoderConfig& config, const ParallelShape& shape);
// "one device", "tensor parallel over 2 devices (mesh 1x2)", "2 pipeline stages (layers
// 0-5 | 6-11)", or both.
std::string describe(const ParallelShape& shape, const DecoderConfig& config);
// OK when `world` has one process per device of `shape` (a distributed decoder); else an
// error naming both counts and the two ways to make them agree.
Status check_distributed(const DecoderConfig& config, const ParallelShape& shape,
                         const World& world);
// Bytes of one KV cache block on the device that holds the most.
int64_t device_block_bytes(const DecoderConfig& config, const ParallelShape& shape,
                           int64_t block_size);

// Where a parallel decoder's device parts come from: a whole decoder in memory, each part cut
// from it, or a checkpoint's open tensors, each device reading its own part alone
// (Decoder::load_part), so that no process holds the whole model.
class DecoderSource {
 public:
  DecoderSource(const Decoder& whole)  // NOLINT(google-explicit-constructor): a whole decoder
      : whole_(&whole), config_(whole.config()) {}
  DecoderSource(const DecoderConfig& config, const SafetensorsSet& weights)
      : weights_(&weights), config_(config) {}
  const DecoderConfig& config() const { return config_; }
  // Layers [first, last), tensor-parallel shard `part` of `parts`.
  Result<Decoder> part(int64_t first, int64_t last, int part, int parts) const;

 private:
  const Decoder* whole_ = nullptr;
  const SafetensorsSet* weights_ = nullptr;
  DecoderConfig config_;
};

class ParallelDecoder {
 public:
  // Every device's part from `source`; every device gets a KV cache of `num_blocks` blocks and
  // threads / devices CPU threads (at least one; the process's BLAS thread count is set to that
  // too).
  static Result<std::unique_ptr<ParallelDecoder>> create(const DecoderSource& source,
                                                         const ParallelShape& shape,
                                                         int64_t block_size, int64_t num_blocks,
                                                         int threads, int micro_batches = 2);
  // One device per process of `world` (its size must be shape.devices()); this process gets
  // device world.process_index() and takes only that device's part from `source`. The same call
  // on every process, with the same arguments; when any process cannot make its part, every
  // process returns an error (that process its own, the others one naming it).
  static Result<std::unique_ptr<ParallelDecoder>> create_distributed(
      const DecoderSource& source, const ParallelShape& shape, int64_t block_size,
      int64_t num_blocks, int threads, World& world, int micro_batches = 2);
  // Process 0 of a distributed decoder: releases the other processes from follow().
  ~ParallelDecoder();

  const ParallelShape& shape() const { return shape_; }
  // The parameters the devices of this process hold (Decoder::num_parameters of each part).
  int64_t parameters_held() const;
  // As Decoder::forward; the chunks' tables index every device's cache.
  // Distributed: process 0 only.
  Status forward(const std::vector<SequenceChunk>& chunks, std::vector<float>& logits);
  // Distributed, processes other than 0: runs this device's part of every step process 0
  // drives, until it is destroyed (or a step fails: the error).
  Status follow();

 private:
  struct Device;
  ParallelDecoder(const ParallelShape& shape, int micro_batches, World* world);
  Status add_device(const DecoderSource& source, int rank, int64_t block_size, int64_t num_blocks,
                    int threads);
  Status run_device(int rank, Communicator& comm, const std::vector<SequenceChunk>& chunks,
                    std::vector<float>& logits);
  // Distributed: the rank whose logits process 0 returns (the last stage's shard 0).
  int logits_rank() const { return (shape_.stages - 1) * shape_.tensor; }
  bool distributed() const { return threads_ == nullptr; }

  ParallelShape shape_;
  int micro_batches_ = 2;
  std::unique_ptr<ThreadWorld> threads_;  // null when distributed
  World* world_ = nullptr;                // threads_ or the distributed world
  bool started_ = false;  // distributed: every process made its part (followers will follow)
  std::vector<std::unique_ptr<Device>> devices_;  // by rank; distributed: this process's only
};

}  // namespace alpa::serve
