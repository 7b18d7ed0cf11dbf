// Helpers for the model-family tests: random parameters, and a finite-difference check of a
// small graph's gradients, both sides in the double-precision reference interpreter.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "alpa/autodiff/backward.h"
#include "alpa/support/rng.h"
#include "support/reference_eval.h"

namespace alpa::testing {

// Mean of the last n values (a training curve's end).
inline double mean_of_last(const std::vector<double>& v, size_t n) {
  return std::accumulate(v.end() - static_cast<std::ptrdiff_t>(n), v.end(), 0.0) /
         static_cast<double>(n);
}

// Normal values rounded to f32 (so an f32 run would start from the same numbers).
inline std::vector<double> random_values(Rng& rng, int64_t n, double scale) {
  std::vector<double> v(static_cast<size_t>(n));
  for (double& x : v) x = static_cast<float>(rng.normal() * scale);
  return v;
}

inline int output_index(const Graph& g, const std::string& name) {
  for (size_t i = 0; i < g.outputs().size(); ++i)
    if (g.outputs()[i].name == name) return static_cast<int>(i);
  return -1;
}

// For every element of every weight parameter of `g` (output "loss"):
//   |fd - analytic| <= rel_tol * max(1, |analytic|), fd = central difference with step eps.
// Returns the worst error and where it was; counts the elements checked.
struct GradientCheckResult {
  double worst = 0;
  std::string where;
  int checked = 0;
  double largest = 0;  // largest |analytic| seen (a check of all-zero gradients checks nothing)
};

inline GradientCheckResult check_gradients(const Graph& g,
                                           const std::vector<std::vector<double>>& params,
                                           double eps = 1e-6) {
  GradientCheckResult res;
  Result<Graph> grad_graph = build_gradient_graph(g);
  EXPECT_TRUE(grad_graph.ok()) << grad_graph.status().to_string();
  if (!grad_graph.ok()) return res;
  Result<std::vector<std::vector<double>>> grads = reference_eval(*grad_graph, params);
  EXPECT_TRUE(grads.ok()) << grads.status().to_string();
  if (!grads.ok()) return res;
  const int loss_out = output_index(g, "loss");
  auto loss_at = [&](const std::vector<std::vector<double>>& p) {
    Result<std::vector<std::vector<double>>> r = reference_eval(g, p);
    return r.ok() ? r->at(loss_out)[0] : NAN;
  };
  const std::vector<ValueId> ids = g.parameters();
  for (size_t p = 0; p < ids.size(); ++p) {
    const Node& n = g.node(ids[p]);
    if (n.attr<ParameterAttrs>().role != ParamRole::kWeight) continue;
    const int out = output_index(*grad_graph, "grad." + n.name);
    EXPECT_GE(out, 0) << "no output grad." << n.name;
    if (out < 0) continue;
    const std::vector<double>& analytic = grads->at(out);
    std::vector<std::vector<double>> probe = params;
    for (size_t e = 0; e < analytic.size(); ++e) {
      probe[p][e] = params[p][e] + eps;
      const double up = loss_at(probe);
      probe[p][e] = params[p][e] - eps;
      const double down = loss_at(probe);
      probe[p][e] = params[p][e];
      const double fd = (up - down) / (2 * eps);
      const double err = std::fabs(fd - analytic[e]) / std::max(1.0, std::fabs(analytic[e]));
      if (!(err <= res.worst)) {  // also catches NaN
        res.worst = err;
        res.where = cat("grad.", n.name, "[", e, "]: analytic ", analytic[e], ", finite diff ", fd);
      }
      res.largest = std::max(res.largest, std::fabs(analytic[e]));
      ++res.checked;
    }
  }
  return res;
}

}  // namespace alpa::testing
