// Communicator, threads backend (ThreadWorld): every collective and send/recv/barrier on 2, 3, 4
// and 8 ranks against values computed directly (sums in group order, so results are compared
// bit for bit), on whole worlds, on subsets that run concurrently (rows and columns of a 2x4
// mesh) and on permuted groups; large buffers and count 0; and the failure paths: a failing
// rank, a missing rank (timeout), mismatched calls and bad groups all come back as errors
// naming the rank, without hanging.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <thread>
#include <vector>

#include "alpa/runtime/threads_communicator.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Distinct, non-round values per (rank, seed), so a wrong block, order or sum shows.
std::vector<float> values(int rank, int64_t count, uint64_t seed) {
  Rng rng(seed * 1000003 + static_cast<uint64_t>(rank) * 7919 + 1);
  std::vector<float> v(static_cast<size_t>(count));
  for (float& x : v) x = static_cast<float>(rng.uniform() * 2.0 - 1.0) * 1000.0f;
  return v;
}

// ((x_0 + x_1) + x_2) + ... in float, the order every backend must use.
std::vector<float> ordered_sum(const std::vector<std::vector<float>>& xs) {
  std::vector<float> acc = xs[0];
  for (size_t j = 1; j < xs.size(); ++j)
    for (size_t i = 0; i < acc.size(); ++i) acc[i] += xs[j][i];
  return acc;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// The first index where got and want differ in bits, or -1.
int64_t first_diff(const std::vector<float>& got, const std::vector<float>& want) {
  if (got.size() != want.size()) return 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) return static_cast<int64_t>(i);
  return -1;
}

#define EXPECT_BITS(got, want, what)                                                    \
  do {                                                                                  \
    const int64_t at_ = first_diff((got), (want));                                      \
    EXPECT_EQ(at_, -1) << what << ": sizes " << (got).size() << " vs " << (want).size() \
                       << ", first difference at " << at_;                              \
  } while (0)

std::vector<int> iota_group(int n) {
  std::vector<int> g(static_cast<size_t>(n));
  std::iota(g.begin(), g.end(), 0);
  return g;
}

// Runs `fn` on every rank and requires success.
void run_ok(ThreadWorld& world, const std::function<Status(int, Communicator&)>& fn) {
  const Status s = world.run(fn);
  ASSERT_TRUE(s.ok()) << s.to_string();
}

class OnRanks : public ::testing::TestWithParam<int> {};

TEST_P(OnRanks, AllFourOnTheWholeWorldMatchDirectComputation) {
  const int n = GetParam();
  ThreadWorld world(n, 10);
  const std::vector<int> group = iota_group(n);
  for (int64_t count : {int64_t{0}, int64_t{1}, int64_t{5}, int64_t{17}, int64_t{1000},
                        int64_t{4099}, int64_t{8192}, int64_t{8193}, int64_t{20011}}) {
    const uint64_t seed = static_cast<uint64_t>(count) + 11;
    std::vector<std::vector<float>> in(n), in_big(n);
    for (int r = 0; r < n; ++r) {
      in[r] = values(r, count, seed);
      in_big[r] = values(r, count * n, seed + 1);
    }
    std::vector<std::vector<float>> ar(n), ag(n), rs(n), a2a(n);
    run_ok(world, [&](int r, Communicator& c) -> Status {
      EXPECT_EQ(c.rank(), r);
      EXPECT_EQ(c.size(), n);
      ar[r] = in[r];
      ALPA_RETURN_IF_ERROR(c.all_reduce(ar[r].data(), count, group));
      ag[r].assign(static_cast<size_t>(count * n), -7.0f);
      ALPA_RETURN_IF_ERROR(c.all_gather(in[r].data(), count, ag[r].data(), group));
      rs[r].assign(static_cast<size_t>(count), -7.0f);
      ALPA_RETURN_IF_ERROR(c.reduce_scatter(in_big[r].data(), count, rs[r].data(), group));
      a2a[r].assign(static_cast<size_t>(count * n), -7.0f);
      return c.all_to_all(in_big[r].data(), count, a2a[r].data(), group);
    });
    const std::vector<float> total = ordered_sum(in);
    const std::vector<float> total_big = ordered_sum(in_big);
    std::vector<float> gathered;
    for (int r = 0; r < n; ++r) gathered.insert(gathered.end(), in[r].begin(), in[r].end());
    for (int r = 0; r < n; ++r) {
      const std::string what = cat("n=", n, " count=", count, " rank ", r);
      EXPECT_BITS(ar[r], total, what + " all_reduce");
      EXPECT_TRUE(same_bits(ar[r], ar[0])) << what;
      EXPECT_BITS(ag[r], gathered, what + " all_gather");
      const std::vector<float> my_chunk(total_big.begin() + r * count,
                                        total_big.begin() + (r + 1) * count);
      EXPECT_BITS(rs[r], my_chunk, what + " reduce_scatter");
      std::vector<float> want_a2a;
      for (int i = 0; i < n; ++i)
        want_a2a.insert(want_a2a.end(), in_big[i].begin() + r * count,
                        in_big[i].begin() + (r + 1) * count);
      EXPECT_BITS(a2a[r], want_a2a, what + " all_to_all");
    }
  }
}

