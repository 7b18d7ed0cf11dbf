// ThreadPool: a fixed set of worker threads for data-parallel loops inside one device.
// run_side_by_side: independent coarse jobs (stage solves, plans to simulate) on a few threads.
//
// parallel_for splits [0, n) into contiguous chunks, one per thread, so a loop's partition
// depends only on n and the thread count: results are deterministic for a fixed pool size.
// A pool of size 1 runs everything on the calling thread. Not for nested use: a body must not
// call parallel_for on the same pool.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alpa {

// `threads` if positive, else the hardware's threads, at most 4: how many planning or
// simulation jobs run side by side by default.
int side_by_side_threads(int threads);

// Calls job(i) for every i in [0, n) on at most `threads` threads, the caller's among them,
// each taking the next index when it is done with one (jobs of uneven length balance). Jobs
// must not depend on each other's order; results go where job(i) puts them.
void run_side_by_side(size_t n, int threads, const std::function<void(size_t)>& job);

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Calls body(begin, end) on disjoint chunks covering [0, n). Chunks are at least `grain`
  // long, so small loops stay on the calling thread.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& body);

 private:
  void worker_loop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_start_;
  std::condition_variable cv_done_;
  const std::function<void(int64_t, int64_t)>* body_ = nullptr;
  int64_t n_ = 0;
  int chunks_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace alpa
