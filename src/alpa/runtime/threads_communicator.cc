#include "alpa/runtime/threads_communicator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

enum class CollOp : int { kAllReduce, kAllGather, kReduceScatter, kAllToAll, kBarrier };

const char* coll_name(CollOp op) {
  switch (op) {
    case CollOp::kAllReduce: return "all_reduce";
    case CollOp::kAllGather: return "all_gather";
    case CollOp::kReduceScatter: return "reduce_scatter";
    case CollOp::kAllToAll: return "all_to_all";
    case CollOp::kBarrier: return "barrier";
  }
  return "?";
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Spins before blocking: a peer that arrives within a few microseconds costs no wake-up.
constexpr int kSpins = 512;
constexpr int kYields = 8;

// An all_reduce of at most this many floats has every member sum the whole buffer into
// private scratch: one barrier fewer, which is what small reductions (a loss, a norm) cost.
constexpr int64_t kSmallAllReduce = 8192;

// What one member published for the current call on a group.
struct Slot {
  std::atomic<int64_t> calls{0};  // calls this member has entered on the group
  CollOp op = CollOp::kBarrier;
  int64_t count = 0;
  const float* in = nullptr;
  float* out = nullptr;
};

// The shared record of one group (an ordered list of ranks).
struct Group {
  explicit Group(std::vector<int> r)
      : ranks(std::move(r)), n(static_cast<int>(ranks.size())), slots(ranks.size()) {}
  std::vector<int> ranks;
  int n;
  // Barrier state: generation << 32 | members arrived in this generation.
  std::atomic<uint64_t> state{0};
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Slot> slots;
};

// Messages from one rank to another with one tag, in order.
struct Mailbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<float>> queued;
  float* posted = nullptr;  // a waiting recv's buffer
  int64_t posted_count = 0;
  bool delivered = false;
  Status posted_error;  // set by a send whose count does not match the posted recv
};

// Chunk k of [0, count) split into n parts at multiples of 16 floats (64 bytes), so that
// members writing neighbouring chunks do not share cache lines.
int64_t chunk_begin(int64_t count, int n, int k) {
  if (k >= n) return count;
  const int64_t b = (count * k / n + 15) / 16 * 16;
  return std::min(b, count);
}

// dst[0:len] = ((src[0] + src[1]) + src[2]) + ... elementwise, through an L1-sized
// accumulator so dst may alias any src.
void sum_in_order(const float* const* src, int n, float* dst, int64_t len) {
  constexpr int64_t kBlock = 2048;
  alignas(64) float acc[kBlock];
  for (int64_t off = 0; off < len; off += kBlock) {
    const int64_t m = std::min(kBlock, len - off);
    const float* s0 = src[0] + off;
    if (n == 1) {
      std::memcpy(acc, s0, static_cast<size_t>(m) * sizeof(float));
    } else {
      const float* s1 = src[1] + off;
      for (int64_t i = 0; i < m; ++i) acc[i] = s0[i] + s1[i];
    }
    for (int j = 2; j < n; ++j) {
      const float* sj = src[j] + off;
      for (int64_t i = 0; i < m; ++i) acc[i] += sj[i];
    }
    std::memcpy(dst + off, acc, static_cast<size_t>(m) * sizeof(float));
  }
}

class ThreadComm;

}  // namespace

struct ThreadWorld::State {
  int size = 0;
  double timeout_s = 60;
  std::atomic<bool> aborted{false};
  mutable std::mutex mu;  // guards everything below
  int failed_rank = -1;
  Status cause;
  std::map<std::vector<int>, std::unique_ptr<Group>> groups;
  std::map<std::tuple<int, int, int>, std::unique_ptr<Mailbox>> mailboxes;
  std::vector<std::unique_ptr<ThreadComm>> comms;

  Clock::time_point deadline() const {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  }

  // The error every call returns once the world has aborted.
  Status failure_for_peers() const {
    std::lock_guard<std::mutex> lock(mu);
    return failed_precondition(cat("rank ", failed_rank, " failed: ", cause.message()),
                               cause.hint());
  }

