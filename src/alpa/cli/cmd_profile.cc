// alpa profile: measures this machine as a cluster for the cost model — one device's SGEMM
// efficiency by the size of the product, its memory bandwidth, and the collectives of the
// threads backend (or, under mpirun with --backend mpi, of the MPI backend) — and writes a
// cluster JSON whose tables the cost model interpolates (cluster.h ProfilePoint,
// cost/compute.h, cost/collective.h).
#include <cblas.h>

#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <functional>
#include <numeric>
#include <thread>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cluster/cluster.h"
#include "alpa/runtime/blas.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/support/files.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

// Median seconds of fn() over repetitions filling about `budget_s` (at least 3).
double median_seconds(const std::function<void()>& fn, double budget_s) {
  fn();  // warm-up
  std::vector<double> t;
  const Clock::time_point start = Clock::now();
  while (t.size() < 3 || (std::chrono::duration<double>(Clock::now() - start).count() < budget_s &&
                          t.size() < 200)) {
    const Clock::time_point t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// (FLOPs, FLOP/s) of square single-thread SGEMMs.
std::vector<ProfilePoint> measure_gemm(double budget_s, std::ostream& log) {
  std::vector<ProfilePoint> out;
  for (int n : {16, 32, 64, 128, 256, 512, 1024, 2048}) {
    std::vector<float> a(static_cast<size_t>(n) * n, 0.5f), b(a.size(), 0.25f), c(a.size());
    const double s = median_seconds(
        [&] {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n,
                      b.data(), n, 0.0f, c.data(), n);
        },
        budget_s);
    const double flops = 2.0 * n * n * n;
    out.push_back({flops, flops / s});
    log << "  gemm " << n << "x" << n << "x" << n << ": " << format_fixed(flops / s / 1e9, 1)
        << " GFLOP/s\n";
  }
  return out;
}

// Bytes/s of a large elementwise add (two reads, one write per element).
double measure_memory(double budget_s) {
  const size_t n = size_t{16} << 20;  // 64 MB per array
  std::vector<float> a(n, 1.0f), b(n, 2.0f), c(n);
  const double s = median_seconds(
      [&] {
        for (size_t i = 0; i < n; ++i) c[i] = a[i] + b[i];
      },
      budget_s);
  return 3.0 * static_cast<double>(n) * sizeof(float) / s;
}

const std::vector<double> kCollectiveBytes = {4096,    65536,    262144,  1048576,
                                              4194304, 16777216, 67108864};

// Runs `op` (one collective of `bytes` as cost/collective.h counts them) on every member.
void run_collective(Communicator& c, const std::vector<int>& group, const std::string& op,
                    double bytes, std::vector<float>& in, std::vector<float>& out) {
  const int64_t n = static_cast<int64_t>(group.size());
  const int64_t floats = static_cast<int64_t>(bytes / 4);
  if (op == "all-reduce") (void)c.all_reduce(in.data(), floats, group);
  // all-gather: bytes = the gathered output; reduce-scatter and all-to-all: the input.
  if (op == "all-gather") (void)c.all_gather(in.data(), floats / n, out.data(), group);
  if (op == "reduce-scatter") (void)c.reduce_scatter(in.data(), floats / n, out.data(), group);
  if (op == "all-to-all") (void)c.all_to_all(in.data(), floats / n, out.data(), group);
}

const char* kOps[] = {"all-reduce", "all-gather", "reduce-scatter", "all-to-all"};

// The threads backend's collectives on groups of 2 and 4 (and up to max_group) threads.
std::vector<CollectiveTable> measure_threads(int max_group, std::ostream& log) {
  std::vector<CollectiveTable> out;
  for (int g = 2; g <= max_group; g *= 2) {
    ThreadWorld world(g, 600);
    std::vector<int> group(static_cast<size_t>(g));
    std::iota(group.begin(), group.end(), 0);
    for (const char* op : kOps) {
      CollectiveTable t{op, g, {}};
      for (double bytes : kCollectiveBytes) {
        const size_t floats = static_cast<size_t>(bytes / 4);
        std::vector<std::vector<float>> in(static_cast<size_t>(g), std::vector<float>(floats, 1)),
            res(static_cast<size_t>(g), std::vector<float>(floats));
        // Every member runs the same number of repetitions (a time budget per member could
        // leave one waiting for the others' next collective).
        const int reps = bytes <= 262144 ? 31 : bytes <= 4194304 ? 9 : 5;
        std::vector<double> ts;
        (void)world.run([&](int r, Communicator& c) {
          for (int k = 0; k < reps; ++k) {
            (void)c.barrier(group);
            const Clock::time_point t0 = Clock::now();
            run_collective(c, group, op, bytes, in[static_cast<size_t>(r)],
                           res[static_cast<size_t>(r)]);
            if (r == 0) ts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
          }
          return ok_status();
        });
        std::sort(ts.begin(), ts.end());
        t.points.push_back({bytes, ts[ts.size() / 2]});
      }
      log << "  threads " << op << " x" << g << ": " << format_seconds(t.points.back().y) << " at "
          << format_bytes(t.points.back().x) << "\n";
      out.push_back(std::move(t));
    }
  }
  return out;
}

// The MPI backend's collectives over the whole job (every process calls it).
Result<std::vector<CollectiveTable>> measure_mpi(MpiWorld& world, std::ostream& log) {
  std::vector<CollectiveTable> out;
  const int me = world.process_index(), g = world.size();
  std::vector<int> group(static_cast<size_t>(g));
  std::iota(group.begin(), group.end(), 0);
  Communicator& c = world.comm(me);
  for (const char* op : kOps) {
    CollectiveTable t{op, g, {}};
    for (double bytes : kCollectiveBytes) {
      const size_t floats = static_cast<size_t>(bytes / 4);
      std::vector<float> in(floats, 1), res(floats);
      // Every rank runs the same number of repetitions: a fixed count, not a time budget.
      std::vector<double> ts;
      for (int k = 0; k < 7; ++k) {
        ALPA_RETURN_IF_ERROR(c.barrier(group));
        const Clock::time_point t0 = Clock::now();
        run_collective(c, group, op, bytes, in, res);
        ts.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      }
      std::sort(ts.begin(), ts.end());
      t.points.push_back({bytes, ts[ts.size() / 2]});
    }
    log << "  mpi " << op << " x" << g << ": " << format_seconds(t.points.back().y) << " at "
        << format_bytes(t.points.back().x) << "\n";
    out.push_back(std::move(t));
  }
  return out;
}

// Sorted by x with strictly increasing x (repeated sizes keep their first time).
void tidy(std::vector<ProfilePoint>& pts) {
  std::sort(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.x < b.x; });
  pts.erase(std::unique(pts.begin(), pts.end(), [](auto& a, auto& b) { return a.x == b.x; }),
            pts.end());
  for (ProfilePoint& p : pts) p.y = std::max(p.y, 1e-9);
}

}  // namespace

