#include "alpa/intra/ilp.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>

#include <nlohmann/json.hpp>

#include "CbcHeuristic.hpp"
#include "CbcModel.hpp"
#include "CglClique.hpp"
#include "CglProbing.hpp"
#include "ClpSolve.hpp"
#include "CoinPackedMatrix.hpp"
#include "OsiClpSolverInterface.hpp"
#include "alpa/sharding/reshard.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool forbidden(double c) {
  return c >= kInfeasibleCost;
}

constexpr double kCostScale = 1e6;   // seconds -> microseconds in the CBC model
constexpr double kByteScale = 1e-6;  // bytes -> megabytes in the CBC model

Status check_request(const IlpRequest& r) {
  const int n = r.num_nodes();
  if (r.names.size() != static_cast<size_t>(n))
    return invalid_argument("ILP request: names and node_costs differ in length");
  for (int v = 0; v < n; ++v)
    if (r.node_costs[v].empty())
      return invalid_argument(cat("ILP request: node ", r.names[v], " has no strategy"));
  for (const IlpEdge& e : r.edges) {
    if (e.u < 0 || e.u >= n || e.v < 0 || e.v >= n || e.u == e.v)
      return invalid_argument(cat("ILP request: bad edge ", e.u, "-", e.v));
    if (e.costs.size() != r.node_costs[e.u].size() * r.node_costs[e.v].size())
      return invalid_argument(cat("ILP request: edge ", r.names[e.u], " - ", r.names[e.v], " has ",
                                  e.costs.size(), " costs"));
  }
  for (const auto& row : r.memory_rows)
    for (const IlpMemoryTerm& t : row)
      if (t.node < 0 || t.node >= n || t.bytes.size() != r.node_costs[t.node].size())
        return invalid_argument("ILP request: bad memory term");
  return ok_status();
}

// ---- exact reductions -----------------------------------------------------------------------

// A problem under elimination: node costs, and one cost matrix per adjacent pair.
struct Reducer {
  struct Elimination {
    int v = 0, u = -1, w = -1;
    std::vector<int> argmin;  // R0: [choice]; R1: per strategy of u; R2: per (i of u, k of w)
  };
  std::vector<std::vector<double>> cost;
  std::vector<std::map<int, std::vector<double>>> adj;  // adj[a][b]: matrix k_a x k_b
  std::vector<char> alive;
  std::vector<char> keep;  // nodes that must not be eliminated (memory rows)
  std::vector<Elimination> log;

  size_t k(int v) const { return cost[v].size(); }

  // Adds `m` (k_a x k_b) to the matrix between a and b.
  void add_edge(int a, int b, const std::vector<double>& m) {
    auto& ab = adj[a][b];
    auto& ba = adj[b][a];
    if (ab.empty()) {
      ab = m;
      ba.assign(m.size(), 0.0);
      for (size_t i = 0; i < k(a); ++i)
        for (size_t j = 0; j < k(b); ++j) ba[j * k(a) + i] = m[i * k(b) + j];
      return;
    }
    for (size_t i = 0; i < k(a); ++i)
      for (size_t j = 0; j < k(b); ++j) {
        ab[i * k(b) + j] = std::min(kInfeasibleCost, ab[i * k(b) + j] + m[i * k(b) + j]);
        ba[j * k(a) + i] = ab[i * k(b) + j];
      }
  }

  void remove(int v) {
    for (auto& [u, m] : adj[v]) adj[u].erase(v);
    adj[v].clear();
    alive[v] = 0;
  }

