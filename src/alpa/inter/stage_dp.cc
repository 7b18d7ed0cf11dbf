#include "alpa/inter/stage_dp.h"

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

namespace alpa {
namespace {

constexpr double kInf = kInfStageTime;

// evaluate_stages on a request that passed check_stage_dp_request.
double evaluate_checked(const StageDpRequest& r, std::span<const StageChoice> stages,
                        std::vector<std::string>* violations);

// Grid step of t_max between candidate bottlenecks when stages have transfers.
constexpr double kTmaxGrid = 0.005;

// A usable candidate: finite time, fits memory at least as a last stage, fits the cluster.
struct Cand {
  int l = 0, r = 0, m = 0, size = 0;
  double t = 0;  // time
  double x = 0;  // transfer
  double b = 0;  // bottleneck: max(time - transfer, transfer)
  int max_succ = 0;
  // t + cheapest prefix + cheapest suffix: a plan with this candidate and period t_max costs
  // at least base + (B-1) * t_max.
  double base = 0;
  // The smallest bottleneck of any plan with this candidate (relaxed as above): below it, the
  // candidate is of no use.
  double reach = 0;
};

// rows x (D+1) values over device counts, +inf = unreachable.
struct DeviceTable {
  int width = 0;
  std::vector<double> v;
  DeviceTable(int rows, int d) : width(d + 1), v(static_cast<size_t>(rows) * (d + 1), kInf) {}
  double* row(int i) { return v.data() + static_cast<size_t>(i) * width; }
  const double* row(int i) const { return v.data() + static_cast<size_t>(i) * width; }
};

// dst[d + size] = min(dst[d + size], t + src[d]) for d in [lo, hi] with src[d] <= cap.
inline void relax(double* dst, const double* src, int lo, int hi, int size, double t,
                  double cap = kInf) {
  double* out = dst + size;
  for (int d = lo; d <= hi; ++d) {
    const double x = src[d] <= cap ? t + src[d] : kInf;
    out[d] = x < out[d] ? x : out[d];
  }
}

// One stage-count-aware table F(s, k, d) per t_max, with pruning against the best plan so far.
class Solver {
 public:
  explicit Solver(const StageDpRequest& r)
      : r_(r),
        L_(r.num_layers),
        D_(static_cast<int>(r.num_devices())),
        B_(r.micro_batches),
        prefix_(1, 0),
        prefix_max_(1, 0) {}

  Result<StageDpSolution> solve(const StageDpOptions& o);

 private:
  void collect();
  void bounds();
  // Whether a plan with `c` and max stage time t_max could beat best_.
  bool useful(const Cand& c, double t_max) const;
  void select(double t_max);  // fills active_ with the useful candidates of b <= t_max
  void run(double t_max);     // F for active_, pruned against best_
  // The largest F(s-1, c.r+1, .) that keeps the round trip of `c` as first of s stages within
  // s * t_max_ (+inf without transfers or without a bound).
  double cap(const Cand& c, int s) const;
  std::vector<StageChoice> backtrack(int s) const;
  void score();  // scores F(s, 0, D) of the last run for every s

  size_t cell(int s, int k) const { return static_cast<size_t>(s) * (L_ + 1) + k; }
  double* frow(int s, int k) { return f_.data() + cell(s, k) * (D_ + 1); }
  const double* frow(int s, int k) const { return f_.data() + cell(s, k) * (D_ + 1); }

