// The MPI backend, run under mpirun from ctest (2 and 4 ranks, oversubscribed where needed):
// - MpiWorld's collectives keep the Communicator contract: the same bits as the ordered sum
//   (((b_0 + b_1) + b_2) + ...) on every member, on the whole job and on mesh rows and columns,
//   counts 0 to 100003 (both all_reduce paths); point to point in order, with count checks;
//   process-level gather / broadcast.
// - Training through MPI equals one device (the intra-op and pipeline equivalence ladders):
//   meshes 1x2, 2x1 (2 ranks), 2x2, 1x4, 4x1 (4 ranks), hand-written pipelines with GPipe and
//   1F1B and the planner's pipeline; losses and every weight and state tensor.
// - Checkpoints: k steps + resume to 2k is bit-identical to 2k steps; a checkpoint loads onto
//   another mesh, onto threads, and (ALPA_MPI_CHECKPOINT_IN, set by ctest) one written by a job
//   of another size, giving exactly the saved tensors.
// - Serving: a device part one process cannot read fails every process at start.
// Every rank runs every test in the same order; rank 0 compares against one-device runs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <numeric>

#include "alpa/cli/trainer.h"
#include "alpa/data/npy.h"
#include "alpa/runtime/checkpoint.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/serve/parallel_decoder.h"
#include "pipeline/manual_stages.h"
#include "serve/checkpoints.h"
#include "spmd/spmd_test_util.h"