  void run() {
    std::vector<int> queue;
    for (size_t v = 0; v < cost.size(); ++v) queue.push_back(static_cast<int>(v));
    while (!queue.empty()) {
      const int v = queue.back();
      queue.pop_back();
      if (!alive[v] || keep[v] || adj[v].size() > 2) continue;
      Elimination e;
      e.v = v;
      if (adj[v].empty()) {
        e.argmin = {
            static_cast<int>(std::min_element(cost[v].begin(), cost[v].end()) - cost[v].begin())};
      } else if (adj[v].size() == 1) {
        const int u = adj[v].begin()->first;
        const std::vector<double>& m = adj[u][v];  // k_u x k_v
        e.u = u;
        e.argmin.resize(k(u));
        for (size_t i = 0; i < k(u); ++i) {
          double best = std::numeric_limits<double>::infinity();
          int arg = 0;
          for (size_t j = 0; j < k(v); ++j) {
            const double c = cost[v][j] + m[i * k(v) + j];
            if (c < best) best = c, arg = static_cast<int>(j);
          }
          e.argmin[i] = arg;
          cost[u][i] = std::min(kInfeasibleCost, cost[u][i] + best);
        }
        queue.push_back(u);
      } else {
        auto it = adj[v].begin();
        const int u = it->first;
        const int w = std::next(it)->first;
        const std::vector<double>& mu = adj[u][v];  // k_u x k_v
        const std::vector<double>& mw = adj[v][w];  // k_v x k_w
        e.u = u;
        e.w = w;
        e.argmin.resize(k(u) * k(w));
        std::vector<double> m(k(u) * k(w));
        for (size_t i = 0; i < k(u); ++i)
          for (size_t l = 0; l < k(w); ++l) {
            double best = std::numeric_limits<double>::infinity();
            int arg = 0;
            for (size_t j = 0; j < k(v); ++j) {
              const double c = cost[v][j] + mu[i * k(v) + j] + mw[j * k(w) + l];
              if (c < best) best = c, arg = static_cast<int>(j);
            }
            e.argmin[i * k(w) + l] = arg;
            m[i * k(w) + l] = std::min(kInfeasibleCost, best);
          }
        remove(v);
        add_edge(u, w, m);
        queue.push_back(u);
        queue.push_back(w);
        log.push_back(std::move(e));
        continue;
      }
      remove(v);
      log.push_back(std::move(e));
    }
  }

  // Reduces to nothing: whenever no node of degree <= 2 is left, fixes the node of highest
  // degree to its locally best strategy (its cost plus each neighbour's cheapest response)
  // and reduces on (PBQP's RN rule). Gives a complete assignment; not necessarily optimal.
  void run_heuristic() {
    run();
    for (;;) {
      int v = -1;
      for (size_t i = 0; i < cost.size(); ++i)
        if (alive[i] && (v < 0 || adj[i].size() > adj[v].size())) v = static_cast<int>(i);
      if (v < 0) return;
      double best = std::numeric_limits<double>::infinity();
      int arg = 0;
      for (size_t i = 0; i < k(v); ++i) {
        double c = cost[v][i];
        for (const auto& [u, m] : adj[v]) {  // m: k_v x k_u
          double r = std::numeric_limits<double>::infinity();
          for (size_t j = 0; j < k(u); ++j) r = std::min(r, m[i * k(u) + j] + cost[u][j]);
          c += r;
        }
        if (c < best) best = c, arg = static_cast<int>(i);
      }
      for (const auto& [u, m] : adj[v])
        for (size_t j = 0; j < k(u); ++j)
          cost[u][j] = std::min(kInfeasibleCost, cost[u][j] + m[arg * k(u) + j]);
      remove(v);
      keep[v] = 0;
      log.push_back(Elimination{v, -1, -1, {arg}});
      run();
    }
  }

  // Fills in the eliminated nodes' choices, given the core's.
  void back_substitute(std::vector<int>& choice) const {
    for (auto it = log.rbegin(); it != log.rend(); ++it) {
      const Elimination& e = *it;
      if (e.u < 0)
        choice[e.v] = e.argmin[0];
      else if (e.w < 0)
        choice[e.v] = e.argmin[choice[e.u]];
      else
        choice[e.v] = e.argmin[choice[e.u] * k(e.w) + choice[e.w]];
    }
  }
};

// ---- presolve ---------------------------------------------------------------------------------

