// The GShard MoE family: sizes and parameter counts (the paper's table), the MoE FFN against a
// naive top-2 routing reference and finite differences, training of the tiny size, registry.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <sstream>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/commands.h"
#include "alpa/cli/trainer.h"
#include "alpa/ir/analysis.h"
#include "alpa/ir/text.h"
#include "alpa/models/data.h"
#include "alpa/models/moe.h"
#include "alpa/models/registry.h"
#include "models/model_test_util.h"

namespace alpa {
namespace {

// Every size builds its training step without allocating weights (as `alpa graph` does), and
// the graph's weight elements equal moe_parameter_count.
TEST(MoeModel, EverySizeBuildsWithItsParameterCount) {
  for (const std::string& size : moe_preset_names()) {
    ModelSpec spec = resolve_model("moe", size, {}).value();
    Graph fwd = build_forward(spec, 1).value();
    TrainStep ts = build_train_step(fwd, {}).value();
    const GraphStats s = graph_stats(ts.graph);
    EXPECT_EQ(s.parameters, moe_parameter_count(spec.moe)) << size;
    EXPECT_GT(s.flops, 0) << size;
    EXPECT_EQ(tokens_per_batch(spec), spec.batch * spec.moe.seq) << size;
  }
}

// `alpa graph --model moe --size S --json` for every size.
TEST(MoeModel, AlpaGraphReportsEverySize) {
  for (const std::string& size : moe_preset_names()) {
    GraphFlags f;
    f.model.model = "moe";
    f.model.size = size;
    f.json = true;
    std::ostringstream out, err;
    ASSERT_EQ(run_graph(f, out, err), 0) << size << ": " << err.str() << out.str();
    const int64_t count = moe_parameter_count(moe_preset(size).value());
    EXPECT_NE(out.str().find(cat("\"parameters\":", count)), std::string::npos) << out.str();
  }
}

// The paper's nominal sizes (alpa.md §5.2), counted as Alpa's benchmarks configure the model
// (FFN inner size 8 C, tied embeddings).
TEST(MoeModel, PaperSizesHaveTheirNominalParameterCounts) {
  const std::pair<const char*, double> nominal[] = {
      {"380m", 380e6}, {"690m", 690e6}, {"1.3b", 1.3e9}, {"2.4b", 2.4e9},
      {"10b", 10e9},   {"27b", 27e9},   {"70b", 70e9}};
  for (const auto& [size, n] : nominal) {
    const double count = static_cast<double>(moe_parameter_count(moe_preset(size).value()));
    EXPECT_LT(std::abs(count - n) / n, 0.15) << size << ": " << count;
  }
}

TEST(MoeModel, EvenBlocksAreMixturesWithTheExpertDimFirst) {
  MoeConfig c = moe_preset("tiny").value();
  c.layers = 3;
  Graph g = build_moe(c).value();
  const int64_t C = c.hidden, F = 8 * C, E = c.experts;
  EXPECT_EQ(g.type(g.find("h0.moe.wi")).shape, (Shape{E, C, F}));
  EXPECT_EQ(g.type(g.find("h0.moe.wo")).shape, (Shape{E, F, C}));
  EXPECT_EQ(g.type(g.find("h2.moe.wg")).shape, (Shape{C, E}));
  EXPECT_EQ(g.find("h1.moe.wi"), kNoValue);
  EXPECT_EQ(g.type(g.find("h1.mlp.w1")).shape, (Shape{C, F}));
  EXPECT_EQ(moe_expert_capacity(c), 8);  // ceil(2 * 16 / 4)
}

// parse(print(g)) == g for the tiny size's forward graph and training step.
TEST(MoeModel, TinyGraphsRoundTripThroughText) {
  ModelSpec spec = resolve_model("moe", "tiny", {}).value();
  Graph fwd = build_forward(spec, 1).value();
  TrainStepOptions o;
  o.micro_batches = 2;
  TrainStep ts = build_train_step(build_forward(spec, 2).value(), o).value();
  for (const Graph* g : {&fwd, &ts.graph}) {
    Result<Graph> back = parse_graph(print_graph(*g), "moe");
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, *g);
  }
}

// ---- the MoE FFN against a naive reference ------------------------------------------------

struct FfnCase {
  int64_t G, S, C, F, E;
  Graph graph;
  std::vector<std::vector<double>> params;  // x, wg, wi, bi, wo, bo
};

// x's channel 0 is 1 for every token and wg[0][0] = pull, so expert 0 attracts most top-1
// choices and its capacity binds.
FfnCase make_ffn_case(int64_t G, int64_t S, int64_t C, int64_t F, int64_t E, double pull,
                      uint64_t seed) {
  FfnCase fc{G, S, C, F, E, Graph(), {}};
  Builder b("moe_ffn");
  Value x = b.parameter("x", {DType::kF32, {G, S, C}});
  MoeFfnWeights w;
  w.wg = b.parameter("wg", {DType::kF32, {C, E}});
  w.wi = b.parameter("wi", {DType::kF32, {E, C, F}});
  w.bi = b.parameter("bi", {DType::kF32, {E, F}});
  w.wo = b.parameter("wo", {DType::kF32, {E, F, C}});
  w.bo = b.parameter("bo", {DType::kF32, {E, C}});
  MoeFfn r = moe_ffn(b, x, w);
  Rng rng(seed);
  const std::vector<double> R = testing::random_values(rng, G * S * C, 1.0);
  Value weights = b.constant(R, {DType::kF32, {G, S, C}});
  b.output("loss", b.add(b.sum_all(b.mul(r.y, weights)), r.balance));
  b.output("y", r.y);
  b.output("dispatch", r.dispatch);
  b.output("combine", r.combine);
  b.output("balance", r.balance);
  fc.graph = b.finish().value();
  fc.params = {
      testing::random_values(rng, G * S * C, 1.0), testing::random_values(rng, C * E, 1.0),
      testing::random_values(rng, E * C * F, 0.5), testing::random_values(rng, E * F, 0.5),
      testing::random_values(rng, E * F * C, 0.5), testing::random_values(rng, E * C, 0.5)};
  for (int64_t t = 0; t < G * S; ++t) fc.params[0][t * C] = 1.0;
  fc.params[1][0] = pull;
  return fc;
}

struct NaiveMoe {
  std::vector<double> y, dispatch, combine;
  double balance = 0;
  int dropped = 0;  // choices (top-1 or top-2) over capacity
};

NaiveMoe naive_moe(const FfnCase& fc) {
  const int64_t G = fc.G, S = fc.S, C = fc.C, F = fc.F, E = fc.E, K = moe_capacity(S, E);
  const auto &x = fc.params[0], &wg = fc.params[1], &wi = fc.params[2], &bi = fc.params[3],
             &wo = fc.params[4], &bo = fc.params[5];
  NaiveMoe r;
  r.y.assign(G * S * C, 0.0);
  r.dispatch.assign(G * S * E * K, 0.0);
  r.combine.assign(G * S * E * K, 0.0);
  for (int64_t g = 0; g < G; ++g) {
    std::vector<int64_t> top1(S), top2(S);
    std::vector<std::vector<double>> probs(S, std::vector<double>(E));
    std::vector<double> share(E, 0), mean_prob(E, 0);
    for (int64_t s = 0; s < S; ++s) {
      const double* xt = &x[(g * S + s) * C];
      double mx = -1e300;
      for (int64_t e = 0; e < E; ++e) {
        double l = 0;
        for (int64_t c = 0; c < C; ++c) l += xt[c] * wg[c * E + e];
        probs[s][e] = l;
        mx = std::max(mx, l);
      }
      double sum = 0;
      for (double& p : probs[s]) sum += (p = std::exp(p - mx));
      for (double& p : probs[s]) p /= sum;
      top1[s] = std::max_element(probs[s].begin(), probs[s].end()) - probs[s].begin();
      std::vector<double> rest = probs[s];
      rest[top1[s]] = 0;
      top2[s] = std::max_element(rest.begin(), rest.end()) - rest.begin();
      share[top1[s]] += 1.0 / S;
      for (int64_t e = 0; e < E; ++e) mean_prob[e] += probs[s][e] / S;
    }
    for (int64_t e = 0; e < E; ++e) r.balance += share[e] * mean_prob[e] * E * E / (G * E);
    // Slots: top-1 choices in token order, then top-2 choices after all kept top-1s.
    std::vector<int64_t> seen1(E, 0), seen2(E, 0), slot1(S), slot2(S);
    for (int64_t s = 0; s < S; ++s) slot1[s] = seen1[top1[s]]++;
    for (int64_t s = 0; s < S; ++s) slot2[s] = std::min(seen1[top2[s]], K) + seen2[top2[s]]++;
    for (int64_t s = 0; s < S; ++s) {
      const bool keep1 = slot1[s] < K, keep2 = slot2[s] < K;
      r.dropped += !keep1 + !keep2;
      const double g1 = keep1 ? probs[s][top1[s]] : 0, g2 = keep2 ? probs[s][top2[s]] : 0;
      const double denom = g1 + g2 > 0 ? g1 + g2 : 1;
      const int64_t t = g * S + s;
      for (const auto& [keep, e, k, gate] : {std::tuple{keep1, top1[s], slot1[s], g1 / denom},
                                             std::tuple{keep2, top2[s], slot2[s], g2 / denom}}) {
        if (!keep) continue;
        r.dispatch[(t * E + e) * K + k] = 1;
        r.combine[(t * E + e) * K + k] = gate;
        std::vector<double> h(F);
        for (int64_t f = 0; f < F; ++f) {
          double v = bi[e * F + f];
          for (int64_t c = 0; c < C; ++c) v += x[t * C + c] * wi[(e * C + c) * F + f];
          h[f] = std::max(v, 0.0);
        }
        for (int64_t c = 0; c < C; ++c) {
          double v = bo[e * C + c];
          for (int64_t f = 0; f < F; ++f) v += h[f] * wo[(e * F + f) * C + c];
          r.y[t * C + c] += gate * v;
        }
      }
    }
  }
  return r;
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return 1e300;
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

TEST(MoeFfn, RoutingMatchesANaiveTop2ReferenceWithDroppedTokens) {
  const FfnCase fc = make_ffn_case(2, 8, 4, 6, 4, 3.0, 5);
  const NaiveMoe want = naive_moe(fc);
  ASSERT_GT(want.dropped, 0) << "the case should overflow expert 0's capacity";
  Result<std::vector<std::vector<double>>> got = reference_eval(fc.graph, fc.params);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  const Graph& g = fc.graph;
  EXPECT_EQ(got->at(testing::output_index(g, "dispatch")), want.dispatch);
  EXPECT_LT(max_abs_diff(got->at(testing::output_index(g, "combine")), want.combine), 1e-12);
  EXPECT_LT(max_abs_diff(got->at(testing::output_index(g, "y")), want.y), 1e-10);
  EXPECT_NEAR(got->at(testing::output_index(g, "balance"))[0], want.balance, 1e-12);
  // Each slot of each expert holds at most one token.
  const int64_t K = moe_capacity(fc.S, fc.E);
  const std::vector<double>& d = got->at(testing::output_index(g, "dispatch"));
  for (int64_t grp = 0; grp < fc.G; ++grp)
    for (int64_t e = 0; e < fc.E; ++e)
      for (int64_t k = 0; k < K; ++k) {
        double n = 0;
        for (int64_t s = 0; s < fc.S; ++s) n += d[(((grp * fc.S + s) * fc.E) + e) * K + k];
        EXPECT_LE(n, 1.0);
      }
}

// Gradients of sum(y R) + balance with respect to x and every weight, by central differences
// in double precision (routing is piecewise constant, so a small step does not cross it).
TEST(MoeFfn, GradientMatchesFiniteDifferences) {
  const FfnCase fc = make_ffn_case(2, 6, 3, 4, 3, 2.0, 11);
  EXPECT_GT(naive_moe(fc).dropped, 0);
  const testing::GradientCheckResult r = testing::check_gradients(fc.graph, fc.params);
  EXPECT_EQ(r.checked, 2 * 6 * 3 + 3 * 3 + 3 * 3 * 4 + 3 * 4 + 3 * 4 * 3 + 3 * 3);
  EXPECT_GT(r.largest, 0.0);
  EXPECT_LE(r.worst, 1e-6) << r.where;
}

// ---- training, data, registry -------------------------------------------------------------

// MoE-tiny on the two-permutation task (as GPT-tiny): the loss starts near ln(64) = 4.16 and
// falls clearly within 150 AdamW steps.
TEST(MoeTraining, TinyLossFalls) {
  ModelSpec spec = resolve_model("moe", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 150;
  o.threads = 1;
  o.compile.optimizer.learning_rate = 3e-3;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->losses.front(), 3.9);
  EXPECT_LT(r->losses.front(), 4.5);
  EXPECT_LT(testing::mean_of_last(r->losses, 20), 0.5 * r->losses.front())
      << "last " << r->losses.back();
  std::cout << "moe-tiny: loss " << r->losses.front() << " -> " << r->losses.back()
            << ", step time " << r->step_time_s() * 1e3 << " ms\n";
}

TEST(MoeRegistry, OverridesApplyAndErrorsNameTheFix) {
  ModelOverrides o;
  o.layers = 4;
  o.hidden = 64;
  o.batch = 4;
  ModelSpec s = resolve_model("moe", "tiny", o).value();
  EXPECT_EQ(s.name, "moe-tiny");
  EXPECT_EQ(s.moe.layers, 4);
  Graph g = build_forward(s, 2).value();
  EXPECT_EQ(g.type(g.find("tokens")).shape, (Shape{2, s.moe.seq}));
  EXPECT_NE(g.find("h2.moe.wi"), kNoValue);

  Result<ModelSpec> r = resolve_model("moe", "huge", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("unknown MoE size 'huge'"), std::string::npos);
  EXPECT_NE(r.status().hint().find("70b"), std::string::npos);

  ModelOverrides bad;
  bad.heads = 5;
  r = resolve_model("moe", "tiny", bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("not divisible by heads"), std::string::npos);

  // 3 sequences of 16 tokens do not split into groups of 32.
  MoeConfig c = moe_preset("tiny").value();
  c.expert_group_size = 32;
  c.batch = 3;
  Status st = validate_moe_config(c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("do not split into groups of 32"), std::string::npos);
  EXPECT_NE(st.hint().find("multiple of the expert group size"), std::string::npos);
  // Fewer tokens than a group: one group of all of them.
  c.batch = 1;
  EXPECT_TRUE(validate_moe_config(c).ok());
  EXPECT_EQ(moe_group_size(c), 16);
  c.experts = 1;
  EXPECT_FALSE(validate_moe_config(c).ok());
}

TEST(MoeData, SequencesFollowAPermutation) {
  ModelSpec s = resolve_model("moe", "tiny", {}).value();
  Graph g = build_forward(s, 1).value();
  auto d = make_data_source(s, g, 3).value();
  const auto b = d->batch(0);
  ASSERT_EQ(b.size(), 2u);
  const int64_t T = s.moe.seq;
  for (size_t i = 0; i + 1 < b[0].size(); ++i) {
    EXPECT_LT(b[0][i], s.moe.vocab);
    if ((i + 1) % T != 0) {
      EXPECT_EQ(b[1][i], b[0][i + 1]) << i;
    }
  }
}

}  // namespace
}  // namespace alpa