  const StageDpRequest& r_;
  const int L_, D_, B_;
  int smax_ = 0;
  std::vector<Cand> cands_;
  std::vector<std::vector<int>> by_start_;  // per l, sorted by time
  std::vector<std::vector<int>> active_;    // per l, the candidates of the current run
  DeviceTable prefix_;                      // relaxed cheapest prefix [k][d]
  DeviceTable prefix_max_;                  // relaxed smallest max stage time of a prefix
  std::vector<double> f_;                   // [(s, k), d]
  std::vector<int> lo_, hi_;                // finite range of each (s, k) row (lo > hi: none)
  double minsum_ = kInf;                    // smallest sum of stage times of any plan
  double best_ = kInf;
  double t_max_ = kInf;     // of the last run
  bool transfers_ = false;  // some candidate has a transfer
  std::vector<StageChoice> best_plan_;
  int runs_ = 0;
  int unplaceable_ = 0;
};

void Solver::collect() {
  by_start_.assign(L_, {});
  int max_succ = -1;
  for (int l = 0; l < L_; ++l)
    for (int r = l; r < L_; ++r)
      for (int m = 0; m < r_.num_submeshes(); ++m) {
        const StageCandidate& c = r_.at(l, r, m);
        const int64_t size = r_.submeshes[m].size();
        if (!std::isfinite(c.time) || c.max_succ < 0 || size > D_) continue;
        by_start_[l].push_back(static_cast<int>(cands_.size()));
        Cand& k = cands_.emplace_back();
        k.l = l, k.r = r, k.m = m, k.size = static_cast<int>(size);
        k.t = c.time;
        k.x = c.transfer;
        k.b = std::max(c.time - c.transfer, c.transfer);
        k.max_succ = c.max_succ;
        transfers_ |= c.transfer > 0;
        max_succ = std::max(max_succ, c.max_succ);
      }
  for (auto& list : by_start_)
    std::stable_sort(list.begin(), list.end(),
                     [&](int a, int b) { return cands_[a].b < cands_[b].b; });
  smax_ = std::max(0, std::min({L_, D_, max_succ + 1}));
  f_.assign(static_cast<size_t>(smax_ + 1) * (L_ + 1) * (D_ + 1), kInf);
  lo_.assign(static_cast<size_t>(smax_ + 1) * (L_ + 1), 1);
  hi_.assign(lo_.size(), 0);
  active_.assign(L_, {});
}

// dst[d + size] = min(dst[d + size], max(t, src[d])) for d in [lo, hi].
inline void relax_max(double* dst, const double* src, int lo, int hi, int size, double t) {
  double* out = dst + size;
  for (int d = lo; d <= hi; ++d) {
    const double x = t > src[d] ? t : src[d];
    out[d] = x < out[d] ? x : out[d];
  }
}

// Relaxed prefix / suffix tables (any usable candidate in any position) give each candidate a
// lower bound B * t + cheapest prefix + cheapest suffix with the devices left, and each DP state
// its cheapest prefix.
void Solver::bounds() {
  DeviceTable pre(L_ + 1, D_), suf(L_ + 1, D_), pre_max(L_ + 1, D_), suf_max(L_ + 1, D_);
  suf.row(L_)[0] = suf_max.row(L_)[0] = 0;
  for (int k = L_ - 1; k >= 0; --k)
    for (int ci : by_start_[k]) {
      const Cand& c = cands_[ci];
      relax(suf.row(k), suf.row(c.r + 1), 0, D_ - c.size, c.size, c.t);
      relax_max(suf_max.row(k), suf_max.row(c.r + 1), 0, D_ - c.size, c.size, c.b);
    }
  std::vector<std::vector<int>> by_end(L_);
  for (size_t i = 0; i < cands_.size(); ++i) by_end[cands_[i].r].push_back(static_cast<int>(i));
  pre.row(0)[0] = pre_max.row(0)[0] = 0;
  for (int k = 1; k <= L_; ++k)
    for (int ci : by_end[k - 1]) {
      const Cand& c = cands_[ci];
      relax(pre.row(k), pre.row(c.l), 0, D_ - c.size, c.size, c.t);
      relax_max(pre_max.row(k), pre_max.row(c.l), 0, D_ - c.size, c.size, c.b);
    }
  for (Cand& c : cands_) {
    double cheapest = kInf, reach = kInf;
    const double* p = pre.row(c.l);
    const double* s = suf.row(c.r + 1);
    const double* pm = pre_max.row(c.l);
    const double* sm = suf_max.row(c.r + 1);
    for (int d = 0; d + c.size <= D_; ++d) {
      cheapest = std::min(cheapest, p[d] + s[D_ - c.size - d]);
      reach = std::min(reach, std::max(pm[d], sm[D_ - c.size - d]));
    }
    c.base = c.t + cheapest;
    c.reach = std::max(c.b, reach);
  }
  prefix_ = std::move(pre);
  prefix_max_ = std::move(pre_max);
}

bool Solver::useful(const Cand& c, double t_max) const {
  return c.reach <= t_max && (best_ == kInf || c.base + (B_ - 1) * t_max < best_);
}

void Solver::select(double t_max) {
  for (int k = 0; k < L_; ++k) {
    active_[k].clear();
    for (int ci : by_start_[k]) {
      const Cand& c = cands_[ci];
      if (c.b > t_max) break;
      if (useful(c, t_max)) active_[k].push_back(ci);
    }
  }
}

double Solver::cap(const Cand& c, int s) const {
  if (!transfers_ || t_max_ == kInf) return kInf;
  return (s * t_max_ - (c.t - c.x)) * (1 + 1e-12);
}

void Solver::run(double t_max) {
  ++runs_;
  t_max_ = t_max;
  const bool prune = best_ < kInf;
  const double tail = prune ? (B_ - 1) * t_max : 0;
  std::fill(lo_.begin(), lo_.end(), 1);
  std::fill(hi_.begin(), hi_.end(), 0);
  std::fill_n(frow(0, L_), D_ + 1, kInf);
  frow(0, L_)[0] = 0;
  lo_[cell(0, L_)] = hi_[cell(0, L_)] = 0;
  bool level_alive = true;  // some row of level s-1 is non-empty
  for (int s = 1; s <= smax_ && level_alive; ++s) {
    level_alive = false;
    for (int k = 0; k + s <= L_; ++k) {
      double* row = frow(s, k);
      bool any = false;
      for (int ci : active_[k]) {
        const Cand& c = cands_[ci];
        if (c.max_succ < s - 1) continue;
        const size_t src = cell(s - 1, c.r + 1);
        const int hi = std::min(hi_[src], D_ - c.size);
        if (lo_[src] > hi) continue;
        if (!any) std::fill_n(row, D_ + 1, kInf);
        relax(row, frow(s - 1, c.r + 1), lo_[src], hi, c.size, c.t, cap(c, s));
        any = true;
      }
      if (!any) continue;
      const double* pre = prefix_.row(k);
      const double* pre_max = prefix_max_.row(k);
      int lo = D_ + 1, hi = -1;
      for (int d = 0; d <= D_; ++d) {
        if (row[d] == kInf) continue;
        // Any plan through this state costs at least row[d] + its prefix + (B-1) * t_max
        // (plans whose max is below t_max were scored at an earlier t_max), and needs a prefix
        // whose stages fit under t_max.
        if (pre_max[D_ - d] > t_max || (prune && !(row[d] + pre[D_ - d] + tail < best_))) {
          row[d] = kInf;
          continue;
        }
        lo = std::min(lo, d);
        hi = d;
      }
      lo_[cell(s, k)] = lo;
      hi_[cell(s, k)] = hi;
      level_alive |= lo <= hi;
    }
  }
}

std::vector<StageChoice> Solver::backtrack(int s) const {
  std::vector<StageChoice> plan;
  int k = 0, d = D_;
  for (int left = s; left >= 1; --left) {
    const double want = frow(left, k)[d];
    bool found = false;
    for (int ci : active_[k]) {
      const Cand& c = cands_[ci];
      if (c.max_succ < left - 1 || c.size > d) continue;
      const size_t src = cell(left - 1, c.r + 1);
      const int rest = d - c.size;
      if (rest < lo_[src] || rest > hi_[src]) continue;
      const double after = frow(left - 1, c.r + 1)[rest];
      if (after > cap(c, left) || c.t + after != want) continue;
      plan.push_back({c.l, c.r, c.m});
      k = c.r + 1;
      d = rest;
      found = true;
      break;
    }
    ALPA_CHECK(found) << "stage DP backtrack lost the path at layer " << k << ", " << d
                      << " devices, " << left << " stages left";
  }
  ALPA_CHECK(k == L_ && d == 0) << "stage DP backtrack ended at layer " << k << ", " << d
                                << " devices";
  return plan;
}

void Solver::score() {
  for (int s = 1; s <= smax_; ++s) {
    const size_t top = cell(s, 0);
    if (lo_[top] > D_ || hi_[top] < D_) continue;
    const double sum = frow(s, 0)[D_];
    if (sum == kInf) continue;
    std::vector<StageChoice> plan = backtrack(s);
    std::vector<StageCandidate> chosen;
    std::vector<SubmeshShape> shapes;
    for (const StageChoice& c : plan) {
      chosen.push_back(r_.at(c.first_layer, c.last_layer, c.submesh));
      shapes.push_back(r_.submeshes[c.submesh]);
    }
    const double total = pipeline_timing(chosen, B_).step;
    if (!(total < best_)) continue;
    if (!place_submeshes(shapes, r_.hosts, r_.devices_per_host).ok()) {
      ++unplaceable_;
      continue;
    }
    best_ = total;
    best_plan_ = std::move(plan);
  }
}

// Why no plan exists: memory (a plan exists when max_succ is ignored) or coverage.
Status no_plan(const StageDpRequest& r, int unplaceable) {
  const int L = r.num_layers;
  const int D = static_cast<int>(r.num_devices());
  DeviceTable suf(L + 1, D);  // ignoring memory
  suf.row(L)[0] = 0;
  for (int k = L - 1; k >= 0; --k)
    for (int e = k; e < L; ++e)
      for (int m = 0; m < r.num_submeshes(); ++m) {
        const StageCandidate& c = r.at(k, e, m);
        const int64_t size = r.submeshes[m].size();
        if (!std::isfinite(c.time) || size > D) continue;
        relax(suf.row(k), suf.row(e + 1), 0, D - static_cast<int>(size), static_cast<int>(size),
              c.time);
      }
  const std::string what =
      cat("no pipeline plan for ", L, " layers on ", r.hosts, "x", r.devices_per_host, " devices");
  if (suf.row(0)[D] == kInf)
    return failed_precondition(
        cat(what, ": no chain of stages with finite times covers every layer using exactly ", D,
            " devices"),
        "check the candidate table: each layer needs a finite time in some stage, and the "
        "submeshes must be able to add up to the whole cluster");
  if (unplaceable > 0)
    return failed_precondition(
        cat(what, ": the ", unplaceable, " best plans' submeshes cannot be placed on the hosts"),
        "use the shapes of submesh_choices: (1, 2^k) inside a host, (n, M) for whole hosts");
  return resource_exhausted(
      cat(what,
          ": every plan exceeds device memory (a stage holds activations for more later "
          "stages than its max_succ allows)"),
      "use more devices, more micro-batches (smaller activations per micro-batch), or a smaller "
      "model");
}

Result<StageDpSolution> finish(const StageDpRequest& r, std::vector<StageChoice> plan, int runs) {
  StageDpSolution sol;
  std::vector<SubmeshShape> shapes;
  std::vector<StageCandidate> chosen;
  for (const StageChoice& c : plan) {
    chosen.push_back(r.at(c.first_layer, c.last_layer, c.submesh));
    shapes.push_back(r.submeshes[c.submesh]);
  }
  const PipelineTiming timing = pipeline_timing(chosen, r.micro_batches);
  sol.sum_stage_time = timing.latency;
  sol.max_stage_time = timing.period;
  std::vector<std::string> violations;
  sol.total_time = evaluate_stages(r, plan, &violations);
  ALPA_CHECK(violations.empty()) << "stage plan violates: " << violations.front();
  Result<std::vector<int>> placed = place_submeshes(shapes, r.hosts, r.devices_per_host);
  ALPA_CHECK(placed.ok()) << placed.status().to_string();
  sol.first_device = std::move(placed).value();
  sol.stages = std::move(plan);
  sol.tmax_values_tried = runs;
  return sol;
}

Result<StageDpSolution> Solver::solve(const StageDpOptions& o) {
  const double cells = (std::min(L_, D_) + 1.0) * (L_ + 1.0) * (D_ + 1.0);
  if (cells > 2e8)
    return invalid_argument(
        cat("stage DP: ", L_, " layers x ", D_, " devices needs ", cells, " table entries"),
        "cluster the model into fewer layers");
  collect();
  if (cands_.empty() || smax_ < 1) return no_plan(r_, 0);
  bounds();
  // t_max = +inf: the plan of smallest sum; its F values give the smallest sum of any plan.
  select(kInf);
  run(kInf);
  for (int s = 1; s <= smax_; ++s)
    if (lo_[cell(s, 0)] <= D_ && D_ <= hi_[cell(s, 0)]) minsum_ = std::min(minsum_, frow(s, 0)[D_]);
  if (minsum_ == kInf) return no_plan(r_, 0);
  score();

  std::vector<int> order(cands_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return cands_[a].b < cands_[b].b; });
  // With transfers, a round trip can set the period between two bottlenecks: t_max also steps
  // through a geometric grid from the smallest bottleneck.
  double grid = transfers_ && !order.empty() ? cands_[order.front()].b : kInf;
  if (grid <= 0) grid = 1e-9;
  double last = -kInf;
  for (size_t i = 0; i < order.size() || grid < kInf;) {
    const double next_b = i < order.size() ? cands_[order[i]].b : kInf;
    const bool on_grid = grid < next_b;
    const double t = on_grid ? grid : next_b;
    bool fresh = on_grid;  // a candidate of this bottleneck can still be part of a better plan
    if (on_grid) {
      grid *= 1 + kTmaxGrid;
    } else {
      size_t j = i;
      for (; j < order.size() && cands_[order[j]].b == t; ++j) fresh |= useful(cands_[order[j]], t);
      i = j;
    }
    if (!(minsum_ + (B_ - 1) * t < best_)) break;
    if (!fresh || t - last < o.tmax_gap) continue;
    last = t;
    select(t);
    run(t);
    score();
  }
  if (best_plan_.empty()) return no_plan(r_, unplaceable_);
  return finish(r_, std::move(best_plan_), runs_);
}

}  // namespace

