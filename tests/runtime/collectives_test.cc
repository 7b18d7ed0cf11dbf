// Collective ops through MeshRunner on meshes 1x2, 2x1, 2x2 and 2x4, for axes [0], [1] and
// [0,1] and split dims outer, middle and inner: each device's result is compared with what the
// op means on the full tensor (all_gather of the shards of F is F; reduce_scatter of partial
// sums is the device's chunk of the total; all_to_all moves chunk j to member j; shard_slice
// picks the device's chunk). The references index whole tensors directly and share no code
// with the kernels. The case list is data; a completeness test requires a case for every op
// of family kCollective. Also: collective_group, errors (no device, wrong mesh, a failing
// device), a mixed program (sharded matmul + all_reduce) and repeated runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <set>

#include "runtime/mesh_runner.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;

// A dense row-major tensor for the references.
struct Full {
  Shape shape;
  std::vector<float> v;
};

int64_t elements(const Shape& s) {
  int64_t n = 1;
  for (int64_t e : s) n *= e;
  return n;
}

Full random_full(Shape s, uint64_t seed) {
  Tensor t = testing::random_tensor(f32(s), seed, -100.0f, 100.0f);
  return Full{s, t.to_vector()};
}

// Chunk p of n along dim.
Full chunk(const Full& x, int64_t dim, int64_t n, int64_t p) {
  Full r{x.shape, {}};
  const int64_t c = x.shape[dim] / n;
  r.shape[dim] = c;
  r.v.resize(static_cast<size_t>(elements(r.shape)));
  for (int64_t i = 0; i < elements(r.shape); ++i) {
    std::vector<int64_t> idx = testing::unflatten(r.shape, i);
    idx[dim] += p * c;
    r.v[i] = x.v[testing::flatten(x.shape, idx)];
  }
  return r;
}

Full concat(const std::vector<Full>& xs, int64_t dim) {
  Full r{xs[0].shape, {}};
  const int64_t e = xs[0].shape[dim];
  r.shape[dim] = e * static_cast<int64_t>(xs.size());
  r.v.resize(static_cast<size_t>(elements(r.shape)));
  for (int64_t i = 0; i < elements(r.shape); ++i) {
    std::vector<int64_t> idx = testing::unflatten(r.shape, i);
    const int64_t k = idx[dim] / e;
    idx[dim] %= e;
    r.v[i] = xs[k].v[testing::flatten(xs[k].shape, idx)];
  }
  return r;
}

// ((x_0 + x_1) + ...) in group order.
Full sum(const std::vector<Full>& xs) {
  Full r = xs[0];
  for (size_t j = 1; j < xs.size(); ++j)
    for (size_t i = 0; i < r.v.size(); ++i) r.v[i] += xs[j].v[i];
  return r;
}

// The group of device (i, j) for `axes`, computed from the definition: same coordinates on
// the other axes, ordered by the coordinates along `axes` (major first).
struct Membership {
  int64_t key;       // identifies the group
  int64_t position;  // index in the group
};

Membership membership(MeshShape mesh, const std::vector<int64_t>& axes, int64_t i, int64_t j) {
  if (axes == std::vector<int64_t>{0}) return {j, i};
  if (axes == std::vector<int64_t>{1}) return {i, j};
  return {0, i * mesh[1] + j};
}

// Device ids of each member of device d's group, by position.
std::vector<int> members(MeshShape mesh, const std::vector<int64_t>& axes, int d) {
  const int64_t n = mesh[0] * mesh[1];
  const Membership me = membership(mesh, axes, d / mesh[1], d % mesh[1]);
  std::vector<std::pair<int64_t, int>> found;
  for (int64_t e = 0; e < n; ++e) {
    const Membership m = membership(mesh, axes, e / mesh[1], e % mesh[1]);
    if (m.key == me.key) found.push_back({m.position, static_cast<int>(e)});
  }
  std::sort(found.begin(), found.end());
  std::vector<int> out;
  for (auto& [p, e] : found) out.push_back(e);
  return out;
}