// Drops strategies that can never be part of an optimum: forbidden at the node, or dominated
// by another strategy of the same node that costs no more at the node and on every incident
// edge against every strategy of the neighbour. Exact. Works on the Reducer's adjacency form
// and records, per node, the original index of each kept strategy.
void presolve(Reducer& red, std::vector<std::vector<int>>& kept) {
  const size_t n = red.cost.size();
  kept.assign(n, {});
  for (size_t v = 0; v < n; ++v) {
    const size_t k = red.k(static_cast<int>(v));
    std::vector<char> drop(k, 0);
    for (size_t i = 0; i < k; ++i)
      if (red.cost[v][i] >= kInfeasibleCost) drop[i] = 1;
    if (std::all_of(drop.begin(), drop.end(), [](char d) { return d; })) drop.assign(k, 0);
    // Dominance: j dominates i (keep the lower index among equals).
    for (size_t i = 0; i < k; ++i) {
      if (drop[i]) continue;
      for (size_t j = 0; j < k && !drop[i]; ++j) {
        if (j == i || drop[j] || red.cost[v][j] > red.cost[v][i]) continue;
        bool dominates = true, strictly = red.cost[v][j] < red.cost[v][i];
        for (const auto& [u, m] : red.adj[v]) {  // m: k_v x k_u
          const size_t ku = red.k(u);
          for (size_t l = 0; l < ku && dominates; ++l) {
            if (m[j * ku + l] > m[i * ku + l])
              dominates = false;
            else if (m[j * ku + l] < m[i * ku + l])
              strictly = true;
          }
          if (!dominates) break;
        }
        if (dominates && (strictly || j < i)) drop[i] = 1;
      }
    }
    for (size_t i = 0; i < k; ++i)
      if (!drop[i]) kept[v].push_back(static_cast<int>(i));
  }
  // Rebuild costs and matrices over the kept strategies.
  std::vector<size_t> old_k(n);
  for (size_t v = 0; v < n; ++v) old_k[v] = red.cost[v].size();
  for (size_t v = 0; v < n; ++v) {
    std::vector<double> c;
    for (int i : kept[v]) c.push_back(red.cost[v][i]);
    red.cost[v] = std::move(c);
  }
  for (size_t v = 0; v < n; ++v) {
    for (auto& [u, m] : red.adj[v]) {  // old m: old_k[v] x old_k[u]
      std::vector<double> nm;
      nm.reserve(kept[v].size() * kept[u].size());
      for (int i : kept[v])
        for (int j : kept[u]) nm.push_back(m[static_cast<size_t>(i) * old_k[u] + j]);
      m = std::move(nm);
    }
  }
}

// ---- CBC -------------------------------------------------------------------------------------

struct CbcResult {
  std::vector<int> choice;
  bool optimal = false;
  bool feasible = false;
  int variables = 0, constraints = 0;
  double build_s = 0, solve_s = 0;
};

// The ILP as CBC takes it: columns (s variables of each node, forbidden strategies with upper
// bound 0; e variables of each edge, forbidden pairs omitted; z when minimising the peak) and
// rows in CSR form.
struct CbcColumns {
  std::vector<double> obj, lb, ub;
  std::vector<int> integers;
  std::vector<int> s_start;                 // per node: its first s column (-1: not a variable)
  std::vector<std::vector<int>> edge_cols;  // per edge: column of each (i, j) pair, or -1
  std::vector<int> row_start = {0}, cols;
  std::vector<double> vals, row_lb, row_ub;
};