TEST_P(OnRanks, SendRecvRingAndBarrier) {
  const int n = GetParam();
  ThreadWorld world(n, 10);
  const std::vector<int> group = iota_group(n);
  std::vector<std::vector<float>> got(n), got2(n);
  std::atomic<int> before{0};
  std::vector<int> seen(n, -1);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    // Two messages on one tag arrive in order; another tag is independent.
    const int next = (r + 1) % n, prev = (r + n - 1) % n;
    std::vector<float> a = values(r, 33, 1), b = values(r, 7, 2), z = values(r, 0, 3);
    ALPA_RETURN_IF_ERROR(c.send(a.data(), 33, next, 5));
    ALPA_RETURN_IF_ERROR(c.send(b.data(), 7, next, 5));
    ALPA_RETURN_IF_ERROR(c.send(z.data(), 0, next, 6));
    got[r].resize(33);
    got2[r].resize(7);
    float dummy = 0;
    ALPA_RETURN_IF_ERROR(c.recv(&dummy, 0, prev, 6));
    ALPA_RETURN_IF_ERROR(c.recv(got[r].data(), 33, prev, 5));
    ALPA_RETURN_IF_ERROR(c.recv(got2[r].data(), 7, prev, 5));
    // Barrier: everything done before it is visible after it on every member.
    before.fetch_add(1);
    ALPA_RETURN_IF_ERROR(c.barrier(group));
    seen[r] = before.load();
    return c.barrier(group);
  });
  for (int r = 0; r < n; ++r) {
    const int prev = (r + n - 1) % n;
    EXPECT_BITS(got[r], values(prev, 33, 1), cat("rank ", r, " first message"));
    EXPECT_BITS(got2[r], values(prev, 7, 2), cat("rank ", r, " second message"));
    EXPECT_EQ(seen[r], n) << "rank " << r << " passed the barrier early";
  }
}

TEST_P(OnRanks, RecvPostedBeforeTheSendGetsTheData) {
  const int n = GetParam();
  ThreadWorld world(n, 10);
  std::vector<std::vector<float>> got(n);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    if (r == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));  // receivers wait first
      for (int d = 1; d < n; ++d) {
        std::vector<float> v = values(d, 1000, 9);
        ALPA_RETURN_IF_ERROR(c.send(v.data(), 1000, d, 0));
      }
      return ok_status();
    }
    got[r].resize(1000);
    return c.recv(got[r].data(), 1000, 0, 0);
  });
  for (int r = 1; r < n; ++r) EXPECT_BITS(got[r], values(r, 1000, 9), cat("rank ", r));
}

