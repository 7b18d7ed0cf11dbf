#include "alpa/inter/layer_clustering.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// `ops` with its def-use structure in positions (indices into `ops`).
struct Prepared {
  int n = 0;
  std::vector<char> counted;   // [n] produces a value that may cross layers
  std::vector<double> bytes;   // [n] bytes of its value
  std::vector<int> use_begin;  // [n+1] CSR into `uses`
  std::vector<int> uses;       // positions of counted producers read by each op
  std::vector<int> heavy;      // positions of heavy ops, ascending
  std::vector<double> flops;   // [n] node_flops of heavy ops, 0 otherwise
};

Status prepare(const Graph& g, std::span<const ValueId> ops, Prepared* out) {
  if (ops.empty()) return invalid_argument("layer clustering: the op list is empty");
  Prepared& p = *out;
  p.n = static_cast<int>(ops.size());
  std::vector<int> pos(static_cast<size_t>(g.size()), -1);
  for (int i = 0; i < p.n; ++i) {
    const ValueId id = ops[i];
    if (id < 0 || id >= g.size())
      return invalid_argument(cat("layer clustering: ops[", i, "] = ", id,
                                  " is not a node of the graph (it has ", g.size(), " nodes)"));
    if (pos[id] >= 0)
      return invalid_argument(cat("layer clustering: node ", value_ref(g, id),
                                  " appears twice in the op list (ops[", pos[id], "] and ops[", i,
                                  "])"));
    pos[id] = i;
  }
  p.counted.assign(p.n, 0);
  p.bytes.assign(p.n, 0.0);
  p.flops.assign(p.n, 0.0);
  p.use_begin.assign(p.n + 1, 0);
  for (int i = 0; i < p.n; ++i) {
    const Node& node = g.node(ops[i]);
    p.counted[i] = node.operands.empty() ? 0 : 1;
    p.bytes[i] = static_cast<double>(node.type.bytes());
    if (is_heavy_op(g, ops[i])) {
      p.heavy.push_back(i);
      p.flops[i] = node_flops(g, ops[i]);
    }
    for (ValueId operand : node.operands) {
      const int u = pos[operand];
      if (u < 0) continue;  // produced outside `ops`: a parameter or a value of another graph part
      if (u >= i)
        return invalid_argument(
            cat("layer clustering: ", value_ref(g, ops[i]), " (ops[", i, "]) reads ",
                value_ref(g, operand), " which comes later (ops[", u, "])"),
            "pass the ops in execution order");
      if (p.counted[u]) p.uses.push_back(u);
    }
    p.use_begin[i + 1] = static_cast<int>(p.uses.size());
  }
  return ok_status();
}

// Per layer, the input bytes of `layer_of` (non-decreasing) over the prepared ops.
std::vector<double> input_bytes(const Prepared& p, std::span<const int> layer_of, int num_layers) {
  std::vector<double> in(static_cast<size_t>(num_layers), 0.0);
  std::vector<int> stamp(static_cast<size_t>(p.n), -1);
  for (int i = 0; i < p.n; ++i) {
    const int layer = layer_of[i];
    for (int e = p.use_begin[i]; e < p.use_begin[i + 1]; ++e) {
      const int u = p.uses[e];
      if (layer_of[u] < layer && stamp[u] != layer) {
        stamp[u] = layer;
        in[layer] += p.bytes[u];
      }
    }
  }
  return in;
}

LayerClustering finish(const Prepared& p, std::vector<int> layer_of, int num_layers) {
  LayerClustering c;
  c.num_layers = num_layers;
  c.layer_flops.assign(num_layers, 0.0);
  for (int i = 0; i < p.n; ++i) c.layer_flops[layer_of[i]] += p.flops[i];
  c.layer_input_bytes = input_bytes(p, layer_of, num_layers);
  c.max_cross_bytes = *std::max_element(c.layer_input_bytes.begin(), c.layer_input_bytes.end());
  c.layer_of = std::move(layer_of);
  return c;
}

// live[c]: bytes produced before cut c and read at or after it (cut c splits [0,c) | [c,n)).
std::vector<double> live_bytes(const Prepared& p) {
  std::vector<double> diff(static_cast<size_t>(p.n) + 2, 0.0);
  std::vector<int> last_use(static_cast<size_t>(p.n), -1);
  for (int i = 0; i < p.n; ++i)
    for (int e = p.use_begin[i]; e < p.use_begin[i + 1]; ++e) last_use[p.uses[e]] = i;
  for (int i = 0; i < p.n; ++i) {
    if (last_use[i] <= i) continue;
    diff[i + 1] += p.bytes[i];
    diff[last_use[i] + 1] -= p.bytes[i];
  }
  std::vector<double> live(static_cast<size_t>(p.n) + 1, 0.0);
  for (int c = 1; c <= p.n; ++c) live[c] = live[c - 1] + diff[c];
  return live;
}

