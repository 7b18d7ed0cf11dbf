#include "alpa/runtime/mpi_world.h"

#include <mpi.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

Status mpi_status(int rc, const std::string& what) {
  if (rc == MPI_SUCCESS) return ok_status();
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, text, &len);
  return internal_error(cat(what, ": MPI error: ", std::string(text, static_cast<size_t>(len))));
}

// Aborts the job when a blocking MPI call lasts longer than its limit.
class Watchdog {
 public:
  // hosts: every rank's host name, so a message says where the ranks it names run.
  Watchdog(int rank, std::vector<std::string> hosts)
      : rank_(rank), hosts_(std::move(hosts)), thread_([this] { loop(); }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // Arms for a call described by what/group/count; the description is built only on expiry.
  void arm(const char* what, std::span<const int> group, int64_t count, double seconds) {
    std::lock_guard<std::mutex> lock(mu_);
    what_ = what;
    group_ = group;
    count_ = count;
    limit_s_ = seconds;
    deadline_ = Clock::now() +
                std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
    armed_ = true;
  }
  void disarm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = false;
  }

 private:
  void loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, std::chrono::milliseconds(50));
      if (stop_ || !armed_ || Clock::now() < deadline_) continue;
      std::string msg = cat("alpa: rank ", rank_, " on host ", host(rank_), ": no progress for ",
                            limit_s_, " s in ", what_);
      if (!group_.empty()) {
        msg += " with ranks [";
        for (size_t i = 0; i < group_.size(); ++i)
          msg += cat(i ? ", " : "", group_[i], " (", host(group_[i]), ")");
        msg += "]";
      }
      if (count_ >= 0) msg += cat(" (", count_, " floats)");
      msg +=
          ": a peer has died, hung or is far slower; aborting the job (raise --timeout if steps "
          "are legitimately this slow)\n";
      std::fputs(msg.c_str(), stderr);
      std::fflush(stderr);
      MPI_Abort(MPI_COMM_WORLD, 3);
      std::_Exit(3);
    }
  }

  const std::string& host(int rank) const {
    static const std::string unknown = "?";
    return rank >= 0 && rank < static_cast<int>(hosts_.size()) ? hosts_[rank] : unknown;
  }

  int rank_;
  std::vector<std::string> hosts_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, armed_ = false;
  const char* what_ = "";
  std::span<const int> group_;
  int64_t count_ = -1;
  double limit_s_ = 0;
  Clock::time_point deadline_;
  std::thread thread_;
};

class Armed {
 public:
  Armed(Watchdog& w, const char* what, std::span<const int> group, int64_t count, double s)
      : w_(w) {
    w_.arm(what, group, count, s);
  }
  ~Armed() { w_.disarm(); }
  Armed(const Armed&) = delete;
  Armed& operator=(const Armed&) = delete;

 private:
  Watchdog& w_;
};

Result<int> as_int(int64_t n, const char* what) {
  if (n < 0 || n > INT_MAX)
    return invalid_argument(cat(what, ": ", n, " floats exceed one MPI message (", INT_MAX, ")"));
  return static_cast<int>(n);
}

// (((b_0 + b_1) + b_2) + ...) over n blocks of `count` floats at `blocks`, into out.
void ordered_sum(const float* blocks, int n, int64_t count, float* out) {
  std::memcpy(out, blocks, static_cast<size_t>(count) * sizeof(float));
  for (int i = 1; i < n; ++i) {
    const float* b = blocks + static_cast<int64_t>(i) * count;
    for (int64_t k = 0; k < count; ++k) out[k] += b[k];
  }
}

// An all_reduce of at most this many floats gathers every member's whole buffer and sums it
// locally (one exchange); larger ones reduce one chunk per member (alltoall + allgather).
constexpr int64_t kSmallAllReduce = 8192;

}  // namespace