Status check_stage_dp_request(const StageDpRequest& r) {
  if (r.num_layers < 1)
    return invalid_argument(cat("stage DP request: num_layers must be >= 1, got ", r.num_layers));
  if (r.hosts < 1 || r.devices_per_host < 1)
    return invalid_argument(
        cat("stage DP request: cluster ", r.hosts, "x", r.devices_per_host, " has no devices"));
  if (r.num_devices() > (int64_t{1} << 16))
    return invalid_argument(cat("stage DP request: ", r.num_devices(), " devices is too many"));
  if (r.micro_batches < 1)
    return invalid_argument(
        cat("stage DP request: micro_batches must be >= 1, got ", r.micro_batches));
  if (r.submeshes.empty())
    return invalid_argument("stage DP request: no submesh shapes",
                            "list the shapes of submesh_choices(hosts, devices_per_host)");
  for (size_t i = 0; i < r.submeshes.size(); ++i) {
    Status st = check_submesh_shape(r.submeshes[i], r.hosts, r.devices_per_host);
    if (!st.ok()) return st.with_context(cat("stage DP request: submeshes[", i, "]"));
  }
  const size_t want = static_cast<size_t>(r.num_layers) * r.num_layers * r.submeshes.size();
  if (r.candidates.size() != want)
    return invalid_argument(cat("stage DP request: ", r.candidates.size(), " candidates, expected ",
                                want, " (num_layers^2 x submeshes)"));
  for (int l = 0; l < r.num_layers; ++l)
    for (int e = l; e < r.num_layers; ++e)
      for (int m = 0; m < r.num_submeshes(); ++m) {
        const StageCandidate& c = r.at(l, e, m);
        if (std::isnan(c.time) || c.time < 0)
          return invalid_argument(cat("stage DP request: candidate [", l, "][", e, "][", m,
                                      "] has time ", c.time, "; times are >= 0 or +inf"));
        if (std::isnan(c.transfer) || c.transfer < 0 || c.transfer > c.time)
          return invalid_argument(cat("stage DP request: candidate [", l, "][", e, "][", m,
                                      "] has transfer ", c.transfer, " (time ", c.time,
                                      "); transfers are >= 0 and part of the time"));
        if (c.max_succ < -1)
          return invalid_argument(cat("stage DP request: candidate [", l, "][", e, "][", m,
                                      "] has max_succ ", c.max_succ, "; use -1 for never"));
      }
  return ok_status();
}