// The coarsened problem: K segments, each holding one heavy op.
struct Segments {
  int k = 0;
  std::vector<int> start;      // [K+1] position where each segment starts; start[K] = n
  std::vector<double> cost;    // [K] balancing cost (FLOPs; 1 each when every heavy op has 0)
  std::vector<double> prefix;  // [K+1] prefix sums of cost
  std::vector<double> input;   // [(K+1) x (K+1)] input[k*(K+1)+r]: inputs of segments k..r-1

  double in(int k0, int r) const { return input[static_cast<size_t>(k0) * (k + 1) + r]; }
};

// The cut between heavy ops j-1 and j (1 <= j < K): among the light ops between them, where
// the fewest bytes are live (the earliest on ties).
int cut_before_heavy(const Prepared& p, const std::vector<double>& live, int j) {
  int best = p.heavy[j - 1] + 1;
  for (int c = best + 1; c <= p.heavy[j]; ++c)
    if (live[c] < live[best]) best = c;
  return best;
}

Segments coarsen(const Prepared& p) {
  Segments s;
  s.k = static_cast<int>(p.heavy.size());
  const int K = s.k;
  const std::vector<double> live = live_bytes(p);

  s.start.assign(K + 1, 0);
  s.start[K] = p.n;
  for (int j = 1; j < K; ++j) s.start[j] = cut_before_heavy(p, live, j);
  double total = 0;
  for (int j = 0; j < K; ++j) total += p.flops[p.heavy[j]];
  s.cost.resize(K);
  for (int j = 0; j < K; ++j) s.cost[j] = total > 0 ? p.flops[p.heavy[j]] : 1.0;
  s.prefix.assign(K + 1, 0.0);
  for (int j = 0; j < K; ++j) s.prefix[j + 1] = s.prefix[j] + s.cost[j];

  s.input.assign(static_cast<size_t>(K + 1) * (K + 1), 0.0);
  std::vector<int> stamp(static_cast<size_t>(p.n), -1);
  for (int k0 = 0; k0 < K; ++k0) {
    const int first = s.start[k0];
    double sum = 0;
    for (int r = k0 + 1; r <= K; ++r) {
      for (int i = s.start[r - 1]; i < s.start[r]; ++i)
        for (int e = p.use_begin[i]; e < p.use_begin[i + 1]; ++e) {
          const int u = p.uses[e];
          if (u < first && stamp[u] != k0) {
            stamp[u] = k0;
            sum += p.bytes[u];
          }
        }
      s.input[static_cast<size_t>(k0) * (K + 1) + r] = sum;
    }
  }
  return s;
}

struct DpOutcome {
  bool feasible = false;
  double value = kInf;
  std::vector<int> layer_start;  // [L] first segment of each layer
  double bound = 0;
  int lower_bound = 0;
};

// Alpa's cluster_jaxpr_by_cost over segments for L layers.
DpOutcome run_dp(const Segments& s, int L, const LayerClusteringOptions& o) {
  const int K = s.k;
  DpOutcome out;
  const double total = s.prefix[K];
  out.bound = total / L * (1 + o.eps);
  int lb = o.heavy_op_lower_bound;
  if (static_cast<double>(K) / L < lb) lb = K / L;
  lb = std::max(lb, 1);
  out.lower_bound = lb;
  if (L > K) return out;

  // Allowed segment ranges [l, r] form one interval of r per l.
  std::vector<std::vector<int>> lefts(static_cast<size_t>(K) + 1);  // lefts[r]: l with [l, r-1]
  for (int l = 0; l < K; ++l) {
    int cnt = 0;
    double cost = 0;
    for (int r = l; r < K; ++r) {
      ++cnt;
      cost += s.cost[r];
      if (cnt < lb) {
        if (cost >= out.bound) lefts[r + 1].push_back(l);
        continue;
      }
      if (cost >= out.bound && cnt > lb) break;
      lefts[r + 1].push_back(l);
    }
  }

  const size_t w = static_cast<size_t>(L) + 1;
  auto at = [w](int r, int q) { return static_cast<size_t>(r) * w + q; };
  std::vector<double> value((K + 1) * w, kInf), sum((K + 1) * w, kInf), imb((K + 1) * w, kInf);
  std::vector<int> arg((K + 1) * w, -1);
  value[at(0, 0)] = 0;
  sum[at(0, 0)] = 0;
  imb[at(0, 0)] = 0;
  for (int q = 1; q <= L; ++q) {
    for (int r = q; r <= K - (L - q); ++r) {
      const size_t cur = at(r, q);
      for (int k0 : lefts[r]) {
        const size_t prev = at(k0, q - 1);
        if (value[prev] == kInf) continue;
        const double in = s.in(k0, r);
        const double nv = std::max(value[prev], in);
        const double ns = sum[prev] + in;
        const double share = (s.prefix[r] - s.prefix[k0]) / (total > 0 ? total : 1.0);
        const double ni = imb[prev] + share * share;
        if (nv < value[cur] ||
            (nv <= value[cur] * (1 + 1e-4) &&
             (ns < sum[cur] || (ns <= sum[cur] * (1 + 1e-4) && ni < imb[cur])))) {
          value[cur] = nv;
          sum[cur] = ns;
          imb[cur] = ni;
          arg[cur] = k0;
        }
      }
    }
  }
  if (value[at(K, L)] == kInf) return out;
  out.feasible = true;
  out.value = value[at(K, L)];
  out.layer_start.assign(L, 0);
  int r = K;
  for (int q = L; q >= 1; --q) {
    const int k0 = arg[at(r, q)];
    ALPA_CHECK(k0 >= 0 && k0 < r) << "layer DP backtrack at r=" << r << " q=" << q;
    out.layer_start[q - 1] = k0;
    r = k0;
  }
  ALPA_CHECK(r == 0) << "layer DP backtrack ended at segment " << r;
  return out;
}

