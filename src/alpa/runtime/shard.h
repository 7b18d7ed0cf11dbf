// Moving whole tensors to and from a mesh: the block one device holds under a layout, and the
// whole tensor assembled from every device's blocks.
//
// Device d of a mesh (n0, n1) sits at coordinates (d / n1, d % n1) (SpmdRunner's order).
// Splits follow ShardingSpec (S01: block c0 * n1 + c1). For a partial sum, `assemble` adds the
// blocks of the devices along the partial axes.
#pragma once

#include <vector>

#include <functional>

#include "alpa/runtime/tensor.h"
#include "alpa/runtime/world.h"
#include "alpa/sharding/sharding_spec.h"

namespace alpa {

// The block of `full` that device `coords` holds under `spec` (no partial sums: a whole value).
Tensor shard_tensor(const Tensor& full, const ShardingSpec& spec, const MeshShape& mesh,
                    const MeshCoords& coords);

// All devices' blocks, in device order.
std::vector<Tensor> shard_tensor_all(const Tensor& full, const ShardingSpec& spec,
                                     const MeshShape& mesh);

// The whole tensor of `type` from every device's block (device order); partial sums are
// added. Checks the blocks' shapes.
Result<Tensor> assemble_tensor(const std::vector<const Tensor*>& blocks, const ShardingSpec& spec,
                               const MeshShape& mesh, const TensorType& type);

// Whether the device at `coords` holds the copy of its block that counts: the first device
// along every unsplit axis (a partial sum's devices all count). The blocks of the devices for
// which this holds tile the tensor exactly once (partial sums: once per partial device).
bool is_primary_block(const ShardingSpec& spec, const MeshShape& mesh, const MeshCoords& coords);

// The whole tensor at world rank `root`, from the blocks of a mesh placed on world ranks,
// laid out as `spec`. `local_block(rank)` gives the block of a rank this process runs. Blocks
// travel from other processes by send/recv with `tag`. Process-level: every process calls it
// for the same tensors in the same order. Returns the tensor in root's process and an empty
// Tensor in the others.
Result<Tensor> gather_tensor(World& world, int root, const ShardingSpec& spec,
                             const PlacedMesh& mesh, const TensorType& type,
                             const std::function<const Tensor*(int rank)>& local_block, int tag);

}  // namespace alpa
