// Cross-mesh resharding: plans tile every destination block exactly once, real data arrives
// bit-exact over the threads backend (disjoint, overlapping and identical placements), the
// local all-gather layout restores the destination layout with all-gathers only, senders are
// load-balanced, errors explain themselves, and the link model prices the plans sensibly.
#include "alpa/runtime/transfer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <optional>

#include "alpa/cost/transfer_cost.h"
#include "alpa/runtime/shard.h"
#include "alpa/runtime/threads_communicator.h"
#include "alpa/sharding/reshard.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

constexpr int kTag = 7;

ShardingSpec spec(const char* text) {
  return ShardingSpec::parse(text).value();
}

// Element i holds i (exact in fp32 for these sizes).
Tensor iota(const Shape& shape) {
  TensorType t{DType::kF32, shape};
  std::vector<float> v(static_cast<size_t>(t.num_elements()));
  std::iota(v.begin(), v.end(), 0.0f);
  return Tensor::from_values(t, std::move(v));
}

PlacedMesh placement(MeshShape shape, int first) {
  PlacedMesh p{shape, {}};
  for (int i = 0; i < shape[0] * shape[1]; ++i) p.devices.push_back(first + i);
  return p;
}

MeshCoords coords(const PlacedMesh& p, int64_t index) {
  return {index / p.shape[1], index % p.shape[1]};
}

int world_size(const CrossMeshPlan& plan) {
  int w = 0;
  for (int r : plan.src.devices) w = std::max(w, r + 1);
  for (int r : plan.dst.devices) w = std::max(w, r + 1);
  return w;
}

// Runs the plan on a ThreadWorld with real data cut from `full`; returns each destination
// device's received block, in placement order.
Result<std::vector<Tensor>> exchange(const CrossMeshPlan& plan, const Tensor& full) {
  ThreadWorld world(world_size(plan), /*timeout_s=*/20);
  std::vector<std::optional<Tensor>> got(static_cast<size_t>(world.size()));
  Status s = world.run([&](int rank, Communicator& comm) -> Status {
    std::optional<Tensor> local;
    const int64_t si = plan.src.index_of(rank);
    if (si >= 0) {
      local = shard_tensor(full, plan.src_spec, plan.src.shape, coords(plan.src, si));
      ALPA_RETURN_IF_ERROR(send_cross_mesh(plan, rank, *local, comm, kTag));
    }
    if (plan.dst.index_of(rank) >= 0) {
      ALPA_ASSIGN_OR_RETURN(Tensor t,
                            recv_cross_mesh(plan, rank, comm, kTag, local ? &*local : nullptr));
      got[rank] = std::move(t);
    }
    return ok_status();
  });
  if (!s.ok()) return s;
  std::vector<Tensor> out;
  for (int r : plan.dst.devices) out.push_back(std::move(*got[r]));
  return out;
}

// Every destination block equals the receive layout's block of `full`, the blocks assemble
// to `full`, and the restoring reshard on the destination mesh is all-gathers only.
void expect_delivered(const CrossMeshPlan& plan, const Tensor& full) {
  SCOPED_TRACE(to_string(plan));
  Result<std::vector<Tensor>> got = exchange(plan, full);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  std::vector<const Tensor*> blocks;
  for (size_t i = 0; i < got->size(); ++i) {
    const Tensor want = shard_tensor(full, plan.receive_spec, plan.dst.shape, coords(plan.dst, i));
    ASSERT_EQ((*got)[i].shape(), want.shape()) << "dst rank " << plan.dst.devices[i];
    EXPECT_EQ((*got)[i].to_vector(), want.to_vector()) << "dst rank " << plan.dst.devices[i];
    blocks.push_back(&(*got)[i]);
  }
  Result<Tensor> whole = assemble_tensor(blocks, plan.receive_spec, plan.dst.shape, full.type());
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  EXPECT_EQ(whole->to_vector(), full.to_vector());
  Result<std::vector<ReshardStep>> steps =
      plan_reshard(plan.receive_spec, plan.dst_spec, plan.shape, plan.dst.shape);
  ASSERT_TRUE(steps.ok()) << steps.status().to_string();
  for (const ReshardStep& s : *steps) EXPECT_EQ(s.kind, ReshardKind::kAllGather) << s.to_string();
  if (plan.receive_spec == plan.dst_spec) {
    EXPECT_TRUE(steps->empty());
  }
}