LayerClustering from_dp(const Prepared& p, const Segments& s, const DpOutcome& d) {
  const int L = static_cast<int>(d.layer_start.size());
  std::vector<int> layer_of(static_cast<size_t>(p.n), 0);
  for (int q = 0; q < L; ++q) {
    const int from = s.start[d.layer_start[q]];
    const int to = q + 1 < L ? s.start[d.layer_start[q + 1]] : p.n;
    ALPA_CHECK(from < to) << "empty layer " << q;
    for (int i = from; i < to; ++i) layer_of[i] = q;
  }
  LayerClustering c = finish(p, std::move(layer_of), L);
  ALPA_CHECK(c.max_cross_bytes == d.value)
      << "layer DP objective " << d.value << " != recomputed " << c.max_cross_bytes;
  c.segment_starts.assign(s.start.begin(), s.start.end() - 1);
  return c;
}

// No heavy ops: `L` chunks of (nearly) equal op count.
Result<LayerClustering> equal_chunks(const Prepared& p, int L) {
  if (L > p.n)
    return failed_precondition(
        cat("cannot split ", p.n, " ops into ", L, " layers"),
        cat("use ", p.n, " layers or fewer (--pipeline-layers, or \"layers\" in a pipeline plan)"));
  std::vector<int> layer_of(static_cast<size_t>(p.n));
  for (int i = 0; i < p.n; ++i) layer_of[i] = static_cast<int>(static_cast<int64_t>(i) * L / p.n);
  return finish(p, std::move(layer_of), L);
}

// Alpa's search_layer_num, capped so that layers average >= the heavy-op lower bound.
int automatic_layers(const Segments& s, const LayerClusteringOptions& o) {
  const int K = s.k;
  const int lb = std::max(o.heavy_op_lower_bound, 1);
  const int cap = K / lb;
  if (cap < 2) return 1;
  const DpOutcome two = run_dp(s, 2, o);
  if (!two.feasible) return 1;
  int lo = 2, hi = std::min(K / 3 + 1, cap + 1);
  if (o.max_layers >= 2) hi = std::min(hi, o.max_layers + 1);
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    const DpOutcome m = run_dp(s, mid, o);
    if (!m.feasible || m.value > two.value * (1 + o.layer_eps))
      hi = mid;
    else
      lo = mid;
  }
  return lo;
}

}  // namespace

bool is_heavy_op(const Graph& g, ValueId id) {
  const OpKind op = g.node(id).op;
  return op == OpKind::kDotGeneral || op == OpKind::kConv2d;
}

std::vector<double> layer_input_bytes(const Graph& g, std::span<const ValueId> ops,
                                      std::span<const int> layer_of) {
  Prepared p;
  Status st = prepare(g, ops, &p);
  ALPA_CHECK(st.ok()) << st.to_string();
  ALPA_CHECK(layer_of.size() == ops.size()) << "layer_of has " << layer_of.size() << " entries";
  int layers = 0;
  for (size_t i = 0; i < layer_of.size(); ++i) {
    ALPA_CHECK(layer_of[i] >= 0 && (i == 0 || layer_of[i] >= layer_of[i - 1]))
        << "layer_of must be non-decreasing from 0";
    layers = std::max(layers, layer_of[i] + 1);
  }
  return input_bytes(p, layer_of, layers);
}

