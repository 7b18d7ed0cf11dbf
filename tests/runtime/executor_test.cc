// Executor: user errors come back as Status naming the parameter or node; intermediates are
// freed after their last use and elementwise chains run in place; buffers are recycled; runs
// are bit-identical; two threads agree with one.
#include <cstring>

#include "alpa/runtime/init.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;
using testing::i32;

Graph two_param_graph() {
  Builder b("affine");
  Value x = b.parameter("x", f32({4, 3}), ParamRole::kInput);
  Value w = b.parameter("w", f32({3, 2}), ParamRole::kWeight);
  b.output("y", b.matmul(x, w));
  return testing::finish(b);
}

TEST(Executor, WrongParameterCountIsAnError) {
  Executor ex(two_param_graph());
  Result<std::vector<Tensor>> r = ex.run({Tensor(f32({4, 3}))});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("takes 2 parameter"), std::string::npos) << msg;
  EXPECT_NE(msg.find("%x"), std::string::npos) << msg;
  EXPECT_NE(msg.find("%w"), std::string::npos) << msg;
  EXPECT_NE(msg.find("1 tensor"), std::string::npos) << msg;
}

TEST(Executor, WrongParameterTypeNamesTheParameter) {
  Executor ex(two_param_graph());
  Result<std::vector<Tensor>> r = ex.run({Tensor(f32({4, 3})), Tensor(f32({2, 3}))});
  ASSERT_FALSE(r.ok());
  const std::string msg = r.status().message();
  EXPECT_NE(msg.find("parameter %w"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f32[3,2]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("f32[2,3]"), std::string::npos) << msg;
  // dtype mismatch too
  Result<std::vector<Tensor>> r2 = ex.run({Tensor(i32({4, 3})), Tensor(f32({3, 2}))});
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.status().message().find("parameter %x"), std::string::npos);
  // The executor still works after errors.
  EXPECT_TRUE(ex.run({Tensor(f32({4, 3})), Tensor(f32({3, 2}))}).ok());
}

TEST(Executor, OutOfRangeGatherIndexNamesTheNode) {
  Builder b("emb");
  Value table = b.parameter("table", f32({100, 4}), ParamRole::kWeight);
  Value idx = b.parameter("idx", i32({5}), ParamRole::kInput);
  Value e = b.name(b.gather(table, idx, 0), "emb");
  b.output("y", b.reduce_sum(b.exp(e), {0, 1}));
  Graph g = testing::finish(b);
  Executor ex(g);
  Result<std::vector<Tensor>> r =
      ex.run({Tensor(f32({100, 4})), Tensor::from_values(i32({5}), {1, 2, 3, 100, 4})});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("gather %emb: index 100 out of range [0, 100) at position 3"),
            std::string::npos)
      << r.status().message();
  Result<std::vector<Tensor>> neg =
      ex.run({Tensor(f32({100, 4})), Tensor::from_values(i32({5}), {-1, 2, 3, 4, 5})});
  ASSERT_FALSE(neg.ok());
  EXPECT_NE(neg.status().message().find("index -1"), std::string::npos);
  // Valid indices after the errors.
  Result<std::vector<Tensor>> ok =
      ex.run({Tensor(f32({100, 4})), Tensor::from_values(i32({5}), {0, 99, 3, 4, 5})});
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_FLOAT_EQ(ok->at(0).item(), 20.0f);  // exp(0) * 20 elements
}

TEST(Executor, OutOfRangeScatterIndexNamesTheNode) {
  Builder b("scatter");
  Value idx = b.parameter("idx", i32({3}), ParamRole::kInput);
  Value upd = b.parameter("upd", f32({3, 2}), ParamRole::kInput);
  b.output("y", b.scatter_add(idx, upd, 0, f32({4, 2})));
  Graph g = testing::finish(b);
  Executor ex(g);
  Result<std::vector<Tensor>> r =
      ex.run({Tensor::from_values(i32({3}), {0, 7, 1}), Tensor(f32({3, 2}))});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("scatter_add %2: index 7 out of range [0, 4) at position 1"),
            std::string::npos)
      << r.status().message();
}

TEST(Executor, LongElementwiseChainRunsInPlace) {
  const int64_t n = int64_t{1} << 20;  // 4 MiB per tensor
  const int64_t bytes = n * 4;
  Builder b("chain");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  Value v = b.neg(x);
  for (int i = 0; i < 60; ++i) v = (i % 2 == 0) ? b.neg(v) : b.add(v, v);
  b.output("y", v);
  Graph g = testing::finish(b);
  Executor ex(g);
  Tensor xv = testing::random_tensor(f32({n}), 1);
  Result<std::vector<Tensor>> r = ex.run({xv});
  ASSERT_TRUE(r.ok());
  // In place, exactly one live tensor: the chain's current value (in x's buffer, which became
  // an intermediate). Freeing without in-place would need 2 tensors, keeping everything 61.
  EXPECT_EQ(ex.stats().peak_live_bytes, bytes);
  // Values are right in place: recompute on the host.
  std::vector<float> want = xv.to_vector();
  for (float& w : want) {
    w = -w;
    for (int i = 0; i < 60; ++i) w = (i % 2 == 0) ? -w : w + w;
  }
  testing::expect_equal(r->at(0).to_vector(), want, "chain");
}