// Checks the plan's invariants without running it: per destination rank the boxes tile its
// receive block exactly once; each box lies in its sender's source block; sorted order.
void expect_plan_invariants(const CrossMeshPlan& plan) {
  SCOPED_TRACE(to_string(plan));
  const ShardingSpec src_c = plan.src_spec.canonical(plan.src.shape);
  const ShardingSpec recv_c = plan.receive_spec.canonical(plan.dst.shape);
  ASSERT_TRUE(plan.receive_spec.validate(plan.shape, plan.dst.shape).ok());
  const Shape src_local = src_c.local_shape(plan.shape, plan.src.shape);
  const Shape recv_local = recv_c.local_shape(plan.shape, plan.dst.shape);
  const int64_t r = static_cast<int64_t>(plan.shape.size());
  for (size_t i = 1; i < plan.transfers.size(); ++i) {
    const CrossMeshTransfer &a = plan.transfers[i - 1], &b = plan.transfers[i];
    EXPECT_TRUE(a.dst_rank < b.dst_rank ||
                (a.dst_rank == b.dst_rank && a.box.offset < b.box.offset))
        << "transfers out of order at " << i;
  }
  for (int64_t di = 0; di < static_cast<int64_t>(plan.dst.devices.size()); ++di) {
    const int me = plan.dst.devices[di];
    const std::vector<int64_t> off =
        shard_offsets(recv_c, plan.shape, plan.dst.shape, coords(plan.dst, di));
    std::vector<int> cover(static_cast<size_t>(num_elements(recv_local)), 0);
    for (const CrossMeshTransfer& t : plan.transfers) {
      if (t.dst_rank != me) continue;
      ASSERT_EQ(static_cast<int64_t>(t.box.offset.size()), r);
      const int64_t si = plan.src.index_of(t.src_rank);
      ASSERT_GE(si, 0) << "sender " << t.src_rank << " is not in the source mesh";
      const std::vector<int64_t> soff =
          shard_offsets(src_c, plan.shape, plan.src.shape, coords(plan.src, si));
      for (int64_t d = 0; d < r; ++d) {
        EXPECT_GE(t.box.offset[d], soff[d]);
        EXPECT_LE(t.box.offset[d] + t.box.extent[d], soff[d] + src_local[d]);
        EXPECT_GE(t.box.offset[d], off[d]);
        EXPECT_LE(t.box.offset[d] + t.box.extent[d], off[d] + recv_local[d]);
      }
      // Mark the box's elements in the destination block.
      std::vector<int64_t> idx(static_cast<size_t>(r), 0);
      for (int64_t k = 0; k < t.box.elements(); ++k) {
        int64_t l = 0;
        for (int64_t d = 0; d < r; ++d) l = l * recv_local[d] + (t.box.offset[d] - off[d] + idx[d]);
        ++cover[l];
        for (int64_t d = r; d-- > 0;) {
          if (++idx[d] < t.box.extent[d]) break;
          idx[d] = 0;
        }
      }
    }
    for (size_t l = 0; l < cover.size(); ++l)
      ASSERT_EQ(cover[l], 1) << "dst rank " << me << " element " << l;
  }
}

CrossMeshPlan plan_or_die(const Shape& shape, const PlacedMesh& src, const char* src_spec,
                          const PlacedMesh& dst, const char* dst_spec, bool local_all_gather) {
  CrossMeshOptions o;
  o.local_all_gather = local_all_gather;
  Result<CrossMeshPlan> p = plan_cross_mesh(shape, src, spec(src_spec), dst, spec(dst_spec), o);
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return std::move(p).value();
}

struct Case {
  Shape shape;
  MeshShape src_mesh;
  const char* src_spec;
  MeshShape dst_mesh;
  const char* dst_spec;
};