class MpiComm : public Communicator {
 public:
  explicit MpiComm(MpiWorld::State* s) : s_(s) {}
  int rank() const override;
  int size() const override;
  Status all_reduce(float* data, int64_t count, std::span<const int> group) override;
  Status all_gather(const float* in, int64_t count, float* out,
                    std::span<const int> group) override;
  Status reduce_scatter(const float* in, int64_t count, float* out,
                        std::span<const int> group) override;
  Status all_to_all(const float* in, int64_t count, float* out,
                    std::span<const int> group) override;
  Status send(const float* data, int64_t count, int dst, int tag) override;
  Status recv(float* data, int64_t count, int src, int tag) override;
  Status barrier(std::span<const int> group) override;

 private:
  // The group's communicator and the caller's position in it.
  Result<std::pair<MPI_Comm, int>> group_comm(std::span<const int> group, const char* what);
  Status reap_sends(bool wait);
  MpiWorld::State* s_;
  std::vector<float> scratch_;
};

struct MpiWorld::State {
  MPI_Comm world = MPI_COMM_NULL;
  int rank = 0, size = 1;
  double timeout_s = 120;
  double next_wait_s = 0;
  std::map<std::vector<int>, MPI_Comm> groups;
  struct PendingSend {
    std::vector<float> data;
    MPI_Request request = MPI_REQUEST_NULL;
  };
  std::deque<PendingSend> sends;
  std::unique_ptr<Watchdog> watchdog;
  std::unique_ptr<MpiComm> comm;

  double take_wait_limit() {
    const double s = next_wait_s > 0 ? next_wait_s : timeout_s;
    next_wait_s = 0;
    return s;
  }
};

int MpiComm::rank() const {
  return s_->rank;
}
int MpiComm::size() const {
  return s_->size;
}

Result<std::pair<MPI_Comm, int>> MpiComm::group_comm(std::span<const int> group, const char* what) {
  int pos = -1;
  for (size_t i = 0; i < group.size(); ++i) {
    if (group[i] < 0 || group[i] >= s_->size)
      return invalid_argument(cat(what, ": rank ", group[i], " in group ", group_to_string(group),
                                  " outside the job's ", s_->size, " ranks"));
    if (group[i] == s_->rank) pos = static_cast<int>(i);
  }
  if (pos < 0)
    return invalid_argument(
        cat(what, ": rank ", s_->rank, " is not in group ", group_to_string(group)));
  std::vector<int> key(group.begin(), group.end());
  auto it = s_->groups.find(key);
  if (it != s_->groups.end()) return std::make_pair(it->second, pos);
  // Made on first use by the group's members only.
  MPI_Group world_group = MPI_GROUP_NULL, sub = MPI_GROUP_NULL;
  MPI_Comm c = MPI_COMM_NULL;
  int rc = MPI_Comm_group(s_->world, &world_group);
  if (rc == MPI_SUCCESS)
    rc = MPI_Group_incl(world_group, static_cast<int>(key.size()), key.data(), &sub);
  if (rc == MPI_SUCCESS) {
    Armed a(*s_->watchdog, "making a group communicator", group, -1, s_->timeout_s);
    rc = MPI_Comm_create_group(s_->world, sub, 7, &c);
  }
  if (sub != MPI_GROUP_NULL) MPI_Group_free(&sub);
  if (world_group != MPI_GROUP_NULL) MPI_Group_free(&world_group);
  ALPA_RETURN_IF_ERROR(mpi_status(rc, cat(what, " over ", group_to_string(group))));
  s_->groups.emplace(std::move(key), c);
  return std::make_pair(c, pos);
}