CbcColumns cbc_columns(const std::vector<int>& nodes, const std::vector<std::vector<double>>& cost,
                       const std::vector<IlpEdge>& edges,
                       const std::vector<std::vector<IlpMemoryTerm>>& memory_rows, double budget,
                       bool minimize_peak) {
  CbcColumns m;
  std::vector<int>& s_start = m.s_start;
  std::vector<double>&obj = m.obj, &lb = m.lb, &ub = m.ub;
  std::vector<int>& integers = m.integers;
  std::vector<int>&row_start = m.row_start, &cols = m.cols;
  std::vector<std::vector<int>>& edge_cols = m.edge_cols;
  std::vector<double>&vals = m.vals, &row_lb = m.row_lb, &row_ub = m.row_ub;
  const int n = static_cast<int>(cost.size());
  // Columns: s variables of each node (forbidden strategies get upper bound 0), then e
  // variables of each edge (forbidden pairs omitted), then z (minimize_peak).
  s_start.assign(static_cast<size_t>(n), -1);
  for (int v : nodes) {
    s_start[v] = static_cast<int>(obj.size());
    for (double c : cost[v]) {
      integers.push_back(static_cast<int>(obj.size()));
      obj.push_back(minimize_peak ? 0.0 : (forbidden(c) ? 0.0 : c * kCostScale));
      lb.push_back(0);
      ub.push_back(forbidden(c) ? 0 : 1);
    }
  }
  // Rows in CSR form.
  auto end_row = [&](double lo, double hi) {
    row_start.push_back(static_cast<int>(cols.size()));
    row_lb.push_back(lo);
    row_ub.push_back(hi);
  };
  for (int v : nodes) {  // sum_i s_v[i] = 1
    for (size_t i = 0; i < cost[v].size(); ++i) {
      cols.push_back(s_start[v] + static_cast<int>(i));
      vals.push_back(1.0);
    }
    end_row(1.0, 1.0);
  }
  for (const IlpEdge& e : edges) {
    const size_t ku = cost[e.u].size(), kv = cost[e.v].size();
    std::vector<int> col_of(ku * kv, -1);
    for (size_t i = 0; i < ku; ++i)
      for (size_t j = 0; j < kv; ++j) {
        const double c = e.costs[i * kv + j];
        if (forbidden(c) || forbidden(cost[e.u][i]) || forbidden(cost[e.v][j])) continue;
        col_of[i * kv + j] = static_cast<int>(obj.size());
        obj.push_back(minimize_peak ? 0.0 : c * kCostScale);
        lb.push_back(0);
        ub.push_back(1);
      }
    edge_cols.push_back(col_of);
    for (size_t i = 0; i < ku; ++i) {  // sum_j e[i][j] = s_u[i]
      for (size_t j = 0; j < kv; ++j)
        if (col_of[i * kv + j] >= 0) cols.push_back(col_of[i * kv + j]), vals.push_back(1.0);
      cols.push_back(s_start[e.u] + static_cast<int>(i));
      vals.push_back(-1.0);
      end_row(0.0, 0.0);
    }
    for (size_t j = 0; j < kv; ++j) {  // sum_i e[i][j] = s_v[j]
      for (size_t i = 0; i < ku; ++i)
        if (col_of[i * kv + j] >= 0) cols.push_back(col_of[i * kv + j]), vals.push_back(1.0);
      cols.push_back(s_start[e.v] + static_cast<int>(j));
      vals.push_back(-1.0);
      end_row(0.0, 0.0);
    }
  }
  int z = -1;
  if (minimize_peak) {
    z = static_cast<int>(obj.size());
    obj.push_back(1.0);
    lb.push_back(0);
    ub.push_back(COIN_DBL_MAX);
  }
  for (const auto& row : memory_rows) {
    if (budget <= 0 && !minimize_peak) break;
    for (const IlpMemoryTerm& t : row)
      for (size_t i = 0; i < t.bytes.size(); ++i)
        if (t.bytes[i] != 0)
          cols.push_back(s_start[t.node] + static_cast<int>(i)),
              vals.push_back(t.bytes[i] * kByteScale);
    if (minimize_peak) {
      cols.push_back(z);
      vals.push_back(-1.0);
      end_row(-COIN_DBL_MAX, 0.0);
    } else {
      end_row(-COIN_DBL_MAX, budget * kByteScale);
    }
  }
  return m;
}