const std::vector<Case>& cases() {
  static const std::vector<Case> kCases = {
      {{8, 6}, {1, 2}, "RS1", {2, 2}, "S0S1"},   {{8, 6}, {1, 2}, "S1R", {2, 2}, "RR"},
      {{8, 12}, {2, 2}, "S0S1", {1, 4}, "RS1"},  {{8, 12}, {2, 2}, "S01R", {1, 4}, "S1R"},
      {{6, 4}, {2, 1}, "S0R", {1, 2}, "RS1"},    {{6, 4}, {2, 1}, "S0R", {1, 2}, "RR"},
      {{4, 8}, {1, 1}, "RR", {2, 4}, "S0S1"},    {{4, 8}, {1, 1}, "RR", {2, 4}, "RR"},
      {{4, 8}, {2, 4}, "S0S1", {1, 1}, "RR"},    {{8, 6}, {2, 2}, "S0R", {2, 2}, "RS1"},
      {{8, 6}, {2, 2}, "RR", {2, 2}, "S01R"},    {{8, 8}, {2, 2}, "S1S0", {2, 2}, "S0S1"},
      {{9, 15}, {3, 1}, "S0R", {1, 3}, "RS1"},    // odd but divisible
      {{10, 9}, {2, 3}, "S0S1", {3, 2}, "S1S0"},  // odd but divisible
      {{15, 6}, {1, 3}, "S1R", {3, 2}, "RR"},    {{4, 6, 10}, {2, 2}, "S0RS1", {1, 2}, "RS1R"},
      {{12}, {1, 4}, "S1", {2, 2}, "S01"},       {{}, {2, 2}, "()", {1, 2}, "()"},
  };
  return kCases;
}

TEST(CrossMesh, DisjointMeshesDeliverExactBlocks) {
  for (const Case& c : cases()) {
    for (bool lag : {false, true}) {
      SCOPED_TRACE(cat(shape_to_string(c.shape), " ", c.src_spec, " -> ", c.dst_spec,
                       lag ? " (local all-gather)" : ""));
      const PlacedMesh src = placement(c.src_mesh, 0);
      const PlacedMesh dst = placement(c.dst_mesh, static_cast<int>(src.devices.size()));
      const CrossMeshPlan plan = plan_or_die(c.shape, src, c.src_spec, dst, c.dst_spec, lag);
      if (!lag) {
        EXPECT_EQ(plan.receive_spec, spec(c.dst_spec));
      }
      expect_plan_invariants(plan);
      expect_delivered(plan, iota(c.shape));
    }
  }
}

TEST(CrossMesh, OverlappingAndPermutedPlacementsDeliverExactBlocks) {
  for (const Case& c : cases()) {
    for (bool lag : {false, true}) {
      SCOPED_TRACE(cat(shape_to_string(c.shape), " ", c.src_spec, " -> ", c.dst_spec,
                       lag ? " (local all-gather)" : ""));
      const PlacedMesh src = placement(c.src_mesh, 0);
      // Half overlapping, and the destination's ranks listed in reverse order.
      PlacedMesh dst = placement(c.dst_mesh, static_cast<int>(src.devices.size() / 2));
      std::reverse(dst.devices.begin(), dst.devices.end());
      const CrossMeshPlan half = plan_or_die(c.shape, src, c.src_spec, dst, c.dst_spec, lag);
      expect_plan_invariants(half);
      expect_delivered(half, iota(c.shape));
      // Starting on the same ranks (identical when the meshes have the same size).
      const PlacedMesh same = placement(c.dst_mesh, 0);
      const CrossMeshPlan full = plan_or_die(c.shape, src, c.src_spec, same, c.dst_spec, lag);
      expect_plan_invariants(full);
      expect_delivered(full, iota(c.shape));
    }
  }
}

TEST(CrossMesh, IdenticalPlacementAndLayoutIsAllLocalCopies) {
  const PlacedMesh p = placement({2, 2}, 0);
  const CrossMeshPlan plan = plan_or_die({8, 6}, p, "S0S1", p, "S0S1", true);
  ASSERT_EQ(plan.transfers.size(), 4u);
  for (const CrossMeshTransfer& t : plan.transfers) EXPECT_EQ(t.src_rank, t.dst_rank);
  EXPECT_EQ(plan.bytes_moved(4), 0);
  expect_delivered(plan, iota({8, 6}));
  const Cluster c = with_devices(cluster_preset("p3.16xlarge").value(), 8).value();
  EXPECT_EQ(cross_mesh_seconds(plan, 4, c), 0.0);
}