Result<LayerClustering> cluster_layers(const Graph& g, std::span<const ValueId> ops,
                                       const LayerClusteringOptions& o) {
  if (o.num_layers < 0)
    return invalid_argument(cat("layer clustering: num_layers must be >= 0, got ", o.num_layers),
                            "use 0 for an automatic layer count");
  if (!(o.eps >= 0) || !std::isfinite(o.eps))
    return invalid_argument(cat("layer clustering: eps must be a finite number >= 0, got ", o.eps));
  if (!(o.layer_eps >= 0) || !std::isfinite(o.layer_eps))
    return invalid_argument(
        cat("layer clustering: layer_eps must be a finite number >= 0, got ", o.layer_eps));
  Prepared p;
  ALPA_RETURN_IF_ERROR(prepare(g, ops, &p));
  const int K = static_cast<int>(p.heavy.size());
  if (K == 0) return equal_chunks(p, o.num_layers == 0 ? 1 : o.num_layers);

  const Segments s = coarsen(p);
  const int L = o.num_layers == 0 ? automatic_layers(s, o) : o.num_layers;
  if (L > K)
    return failed_precondition(
        cat("cannot cluster the ops into ", L, " layers: there are only ", K,
            " heavy ops (dot_general, conv2d) and each layer needs at least one"),
        cat("use ", K, " layers or fewer (--pipeline-layers, or \"layers\" in a pipeline plan)"));
  const DpOutcome d = run_dp(s, L, o);
  if (!d.feasible)
    return failed_precondition(
        cat("no split of the ", K, " heavy ops into ", L,
            " layers keeps every layer below the FLOP bound (1 + eps) * total / L = ", d.bound,
            " with at least ", d.lower_bound, " heavy ops per layer below that bound"),
        "try a smaller --layers (or a larger eps)");
  return from_dp(p, s, d);
}

namespace {

// The stack of repeated blocks: `count` blocks of `period` ops from position `first`.
struct BlockStack {
  int first = 0, period = 0, count = 0;
};

Result<BlockStack> find_block_stack(const Graph& g, std::span<const ValueId> ops,
                                    const Prepared& p) {
  const std::vector<uint64_t> node_hash = structural_node_hashes(g);
  std::vector<uint64_t> h(static_cast<size_t>(p.n));
  for (int i = 0; i < p.n; ++i) h[i] = node_hash[ops[i]];
  // The periodic run covering the most ops: ops [begin, end) with h[i] == h[i + period]
  // throughout; on equal cover the shortest period (a multiple of a period covers no more).
  int period = 0, begin = 0, end = 0;
  for (int q = 1; 2 * q <= p.n; ++q) {
    int run = 0;
    for (int i = 0; i + q < p.n; ++i) {
      run = h[i] == h[i + q] ? run + 1 : 0;
      if (run > 0 && run + q > end - begin) {
        period = q;
        begin = i - run + 1;
        end = i + 1 + q;
      }
    }
  }
  // Blocks start at an offset within the period where the fewest bytes are live (the residual
  // stream). The first and last blocks may differ from the run in a few light ops (they read
  // the embedding, start a sum), so a window of one period beside the run with a block's FLOPs
  // is a block too; among the offsets, the one that so finds the most blocks (earliest on
  // ties).
  const std::vector<double> live = live_bytes(p);
  std::vector<double> prefix(static_cast<size_t>(p.n) + 1, 0.0);
  for (int i = 0; i < p.n; ++i) prefix[i + 1] = prefix[i] + p.flops[i];
  auto window = [&](int a) { return prefix[a + period] - prefix[a]; };
  // The blocks found from a start inside the run: (first block's start, count).
  auto extend = [&](int first) {
    int blocks = (end - first) / period;
    const double block = window(first);
    auto same = [&](int a) { return block > 0 && std::abs(window(a) - block) <= 1e-9 * block; };
    while (first - period >= 1 && same(first - period)) first -= period, ++blocks;
    while (first + (blocks + 1) * period <= p.n && same(first + blocks * period)) ++blocks;
    return std::make_pair(first, blocks);
  };
  int first = 0, blocks = 0;
  if (period > 0) {
    double fewest = kInf;
    for (int c = std::max(begin, 1); c < begin + period && c < end; ++c)
      fewest = std::min(fewest, live[c]);
    for (int c = std::max(begin, 1); c < begin + period && c < end; ++c) {
      if (live[c] > fewest * (1 + 1e-12)) continue;
      const auto [f, k] = extend(c);
      if (k > blocks) first = f, blocks = k;
    }
  }
  double total = 0, covered = 0;
  for (int i = 0; i < p.n; ++i) total += p.flops[i];
  for (int i = first; i < first + blocks * period; ++i) covered += p.flops[i];
  if (blocks < 2 || covered < 0.5 * total || total <= 0)
    return not_found(cat("no repeated block carries half the model's FLOPs (the longest run is ",
                         blocks, " blocks of ", period, " ops with ",
                         total > 0 ? static_cast<int>(100 * covered / total) : 0,
                         "% of the FLOPs)"));
  return BlockStack{first, period, blocks};
}

}  // namespace

