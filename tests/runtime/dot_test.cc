// dot_general against a naive reference for many layouts: in-place sgemm operands (plain,
// transposed, batch dims leading or in the middle) and the copy path.
#include <algorithm>

#include "alpa/runtime/kernels.h"
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;

// Naive dot_general in double: result [batch..., lhs free..., rhs free...].
std::vector<double> naive_dot(const Tensor& l, const Tensor& r, const DotAttrs& a,
                              const Shape& out_shape) {
  auto free_dims = [](int64_t rank, const std::vector<int64_t>& b, const std::vector<int64_t>& c) {
    std::vector<int64_t> f;
    for (int64_t d = 0; d < rank; ++d)
      if (std::find(b.begin(), b.end(), d) == b.end() &&
          std::find(c.begin(), c.end(), d) == c.end())
        f.push_back(d);
    return f;
  };
  const auto lf = free_dims(l.rank(), a.lhs_batch, a.lhs_contract);
  const auto rf = free_dims(r.rank(), a.rhs_batch, a.rhs_contract);
  Shape cshape;
  for (int64_t d : a.lhs_contract) cshape.push_back(l.shape()[d]);
  const int64_t ncon = num_elements(cshape);
  std::vector<double> out(static_cast<size_t>(num_elements(out_shape)));
  for (int64_t o = 0; o < static_cast<int64_t>(out.size()); ++o) {
    const auto oi = testing::unflatten(out_shape, o);
    std::vector<int64_t> li(l.rank()), ri(r.rank());
    size_t p = 0;
    for (size_t i = 0; i < a.lhs_batch.size(); ++i, ++p) {
      li[a.lhs_batch[i]] = oi[p];
      ri[a.rhs_batch[i]] = oi[p];
    }
    for (int64_t d : lf) li[d] = oi[p++];
    for (int64_t d : rf) ri[d] = oi[p++];
    double acc = 0;
    for (int64_t c = 0; c < ncon; ++c) {
      const auto ci = testing::unflatten(cshape, c);
      for (size_t i = 0; i < ci.size(); ++i) {
        li[a.lhs_contract[i]] = ci[i];
        ri[a.rhs_contract[i]] = ci[i];
      }
      acc += static_cast<double>(l.data()[testing::flatten(l.shape(), li)]) *
             r.data()[testing::flatten(r.shape(), ri)];
    }
    out[static_cast<size_t>(o)] = acc;
  }
  return out;
}

struct DotCase {
  const char* name;
  Shape lhs, rhs;
  DotAttrs attrs;
  Shape expect_out;
};

void check_case(const DotCase& c, int threads) {
  Builder b("dot");
  Value l = b.parameter("l", f32(c.lhs), ParamRole::kInput);
  Value r = b.parameter("r", f32(c.rhs), ParamRole::kInput);
  Value y = b.dot_general(l, r, c.attrs);
  b.output("y", y);
  Graph g = testing::finish(b);
  ASSERT_EQ(g.type(g.outputs()[0].value).shape, c.expect_out) << c.name;
  Tensor lt = testing::random_tensor(f32(c.lhs), 1);
  Tensor rt = testing::random_tensor(f32(c.rhs), 2);
  const std::vector<double> want = naive_dot(lt, rt, c.attrs, c.expect_out);
  std::vector<Tensor> out = testing::run_graph(g, {lt, rt}, threads);
  ASSERT_EQ(out.size(), 1u);
  testing::expect_near(out[0].to_vector(), want, 1e-4, 1e-4,
                       std::string(c.name) + " threads=" + std::to_string(threads));
}

