// Reductions (suffix, prefix, middle, non-contiguous dim sets), transpose, broadcast with
// size-1 expansion, slice, pad and concat against naive index loops.
#include <algorithm>
#include <limits>

#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;

// ---- reductions ---------------------------------------------------------------------------

std::vector<double> naive_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool max) {
  Shape out_shape;
  for (int64_t d = 0; d < x.rank(); ++d)
    if (!std::binary_search(dims.begin(), dims.end(), d)) out_shape.push_back(x.shape()[d]);
  std::vector<double> out(static_cast<size_t>(num_elements(out_shape)),
                          max ? -std::numeric_limits<double>::infinity() : 0.0);
  for (int64_t i = 0; i < x.size(); ++i) {
    const auto idx = testing::unflatten(x.shape(), i);
    std::vector<int64_t> oi;
    for (int64_t d = 0; d < x.rank(); ++d)
      if (!std::binary_search(dims.begin(), dims.end(), d)) oi.push_back(idx[d]);
    double& o = out[static_cast<size_t>(testing::flatten(out_shape, oi))];
    o = max ? std::max(o, static_cast<double>(x.data()[i])) : o + x.data()[i];
  }
  return out;
}

void check_reduce(const Shape& shape, const std::vector<int64_t>& dims, int threads) {
  Builder b("reduce");
  Value x = b.parameter("x", f32(shape), ParamRole::kInput);
  b.output("sum", b.reduce_sum(x, dims));
  b.output("max", b.reduce_max(x, dims));
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32(shape), 5);
  std::vector<Tensor> out = testing::run_graph(g, {xv}, threads);
  ASSERT_EQ(out.size(), 2u);
  const std::string what = shape_to_string(shape) + " dims " + shape_to_string(dims) +
                           " threads=" + std::to_string(threads);
  testing::expect_near(out[0].to_vector(), naive_reduce(xv, dims, false), 1e-4, 1e-5,
                       what + " sum");
  testing::expect_near(out[1].to_vector(), naive_reduce(xv, dims, true), 0, 0, what + " max");
}

TEST(Reduce, SuffixPrefixMiddleAndScatteredDims) {
  const Shape s = {3, 4, 5, 6};
  const std::vector<std::vector<int64_t>> dim_sets = {
      {3},          {2, 3}, {1, 2, 3},             // suffix (row reductions)
      {0},          {0, 1}, {0, 1, 2},             // prefix (column sums)
      {1},          {1, 2},                        // middle
      {0, 2},       {1, 3}, {0, 3},    {0, 2, 3},  // non-contiguous
      {0, 1, 2, 3}, {}};                           // everything, nothing
  for (int threads : {1, 2})
    for (const auto& dims : dim_sets) check_reduce(s, dims, threads);
}

TEST(Reduce, LargeAndDegenerateShapes) {
  for (int threads : {1, 2}) {
    check_reduce({200000}, {0}, threads);         // chunked full reduction
    check_reduce({300, 700}, {1}, threads);       // many long rows
    check_reduce({700, 300}, {0}, threads);       // bias-gradient column sums
    check_reduce({1, 5, 1, 3}, {0, 2}, threads);  // only extent-1 dims reduced
    check_reduce({2, 1, 3}, {1}, threads);
    check_reduce({4, 0, 3}, {1}, threads);  // empty reduced dim
  }
}

// ---- transpose ----------------------------------------------------------------------------

void check_transpose(const Shape& shape, const std::vector<int64_t>& perm, int threads) {
  Builder b("transpose");
  Value x = b.parameter("x", f32(shape), ParamRole::kInput);
  b.output("y", b.transpose(x, perm));
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32(shape), 7);
  std::vector<Tensor> out = testing::run_graph(g, {xv}, threads);
  ASSERT_EQ(out.size(), 1u);
  Shape os;
  for (int64_t p : perm) os.push_back(shape[p]);
  std::vector<float> want(static_cast<size_t>(xv.size()));
  for (int64_t i = 0; i < xv.size(); ++i) {
    const auto oi = testing::unflatten(os, i);
    std::vector<int64_t> xi(shape.size());
    for (size_t d = 0; d < perm.size(); ++d) xi[perm[d]] = oi[d];
    want[i] = xv.data()[testing::flatten(shape, xi)];
  }
  testing::expect_equal(out[0].to_vector(), want,
                        "transpose " + shape_to_string(shape) + " perm " + shape_to_string(perm));
}

