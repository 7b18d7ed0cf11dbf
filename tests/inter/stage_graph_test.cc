// Splitting a training step into pipeline stages (inter/stage_graph.h): placement rules,
// transfers, and stage and task graphs that verify and together compute every node once.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "alpa/inter/stage_graph.h"
#include "alpa/inter/stage_planner.h"
#include "alpa/ir/verifier.h"
#include "alpa/models/registry.h"

namespace alpa {
namespace {

TrainStep gpt_step(int micro_batches = 1) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  Graph fwd = build_forward(spec, micro_batches).value();
  return build_train_step(fwd, {}).value();
}

// Forward ops split into `stages` contiguous, equal-length ranges.
std::vector<int> even_stages(const TrainStep& step, int stages) {
  const std::vector<ValueId> ops = forward_ops(step);
  std::vector<int> fs(static_cast<size_t>(step.graph.size()), 0);
  for (size_t i = 0; i < ops.size(); ++i) fs[ops[i]] = static_cast<int>(i * stages / ops.size());
  return fs;
}

TEST(StageGraph, PlacementRules) {
  const TrainStep step = gpt_step();
  const Graph& g = step.graph;
  const PipelineSplit sp = split_train_step(step, even_stages(step, 3), 3).value();
  for (ValueId v = 0; v < g.size(); ++v) {
    const Node& n = g.node(v);
    if (sp.free[v]) continue;
    if (n.op == OpKind::kParameter) {
      const ParamRole role = n.attr<ParameterAttrs>().role;
      if (role == ParamRole::kInput)
        EXPECT_EQ(sp.stage[v], kNoStage);
      else
        EXPECT_GE(sp.stage[v], 0) << n.name;
      continue;
    }
    ASSERT_GE(sp.stage[v], 0) << value_ref(g, v);
    ASSERT_LT(sp.stage[v], 3);
    if (sp.task[v] == TaskKind::kBackward && sp.stage[v] != sp.stage[step.origin[v]]) {
      // Else a backward node runs with its forward; a sum of partial gradients runs on the
      // later stage that computed them.
      EXPECT_EQ(n.op, OpKind::kAdd) << value_ref(g, v);
      EXPECT_GT(sp.stage[v], sp.stage[step.origin[v]]) << value_ref(g, v);
      for (ValueId o : n.operands) EXPECT_EQ(sp.stage[o], sp.stage[v]) << value_ref(g, v);
    }
  }
  // The tied embedding lives on stage 0 with its optimizer state; the step counter too.
  const ValueId wte = g.find("wte");
  ASSERT_NE(wte, kNoValue);
  EXPECT_EQ(sp.stage[wte], 0);
  EXPECT_EQ(sp.stage[g.find("wte.adam_m")], 0);
  EXPECT_EQ(sp.stage[g.find("step")], 0);
  // Transfers: activations forward, cotangents backward, the embedding once per step to the
  // last stage and its gradient contribution back, accumulated.
  bool wte_out = false, wte_grad_back = false;
  for (const StageTransfer& t : sp.transfers) {
    EXPECT_NE(t.from_stage, t.to_stage);
    if (t.rate == TransferRate::kPerMicroBatch) {
      if (t.from_task == TaskKind::kForward) EXPECT_LT(t.from_stage, t.to_stage);
      if (t.from_task == TaskKind::kBackward) EXPECT_GT(t.from_stage, t.to_stage);
    }
    if (t.value == wte) {
      wte_out = t.to_stage == 2 && t.rate == TransferRate::kPerStep;
    }
    if (t.accumulated) {
      wte_grad_back =
          wte_grad_back || (t.from_stage == 2 && t.to_stage == 0 && t.to_task == TaskKind::kUpdate);
      EXPECT_EQ(t.rate, TransferRate::kPerStep);
    }
  }
  EXPECT_TRUE(wte_out);
  EXPECT_TRUE(wte_grad_back);
}

// A value a later stage reads several times (the residual stream: a layer norm and a residual
// add) gets one gradient back per micro-batch, summed where its partials are computed.
TEST(StageGraph, OneGradientCrossesBackPerActivation) {
  const TrainStep step = gpt_step();
  for (int S : {2, 3, 4}) {
    const PipelineSplit sp = split_train_step(step, even_stages(step, S), S).value();
    std::map<int, int> forward, backward;  // per later stage of a boundary: values crossing
    std::map<int, int64_t> forward_bytes, backward_bytes;
    for (const StageTransfer& t : sp.transfers) {
      if (t.rate != TransferRate::kPerMicroBatch) continue;
      const int64_t bytes = step.graph.type(t.value).bytes();
      if (t.from_task == TaskKind::kForward && t.to_stage == t.from_stage + 1) {
        ++forward[t.to_stage];
        forward_bytes[t.to_stage] += bytes;
      }
      if (t.from_task == TaskKind::kBackward && t.from_stage == t.to_stage + 1) {
        ++backward[t.from_stage];
        backward_bytes[t.from_stage] += bytes;
      }
    }
    for (int s = 1; s < S; ++s) {
      EXPECT_GE(forward[s], 1) << S << " stages, boundary " << s;
      EXPECT_LE(backward[s], forward[s]) << S << " stages, boundary " << s;
      EXPECT_LE(backward_bytes[s], forward_bytes[s]) << S << " stages, boundary " << s;
    }
  }
}

TEST(StageGraph, StagesAndTasksCoverEveryNodeOnceAndVerify) {
  const TrainStep step = gpt_step();
  for (int S : {1, 2, 3}) {
    const PipelineSplit sp = split_train_step(step, even_stages(step, S), S).value();
    std::multiset<ValueId> computed;
    for (int s = 0; s < S; ++s) {
      Result<StageGraph> sg = build_stage_graph(step, sp, s, 4);
      ASSERT_TRUE(sg.ok()) << sg.status().to_string();
      EXPECT_TRUE(verify(sg->graph).ok()) << verify(sg->graph).to_string();
      for (ValueId v = 0; v < sg->graph.size(); ++v) {
        if (sg->graph.node(v).op == OpKind::kParameter) continue;
        const ValueId src = sg->source[v];
        if (!sp.free[src]) computed.insert(src);
        EXPECT_DOUBLE_EQ(sg->weight[v], sg->task[v] == TaskKind::kUpdate ? 0.25 : 1.0);
      }
      std::multiset<ValueId> by_tasks;
      for (TaskKind k : {TaskKind::kForward, TaskKind::kBackward, TaskKind::kUpdate}) {
        Result<TaskGraph> tg = build_task_graph(*sg, k);
        ASSERT_TRUE(tg.ok()) << tg.status().to_string();
        EXPECT_TRUE(verify(tg->graph).ok()) << verify(tg->graph).to_string();
        for (ValueId v = 0; v < tg->graph.size(); ++v) {
          const ValueId sv = tg->source[v];
          if (tg->graph.node(v).op != OpKind::kParameter && sg->task[sv] == k &&
              !sp.free[sg->source[sv]])
            by_tasks.insert(sv);
        }
      }
      std::multiset<ValueId> stage_nodes;
      for (ValueId v = 0; v < sg->graph.size(); ++v)
        if (sg->graph.node(v).op != OpKind::kParameter && !sp.free[sg->source[v]])
          stage_nodes.insert(v);
      EXPECT_EQ(by_tasks, stage_nodes) << "stage " << s;
    }
    std::multiset<ValueId> all;
    for (ValueId v = 0; v < step.graph.size(); ++v)
      if (step.graph.node(v).op != OpKind::kParameter && !sp.free[v]) all.insert(v);
    EXPECT_EQ(computed, all) << S << " stages";
  }
}

TEST(StageGraph, BadInputIsAnError) {
  const TrainStep step = gpt_step();
  std::vector<int> fs = even_stages(step, 2);
  EXPECT_FALSE(split_train_step(step, fs, 0).ok());
  EXPECT_FALSE(split_train_step(step, std::vector<int>(3, 0), 2).ok());
  // A later forward node on an earlier stage.
  std::vector<int> backwards = fs;
  for (int& s : backwards) s = 1 - s;
  Result<PipelineSplit> r = split_train_step(step, backwards, 2);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().hint().find("contiguous"), std::string::npos);
  // A step of several micro-batches is refused: the pipeline runs the micro-batches.
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainStepOptions two;
  two.micro_batches = 2;
  const TrainStep step2 = build_train_step(build_forward(spec, 2).value(), two).value();
  EXPECT_FALSE(split_train_step(step2, std::vector<int>(step2.graph.size(), 0), 1).ok());
}

}  // namespace
}  // namespace alpa