// Borrowed parameters are read where they lie: not consumed, never written, even where the
// executor would otherwise run an op in the parameter's buffer (an elementwise op or a reshape
// at its last use), and an output that is the parameter itself is a copy.
TEST(Executor, BorrowedParametersAreReadNotTaken) {
  Builder b("borrow");
  Value x = b.parameter("x", f32({4, 6}), ParamRole::kWeight);
  Value w = b.parameter("w", f32({4, 6}), ParamRole::kWeight);
  Value r = b.reshape(w, {6, 4});
  b.output("y", b.neg(b.add(x, x)));  // x's last use: in place when x is handed over
  b.output("r", r);                   // w's last use: a relabel of its buffer
  b.output("x", x);
  Graph g = testing::finish(b);
  const Tensor tx = testing::random_tensor(f32({4, 6}), 3);
  const Tensor tw = testing::random_tensor(f32({4, 6}), 4);
  Executor handed(g), lent(g);
  Result<std::vector<Tensor>> want = handed.run({tx, tw});
  ASSERT_TRUE(want.ok());
  const std::vector<float> x0 = tx.to_vector(), w0 = tw.to_vector();
  for (int round = 0; round < 2; ++round) {
    Result<std::vector<Tensor>> got = lent.run({Tensor(), Tensor()}, {&tx, &tw});
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    ASSERT_EQ(got->size(), 3u);
    for (size_t o = 0; o < 3; ++o)
      testing::expect_equal(got->at(o).to_vector(), want->at(o).to_vector(), "output");
    EXPECT_EQ(got->at(1).shape(), (Shape{6, 4}));
    testing::expect_equal(tx.to_vector(), x0, "x after the run");
    testing::expect_equal(tw.to_vector(), w0, "w after the run");
  }
  // A borrowed tensor of the wrong type names the parameter.
  const Tensor wrong = testing::random_tensor(f32({2, 2}), 5);
  Result<std::vector<Tensor>> bad = lent.run({Tensor(), Tensor()}, {&wrong, &tw});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("%x"), std::string::npos) << bad.status().message();
}

TEST(Executor, FreesValuesAfterLastUseInABranchyGraph) {
  // y_k = exp(x) * k summed pairwise: each y_k dies right after its use.
  const int64_t n = int64_t{1} << 18;
  const int64_t bytes = n * 4;
  Builder b("branchy");
  Value x = b.parameter("x", f32({n}), ParamRole::kInput);
  Value acc = b.exp(x);
  for (int k = 0; k < 30; ++k) acc = b.add(acc, b.mul(b.exp(x), b.full_like(x, k)));
  b.output("y", acc);
  Graph g = testing::finish(b);
  Executor ex(g);
  ASSERT_TRUE(ex.run({testing::random_tensor(f32({n}), 2)}).ok());
  EXPECT_LE(ex.stats().peak_live_bytes, 4 * bytes);
}

TEST(Executor, InPlaceNeverClobbersAValueStillInUse) {
  Builder b("alias");
  Value x = b.parameter("x", f32({1000}), ParamRole::kInput);
  Value y = b.neg(x);            // x is used again below: y must not overwrite x
  Value z = b.add(y, x);         // y dies here and x dies here: either may host z
  Value w = b.mul(z, b.exp(z));  // z used twice in one op
  b.output("w", w);
  b.output("x", x);  // x survives to the end
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32({1000}), 3);
  std::vector<Tensor> out = testing::run_graph(g, {xv});
  ASSERT_EQ(out.size(), 2u);
  std::vector<float> want;
  for (float v : xv.to_vector()) {
    const float zz = -v + v;
    want.push_back(zz * std::exp(zz));
  }
  testing::expect_equal(out[0].to_vector(), want, "w");
  testing::expect_equal(out[1].to_vector(), xv.to_vector(), "x");
}

