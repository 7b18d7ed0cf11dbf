// Kernels of the collective ops (all_reduce, all_gather, reduce_scatter, all_to_all,
// shard_slice, to_partial) and collective_group (device.h). Semantics: CollectiveAttrs in attrs.h.
//
// A tensor is viewed around the split / concatenated dim d as (outer, extent, inner). The
// Communicator moves contiguous blocks, one per member; when d is not the outermost dim
// (outer > 1) a member's block is strided, so the kernels rearrange through scratch:
//   all_gather      gather blocks [n][outer, e, inner], interleave into (outer, n*e, inner)
//   reduce_scatter  gather my input's chunks to [n][outer, e/n, inner], reduce-scatter
//   all_to_all      as reduce_scatter for the send side; the received [n][block] is interleaved
//                   along concat_dim like all_gather
//   shard_slice     a strided copy of this device's chunk, no communication
//   to_partial      a copy on group position 0, zeros elsewhere, no communication
// A group of one member is a plain copy and needs no device (every op is then the identity).
#include <cstring>

#include "alpa/runtime/device.h"
#include "alpa/runtime/kernel_util.h"

namespace alpa {

Status prepare_mesh_groups(World& world, const std::vector<PlacedMesh>& meshes) {
  if (world.num_processes() == 1) return ok_status();
  for (const std::vector<int64_t>& axes :
       {std::vector<int64_t>{0}, std::vector<int64_t>{1}, std::vector<int64_t>{0, 1}}) {
    std::vector<std::vector<int>> groups;
    for (const PlacedMesh& m : meshes) {
      CollectiveAttrs attrs;
      attrs.mesh = {m.shape[0], m.shape[1]};
      attrs.axes = axes;
      if (collective_group_size(attrs) < 2) continue;
      for (int64_t i = 0; i < m.shape[0]; ++i)
        for (int64_t j = 0; j < m.shape[1]; ++j) {
          CollectiveGroup g = collective_group(attrs, {i, j});
          if (g.position != 0) continue;  // one entry per group: its first member's
          for (int& r : g.ranks) r = m.devices[static_cast<size_t>(r)];
          groups.push_back(std::move(g.ranks));
        }
    }
    ALPA_RETURN_IF_ERROR(world.prepare_groups(groups));
  }
  return ok_status();
}

CollectiveGroup collective_group(const CollectiveAttrs& attrs, MeshCoords coords) {
  ALPA_CHECK(attrs.mesh.size() == 2 && collective_group_size(attrs) > 0)
      << "collective_group: invalid mesh or axes";
  ALPA_CHECK(coords[0] >= 0 && coords[0] < attrs.mesh[0] && coords[1] >= 0 &&
             coords[1] < attrs.mesh[1])
      << "collective_group: coords (" << coords[0] << "," << coords[1] << ") outside the mesh";
  const int64_t n = collective_group_size(attrs);
  CollectiveGroup g;
  g.ranks.reserve(static_cast<size_t>(n));
  for (int64_t q = 0; q < n; ++q) {
    // Position q -> coordinates along attrs.axes (major first); other axes stay at coords.
    MeshCoords c = coords;
    int64_t rest = q;
    for (size_t k = attrs.axes.size(); k-- > 0;) {
      const int64_t axis = attrs.axes[k];
      c[static_cast<size_t>(axis)] = rest % attrs.mesh[static_cast<size_t>(axis)];
      rest /= attrs.mesh[static_cast<size_t>(axis)];
    }
    if (c == coords) g.position = static_cast<int>(q);
    g.ranks.push_back(static_cast<int>(c[0] * attrs.mesh[1] + c[1]));
  }
  return g;
}

namespace kernels {
namespace {

struct Split {
  int64_t outer = 1, extent = 1, inner = 1;
};

Split split_at(const Shape& s, int64_t dim) {
  Split r;
  for (int64_t d = 0; d < dim; ++d) r.outer *= s[static_cast<size_t>(d)];
  r.extent = s[static_cast<size_t>(dim)];
  for (size_t d = static_cast<size_t>(dim) + 1; d < s.size(); ++d) r.inner *= s[d];
  return r;
}

// The group of this node on this device, or why it cannot run here. A group of one member
// needs no device.
Result<CollectiveGroup> resolve_group(const KernelContext& ctx, const Node& node) {
  const auto& a = node.attr<CollectiveAttrs>();
  const int64_t n = collective_group_size(a);
  const std::string where = cat(ctx.node_ref(node), " (", op_name(node.op), ")");
  if (ctx.device == nullptr) {
    if (n == 1) return CollectiveGroup{{0}, 0};
    return failed_precondition(
        cat(where, " communicates within groups of ", n, " devices of mesh [", a.mesh[0], ",",
            a.mesh[1], "], but the executor has no device context"),
        "run per-device programs through SpmdRunner, or set ExecutorOptions::device");
  }
  const DeviceContext& dev = *ctx.device;
  if (a.mesh[0] != dev.mesh[0] || a.mesh[1] != dev.mesh[1])
    return failed_precondition(
        cat(where, " is for mesh [", a.mesh[0], ",", a.mesh[1], "], but this device is in mesh [",
            dev.mesh[0], ",", dev.mesh[1], "]"),
        "lower the program for the mesh it runs on");
  if (dev.coords[0] < 0 || dev.coords[0] >= dev.mesh[0] || dev.coords[1] < 0 ||
      dev.coords[1] >= dev.mesh[1])
    return failed_precondition(cat(where, ": device coordinates (", dev.coords[0], ",",
                                   dev.coords[1], ") lie outside mesh [", dev.mesh[0], ",",
                                   dev.mesh[1], "]"));
  CollectiveGroup g = collective_group(a, dev.coords);
  if (n == 1) return g;
  if (dev.comm == nullptr)
    return failed_precondition(cat(where, " needs a communicator, but the device has none"));
  if (dev.comm->rank() != dev.rank() || dev.comm->size() < dev.mesh[0] * dev.mesh[1])
    return failed_precondition(cat(
        where, ": the device at (", dev.coords[0], ",", dev.coords[1], ") of mesh [", dev.mesh[0],
        ",", dev.mesh[1], "] must be rank ", dev.rank(), " of at least ", dev.mesh[0] * dev.mesh[1],
        ", but its communicator is rank ", dev.comm->rank(), " of ", dev.comm->size()));
  return g;
}

Status with_node(const KernelContext& ctx, const Node& node, Status s) {
  if (s.ok()) return s;
  return s.with_context(cat(ctx.node_ref(node), " (", op_name(node.op), ")"));
}

// A single-member group: every collective is the identity.
bool is_identity(const Node& node) {
  return collective_group_size(node.attr<CollectiveAttrs>()) == 1;
}

Status all_reduce_kernel(const KernelContext& ctx, const Node& node,
                         std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  copy(ctx, in[0]->data(), out.data(), out.size());
  if (is_identity(node)) return ok_status();
  return with_node(ctx, node, ctx.device->comm->all_reduce(out.data(), out.size(), g.ranks));
}

Status all_gather_kernel(const KernelContext& ctx, const Node& node,
                         std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  const Tensor& x = *in[0];
  if (is_identity(node)) {
    copy(ctx, x.data(), out.data(), out.size());
    return ok_status();
  }
  Communicator& comm = *ctx.device->comm;
  const int64_t n = static_cast<int64_t>(g.ranks.size());
  const int64_t count = x.size();
  const Split s = split_at(x.shape(), node.attr<CollectiveAttrs>().dim);
  if (s.outer <= 1 || count == 0)
    return with_node(ctx, node, comm.all_gather(x.data(), count, out.data(), g.ranks));
  // Blocks [n][outer, row] -> out (outer, n, row).
  float* gathered = ctx.scratch(n * count);
  ALPA_RETURN_IF_ERROR(with_node(ctx, node, comm.all_gather(x.data(), count, gathered, g.ranks)));
  const int64_t row = count / s.outer;
  const int64_t shape[] = {s.outer, n, row};
  const int64_t strides[] = {row, count, 1};
  strided_copy(ctx, gathered, shape, strides, out.data());
  return ok_status();
}

// The input viewed as (outer, n, row) along `dim`, rearranged to [n][outer, row]; returns the
// input itself when outer is 1.
const float* chunks_contiguous(const KernelContext& ctx, const Tensor& x, int64_t dim, int64_t n) {
  const Split s = split_at(x.shape(), dim);
  if (s.outer <= 1 || x.size() == 0) return x.data();
  const int64_t row = s.extent / n * s.inner;
  float* buf = ctx.scratch(x.size());
  const int64_t shape[] = {n, s.outer, row};
  const int64_t strides[] = {row, n * row, 1};
  strided_copy(ctx, x.data(), shape, strides, buf);
  return buf;
}

Status reduce_scatter_kernel(const KernelContext& ctx, const Node& node,
                             std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  const Tensor& x = *in[0];
  if (is_identity(node)) {
    copy(ctx, x.data(), out.data(), out.size());
    return ok_status();
  }
  const int64_t n = static_cast<int64_t>(g.ranks.size());
  const float* send = chunks_contiguous(ctx, x, node.attr<CollectiveAttrs>().dim, n);
  return with_node(ctx, node,
                   ctx.device->comm->reduce_scatter(send, out.size(), out.data(), g.ranks));
}

Status all_to_all_kernel(const KernelContext& ctx, const Node& node,
                         std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  const Tensor& x = *in[0];
  if (is_identity(node)) {
    copy(ctx, x.data(), out.data(), out.size());
    return ok_status();
  }
  const auto& a = node.attr<CollectiveAttrs>();
  const int64_t n = static_cast<int64_t>(g.ranks.size());
  const int64_t block = x.size() / n;
  const float* send = chunks_contiguous(ctx, x, a.dim, n);
  // Each received block has the input's shape with dim a.dim divided by n.
  Shape block_shape = x.shape();
  block_shape[static_cast<size_t>(a.dim)] /= n;
  const Split c = split_at(block_shape, a.concat_dim);
  if (c.outer <= 1 || block == 0)
    return with_node(ctx, node, ctx.device->comm->all_to_all(send, block, out.data(), g.ranks));
  float* received = ctx.scratch(x.size());
  ALPA_RETURN_IF_ERROR(
      with_node(ctx, node, ctx.device->comm->all_to_all(send, block, received, g.ranks)));
  // Blocks [n][outer_c, row_c] -> out (outer_c, n, row_c).
  const int64_t row = block / c.outer;
  const int64_t shape[] = {c.outer, n, row};
  const int64_t strides[] = {row, block, 1};
  strided_copy(ctx, received, shape, strides, out.data());
  return ok_status();
}

Status shard_slice_kernel(const KernelContext& ctx, const Node& node,
                          std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  const Tensor& x = *in[0];
  const int64_t n = static_cast<int64_t>(g.ranks.size());
  const Split s = split_at(x.shape(), node.attr<CollectiveAttrs>().dim);
  const int64_t row = s.extent / n * s.inner;
  const int64_t shape[] = {s.outer, row};
  const int64_t strides[] = {n * row, 1};
  strided_copy(ctx, x.data() + g.position * row, shape, strides, out.data());
  return ok_status();
}

Status to_partial_kernel(const KernelContext& ctx, const Node& node,
                         std::span<const Tensor* const> in, Tensor& out) {
  ALPA_ASSIGN_OR_RETURN(CollectiveGroup g, resolve_group(ctx, node));
  if (g.position == 0)
    copy(ctx, in[0]->data(), out.data(), out.size());
  else
    fill(ctx, out.data(), out.size(), 0.0f);
  return ok_status();
}

}  // namespace

void register_collective_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kAllReduce, all_reduce_kernel);
  set_kernel(table, OpKind::kAllGather, all_gather_kernel);
  set_kernel(table, OpKind::kReduceScatter, reduce_scatter_kernel);
  set_kernel(table, OpKind::kAllToAll, all_to_all_kernel);
  set_kernel(table, OpKind::kShardSlice, shard_slice_kernel);
  set_kernel(table, OpKind::kToPartial, to_partial_kernel);
}

}  // namespace kernels
}  // namespace alpa
