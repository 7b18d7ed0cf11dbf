// Pipeline-parallel training equals one device (the equivalence ladder's pipeline rung):
// stages on submeshes of virtual devices with their own intra-op plans, GPipe and 1F1B, 1 to 8
// micro-batches, several AdamW steps: the losses and every weight and optimizer-state tensor
// match the single-device run with the same micro-batches (tolerances as for intra-op plans,
// tests/spmd/equivalence_test.cc). Each device holds only its stage's weights and state, and
// 1F1B keeps at most (stages - i) micro-batches in flight on stage i.
#include <gtest/gtest.h>

#include "alpa/cli/trainer.h"
#include "alpa/program/io.h"
#include "alpa/runtime/shard.h"
#include "pipeline/manual_stages.h"
#include "spmd/spmd_test_util.h"

namespace alpa {
namespace {

struct PCase {
  const char* model;
  std::vector<MeshShape> meshes;  // one per stage
  int layers;
  int micro_batches;
  ScheduleKind schedule;
};

std::string case_name(const PCase& c) {
  std::string s = cat(c.model, "_", c.meshes.size(), "stages");
  for (const MeshShape& m : c.meshes) s += cat("_", m[0], "x", m[1]);
  return cat(s, "_mb", c.micro_batches, "_", schedule_name(c.schedule));
}

PipelinePlan manual_plan(const PCase& c) {
  return testing::manual_stage_plan(c.meshes, c.layers, c.micro_batches);
}

int devices_of(const PCase& c) {
  int n = 0;
  for (const MeshShape& m : c.meshes) n += static_cast<int>(m[0] * m[1]);
  return n;
}

// Bytes (fp32) of the weights and optimizer state of the one-device training step.
int64_t weight_and_state_bytes(const ModelSpec& spec, int micro_batches) {
  TrainStepOptions o;
  o.micro_batches = micro_batches;
  TrainStep ts = build_train_step(build_forward(spec, micro_batches).value(), o).value();
  int64_t n = 0;
  for (ParamRole role : {ParamRole::kWeight, ParamRole::kState})
    for (ValueId p : ts.graph.parameters(role)) n += 4 * ts.graph.type(p).num_elements();
  return n;
}

class PipelineEquivalence : public ::testing::TestWithParam<PCase> {};

TEST_P(PipelineEquivalence, AdamWStepsMatchOneDevice) {
  const PCase& c = GetParam();
  ModelSpec spec = resolve_model(c.model, "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 3;
  o.threads = 1;
  o.compile.micro_batches = c.micro_batches;
  o.loop.keep_final_params = true;
  Result<TrainReport> one = train_model(spec, o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.compile.pipeline = true;
  o.compile.devices = devices_of(c);
  o.compile.schedule = c.schedule;
  o.compile.stages = manual_plan(c);
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->losses.size(), one->losses.size());
  for (size_t i = 0; i < one->losses.size(); ++i)
    EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i])) << "step " << i + 1;
  ASSERT_EQ(r->final_params.size(), one->final_params.size());
  for (size_t p = 0; p < one->final_params.size(); ++p)
    EXPECT_LE(testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5), 1.0)
        << one->param_names[p];
  // In-flight micro-batches per device: 1F1B at most (stages - stage); GPipe keeps every
  // micro-batch's activations on the stages that stash any (a stage whose backward needs
  // only re-fed data and received cotangents stashes nothing).
  const int S = static_cast<int>(c.meshes.size());
  ASSERT_EQ(r->device_stats.size(), static_cast<size_t>(devices_of(c)));
  int most = 0;
  for (size_t d = 0; d < r->device_stats.size(); ++d) {
    const int s = r->device_stage[d];
    const int live = r->device_stats[d].peak_live_micro_batches;
    most = std::max(most, live);
    if (c.schedule == ScheduleKind::k1F1B) {
      EXPECT_LE(live, S - s) << "device " << d << " on stage " << s;
    } else {
      EXPECT_LE(live, c.micro_batches) << "device " << d << " on stage " << s;
    }
  }
  // Every GPT stage stashes activations, so the bounds are reached there.
  if (std::string(c.model) == "gpt")
    EXPECT_EQ(most,
              c.schedule == ScheduleKind::k1F1B ? std::min(S, c.micro_batches) : c.micro_batches);

  // Each device holds only its stage's weights and optimizer state: less than the whole model,
  // and, when every stage is one device, the devices' holdings add up to exactly one copy.
  const int64_t whole = weight_and_state_bytes(spec, c.micro_batches);
  int64_t sum = 0;
  bool all_single = true;
  for (const MeshShape& m : c.meshes) all_single = all_single && m[0] * m[1] == 1;
  for (size_t d = 0; d < r->device_stats.size(); ++d) {
    const DeviceStats& st = r->device_stats[d];
    EXPECT_GT(st.owned_bytes, 0) << "device " << d;
    EXPECT_LT(st.owned_bytes, whole) << "device " << d << " holds the whole model";
    int64_t from_shapes = 0;
    for (const Shape& sh : st.owned_shapes) from_shapes += 4 * num_elements(sh);
    EXPECT_EQ(from_shapes, st.owned_bytes) << "device " << d;
    sum += st.owned_bytes;
  }
  if (all_single)
    EXPECT_EQ(sum, whole);
  else
    EXPECT_GE(sum, whole);
}