TEST(Transpose, SeveralPermutations) {
  const Shape s = {2, 3, 4, 5};
  const std::vector<std::vector<int64_t>> perms = {
      {0, 1, 2, 3}, {1, 0, 2, 3}, {2, 0, 1, 3},  // last dim stays last: row copies
      {0, 1, 3, 2}, {3, 2, 1, 0}, {2, 0, 3, 1}, {0, 3, 1, 2}, {1, 3, 0, 2}};
  for (int threads : {1, 2}) {
    for (const auto& p : perms) check_transpose(s, p, threads);
    check_transpose({67, 45}, {1, 0}, threads);  // tile edges
    check_transpose({4, 70, 33}, {2, 1, 0}, threads);
    check_transpose({8, 128, 8, 64}, {0, 2, 1, 3}, threads);  // attention head split
    check_transpose({300, 257}, {1, 0}, threads);
    check_transpose({1, 9, 1, 4}, {3, 1, 2, 0}, threads);
  }
}

// ---- broadcast ----------------------------------------------------------------------------

void check_broadcast(const Shape& in, const Shape& out_shape, const std::vector<int64_t>& dims) {
  Builder b("broadcast");
  Value x = b.parameter("x", f32(in), ParamRole::kInput);
  b.output("y", b.broadcast(x, out_shape, dims));
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32(in), 9);
  for (int threads : {1, 2}) {
    std::vector<Tensor> out = testing::run_graph(g, {xv}, threads);
    ASSERT_EQ(out.size(), 1u);
    std::vector<float> want(static_cast<size_t>(num_elements(out_shape)));
    for (int64_t i = 0; i < static_cast<int64_t>(want.size()); ++i) {
      const auto oi = testing::unflatten(out_shape, i);
      std::vector<int64_t> xi(in.size());
      for (size_t d = 0; d < dims.size(); ++d) xi[d] = in[d] == 1 ? 0 : oi[dims[d]];
      want[i] = xv.data()[testing::flatten(in, xi)];
    }
    testing::expect_equal(out[0].to_vector(), want,
                          "broadcast " + shape_to_string(in) + " -> " + shape_to_string(out_shape));
  }
}

TEST(Broadcast, RowsColumnsAndSizeOneExpansion) {
  check_broadcast({3}, {4, 3}, {1});        // row repeated (bias)
  check_broadcast({4}, {4, 3}, {0});        // column repeated
  check_broadcast({1, 3}, {5, 3}, {0, 1});  // size-1 expansion
  check_broadcast({4, 1}, {4, 6}, {0, 1});
  check_broadcast({2, 1, 3}, {2, 4, 3, 5}, {0, 1, 2});
  check_broadcast({}, {3, 2}, {});  // scalar splat
  check_broadcast({5}, {2, 5, 3}, {1});
  check_broadcast({512}, {64, 512}, {1});    // large row repeat
  check_broadcast({2048}, {2048, 40}, {0});  // large column repeat
  check_broadcast({2, 3}, {2, 3}, {0, 1});   // identity
}

// ---- slice / pad / concat -----------------------------------------------------------------

TEST(Slice, CopiesTheWindow) {
  const Shape s = {5, 6, 7};
  Builder b("slice");
  Value x = b.parameter("x", f32(s), ParamRole::kInput);
  b.output("a", b.slice(x, {1, 0, 2}, {4, 6, 7}));
  b.output("b", b.slice(x, {0, 2, 3}, {5, 3, 4}));
  b.output("c", b.slice(x, {2, 1, 0}, {2, 5, 7}));  // empty
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32(s), 3);
  std::vector<Tensor> out = testing::run_graph(g, {xv});
  ASSERT_EQ(out.size(), 3u);
  auto want = [&](std::vector<int64_t> start, std::vector<int64_t> limit) {
    Shape os;
    for (size_t d = 0; d < s.size(); ++d) os.push_back(limit[d] - start[d]);
    std::vector<float> w(static_cast<size_t>(num_elements(os)));
    for (int64_t i = 0; i < static_cast<int64_t>(w.size()); ++i) {
      auto idx = testing::unflatten(os, i);
      for (size_t d = 0; d < s.size(); ++d) idx[d] += start[d];
      w[i] = xv.data()[testing::flatten(s, idx)];
    }
    return w;
  };
  testing::expect_equal(out[0].to_vector(), want({1, 0, 2}, {4, 6, 7}), "slice a");
  testing::expect_equal(out[1].to_vector(), want({0, 2, 3}, {5, 3, 4}), "slice b");
  EXPECT_EQ(out[2].size(), 0);
}