Status MpiComm::all_reduce(float* data, int64_t count, std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(auto cp, group_comm(group, "all_reduce"));
  const int n = static_cast<int>(group.size());
  if (n == 1 || count == 0) return ok_status();
  Armed a(*s_->watchdog, "all_reduce", group, count, s_->timeout_s);
  if (count <= kSmallAllReduce) {
    scratch_.resize(static_cast<size_t>(count) * n);
    const int c = static_cast<int>(count);
    ALPA_RETURN_IF_ERROR(mpi_status(
        MPI_Allgather(data, c, MPI_FLOAT, scratch_.data(), c, MPI_FLOAT, cp.first), "all_reduce"));
    ordered_sum(scratch_.data(), n, count, data);
    return ok_status();
  }
  // Member i reduces chunk i: chunks of `chunk` floats (64-byte multiples), the last shorter.
  const int64_t chunk = ((count + n - 1) / n + 15) / 16 * 16;
  std::vector<int> len(static_cast<size_t>(n)), displ(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const int64_t lo = std::min(count, i * chunk), hi = std::min(count, (i + 1) * chunk);
    ALPA_ASSIGN_OR_RETURN(len[i], as_int(hi - lo, "all_reduce"));
    ALPA_ASSIGN_OR_RETURN(displ[i], as_int(lo, "all_reduce"));
  }
  const int me = cp.second;
  const int mine = len[static_cast<size_t>(me)];
  scratch_.resize(static_cast<size_t>(std::max(mine, 1)) * n);
  std::vector<int> rlen(static_cast<size_t>(n), mine), rdispl(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) rdispl[i] = i * mine;
  ALPA_RETURN_IF_ERROR(
      mpi_status(MPI_Alltoallv(data, len.data(), displ.data(), MPI_FLOAT, scratch_.data(),
                               rlen.data(), rdispl.data(), MPI_FLOAT, cp.first),
                 "all_reduce"));
  if (mine > 0) ordered_sum(scratch_.data(), n, mine, data + displ[static_cast<size_t>(me)]);
  return mpi_status(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, data, len.data(), displ.data(),
                                   MPI_FLOAT, cp.first),
                    "all_reduce");
}

Status MpiComm::all_gather(const float* in, int64_t count, float* out, std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(auto cp, group_comm(group, "all_gather"));
  ALPA_ASSIGN_OR_RETURN(int c, as_int(count, "all_gather"));
  if (group.size() == 1 || count == 0) {
    if (count > 0) std::memcpy(out, in, static_cast<size_t>(count) * sizeof(float));
    return ok_status();
  }
  Armed a(*s_->watchdog, "all_gather", group, count, s_->timeout_s);
  return mpi_status(
      MPI_Allgather(const_cast<float*>(in), c, MPI_FLOAT, out, c, MPI_FLOAT, cp.first),
      "all_gather");
}

Status MpiComm::reduce_scatter(const float* in, int64_t count, float* out,
                               std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(auto cp, group_comm(group, "reduce_scatter"));
  ALPA_ASSIGN_OR_RETURN(int c, as_int(count, "reduce_scatter"));
  const int n = static_cast<int>(group.size());
  if (n == 1 || count == 0) {
    if (count > 0) std::memcpy(out, in, static_cast<size_t>(count) * sizeof(float));
    return ok_status();
  }
  Armed a(*s_->watchdog, "reduce_scatter", group, count, s_->timeout_s);
  scratch_.resize(static_cast<size_t>(count) * n);
  ALPA_RETURN_IF_ERROR(mpi_status(
      MPI_Alltoall(const_cast<float*>(in), c, MPI_FLOAT, scratch_.data(), c, MPI_FLOAT, cp.first),
      "reduce_scatter"));
  ordered_sum(scratch_.data(), n, count, out);
  return ok_status();
}

Status MpiComm::all_to_all(const float* in, int64_t count, float* out, std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(auto cp, group_comm(group, "all_to_all"));
  ALPA_ASSIGN_OR_RETURN(int c, as_int(count, "all_to_all"));
  if (group.size() == 1 || count == 0) {
    if (count > 0) std::memcpy(out, in, static_cast<size_t>(count) * sizeof(float));
    return ok_status();
  }
  Armed a(*s_->watchdog, "all_to_all", group, count, s_->timeout_s);
  return mpi_status(MPI_Alltoall(const_cast<float*>(in), c, MPI_FLOAT, out, c, MPI_FLOAT, cp.first),
                    "all_to_all");
}