// Solves the problem given by `cost`/`edges` (only `nodes` are variables; `edges` connect
// them) with an optional memory constraint; if `minimize_peak`, the objective is instead the
// largest memory row (a continuous variable z >= every row). Costs enter the model in
// microseconds and bytes in megabytes: plan costs are often below a millisecond, which in
// seconds sits at CBC's default tolerances.
CbcResult solve_cbc(const std::vector<int>& nodes, const std::vector<std::vector<double>>& cost,
                    const std::vector<IlpEdge>& edges,
                    const std::vector<std::vector<IlpMemoryTerm>>& memory_rows, double budget,
                    bool minimize_peak, const IlpOptions& options,
                    const std::vector<int>* warm = nullptr) {
  CbcResult res;
  const Clock::time_point t0 = Clock::now();
  const int n = static_cast<int>(cost.size());
  CbcColumns m = cbc_columns(nodes, cost, edges, memory_rows, budget, minimize_peak);
  std::vector<double>&obj = m.obj, &lb = m.lb, &ub = m.ub, &vals = m.vals, &row_lb = m.row_lb,
  &row_ub = m.row_ub;
  std::vector<int>&s_start = m.s_start, &cols = m.cols, &row_start = m.row_start,
  &integers = m.integers;
  const std::vector<std::vector<int>>& edge_cols = m.edge_cols;
  const int num_cols = static_cast<int>(obj.size());
  const int num_rows = static_cast<int>(row_lb.size());
  res.variables = num_cols;
  res.constraints = num_rows;
  std::vector<int> row_len(static_cast<size_t>(num_rows));
  for (int r = 0; r < num_rows; ++r) row_len[r] = row_start[r + 1] - row_start[r];
  CoinPackedMatrix matrix(false, num_cols, num_rows, static_cast<CoinBigIndex>(cols.size()),
                          vals.data(), cols.data(), row_start.data(), row_len.data());
  OsiClpSolverInterface solver;
  solver.messageHandler()->setLogLevel(0);
  solver.loadProblem(matrix, lb.data(), ub.data(), obj.data(), row_lb.data(), row_ub.data());
  if (!integers.empty()) solver.setInteger(integers.data(), static_cast<int>(integers.size()));
  res.build_s = since(t0);

  const Clock::time_point t1 = Clock::now();
  CbcModel model(solver);
  model.setLogLevel(0);
  model.messageHandler()->setLogLevel(0);
  model.solver()->messageHandler()->setLogLevel(0);
  model.setMaximumSeconds(std::max(0.1, options.time_limit_s));
  model.setAllowableFractionGap(options.relative_gap);
  CglProbing probing;
  probing.setUsingObjective(true);
  CglClique clique;
  clique.setStarCliqueReport(false);  // both print to stdout otherwise
  clique.setRowCliqueReport(false);
  model.addCutGenerator(&probing, -1, "probing");
  model.addCutGenerator(&clique, -1, "clique");
  CbcRounding rounding(model);
  model.addHeuristic(&rounding);
  if (warm != nullptr && !minimize_peak) {
    // The warm start as a column vector: s one-hot, e the product of its two ends.
    std::vector<double> x(static_cast<size_t>(num_cols), 0.0);
    double objective = 0;
    bool valid = true;
    for (int v : nodes) {
      const int col = s_start[v] + (*warm)[v];
      x[col] = 1.0;
      objective += obj[col];
      valid &= ub[col] > 0;
    }
    for (size_t e = 0; e < edges.size(); ++e) {
      const size_t kv = cost[edges[e].v].size();
      const int col = edge_cols[e][(*warm)[edges[e].u] * kv + (*warm)[edges[e].v]];
      if (col < 0)
        valid = false;
      else
        x[col] = 1.0, objective += obj[col];
    }
    if (valid) model.setBestSolution(x.data(), num_cols, objective, true);
  }
  // The LP relaxations of these models are large and degenerate: dual simplex after Clp's
  // presolve solves them about 30x faster than the default (measured: 0.24 s vs 11 s on a
  // 96k-column ZeRO plan).
  ClpSolve lp;
  lp.setSolveType(ClpSolve::useDual);
  lp.setPresolveType(ClpSolve::presolveOn);
  dynamic_cast<OsiClpSolverInterface*>(model.solver())->setSolveOptions(lp);
  model.initialSolve();
  model.branchAndBound();
  res.solve_s = since(t1);
  const double* x = model.bestSolution();
  if (x == nullptr) return res;
  res.feasible = true;
  res.optimal = model.isProvenOptimal();
  res.choice.assign(static_cast<size_t>(n), 0);
  for (int v : nodes) {
    int best = 0;
    for (size_t i = 0; i < cost[v].size(); ++i)
      if (x[s_start[v] + static_cast<int>(i)] > x[s_start[v] + best]) best = static_cast<int>(i);
    res.choice[v] = best;
  }
  return res;
}

}  // namespace

double evaluate_ilp(const IlpRequest& r, const std::vector<int>& choice,
                    std::vector<std::string>* violations) {
  auto note = [&](const std::string& s) {
    if (violations) violations->push_back(s);
  };
  if (choice.size() != static_cast<size_t>(r.num_nodes())) {
    note(cat("choice has ", choice.size(), " entries for ", r.num_nodes(), " nodes"));
    return kInfeasibleCost;
  }
  double total = 0;
  for (int v = 0; v < r.num_nodes(); ++v) {
    if (choice[v] < 0 || choice[v] >= static_cast<int>(r.node_costs[v].size())) {
      note(cat("node ", r.names[v], ": strategy ", choice[v], " does not exist"));
      return kInfeasibleCost;
    }
    const double c = r.node_costs[v][choice[v]];
    if (forbidden(c)) note(cat("node ", r.names[v], ": strategy ", choice[v], " is forbidden"));
    total += c;
  }
  for (const IlpEdge& e : r.edges) {
    const double c = e.costs[choice[e.u] * r.node_costs[e.v].size() + choice[e.v]];
    if (forbidden(c))
      note(
          cat("edge ", r.names[e.u], " - ", r.names[e.v], ": the pair of strategies is forbidden"));
    total += c;
  }
  if (r.memory_budget > 0) {
    for (size_t row = 0; row < r.memory_rows.size(); ++row) {
      double bytes = 0;
      for (const IlpMemoryTerm& t : r.memory_rows[row]) bytes += t.bytes[choice[t.node]];
      if (bytes > r.memory_budget * (1 + 1e-9))
        note(cat("memory row ", row, ": ", bytes, " bytes exceed the budget of ", r.memory_budget));
    }
  }
  return std::min(total, kInfeasibleCost);
}