namespace alpa {
namespace {

MpiWorld* g_world = nullptr;

int rank() {
  return g_world->process_index();
}
int ranks() {
  return g_world->size();
}

// Rank r's value at element i: distinct per rank and element, with fractions that round.
float value(int r, int64_t i) {
  return 0.1f * static_cast<float>(r + 1) + 1e-3f * static_cast<float>(i % 977) +
         1.0f / static_cast<float>(3 + r);
}

std::vector<int> all_ranks() {
  std::vector<int> g(static_cast<size_t>(ranks()));
  std::iota(g.begin(), g.end(), 0);
  return g;
}

// The groups this rank belongs to: the whole job, and its row and column of a 2 x n/2 mesh.
std::vector<std::vector<int>> my_groups() {
  std::vector<std::vector<int>> out = {all_ranks()};
  if (ranks() >= 4 && ranks() % 2 == 0) {
    const int n1 = ranks() / 2, i = rank() / n1, j = rank() % n1;
    std::vector<int> row, col;
    for (int q = 0; q < n1; ++q) row.push_back(i * n1 + q);
    for (int q = 0; q < 2; ++q) col.push_back(q * n1 + j);
    out.push_back(row);
    out.push_back(col);
  }
  return out;
}

TEST(MpiCommunicator, AllReduceIsTheOrderedSumOnEveryMember) {
  Communicator& c = g_world->comm(rank());
  for (const std::vector<int>& g : my_groups())
    for (int64_t count : {0, 1, 17, 5000, 8192, 8193, 100003}) {
      std::vector<float> data(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) data[i] = value(rank(), i);
      ASSERT_TRUE(c.all_reduce(data.data(), count, g).ok());
      for (int64_t i = 0; i < count; ++i) {
        float want = value(g[0], i);
        for (size_t m = 1; m < g.size(); ++m) want += value(g[m], i);
        ASSERT_EQ(data[i], want) << "count " << count << " element " << i << " group size "
                                 << g.size();
      }
    }
}

TEST(MpiCommunicator, GatherScatterAndAllToAll) {
  Communicator& c = g_world->comm(rank());
  for (const std::vector<int>& g : my_groups()) {
    const int n = static_cast<int>(g.size());
    const int me = static_cast<int>(std::find(g.begin(), g.end(), rank()) - g.begin());
    for (int64_t count : {0, 3, 4096}) {
      std::vector<float> in(static_cast<size_t>(count * n)), out(static_cast<size_t>(count * n));
      for (int64_t i = 0; i < count * n; ++i) in[i] = value(rank(), i);
      // all_gather of my first block.
      ASSERT_TRUE(c.all_gather(in.data(), count, out.data(), g).ok());
      for (int m = 0; m < n; ++m)
        for (int64_t i = 0; i < count; ++i) ASSERT_EQ(out[m * count + i], value(g[m], i));
      // reduce_scatter: block `me` summed in member order.
      std::vector<float> rs(static_cast<size_t>(count));
      ASSERT_TRUE(c.reduce_scatter(in.data(), count, rs.data(), g).ok());
      for (int64_t i = 0; i < count; ++i) {
        float want = value(g[0], me * count + i);
        for (int m = 1; m < n; ++m) want += value(g[m], me * count + i);
        ASSERT_EQ(rs[i], want);
      }
      // all_to_all: block m of my out is member m's block `me`.
      ASSERT_TRUE(c.all_to_all(in.data(), count, out.data(), g).ok());
      for (int m = 0; m < n; ++m)
        for (int64_t i = 0; i < count; ++i)
          ASSERT_EQ(out[m * count + i], value(g[m], me * count + i));
      ASSERT_TRUE(c.barrier(g).ok());
    }
  }
}

TEST(MpiCommunicator, PointToPointKeepsOrderAndChecksCounts) {
  Communicator& c = g_world->comm(rank());
  const int to = (rank() + 1) % ranks(), from = (rank() + ranks() - 1) % ranks();
  for (int k = 0; k < 3; ++k) {
    std::vector<float> msg(100000, static_cast<float>(rank() * 10 + k));
    ASSERT_TRUE(c.send(msg.data(), static_cast<int64_t>(msg.size()), to, 5).ok());
  }
  for (int k = 0; k < 3; ++k) {
    std::vector<float> got(100000);
    ASSERT_TRUE(c.recv(got.data(), static_cast<int64_t>(got.size()), from, 5).ok());
    EXPECT_EQ(got[0], static_cast<float>(from * 10 + k));
    EXPECT_EQ(got.back(), static_cast<float>(from * 10 + k));
  }
  // A receive that expects more than was sent is an error, not a hang.
  std::vector<float> small(10, 1.0f), big(20);
  ASSERT_TRUE(c.send(small.data(), 10, to, 6).ok());
  Status s = c.recv(big.data(), 20, from, 6);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("10 floats arrived, 20 expected"), std::string::npos) << s.message();
  // A group without the caller is refused.
  std::vector<int> others;
  for (int r = 0; r < ranks(); ++r)
    if (r != rank()) others.push_back(r);
  float x = 1;
  Status g = c.all_reduce(&x, 1, others);
  EXPECT_FALSE(g.ok());
  EXPECT_NE(g.message().find("is not in group"), std::string::npos) << g.message();
  ASSERT_TRUE(c.barrier(all_ranks()).ok());
}

TEST(MpiWorld, GatherAndBroadcastBytes) {
  Result<std::vector<std::string>> all = g_world->gather_bytes(cat("rank ", rank()), 0);
  ASSERT_TRUE(all.ok());
  if (rank() == 0) {
    ASSERT_EQ(static_cast<int>(all->size()), ranks());
    for (int r = 0; r < ranks(); ++r) EXPECT_EQ((*all)[r], cat("rank ", r));
  } else {
    EXPECT_TRUE(all->empty());
  }
  std::string b = rank() == 0 ? std::string(100000, 'x') + "end" : "";
  ASSERT_TRUE(g_world->broadcast_bytes(b, 0).ok());
  EXPECT_EQ(b.size(), 100003u);
  EXPECT_EQ(b.substr(100000), "end");
}

// --- training ---------------------------------------------------------------------------

void expect_matches_one_device(const TrainReport& r, const TrainReport& one) {
  ASSERT_EQ(r.losses.size(), one.losses.size());
  for (size_t i = 0; i < one.losses.size(); ++i)
    EXPECT_NEAR(r.losses[i], one.losses[i], 1e-5 * std::abs(one.losses[i])) << "step " << i + 1;
  if (rank() != 0) return;
  ASSERT_EQ(r.final_params.size(), one.final_params.size());
  for (size_t p = 0; p < one.final_params.size(); ++p)
    EXPECT_LE(testing::error_ratio(r.final_params[p], one.final_params[p], 1e-4, 5e-5), 1.0)
        << one.param_names[p];
}

TrainOptions base_options(int micro_batches) {
  TrainOptions o;
  o.loop.steps = 3;
  o.threads = 1;
  o.compile.micro_batches = micro_batches;
  o.loop.keep_final_params = true;
  return o;
}

TrainReport one_device(const ModelSpec& spec, int micro_batches) {
  Result<TrainReport> r = train_model(spec, base_options(micro_batches));
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : TrainReport{};
}

TEST(MpiTraining, MeshesMatchOneDevice) {
  std::vector<MeshShape> meshes = ranks() == 2 ? std::vector<MeshShape>{{1, 2}, {2, 1}}
                                               : std::vector<MeshShape>{{2, 2}, {1, 4}, {4, 1}};
  for (const char* model : {"gpt", "mlp"}) {
    ModelSpec spec = resolve_model(model, "tiny", {}).value();
    const TrainReport one = one_device(spec, 1);
    for (const MeshShape& m : meshes) {
      if (m[0] * m[1] != ranks()) continue;
      SCOPED_TRACE(cat(model, " mesh ", m[0], "x", m[1]));
      TrainOptions o = base_options(1);
      o.compile.mesh = m;
      o.world = g_world;
      Result<TrainReport> r = train_model(spec, o);
      ASSERT_TRUE(r.ok()) << r.status().to_string();
      expect_matches_one_device(*r, one);
    }
  }
}

// Each process makes only the rows of a dataset its devices read (runtime/train.h input_rows):
// on a data-parallel mesh its share of the samples, and the run still equals one device.
TEST(MpiTraining, EachProcessReadsOnlyItsRows) {
  const std::string dir = cat(::testing::TempDir(), "/mpi_rows_", rank());
  std::filesystem::create_directories(dir);
  std::vector<float> x(64 * 16), labels(64);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 37) % 11) / 5.0f - 1.0f;
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<float>((i * 5) % 8);
  ASSERT_TRUE(write_npy(dir + "/x.npy", {64, 16}, x).ok());
  ASSERT_TRUE(write_npy(dir + "/labels.npy", {64}, labels, true).ok());
  ModelSpec spec = resolve_model("mlp", "tiny", {}).value();
  TrainOptions single = base_options(1);
  single.data_path = dir;
  Result<TrainReport> one = train_model(spec, single);
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  EXPECT_EQ(one->data_rows_per_step, 16.0);  // 8 samples and 8 labels
  TrainOptions o = base_options(1);
  o.data_path = dir;
  o.compile.mesh = {1, static_cast<int64_t>(ranks())};
  o.compile.sharding.sharding.force_batch_dim_to_mesh_dim = 1;  // the batch over the ranks
  o.world = g_world;
  o.loop.keep_final_params = false;  // a process holds only its rows of the inputs
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->losses.size(), one->losses.size());
  for (size_t i = 0; i < r->losses.size(); ++i)
    EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i])) << "step " << i + 1;
  std::printf("rank %d reads %.0f of 16 rows per step\n", rank(), r->data_rows_per_step);
  EXPECT_EQ(r->data_rows_per_step, 16.0 / ranks());
}