Status MpiComm::reap_sends(bool wait) {
  while (!s_->sends.empty()) {
    auto& p = s_->sends.front();
    int done = 0;
    if (wait) {
      Armed a(*s_->watchdog, "completing a send", {}, static_cast<int64_t>(p.data.size()),
              s_->timeout_s);
      ALPA_RETURN_IF_ERROR(mpi_status(MPI_Wait(&p.request, MPI_STATUS_IGNORE), "send"));
      done = 1;
    } else {
      ALPA_RETURN_IF_ERROR(mpi_status(MPI_Test(&p.request, &done, MPI_STATUS_IGNORE), "send"));
    }
    if (!done) break;
    s_->sends.pop_front();
  }
  return ok_status();
}

Status MpiComm::send(const float* data, int64_t count, int dst, int tag) {
  ALPA_ASSIGN_OR_RETURN(int c, as_int(count, "send"));
  if (dst < 0 || dst >= s_->size)
    return invalid_argument(
        cat("send: destination rank ", dst, " outside the job's ", s_->size, " ranks"));
  ALPA_RETURN_IF_ERROR(reap_sends(false));
  auto& p = s_->sends.emplace_back();
  p.data.assign(data, data + count);
  return mpi_status(MPI_Isend(p.data.data(), c, MPI_FLOAT, dst, tag, s_->world, &p.request),
                    cat("send to rank ", dst));
}

Status MpiComm::recv(float* data, int64_t count, int src, int tag) {
  ALPA_ASSIGN_OR_RETURN(int c, as_int(count, "recv"));
  if (src < 0 || src >= s_->size)
    return invalid_argument(
        cat("recv: source rank ", src, " outside the job's ", s_->size, " ranks"));
  ALPA_RETURN_IF_ERROR(reap_sends(false));
  const int from[1] = {src};
  MPI_Status st;
  {
    Armed a(*s_->watchdog, "recv", from, count, s_->timeout_s);
    ALPA_RETURN_IF_ERROR(mpi_status(MPI_Recv(data, c, MPI_FLOAT, src, tag, s_->world, &st),
                                    cat("recv from rank ", src, " (", count, " floats)")));
  }
  int got = 0;
  MPI_Get_count(&st, MPI_FLOAT, &got);
  if (got != c)
    return internal_error(cat("recv from rank ", src, " tag ", tag, ": ", got, " floats arrived, ",
                              count, " expected"));
  return ok_status();
}

Status MpiComm::barrier(std::span<const int> group) {
  ALPA_ASSIGN_OR_RETURN(auto cp, group_comm(group, "barrier"));
  if (group.size() == 1) return ok_status();
  ALPA_RETURN_IF_ERROR(reap_sends(false));
  Armed a(*s_->watchdog, "barrier", group, -1, s_->timeout_s);
  return mpi_status(MPI_Barrier(cp.first), "barrier");
}

// --- MpiSession ---------------------------------------------------------------------------

Result<std::unique_ptr<MpiSession>> MpiSession::start() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
      return internal_error("MPI_Init_thread failed");
    if (provided < MPI_THREAD_MULTIPLE) {
      MPI_Finalize();
      return failed_precondition(
          "this MPI library does not support MPI_THREAD_MULTIPLE, which the MPI backend's "
          "watchdog needs",
          "use Open MPI (libopenmpi-dev openmpi-bin)");
    }
  }
  auto s = std::unique_ptr<MpiSession>(new MpiSession());
  MPI_Comm_rank(MPI_COMM_WORLD, &s->rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &s->size_);
  return s;
}

MpiSession::~MpiSession() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void MpiSession::abort_job(int code) {
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, code);
  std::_Exit(code);
}

bool MpiSession::launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr || std::getenv("PMI_SIZE") != nullptr ||
         std::getenv("PMIX_RANK") != nullptr;
}

std::string this_host_name() {
  char name[MPI_MAX_PROCESSOR_NAME] = {};
  int len = 0;
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized && MPI_Get_processor_name(name, &len) == MPI_SUCCESS && len > 0)
    return std::string(name, static_cast<size_t>(len));
  return ::gethostname(name, sizeof name) == 0 ? std::string(name) : std::string("?");
}

