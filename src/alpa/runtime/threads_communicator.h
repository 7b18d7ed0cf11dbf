// ThreadWorld: the threads backend of Communicator (communicator.h), the embedded default and
// the reference implementation. `size` ranks live in one process, one thread each; collectives
// go through shared memory with no launcher and no copies through a central buffer.
//
// How a collective runs: each member publishes pointers to its buffers in its slot of a
// per-group record and arrives at the group's barrier (brief spinning, then a condition
// variable). Then every rank reads its peers' buffers directly: all_gather / all_to_all copy
// their blocks; reduce_scatter sums its own block over the members; all_reduce has each member
// reduce one 64-byte-aligned chunk in place (summing b_0 + b_1 + ... in member order), a second
// barrier, then each member copies the other chunks from their owners (a small all_reduce,
// up to 8K floats, instead has every member sum the whole buffer into private scratch, in the
// same order, and skips the middle barrier). A final barrier keeps every buffer alive until
// all peers have read it. So every member gets the same bits, a large all_reduce reads each
// element about twice and writes it once per rank, and different groups (rows and columns of
// a mesh) run concurrently on their own records.
//
// Failures: a rank whose function returns an error (run()), or a wait that lasts longer than
// `timeout_s`, aborts the world. Every pending wait wakes and every later call fails with
// "rank R failed: <its error>". Only the first barrier of a collective can fail: once every
// member has arrived, the collective completes (members only copy and add from then on), so
// no buffer is released while a peer still reads it.
//
// Point to point: send copies straight into the receiver's buffer when its recv is already
// posted, otherwise into a queued message (send never waits for the receiver).
//
// Not a process launcher (that is MPI's job) and not thread-safe per rank: one thread issues
// a rank's calls at a time. run() starts from a clean world (it clears a previous failure), so
// one ThreadWorld serves many steps; do not call reset() or run() while threads started
// outside run() are inside a call.
#pragma once

#include <functional>
#include <memory>

#include "alpa/runtime/communicator.h"
#include "alpa/runtime/world.h"
#include "alpa/support/status.h"

namespace alpa {

class ThreadWorld : public World {
 public:
  // size >= 1 ranks (CHECK); timeout_s > 0 bounds every wait for peers.
  explicit ThreadWorld(int size, double timeout_s = 60);
  ~ThreadWorld();
  ThreadWorld(const ThreadWorld&) = delete;
  ThreadWorld& operator=(const ThreadWorld&) = delete;

  int size() const override;
  double timeout_s() const override;
  std::vector<int> local_ranks() const override;

  // The communicator of `rank` (0 <= rank < size, CHECK); valid as long as the world.
  Communicator& comm(int rank) override;

  // Clears any previous failure and group state, runs fn(rank, comm(rank)) for every rank on
  // its own thread (rank 0 on the caller's) and joins them. If a rank returns an error (or
  // throws), the world aborts and run() returns the first failure as "rank R: <error>".
  Status run(const std::function<Status(int rank, Communicator& comm)>& fn) override;

  // Aborts the world because `rank` failed with `cause` (ignored if already aborted): what
  // run() does when a rank returns an error; for callers that drive ranks on their own threads.
  void abort(int rank, const Status& cause);
  // The first failure ("rank R: <error>"), or OK if the world has not aborted.
  Status failure() const;
  // Clears a failure and all group and mailbox state; no rank may be inside a call.
  void reset();

  struct State;

 private:
  std::unique_ptr<State> state_;
};

}  // namespace alpa