TEST(CrossMesh, DestinationHoldingTheBlockCopiesFromItself) {
  const Shape shape{8, 6};
  const int64_t m = num_elements(shape) * 4;
  const PlacedMesh p = placement({2, 2}, 0);
  CrossMeshOptions o;
  o.local_all_gather = false;
  const CrossMeshPlan self = plan_cross_mesh(shape, p, spec("RR"), p, spec("RR"), o).value();
  ASSERT_EQ(self.transfers.size(), 4u);
  for (const CrossMeshTransfer& t : self.transfers) EXPECT_EQ(t.src_rank, t.dst_rank);
  EXPECT_EQ(self.bytes_moved(4), 0);
  expect_delivered(self, iota(shape));
  // Without the preference the greedy choice ignores who is asking: rank 0 serves itself and
  // rank 1, ranks 1 and 2 serve ranks 2 and 3.
  o.prefer_self = false;
  const CrossMeshPlan greedy = plan_cross_mesh(shape, p, spec("RR"), p, spec("RR"), o).value();
  EXPECT_EQ(greedy.bytes_moved(4), 3 * m);
  EXPECT_EQ(greedy.bytes_sent_by(0, 4), m);
  expect_delivered(greedy, iota(shape));
}

TEST(CrossMesh, ReplicatedSourceSpreadsBytesOverReplicas) {
  const Shape shape{8, 6};
  const int64_t m = num_elements(shape) * 4;
  const PlacedMesh src = placement({2, 2}, 0), dst = placement({2, 2}, 4);
  for (const char* dst_spec : {"RR", "S0R", "S01R", "S0S1"}) {
    for (bool lag : {false, true}) {
      SCOPED_TRACE(cat(dst_spec, lag ? " (local all-gather)" : ""));
      const CrossMeshPlan plan = plan_or_die(shape, src, "RR", dst, dst_spec, lag);
      const int64_t total = plan.bytes_moved(4);
      int64_t most = 0;
      for (int r : src.devices) {
        EXPECT_GT(plan.bytes_sent_by(r, 4), 0) << "rank " << r << " sends nothing";
        most = std::max(most, plan.bytes_sent_by(r, 4));
      }
      // Four destination pieces of equal size go to four different replicas.
      EXPECT_EQ(most * 4, total);
      EXPECT_LT(most, total);
      expect_delivered(plan, iota(shape));
    }
  }
  // Fully replicated on both sides without the optimisation: each replica sends one copy.
  const CrossMeshPlan rr = plan_or_die(shape, src, "RR", dst, "RR", false);
  EXPECT_EQ(rr.bytes_moved(4), 4 * m);
  for (int r : src.devices) EXPECT_EQ(rr.bytes_sent_by(r, 4), m);
}

TEST(CrossMesh, LoadBalanceTiesGoToTheLowestRank) {
  // One destination device, a source replicated on ranks 3 and 1: rank 1 is chosen.
  const PlacedMesh src{{1, 2}, {3, 1}}, dst{{1, 1}, {5}};
  const CrossMeshPlan plan = plan_or_die({4}, src, "R", dst, "R", true);
  ASSERT_EQ(plan.transfers.size(), 1u);
  EXPECT_EQ(plan.transfers[0].src_rank, 1);
}

TEST(CrossMesh, LocalAllGatherSpec) {
  struct Want {
    Shape shape;
    MeshShape mesh;
    const char* dst;
    const char* receive;
  };
  for (const Want& w : std::vector<Want>{
           {{8, 6}, {2, 2}, "RR", "S0S1"},    // largest local extent: 6 > 8/2
           {{8, 2}, {2, 2}, "RR", "S01R"},    // axis 1 joins the S0 dim (S01)
           {{8, 6}, {2, 2}, "RS0", "S1S0"},   // S01 on dim 1 would not divide 6
           {{8, 6}, {2, 2}, "S1R", "S1S0"},   // axis 0 may not join an S1 dim
           {{3, 5}, {2, 2}, "RR", "RR"},      // nothing divides: stays replicated
           {{8, 6}, {1, 4}, "S0R", "S1R"},    // axis 0 has extent 1: only axis 1 is added
           {{8, 6}, {2, 2}, "S0S1", "S0S1"},  // fully split already
           {{6, 9}, {3, 1}, "RR", "RS0"},
           {{4, 4}, {2, 2}, "RR", "S0S1"},  // ties go to the lowest dim
           {{6, 6}, {1, 2}, "RR", "S1R"},   // 9 > 6
           {{}, {2, 2}, "()", "()"},        // a scalar has no dim to split
       }) {
    SCOPED_TRACE(cat(shape_to_string(w.shape), " ", w.mesh[0], "x", w.mesh[1], " ", w.dst));
    const ShardingSpec got = local_all_gather_spec(spec(w.dst), w.shape, w.mesh);
    EXPECT_EQ(got.to_string(), w.receive);
    ASSERT_TRUE(got.validate(w.shape, w.mesh).ok());
    Result<std::vector<ReshardStep>> steps = plan_reshard(got, spec(w.dst), w.shape, w.mesh);
    ASSERT_TRUE(steps.ok()) << steps.status().to_string();
    for (const ReshardStep& s : *steps) EXPECT_EQ(s.kind, ReshardKind::kAllGather);
  }
}

