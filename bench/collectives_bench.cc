// Collective bandwidth of the communicator backends: all_reduce, all_gather, reduce_scatter
// and all_to_all over the whole job, 4 KiB to 64 MiB per rank, against a raw in-place
// MPI_Allreduce (MPI_FLOAT, MPI_SUM) of the same size. Driven by bench/collectives.py.
//
//   collectives_bench --backend threads --ranks 4     (one process, 4 threads)
//   mpirun -np 4 collectives_bench --backend mpi      (4 processes; also raw MPI_Allreduce)
//
// Prints one JSON object per (op, bytes): median seconds over the repetitions, the slowest
// rank's time per repetition.
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <numeric>
#include <string>
#include <vector>

#include "alpa/runtime/mpi_world.h"
#include "alpa/runtime/threads_communicator.h"

namespace {

using Clock = std::chrono::steady_clock;
const std::vector<int64_t> kBytes = {4 << 10, 256 << 10, 4 << 20, 16 << 20, 64 << 20};

int reps_for(int64_t bytes) {
  return bytes <= (256 << 10) ? 50 : bytes <= (4 << 20) ? 10 : 5;
}

struct Buffers {
  std::vector<float> a, b;
  explicit Buffers(int64_t n, int ranks) : a(static_cast<size_t>(n) * ranks, 1.0f), b(a.size()) {}
};

// Times `fn` (a collective every rank calls) and returns the median over repetitions.
double median_time(int reps, const std::function<void()>& fn, const std::function<void()>& sync) {
  std::vector<double> t;
  fn();  // warm-up
  for (int r = 0; r < reps; ++r) {
    sync();
    const auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void print(const char* backend, int ranks, const char* op, int64_t bytes, double s) {
  std::printf("{\"backend\":\"%s\",\"ranks\":%d,\"op\":\"%s\",\"bytes\":%lld,\"seconds\":%.9g}\n",
              backend, ranks, op, static_cast<long long>(bytes), s);
  std::fflush(stdout);
}

// The four collectives on a communicator, block size `n` floats per member.
void run_ops(alpa::Communicator& c, const std::vector<int>& group, int64_t n, Buffers& buf,
             const char* op) {
  if (!std::strcmp(op, "all_reduce")) (void)c.all_reduce(buf.a.data(), n, group);
  // Per-rank message = n floats: gather and scatter move n / size per member block.
  const int64_t block = n / static_cast<int64_t>(group.size());
  if (!std::strcmp(op, "all_gather")) (void)c.all_gather(buf.a.data(), block, buf.b.data(), group);
  if (!std::strcmp(op, "reduce_scatter"))
    (void)c.reduce_scatter(buf.a.data(), block, buf.b.data(), group);
  if (!std::strcmp(op, "all_to_all")) (void)c.all_to_all(buf.a.data(), block, buf.b.data(), group);
}

const char* kOps[] = {"all_reduce", "all_gather", "reduce_scatter", "all_to_all"};

}  // namespace

int main(int argc, char** argv) {
  std::string backend = "threads";
  int ranks = 2;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--backend")) backend = argv[i + 1];
    if (!std::strcmp(argv[i], "--ranks")) ranks = std::atoi(argv[i + 1]);
  }
  if (backend == "threads") {
    alpa::ThreadWorld world(ranks, 600);
    std::vector<int> group(static_cast<size_t>(ranks));
    std::iota(group.begin(), group.end(), 0);
    for (const char* op : kOps)
      for (int64_t bytes : kBytes) {
        const int64_t n = bytes / 4;
        std::vector<Buffers> buf;
        for (int r = 0; r < ranks; ++r) buf.emplace_back(n, 1);
        // Every rank repeats the collective inside one run (threads start once); rank 0's
        // median is reported (a barrier before each repetition lines the ranks up).
        double t0_median = 0;
        (void)world.run([&](int r, alpa::Communicator& c) {
          const double t = median_time(
              reps_for(bytes), [&] { run_ops(c, group, n, buf[static_cast<size_t>(r)], op); },
              [&] { (void)c.barrier(group); });
          if (r == 0) t0_median = t;
          return alpa::ok_status();
        });
        print("threads", ranks, op, bytes, t0_median);
      }
    return 0;
  }
  auto session = alpa::MpiSession::start();
  if (!session.ok()) return 1;
  auto world = alpa::MpiWorld::create(600);
  if (!world.ok()) return 1;
  const int me = (*session)->rank();
  ranks = (*session)->size();
  alpa::Communicator& c = (*world)->comm(me);
  std::vector<int> group(static_cast<size_t>(ranks));
  std::iota(group.begin(), group.end(), 0);
  auto sync = [] { MPI_Barrier(MPI_COMM_WORLD); };
  for (int64_t bytes : kBytes) {
    const int64_t n = bytes / 4;
    Buffers buf(n, 1);
    double t = median_time(
        reps_for(bytes),
        [&] {
          MPI_Allreduce(MPI_IN_PLACE, buf.a.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM,
                        MPI_COMM_WORLD);
        },
        sync);
    double worst = 0;
    MPI_Reduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (me == 0) print("raw MPI_Allreduce", ranks, "all_reduce", bytes, worst);
  }
  for (const char* op : kOps)
    for (int64_t bytes : kBytes) {
      const int64_t n = bytes / 4;
      Buffers buf(n, 1);
      double t = median_time(
          reps_for(bytes), [&] { run_ops(c, group, n, buf, op); }, sync);
      double worst = 0;
      MPI_Reduce(&t, &worst, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
      if (me == 0) print("mpi", ranks, op, bytes, worst);
    }
  world->reset();
  return 0;
}
