// Partial sums resolved once (resolve_once.h): GPT-tiny data parallel on 1x4 all-reduced each
// small bias / layer-norm gradient three times (the two Adam moments and the square); now once.
#include "alpa/intra/resolve_once.h"

#include <gtest/gtest.h>

#include "alpa/models/registry.h"
#include "alpa/plan/manual.h"

namespace alpa {
namespace {

struct Counts {
  int rank1_all_reduces = 0;  // communication entries of rank-1 values that all-reduce
  double step_s = 0;
};

Counts plan_gpt_data_parallel(bool resolve_once) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Graph g = training_step(spec, {}, 1).value().graph;
  Cluster cl = with_devices(cluster_preset("local").value(), 4).value();
  MeshLinks links = mesh_links(cl, {1, 4}).value();
  AutoShardingOptions o = manual_plan(g, {1, 4}, ManualPlanKind::kDataParallel).value();
  o.resolve_partials_once = resolve_once;
  ShardingPlan p = auto_shard(g, links, cl.device, o).value();
  Counts c;
  c.step_s = p.compute_s + p.communication_s;
  for (const CommEntry& e : plan_communication(g, p, links))
    if (g.type(e.producer).rank() == 1 && e.collectives.find("all-reduce") != std::string::npos)
      ++c.rank1_all_reduces;
  if (resolve_once) {
    EXPECT_GT(p.resolved_once, 0);
    EXPECT_EQ(p.ilp_specs.size(), p.specs.size());
  }
  return c;
}

int rank1_weights() {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Graph g = training_step(spec, {}, 1).value().graph;
  int n = 0;
  for (ValueId w : g.parameters(ParamRole::kWeight)) n += g.type(w).rank() == 1;
  return n;
}

TEST(ResolveOnce, EachSmallGradientIsAllReducedOnce) {
  const Counts before = plan_gpt_data_parallel(false);
  const Counts after = plan_gpt_data_parallel(true);
  const int vectors = rank1_weights();
  ASSERT_GT(vectors, 0);
  EXPECT_EQ(before.rank1_all_reduces, 3 * vectors);
  EXPECT_EQ(after.rank1_all_reduces, vectors);
  EXPECT_LT(after.step_s, before.step_s);
}

}  // namespace
}  // namespace alpa