  void abort(int rank, const Status& why) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (aborted.load()) return;
      failed_rank = rank;
      cause = why;
      aborted.store(true);
    }
    // Wake every waiter (lock order: world, then group / mailbox).
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [key, g] : groups) {
      { std::lock_guard<std::mutex> l(g->mu); }
      g->cv.notify_all();
    }
    for (auto& [key, m] : mailboxes) {
      { std::lock_guard<std::mutex> l(m->mu); }
      m->cv.notify_all();
    }
  }

  Group* group(std::span<const int> ranks) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<int> key(ranks.begin(), ranks.end());
    auto it = groups.find(key);
    if (it == groups.end()) it = groups.emplace(key, std::make_unique<Group>(key)).first;
    return it->second.get();
  }

  Mailbox* mailbox(int src, int dst, int tag) {
    std::lock_guard<std::mutex> lock(mu);
    std::unique_ptr<Mailbox>& m = mailboxes[{src, dst, tag}];
    if (m == nullptr) m = std::make_unique<Mailbox>();
    return m.get();
  }
};

namespace {

class ThreadComm final : public Communicator {
 public:
  ThreadComm(ThreadWorld::State* world, int rank) : world_(world), rank_(rank) {}

  int rank() const override { return rank_; }
  int size() const override { return world_->size; }

  Status all_reduce(float* data, int64_t count, std::span<const int> group) override {
    return collective(CollOp::kAllReduce, data, data, count, group);
  }
  Status all_gather(const float* in, int64_t count, float* out,
                    std::span<const int> group) override {
    return collective(CollOp::kAllGather, in, out, count, group);
  }
  Status reduce_scatter(const float* in, int64_t count, float* out,
                        std::span<const int> group) override {
    return collective(CollOp::kReduceScatter, in, out, count, group);
  }
  Status all_to_all(const float* in, int64_t count, float* out,
                    std::span<const int> group) override {
    return collective(CollOp::kAllToAll, in, out, count, group);
  }
  Status barrier(std::span<const int> group) override {
    return collective(CollOp::kBarrier, nullptr, nullptr, 0, group);
  }
  Status send(const float* data, int64_t count, int dst, int tag) override;
  Status recv(float* data, int64_t count, int src, int tag) override;

  void clear_cache() { cache_.clear(); }

 private:
  struct Member {
    std::vector<int> ranks;
    Group* group;
    int position;
  };

  Status collective(CollOp op, const float* in, float* out, int64_t count,
                    std::span<const int> group);
  Result<const Member*> member_of(std::span<const int> group, CollOp op);
  // Arrives at g's barrier and waits for the other members. The entry barrier of a call gives
  // up on abort or timeout (withdrawing its arrival unless the barrier completed meanwhile);
  // later barriers wait unconditionally: every member is past the entry and will arrive.
  Status arrive(Group& g, bool entry, CollOp op, int position);
  Status check_peer(int peer, const char* what) const;