Result<StageDpSolution> solve_stage_dp(const StageDpRequest& r, const StageDpOptions& options) {
  ALPA_RETURN_IF_ERROR(check_stage_dp_request(r));
  if (!(options.tmax_gap >= 0))
    return invalid_argument(cat("stage DP: tmax_gap must be >= 0, got ", options.tmax_gap));
  return Solver(r).solve(options);
}

Result<StageDpSolution> solve_stage_bruteforce(const StageDpRequest& r, double max_plans) {
  ALPA_RETURN_IF_ERROR(check_stage_dp_request(r));
  const int L = r.num_layers, S = r.num_submeshes();
  const double plans = S * std::pow(S + 1.0, L - 1);
  if (plans > max_plans)
    return invalid_argument(
        cat("stage DP brute force: ", plans, " plans exceed the limit of ", max_plans),
        "use solve_stage_dp for instances this large");
  double best = kInf;
  std::vector<StageChoice> best_plan;
  int unplaceable = 0;
  std::vector<StageChoice> stages;
  for (uint64_t cuts = 0; cuts < (uint64_t{1} << (L - 1)); ++cuts) {
    stages.clear();
    int first = 0;
    for (int l = 0; l < L; ++l)
      if (l == L - 1 || (cuts >> l & 1)) {
        stages.push_back({first, l, 0});
        first = l + 1;
      }
    // Odometer over the submesh of each stage.
    while (true) {
      std::vector<std::string> why;
      const double v = evaluate_checked(r, stages, &why);
      if (v < best) {
        best = v;
        best_plan = stages;
      } else if (v == kInf && why.size() == 1 && why[0].find("placed") != std::string::npos) {
        ++unplaceable;
      }
      size_t i = 0;
      while (i < stages.size() && ++stages[i].submesh == S) stages[i++].submesh = 0;
      if (i == stages.size()) break;
    }
  }
  if (best_plan.empty()) return no_plan(r, unplaceable);
  return finish(r, std::move(best_plan), 0);
}