TEST_P(OnRanks, ManySmallCallsInARow) {
  // Stresses the barrier's generations: 300 all_reduces, each depending on the last.
  const int n = GetParam();
  ThreadWorld world(n, 10);
  const std::vector<int> group = iota_group(n);
  std::vector<float> final_value(n);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    float x = static_cast<float>(r + 1);
    for (int it = 0; it < 300; ++it) {
      float v = x;
      ALPA_RETURN_IF_ERROR(c.all_reduce(&v, 1, group));
      x = v / static_cast<float>(n) + static_cast<float>(r);  // differs per rank again
    }
    final_value[r] = x;
    return ok_status();
  });
  // Replay sequentially.
  std::vector<float> x(n);
  for (int r = 0; r < n; ++r) x[r] = static_cast<float>(r + 1);
  for (int it = 0; it < 300; ++it) {
    float s = x[0];
    for (int r = 1; r < n; ++r) s += x[r];
    for (int r = 0; r < n; ++r) x[r] = s / static_cast<float>(n) + static_cast<float>(r);
  }
  for (int r = 0; r < n; ++r) EXPECT_EQ(final_value[r], x[r]) << "rank " << r;
}

INSTANTIATE_TEST_SUITE_P(Communicator, OnRanks, ::testing::Values(2, 3, 4, 8));

TEST(Communicator, RowsAndColumnsOfA2x4MeshRunConcurrently) {
  // Rank (i, j) = i * 4 + j. Each rank reduces over its row, then gathers over its column,
  // then reduce-scatters and all-to-alls over its row; rows (and columns) proceed at once.
  ThreadWorld world(8, 10);
  const int64_t count = 1003;
  std::vector<std::vector<float>> in(8), row_sum(8), col_gather(8), row_rs(8), row_a2a(8);
  for (int r = 0; r < 8; ++r) in[r] = values(r, count * 4, 21);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    const int i = r / 4, j = r % 4;
    const std::vector<int> row = {i * 4, i * 4 + 1, i * 4 + 2, i * 4 + 3};
    const std::vector<int> col = {j, 4 + j};
    row_sum[r] = in[r];
    ALPA_RETURN_IF_ERROR(c.all_reduce(row_sum[r].data(), count * 4, row));
    col_gather[r].resize(static_cast<size_t>(count * 2));
    ALPA_RETURN_IF_ERROR(c.all_gather(in[r].data(), count, col_gather[r].data(), col));
    row_rs[r].resize(static_cast<size_t>(count));
    ALPA_RETURN_IF_ERROR(c.reduce_scatter(in[r].data(), count, row_rs[r].data(), row));
    row_a2a[r].resize(static_cast<size_t>(count * 4));
    return c.all_to_all(in[r].data(), count, row_a2a[r].data(), row);
  });
  for (int r = 0; r < 8; ++r) {
    const int i = r / 4, j = r % 4;
    const std::vector<float> rsum =
        ordered_sum({in[i * 4], in[i * 4 + 1], in[i * 4 + 2], in[i * 4 + 3]});
    EXPECT_BITS(row_sum[r], rsum, cat("rank ", r, " row all_reduce"));
    std::vector<float> g(in[j].begin(), in[j].begin() + count);
    g.insert(g.end(), in[4 + j].begin(), in[4 + j].begin() + count);
    EXPECT_BITS(col_gather[r], g, cat("rank ", r, " column all_gather"));
    EXPECT_BITS(row_rs[r],
                std::vector<float>(rsum.begin() + j * count, rsum.begin() + (j + 1) * count),
                cat("rank ", r, " row reduce_scatter"));
    std::vector<float> a;
    for (int k = 0; k < 4; ++k)
      a.insert(a.end(), in[i * 4 + k].begin() + j * count, in[i * 4 + k].begin() + (j + 1) * count);
    EXPECT_BITS(row_a2a[r], a, cat("rank ", r, " row all_to_all"));
  }
}