TEST(CrossMesh, LocalAllGatherMovesFewerBytesAndTime) {
  const Cluster c = with_devices(cluster_preset("p3.16xlarge").value(), 16).value();
  ASSERT_EQ(c.hosts, 2);
  const PlacedMesh src = placement({2, 2}, 0), dst = placement({2, 4}, 8);  // other host
  for (const char* dst_spec : {"RR", "S0R", "RS1"}) {
    SCOPED_TRACE(dst_spec);
    const CrossMeshPlan plain = plan_or_die({16, 8}, src, "S0S1", dst, dst_spec, false);
    const CrossMeshPlan lag = plan_or_die({16, 8}, src, "S0S1", dst, dst_spec, true);
    EXPECT_NE(lag.receive_spec, lag.dst_spec);
    EXPECT_LT(lag.bytes_moved(4), plain.bytes_moved(4));
    EXPECT_EQ(lag.bytes_moved(4), num_elements({16, 8}) * 4);  // each byte crosses once
    EXPECT_LT(cross_mesh_seconds(lag, 4, c), cross_mesh_seconds(plain, 4, c));
  }
}

TEST(CrossMesh, IntraHostIsCheaperThanInterHost) {
  const Cluster c = with_devices(cluster_preset("p3.16xlarge").value(), 16).value();
  ASSERT_EQ(c.devices_per_host, 8);
  const PlacedMesh src = placement({2, 2}, 0);
  const Shape shape{256, 128};
  const CrossMeshPlan intra = plan_or_die(shape, src, "S0R", placement({2, 2}, 4), "RS1", true);
  const CrossMeshPlan inter = plan_or_die(shape, src, "S0R", placement({2, 2}, 8), "RS1", true);
  EXPECT_EQ(intra.bytes_moved(4), inter.bytes_moved(4));
  const double ti = cross_mesh_seconds(intra, 4, c), te = cross_mesh_seconds(inter, 4, c);
  EXPECT_GT(ti, 0);
  EXPECT_LT(ti, te);
  // Inter-host: every byte leaves host 0 through one NIC.
  EXPECT_GE(te, static_cast<double>(inter.bytes_moved(4)) / c.inter_host.bandwidth);
}

TEST(CrossMesh, ToStringGolden) {
  const CrossMeshPlan plan =
      plan_or_die({4, 2}, placement({2, 1}, 0), "S0R", placement({1, 2}, 2), "RR", true);
  EXPECT_EQ(to_string(plan),
            "cross-mesh [4,2]: S0R on 2x1@0 -> RR on 1x2@2 (receive S1R, then all-gather "
            "on the destination); 2 transfer(s), 8 element(s) between ranks, 0 copied locally\n"
            "  0 -> 2 [0:2,0:2]\n"
            "  1 -> 3 [2:4,0:2]\n");
}

// Random valid spec on `mesh` for `shape`: each axis goes to a random dim or nowhere.
ShardingSpec random_spec(Rng& rng, const Shape& shape, const MeshShape& mesh) {
  for (int attempt = 0; attempt < 20; ++attempt) {
    ShardingSpec s = ShardingSpec::replicated(static_cast<int64_t>(shape.size()));
    for (int axis : {0, 1}) {
      const int64_t d = static_cast<int64_t>(rng.below(shape.size() + 1)) - 1;
      if (d >= 0) s.dims[d] |= axis == 0 ? kAxis0 : kAxis1;
    }
    if (s.validate(shape, mesh).ok()) return s;
  }
  return ShardingSpec::replicated(static_cast<int64_t>(shape.size()));
}