struct Case {
  OpKind op;
  int64_t dim;
  int64_t concat_dim;
};

// Local tensors have shape (8, 3, 16): dims 0 (outer) and 2 (inner) split into 1, 2, 4 or 8;
// dim 1 (extent 3) serves as a middle concat_dim and as a gather dim.
const Shape kLocal = {8, 3, 16};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      {OpKind::kAllReduce, 0, 0}, {OpKind::kAllGather, 0, 0},     {OpKind::kAllGather, 1, 0},
      {OpKind::kAllGather, 2, 0}, {OpKind::kReduceScatter, 0, 0}, {OpKind::kReduceScatter, 2, 0},
      {OpKind::kAllToAll, 0, 2},  {OpKind::kAllToAll, 2, 0},      {OpKind::kAllToAll, 2, 1},
      {OpKind::kAllToAll, 0, 0},  {OpKind::kShardSlice, 0, 0},    {OpKind::kShardSlice, 2, 0},
      {OpKind::kToPartial, 0, 0},
  };
  return kCases;
}

// One node of `op` on a parameter of `in_shape`, as a per-device program.
Graph collective_program(const Case& c, const CollectiveAttrs& attrs, const Shape& in_shape) {
  Builder b("spmd");
  Value x = b.parameter("x", f32(in_shape), ParamRole::kInput);
  Value y = b.emit(c.op, std::vector<Value>{x}, attrs, nullptr);
  b.output("y", y);
  return testing::finish(b);
}

std::string describe(const Case& c, MeshShape mesh, const std::vector<int64_t>& axes) {
  std::string a;
  for (int64_t x : axes) a += std::to_string(x);
  return cat(op_name(c.op), " dim=", c.dim, " concat_dim=", c.concat_dim, " mesh=", mesh[0], "x",
             mesh[1], " axes=[", a, "]");
}

// Runs case `c` on every device and checks each result against the full-tensor meaning.
void check_case(const Case& c, MeshShape mesh, const std::vector<int64_t>& axes) {
  const std::string what = describe(c, mesh, axes);
  SCOPED_TRACE(what);
  const int n_dev = static_cast<int>(mesh[0] * mesh[1]);
  const CollectiveAttrs attrs{axes, {mesh[0], mesh[1]}, c.dim, c.concat_dim};
  const int64_t n = collective_group_size(attrs);

  // Inputs and expected outputs per device.
  std::vector<Full> input(n_dev), want(n_dev);
  std::vector<Full> whole(n_dev);  // per device: the full tensor of its group (gather / slice)
  for (int d = 0; d < n_dev; ++d) input[d] = random_full(kLocal, 1000 + 17 * d);
  for (int d = 0; d < n_dev; ++d) {
    const std::vector<int> group = members(mesh, axes, d);
    ASSERT_EQ(static_cast<int64_t>(group.size()), n);
    const int64_t p = std::find(group.begin(), group.end(), d) - group.begin();
    std::vector<Full> xs;
    for (int m : group) xs.push_back(input[m]);
    switch (c.op) {
      case OpKind::kAllReduce: want[d] = sum(xs); break;
      case OpKind::kReduceScatter: want[d] = chunk(sum(xs), c.dim, n, p); break;
      case OpKind::kAllToAll: {
        std::vector<Full> received;
        for (const Full& x : xs) received.push_back(chunk(x, c.dim, n, p));
        want[d] = concat(received, c.concat_dim);
        break;
      }
      case OpKind::kAllGather: {
        // The group shares a full tensor F (seeded by the group's first member); each device
        // holds its chunk of F; all_gather must give back F.
        Shape full_shape = kLocal;
        full_shape[c.dim] *= n;
        const Full f = random_full(full_shape, 5000 + static_cast<uint64_t>(group[0]));
        input[d] = chunk(f, c.dim, n, p);
        want[d] = f;
        break;
      }
      case OpKind::kToPartial:
        // Position 0 keeps its value, the others zero: the group's sum is position 0's value.
        want[d] = input[d];
        if (p != 0) std::fill(want[d].v.begin(), want[d].v.end(), 0.0f);
        break;
      case OpKind::kShardSlice:
        // Replicated within the group; each device keeps its chunk.
        input[d] = random_full(kLocal, 7000 + static_cast<uint64_t>(group[0]));
        want[d] = chunk(input[d], c.dim, n, p);
        break;
      default: FAIL() << "no reference for " << op_name(c.op);
    }
  }

  MeshRunner runner(collective_program(c, attrs, input[0].shape), MeshRunOptions{mesh});
  std::vector<std::vector<Tensor>> params(n_dev);
  for (int d = 0; d < n_dev; ++d)
    params[d].push_back(Tensor::from_values(f32(input[d].shape), input[d].v));
  Result<std::vector<std::vector<Tensor>>> r = runner.run(std::move(params));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  for (int d = 0; d < n_dev; ++d) {
    const Tensor& got = (*r)[d].at(0);
    ASSERT_EQ(got.shape(), want[d].shape) << "device " << d;
    testing::expect_equal(got.to_vector(), want[d].v, cat(what, " device ", d));
  }
}

