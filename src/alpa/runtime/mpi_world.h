// MpiWorld: the Open MPI backend of World and Communicator. One rank per process, launched by
// `mpirun -np N alpa ...` on one host or many (a hostfile); rank r of MPI_COMM_WORLD is
// device r of the job.
//
// Collectives run on one MPI communicator per group. The mesh-axis groups of a runner's meshes
// are made up front with MPI_Comm_split (prepare_groups, one call per axis, every process
// taking part); a group nobody prepared is made on first use with MPI_Comm_create_group, which
// only its members call (the other processes need not stop). Reductions keep the Communicator
// contract: every member sums the blocks in group order (((b_0 + b_1) + b_2) + ...) from an
// MPI_Alltoall(v), then the sums are shared with MPI_Allgather(v) - the same bits as the
// threads backend, so a plan gives identical numbers on both. (MPI_Allreduce leaves the order to
// the library; bench/mpi_collectives measures what the fixed order costs.)
//
// Point to point: send copies the data and posts MPI_Isend, so a send never waits for its
// receiver (pipeline stages send activations and gradients to each other at the same time);
// recv is MPI_Recv and checks the count.
//
// Failures: MPI calls return errors (MPI_ERRORS_RETURN) that become a Status. A wait has no
// way back once MPI is blocked in it, so a watchdog thread bounds every blocking call: past
// timeout_s it prints "alpa: rank R: no progress for T s in <call> over ranks [...]" and aborts
// the whole job (MPI_Abort), and mpirun ends every rank with a non-zero exit. A rank that dies
// (a crash, SIGKILL) is noticed by mpirun itself, which ends the job.
//
// Not thread-safe per rank (one thread issues a rank's calls), like every Communicator.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "alpa/runtime/world.h"

namespace alpa {

// MPI for the life of the process: MPI_Init_thread (MPI_THREAD_MULTIPLE, which the watchdog
// needs to abort from its own thread) at start, MPI_Finalize at exit.
class MpiSession {
 public:
  static Result<std::unique_ptr<MpiSession>> start();
  ~MpiSession();
  int rank() const { return rank_; }
  int size() const { return size_; }
  // Ends every rank of the job with exit code `code` (MPI_Abort).
  [[noreturn]] static void abort_job(int code);
  // True when this process was started by mpirun (Open MPI's or MPICH's environment).
  static bool launched_by_mpirun();

 private:
  MpiSession() = default;
  int rank_ = 0, size_ = 1;
};

// This process's host name (MPI's processor name once MPI is started), for messages.
std::string this_host_name();

class MpiWorld : public World {
 public:
  // MPI must have been started (MpiSession). timeout_s > 0 bounds every blocking call.
  static Result<std::unique_ptr<MpiWorld>> create(double timeout_s);
  ~MpiWorld() override;

  int size() const override;
  double timeout_s() const override;
  std::vector<int> local_ranks() const override;
  Communicator& comm(int rank) override;
  Status run(const std::function<Status(int rank, Communicator& comm)>& fn) override;

  int num_processes() const override { return size(); }
  int process_index() const override;
  int process_of(int rank) const override { return rank; }
  Result<std::vector<std::string>> gather_bytes(std::string mine, int root) override;
  Status broadcast_bytes(std::string& bytes, int root) override;
  Status prepare_groups(const std::vector<std::vector<int>>& groups) override;

  // (World: rank 0 planning while the others wait for its plan.)
  void set_next_wait_limit(double seconds) override;

  struct State;

 private:
  MpiWorld() = default;
  std::unique_ptr<State> state_;
};

}  // namespace alpa