int run_profile(const ProfileFlags& flags, std::ostream& out, std::ostream& err) {
  std::unique_ptr<MpiSession> mpi;
  std::unique_ptr<MpiWorld> world;
  if (flags.backend == "mpi") {
    Result<std::unique_ptr<MpiSession>> s = MpiSession::start();
    if (!s.ok()) return report_error(s.status(), false, out, err);
    mpi = std::move(s).value();
    Result<std::unique_ptr<MpiWorld>> w = MpiWorld::create(600);
    if (!w.ok()) return report_error(w.status(), false, out, err);
    world = std::move(w).value();
    if (world->size() < 2)
      return report_error(invalid_argument("--backend mpi measures collectives between ranks",
                                           "start it with mpirun -np 2 (or more)"),
                          false, out, err);
  }
  const bool root = !world || world->process_index() == 0;
  std::ostream null_stream(nullptr);
  std::ostream& log = root ? err : null_stream;
  select_blas_kernels();
  set_blas_threads(1);
  Result<Cluster> base = cluster_preset("local");
  if (!base.ok()) return report_error(base.status(), false, out, err);
  Cluster c = *base;
  c.name = flags.name;
  const int cores = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  c.devices_per_host = std::max(c.devices_per_host, cores);
  log << "alpa profile: one device = one core (" << cores << " here), "
      << (world ? cat("MPI collectives over ", world->size(), " ranks")
                : cat("threads collectives on groups up to ", flags.max_group))
      << "\n";
  std::vector<ProfilePoint> gemm = measure_gemm(flags.budget_s, log);
  double best = 0;
  for (const ProfilePoint& p : gemm) best = std::max(best, p.y);
  c.device.peak_flops_f32 = best;
  c.device.peak_flops_f16 = best;  // f16 executes as f32 here
  c.device.gemm_efficiency.clear();
  for (const ProfilePoint& p : gemm) c.device.gemm_efficiency.push_back({p.x, p.y / best});
  c.device.memory_bandwidth = measure_memory(flags.budget_s);
  log << "  memory bandwidth per core: " << format_fixed(c.device.memory_bandwidth / 1e9, 1)
      << " GB/s\n";
  if (world) {
    Result<std::vector<CollectiveTable>> t = measure_mpi(*world, log);
    if (!t.ok()) return report_error(t.status(), false, out, err);
    c.collectives = std::move(*t);
  } else {
    c.collectives = measure_threads(flags.max_group, log);
  }
  for (CollectiveTable& t : c.collectives) tidy(t.points);
  tidy(c.device.gemm_efficiency);
  // Alpha-beta for groups the tables do not cover: from the all-reduce of the smallest group.
  for (const CollectiveTable& t : c.collectives)
    if (t.collective == "all-reduce") {
      const double n = t.group, share = 2 * (n - 1) / n;
      const ProfilePoint& small = t.points.front();
      const ProfilePoint& large = t.points.back();
      c.intra_host.latency = small.y;
      c.intra_host.bandwidth = share * large.x / std::max(large.y - small.y, 1e-9);
      break;
    }
  char host[256] = "this machine";
  gethostname(host, sizeof host);
  const std::time_t now = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%d", std::gmtime(&now));
  c.source = cat("measured by `alpa profile --backend ", flags.backend, "` on ", host, ", ", date,
                 ": single-core OpenBLAS SGEMM (best ", format_fixed(best / 1e9, 1),
                 " GFLOP/s) and its efficiency by FLOPs, memory bandwidth, ", flags.backend,
                 " collectives; memory and inter-host link from the local preset");
  if (Status s = validate_cluster(c); !s.ok()) return report_error(s, false, out, err);
  if (!root) return kExitOk;
  const std::string json = cluster_to_json(c);
  if (flags.out_path.empty()) {
    out << json;
  } else {
    Status s = write_file(flags.out_path, json);
    if (!s.ok()) return report_error(s, false, out, err);
    log << "wrote " << flags.out_path << " (use it as --cluster " << flags.out_path << ")\n";
  }
  return kExitOk;
}

}  // namespace alpa