const std::vector<MeshShape> kMeshes = {{1, 2}, {2, 1}, {2, 2}, {2, 4}};
const std::vector<std::vector<int64_t>> kAxes = {{0}, {1}, {0, 1}};

TEST(CollectiveOps, EveryCaseOnEveryMeshAndAxes) {
  for (const Case& c : cases())
    for (const auto& mesh : kMeshes)
      for (const auto& axes : kAxes) check_case(c, mesh, axes);
}

TEST(CollectiveOps, EveryCollectiveOpHasACase) {
  std::set<OpKind> covered;
  for (const Case& c : cases()) covered.insert(c.op);
  for (int i = 0; i < kNumOps; ++i) {
    const OpKind op = static_cast<OpKind>(i);
    if (op_info(op).family != OpFamily::kCollective) continue;
    EXPECT_TRUE(covered.count(op)) << "no test case for collective op " << op_name(op);
    EXPECT_NE(kernel_for(op), nullptr) << op_name(op);
  }
}

TEST(CollectiveOps, CollectiveGroupFollowsTheDefinition) {
  for (const auto& mesh : kMeshes)
    for (const auto& axes : kAxes) {
      const CollectiveAttrs attrs{axes, {mesh[0], mesh[1]}, 0, 0};
      for (int d = 0; d < mesh[0] * mesh[1]; ++d) {
        const CollectiveGroup g = collective_group(attrs, {d / mesh[1], d % mesh[1]});
        EXPECT_EQ(g.ranks, members(mesh, axes, d)) << describe({}, mesh, axes) << " device " << d;
        ASSERT_LT(g.position, static_cast<int>(g.ranks.size()));
        EXPECT_EQ(g.ranks[g.position], d);
      }
    }
  // Spelled out for 2x4: the column of (1, 2) is [2, 6]; its row is [4, 5, 6, 7].
  EXPECT_EQ(collective_group(CollectiveAttrs{{0}, {2, 4}, 0, 0}, {1, 2}).ranks,
            (std::vector<int>{2, 6}));
  EXPECT_EQ(collective_group(CollectiveAttrs{{1}, {2, 4}, 0, 0}, {1, 2}).ranks,
            (std::vector<int>{4, 5, 6, 7}));
  EXPECT_EQ(collective_group(CollectiveAttrs{{1}, {2, 4}, 0, 0}, {1, 2}).position, 2);
}