TEST(CrossMesh, RandomPlansTileExactlyOnce) {
  const std::vector<MeshShape> meshes = {{1, 1}, {1, 2}, {2, 1}, {2, 2}, {1, 4}, {4, 1},
                                         {2, 4}, {4, 2}, {2, 3}, {3, 2}, {1, 3}};
  const std::vector<int64_t> extents = {1, 2, 3, 4, 6, 8, 12};
  Rng rng(20220711);
  int ran = 0;
  for (int iter = 0; iter < 400; ++iter) {
    Shape shape(rng.below(4));
    for (int64_t& e : shape) e = extents[rng.below(extents.size())];
    const MeshShape ms = meshes[rng.below(meshes.size())];
    const MeshShape md = meshes[rng.below(meshes.size())];
    const int ns = static_cast<int>(ms[0] * ms[1]), nd = static_cast<int>(md[0] * md[1]);
    const int overlap = static_cast<int>(rng.below(std::min(ns, nd) + 1));
    std::vector<int> perm(static_cast<size_t>(ns + nd - overlap));
    std::iota(perm.begin(), perm.end(), 0);
    for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
    const PlacedMesh src{ms, {perm.begin(), perm.begin() + ns}};
    const PlacedMesh dst{md, {perm.begin() + ns - overlap, perm.begin() + ns - overlap + nd}};
    const ShardingSpec ss = random_spec(rng, shape, ms), ds = random_spec(rng, shape, md);
    CrossMeshOptions o;
    o.local_all_gather = rng.below(2) == 1;
    o.prefer_self = rng.below(4) != 0;
    SCOPED_TRACE(cat("iter ", iter, ": ", shape_to_string(shape), " ", ss.to_string(), " on ",
                     src.to_string(), " -> ", ds.to_string(), " on ", dst.to_string()));
    Result<CrossMeshPlan> plan = plan_cross_mesh(shape, src, ss, dst, ds, o);
    ASSERT_TRUE(plan.ok()) << plan.status().to_string();
    expect_plan_invariants(*plan);
    // The destination layout's split axes are kept; unused axes are added only under the
    // optimisation, and never into an axis-1-then-axis-0 order.
    EXPECT_EQ(plan->receive_spec.split_axes() & ds.canonical(md).split_axes(),
              ds.canonical(md).split_axes());
    if (!o.local_all_gather) {
      EXPECT_EQ(plan->receive_spec, ds);
    }
    // Every element crosses at most once per destination replica; under the optimisation
    // with disjoint meshes, each element crosses exactly once when every axis found a dim.
    if (o.local_all_gather && overlap == 0 &&
        plan->receive_spec.canonical(md).shards(md) == md[0] * md[1]) {
      EXPECT_EQ(plan->bytes_moved(1), num_elements(shape));
    }
    if (iter % 4 == 0) {
      ++ran;
      expect_delivered(*plan, iota(shape));
    }
    if (::testing::Test::HasFatalFailure()) return;
  }
  EXPECT_EQ(ran, 100);
}

TEST(CrossMeshErrors, PartialSumsAreRejected) {
  const PlacedMesh src = placement({2, 2}, 0), dst = placement({2, 2}, 4);
  Result<CrossMeshPlan> a =
      plan_cross_mesh({8, 6}, src, spec("S0R+P1"), dst, spec("RR"), CrossMeshOptions{});
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(a.status().message().find("source layout S0R+P1"), std::string::npos);
  EXPECT_NE(a.status().message().find("resolve partial sums before sending"), std::string::npos)
      << a.status().to_string();
  EXPECT_FALSE(a.status().hint().empty());
  Result<CrossMeshPlan> b =
      plan_cross_mesh({8, 6}, src, spec("RR"), dst, spec("RR+P0"), CrossMeshOptions{});
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("destination layout RR+P0"), std::string::npos);
  EXPECT_NE(b.status().message().find("resolve partial sums before sending"), std::string::npos);
}