TEST(Pad, FillsBordersWithTheValue) {
  for (const auto& [shape, low, high] :
       std::vector<std::tuple<Shape, std::vector<int64_t>, std::vector<int64_t>>>{
           {{2, 3}, {1, 0}, {0, 2}}, {{2, 3, 4}, {0, 2, 1}, {1, 0, 3}}, {{3}, {2}, {1}}}) {
    Builder b("pad");
    Value x = b.parameter("x", f32(shape), ParamRole::kInput);
    b.output("y", b.pad(x, low, high, 7.5));
    Graph g = testing::finish(b);
    Tensor xv = testing::random_tensor(f32(shape), 4);
    std::vector<Tensor> out = testing::run_graph(g, {xv}, 2);
    ASSERT_EQ(out.size(), 1u);
    const Shape os = out[0].shape();
    std::vector<float> want(static_cast<size_t>(out[0].size()), 7.5f);
    for (int64_t i = 0; i < xv.size(); ++i) {
      auto idx = testing::unflatten(shape, i);
      for (size_t d = 0; d < shape.size(); ++d) idx[d] += low[d];
      want[testing::flatten(os, idx)] = xv.data()[i];
    }
    testing::expect_equal(out[0].to_vector(), want, "pad " + shape_to_string(shape));
  }
}

TEST(Concat, JoinsAlongEachDim) {
  for (int64_t dim : {0, 1, 2}) {
    std::vector<Shape> shapes = {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}};
    for (size_t k = 0; k < shapes.size(); ++k) shapes[k][dim] = static_cast<int64_t>(k) + 1;
    Builder b("concat");
    std::vector<Value> xs;
    std::vector<Tensor> params;
    for (size_t k = 0; k < shapes.size(); ++k) {
      xs.push_back(b.parameter(cat("x", k), f32(shapes[k]), ParamRole::kInput));
      params.push_back(testing::random_tensor(f32(shapes[k]), 20 + k));
    }
    b.output("y", b.concat(xs, dim));
    Graph g = testing::finish(b);
    std::vector<Tensor> out = testing::run_graph(g, params);
    ASSERT_EQ(out.size(), 1u);
    const Shape os = out[0].shape();
    std::vector<float> want(static_cast<size_t>(out[0].size()));
    int64_t offset = 0;
    for (size_t k = 0; k < shapes.size(); ++k) {
      for (int64_t i = 0; i < params[k].size(); ++i) {
        auto idx = testing::unflatten(shapes[k], i);
        idx[dim] += offset;
        want[testing::flatten(os, idx)] = params[k].data()[i];
      }
      offset += shapes[k][dim];
    }
    testing::expect_equal(out[0].to_vector(), want, "concat dim " + std::to_string(dim));
  }
}

TEST(Reshape, KeepsRowMajorOrder) {
  Builder b("reshape");
  Value x = b.parameter("x", f32({4, 6}), ParamRole::kInput);
  Value r = b.reshape(x, {2, 12});
  b.output("r", r);  // reshape of a live value: copied
  b.output("x", x);
  b.output("e", b.mul(b.reshape(b.neg(x), {24}), b.reshape(x, {24})));  // dying: relabelled
  Graph g = testing::finish(b);
  Tensor xv = testing::random_tensor(f32({4, 6}), 8);
  std::vector<Tensor> out = testing::run_graph(g, {xv});
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].shape(), (Shape{2, 12}));
  testing::expect_equal(out[0].to_vector(), xv.to_vector(), "reshape");
  testing::expect_equal(out[1].to_vector(), xv.to_vector(), "operand intact");
  std::vector<float> e;
  for (float v : xv.to_vector()) e.push_back(-v * v);
  testing::expect_equal(out[2].to_vector(), e, "reshape(neg(x)) * reshape(x)");
}

}  // namespace
}  // namespace alpa