// --- MpiWorld -----------------------------------------------------------------------------

Result<std::unique_ptr<MpiWorld>> MpiWorld::create(double timeout_s) {
  if (!(timeout_s > 0)) return invalid_argument(cat("--timeout must be > 0, got ", timeout_s));
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) return failed_precondition("MPI is not initialised (MpiSession::start)");
  auto w = std::unique_ptr<MpiWorld>(new MpiWorld());
  w->state_ = std::make_unique<State>();
  State& s = *w->state_;
  ALPA_RETURN_IF_ERROR(mpi_status(MPI_Comm_dup(MPI_COMM_WORLD, &s.world), "MPI_Comm_dup"));
  MPI_Comm_set_errhandler(s.world, MPI_ERRORS_RETURN);
  MPI_Comm_rank(s.world, &s.rank);
  MPI_Comm_size(s.world, &s.size);
  s.timeout_s = timeout_s;
  // Every rank's host name, for messages that name the ranks a failure involves.
  std::vector<char> names(static_cast<size_t>(s.size) * MPI_MAX_PROCESSOR_NAME, '\0');
  const std::string mine = this_host_name();
  std::vector<char> name(MPI_MAX_PROCESSOR_NAME, '\0');
  std::copy_n(mine.begin(), std::min<size_t>(mine.size(), MPI_MAX_PROCESSOR_NAME - 1),
              name.begin());
  ALPA_RETURN_IF_ERROR(
      mpi_status(MPI_Allgather(name.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, names.data(),
                               MPI_MAX_PROCESSOR_NAME, MPI_CHAR, s.world),
                 "MPI_Allgather of host names"));
  std::vector<std::string> hosts;
  for (int r = 0; r < s.size; ++r) hosts.emplace_back(names.data() + r * MPI_MAX_PROCESSOR_NAME);
  s.watchdog = std::make_unique<Watchdog>(s.rank, std::move(hosts));
  s.comm = std::make_unique<MpiComm>(&s);
  return w;
}

MpiWorld::~MpiWorld() {
  if (!state_) return;
  State& s = *state_;
  // Sends still in flight complete before their buffers go (bounded by the watchdog).
  while (!s.sends.empty()) {
    auto& p = s.sends.front();
    {
      Armed a(*s.watchdog, "completing a send at exit", {}, -1, s.timeout_s);
      MPI_Wait(&p.request, MPI_STATUS_IGNORE);
    }
    s.sends.pop_front();
  }
  for (auto& [g, c] : s.groups)
    if (c != MPI_COMM_NULL) MPI_Comm_free(&c);
  MPI_Comm_free(&s.world);
  s.watchdog.reset();
}

int MpiWorld::size() const {
  return state_->size;
}
double MpiWorld::timeout_s() const {
  return state_->timeout_s;
}
std::vector<int> MpiWorld::local_ranks() const {
  return {state_->rank};
}
int MpiWorld::process_index() const {
  return state_->rank;
}

Communicator& MpiWorld::comm(int rank) {
  ALPA_CHECK(rank == state_->rank)
      << "rank " << rank << " is not this process's (" << state_->rank << ")";
  return *state_->comm;
}

Status MpiWorld::run(const std::function<Status(int rank, Communicator& comm)>& fn) {
  Status s;
  try {
    s = fn(state_->rank, *state_->comm);
  } catch (const std::exception& e) {
    s = internal_error(cat("exception: ", e.what()));
  }
  if (!s.ok()) return s.with_context(cat("rank ", state_->rank));
  return ok_status();
}