TEST(CrossMeshErrors, SpecMustMatchShapeAndMesh) {
  const PlacedMesh src = placement({2, 2}, 0), dst = placement({2, 2}, 4);
  Result<CrossMeshPlan> a = plan_cross_mesh({8}, src, spec("S0R"), dst, spec("R"));
  ASSERT_FALSE(a.ok());
  EXPECT_NE(a.status().message().find("cross-mesh source layout"), std::string::npos);
  EXPECT_NE(a.status().message().find("has 2 dim(s) but the tensor is [8]"), std::string::npos)
      << a.status().to_string();
  Result<CrossMeshPlan> b = plan_cross_mesh({5, 4}, src, spec("RR"), dst, spec("S0R"));
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("cross-mesh destination layout"), std::string::npos);
  EXPECT_NE(b.status().message().find("does not divide"), std::string::npos)
      << b.status().to_string();
}

TEST(CrossMeshErrors, BadPlacements) {
  const PlacedMesh ok = placement({2, 2}, 0);
  struct Bad {
    PlacedMesh p;
    const char* says;
  };
  for (const Bad& bad : std::vector<Bad>{
           {PlacedMesh{{2, 2}, {4, 5, 6}}, "lists 3 rank(s) for a 2x2 mesh, which needs 4"},
           {PlacedMesh{{2, 2}, {4, 5, 5, 6}}, "rank 5 appears twice"},
           {PlacedMesh{{1, 2}, {4, -1}}, "rank -1 is negative"},
           {PlacedMesh{{0, 2}, {}}, "mesh extents must be >= 1"},
       }) {
    Result<CrossMeshPlan> r = plan_cross_mesh({8, 6}, ok, spec("RR"), bad.p, spec("RR"));
    ASSERT_FALSE(r.ok()) << bad.says;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find("cross-mesh destination placement"), std::string::npos);
    EXPECT_NE(r.status().message().find(bad.says), std::string::npos) << r.status().to_string();
    EXPECT_FALSE(r.status().hint().empty());
    Result<CrossMeshPlan> s = plan_cross_mesh({8, 6}, bad.p, spec("RR"), ok, spec("RR"));
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.status().message().find("cross-mesh source placement"), std::string::npos);
  }
}

TEST(CrossMeshErrors, ExecutionChecksItsInputs) {
  const Shape shape{8, 6};
  const Tensor full = iota(shape);
  ThreadWorld world(8, /*timeout_s=*/10);
  // Wrong local block shape on the sender.
  {
    const CrossMeshPlan plan =
        plan_or_die(shape, placement({2, 2}, 0), "S0R", placement({2, 2}, 4), "RR", true);
    Status s = send_cross_mesh(plan, 0, full, world.comm(0), kTag);
    ASSERT_FALSE(s.ok());
    EXPECT_NE(s.message().find("holds [8,6], but its block"), std::string::npos) << s.to_string();
  }
  // A rank outside the destination cannot receive.
  {
    const CrossMeshPlan plan =
        plan_or_die(shape, placement({2, 2}, 0), "S0R", placement({2, 2}, 4), "RR", true);
    Result<Tensor> r = recv_cross_mesh(plan, 0, world.comm(0), kTag);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("not in the destination placement"), std::string::npos);
  }
  // A self-transfer needs the local source block.
  {
    const PlacedMesh p = placement({2, 2}, 0);
    const CrossMeshPlan plan = plan_or_die(shape, p, "S0R", p, "S0R", true);
    Result<Tensor> r = recv_cross_mesh(plan, 0, world.comm(0), kTag);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("no local source block"), std::string::npos);
    EXPECT_NE(r.status().hint().find("local_src"), std::string::npos);
  }
  // Tampered plans: a gap, and an overlap.
  {
    CrossMeshPlan plan =
        plan_or_die(shape, placement({2, 2}, 0), "S0R", placement({2, 2}, 4), "RS1", false);
    CrossMeshPlan gap = plan;
    gap.transfers.erase(gap.transfers.begin());
    const int me = plan.transfers[0].dst_rank;
    Result<Tensor> r = recv_cross_mesh(gap, me, world.comm(me), kTag);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("is not covered by any transfer"), std::string::npos)
        << r.status().to_string();
    CrossMeshPlan twice = plan;
    twice.transfers.push_back(plan.transfers[0]);
    r = recv_cross_mesh(twice, me, world.comm(me), kTag);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("overlaps another box"), std::string::npos);
  }
}

}  // namespace
}  // namespace alpa
