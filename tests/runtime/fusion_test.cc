// Elementwise fusion (fusion.h) and the threaded GEMM (gemm.h): fused programs give the same
// values as one-op-at-a-time execution, generators are not materialised, long chains are split
// into few programs within the instruction budget, and split / batched GEMMs equal a naive loop.
#include <gtest/gtest.h>

#include "alpa/autodiff/train_step.h"
#include "alpa/models/gpt.h"
#include "alpa/runtime/fusion.h"
#include "alpa/runtime/init.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;
using testing::random_tensor;

std::vector<Tensor> run(const Graph& g, std::vector<Tensor> params, bool fuse, int threads,
                        ExecutorStats* stats = nullptr) {
  ExecutorOptions o;
  o.num_threads = threads;
  o.fuse_elementwise = fuse;
  Executor ex(g, o);
  Result<std::vector<Tensor>> r = ex.run(std::move(params));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (stats) *stats = ex.stats();
  return r.ok() ? std::move(r).value() : std::vector<Tensor>{};
}

void expect_bitwise_equal(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i)
    EXPECT_EQ(a[i].to_vector(), b[i].to_vector()) << "output " << i;
}

// A layer-norm + GELU + masked-softmax style graph with broadcasts, splats, iota and select.
Graph mixed_graph() {
  Builder b("mixed");
  const Shape s = {4, 6, 32};
  Value x = b.parameter("x", f32(s), ParamRole::kInput);
  Value g = b.parameter("g", f32({32}), ParamRole::kInput);
  Value mean = b.scale(b.reduce_sum(x, {2}), 1.0 / 32);
  Value c = b.sub(x, b.broadcast(mean, s, {0, 1}));
  Value var = b.scale(b.reduce_sum(b.mul(c, c), {2}), 1.0 / 32);
  Value y = b.mul(b.mul(c, b.broadcast(b.rsqrt(b.add_scalar(var, 1e-5)), s, {0, 1})),
                  b.broadcast_to(g, s));
  Value gelu = b.mul(b.scale(y, 0.5), b.add_scalar(b.erf(b.scale(y, 0.7071)), 1.0));
  Value keep = b.compare(b.iota({DType::kI32, s}, 2), b.iota({DType::kI32, s}, 1), CompareDir::kLe);
  Value masked = b.select(keep, gelu, b.full_like(gelu, -1e9));
  b.output("y", b.exp(b.sub(masked, b.broadcast(b.reduce_max(masked, {2}), s, {0, 1}))));
  b.output("c", c);  // an intermediate that is also an output stays materialised
  return testing::finish(b);
}

TEST(Fusion, SameValuesAsUnfusedExecution) {
  Graph g = mixed_graph();
  for (int threads : {1, 2}) {
    std::vector<Tensor> p = {random_tensor(f32({4, 6, 32}), 1), random_tensor(f32({32}), 2)};
    expect_bitwise_equal(run(g, p, true, threads), run(g, p, false, threads));
  }
}

TEST(Fusion, PlanInlinesSingleUseChainsAndSkipsGenerators) {
  Graph g = mixed_graph();
  FusionPlan plan = plan_fusion(g);
  int skipped_generators = 0, skipped = 0;
  for (ValueId v = 0; v < g.size(); ++v) {
    if (!plan.skipped[v]) continue;
    ++skipped;
    const OpKind op = g.node(v).op;
    skipped_generators +=
        op == OpKind::kConstant || op == OpKind::kIota || op == OpKind::kBroadcast;
  }
  EXPECT_GT(skipped_generators, 5);
  EXPECT_GT(skipped, skipped_generators);  // and inlined elementwise nodes
  // The output `c` must be materialised: it is a graph output.
  const ValueId c = g.outputs()[1].value;
  EXPECT_FALSE(plan.skipped[c]);
  // Every program's members are elementwise and the root is its last member.
  for (const FusedProgram& p : plan.programs) {
    EXPECT_EQ(p.members.front(), p.root);
    EXPECT_LE(static_cast<int>(p.insts.size()), kMaxFusedInsts);
    for (ValueId m : p.members) EXPECT_TRUE(is_elementwise(g.node(m).op));
  }
}

// Planning fusion is linear in the graph: a 100k-op chain (quadratic before: 10k ops took
// 6 s, 100k did not finish in 5 minutes) is cut into budget-sized programs.
TEST(Fusion, HundredThousandOpChainIsPlannedIntoBudgetSizedPrograms) {
  Builder b("long");
  Value x = b.parameter("x", f32({64}), ParamRole::kInput);
  Value v = x;
  for (int i = 0; i < 100000; ++i) v = i % 2 ? b.neg(v) : b.tanh(v);
  b.output("y", v);
  Graph g = testing::finish(b);
  FusionPlan plan = plan_fusion(g);
  EXPECT_GE(plan.programs.size(), 100000u / kMaxFusedInsts);
  EXPECT_LE(plan.programs.size(), 2 * 100000u / (kMaxFusedInsts - 8));
  for (const FusedProgram& p : plan.programs) EXPECT_LE(p.insts.size(), size_t{kMaxFusedInsts});
  std::vector<Tensor> in = {random_tensor(f32({64}), 3)};
  expect_bitwise_equal(run(g, in, true, 1), run(g, in, false, 1));
}