Result<IlpSolution> solve_ilp(const IlpRequest& r, const IlpOptions& options) {
  ALPA_RETURN_IF_ERROR(check_request(r));
  // A memory row whose smallest possible sum exceeds the budget: infeasible, no search needed.
  if (r.memory_budget > 0) {
    for (const auto& row : r.memory_rows) {
      double least = 0;
      for (const IlpMemoryTerm& t : row) {
        double m = kInfeasibleCost;
        for (size_t i = 0; i < t.bytes.size(); ++i)
          if (r.node_costs[t.node][i] < kInfeasibleCost) m = std::min(m, t.bytes[i]);
        least += m;
      }
      if (least > r.memory_budget)
        return resource_exhausted(
            cat("no assignment fits the memory budget: one point of the "
                "program needs at least ",
                least, " bytes"));
    }
  }
  const int n = r.num_nodes();
  IlpSolution sol;
  sol.stats.nodes = n;
  sol.stats.edges = static_cast<int>(r.edges.size());
  const Clock::time_point t0 = Clock::now();
  Reducer red;
  red.cost = r.node_costs;
  red.adj.resize(static_cast<size_t>(n));
  red.alive.assign(static_cast<size_t>(n), 1);
  red.keep.assign(static_cast<size_t>(n), 0);
  const bool memory = r.memory_budget > 0;
  if (memory)
    for (const auto& row : r.memory_rows)
      for (const IlpMemoryTerm& t : row) red.keep[t.node] = 1;
  for (const IlpEdge& e : r.edges) red.add_edge(e.u, e.v, e.costs);
  // Exact presolve (forbidden and dominated strategies), unless memory rows refer to the
  // original strategy indices.
  std::vector<std::vector<int>> kept;
  const bool presolved = options.reduce && !memory;
  if (presolved) presolve(red, kept);
  if (options.reduce) red.run();
  sol.stats.reduce_s = since(t0);
  // Maps a choice over the presolved strategies back to the request's indices.
  auto original = [&](std::vector<int> c) {
    if (presolved)
      for (int v = 0; v < n; ++v) c[v] = kept[v][c[v]];
    return c;
  };

  std::vector<int> core;
  std::vector<IlpEdge> core_edges;
  for (int v = 0; v < n; ++v) {
    if (!red.alive[v]) continue;
    core.push_back(v);
    for (const auto& [u, m] : red.adj[v])
      if (u > v) core_edges.push_back(IlpEdge{v, u, m});
  }
  sol.stats.core_nodes = static_cast<int>(core.size());
  sol.stats.core_edges = static_cast<int>(core_edges.size());
  sol.choice.assign(static_cast<size_t>(n), 0);
  sol.stats.optimal = true;
  if (!core.empty()) {
    // A complete heuristic assignment first: CBC's warm start, and the answer if CBC finds
    // nothing better within its time limit.
    Reducer heuristic = red;
    heuristic.run_heuristic();
    std::vector<int> warm(static_cast<size_t>(n), 0);
    heuristic.back_substitute(warm);
    CbcResult c = solve_cbc(core, red.cost, core_edges, r.memory_rows, r.memory_budget, false,
                            options, &warm);
    sol.stats.variables = c.variables;
    sol.stats.constraints = c.constraints;
    sol.stats.build_s = c.build_s;
    sol.stats.solve_s = c.solve_s;
    sol.stats.optimal = c.optimal;
    std::vector<int> from_cbc(static_cast<size_t>(n), 0);
    for (int v : core) from_cbc[v] = c.choice.empty() ? 0 : c.choice[v];
    red.back_substitute(from_cbc);
    from_cbc = original(from_cbc);
    const std::vector<int> from_heuristic = original(warm);
    std::vector<std::string> cv, hv;
    const double cbc_obj = c.feasible ? evaluate_ilp(r, from_cbc, &cv) : kInfeasibleCost;
    const double heur_obj = evaluate_ilp(r, from_heuristic, &hv);
    const bool cbc_ok = c.feasible && cv.empty();
    const bool heur_ok = hv.empty();
    if (!cbc_ok && !heur_ok)
      return resource_exhausted(
          "no sharding satisfies the constraints (memory budget or "
          "forbidden layouts)");
    sol.choice = (cbc_ok && (!heur_ok || cbc_obj <= heur_obj)) ? from_cbc : from_heuristic;
    sol.objective = evaluate_ilp(r, sol.choice);
    return sol;
  }
  red.back_substitute(sol.choice);
  sol.choice = original(sol.choice);
  std::vector<std::string> violations;
  sol.objective = evaluate_ilp(r, sol.choice, &violations);
  if (!violations.empty())
    return resource_exhausted(cat("no sharding satisfies the constraints: ", violations.front()));
  return sol;
}