  ThreadWorld::State* world_;
  int rank_;
  std::vector<Member> cache_;  // groups this rank has used, validated
  std::vector<float> small_;   // result of a small all_reduce until its last barrier
};

Result<const ThreadComm::Member*> ThreadComm::member_of(std::span<const int> group, CollOp op) {
  for (const Member& m : cache_)
    if (std::equal(m.ranks.begin(), m.ranks.end(), group.begin(), group.end())) return &m;
  const int n = static_cast<int>(group.size());
  int position = -1;
  for (int i = 0; i < n; ++i) {
    const int r = group[static_cast<size_t>(i)];
    if (r < 0 || r >= world_->size)
      return invalid_argument(cat(coll_name(op), " group ", group_to_string(group), " names rank ",
                                  r, ", outside a world of ", world_->size, " ranks"));
    for (int j = 0; j < i; ++j)
      if (group[static_cast<size_t>(j)] == r)
        return invalid_argument(
            cat(coll_name(op), " group ", group_to_string(group), " lists rank ", r, " twice"));
    if (r == rank_) position = i;
  }
  if (position < 0)
    return invalid_argument(cat(coll_name(op), " on rank ", rank_, ": group ",
                                group_to_string(group), " does not contain the caller"),
                            "every member calls a collective with a group that contains it");
  cache_.push_back(Member{{group.begin(), group.end()}, world_->group(group), position});
  return &cache_.back();
}

Status ThreadComm::arrive(Group& g, bool entry, CollOp op, int position) {
  const uint64_t n = static_cast<uint64_t>(g.n);
  uint64_t s = g.state.load(std::memory_order_acquire);
  uint64_t gen;
  for (;;) {
    gen = s >> 32;
    const uint64_t arrived = (s & 0xffffffffu) + 1;
    const uint64_t next = arrived == n ? (gen + 1) << 32 : s + 1;
    if (g.state.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
      if (arrived == n) {
        { std::lock_guard<std::mutex> lock(g.mu); }
        g.cv.notify_all();
        return ok_status();
      }
      break;
    }
  }
  auto passed = [&] { return (g.state.load(std::memory_order_acquire) >> 32) != gen; };
  for (int i = 0; i < kSpins; ++i) {
    if (passed()) return ok_status();
    cpu_relax();
  }
  for (int i = 0; i < kYields; ++i) {
    if (passed()) return ok_status();
    std::this_thread::yield();
  }
  const Clock::time_point deadline = world_->deadline();
  std::unique_lock<std::mutex> lock(g.mu);
  for (;;) {
    if (passed()) return ok_status();
    if (entry) {
      const bool aborted = world_->aborted.load();
      if (aborted || Clock::now() >= deadline) {
        // Withdraw, unless the last member arrived meanwhile (then the call goes on).
        uint64_t cur = g.state.load(std::memory_order_acquire);
        for (;;) {
          if ((cur >> 32) != gen) return ok_status();
          if (g.state.compare_exchange_weak(cur, cur - 1, std::memory_order_acq_rel,
                                            std::memory_order_acquire))
            break;
        }
        lock.unlock();
        if (aborted) return world_->failure_for_peers();
        const int64_t mine = g.slots[static_cast<size_t>(position)].calls.load();
        std::string missing;
        for (int i = 0; i < g.n; ++i)
          if (g.slots[static_cast<size_t>(i)].calls.load() < mine) {
            if (!missing.empty()) missing += ", ";
            missing += std::to_string(g.ranks[static_cast<size_t>(i)]);
          }
        missing = missing.empty() ? "the other members (called with another group?)"
                                  : "rank(s) " + missing;
        Status timeout = failed_precondition(
            cat(coll_name(op), " on group ", group_to_string(g.ranks), " timed out after ",
                world_->timeout_s, " s waiting for ", missing),
            "every member of a group must issue the same collectives in the same order");
        world_->abort(rank_, timeout);
        return timeout.with_context(cat("rank ", rank_));
      }
      g.cv.wait_until(lock, deadline);
    } else {
      g.cv.wait(lock);
    }
  }
}

Status ThreadComm::collective(CollOp op, const float* in, float* out, int64_t count,
                              std::span<const int> group) {
  if (world_->aborted.load()) return world_->failure_for_peers();
  if (count < 0) return invalid_argument(cat(coll_name(op), " with negative count ", count));
  if (group.size() == 1 && group[0] == rank_) {
    // A group of one: nothing to wait for.
    const size_t bytes = static_cast<size_t>(count) * sizeof(float);
    if (op != CollOp::kAllReduce && op != CollOp::kBarrier && in != out && count > 0)
      std::memcpy(out, in, bytes);
    return ok_status();
  }
  ALPA_ASSIGN_OR_RETURN(const Member* member, member_of(group, op));
  Group& g = *member->group;
  const int n = g.n;
  const int p = member->position;
  Slot& me = g.slots[static_cast<size_t>(p)];
  me.op = op;
  me.count = count;
  me.in = in;
  me.out = out;
  me.calls.fetch_add(1, std::memory_order_release);
  ALPA_RETURN_IF_ERROR(arrive(g, /*entry=*/true, op, p));

  // Every member reads the same slots, so all agree on whether the call matches.
  Status agreed;
  for (int i = 0; i < n && agreed.ok(); ++i) {
    const Slot& s = g.slots[static_cast<size_t>(i)];
    if (s.op != g.slots[0].op || s.count != g.slots[0].count)
      agreed = invalid_argument(
          cat("collective mismatch on group ", group_to_string(g.ranks), ": rank ", g.ranks[0],
              " called ", coll_name(g.slots[0].op), " with count ", g.slots[0].count, ", rank ",
              g.ranks[static_cast<size_t>(i)], " called ", coll_name(s.op), " with count ",
              s.count),
          "every member must call the same collective with the same count, in the same order");
  }
  const size_t bytes = static_cast<size_t>(count) * sizeof(float);
  // Members agree on count, so they all take the same path (and pass the same barriers).
  const bool small = op == CollOp::kAllReduce && count <= kSmallAllReduce;
  if (agreed.ok() && count > 0) {
    switch (op) {
      case CollOp::kAllReduce: {
        std::vector<const float*> src(static_cast<size_t>(n));
        if (small) {
          // Every member sums the whole buffer into its scratch; copied out after the last
          // barrier, once no peer reads this buffer any more.
          for (int i = 0; i < n; ++i)
            src[static_cast<size_t>(i)] = g.slots[static_cast<size_t>(i)].out;
          small_.resize(static_cast<size_t>(count));
          sum_in_order(src.data(), n, small_.data(), count);
          break;
        }
        // Reduce my chunk in place from every member's buffer, then fetch the others' chunks.
        const int64_t b = chunk_begin(count, n, p), e = chunk_begin(count, n, p + 1);
        for (int i = 0; i < n; ++i)
          src[static_cast<size_t>(i)] = g.slots[static_cast<size_t>(i)].out + b;
        sum_in_order(src.data(), n, out + b, e - b);
        (void)arrive(g, /*entry=*/false, op, p);
        for (int i = 0; i < n; ++i) {
          if (i == p) continue;
          const int64_t bi = chunk_begin(count, n, i), ei = chunk_begin(count, n, i + 1);
          if (ei > bi)
            std::memcpy(out + bi, g.slots[static_cast<size_t>(i)].out + bi,
                        static_cast<size_t>(ei - bi) * sizeof(float));
        }
        break;
      }
      case CollOp::kAllGather:
        for (int i = 0; i < n; ++i)
          std::memcpy(out + i * count, g.slots[static_cast<size_t>(i)].in, bytes);
        break;
      case CollOp::kReduceScatter: {
        std::vector<const float*> src(static_cast<size_t>(n));
        for (int i = 0; i < n; ++i)
          src[static_cast<size_t>(i)] = g.slots[static_cast<size_t>(i)].in + p * count;
        sum_in_order(src.data(), n, out, count);
        break;
      }
      case CollOp::kAllToAll:
        for (int i = 0; i < n; ++i)
          std::memcpy(out + i * count, g.slots[static_cast<size_t>(i)].in + p * count, bytes);
        break;
      case CollOp::kBarrier: break;
    }
  }
  // Keep my buffers alive until every member is done reading them.
  (void)arrive(g, /*entry=*/false, op, p);
  if (agreed.ok() && small && count > 0) std::memcpy(out, small_.data(), bytes);
  return agreed;
}

Status ThreadComm::check_peer(int peer, const char* what) const {
  if (peer < 0 || peer >= world_->size)
    return invalid_argument(cat(what, " on rank ", rank_, " names rank ", peer,
                                ", outside a world of ", world_->size, " ranks"));
  return ok_status();
}

Status ThreadComm::send(const float* data, int64_t count, int dst, int tag) {
  ALPA_RETURN_IF_ERROR(check_peer(dst, "send"));
  if (count < 0) return invalid_argument(cat("send with negative count ", count));
  if (world_->aborted.load()) return world_->failure_for_peers();
  Mailbox& m = *world_->mailbox(rank_, dst, tag);
  std::lock_guard<std::mutex> lock(m.mu);
  if (m.posted != nullptr && m.queued.empty()) {
    Status s;
    if (m.posted_count != count) {
      s = invalid_argument(cat("send from rank ", rank_, " to rank ", dst, " tag ", tag, " has ",
                               count, " floats, but the recv expects ", m.posted_count));
      m.posted_error = s;
    } else if (count > 0) {
      std::memcpy(m.posted, data, static_cast<size_t>(count) * sizeof(float));
    }
    m.posted = nullptr;
    m.delivered = true;
    m.cv.notify_all();
    return s;
  }
  m.queued.emplace_back(data, data + count);
  return ok_status();
}

Status ThreadComm::recv(float* data, int64_t count, int src, int tag) {
  ALPA_RETURN_IF_ERROR(check_peer(src, "recv"));
  if (count < 0) return invalid_argument(cat("recv with negative count ", count));
  if (world_->aborted.load()) return world_->failure_for_peers();
  Mailbox& m = *world_->mailbox(src, rank_, tag);
  std::unique_lock<std::mutex> lock(m.mu);
  auto take = [&]() -> Status {
    std::vector<float> msg = std::move(m.queued.front());
    m.queued.pop_front();
    if (static_cast<int64_t>(msg.size()) != count)
      return invalid_argument(cat("recv on rank ", rank_, " from rank ", src, " tag ", tag,
                                  " expects ", count, " floats, but the message has ", msg.size(),
                                  " floats"));
    if (count > 0) std::memcpy(data, msg.data(), static_cast<size_t>(count) * sizeof(float));
    return ok_status();
  };
  if (!m.queued.empty()) return take();
  m.posted = data;
  m.posted_count = count;
  m.delivered = false;
  m.posted_error = Status();
  const Clock::time_point deadline = world_->deadline();
  for (;;) {
    if (m.delivered) {
      m.delivered = false;
      Status s = std::move(m.posted_error);
      m.posted_error = Status();
      return s;
    }
    const bool aborted = world_->aborted.load();
    if (aborted || Clock::now() >= deadline) {
      m.posted = nullptr;  // under the lock: no send writes into `data` from now on
      lock.unlock();
      if (aborted) return world_->failure_for_peers();
      Status timeout = failed_precondition(
          cat("recv from rank ", src, " tag ", tag, " timed out after ", world_->timeout_s, " s"),
          "every recv needs a matching send");
      world_->abort(rank_, timeout);
      return timeout.with_context(cat("rank ", rank_));
    }
    m.cv.wait_until(lock, deadline);
  }
}

}  // namespace

