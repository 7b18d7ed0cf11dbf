// Carrying out a cross-mesh transfer plan (sharding/cross_mesh.h) over a Communicator.
//
// Every rank of src ∪ dst takes part: all ranks send first, then receive. That relies on sends
// that do not wait for the receiver: the threads backend queues them; the MPI backend uses
// buffered nonblocking sends (MPI_Isend) for the same pattern, or it could deadlock. One tag
// per plan keeps messages between one (src, dst) pair in plan order on both sides. A rank that
// is in both meshes and "sends" to itself copies locally, without the communicator.
#pragma once

#include "alpa/runtime/communicator.h"
#include "alpa/runtime/tensor.h"
#include "alpa/sharding/cross_mesh.h"
#include "alpa/support/status.h"

namespace alpa {

// Sends every transfer whose src_rank == my_rank and dst_rank != my_rank, cut out of `local`
// (this rank's block under plan.src_spec; its offset follows from its coordinates in plan.src).
// Does not wait for receivers (see the header comment). Errors: `local` has the wrong shape,
// my_rank is not in plan.src but has transfers, or a communicator error.
Status send_cross_mesh(const CrossMeshPlan& plan, int my_rank, const Tensor& local,
                       Communicator& comm, int tag);

// Receives every transfer whose dst_rank == my_rank into a new block under plan.receive_spec
// (shape receive_spec.local_shape(shape, dst.shape); fp32 storage, type f32: set the dtype
// with Tensor::set_type if it is another), checking that the boxes tile it exactly once.
// Self-transfers (src_rank == dst_rank == my_rank) are copied from `local_src`, this rank's
// block under plan.src_spec, which must then be given. Errors: my_rank not in plan.dst, boxes
// outside the block, gaps or overlaps, a missing local_src, or a communicator error.
Result<Tensor> recv_cross_mesh(const CrossMeshPlan& plan, int my_rank, Communicator& comm, int tag,
                               const Tensor* local_src = nullptr);

}  // namespace alpa
