// The stage-mesh DP as plain data, its solvers, and an independent evaluator (Alpa §3.6,
// paper Eq. 2-4 and Algorithm 1, with the code's memory check and t_max enumeration).
//
// Problem: L layers (in order), submesh shapes s = 0..S-1, an N x M cluster and B
// micro-batches. Choose stages — contiguous layer ranges [l, r] covering 0..L-1 in order — and
// a submesh for each, minimising the 1F1B step time of pipeline_timing:
//   T = sum_i t_i + (B - 1) * P,
//   P = max( max_i max(t_i - x_i, x_i),  max_i (sum_{j>=i} t_j - x_i) / (n - i) )
// with t_i = candidates[l_i][r_i][s_i].time (one micro-batch's forward + backward, receiving
// included) and x_i its .transfer (receiving: activations from the stage before, gradients from
// the stage after). Transfers overlap compute, so a stage is busy for t - x per micro-batch
// (its links for x); but under 1F1B stage i of n holds at most n - i micro-batches, so it
// starts one no more often than its round trip through the later stages (their times, with
// what they receive) divided by n - i. With every x = 0 this is Alpa's Eq. 2,
// T = sum_i t_i + (B - 1) * max_i t_i.
// Subject to: stage i of n has n-1-i later stages and that count must be <= its max_succ (Alpa's
// memory constraint: max_n_succ_stages, -1 = never fits); the submeshes' device counts sum to
// exactly N*M; the submeshes can be placed (place_submeshes). Candidate times are one
// micro-batch's forward + backward latency on the caller's best logical view. Times are
// seconds, >= 0, +inf = infeasible.
//
// solve_stage_dp: one run with t_max = +inf (the plan of least sum: a first best and
// the smallest sum of any plan), then t_max over the distinct candidate bottlenecks
// b = max(t - x, x) in ascending order; for each, F(s, k, d) = min over stages [k, i] on
// submesh m with b <= t_max, size(m) <= d, s-1 <= max_succ and a round trip within s * t_max
// of t + F(s-1, i+1, d - size(m)); each s scores its argmin path by T. It stops once
// (smallest sum of any plan) + (B-1) * t_max >= best. Without transfers the result is the exact
// optimum (the round-trip bound never binds); with them the periods set by round trips lie
// between candidate bottlenecks, so t_max also steps through a 0.5% grid and the result is
// within 0.5% of the optimum. Exact pruning keeps it fast, using
// relaxed prefix/suffix tables (memory ignored) of the cheapest sum and of the smallest
// bottleneck per (layer, devices): at a given t_max a candidate is dropped when its sum plus
// the cheapest prefix and suffix plus (B-1) * t_max reaches best (plans whose period is below
// t_max were scored at an earlier t_max) or when no plan through it keeps every stage under
// t_max, the same two tests drop DP states, and a t_max whose new candidates are all dropped is
// skipped. Placement is checked on each scored plan; with the shapes of submesh_choices and M a
// power of two every device-exact plan is placeable, so the result is the optimum as above
// (otherwise a skipped unplaceable plan may hide a placeable one).
//
// It is not a cost model: building the candidate table (profiling or the cost model) is the
// caller's job.
#pragma once

#include <limits>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/inter/submesh.h"
#include "alpa/support/status.h"

namespace alpa {

inline constexpr double kInfStageTime = std::numeric_limits<double>::infinity();

struct StageCandidate {
  double time = kInfStageTime;  // s: one micro-batch's fwd+bwd of layers [l..r] on submesh s
  int max_succ = -1;            // later stages memory allows (-1: never feasible)
  double transfer = 0;          // s: the part of `time` receiving inputs (<= time)
  friend bool operator==(const StageCandidate&, const StageCandidate&) = default;
};

struct StageDpRequest {
  int num_layers = 0;
  std::vector<SubmeshShape> submeshes;
  int64_t hosts = 1, devices_per_host = 1;  // all hosts * devices_per_host devices are used
  int micro_batches = 1;
  // [l][r][s] flattened: index (l * L + r) * S + s; only l <= r is used.
  std::vector<StageCandidate> candidates;

  int num_submeshes() const { return static_cast<int>(submeshes.size()); }
  int64_t num_devices() const { return hosts * devices_per_host; }
  size_t index(int l, int r, int s) const {
    return (static_cast<size_t>(l) * num_layers + r) * submeshes.size() + s;
  }
  const StageCandidate& at(int l, int r, int s) const { return candidates[index(l, r, s)]; }
  StageCandidate& at(int l, int r, int s) { return candidates[index(l, r, s)]; }
  // Sizes `candidates` for num_layers and submeshes, every entry infeasible.
  void reset_candidates() {
    candidates.assign(static_cast<size_t>(num_layers) * num_layers * submeshes.size(), {});
  }

  friend bool operator==(const StageDpRequest&, const StageDpRequest&) = default;
};

struct StageChoice {
  int first_layer = 0, last_layer = 0;  // inclusive
  int submesh = 0;                      // index into StageDpRequest::submeshes
  friend bool operator==(const StageChoice&, const StageChoice&) = default;
};

struct StageDpOptions {
  // Skip a t_max within this many seconds of the last one evaluated (Alpa's 1e-6 s gap, which
  // costs at most B * gap of optimality); 0 = exact.
  double tmax_gap = 0;
};

// A pipeline's step time by the model above: latency (the first micro-batch's way through and
// back, sum of t), period (P) and step (latency + (B - 1) * period).
struct PipelineTiming {
  double latency = 0, period = 0, step = 0;
};
PipelineTiming pipeline_timing(std::span<const StageCandidate> stages, int micro_batches);

struct StageDpSolution {
  std::vector<StageChoice> stages;
  std::vector<int> first_device;  // per stage: where place_submeshes puts its submesh
  double total_time = 0;          // latency + (B - 1) * period, as evaluate_stages computes it
  double max_stage_time = 0;      // the period
  double sum_stage_time = 0;      // the latency
  int tmax_values_tried = 0;      // DP runs (one per t_max evaluated, the unbounded one included)
};

// OK, or kInvalidArgument naming the field: num_layers >= 1, submeshes non-empty and each
// fitting the cluster, hosts and devices_per_host >= 1, micro_batches >= 1, candidates sized
// L*L*S with times >= 0 (or +inf), 0 <= transfer <= time and max_succ >= -1.
Status check_stage_dp_request(const StageDpRequest& r);

// Errors: an invalid request (kInvalidArgument); no feasible plan (kResourceExhausted when
// memory — max_succ — rules every plan out, kFailedPrecondition otherwise), each with a hint.
Result<StageDpSolution> solve_stage_dp(const StageDpRequest& r, const StageDpOptions& options = {});

// Every composition of the layers into stages and every submesh per stage (tiny instances:
// refuses more than `max_plans` plans). Same errors as solve_stage_dp.
Result<StageDpSolution> solve_stage_bruteforce(const StageDpRequest& r, double max_plans = 2e6);

// The objective of `stages` from the request alone, or +inf if infeasible; `violations`
// (optional) receives one line per broken rule (coverage, submesh index, infinite time,
// memory, device count, placement).
double evaluate_stages(const StageDpRequest& r, std::span<const StageChoice> stages,
                       std::vector<std::string>* violations = nullptr);

// Text form (JSON): infinite times are written as null. from_json validates the request.
std::string stage_dp_to_json(const StageDpRequest& r);
Result<StageDpRequest> stage_dp_from_json(std::string_view text);

}  // namespace alpa