PipelinePlan stages_plan(const std::vector<MeshShape>& meshes, int layers, int micro_batches) {
  return testing::manual_stage_plan(meshes, layers, micro_batches);
}

TEST(MpiTraining, PipelinesMatchOneDevice) {
  struct Case {
    const char* model;
    std::vector<MeshShape> meshes;
    int layers, micro_batches;
    ScheduleKind schedule;
    int virtual_stages = 1;  // interleaved: stages per mesh
  };
  const ScheduleKind f1b = ScheduleKind::k1F1B, gp = ScheduleKind::kGPipe,
                     il = ScheduleKind::kInterleaved1F1B;
  const std::vector<Case> cases =
      ranks() == 2 ? std::vector<Case>{{"gpt", {{1, 1}, {1, 1}}, 2, 4, f1b},
                                       {"gpt", {{1, 1}, {1, 1}}, 2, 4, gp},
                                       {"mlp", {{1, 1}, {1, 1}}, 2, 2, f1b},
                                       {"gpt", {{1, 1}, {1, 1}}, 4, 4, il, 2}}
                   : std::vector<Case>{{"gpt", {{1, 2}, {2, 1}}, 4, 2, f1b},
                                       {"gpt", {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 4, 8, gp},
                                       {"gpt", {{1, 1}, {1, 2}, {1, 1}}, 3, 4, f1b},
                                       {"mlp", {{1, 2}, {2, 1}}, 2, 4, gp},
                                       {"gpt", {{1, 1}, {1, 1}, {1, 1}, {1, 1}}, 8, 4, il, 2},
                                       {"gpt", {{1, 2}, {2, 1}}, 4, 4, il, 2}};
  for (const Case& c : cases) {
    SCOPED_TRACE(cat(c.model, " ", c.meshes.size(), " meshes, ", c.micro_batches,
                     " micro-batches, ", schedule_name(c.schedule), " x", c.virtual_stages));
    ModelSpec spec = resolve_model(c.model, "tiny", {}).value();
    const TrainReport one = one_device(spec, c.micro_batches);
    TrainOptions o = base_options(c.micro_batches);
    o.compile.pipeline = true;
    o.compile.devices = ranks();
    o.compile.schedule = c.schedule;
    o.compile.stages = c.virtual_stages > 1
                           ? testing::manual_interleaved_plan(c.meshes, c.virtual_stages, c.layers,
                                                              c.micro_batches)
                           : stages_plan(c.meshes, c.layers, c.micro_batches);
    o.world = g_world;
    Result<TrainReport> r = train_model(spec, o);
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    expect_matches_one_device(*r, one);
    if (rank() == 0) {
      // Statistics of every device reach rank 0; each holds only its stage's share.
      ASSERT_EQ(r->device_stats.size(), static_cast<size_t>(ranks()));
      for (int d = 0; d < ranks(); ++d) EXPECT_GT(r->device_stats[d].owned_bytes, 0) << d;
    }
  }
}

TEST(MpiTraining, PlannedPipelineMatchesOneDevice) {
  // Process 0 plans (stages and micro-batch count) and sends the plan to the others.
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  TrainOptions o = base_options(2);
  o.compile.pipeline = true;
  o.compile.devices = ranks();
  o.world = g_world;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  expect_matches_one_device(*r, one_device(spec, 2));
}

// --- checkpoints ------------------------------------------------------------------------

std::string scratch_dir(const std::string& name) {
  std::string dir = cat(ALPA_BINARY_DIR, "/tests/mpi/scratch-np", ranks(), "-", name);
  if (rank() == 0) std::filesystem::remove_all(dir);
  std::string sync;
  EXPECT_TRUE(g_world->broadcast_bytes(sync, 0).ok());
  return dir;
}

TEST(MpiCheckpoint, ResumeIsBitIdenticalToTrainingOn) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  const std::string dir = scratch_dir("resume");
  TrainOptions o = base_options(1);
  o.compile.mesh = {1, ranks()};
  o.world = g_world;
  o.loop.backend = "mpi";
  o.loop.steps = 6;
  Result<TrainReport> straight = train_model(spec, o);
  ASSERT_TRUE(straight.ok()) << straight.status().to_string();
  o.loop.steps = 3;
  o.loop.checkpoint_dir = dir;
  o.loop.checkpoint_every = 1;
  Result<TrainReport> first = train_model(spec, o);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  EXPECT_EQ(first->checkpoints.size(), 3u);
  o.loop.steps = 6;
  o.loop.checkpoint_dir.clear();
  o.loop.resume = dir;
  Result<TrainReport> resumed = train_model(spec, o);
  ASSERT_TRUE(resumed.ok()) << resumed.status().to_string();
  EXPECT_EQ(resumed->first_step, 4);
  ASSERT_EQ(resumed->losses.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(resumed->losses[i], straight->losses[3 + i]) << i;
  if (rank() == 0)
    for (size_t p = 0; p < straight->final_params.size(); ++p)
      EXPECT_EQ(resumed->final_params[p].to_vector(), straight->final_params[p].to_vector())
          << straight->param_names[p];
}

// Loads `path` into a run of `o` (no steps) and checks that every weight and state tensor the
// run then holds is exactly the checkpoint's.
void expect_loads_exactly(const ModelSpec& spec, TrainOptions o, const std::string& path) {
  Result<LoadedCheckpoint> ck = read_checkpoint(path);
  ASSERT_TRUE(ck.ok()) << ck.status().to_string();
  o.loop.resume = path;
  o.loop.steps = static_cast<int>(ck->info.step);
  o.loop.keep_final_params = true;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->losses.empty());
  if (rank() != 0 && o.world != nullptr) return;
  int compared = 0;
  for (size_t t = 0; t < ck->info.tensors.size(); ++t)
    for (size_t p = 0; p < r->param_names.size(); ++p)
      if (r->param_names[p] == ck->info.tensors[t].name) {
        EXPECT_EQ(r->final_params[p].to_vector(), ck->tensors[t].to_vector()) << r->param_names[p];
        ++compared;
      }
  EXPECT_EQ(compared, static_cast<int>(ck->info.tensors.size()));
}

