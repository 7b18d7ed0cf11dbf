// The automatic mesh plan against the manual plans, by the same cost model: on a corpus of
// models (the built-in families and hand-written IR graphs with branches and convolutions)
// and meshes, `auto` predicts a step no slower than any manual plan planned on its own; options
// the user forces are kept and warned about when they cost more.
#include "alpa/plan/mesh_search.h"

#include <gtest/gtest.h>

#include "alpa/ir/text.h"
#include "alpa/models/registry.h"
#include "alpa/plan/manual.h"

namespace alpa {
namespace {

// Two towers (branches) joined by a product, a loss over their score.
constexpr const char* kTwoTower = R"(graph two_tower {
  %u = parameter() {role=input, init=normal, scale=1} : f32[16,32]
  %i = parameter() {role=input, init=normal, scale=1} : f32[16,32]
  %u.w1 = parameter() {init=normal, scale=0.2} : f32[32,64]
  %u.w2 = parameter() {init=normal, scale=0.1} : f32[64,32]
  %i.w1 = parameter() {init=normal, scale=0.2} : f32[32,64]
  %i.w2 = parameter() {init=normal, scale=0.1} : f32[64,32]
  %u.b1 = parameter() : f32[64]
  %1 = dot_general(%u, %u.w1) {lhs_contract=[1], rhs_contract=[0]} : f32[16,64]
  %2 = broadcast(%u.b1) {dims=[1]} : f32[16,64]
  %3 = add(%1, %2) : f32[16,64]
  %4 = tanh(%3) : f32[16,64]
  %5 = dot_general(%4, %u.w2) {lhs_contract=[1], rhs_contract=[0]} : f32[16,32]
  %6 = dot_general(%i, %i.w1) {lhs_contract=[1], rhs_contract=[0]} : f32[16,64]
  %7 = tanh(%6) : f32[16,64]
  %8 = dot_general(%7, %i.w2) {lhs_contract=[1], rhs_contract=[0]} : f32[16,32]
  %9 = mul(%5, %8) : f32[16,32]
  %10 = reduce_sum(%9) {dims=[1]} : f32[16]
  %11 = mul(%10, %10) : f32[16]
  %12 = reduce_sum(%11) {dims=[0]} : f32[]
  output loss = %12
})";

// Two convolutions with a skip connection around the second (a U-Net-like branch).
constexpr const char* kConvSkip = R"(graph conv_skip {
  %x = parameter() {role=input, init=normal, scale=1} : f32[8,4,8,8]
  %c0.w = parameter() {init=normal, scale=0.2} : f32[8,4,3,3]
  %c1.w = parameter() {init=normal, scale=0.1} : f32[8,8,3,3]
  %1 = conv2d(%x, %c0.w) {padding=[1,1,1,1]} : f32[8,8,8,8]
  %2 = tanh(%1) : f32[8,8,8,8]
  %3 = conv2d(%2, %c1.w) {padding=[1,1,1,1]} : f32[8,8,8,8]
  %4 = add(%3, %2) : f32[8,8,8,8]
  %5 = mul(%4, %4) : f32[8,8,8,8]
  %6 = reduce_sum(%5) {dims=[0,1,2,3]} : f32[]
  output loss = %6
})";

struct Case {
  std::string name;
  Graph step;
};

std::vector<Case> corpus() {
  std::vector<Case> out;
  const std::pair<const char*, const char*> builtins[] = {
      {"gpt", "tiny"}, {"mlp", "tiny"}, {"convnet", "tiny"}, {"moe", "tiny"}, {"wresnet", "tiny"}};
  for (const auto& [family, size] : builtins) {
    ModelSpec spec = resolve_model(family, size, {}).value();
    out.push_back({cat(family, "-", size), training_step(spec, {}, 1).value().graph});
  }
  for (const char* text : {kTwoTower, kConvSkip}) {
    Graph fwd = parse_graph(text).value();
    const std::string name = fwd.name();
    out.push_back({name, build_train_step(fwd, {}).value().graph});
  }
  return out;
}

Cluster cluster_of(int devices) {
  return with_devices(cluster_preset("p3.16xlarge").value(), devices).value();
}