Result<std::vector<int>> repeated_block_starts(const Graph& g, std::span<const ValueId> ops) {
  Prepared p;
  ALPA_RETURN_IF_ERROR(prepare(g, ops, &p));
  ALPA_ASSIGN_OR_RETURN(const BlockStack b, find_block_stack(g, ops, p));
  std::vector<int> starts;
  for (int k = 0; k < b.count; ++k) starts.push_back(b.first + k * b.period);
  return starts;
}

Result<LayerClustering> cluster_repeated_blocks(const Graph& g, std::span<const ValueId> ops,
                                                int max_layers) {
  Prepared p;
  ALPA_RETURN_IF_ERROR(prepare(g, ops, &p));
  ALPA_ASSIGN_OR_RETURN(const BlockStack stack, find_block_stack(g, ops, p));
  const int first = stack.first, period = stack.period, blocks = stack.count;
  // Blocks per layer: the fewest that keep at most max_layers layers, preferring a count
  // that divides the blocks; the ops before the first block join the first layer, the
  // leftover blocks and the ops after the last one the last layer.
  const int cap = std::max(1, max_layers);
  int per = (blocks + cap - 1) / cap;
  for (int k = per; k <= blocks; ++k)
    if (blocks % k == 0 && blocks / k <= cap) {
      // Accept a divisor only if it does not shrink the layer count by more than a quarter.
      if (4 * (blocks / k) >= 3 * (blocks / per)) per = k;
      break;
    }
  const int L = blocks / per;
  std::vector<int> layer_of(static_cast<size_t>(p.n), 0);
  for (int i = first + per * period; i < p.n; ++i)
    layer_of[i] = std::min(L - 1, (i - first) / (per * period));
  return finish(p, std::move(layer_of), L);
}

Result<std::vector<OpCut>> heavy_op_cuts(const Graph& g, std::span<const ValueId> ops) {
  Prepared p;
  ALPA_RETURN_IF_ERROR(prepare(g, ops, &p));
  const std::vector<double> live = live_bytes(p);
  std::vector<OpCut> cuts;
  double before = 0;
  int next = 0;  // ops before this position are counted in `before`
  for (int j = 1; j < static_cast<int>(p.heavy.size()); ++j) {
    OpCut c;
    c.position = cut_before_heavy(p, live, j);
    for (; next < c.position; ++next) before += p.flops[next];
    c.flops_before = before;
    c.live_bytes = live[c.position];
    cuts.push_back(c);
  }
  return cuts;
}

Result<LayerClustering> layers_from_boundaries(const Graph& g, std::span<const ValueId> ops,
                                               std::span<const int> starts) {
  Prepared p;
  ALPA_RETURN_IF_ERROR(prepare(g, ops, &p));
  for (size_t i = 0; i < starts.size(); ++i) {
    if (starts[i] < 1 || starts[i] >= p.n)
      return invalid_argument(cat("layer boundary ", i, " (start of layer ", i + 1, ") is ",
                                  starts[i], ", out of range [1, ", p.n - 1, "]"),
                              cat("each boundary is the index in the ", p.n,
                                  "-op list where a layer after the first begins"));
    if (i > 0 && starts[i] <= starts[i - 1])
      return invalid_argument(
          cat("layer boundaries must be strictly increasing: boundary ", i, " is ", starts[i],
              " after ", starts[i - 1],
              starts[i] == starts[i - 1] ? cat(" (layer ", i, " would be empty)") : std::string()),
          "list each layer's first op index once, in order");
  }
  const int L = static_cast<int>(starts.size()) + 1;
  std::vector<int> layer_of(static_cast<size_t>(p.n), 0);
  int q = 0;
  for (int i = 0; i < p.n; ++i) {
    while (q + 1 < L && i >= starts[q]) ++q;
    layer_of[i] = q;
  }
  return finish(p, std::move(layer_of), L);
}

}  // namespace alpa