TEST(MpiCheckpoint, LoadsOntoAnotherMeshThreadsAndAnotherJobSize) {
  ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  // Written by this job on a mesh; the directory is kept for a job of the other size.
  const std::string dir = scratch_dir("written");
  TrainOptions o = base_options(1);
  o.world = g_world;
  o.loop.backend = "mpi";
  o.compile.mesh = ranks() == 4 ? MeshShape{2, 2} : MeshShape{2, 1};
  o.loop.steps = 2;
  o.loop.checkpoint_dir = dir;
  ASSERT_TRUE(train_model(spec, o).ok());
  o.loop.checkpoint_dir.clear();
  // Another mesh of this job.
  o.compile.mesh = {1, ranks()};
  expect_loads_exactly(spec, o, dir);
  // A pipeline of this job.
  TrainOptions p = base_options(2);
  p.world = g_world;
  p.compile.pipeline = true;
  p.compile.devices = ranks();
  p.compile.stages = stages_plan({{1, 1}, {1, static_cast<int64_t>(ranks() - 1)}}, 2, 2);
  expect_loads_exactly(spec, p, dir);
  // Threads on rank 0: one device and a 2x2 mesh of virtual devices.
  if (rank() == 0) {
    TrainOptions t = base_options(1);
    expect_loads_exactly(spec, t, dir);
    t.compile.mesh = {2, 2};
    expect_loads_exactly(spec, t, dir);
  }
  // A checkpoint written by a job of another size (ctest runs that job first).
  if (const char* in = std::getenv("ALPA_MPI_CHECKPOINT_IN")) {
    TrainOptions q = base_options(1);
    q.world = g_world;
    q.compile.mesh = {ranks(), 1};
    expect_loads_exactly(spec, q, in);
  }
}