Result<std::vector<std::string>> MpiWorld::gather_bytes(std::string mine, int root) {
  State& s = *state_;
  if (root < 0 || root >= s.size) return invalid_argument(cat("gather_bytes: root ", root));
  ALPA_ASSIGN_OR_RETURN(int n, as_int(static_cast<int64_t>(mine.size()), "gather_bytes"));
  Armed a(*s.watchdog, "exchanging data between processes", {}, -1, s.take_wait_limit());
  std::vector<int> sizes(static_cast<size_t>(s.size));
  ALPA_RETURN_IF_ERROR(mpi_status(
      MPI_Gather(&n, 1, MPI_INT, sizes.data(), 1, MPI_INT, root, s.world), "gather_bytes"));
  std::vector<int> displ(static_cast<size_t>(s.size));
  int64_t total = 0;
  for (int i = 0; i < s.size; ++i) {
    ALPA_ASSIGN_OR_RETURN(displ[i], as_int(total, "gather_bytes"));
    total += s.rank == root ? sizes[i] : 0;
  }
  std::string all(static_cast<size_t>(total), '\0');
  ALPA_RETURN_IF_ERROR(mpi_status(MPI_Gatherv(mine.data(), n, MPI_CHAR, all.data(), sizes.data(),
                                              displ.data(), MPI_CHAR, root, s.world),
                                  "gather_bytes"));
  std::vector<std::string> out;
  if (s.rank == root)
    for (int i = 0; i < s.size; ++i) out.push_back(all.substr(displ[i], sizes[i]));
  return out;
}

Status MpiWorld::broadcast_bytes(std::string& bytes, int root) {
  State& s = *state_;
  if (root < 0 || root >= s.size) return invalid_argument(cat("broadcast_bytes: root ", root));
  Armed a(*s.watchdog, "waiting for data from process 0", {}, -1, s.take_wait_limit());
  int64_t n = static_cast<int64_t>(bytes.size());
  // The size is awaited without holding a core: a process may wait here for minutes (a
  // serving process between requests) and MPI_Bcast busy-polls. Tested in a tight loop for
  // 2 ms (back-to-back steps see no delay), then every 0.5 ms.
  MPI_Request size_request = MPI_REQUEST_NULL;
  ALPA_RETURN_IF_ERROR(
      mpi_status(MPI_Ibcast(&n, 1, MPI_INT64_T, root, s.world, &size_request), "broadcast_bytes"));
  const auto waiting_since = std::chrono::steady_clock::now();
  for (int done = 0;;) {
    ALPA_RETURN_IF_ERROR(
        mpi_status(MPI_Test(&size_request, &done, MPI_STATUS_IGNORE), "broadcast_bytes"));
    if (done) break;
    if (std::chrono::steady_clock::now() - waiting_since > std::chrono::milliseconds(2))
      std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ALPA_ASSIGN_OR_RETURN(int c, as_int(n, "broadcast_bytes"));
  bytes.resize(static_cast<size_t>(n));
  return mpi_status(MPI_Bcast(bytes.data(), c, MPI_CHAR, root, s.world), "broadcast_bytes");
}

Status MpiWorld::prepare_groups(const std::vector<std::vector<int>>& groups) {
  State& s = *state_;
  int color = MPI_UNDEFINED, key = 0;
  const std::vector<int>* mine = nullptr;
  for (size_t g = 0; g < groups.size(); ++g)
    for (size_t i = 0; i < groups[g].size(); ++i)
      if (groups[g][i] == s.rank) {
        if (mine != nullptr)
          return invalid_argument(cat("prepare_groups: rank ", s.rank, " is in two groups"));
        color = static_cast<int>(g);
        key = static_cast<int>(i);
        mine = &groups[g];
      }
  MPI_Comm c = MPI_COMM_NULL;
  {
    Armed a(*s.watchdog, "MPI_Comm_split", {}, -1, s.timeout_s);
    ALPA_RETURN_IF_ERROR(mpi_status(MPI_Comm_split(s.world, color, key, &c), "MPI_Comm_split"));
  }
  if (mine == nullptr) return ok_status();
  if (mine->size() == 1 || s.groups.count(*mine)) {
    MPI_Comm_free(&c);
    return ok_status();
  }
  s.groups.emplace(*mine, c);
  return ok_status();
}

void MpiWorld::set_next_wait_limit(double seconds) {
  state_->next_wait_s = seconds;
}

}  // namespace alpa