Result<IlpSolution> solve_exhaustive(const IlpRequest& r, double max_combinations) {
  ALPA_RETURN_IF_ERROR(check_request(r));
  double combos = 1;
  for (const auto& c : r.node_costs) combos *= static_cast<double>(c.size());
  if (combos > max_combinations)
    return failed_precondition(cat("exhaustive search over ", combos, " combinations refused"));
  const int n = r.num_nodes();
  std::vector<int> choice(static_cast<size_t>(n), 0), best;
  double best_obj = std::numeric_limits<double>::infinity();
  for (;;) {
    std::vector<std::string> v;
    const double obj = evaluate_ilp(r, choice, &v);
    if (v.empty() && obj < best_obj) best_obj = obj, best = choice;
    int k = 0;
    for (; k < n; ++k) {
      if (++choice[k] < static_cast<int>(r.node_costs[k].size())) break;
      choice[k] = 0;
    }
    if (k == n) break;
  }
  if (best.empty()) return resource_exhausted("no feasible combination");
  IlpSolution sol;
  sol.choice = best;
  sol.objective = best_obj;
  sol.stats.nodes = n;
  sol.stats.optimal = true;
  return sol;
}

Result<double> min_feasible_memory(const IlpRequest& r, const IlpOptions& options) {
  ALPA_RETURN_IF_ERROR(check_request(r));
  std::vector<int> nodes;
  for (int v = 0; v < r.num_nodes(); ++v) nodes.push_back(v);
  CbcResult c = solve_cbc(nodes, r.node_costs, r.edges, r.memory_rows, 0, true, options);
  if (!c.feasible) return internal_error("could not compute the minimal memory");
  double peak = 0;
  for (const auto& row : r.memory_rows) {
    double bytes = 0;
    for (const IlpMemoryTerm& t : row) bytes += t.bytes[c.choice[t.node]];
    peak = std::max(peak, bytes);
  }
  return peak;
}

std::string ilp_to_json(const IlpRequest& r) {
  nlohmann::json j;
  j["names"] = r.names;
  j["node_costs"] = r.node_costs;
  nlohmann::json edges = nlohmann::json::array();
  for (const IlpEdge& e : r.edges) edges.push_back({{"u", e.u}, {"v", e.v}, {"costs", e.costs}});
  j["edges"] = edges;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& row : r.memory_rows) {
    nlohmann::json terms = nlohmann::json::array();
    for (const IlpMemoryTerm& t : row) terms.push_back({{"node", t.node}, {"bytes", t.bytes}});
    rows.push_back(terms);
  }
  j["memory_rows"] = rows;
  j["memory_budget"] = r.memory_budget;
  return j.dump();
}

Result<IlpRequest> ilp_from_json(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return parse_error("ILP request: invalid JSON");
  IlpRequest r;
  try {
    r.names = j.at("names").get<std::vector<std::string>>();
    r.node_costs = j.at("node_costs").get<std::vector<std::vector<double>>>();
    for (const auto& e : j.at("edges"))
      r.edges.push_back(
          {e.at("u").get<int>(), e.at("v").get<int>(), e.at("costs").get<std::vector<double>>()});
    for (const auto& row : j.at("memory_rows")) {
      std::vector<IlpMemoryTerm> terms;
      for (const auto& t : row)
        terms.push_back({t.at("node").get<int>(), t.at("bytes").get<std::vector<double>>()});
      r.memory_rows.push_back(std::move(terms));
    }
    r.memory_budget = j.at("memory_budget").get<double>();
  } catch (const nlohmann::json::exception& e) {
    return parse_error(cat("ILP request: ", e.what()));
  }
  ALPA_RETURN_IF_ERROR(check_request(r));
  return r;
}

}  // namespace alpa
