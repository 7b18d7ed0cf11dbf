#include "alpa/runtime/shard.h"

#include "alpa/runtime/kernel_util.h"

namespace alpa {
namespace {

// Calls f(local_flat, global_flat) for every element of a block at `offsets`.
template <typename F>
void for_each_in_block(const Shape& global, const Shape& local, const std::vector<int64_t>& offsets,
                       F f) {
  const std::vector<int64_t> gs = kernels::row_major_strides(global);
  const int64_t n = num_elements(local);
  std::vector<int64_t> idx(local.size(), 0);
  for (int64_t i = 0; i < n; ++i) {
    int64_t g = 0;
    for (size_t d = 0; d < local.size(); ++d) g += (idx[d] + offsets[d]) * gs[d];
    f(i, g);
    for (size_t d = local.size(); d-- > 0;) {
      if (++idx[d] < local[d]) break;
      idx[d] = 0;
    }
  }
}

}  // namespace

Tensor shard_tensor(const Tensor& full, const ShardingSpec& spec, const MeshShape& mesh,
                    const MeshCoords& coords) {
  const ShardingSpec s = spec.canonical(mesh);
  TensorType t = full.type();
  t.shape = s.local_shape(full.shape(), mesh);
  Tensor out(t);
  const std::vector<int64_t> off = shard_offsets(s, full.shape(), mesh, coords);
  const float* src = full.data();
  float* dst = out.data();
  for_each_in_block(full.shape(), t.shape, off, [&](int64_t l, int64_t g) { dst[l] = src[g]; });
  return out;
}

std::vector<Tensor> shard_tensor_all(const Tensor& full, const ShardingSpec& spec,
                                     const MeshShape& mesh) {
  std::vector<Tensor> out;
  for (int64_t d = 0; d < mesh[0] * mesh[1]; ++d)
    out.push_back(shard_tensor(full, spec, mesh, {d / mesh[1], d % mesh[1]}));
  return out;
}

bool is_primary_block(const ShardingSpec& spec, const MeshShape& mesh, const MeshCoords& coords) {
  const ShardingSpec s = spec.canonical(mesh);
  for (int a : {0, 1})
    if (coords[a] != 0 && !(s.split_axes() & (a == 0 ? kAxis0 : kAxis1)) &&
        !(s.partial & (a == 0 ? kAxis0 : kAxis1)))
      return false;
  return true;
}

Result<Tensor> gather_tensor(World& world, int root, const ShardingSpec& spec,
                             const PlacedMesh& placed, const TensorType& type,
                             const std::function<const Tensor*(int rank)>& local_block, int tag) {
  const MeshShape& mesh = placed.shape;
  const int64_t n = mesh.size();
  const bool at_root = world.is_local(root);
  TensorType local_type = type;
  local_type.shape = spec.canonical(mesh).local_shape(type.shape, mesh);
  std::vector<Tensor> received(static_cast<size_t>(n));
  std::vector<const Tensor*> blocks(static_cast<size_t>(n), nullptr);
  const Tensor empty;
  for (int64_t l = 0; l < n; ++l) {
    const int rank = placed.devices[static_cast<size_t>(l)];
    blocks[l] = &empty;
    if (!is_primary_block(spec, mesh, mesh.coords(l))) continue;
    if (world.is_local(rank)) {
      const Tensor* b = local_block(rank);
      if (b == nullptr) return internal_error(cat("gather: rank ", rank, " holds no block"));
      if (at_root) {
        blocks[l] = b;
      } else {
        ALPA_RETURN_IF_ERROR(world.comm(rank).send(b->data(), b->size(), root, tag));
      }
    } else if (at_root) {
      received[l] = Tensor(local_type);
      ALPA_RETURN_IF_ERROR(
          world.comm(root).recv(received[l].data(), received[l].size(), rank, tag));
      blocks[l] = &received[l];
    }
  }
  if (!at_root) return Tensor();
  return assemble_tensor(blocks, spec, mesh, type);
}

Result<Tensor> assemble_tensor(const std::vector<const Tensor*>& blocks, const ShardingSpec& spec,
                               const MeshShape& mesh, const TensorType& type) {
  const ShardingSpec s = spec.canonical(mesh);
  if (static_cast<int64_t>(blocks.size()) != mesh[0] * mesh[1])
    return invalid_argument(
        cat("assemble: ", blocks.size(), " blocks for a ", mesh[0], "x", mesh[1], " mesh"));
  const Shape local = s.local_shape(type.shape, mesh);
  Tensor out(type);
  float* dst = out.data();
  for (int64_t d = 0; d < mesh[0] * mesh[1]; ++d) {
    const MeshCoords c = mesh.coords(d);
    // Along a partial axis every device contributes; along other unsplit axes take one copy.
    if (!is_primary_block(s, mesh, c)) continue;
    if (blocks[d]->shape() != local)
      return invalid_argument(cat("assemble: device ", d, " holds ",
                                  shape_to_string(blocks[d]->shape()), ", expected ",
                                  shape_to_string(local), " for layout ", s.to_string()));
    const std::vector<int64_t> off = shard_offsets(s, type.shape, mesh, c);
    const float* src = blocks[d]->data();
    for_each_in_block(type.shape, local, off, [&](int64_t l, int64_t g) { dst[g] += src[l]; });
  }
  return out;
}

}  // namespace alpa
