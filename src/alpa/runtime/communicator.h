// Communicator: collective and point-to-point communication among the ranks (devices) of one
// job. The backend interface: the threads backend (threads_communicator.h) is the reference
// implementation; MPI and NCCL backends implement the same interface and pass the same tests.
//
// Contract every backend keeps:
// - A group is an ordered list of distinct ranks that contains the caller; a member's position
//   is its index in the list. Every member calls the same collective with the same group and
//   count, and the members of a group issue their collectives on it in the same order. Different
//   groups (even overlapping ones, from different threads) may run concurrently.
// - Buffers are fp32 and contiguous; counts are element counts per block (count 0 is valid).
//   `in` and `out` of one call must not overlap (all_reduce works in place on `data`).
// - Reductions sum in group order, (((b_0 + b_1) + b_2) + ...), and every member receives the
//   same bits.
// - Errors come back as a Status, never as a hang or an abort: a group or count that members
//   disagree on, a peer that failed ("rank 2 failed: ..."), a wait longer than the backend's
//   timeout. After a peer failed, every later call fails too.
//
// Not a scheduler: it moves data, it does not decide which collective to run (SPMD lowering's
// reshard() does). Not thread-safe per rank: one thread issues a rank's calls at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "alpa/support/status.h"

namespace alpa {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // data[0:count] = sum over members of their data[0:count], in place.
  virtual Status all_reduce(float* data, int64_t count, std::span<const int> group) = 0;
  // out[i*count : (i+1)*count] = member i's in[0:count]; out holds group.size()*count.
  virtual Status all_gather(const float* in, int64_t count, float* out,
                            std::span<const int> group) = 0;
  // in holds group.size()*count; out[0:count] = sum over members of their block at my position.
  virtual Status reduce_scatter(const float* in, int64_t count, float* out,
                                std::span<const int> group) = 0;
  // in and out hold group.size()*count: block j of my in goes to member j; block i of my out
  // comes from member i (its block at my position).
  virtual Status all_to_all(const float* in, int64_t count, float* out,
                            std::span<const int> group) = 0;
  // Messages between one (src, dst, tag) are received in the order they were sent; the count
  // of a send and its recv must agree.
  virtual Status send(const float* data, int64_t count, int dst, int tag) = 0;
  virtual Status recv(float* data, int64_t count, int src, int tag) = 0;
  // Returns once every member of the group has called it.
  virtual Status barrier(std::span<const int> group) = 0;
};

// "[0,1,3]": a group in error messages.
std::string group_to_string(std::span<const int> group);

}  // namespace alpa