double evaluate_stages(const StageDpRequest& r, std::span<const StageChoice> stages,
                       std::vector<std::string>* violations) {
  if (Status st = check_stage_dp_request(r); !st.ok()) {
    if (violations) violations->push_back(st.message());
    return kInf;
  }
  return evaluate_checked(r, stages, violations);
}

namespace {

double evaluate_checked(const StageDpRequest& r, std::span<const StageChoice> stages,
                        std::vector<std::string>* violations) {
  bool ok = true;
  auto fail = [&](std::string why) {
    ok = false;
    if (violations) violations->push_back(std::move(why));
  };
  if (stages.empty()) {
    fail("no stages");
    return kInf;
  }
  const int n = static_cast<int>(stages.size());
  int next = 0;
  int64_t devices = 0;
  std::vector<StageCandidate> chosen;
  std::vector<SubmeshShape> shapes;
  for (int i = 0; i < n; ++i) {
    const StageChoice& c = stages[i];
    if (c.first_layer != next)
      fail(cat("stage ", i, " starts at layer ", c.first_layer, ", expected ", next));
    if (c.last_layer < c.first_layer || c.first_layer < 0 || c.last_layer >= r.num_layers) {
      fail(cat("stage ", i, " has layers ", c.first_layer, "..", c.last_layer, " outside 0..",
               r.num_layers - 1, " or empty"));
      return kInf;
    }
    next = c.last_layer + 1;
    if (c.submesh < 0 || c.submesh >= r.num_submeshes()) {
      fail(cat("stage ", i, " uses submesh ", c.submesh, " of ", r.num_submeshes()));
      continue;
    }
    const SubmeshShape& shape = r.submeshes[c.submesh];
    shapes.push_back(shape);
    devices += shape.size();
    const StageCandidate& cand = r.at(c.first_layer, c.last_layer, c.submesh);
    if (!std::isfinite(cand.time))
      fail(cat("stage ", i, " (layers ", c.first_layer, "..", c.last_layer, " on ",
               shape.to_string(), ") has no finite time"));
    if (cand.max_succ < n - 1 - i)
      fail(cat("stage ", i, " (layers ", c.first_layer, "..", c.last_layer, " on ",
               shape.to_string(), ") has ", n - 1 - i,
               " later stages but memory allows max_succ = ", cand.max_succ));
    chosen.push_back(cand);
  }
  if (next != r.num_layers)
    fail(cat("the stages cover layers 0..", next - 1, " of 0..", r.num_layers - 1));
  if (devices != r.num_devices())
    fail(cat("the stages use ", devices, " devices, the cluster has ", r.num_devices()));
  if (!ok) return kInf;
  Result<std::vector<int>> placed = place_submeshes(shapes, r.hosts, r.devices_per_host);
  if (!placed.ok()) {
    fail(cat("the submeshes cannot be placed: ", placed.status().message()));
    return kInf;
  }
  return pipeline_timing(chosen, r.micro_batches).step;
}

}  // namespace