// --- serving ---------------------------------------------------------------------------

// A process whose device part cannot be read (its copy of the checkpoint cut short after it
// was opened, as a host with a damaged copy) fails every process of the job at start: itself
// with its own error, the others naming it; and the job's next collective still works.
TEST(MpiServe, APartOneProcessCannotReadFailsEveryProcess) {
  namespace fs = std::filesystem;
  std::string src;
  if (rank() == 0) src = serve::testing::checkpoint("gpt2", "f32", 1).dir;  // 4 heads
  ASSERT_TRUE(g_world->broadcast_bytes(src, 0).ok());
  const fs::path dir = fs::path(ALPA_BINARY_DIR) / "tests" / "mpi" / cat("serve_copy_", rank());
  fs::remove_all(dir);
  fs::create_directories(dir);
  fs::copy_file(fs::path(src) / "model.safetensors", dir / "model.safetensors");
  Result<serve::DecoderConfig> config = serve::read_decoder_config(src + "/config.json");
  ASSERT_TRUE(config.ok());
  Result<SafetensorsSet> weights = SafetensorsSet::open(dir.string());
  ASSERT_TRUE(weights.ok());
  const int bad = ranks() - 1;
  if (rank() == bad)  // after opening: the header was read, half the values are gone
    fs::resize_file(dir / "model.safetensors", fs::file_size(dir / "model.safetensors") / 2);
  Result<std::unique_ptr<serve::ParallelDecoder>> p = serve::ParallelDecoder::create_distributed(
      serve::DecoderSource(*config, *weights), {ranks(), 1}, 4, 8, 1, *g_world);
  ASSERT_FALSE(p.ok());
  const std::string error = p.status().to_string();
  if (rank() == bad) {
    EXPECT_NE(error.find("truncated"), std::string::npos) << error;
  } else {
    EXPECT_NE(error.find(cat("process ", bad, " could not make its part")), std::string::npos)
        << error;
  }
  std::string after = rank() == 0 ? "next" : "";
  ASSERT_TRUE(g_world->broadcast_bytes(after, 0).ok());
  EXPECT_EQ(after, "next");
  fs::remove_all(dir);
}

}  // namespace
}  // namespace alpa

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  auto session = alpa::MpiSession::start();
  if (!session.ok()) {
    std::fprintf(stderr, "%s\n", session.status().to_string().c_str());
    return 1;
  }
  auto world = alpa::MpiWorld::create(60);
  if (!world.ok()) return 1;
  alpa::g_world = world->get();
  // Only rank 0 prints the test log; every rank's failures still fail the job.
  if ((*session)->rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
  }
  const int rc = RUN_ALL_TESTS();
  // Every rank's result decides the job's: a failure anywhere fails it.
  std::string mine = rc == 0 ? "" : "x";
  auto all = alpa::g_world->gather_bytes(mine, 0);
  int failed = rc;
  if ((*session)->rank() == 0 && all.ok())
    for (size_t r = 0; r < all->size(); ++r)
      if (!(*all)[r].empty()) {
        std::fprintf(stderr, "rank %zu had failing tests\n", r);
        failed = 1;
      }
  world->reset();
  return failed;
}