TEST(Fusion, LongChainIsSplitIntoFewProgramsWithLowPeakMemory) {
  // acc = exp(x); 200 times: acc = acc + exp(x) * k  -> a tree far over the budget.
  const int64_t n = int64_t{1} << 16;
  Builder b("chain");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  Value acc = b.exp(x);
  for (int k = 0; k < 200; ++k) acc = b.add(acc, b.mul(b.exp(x), b.full_like(x, k % 7)));
  b.output("y", acc);
  Graph g = testing::finish(b);
  FusionPlan plan = plan_fusion(g);
  // 200 levels of 4 instructions under a 64-instruction budget: about 14 programs, not 200.
  EXPECT_LE(plan.programs.size(), 20u);
  ExecutorStats fused, plain;
  std::vector<Tensor> p = {random_tensor(f32({n}), 3, -1, 1)};
  expect_bitwise_equal(run(g, p, true, 1, &fused), run(g, p, false, 1, &plain));
  EXPECT_LE(fused.peak_live_bytes, 3 * n * 4);
}

// A whole training step of GPT-tiny: fusion changes no bit of the loss, weights or state.
TEST(Fusion, GptTrainStepIsBitIdentical) {
  GptConfig c = gpt_preset("tiny").value();
  c.batch = 2;
  TrainStep ts = build_train_step(build_gpt(c).value(), {}).value();
  std::vector<Tensor> p = init_parameters(ts.graph, 5);
  ExecutorStats fused, plain;
  expect_bitwise_equal(run(ts.graph, p, true, 2, &fused), run(ts.graph, p, false, 2, &plain));
  EXPECT_GT(fused.fused_nodes, 100);
  EXPECT_LT(fused.peak_live_bytes, plain.peak_live_bytes);
}

// C = A B against a naive loop, for shapes large enough that parallel_gemm splits C across
// threads (along N when N >= M, else along M), for batches spread across threads, and for one
// row (a matrix-vector product).
TEST(Gemm, SplitAndBatchedProductsMatchNaiveLoops) {
  struct Case {
    Shape a, b;
    DotAttrs d;
  };
  const Case cases[] = {
      // Each has >= 2^20 multiply-adds, the threshold for splitting.
      {{130, 100}, {100, 170}, {{}, {}, {1}, {0}}},        // split along N
      {{200, 90}, {90, 60}, {{}, {}, {1}, {0}}},           // split along M
      {{100, 120}, {170, 120}, {{}, {}, {1}, {1}}},        // rhs transposed
      {{90, 200}, {90, 60}, {{}, {}, {0}, {0}}},           // lhs transposed
      {{12, 40, 24}, {12, 24, 36}, {{0}, {0}, {2}, {1}}},  // batched, 12 products
      // One row (matrix-vector products), split along N and not.
      {{1, 300}, {300, 4000}, {{}, {}, {1}, {0}}},
      {{1, 300}, {4000, 300}, {{}, {}, {1}, {1}}},  // rhs transposed
      {{300, 1}, {300, 4000}, {{}, {}, {0}, {0}}},  // lhs transposed
      {{1, 8}, {8, 5}, {{}, {}, {1}, {0}}},
  };
  for (const Case& c : cases) {
    Builder b("gemm");
    Value x = b.parameter("a", f32(c.a), ParamRole::kInput);
    Value y = b.parameter("b", f32(c.b), ParamRole::kInput);
    b.output("c", b.dot_general(x, y, c.d));
    Graph g = testing::finish(b);
    Tensor ta = random_tensor(f32(c.a), 7), tb = random_tensor(f32(c.b), 8);
    const std::vector<float> one = run(g, {ta, tb}, true, 1)[0].to_vector();
    const std::vector<float> two = run(g, {ta, tb}, true, 2)[0].to_vector();
    // Naive reference through the generic formula on the one-thread result's shape.
    const TensorType out_t = g.type(g.outputs()[0].value);
    std::vector<double> ref(static_cast<size_t>(out_t.num_elements()), 0.0);
    const Shape& os = out_t.shape;
    for (int64_t i = 0; i < out_t.num_elements(); ++i) {
      std::vector<int64_t> oi = testing::unflatten(os, i);
      const bool batched = !c.d.lhs_batch.empty();
      const int64_t bi = batched ? oi[0] : 0;
      const int64_t r = oi[batched ? 1 : 0], col = oi[batched ? 2 : 1];
      const int64_t k = c.a[c.d.lhs_contract[0]];
      double s = 0;
      for (int64_t t = 0; t < k; ++t) {
        std::vector<int64_t> ai(c.a.size()), bj(c.b.size());
        if (batched) ai[0] = bj[0] = bi;
        const int64_t lfree = c.d.lhs_contract[0] == static_cast<int64_t>(c.a.size()) - 1
                                  ? static_cast<int64_t>(c.a.size()) - 2
                                  : static_cast<int64_t>(c.a.size()) - 1;
        ai[lfree] = r;
        ai[c.d.lhs_contract[0]] = t;
        const int64_t rfree = c.d.rhs_contract[0] == static_cast<int64_t>(c.b.size()) - 1
                                  ? static_cast<int64_t>(c.b.size()) - 2
                                  : static_cast<int64_t>(c.b.size()) - 1;
        bj[rfree] = col;
        bj[c.d.rhs_contract[0]] = t;
        s += static_cast<double>(ta.data()[testing::flatten(c.a, ai)]) *
             tb.data()[testing::flatten(c.b, bj)];
      }
      ref[i] = s;
    }
    for (size_t i = 0; i < ref.size(); ++i) {
      ASSERT_NEAR(one[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << i;
      ASSERT_NEAR(two[i], ref[i], 1e-4 * (1 + std::abs(ref[i]))) << i;
    }
  }
}

}  // namespace
}  // namespace alpa