std::vector<PCase> cases() {
  const ScheduleKind f1b = ScheduleKind::k1F1B, gp = ScheduleKind::kGPipe;
  return {
      {"gpt", {{1, 1}, {1, 1}}, 2, 1, f1b},
      {"gpt", {{1, 1}, {1, 1}}, 2, 4, gp},
      {"gpt", {{1, 1}, {1, 1}}, 4, 4, f1b},
      {"gpt", {{1, 2}, {2, 1}}, 4, 2, f1b},
      {"gpt", {{2, 1}, {1, 2}}, 2, 8, gp},
      {"gpt", {{1, 1}, {1, 2}, {1, 1}, {2, 1}}, 4, 4, f1b},
      {"gpt", {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 4, 8, gp},
      {"gpt", {{2, 2}, {1, 2}, {1, 1}, {1, 1}}, 4, 2, f1b},
      {"mlp", {{1, 1}, {1, 1}}, 2, 2, f1b},
      {"mlp", {{1, 2}, {2, 1}}, 2, 4, gp},
      {"mlp", {{1, 1}, {1, 1}, {1, 1}}, 3, 8, f1b},
      {"moe", {{1, 1}, {1, 1}}, 2, 2, f1b},
      {"moe", {{1, 2}, {2, 1}}, 2, 4, gp},
      {"wresnet", {{1, 1}, {1, 1}}, 2, 2, f1b},
      {"wresnet", {{1, 2}, {2, 1}}, 2, 2, gp},
  };
}

INSTANTIATE_TEST_SUITE_P(Plans, PipelineEquivalence, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<PCase>& i) {
                           return case_name(i.param);
                         });

// Interleaved 1F1B (Megatron-LM's virtual stages): S meshes each run v stages of the model,
// stage c on mesh c mod S. Losses, weights and optimizer state equal one device's as for the
// other schedules; each mesh holds only its stages' weights; micro-batches in flight on a
// device stay within what the mesh's order holds between a micro-batch's first forward and
// its last backward there; the program round-trips through its JSON.
struct ICase {
  const char* model;
  std::vector<MeshShape> meshes;  // one per mesh
  int virtual_stages;
  int layers;
  int micro_batches;
  int64_t model_layers = 0;  // the model's own layers (0: the size's)
};

std::string icase_name(const ICase& c) {
  std::string s = cat(c.model, "_", c.meshes.size(), "meshes");
  for (const MeshShape& m : c.meshes) s += cat("_", m[0], "x", m[1]);
  return cat(s, "_v", c.virtual_stages, "_mb", c.micro_batches);
}

