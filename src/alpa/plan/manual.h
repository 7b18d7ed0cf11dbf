// Manual plans: the layouts a person would write, as constraints for auto-sharding.
//
// - data-parallel: the batch (dim 0 of every input) split over every device, weights and
//   optimizer state replicated;
// - zero: data parallel with the optimizer state split over every device (ZeRO-2-like);
// - zero3: data parallel with weights and optimizer state split over every device, gathered
//   where used (ZeRO-3-like);
// - tensor-parallel: Megatron-style splits over every device, batch replicated;
// - 2d: batch over mesh axis 0, Megatron-style splits over mesh axis 1.
// Megatron-style: in a GPT block q/k/v projections and the first MLP layer split by columns
// (their biases along), the attention output and second MLP layer by rows; in an MLP or a
// ConvNet the layers alternate columns and rows (output / input channels). Optimizer state
// follows its weight. Weights these rules do not cover (embeddings, layer norms) are left to
// the ILP, as are splits that do not divide.
// Expert parallelism (data-parallel kinds, `expert_parallel`): a mixture-of-experts layer's
// expert weights (rank 3, experts first: ".wi", ".wo") split by expert over the data devices,
// as DeepSpeed-MoE places experts; tokens reach them by all-to-all.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/intra/auto_sharding.h"
#include "alpa/ir/graph.h"

namespace alpa {

enum class ManualPlanKind { kDataParallel, kZero, kZero3, kTensorParallel, kTwoD };

std::string_view manual_plan_name(ManualPlanKind k);
Result<ManualPlanKind> parse_manual_plan(std::string_view name);
std::vector<std::string> manual_plan_names();

Result<AutoShardingOptions> manual_plan(const Graph& train_step, const MeshShape& mesh,
                                        ManualPlanKind kind, bool expert_parallel = false);

}  // namespace alpa
