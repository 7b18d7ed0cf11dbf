// Checkpoints: the weights and optimizer state of a training run, written as shards by every
// process and read back whole, so a run can resume under any plan, device count or backend.
//
// On disk, a checkpoint directory holds one directory per saved step and a pointer to the
// newest complete one:
//   DIR/latest                     "step-00000020" (replaced atomically, last)
//   DIR/step-00000020/manifest.json
//   DIR/step-00000020/rank-00000.bin  (process 0's blocks: raw little-endian f32, back to back)
//   DIR/step-00000020/rank-00001.bin  ...
// Every process writes only the blocks it holds (one copy of each: replicas are written once),
// to a temporary file that it renames when complete. Process 0 then writes the manifest (model,
// plan, step, each tensor's name, role, shape and blocks with their place, file, offset and
// checksum; each file's size and checksum; a checksum of the whole manifest), again through a
// temporary file and a rename, and only then moves `latest`. So a crash at any point leaves
// either the previous checkpoint or a complete new one: a step directory without its manifest
// is not a checkpoint.
//
// Reading checks everything before any value is used: the manifest's own checksum, file sizes,
// every block's bounds and checksum, and that the blocks tile every tensor exactly. A truncated
// or corrupted checkpoint is refused with an error naming the file; nothing is half-loaded.
//
// Not a format for other frameworks: it stores this project's parameters by their graph names.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "alpa/ir/types.h"
#include "alpa/runtime/tensor.h"
#include "alpa/runtime/world.h"
#include "alpa/support/status.h"

namespace alpa {

struct CheckpointTensor {
  std::string name;  // the parameter's name in the training graph
  std::string role;  // "weight" or "state"
  TensorType type;   // whole
};

struct CheckpointInfo {
  std::string model;    // e.g. "gpt-tiny"
  int64_t step = 0;     // training steps completed
  std::string plan;     // how the run was split ("mesh 2x2", "pipeline of 2 stages"), informational
  std::string backend;  // "threads" or "mpi"
  int ranks = 1;        // devices of the run that wrote it
  std::vector<CheckpointTensor> tensors;
};

// A block of tensor `tensor` (index into CheckpointInfo::tensors) held by this process.
struct CheckpointBlock {
  int tensor = 0;
  std::vector<int64_t> offsets;  // where it starts in the whole tensor, per dim
  const Tensor* data = nullptr;  // its values (shape = the block's extents)
};

// "step-00000020"
std::string checkpoint_step_name(int64_t step);

// Writes checkpoint `info.step` into `dir` (created if missing). Process-level: every process
// calls it with the same info and its own blocks. Returns the step directory's path.
Result<std::string> write_checkpoint(World& world, const std::string& dir,
                                     const CheckpointInfo& info,
                                     const std::vector<CheckpointBlock>& blocks);

struct LoadedCheckpoint {
  std::string path;  // the step directory read
  CheckpointInfo info;
  std::vector<Tensor> tensors;  // whole, in info.tensors order
};

// Reads `path`: a checkpoint directory (its `latest` step) or one step directory.
Result<LoadedCheckpoint> read_checkpoint(const std::string& path);

// 64-bit checksum of bytes (FNV-1a over 8-byte words), as 16 hex digits.
std::string checksum_hex(const void* data, size_t bytes);

}  // namespace alpa