TEST(Communicator, PositionsFollowTheGroupOrderNotTheRankOrder) {
  // Group [3, 1, 2, 0] on a world of 5 (rank 4 idle): rank 3 is position 0.
  ThreadWorld world(5, 10);
  const std::vector<int> group = {3, 1, 2, 0};
  const int64_t count = 37;
  std::vector<std::vector<float>> in(5), ag(5), ar(5), rs(5);
  for (int r = 0; r < 5; ++r) in[r] = values(r, count * 4, 5);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    if (r == 4) return ok_status();
    ag[r].resize(static_cast<size_t>(count * 4));
    ALPA_RETURN_IF_ERROR(c.all_gather(in[r].data(), count, ag[r].data(), group));
    ar[r] = in[r];
    ALPA_RETURN_IF_ERROR(c.all_reduce(ar[r].data(), count * 4, group));
    rs[r].resize(static_cast<size_t>(count));
    return c.reduce_scatter(in[r].data(), count, rs[r].data(), group);
  });
  std::vector<float> g;
  for (int m : group) g.insert(g.end(), in[m].begin(), in[m].begin() + count);
  const std::vector<float> sum = ordered_sum({in[3], in[1], in[2], in[0]});  // group order
  for (int p = 0; p < 4; ++p) {
    const int r = group[p];
    EXPECT_BITS(ag[r], g, cat("rank ", r, " all_gather"));
    EXPECT_BITS(ar[r], sum, cat("rank ", r, " all_reduce"));
    EXPECT_BITS(rs[r], std::vector<float>(sum.begin() + p * count, sum.begin() + (p + 1) * count),
                cat("rank ", r, " reduce_scatter at position ", p));
  }
}

TEST(Communicator, LargeBuffers) {
  const int n = 4;
  const int64_t count = int64_t{4} << 20;  // 4M floats = 16 MiB per rank
  ThreadWorld world(n, 30);
  const std::vector<int> group = iota_group(n);
  std::vector<std::vector<float>> in(n), ar(n), rs(n);
  for (int r = 0; r < n; ++r) in[r] = values(r, count, 77);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    ar[r] = in[r];
    ALPA_RETURN_IF_ERROR(c.all_reduce(ar[r].data(), count, group));
    rs[r].resize(static_cast<size_t>(count / n));
    return c.reduce_scatter(in[r].data(), count / n, rs[r].data(), group);
  });
  const std::vector<float> total = ordered_sum(in);
  for (int r = 0; r < n; ++r) {
    EXPECT_BITS(ar[r], total, cat("rank ", r, " all_reduce"));
    EXPECT_BITS(
        rs[r],
        std::vector<float>(total.begin() + r * (count / n), total.begin() + (r + 1) * (count / n)),
        cat("rank ", r, " reduce_scatter"));
  }
}

TEST(Communicator, GroupOfOneIsLocal) {
  ThreadWorld world(2, 10);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    const std::vector<int> me = {r};
    std::vector<float> x = values(r, 9, 4), y(9), z(9);
    ALPA_RETURN_IF_ERROR(c.all_reduce(x.data(), 9, me));
    EXPECT_BITS(x, values(r, 9, 4), "all_reduce of one");
    ALPA_RETURN_IF_ERROR(c.all_gather(x.data(), 9, y.data(), me));
    EXPECT_BITS(y, x, "all_gather of one");
    ALPA_RETURN_IF_ERROR(c.all_to_all(x.data(), 9, z.data(), me));
    EXPECT_BITS(z, x, "all_to_all of one");
    return c.barrier(me);
  });
}