const std::vector<DotCase>& cases() {
  static const std::vector<DotCase> kCases = {
      {"matmul", {37, 29}, {29, 41}, {{}, {}, {1}, {0}}, {37, 41}},
      {"lhs transposed", {29, 37}, {29, 41}, {{}, {}, {0}, {0}}, {37, 41}},
      {"rhs transposed", {37, 29}, {41, 29}, {{}, {}, {1}, {1}}, {37, 41}},
      {"both transposed", {29, 37}, {41, 29}, {{}, {}, {0}, {1}}, {37, 41}},
      {"batch leading", {3, 17, 13}, {3, 13, 19}, {{0}, {0}, {2}, {1}}, {3, 17, 19}},
      {"batch leading, rhs transposed",
       {3, 17, 13},
       {3, 19, 13},
       {{0}, {0}, {2}, {2}},
       {3, 17, 19}},
      // Attention scores q.k^T: q [B,T,H,D], k [B,S,H,D] -> [B,H,T,S].
      {"attention q.k", {2, 9, 3, 8}, {2, 11, 3, 8}, {{0, 2}, {0, 2}, {3}, {3}}, {2, 3, 9, 11}},
      // Attention output p.v: p [B,H,T,S], v [B,S,H,D] -> [B,H,T,D].
      {"attention p.v", {2, 3, 9, 11}, {2, 11, 3, 8}, {{0, 1}, {0, 2}, {3}, {1}}, {2, 3, 9, 8}},
      {"batch dims paired out of order",
       {2, 3, 5, 7},
       {3, 2, 7, 4},
       {{0, 1}, {1, 0}, {3}, {2}},
       {2, 3, 5, 4}},
      {"two contracting dims", {6, 4, 5}, {4, 5, 7}, {{}, {}, {1, 2}, {0, 1}}, {6, 7}},
      {"two contracting dims, reversed pairing",
       {6, 4, 5},
       {4, 5, 7},
       {{}, {}, {2, 1}, {1, 0}},
       {6, 7}},
      {"two free dims each side", {3, 4, 10}, {10, 5, 2}, {{}, {}, {2}, {0}}, {3, 4, 5, 2}},
      {"leading free dims collapse (x [B,T,C] . w)",
       {2, 7, 12},
       {12, 9},
       {{}, {}, {2}, {0}},
       {2, 7, 9}},
      {"weight gradient x^T . dy over [B,T]",
       {2, 7, 12},
       {2, 7, 9},
       {{}, {}, {0, 1}, {0, 1}},
       {12, 9}},
      // Copy path: lhs contract dims split by a free dim; rhs free dims split by contract.
      {"copy path lhs", {4, 6, 5}, {4, 5, 3}, {{}, {}, {0, 2}, {0, 1}}, {6, 3}},
      {"copy path rhs", {6, 10}, {3, 10, 2}, {{}, {}, {1}, {1}}, {6, 3, 2}},
      {"copy path both, with batch",
       {4, 2, 6, 5},
       {5, 3, 2, 4},
       {{1}, {2}, {0, 3}, {3, 0}},
       {2, 6, 3}},
      {"vector . matrix", {1, 16}, {16, 9}, {{}, {}, {1}, {0}}, {1, 9}},
      {"matrix . vector", {9, 16}, {16}, {{}, {}, {1}, {0}}, {9}},
      {"dot of vectors", {16}, {16}, {{}, {}, {0}, {0}}, {}},
      {"outer product (no contraction)", {5}, {7}, {{}, {}, {}, {}}, {5, 7}},
      {"k = 1", {5, 1}, {1, 7}, {{}, {}, {1}, {0}}, {5, 7}},
  };
  return kCases;
}

TEST(DotGeneral, MatchesNaiveReferenceOneThread) {
  for (const DotCase& c : cases()) check_case(c, 1);
}

TEST(DotGeneral, MatchesNaiveReferenceTwoThreads) {
  for (const DotCase& c : cases()) check_case(c, 2);
}

TEST(DotGeneral, LargerAttentionShapes) {
  // Big enough that sgemm blocks and threads split the work.
  check_case({"attention q.k large",
              {2, 64, 4, 32},
              {2, 64, 4, 32},
              {{0, 2}, {0, 2}, {3}, {3}},
              {2, 4, 64, 64}},
             2);
  check_case({"matmul large", {130, 200}, {200, 150}, {{}, {}, {1}, {0}}, {130, 150}}, 2);
}

}  // namespace
}  // namespace alpa
