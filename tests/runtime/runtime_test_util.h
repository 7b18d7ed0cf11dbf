// Helpers for the runtime tests: random tensors, running a graph through the Executor, row-major
// index arithmetic for the naive reference loops, and tolerant comparison.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/runtime/executor.h"
#include "alpa/support/rng.h"

namespace alpa::testing {

inline Tensor random_tensor(TensorType type, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  Rng rng(seed);
  Tensor t(std::move(type));
  for (int64_t i = 0; i < t.size(); ++i)
    t.data()[i] = lo + (hi - lo) * static_cast<float>(rng.uniform());
  return t;
}

inline TensorType f32(Shape s) {
  return TensorType{DType::kF32, std::move(s)};
}
inline TensorType i32(Shape s) {
  return TensorType{DType::kI32, std::move(s)};
}

// Runs `g` once on `params` and returns its outputs (the run must succeed).
inline std::vector<Tensor> run_graph(const Graph& g, std::vector<Tensor> params, int threads = 1) {
  Executor ex(g, ExecutorOptions{threads});
  Result<std::vector<Tensor>> r = ex.run(std::move(params));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  if (!r.ok()) return {};
  return std::move(r).value();
}

inline Graph finish(Builder& b) {
  Result<Graph> g = b.finish();
  EXPECT_TRUE(g.ok()) << g.status().to_string();
  return g.ok() ? std::move(g).value() : Graph();
}

inline std::vector<int64_t> unflatten(const Shape& s, int64_t flat) {
  std::vector<int64_t> idx(s.size());
  for (size_t d = s.size(); d-- > 0;) {
    idx[d] = flat % s[d];
    flat /= s[d];
  }
  return idx;
}

inline int64_t flatten(const Shape& s, const std::vector<int64_t>& idx) {
  int64_t f = 0;
  for (size_t d = 0; d < s.size(); ++d) f = f * s[d] + idx[d];
  return f;
}

// Elementwise |got - want| <= atol + rtol * |want|, reporting the first mismatch.
inline void expect_near(const std::vector<float>& got, const std::vector<double>& want, double atol,
                        double rtol, const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = atol + rtol * std::fabs(want[i]);
    if (got[i] != want[i] && !(std::fabs(got[i] - want[i]) <= tol)) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
      return;
    }
  }
}

inline void expect_equal(const std::vector<float>& got, const std::vector<float>& want,
                         const std::string& what = "") {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!(got[i] == want[i] || (std::isnan(got[i]) && std::isnan(want[i])))) {
      ADD_FAILURE() << what << ": element " << i << " is " << got[i] << ", expected " << want[i];
      return;
    }
  }
}

}  // namespace alpa::testing
