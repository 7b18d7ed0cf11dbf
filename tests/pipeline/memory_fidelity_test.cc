// The runtime's measured peak memory per device against the memory model (cost/memory.h) as
// the simulator fills it for the same program: the runtime reports the same parts
// (DeviceStats::peak_*: owned weights and state, per-step values, the stash of the
// micro-batches in flight, the running task's intermediates, all at the start of the task run
// where their sum peaks), and on a pipeline and a mesh the weights and the micro-batches in
// flight are equal and the peak is within a stated tolerance of the prediction.
#include <gtest/gtest.h>

#include "alpa/compile/compile.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/program_runner.h"
#include "pipeline/manual_stages.h"

namespace alpa {
namespace {

// |measured / predicted - 1| per device. Pipeline stages: every part but the working memory is
// equal, and that differs by the kernels' scratch (under 1% of these peaks). A mesh's one
// task (forward, backward and update in one program): the simulator's liveness in graph order
// counts up to 19% more working memory than the executor holds (bench/RESULTS.md, "Runtime's
// measured peak memory against the memory model"), so the prediction is an upper bound there.
constexpr double kPipelineTolerance = 0.02;
constexpr double kMeshTolerance = 0.20;

Cluster local(int devices) {
  return with_devices(cluster_preset("local").value(), devices).value();
}

ModelSpec gpt_layers(int layers) {
  ModelOverrides o;
  o.layers = layers;
  return resolve_model("gpt", "tiny", o).value();
}

// Two steps of `c`'s program (the second sees the first update); the device statistics of the
// last one against the simulation's parts.
void expect_measured_as_predicted(const Compiled& c, const ModelSpec& spec, double tolerance) {
  ASSERT_TRUE(c.sim.has_value());
  ProgramRunner runner(c.program);
  const Graph reference = training_step(spec, {}, c.micro_batches).value().graph;
  const std::vector<Tensor> init = init_parameters(reference, 3);
  ASSERT_TRUE(runner.load_parameters(init).ok());
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(runner.run_step(init).ok());
  for (int d = 0; d < c.program.num_devices; ++d) {
    SCOPED_TRACE(cat("device ", d));
    const DeviceStats& m = runner.stats(d);
    const MemoryBreakdown& p =
        c.sim->stages[static_cast<size_t>(stage_of_device(c.program, d))].peak_breakdown;
    EXPECT_EQ(m.peak_bytes,
              m.owned_bytes + m.peak_step_bytes + m.peak_stash_bytes + m.peak_working_bytes);
    EXPECT_DOUBLE_EQ(static_cast<double>(m.owned_bytes), p.weights);
    EXPECT_EQ(m.peak_in_flight, p.in_flight);
    EXPECT_NEAR(static_cast<double>(m.peak_bytes) / p.total(), 1.0, tolerance);
    EXPECT_LE(static_cast<double>(m.peak_bytes), (1 + kPipelineTolerance) * p.total());
  }
}

TEST(MemoryFidelity, PipelineOf1F1BStagesMeasuresAsPredicted) {
  const ModelSpec spec = gpt_layers(4);
  const int B = 4;
  CompileOptions co;
  co.pipeline = true;
  co.devices = 2;
  co.stages = testing::manual_stage_plan({{1, 1}, {1, 1}}, 4, B);
  Result<Compiled> c = compile(spec, local(2), co);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  expect_measured_as_predicted(*c, spec, kPipelineTolerance);
}

TEST(MemoryFidelity, InterleavedPipelineMeasuresAsPredicted) {
  const ModelSpec spec = gpt_layers(4);
  const int B = 4;
  CompileOptions co;
  co.pipeline = true;
  co.devices = 2;
  co.schedule = ScheduleKind::kInterleaved1F1B;
  co.stages = testing::manual_interleaved_plan({{1, 1}, {1, 1}}, 2, 4, B);
  Result<Compiled> c = compile(spec, local(2), co);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  expect_measured_as_predicted(*c, spec, kPipelineTolerance);
}

TEST(MemoryFidelity, MeshMeasuresAsPredicted) {
  const ModelSpec spec = gpt_layers(2);
  CompileOptions co;
  co.mesh = {2, 2};
  Result<Compiled> c = compile(spec, local(4), co);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  expect_measured_as_predicted(*c, spec, kMeshTolerance);
}

}  // namespace
}  // namespace alpa