PipelineTiming pipeline_timing(std::span<const StageCandidate> stages, int micro_batches) {
  PipelineTiming p;
  const int n = static_cast<int>(stages.size());
  bool transfers = false;
  for (const StageCandidate& c : stages) transfers |= c.transfer > 0;
  double suffix = 0;  // sum of the later stages' times
  for (int i = n - 1; i >= 0; --i) {
    const StageCandidate& c = stages[i];
    p.period = std::max({p.period, c.time - c.transfer, c.transfer});
    // Without transfers no round trip is longer than n - i times the slowest stage.
    if (transfers) p.period = std::max(p.period, (suffix + c.time - c.transfer) / (n - i));
    suffix += c.time;
  }
  p.latency = suffix;
  p.step = p.latency + (micro_batches - 1) * p.period;
  return p;
}

std::string stage_dp_to_json(const StageDpRequest& r) {
  nlohmann::json j;
  j["num_layers"] = r.num_layers;
  j["hosts"] = r.hosts;
  j["devices_per_host"] = r.devices_per_host;
  j["micro_batches"] = r.micro_batches;
  nlohmann::json shapes = nlohmann::json::array();
  for (const SubmeshShape& s : r.submeshes) shapes.push_back({s.hosts, s.devices_per_host});
  j["submeshes"] = shapes;
  nlohmann::json times = nlohmann::json::array(), succ = nlohmann::json::array();
  nlohmann::json transfers = nlohmann::json::array();
  bool any_transfer = false;
  for (const StageCandidate& c : r.candidates) {
    times.push_back(std::isfinite(c.time) ? nlohmann::json(c.time) : nlohmann::json(nullptr));
    succ.push_back(c.max_succ);
    transfers.push_back(c.transfer);
    any_transfer |= c.transfer > 0;
  }
  j["time"] = times;
  j["max_succ"] = succ;
  if (any_transfer) j["transfer"] = transfers;
  return j.dump();
}

