// The ILP solvers against exhaustive search on random tiny problems, the evaluator against the
// solvers' objectives, memory constraints, and the request's text form.
#include "alpa/intra/ilp.h"

#include <gtest/gtest.h>

#include <cmath>

#include "alpa/sharding/reshard.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

IlpRequest random_request(uint64_t seed, bool with_memory) {
  Rng rng(seed);
  IlpRequest r;
  const int n = 3 + static_cast<int>(rng.below(5));  // 3..7 nodes
  for (int v = 0; v < n; ++v) {
    r.names.push_back("n" + std::to_string(v));
    const int k = 1 + static_cast<int>(rng.below(4));
    std::vector<double> c;
    for (int i = 0; i < k; ++i)
      c.push_back(rng.below(10) == 0 ? kInfeasibleCost : rng.uniform() * 10);
    if (std::all_of(c.begin(), c.end(), [](double x) { return x >= kInfeasibleCost; })) c[0] = 1;
    r.node_costs.push_back(c);
  }
  for (int u = 0; u < n; ++u)
    for (int v = u + 1; v < n; ++v) {
      if (rng.below(2)) continue;  // about half of the pairs connected (cycles included)
      IlpEdge e{u, v, {}};
      for (size_t i = 0; i < r.node_costs[u].size() * r.node_costs[v].size(); ++i)
        e.costs.push_back(rng.below(12) == 0 ? kInfeasibleCost : rng.uniform() * 5);
      r.edges.push_back(e);
    }
  if (with_memory) {
    for (int row = 0; row < 2; ++row) {
      std::vector<IlpMemoryTerm> terms;
      for (int v = 0; v < n; ++v) {
        if (rng.below(2)) continue;
        IlpMemoryTerm t{v, {}};
        for (size_t i = 0; i < r.node_costs[v].size(); ++i) t.bytes.push_back(1 + rng.below(10));
        terms.push_back(t);
      }
      r.memory_rows.push_back(terms);
    }
    r.memory_budget = 12;
  }
  return r;
}

TEST(Ilp, MatchesExhaustiveSearchOnRandomProblems) {
  int compared = 0, infeasible = 0;
  for (uint64_t seed = 1; seed <= 150; ++seed) {
    const IlpRequest r = random_request(seed, seed % 3 == 0);
    Result<IlpSolution> ex = solve_exhaustive(r);
    for (bool reduce : {true, false}) {
      IlpOptions o;
      o.reduce = reduce;
      Result<IlpSolution> ilp = solve_ilp(r, o);
      ASSERT_EQ(ex.ok(), ilp.ok()) << "seed " << seed << " reduce " << reduce << ": "
                                   << (ilp.ok() ? ex.status() : ilp.status()).to_string();
      if (!ex.ok()) {
        ++infeasible;
        continue;
      }
      EXPECT_NEAR(ilp->objective, ex->objective, 1e-6 * (1 + ex->objective))
          << "seed " << seed << " reduce " << reduce;
      std::vector<std::string> violations;
      EXPECT_NEAR(evaluate_ilp(r, ilp->choice, &violations), ilp->objective, 1e-9);
      EXPECT_TRUE(violations.empty()) << violations.front();
      ++compared;
    }
  }
  EXPECT_GT(compared, 200);
  EXPECT_GT(infeasible, 0);  // the generator does produce infeasible problems
}

TEST(Ilp, ReductionsLeaveOnlyTheCore) {
  // A chain a - b - c - d with a triangle c - d - e: the chain folds away.
  IlpRequest r;
  for (const char* n : {"a", "b", "c", "d", "e"}) {
    r.names.push_back(n);
    r.node_costs.push_back({1, 2, 3});
  }
  auto edge = [&](int u, int v) {
    IlpEdge e{u, v, std::vector<double>(9, 1.0)};
    for (int i = 0; i < 3; ++i) e.costs[i * 3 + i] = 0;
    r.edges.push_back(e);
  };
  edge(0, 1);
  edge(1, 2);
  edge(2, 3);
  edge(3, 4);
  edge(2, 4);
  Result<IlpSolution> s = solve_ilp(r);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->stats.core_nodes, 0);  // a triangle reduces too (degree 2 each)
  EXPECT_EQ(s->choice, (std::vector<int>{0, 0, 0, 0, 0}));
  EXPECT_DOUBLE_EQ(s->objective, 5);
}

TEST(Ilp, EvaluatorReportsViolations) {
  IlpRequest r;
  r.names = {"a", "b"};
  r.node_costs = {{1, kInfeasibleCost}, {2, 3}};
  r.edges.push_back({0, 1, {0, kInfeasibleCost, 0, 0}});
  r.memory_rows = {{{1, {10, 1}}}};
  r.memory_budget = 5;
  std::vector<std::string> v;
  evaluate_ilp(r, {1, 0}, &v);
  EXPECT_EQ(v.size(), 2u);  // forbidden node strategy, memory over budget
  v.clear();
  evaluate_ilp(r, {0, 1}, &v);
  EXPECT_EQ(v.size(), 1u);  // forbidden edge pair
  v.clear();
  EXPECT_DOUBLE_EQ(evaluate_ilp(r, {0, 0}, &v), 3);
  EXPECT_EQ(v.size(), 1u);  // memory
}

TEST(Ilp, MinimalFeasibleMemory) {
  IlpRequest r;
  r.names = {"a", "b"};
  r.node_costs = {{0, 5}, {0, 5}};
  r.memory_rows = {{{0, {8, 2}}, {1, {8, 3}}}};
  r.memory_budget = 4;  // infeasible: the smallest row total is 2 + 3 = 5
  EXPECT_FALSE(solve_ilp(r).ok());
  Result<double> m = min_feasible_memory(r);
  ASSERT_TRUE(m.ok());
  EXPECT_DOUBLE_EQ(*m, 5);
  r.memory_budget = 5;
  Result<IlpSolution> s = solve_ilp(r);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->choice, (std::vector<int>{1, 1}));
}

TEST(Ilp, JsonRoundTripAndErrors) {
  const IlpRequest r = random_request(7, true);
  Result<IlpRequest> back = ilp_from_json(ilp_to_json(r));
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(ilp_to_json(*back), ilp_to_json(r));
  EXPECT_FALSE(ilp_from_json("{").ok());
  EXPECT_FALSE(
      ilp_from_json(
          R"({"names":["a"],"node_costs":[[]],"edges":[],"memory_rows":[],"memory_budget":0})")
          .ok());
}

}  // namespace
}  // namespace alpa
