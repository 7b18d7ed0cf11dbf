// The auto-sharding ILP as plain data, its solvers, and an independent evaluator.
//
// Choose one strategy per node to minimise
//   sum_v node_costs[v][s_v] + sum_(u,v) edge.costs[s_u * k_v + s_v]
// subject to, for every memory row r: sum_(v, bytes) in r  bytes[s_v] <= memory_budget
// (Alpa's formulation, paper Eq. 1, with the memory constraint of §2.8). Costs are seconds;
// costs >= kInfeasibleCost mark forbidden choices.
//
// Solvers:
// - solve_ilp: exact reductions first (a node with one neighbour is folded into it, a node
//   with two neighbours becomes an edge between them: min-plus elimination, exact; skipped for
//   nodes in memory rows), then CBC on the rest: binary s and e variables with
//   sum s_v = 1, sum_j e_uv[i][j] = s_u[i], sum_i e_uv[i][j] = s_v[j], forbidden pairs left
//   out. Time limit and relative gap as given.
// - solve_exhaustive: every combination (tiny problems; tests confirm the ILP's optimum).
// evaluate() recomputes the objective and lists violated constraints from the request alone.
#pragma once

#include <string>
#include <vector>

#include "alpa/support/status.h"

namespace alpa {

// A cost for choices that cannot be made (unreachable layouts, forbidden strategies): an
// effectively infinite time. Solvers never choose it when anything else is possible.
inline constexpr double kInfeasibleCost = 1e12;

struct IlpEdge {
  int u = 0, v = 0;           // node indices, u != v
  std::vector<double> costs;  // k_u x k_v, row-major (row = u's strategy)
};

struct IlpMemoryTerm {
  int node = 0;
  std::vector<double> bytes;  // per strategy of `node`
};

struct IlpRequest {
  std::vector<std::string> names;               // one per node (for explanations)
  std::vector<std::vector<double>> node_costs;  // per node, per strategy
  std::vector<IlpEdge> edges;
  std::vector<std::vector<IlpMemoryTerm>> memory_rows;  // used when memory_budget > 0
  double memory_budget = 0;                             // bytes per device; 0: no memory constraint

  int num_nodes() const { return static_cast<int>(node_costs.size()); }
};

struct IlpOptions {
  double time_limit_s = 30;
  double relative_gap = 1e-6;
  bool reduce = true;  // exact degree-1/2 eliminations before CBC
};

struct IlpStats {
  int nodes = 0, edges = 0;            // of the request
  int core_nodes = 0, core_edges = 0;  // left for CBC after reductions
  int variables = 0, constraints = 0;  // of the CBC model (0 if none was needed)
  double reduce_s = 0, build_s = 0, solve_s = 0;
  bool optimal = false;  // CBC proved optimality (or no CBC needed)
};

struct IlpSolution {
  std::vector<int> choice;  // strategy per node
  double objective = 0;
  IlpStats stats;
};

// Objective of `choice`; `violations` (optional) receives one line per violated constraint
// (bad index, forbidden node or edge choice, memory row over budget).
double evaluate_ilp(const IlpRequest& r, const std::vector<int>& choice,
                    std::vector<std::string>* violations = nullptr);

Result<IlpSolution> solve_ilp(const IlpRequest& r, const IlpOptions& options = {});
// Every combination; refuses problems with more than `max_combinations`.
Result<IlpSolution> solve_exhaustive(const IlpRequest& r, double max_combinations = 2e7);

// The smallest memory budget for which the request is feasible (min over choices of the
// largest memory row), found by a second ILP; used to explain an infeasible budget.
Result<double> min_feasible_memory(const IlpRequest& r, const IlpOptions& options = {});

// Text form (JSON) so a request can be saved, replayed and inspected.
std::string ilp_to_json(const IlpRequest& r);
Result<IlpRequest> ilp_from_json(std::string_view text);

}  // namespace alpa