Result<StageDpRequest> stage_dp_from_json(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded()) return parse_error("stage DP request: invalid JSON");
  StageDpRequest r;
  try {
    r.num_layers = j.at("num_layers").get<int>();
    r.hosts = j.at("hosts").get<int64_t>();
    r.devices_per_host = j.at("devices_per_host").get<int64_t>();
    r.micro_batches = j.at("micro_batches").get<int>();
    for (const auto& s : j.at("submeshes")) {
      if (!s.is_array() || s.size() != 2)
        return parse_error("stage DP request: each submesh is [hosts, devices_per_host]");
      r.submeshes.push_back({s.at(0).get<int64_t>(), s.at(1).get<int64_t>()});
    }
    const auto& times = j.at("time");
    const auto& succ = j.at("max_succ");
    if (!times.is_array() || !succ.is_array() || times.size() != succ.size())
      return parse_error("stage DP request: 'time' and 'max_succ' must be arrays of one length");
    for (size_t i = 0; i < times.size(); ++i)
      r.candidates.push_back(
          {times[i].is_null() ? kInf : times[i].get<double>(), succ[i].get<int>()});
    if (j.contains("transfer")) {
      const auto& transfers = j.at("transfer");
      if (!transfers.is_array() || transfers.size() != times.size())
        return parse_error("stage DP request: 'transfer' must be an array as long as 'time'");
      for (size_t i = 0; i < transfers.size(); ++i)
        r.candidates[i].transfer = transfers[i].get<double>();
    }
  } catch (const nlohmann::json::exception& e) {
    return parse_error(cat("stage DP request: ", e.what()));
  }
  ALPA_RETURN_IF_ERROR(check_stage_dp_request(r));
  return r;
}

}  // namespace alpa