ThreadWorld::ThreadWorld(int size, double timeout_s) : state_(std::make_unique<State>()) {
  ALPA_CHECK(size >= 1) << "ThreadWorld needs at least one rank, got " << size;
  ALPA_CHECK(timeout_s > 0) << "ThreadWorld timeout must be positive, got " << timeout_s;
  state_->size = size;
  state_->timeout_s = timeout_s;
  for (int r = 0; r < size; ++r)
    state_->comms.push_back(std::make_unique<ThreadComm>(state_.get(), r));
}

ThreadWorld::~ThreadWorld() = default;

int ThreadWorld::size() const {
  return state_->size;
}

double ThreadWorld::timeout_s() const {
  return state_->timeout_s;
}

std::vector<int> ThreadWorld::local_ranks() const {
  std::vector<int> r(static_cast<size_t>(size()));
  for (int i = 0; i < size(); ++i) r[static_cast<size_t>(i)] = i;
  return r;
}

Communicator& ThreadWorld::comm(int rank) {
  ALPA_CHECK(rank >= 0 && rank < state_->size) << "rank " << rank << " outside " << state_->size;
  return *state_->comms[static_cast<size_t>(rank)];
}

void ThreadWorld::abort(int rank, const Status& cause) {
  state_->abort(rank, cause);
}

Status ThreadWorld::failure() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->aborted.load()) return ok_status();
  return state_->cause.with_context(cat("rank ", state_->failed_rank));
}

void ThreadWorld::reset() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->groups.clear();
  state_->mailboxes.clear();
  for (auto& c : state_->comms) c->clear_cache();
  state_->failed_rank = -1;
  state_->cause = Status();
  state_->aborted.store(false);
}

Status ThreadWorld::run(const std::function<Status(int rank, Communicator& comm)>& fn) {
  reset();
  auto body = [&](int rank) {
    Status s;
    try {
      s = fn(rank, comm(rank));
    } catch (const std::exception& e) {
      s = internal_error(cat("exception: ", e.what()));
    } catch (...) {
      s = internal_error("unknown exception");
    }
    if (!s.ok()) abort(rank, s);
  };
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(state_->size - 1));
  for (int r = 1; r < state_->size; ++r) threads.emplace_back(body, r);
  body(0);
  for (std::thread& t : threads) t.join();
  return failure();
}

}  // namespace alpa
