// Moving whole tensors to and from a mesh: the block one device holds under a layout, and the
// whole tensor assembled from every device's blocks.
//
// Device d of a mesh (n0, n1) sits at coordinates (d / n1, d % n1) (SpmdRunner's order).
// Splits follow ShardingSpec (S01: block c0 * n1 + c1). For a partial sum, `assemble` adds the
// blocks of the devices along the partial axes.
#pragma once

#include <vector>

#include "alpa/intra/sharding_spec.h"
#include "alpa/runtime/tensor.h"

namespace alpa {

// The block of `full` that device `coords` holds under `spec` (no partial sums: a whole value).
Tensor shard_tensor(const Tensor& full, const ShardingSpec& spec, const MeshShape& mesh,
                    const std::array<int64_t, 2>& coords);

// All devices' blocks, in device order.
std::vector<Tensor> shard_tensor_all(const Tensor& full, const ShardingSpec& spec,
                                     const MeshShape& mesh);

// The whole tensor of `type` from every device's block (device order); partial sums are
// added. Checks the blocks' shapes.
Result<Tensor> assemble_tensor(const std::vector<const Tensor*>& blocks, const ShardingSpec& spec,
                               const MeshShape& mesh, const TensorType& type);

}  // namespace alpa