TEST(Communicator, AFailingRankFailsThePendingCollectivesOfTheOthers) {
  // A long timeout: the others must be woken by the abort, not by their timeout.
  const double timeout = 30;
  ThreadWorld world(4, timeout);
  const std::vector<int> group = iota_group(4);
  std::vector<Status> seen(4);
  const Clock::time_point t0 = Clock::now();
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    if (r == 2) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));  // the others wait first
      return invalid_argument("boom on purpose");
    }
    float x = 1;
    seen[r] = c.all_reduce(&x, 1, group);
    // Later calls fail too, immediately.
    Status later = c.barrier(group);
    EXPECT_FALSE(later.ok());
    EXPECT_NE(later.message().find("rank 2 failed"), std::string::npos) << later.to_string();
    return seen[r];
  });
  const double elapsed = seconds_since(t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 2"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("boom on purpose"), std::string::npos) << s.to_string();
  EXPECT_LT(elapsed, timeout / 3) << "the abort did not wake the waiting ranks";
  for (int r : {0, 1, 3}) {
    ASSERT_FALSE(seen[r].ok()) << "rank " << r;
    EXPECT_NE(seen[r].message().find("rank 2 failed: boom on purpose"), std::string::npos)
        << seen[r].to_string();
  }
  // The next run starts from a clean world.
  std::vector<float> x(4);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    x[r] = static_cast<float>(r);
    return c.all_reduce(&x[r], 1, group);
  });
  for (int r = 0; r < 4; ++r) EXPECT_EQ(x[r], 6.0f);
}

TEST(Communicator, AFailureInOneGroupWakesWaitersOfAnother) {
  // Rank 0 fails; ranks 2 and 3 wait in a group that does not contain it (rank 3 never comes:
  // it waits on a recv from rank 0) and are woken by the abort.
  ThreadWorld world(4, 30);
  const Clock::time_point t0 = Clock::now();
  std::vector<Status> seen(4);
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    if (r == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      return internal_error("rank zero broke");
    }
    float x = 0;
    if (r == 3) return seen[r] = c.recv(&x, 1, 0, 0);
    const std::vector<int> g = {1, 2, 3};
    return seen[r] = c.all_reduce(&x, 1, g);
  });
  EXPECT_LT(seconds_since(t0), 10.0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 0: rank zero broke"), std::string::npos) << s.to_string();
  for (int r : {1, 2, 3})
    EXPECT_NE(seen[r].message().find("rank 0 failed: rank zero broke"), std::string::npos)
        << "rank " << r << ": " << seen[r].to_string();
}

TEST(Communicator, AMissingRankTimesOut) {
  ThreadWorld world(3, 0.5);
  const std::vector<int> group = iota_group(3);
  std::vector<Status> seen(3);
  const Clock::time_point t0 = Clock::now();
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    if (r == 1) return ok_status();  // never joins the collective
    std::vector<float> x(10, 1.0f), y(30);
    return seen[r] = c.all_gather(x.data(), 10, y.data(), group);
  });
  const double elapsed = seconds_since(t0);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("timed out"), std::string::npos) << s.to_string();
  EXPECT_NE(s.message().find("waiting for rank(s) 1"), std::string::npos) << s.to_string();
  EXPECT_GE(elapsed, 0.45);
  EXPECT_LT(elapsed, 10.0);
  for (int r : {0, 2}) EXPECT_FALSE(seen[r].ok()) << "rank " << r;
}

TEST(Communicator, ARecvWithoutASendTimesOut) {
  ThreadWorld world(2, 0.3);
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    if (r == 1) return ok_status();
    float x;
    return c.recv(&x, 1, 1, 42);
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 0: recv from rank 1 tag 42 timed out"), std::string::npos)
      << s.to_string();
}