// Most micro-batches a mesh's order holds at once: micro-batch m from its first forward on
// the mesh to its last backward there.
int order_in_flight(const std::vector<ScheduleStep>& order) {
  std::map<int, std::pair<size_t, size_t>> span;
  for (size_t i = 0; i < order.size(); ++i) {
    auto [it, fresh] = span.emplace(order[i].micro_batch, std::make_pair(i, i));
    if (!fresh) it->second.second = i;
  }
  int most = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    int live = 0;
    for (const auto& [m, se] : span) live += se.first <= i && i <= se.second;
    most = std::max(most, live);
  }
  return most;
}

class InterleavedEquivalence : public ::testing::TestWithParam<ICase> {};

TEST_P(InterleavedEquivalence, AdamWStepsMatchOneDevice) {
  const ICase& c = GetParam();
  ModelOverrides over;
  if (c.model_layers > 0) over.layers = c.model_layers;
  ModelSpec spec = resolve_model(c.model, "tiny", over).value();
  TrainOptions o;
  o.loop.steps = 3;
  o.threads = 1;
  o.compile.micro_batches = c.micro_batches;
  o.loop.keep_final_params = true;
  Result<TrainReport> one = train_model(spec, o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  int devices = 0;
  for (const MeshShape& m : c.meshes) devices += static_cast<int>(m[0] * m[1]);
  o.compile.pipeline = true;
  o.compile.devices = devices;
  o.compile.schedule = ScheduleKind::kInterleaved1F1B;
  o.compile.stages =
      testing::manual_interleaved_plan(c.meshes, c.virtual_stages, c.layers, c.micro_batches);
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const int S = static_cast<int>(c.meshes.size());
  ASSERT_EQ(r->program.stages.size(), static_cast<size_t>(S));
  EXPECT_EQ(r->program.schedule, "interleaved-1f1b");
  EXPECT_EQ(r->program.virtual_stages, c.virtual_stages);
  ASSERT_EQ(r->losses.size(), one->losses.size());
  for (size_t i = 0; i < one->losses.size(); ++i)
    EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i])) << "step " << i + 1;
  ASSERT_EQ(r->final_params.size(), one->final_params.size());
  for (size_t p = 0; p < one->final_params.size(); ++p)
    EXPECT_LE(testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5), 1.0)
        << one->param_names[p];
  // Every mesh runs every one of its stages' forward and backward, once per micro-batch.
  for (int i = 0; i < S; ++i) {
    const Stage& st = r->program.stages[static_cast<size_t>(i)];
    for (int j = 0; j < c.virtual_stages; ++j)
      for (const char* task : {"forward", "backward"}) {
        const std::string name = cat(task, ".", j * S + i);
        int runs = 0;
        for (const Instruction& x : st.instructions)
          runs += x.kind == InstrKind::kRun && st.tasks[static_cast<size_t>(x.task)].name == name;
        EXPECT_EQ(runs, c.micro_batches) << "mesh " << i << " " << name;
      }
  }
  const auto order =
      pipeline_schedule(ScheduleKind::kInterleaved1F1B, S, c.micro_batches, c.virtual_stages);
  const int64_t whole = weight_and_state_bytes(spec, c.micro_batches);
  int64_t sum = 0;
  bool all_single = true;
  for (const MeshShape& m : c.meshes) all_single = all_single && m[0] * m[1] == 1;
  for (size_t d = 0; d < r->device_stats.size(); ++d) {
    const int mesh = r->device_stage[d];
    EXPECT_LE(r->device_stats[d].peak_live_micro_batches,
              order_in_flight(order[static_cast<size_t>(mesh)]))
        << "device " << d << " on mesh " << mesh;
    if (S > 1) {
      EXPECT_LT(r->device_stats[d].owned_bytes, whole) << "device " << d;
    }
    sum += r->device_stats[d].owned_bytes;
  }
  if (all_single)
    EXPECT_EQ(sum, whole);
  else
    EXPECT_GE(sum, whole);
  // The program's text form records the schedule and round-trips.
  Result<Program> back = program_from_json(program_to_json(r->program), "interleaved");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->virtual_stages, c.virtual_stages);
  EXPECT_TRUE(*back == r->program);
}