TEST(CollectiveOps, ReduceScatterThenAllGatherIsAllReduce) {
  // Two collectives in one program, on both axes in turn: rows, then columns.
  const MeshShape mesh{2, 4};
  Builder b("rs_ag");
  Value x = b.parameter("x", f32({8, 6}), ParamRole::kInput);
  Value rs = b.emit(OpKind::kReduceScatter, std::vector<Value>{x},
                    CollectiveAttrs{{1}, {2, 4}, 0, 0}, nullptr);  // (2, 6)
  Value ag = b.emit(OpKind::kAllGather, std::vector<Value>{rs}, CollectiveAttrs{{1}, {2, 4}, 0, 0},
                    nullptr);  // (8, 6)
  Value col = b.emit(OpKind::kAllReduce, std::vector<Value>{ag}, CollectiveAttrs{{0}, {2, 4}, 0, 0},
                     nullptr);
  b.output("y", col);
  MeshRunner runner(testing::finish(b), MeshRunOptions{mesh});
  std::vector<std::vector<Tensor>> params(8);
  std::vector<Full> in(8);
  for (int d = 0; d < 8; ++d) {
    in[d] = random_full({8, 6}, 300 + d);
    params[d].push_back(Tensor::from_values(f32({8, 6}), in[d].v));
  }
  Result<std::vector<std::vector<Tensor>>> r = runner.run(std::move(params));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  std::vector<Full> rows;
  for (int i = 0; i < 2; ++i)
    rows.push_back(sum({in[4 * i], in[4 * i + 1], in[4 * i + 2], in[4 * i + 3]}));
  const Full want = sum(rows);
  for (int d = 0; d < 8; ++d)
    testing::expect_equal((*r)[d][0].to_vector(), want.v, cat("device ", d));
}

TEST(CollectiveOps, ShardedMatmulWithAllReduceMatchesOneDevice) {
  // y = x @ w with the contraction dim split over 4 devices: each multiplies its slices, the
  // all_reduce sums the partial products. Two threads per device; run twice (buffers reused).
  const MeshShape mesh{1, 4};
  Builder b("mm");
  Value x = b.parameter("x", f32({16, 8}), ParamRole::kInput);   // local (16, 32 / 4)
  Value w = b.parameter("w", f32({8, 12}), ParamRole::kWeight);  // local (32 / 4, 12)
  Value y = b.emit(OpKind::kAllReduce, std::vector<Value>{b.matmul(x, w)},
                   CollectiveAttrs{{1}, {1, 4}, 0, 0}, nullptr);
  b.output("y", b.tanh(y));
  MeshRunOptions opt{mesh};
  opt.threads_per_device = 2;
  MeshRunner runner(testing::finish(b), opt);
  const Full xf = random_full({16, 32}, 1), wf = random_full({32, 12}, 2);
  auto params = [&] {
    std::vector<std::vector<Tensor>> p(4);
    for (int d = 0; d < 4; ++d) {
      const Full xs = chunk(xf, 1, 4, d), ws = chunk(wf, 0, 4, d);
      p[d].push_back(Tensor::from_values(f32(xs.shape), xs.v));
      p[d].push_back(Tensor::from_values(f32(ws.shape), ws.v));
    }
    return p;
  };
  std::vector<double> want(16 * 12);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 12; ++j) {
      double s = 0;
      for (int k = 0; k < 32; ++k) s += double(xf.v[i * 32 + k]) * wf.v[k * 12 + j];
      want[i * 12 + j] = std::tanh(s);
    }
  std::vector<float> first;
  for (int run = 0; run < 2; ++run) {
    Result<std::vector<std::vector<Tensor>>> r = runner.run(params());
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    for (int d = 0; d < 4; ++d) {
      testing::expect_near((*r)[d][0].to_vector(), want, 1e-3, 1e-3, cat("device ", d));
      if (d > 0) testing::expect_equal((*r)[d][0].to_vector(), (*r)[0][0].to_vector());
    }
    if (run == 0)
      first = (*r)[0][0].to_vector();
    else
      testing::expect_equal((*r)[0][0].to_vector(), first, "second run");
    EXPECT_GT(runner.stats(3).seconds_by_op[static_cast<size_t>(OpKind::kAllReduce)], 0.0);
  }
}