TEST(MeshSearch, AutoIsNeverWorseThanAManualPlan) {
  int strictly_better = 0, compared = 0;
  for (const Case& c : corpus()) {
    for (MeshShape m : {MeshShape{1, 2}, MeshShape{2, 2}, MeshShape{1, 4}, MeshShape{2, 4}}) {
      const Cluster cl = cluster_of(static_cast<int>(m.size()));
      const MeshLinks links = mesh_links(cl, m).value();
      AutoShardingOptions base;
      base.resolve_partials_once = true;  // as compile plans a mesh
      Result<MeshSearchResult> found = search_mesh_plan(c.step, links, cl.device, base);
      ASSERT_TRUE(found.ok()) << c.name << " " << m.to_string() << ": "
                              << found.status().to_string();
      const double automatic = found->plan.compute_s + found->plan.communication_s;
      for (const std::string& name : manual_plan_names()) {
        Result<AutoShardingOptions> o = manual_plan(c.step, m, parse_manual_plan(name).value());
        if (!o.ok()) continue;  // 2d on a 1-D mesh
        o->resolve_partials_once = true;
        Result<ShardingPlan> manual = auto_shard(c.step, links, cl.device, *o);
        if (!manual.ok()) continue;
        const double step = manual->compute_s + manual->communication_s;
        ++compared;
        EXPECT_LE(automatic, step * (1 + 1e-9))
            << c.name << " on " << m.to_string() << ": auto (" << found->winner << ") "
            << automatic * 1e6 << " us vs " << name << " " << step * 1e6 << " us";
        if (automatic < step * (1 - 1e-3)) ++strictly_better;
      }
    }
  }
  EXPECT_GT(compared, 100);
  EXPECT_GT(strictly_better, compared / 2);  // mostly a real choice, not a tie
}

TEST(MeshSearch, TheWidestAutomaticSpaceBeatsTheOldDefaults) {
  // The two towers on 2x4: the old defaults (batch on axis 0, no mixed shapes) were beaten by
  // tensor parallelism over all eight devices.
  Graph fwd = parse_graph(kTwoTower).value();
  Graph step = build_train_step(fwd, {}).value().graph;
  const Cluster cl = cluster_of(8);
  const MeshLinks links = mesh_links(cl, {2, 4}).value();
  const ShardingPlan old = auto_shard(step, links, cl.device, {}).value();
  MeshSearchResult found = search_mesh_plan(step, links, cl.device, {}).value();
  const double before = old.compute_s + old.communication_s;
  const double after = found.plan.compute_s + found.plan.communication_s;
  EXPECT_LT(after, before * 0.9) << before * 1e6 << " us -> " << after * 1e6 << " us";
  EXPECT_TRUE(found.warnings.empty());
}

TEST(MeshSearch, ForcedOptionsAreKeptAndWarnedAbout) {
  Graph fwd = parse_graph(kTwoTower).value();
  Graph step = build_train_step(fwd, {}).value().graph;
  const Cluster cl = cluster_of(8);
  const MeshLinks links = mesh_links(cl, {2, 4}).value();
  AutoShardingOptions forced;
  forced.sharding.force_batch_dim_to_mesh_dim = 0;
  MeshSearchOptions so;
  so.forced = true;
  so.forced_what = "--batch-axis 0";
  MeshSearchResult found = search_mesh_plan(step, links, cl.device, forced, so).value();
  EXPECT_EQ(found.winner, "as given");
  const ShardingPlan given = auto_shard(step, links, cl.device, forced).value();
  EXPECT_DOUBLE_EQ(found.plan.compute_s + found.plan.communication_s,
                   given.compute_s + given.communication_s);
  ASSERT_EQ(found.warnings.size(), 1u);
  EXPECT_NE(found.warnings[0].find("--batch-axis 0 costs"), std::string::npos);
  EXPECT_EQ(found.options.sharding.force_batch_dim_to_mesh_dim, 0);
}

TEST(MeshSearch, CandidatesSayWhyTheyWereRejected) {
  Graph fwd = parse_graph(kTwoTower).value();
  Graph step = build_train_step(fwd, {}).value().graph;
  const Cluster cl = cluster_of(4);
  const MeshLinks links = mesh_links(cl, {1, 4}).value();
  AutoShardingOptions tight;
  tight.memory_budget_bytes = 1;  // nothing fits
  Result<MeshSearchResult> none = search_mesh_plan(step, links, cl.device, tight);
  ASSERT_FALSE(none.ok());
  EXPECT_NE(none.status().message().find("fits the memory budget"), std::string::npos)
      << none.status().to_string();
  MeshSearchResult found = search_mesh_plan(step, links, cl.device, {}).value();
  bool two_d = false;
  for (const MeshCandidate& c : found.candidates)
    if (c.name == "2d") {
      two_d = true;
      EXPECT_FALSE(c.planned);
      EXPECT_EQ(c.rejected.rfind("not supported: ", 0), 0u) << c.rejected;
    }
  EXPECT_TRUE(two_d);
}

}  // namespace
}  // namespace alpa