std::vector<ICase> interleaved_cases() {
  return {
      {"gpt", {{1, 1}, {1, 1}}, 2, 4, 2},
      {"gpt", {{1, 1}, {1, 1}}, 2, 4, 4},
      {"gpt", {{1, 1}, {1, 1}}, 3, 6, 2},
      {"gpt", {{1, 2}, {2, 1}}, 2, 4, 4},
      {"gpt", {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 2, 8, 4},
      {"gpt", {{1, 1}}, 2, 2, 2},  // one mesh: every transfer is a move inside it
      {"mlp", {{1, 1}, {1, 1}}, 2, 4, 2, 4},
      {"mlp", {{1, 2}, {1, 1}}, 2, 4, 4, 4},
  };
}

INSTANTIATE_TEST_SUITE_P(Plans, InterleavedEquivalence, ::testing::ValuesIn(interleaved_cases()),
                         [](const ::testing::TestParamInfo<ICase>& i) {
                           return icase_name(i.param);
                         });

// Stages that share meshes run only under the interleaved schedule, and it needs the
// micro-batches to be a multiple of the meshes (user errors with a hint).
TEST(InterleavedErrors, WrongScheduleOrMicroBatches) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 1;
  o.threads = 1;
  o.compile.pipeline = true;
  o.compile.devices = 2;
  o.compile.micro_batches = 2;
  o.compile.stages = testing::manual_interleaved_plan({{1, 1}, {1, 1}}, 2, 4, 2);
  o.compile.schedule = ScheduleKind::k1F1B;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("interleaved"), std::string::npos) << r.status().to_string();
  o.compile.schedule = ScheduleKind::kInterleaved1F1B;
  o.compile.micro_batches = 1;
  o.compile.stages->micro_batches = 1;
  r = train_model(spec, o);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("multiple of the 2"), std::string::npos)
      << r.status().to_string();
  EXPECT_NE(r.status().hint().find("--micro-batches"), std::string::npos);
}

// The planner's stages re-cut for the interleaved schedule (compile's post-pass) train as one
// device does too.
TEST(InterleavedPostPass, PlannedStagesReCutTrainAsOneDevice) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 2;
  o.threads = 1;
  o.compile.micro_batches = 2;
  o.loop.keep_final_params = true;
  Result<TrainReport> one = train_model(spec, o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.compile.pipeline = true;
  o.compile.devices = 2;
  o.compile.stages = manual_plan({"gpt", {{1, 1}, {1, 1}}, 4, 2, ScheduleKind::k1F1B});
  o.compile.schedule = ScheduleKind::kInterleaved1F1B;
  o.compile.virtual_stages = 2;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->program.virtual_stages, 2);
  ASSERT_EQ(r->losses.size(), one->losses.size());
  for (size_t i = 0; i < one->losses.size(); ++i)
    EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i])) << "step " << i + 1;
  for (size_t p = 0; p < one->final_params.size(); ++p)
    EXPECT_LE(testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5), 1.0)
        << one->param_names[p];
}

// A planted fault: one stage forgets to accumulate one micro-batch's gradient. The losses of
// the first step still match (the forward pass is untouched) but the parameters must not.
TEST(PipelineFaults, SkippedAccumulationIsCaught) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o;
  o.loop.steps = 2;
  o.threads = 1;
  o.compile.micro_batches = 4;
  o.loop.keep_final_params = true;
  Result<TrainReport> one = train_model(spec, o);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  o.compile.pipeline = true;
  o.compile.devices = 2;
  o.compile.stages = manual_plan({"gpt", {{1, 1}, {1, 1}}, 2, 4, ScheduleKind::k1F1B});
  int removed = 0;
  o.rewrite_program = [&](Program& prog) {
    std::vector<Instruction>& list = prog.stages[0].instructions;
    for (size_t i = 0; i < list.size(); ++i)
      if (list[i].kind == InstrKind::kAccumulate && list[i].micro_batch == 2) {
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
        ++removed;
        break;
      }
  };
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(removed, 1);
  double worst = 0;
  for (size_t p = 0; p < one->final_params.size(); ++p)
    worst =
        std::max(worst, testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5));
  EXPECT_GT(worst, 10.0) << "a lost micro-batch gradient went unnoticed";
}

}  // namespace
}  // namespace alpa
