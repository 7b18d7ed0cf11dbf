#include "alpa/inter/virtual_stages.h"

#include <algorithm>
#include <cmath>

#include "alpa/inter/layer_clustering.h"
#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

bool same_placement(const PlannedStage& a, const PlannedStage& b) {
  return a.first_device == b.first_device && a.submesh == b.submesh &&
         a.logical.shape == b.logical.shape;
}

}  // namespace

Result<PlanMeshes> plan_meshes(const PipelinePlan& plan) {
  const int C = static_cast<int>(plan.stages.size());
  if (C < 1) return invalid_argument("a pipeline plan needs at least one stage");
  int S = C;
  for (int c = 1; c < C; ++c)
    if (same_placement(plan.stages[static_cast<size_t>(c)], plan.stages[0])) {
      S = c;
      break;
    }
  const char* hint =
      "interleaved stages take the meshes in turn: stage c on the devices and mesh of stage "
      "c mod (meshes)";
  if (C % S != 0)
    return invalid_argument(cat("stage ", S, " is placed as stage 0, so the ", C,
                                " stages should be a multiple of ", S, " meshes"),
                            hint);
  for (int c = S; c < C; ++c)
    if (!same_placement(plan.stages[static_cast<size_t>(c)],
                        plan.stages[static_cast<size_t>(c % S)]))
      return invalid_argument(cat("stage ", c, " is not placed as stage ", c % S), hint);
  return PlanMeshes{S, C / S};
}

Result<PipelinePlan> interleave_plan(const TrainStep& step, const PipelinePlan& plan,
                                     int virtual_stages) {
  const int v = virtual_stages;
  if (v < 1) return invalid_argument(cat("virtual stages must be >= 1, got ", v));
  ALPA_ASSIGN_OR_RETURN(PlanMeshes pm, plan_meshes(plan));
  if (pm.virtual_stages != 1)
    return invalid_argument(
        cat("the plan is interleaved already (", pm.virtual_stages, " stages per mesh)"));
  const int S = pm.meshes, C = S * v;
  const std::vector<ValueId> ops = forward_ops(step);
  if (plan.layers.layer_of.size() != ops.size())
    return invalid_argument("the pipeline plan was made for another training graph",
                            "re-plan for this model, batch and micro-batch count");
  // Heavy-op FLOPs before each op, and each mesh's share of them.
  std::vector<double> before(ops.size() + 1, 0);
  for (size_t i = 0; i < ops.size(); ++i)
    before[i + 1] =
        before[i] + (is_heavy_op(step.graph, ops[i]) ? node_flops(step.graph, ops[i]) : 0);
  const double total = before.back();
  std::vector<int> starts_of_layer(static_cast<size_t>(plan.layers.num_layers) + 1,
                                   static_cast<int>(ops.size()));
  for (size_t i = ops.size(); i-- > 0;)
    starts_of_layer[static_cast<size_t>(plan.layers.layer_of[i])] = static_cast<int>(i);
  std::vector<double> share(static_cast<size_t>(S), 0);
  for (int s = 0; s < S; ++s) {
    const PlannedStage& ps = plan.stages[static_cast<size_t>(s)];
    const int a = starts_of_layer[static_cast<size_t>(ps.first_layer)];
    const int b = starts_of_layer[static_cast<size_t>(ps.last_layer) + 1];
    share[static_cast<size_t>(s)] = total > 0 ? (before[b] - before[a]) / total : 1.0 / S;
  }
  // Stage c ends where the FLOPs before the cut come closest to its target, leaving a cut for
  // every later stage.
  auto cut = [&](const std::vector<int>& cuts) {
    std::vector<int> starts;
    double target = 0;
    size_t next = 0;
    for (int c = 0; c + 1 < C; ++c) {
      target += share[static_cast<size_t>(c % S)] / v * total;
      const size_t last = cuts.size() - static_cast<size_t>(C - 2 - c);  // exclusive
      size_t best = next;
      for (size_t k = next; k < last; ++k)
        if (std::abs(before[cuts[k]] - target) < std::abs(before[cuts[best]] - target)) best = k;
      starts.push_back(cuts[best]);
      next = best + 1;
    }
    return starts;
  };
  // Where stages may begin: the layer starts (whole layers, where the fewest bytes are live:
  // the residual stream), or between heavy ops when there are too few layers. (Cutting
  // between heavy ops to balance FLOPs better cut blocks in two and cost more in transfers
  // than it saved: GPT-1.3B on 4 meshes, v = 2, simulated 6% slower; bench/RESULTS.md.)
  std::vector<int> cuts;
  if (plan.layers.num_layers >= C) {
    for (int l = 1; l < plan.layers.num_layers; ++l) cuts.push_back(starts_of_layer[l]);
  } else {
    ALPA_ASSIGN_OR_RETURN(std::vector<OpCut> heavy, heavy_op_cuts(step.graph, ops));
    for (const OpCut& c : heavy) cuts.push_back(c.position);
  }
  if (static_cast<int>(cuts.size()) < C - 1)
    return failed_precondition(cat(C, " stages (", S, " meshes x ", v, " virtual stages) need ",
                                   C - 1, " places to cut the model, and it has ", cuts.size()),
                               "use fewer virtual stages (--virtual-stages), or --schedule 1f1b");
  const std::vector<int> starts = cut(cuts);
  PipelinePlan out;
  out.micro_batches = plan.micro_batches;
  out.layer_starts = starts;
  ALPA_ASSIGN_OR_RETURN(out.layers, layers_from_boundaries(step.graph, ops, starts));
  for (int c = 0; c < C; ++c) {
    const PlannedStage& mesh_stage = plan.stages[static_cast<size_t>(c % S)];
    PlannedStage ps;
    ps.first_layer = ps.last_layer = c;
    ps.submesh = mesh_stage.submesh;
    ps.logical = mesh_stage.logical;
    ps.first_device = mesh_stage.first_device;
    // A mesh stage that recomputes some layers fully: its virtual stages (one layer each) all
    // do, so that none needs more memory than the mesh stage planned.
    ps.remat = mesh_stage.full_remat_layers > 0 ? RematMode::kFull : mesh_stage.remat;
    out.stages.push_back(std::move(ps));
  }
  return out;
}

double interleaved_step_time(const std::vector<PlannedStage>& stages, int meshes,
                             int micro_batches) {
  const int S = std::max(1, meshes);
  const int v = std::max<int>(1, static_cast<int>(stages.size()) / S);
  std::vector<double> mesh_time(static_cast<size_t>(S), 0);
  for (size_t c = 0; c < stages.size(); ++c)
    mesh_time[c % static_cast<size_t>(S)] += stages[c].time_s;
  double sum = 0, worst = 0;
  for (double t : mesh_time) {
    sum += t;
    worst = std::max(worst, t);
  }
  return micro_batches * worst + (sum - worst) / v;
}

}  // namespace alpa