TEST(Communicator, MismatchedCallsAreErrorsOnEveryMember) {
  ThreadWorld world(3, 10);
  const std::vector<int> group = iota_group(3);
  std::vector<Status> seen(3);
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    std::vector<float> x(8, 1.0f), y(24);
    if (r == 1) {
      seen[r] = c.all_reduce(x.data(), 4, group);  // a different count
    } else {
      seen[r] = c.all_reduce(x.data(), 8, group);
    }
    // A different collective on the same group fails the same way.
    Status other =
        r == 2 ? c.all_gather(x.data(), 8, y.data(), group) : c.all_reduce(x.data(), 8, group);
    EXPECT_FALSE(other.ok()) << "rank " << r;
    EXPECT_NE(other.message().find("all_gather"), std::string::npos) << other.to_string();
    return ok_status();
  });
  EXPECT_TRUE(s.ok()) << s.to_string();
  for (int r = 0; r < 3; ++r) {
    ASSERT_FALSE(seen[r].ok()) << "rank " << r;
    EXPECT_EQ(seen[r].code(), StatusCode::kInvalidArgument);
    EXPECT_NE(seen[r].message().find("count 4"), std::string::npos) << seen[r].to_string();
  }
}

TEST(Communicator, BadGroupsAndPeersAreErrors) {
  ThreadWorld world(2, 10);
  run_ok(world, [&](int r, Communicator& c) -> Status {
    float x = 0;
    const std::vector<int> without_me = {1 - r};
    Status s = c.all_reduce(&x, 1, without_me);
    EXPECT_NE(s.message().find("does not contain the caller"), std::string::npos) << s.to_string();
    const std::vector<int> out_of_range = {0, 1, 2};
    s = c.all_reduce(&x, 1, out_of_range);
    EXPECT_NE(s.message().find("outside a world of 2"), std::string::npos) << s.to_string();
    const std::vector<int> twice = {0, 1, r};
    s = c.barrier(twice);
    EXPECT_NE(s.message().find("twice"), std::string::npos) << s.to_string();
    s = c.send(&x, 1, 5, 0);
    EXPECT_NE(s.message().find("names rank 5"), std::string::npos) << s.to_string();
    s = c.all_reduce(&x, -1, std::vector<int>{0, 1});
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    return ok_status();
  });
}

TEST(Communicator, SendRecvCountMismatchIsAnError) {
  // Either side may find out: the sender when the recv is already posted, the receiver when
  // the message was queued first. Both orders, forced by a sleep.
  for (const bool recv_first : {true, false}) {
    ThreadWorld world(2, 10);
    Status sent, got;
    const Status s = world.run([&](int r, Communicator& c) -> Status {
      std::vector<float> x(6, 2.0f);
      if (r == 0) {
        if (recv_first) std::this_thread::sleep_for(std::chrono::milliseconds(30));
        sent = c.send(x.data(), 6, 1, 3);
        return ok_status();
      }
      if (!recv_first) std::this_thread::sleep_for(std::chrono::milliseconds(30));
      got = c.recv(x.data(), 4, 0, 3);
      return ok_status();
    });
    EXPECT_TRUE(s.ok()) << s.to_string();
    ASSERT_FALSE(got.ok()) << "recv_first=" << recv_first;
    EXPECT_NE(got.message().find("expects 4"), std::string::npos) << got.to_string();
    EXPECT_NE(got.message().find("6 floats"), std::string::npos) << got.to_string();
    // With the recv posted first (nearly always, after the sleep) the sender finds out too.
    if (!sent.ok()) {
      EXPECT_EQ(sent.message(), got.message());
    }
    if (!recv_first) {
      EXPECT_TRUE(sent.ok()) << sent.to_string();
    }
  }
}

TEST(Communicator, AThrowingRankIsAFailureNotACrash) {
  ThreadWorld world(2, 10);
  const Status s = world.run([&](int r, Communicator& c) -> Status {
    if (r == 1) throw std::runtime_error("thrown on purpose");
    float x = 0;
    return c.all_reduce(&x, 1, std::vector<int>{0, 1});
  });
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("rank 1: exception: thrown on purpose"), std::string::npos)
      << s.to_string();
}

}  // namespace
}  // namespace alpa