TEST(CollectiveOps, WithoutADeviceOnlySingleMemberGroupsRun) {
  // Group of 2: a clear error. Group of 1 (mesh 1x1, or axes of extent 1): a copy.
  Builder b("g");
  Value x = b.parameter("x", f32({4, 2}), ParamRole::kInput);
  b.output("y", b.name(b.emit(OpKind::kAllReduce, std::vector<Value>{x},
                              CollectiveAttrs{{0}, {2, 1}, 0, 0}, nullptr),
                       "summed"));
  Executor ex(testing::finish(b));
  Result<std::vector<Tensor>> r = ex.run({Tensor(f32({4, 2}))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("%summed"), std::string::npos) << r.status().to_string();
  EXPECT_NE(r.status().message().find("no device context"), std::string::npos)
      << r.status().to_string();

  const Tensor in = testing::random_tensor(f32({4, 2}), 3);
  for (OpKind op : {OpKind::kAllReduce, OpKind::kAllGather, OpKind::kReduceScatter,
                    OpKind::kAllToAll, OpKind::kShardSlice, OpKind::kToPartial}) {
    for (const CollectiveAttrs& a :
         {CollectiveAttrs{{0, 1}, {1, 1}, 1, 0}, CollectiveAttrs{{1}, {3, 1}, 0, 1}}) {
      Builder b1("one");
      Value x1 = b1.parameter("x", f32({4, 2}), ParamRole::kInput);
      b1.output("y", b1.emit(op, std::vector<Value>{x1}, a, nullptr));
      Result<std::vector<Tensor>> r1 = Executor(testing::finish(b1)).run({in});
      ASSERT_TRUE(r1.ok()) << op_name(op) << ": " << r1.status().to_string();
      testing::expect_equal((*r1)[0].to_vector(), in.to_vector(), std::string(op_name(op)));
    }
  }
}

TEST(CollectiveOps, AProgramForAnotherMeshIsAnError) {
  Builder b("g");
  Value x = b.parameter("x", f32({4, 4}), ParamRole::kInput);
  b.output("y", b.emit(OpKind::kAllGather, std::vector<Value>{x},
                       CollectiveAttrs{{1}, {2, 2}, 0, 0}, nullptr));
  MeshRunner runner(testing::finish(b), MeshRunOptions{{1, 4}});
  std::vector<std::vector<Tensor>> params(4);
  for (auto& p : params) p.push_back(Tensor(f32({4, 4})));
  Result<std::vector<std::vector<Tensor>>> r = runner.run(std::move(params));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is for mesh [2,2], but this device is in mesh [1,4]"),
            std::string::npos)
      << r.status().to_string();
}

TEST(CollectiveOps, AFailingDeviceFailsTheRunWithoutHanging) {
  // Device 3 gets a parameter of the wrong shape: its executor fails before the all_reduce,
  // which the other devices are waiting in. The run fails quickly (the timeout is long), and
  // the runner works again afterwards.
  Builder b("g");
  Value x = b.parameter("x", f32({4}), ParamRole::kInput);
  b.output("y", b.emit(OpKind::kAllReduce, std::vector<Value>{x},
                       CollectiveAttrs{{0, 1}, {2, 2}, 0, 0}, nullptr));
  MeshRunOptions opt{{2, 2}};
  opt.timeout_s = 60;
  MeshRunner runner(testing::finish(b), opt);
  auto params = [](bool bad) {
    std::vector<std::vector<Tensor>> p(4);
    for (int d = 0; d < 4; ++d)
      p[d].push_back(Tensor::from_values(f32({bad && d == 3 ? 5 : 4}),
                                         std::vector<float>(bad && d == 3 ? 5 : 4, float(d))));
    return p;
  };
  const auto t0 = std::chrono::steady_clock::now();
  Result<std::vector<std::vector<Tensor>>> r = runner.run(params(true));
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_FALSE(r.ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("rank 3: device (1,1): parameter %x"), std::string::npos) << msg;
  EXPECT_LT(elapsed, 20.0);
  // Wrong number of devices' parameters.
  EXPECT_FALSE(runner.run(std::vector<std::vector<Tensor>>(3)).ok());
  // And it runs again.
  Result<std::vector<std::vector<Tensor>>> ok = runner.run(params(false));
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  for (int d = 0; d < 4; ++d)
    testing::expect_equal((*ok)[d][0].to_vector(), std::vector<float>(4, 6.0f));
}

}  // namespace
}  // namespace alpa