Graph mlp_graph() {
  Builder b("mlp");
  Value x = b.parameter("x", f32({64, 96}), ParamRole::kInput, ParamInit::kNormal, 1.0);
  Value w1 = b.parameter("w1", f32({96, 128}), ParamRole::kWeight, ParamInit::kNormal, 0.1);
  Value b1 = b.parameter("b1", f32({128}), ParamRole::kWeight, ParamInit::kUniform, 0.1);
  Value w2 = b.parameter("w2", f32({128, 10}), ParamRole::kWeight, ParamInit::kNormal, 0.1);
  Value h = b.tanh(b.add(b.matmul(x, w1), b.broadcast(b1, {64, 128}, {1})));
  Value logits = b.matmul(h, w2);  // [64, 10]
  Value m = b.reduce_max(logits, {1});
  Value e = b.exp(b.sub(logits, b.broadcast(m, {64, 10}, {0})));
  Value p = b.div(e, b.broadcast(b.reduce_sum(e, {1}), {64, 10}, {0}));
  b.output("p", p);
  b.output("loss", b.mean_all(b.log(p)));
  b.output("ht", b.transpose(h, {1, 0}));
  b.output("colsum", b.reduce_sum(h, {0}));
  return testing::finish(b);
}

TEST(Executor, RepeatedRunsAreBitIdenticalAndReuseBuffers) {
  Graph g = mlp_graph();
  Executor ex(g, ExecutorOptions{2});
  const std::vector<Tensor> params = init_parameters(g, 7);
  Result<std::vector<Tensor>> first = ex.run(params);
  ASSERT_TRUE(first.ok());
  for (int rep = 0; rep < 3; ++rep) {
    Result<std::vector<Tensor>> again = ex.run(params);
    ASSERT_TRUE(again.ok());
    ASSERT_EQ(again->size(), first->size());
    for (size_t k = 0; k < first->size(); ++k)
      EXPECT_EQ(std::memcmp(first->at(k).data(), again->at(k).data(),
                            static_cast<size_t>(first->at(k).size()) * 4),
                0)
          << g.outputs()[k].name;
    // Steady state: only the outputs (which leave the executor) need new buffers.
    EXPECT_LE(ex.stats().buffer_allocations, static_cast<int64_t>(g.outputs().size()));
  }
  EXPECT_GT(ex.stats().seconds, 0.0);
  EXPECT_EQ(ex.stats().seconds_by_op.size(), static_cast<size_t>(kNumOps));
  EXPECT_GT(ex.stats().seconds_by_op[static_cast<size_t>(OpKind::kDotGeneral)], 0.0);
}

TEST(Executor, TwoThreadsAgreeWithOne) {
  // Large enough that every kernel splits its loops.
  Builder b("big");
  Value x = b.parameter("x", f32({256, 384}), ParamRole::kInput, ParamInit::kNormal, 1.0);
  Value w = b.parameter("w", f32({384, 512}), ParamRole::kWeight, ParamInit::kNormal, 0.05);
  Value h = b.matmul(x, w);                  // [256, 512]
  Value s = b.reduce_sum(b.mul(h, h), {1});  // row reduction
  Value n = b.div(h, b.broadcast(b.sqrt(b.add_scalar(s, 1.0)), {256, 512}, {0}));
  Value t = b.transpose(b.reshape(n, {256, 8, 64}), {1, 0, 2});   // [8, 256, 64]
  Value att = b.dot_general(t, t, DotAttrs{{0}, {0}, {2}, {2}});  // [8, 256, 256]
  b.output("att", b.erf(att));
  b.output("col", b.reduce_sum(n, {0}));
  b.output("all", b.reduce_sum(att, {0, 1, 2}));
  Graph g = testing::finish(b);
  const std::vector<Tensor> params = init_parameters(g, 3);
  std::vector<Tensor> one = testing::run_graph(g, params, 1);
  std::vector<Tensor> two = testing::run_graph(g, params, 2);
  ASSERT_EQ(one.size(), two.size());
  for (size_t k = 0; k < one.size(); ++k) {
    const std::vector<float> ref = one[k].to_vector();
    const std::vector<double> want(ref.begin(), ref.end());
    testing::expect_near(two[k].to_vector(), want, 1e-6, 1e-6, g.outputs()[k].name);
  }
}

TEST(Executor, OutputsThatRepeatOrAreParametersAreCopies) {
  Builder b("outs");
  Value x = b.parameter("x", f32({3}), ParamRole::kInput);
  Value y = b.exp(x);
  b.output("y1", y);
  b.output("y2", y);
  b.output("x", x);
  Graph g = testing::finish(b);
  Tensor xv = Tensor::from_values(f32({3}), {0, 1, 2});
  std::vector<Tensor> out = testing::run_graph(g, {xv});
  ASSERT_EQ(out.size(), 3u);
  testing::expect_equal(out[0].to_vector(), out[1].to_vector(), "repeated output");
  EXPECT_NE(out[0].data(), out[1].data());
  testing::expect_equal(out[2].to_vector(), xv.to_vector(), "parameter output");
}

}  // namespace
}  // namespace alpa
