// World: where a job's ranks (devices) run, and how the processes of the job talk outside
// the device programs. Two backends:
// - ThreadWorld (threads_communicator.h): every rank on a thread of this one process.
// - MpiWorld (mpi_world.h): one rank per process, launched by `mpirun`, on one or many hosts.
// Runners (SpmdRunner, PipelineRunner) take a World and build state only for its local ranks,
// so the same runner code serves both.
//
// Process-level calls (gather_bytes, broadcast_bytes, prepare_groups, process_barrier) are
// made by one thread per process, outside run(), in the same order on every process; with one
// process they return at once.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <vector>

#include "alpa/runtime/communicator.h"
#include "alpa/support/status.h"

namespace alpa {

class World {
 public:
  virtual ~World() = default;

  virtual int size() const = 0;          // ranks in the job
  virtual double timeout_s() const = 0;  // longest wait for a peer
  // The ranks this process runs, ascending (all of them for threads; one under MPI).
  virtual std::vector<int> local_ranks() const = 0;
  bool is_local(int rank) const;
  // The communicator of a local rank (CHECK).
  virtual Communicator& comm(int rank) = 0;
  // Runs fn(rank, comm(rank)) for every local rank and returns the first failure as
  // "rank R: <error>".
  virtual Status run(const std::function<Status(int rank, Communicator& comm)>& fn) = 0;

  // Processes in the job and this one's index (process p runs local_ranks()).
  virtual int num_processes() const { return 1; }
  virtual int process_index() const { return 0; }
  virtual int process_of(int rank) const { return 0 * rank; }
  // Every process's `mine`, in process order, at process `root` (empty elsewhere).
  virtual Result<std::vector<std::string>> gather_bytes(std::string mine, int root);
  // Process `root`'s bytes, on every process.
  virtual Status broadcast_bytes(std::string& bytes, int root);
  // Makes collectives on these groups (world ranks; disjoint) fast to start: under MPI one
  // MPI_Comm_split per call. Every process calls it with the same list.
  virtual Status prepare_groups(const std::vector<std::vector<int>>& groups);
  // Bounds the next broadcast_bytes / gather_bytes wait by `seconds` instead of timeout_s
  // (a process idle until another has work for it); a no-op where waits are not bounded.
  virtual void set_next_wait_limit(double seconds) { (void)seconds; }
};

}  // namespace alpa
