// The Wide-ResNet family: sizes and parameter counts (the paper's table), batch norm and the
// stem's max-pool against naive references and finite differences, training of the tiny size,
// registry.
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
#include "alpa/models/registry.h"
#include "alpa/models/wresnet.h"
#include "models/model_test_util.h"

namespace alpa {
namespace {

TEST(WResNetModel, EverySizeBuildsWithItsParameterCount) {
  for (const std::string& size : wresnet_preset_names()) {
    ModelSpec spec = resolve_model("wresnet", size, {}).value();
    Graph fwd = build_forward(spec, 1).value();
    TrainStep ts = build_train_step(fwd, {}).value();
    const GraphStats s = graph_stats(ts.graph);
    EXPECT_EQ(s.parameters, wresnet_parameter_count(spec.wresnet)) << size;
    EXPECT_GT(s.flops, 0) << size;
    EXPECT_EQ(tokens_per_batch(spec), spec.batch) << size;
    const Shape logits = fwd.type(fwd.outputs()[1].value).shape;
    EXPECT_EQ(logits, (Shape{spec.batch, spec.wresnet.classes})) << size;
  }
}

TEST(WResNetModel, AlpaGraphReportsEverySize) {
  for (const std::string& size : wresnet_preset_names()) {
    GraphFlags f;
    f.model.model = "wresnet";
    f.model.size = size;
    f.json = true;
    std::ostringstream out, err;
    ASSERT_EQ(run_graph(f, out, err), 0) << size << ": " << err.str() << out.str();
    const int64_t count = wresnet_parameter_count(wresnet_preset(size).value());
    EXPECT_NE(out.str().find(cat("\"parameters\":", count)), std::string::npos) << out.str();
  }
}

// The paper's nominal sizes (alpa.md §5.2), counted as the "params" of Alpa's flax model
// (conv filters, batch-norm scale and shift, classifier; width on the 3x3 convs).
TEST(WResNetModel, PaperSizesHaveTheirNominalParameterCounts) {
  const std::pair<const char*, double> nominal[] = {
      {"250m", 250e6}, {"500m", 500e6}, {"1b", 1e9},  {"2b", 2e9},
      {"4b", 4e9},     {"6.8b", 6.8e9}, {"13b", 13e9}};
  for (const auto& [size, n] : nominal) {
    const WResNetConfig c = wresnet_preset(size).value();
    const double count = static_cast<double>(wresnet_parameter_count(c));
    EXPECT_LT(std::abs(count - n) / n, 0.15) << size << ": " << count;
  }
  EXPECT_EQ(wresnet_depth(wresnet_preset("250m").value()), 50);
  EXPECT_EQ(wresnet_depth(wresnet_preset("13b").value()), 101);
}

TEST(WResNetModel, ShapesFollowTheResNetLayout) {
  WResNetConfig c = wresnet_preset("1b").value();
  c.batch = 2;
  Graph g = build_wresnet(c).value();
  EXPECT_EQ(g.type(g.find("stem.w")).shape, (Shape{320, 3, 7, 7}));
  // Stage 2, block 0: 1x1 reduce to 1280, 3x3 to 2560 (width 2), 1x1 expand to 5120.
  EXPECT_EQ(g.type(g.find("s2.b0.conv1.w")).shape, (Shape{1280, 2560, 1, 1}));
  EXPECT_EQ(g.type(g.find("s2.b0.conv2.w")).shape, (Shape{2560, 1280, 3, 3}));
  EXPECT_EQ(g.type(g.find("s2.b0.conv3.w")).shape, (Shape{5120, 2560, 1, 1}));
  EXPECT_NE(g.find("s2.b0.proj.w"), kNoValue);
  EXPECT_EQ(g.find("s2.b1.proj.w"), kNoValue);
  EXPECT_EQ(g.type(g.find("fc.w")).shape, (Shape{10240, 1000}));
}

// parse(print(g)) == g for the tiny size's forward graph and training step.
TEST(WResNetModel, TinyGraphsRoundTripThroughText) {
  ModelSpec spec = resolve_model("wresnet", "tiny", {}).value();
  Graph fwd = build_forward(spec, 1).value();
  TrainStepOptions o;
  o.micro_batches = 2;
  TrainStep ts = build_train_step(build_forward(spec, 2).value(), o).value();
  for (const Graph* g : {&fwd, &ts.graph}) {
    Result<Graph> back = parse_graph(print_graph(*g), "wresnet");
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_EQ(*back, *g);
  }
}

// ---- batch norm and max-pool ----------------------------------------------------------------

TEST(BatchNorm, NormalisesEachChannelOverTheBatchAndSpace) {
  const int64_t B = 3, C = 2, H = 2, W = 3;
  Builder b("bn");
  Value x = b.parameter("x", {DType::kF32, {B, C, H, W}});
  Value g = b.parameter("g", {DType::kF32, {C}});
  Value beta = b.parameter("b", {DType::kF32, {C}});
  b.output("y", batch_norm_train(b, x, g, beta, 0.0));
  Graph graph = b.finish().value();
  Rng rng(3);
  std::vector<std::vector<double>> p = {
      testing::random_values(rng, B * C * H * W, 2.0), {1.0, 2.0}, {0.0, -1.0}};
  for (double& v : p[0]) v += 5;
  const std::vector<double> y = reference_eval(graph, p).value()[0];
  for (int64_t c = 0; c < C; ++c) {
    double sum = 0, sq = 0;
    for (int64_t n = 0; n < B; ++n)
      for (int64_t i = 0; i < H * W; ++i) {
        const double v = (y[(n * C + c) * H * W + i] - p[2][c]) / p[1][c];
        sum += v;
        sq += v * v;
      }
    const double count = B * H * W;
    EXPECT_NEAR(sum / count, 0.0, 1e-12) << c;
    EXPECT_NEAR(sq / count, 1.0, 1e-12) << c;
  }
}

TEST(BatchNorm, GradientMatchesFiniteDifferences) {
  const int64_t B = 3, C = 2, H = 2, W = 2;
  Builder b("bn");
  Value x = b.parameter("x", {DType::kF32, {B, C, H, W}});
  Value g = b.parameter("g", {DType::kF32, {C}});
  Value beta = b.parameter("b", {DType::kF32, {C}});
  Rng rng(7);
  const std::vector<double> R = testing::random_values(rng, B * C * H * W, 1.0);
  Value y = batch_norm_train(b, x, g, beta);
  b.output("loss", b.sum_all(b.mul(y, b.constant(R, {DType::kF32, {B, C, H, W}}))));
  Graph graph = b.finish().value();
  std::vector<std::vector<double>> p = {testing::random_values(rng, B * C * H * W, 1.0),
                                        testing::random_values(rng, C, 1.0),
                                        testing::random_values(rng, C, 1.0)};
  const testing::GradientCheckResult r = testing::check_gradients(graph, p);
  EXPECT_EQ(r.checked, B * C * H * W + 2 * C);
  EXPECT_GT(r.largest, 0.0);
  EXPECT_LE(r.worst, 1e-6) << r.where;
}

// The 3x3 stride-2 SAME max-pool against a direct loop, on an even and an odd size.
TEST(MaxPool, MatchesADirectWindowMaximum) {
  for (int64_t n : {8, 7}) {
    const int64_t B = 2, C = 2, out = (n + 1) / 2;
    const int64_t low = std::max<int64_t>((out - 1) * 2 + 3 - n, 0) / 2;
    Builder b("pool");
    Value x = b.parameter("x", {DType::kF32, {B, C, n, n}});
    Value y = max_pool_3x3_s2(b, x);
    b.output("y", y);
    Graph graph = b.finish().value();
    ASSERT_EQ(graph.type(graph.outputs()[0].value).shape, (Shape{B, C, out, out}));
    Rng rng(static_cast<uint64_t>(n));
    std::vector<double> xs = testing::random_values(rng, B * C * n * n, 1.0);
    for (double& v : xs) v = std::fabs(v);
    const std::vector<double> got = reference_eval(graph, {xs}).value()[0];
    for (int64_t bc = 0; bc < B * C; ++bc)
      for (int64_t i = 0; i < out; ++i)
        for (int64_t j = 0; j < out; ++j) {
          double want = -1;
          for (int64_t di = 0; di < 3; ++di)
            for (int64_t dj = 0; dj < 3; ++dj) {
              const int64_t r = 2 * i - low + di, c = 2 * j - low + dj;
              if (r >= 0 && r < n && c >= 0 && c < n)
                want = std::max(want, xs[(bc * n + r) * n + c]);
            }
          EXPECT_EQ(got[(bc * out + i) * out + j], want) << "n " << n << " at " << i << "," << j;
        }
  }
}

// ---- training, registry -----------------------------------------------------------------

// WResNet-tiny on the channel-means task: the loss starts near ln(10) = 2.30 and falls clearly.
TEST(WResNetTraining, TinyLossFalls) {
  ModelSpec spec = resolve_model("wresnet", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 150;
  o.threads = 1;
  o.compile.optimizer.learning_rate = 3e-3;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_GT(r->losses.front(), 1.5);
  EXPECT_LT(r->losses.front(), 3.5);
  EXPECT_LT(testing::mean_of_last(r->losses, 20), 0.5 * r->losses.front())
      << "last " << r->losses.back();
  std::cout << "wresnet-tiny: loss " << r->losses.front() << " -> " << r->losses.back()
            << ", step time " << r->step_time_s() * 1e3 << " ms\n";
}

TEST(WResNetRegistry, OverridesApplyAndErrorsNameTheFix) {
  ModelOverrides o;
  o.layers = 26;
  o.hidden = 8;
  o.batch = 4;
  ModelSpec s = resolve_model("wresnet", "tiny", o).value();
  EXPECT_EQ(s.name, "wresnet-tiny");
  EXPECT_EQ(s.wresnet.blocks, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(s.wresnet.base, 8);
  Graph g = build_forward(s, 2).value();
  EXPECT_EQ(g.type(g.find("x")).shape, (Shape{2, 3, 16, 16}));

  ModelOverrides depth;
  depth.layers = 51;
  Result<ModelSpec> r = resolve_model("wresnet", "tiny", depth);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no layout for depth 51"), std::string::npos);
  EXPECT_NE(r.status().hint().find("50"), std::string::npos);

  ModelOverrides seq;
  seq.seq = 16;
  r = resolve_model("wresnet", "tiny", seq);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("do not apply to the Wide-ResNet"), std::string::npos);

  r = resolve_model("wresnet", "huge", {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().hint().find("6.8b"), std::string::npos);
}

TEST(WResNetData, LabelsAreInRange) {
  ModelSpec s = resolve_model("wresnet", "tiny", {}).value();
  Graph g = build_forward(s, 1).value();
  auto d = make_data_source(s, g, 3).value();
  const auto b = d->batch(0);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(static_cast<int64_t>(b[0].size()), s.batch * 3 * 16 * 16);
  for (float l : b[1]) {
    EXPECT_GE(l, 0);
    EXPECT_LT(l, 10);
  }
}

}  // namespace
}  // namespace alpa
