// ThreadPool: a fixed set of worker threads for data-parallel loops inside one device.
//
// parallel_for splits [0, n) into contiguous chunks, one per thread, so a loop's partition
// depends only on n and the thread count: results are deterministic for a fixed pool size.
// A pool of size 1 runs everything on the calling thread. Not for nested use: a body must not
// call parallel_for on the same pool.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alpa {

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
