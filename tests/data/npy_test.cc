// NumPy arrays (data/npy.h): files numpy.save wrote read back exactly, in every element type;
// damaged and unsupported files refused naming the file; a model trains on a directory of
// arrays under every plan with the same losses, a resumed run sees the samples of an
// uninterrupted one, and validation reads the held-out arrays.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/cli/trainer.h"
#include "alpa/data/npy.h"
#include "alpa/runtime/train.h"
#include "alpa/support/files.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

std::string fresh(const char* name) {
  const fs::path d = fs::path(::testing::TempDir()) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

// numpy's own files (tools/npy_reference.py): every type holds 0, 1, ..., n-1 (b1: i % 2),
// f2/f4/f8 also -0.5 at element 1.
TEST(Npy, ReadsWhatNumpyWrote) {
  const std::string dir = NPY_DIR;
  for (const char* t : {"f2", "f4", "f8", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "b1"}) {
    Result<NpyArray> a = NpyArray::open(cat(dir, "/", t, ".npy"));
    ASSERT_TRUE(a.ok()) << t << ": " << a.status().message();
    ASSERT_EQ(a->shape(), (std::vector<int64_t>{3, 2, 2})) << t;
    std::vector<float> row(4);
    for (int64_t r = 0; r < 3; ++r) {
      a->read_row(r, row.data());
      for (int64_t k = 0; k < 4; ++k) {
        const int64_t i = r * 4 + k;
        float want = static_cast<float>(t[0] == 'b' ? i % 2 : i);
        if (t[0] == 'f' && i == 1) want = -0.5f;
        EXPECT_EQ(row[static_cast<size_t>(k)], want) << t << " element " << i;
      }
    }
  }
  Result<NpyArray> v2 = NpyArray::open(dir + "/version2.npy");  // a 4-byte header length
  ASSERT_TRUE(v2.ok()) << v2.status().message();
  EXPECT_EQ(v2->shape(), (std::vector<int64_t>{5, 1}));
  for (const char* refused : {"fortran.npy", "bigendian.npy", "structured.npy", "object.npy"}) {
    Result<NpyArray> r = NpyArray::open(cat(dir, "/", refused));
    ASSERT_FALSE(r.ok()) << refused;
    EXPECT_NE(r.status().message().find(refused), std::string::npos) << r.status().message();
  }
}

TEST(Npy, DamagedFilesAreRefusedNamingTheFile) {
  const std::string dir = fresh("npy_bad");
  ASSERT_TRUE(write_npy(dir + "/good.npy", {4, 3}, std::vector<float>(12, 1.5f)).ok());
  Result<std::string> good = read_file(dir + "/good.npy");
  ASSERT_TRUE(good.ok());
  ASSERT_TRUE(NpyArray::parse(*good, "good.npy").ok());
  for (size_t cut = 0; cut < good->size(); cut += 7) {
    Result<NpyArray> r = NpyArray::parse(good->substr(0, cut), "cut.npy");
    EXPECT_FALSE(r.ok()) << "cut at " << cut;
    if (!r.ok()) EXPECT_NE(r.status().message().find("cut.npy"), std::string::npos);
  }
  std::string wrong_shape = *good;
  wrong_shape.replace(wrong_shape.find("(4, 3)"), 6, "(4, 4)");
  Result<NpyArray> r = NpyArray::parse(wrong_shape, "shape.npy");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("data bytes"), std::string::npos) << r.status().message();
  std::string huge = *good;
  huge.replace(huge.find("(4, 3)"), 6, "(99999999999999, 99999999999999)");
  EXPECT_FALSE(NpyArray::parse(huge, "huge.npy").ok());
  // Every single-byte change of the header either parses to a valid array or is refused.
  for (size_t i = 0; i < 128 && i < good->size(); ++i)
    for (char c : {'\0', '(', ')', '\'', '9', ',', '{', '}'}) {
      std::string m = *good;
      m[i] = c;
      (void)NpyArray::parse(m, "mutated.npy");
    }
}

struct CmdResult {
  int code;
  std::string out, err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

CmdResult train(const TrainFlags& f) {
  std::ostringstream out, err;
  const int code = run_train(f, out, err);
  return {code, out.str(), err.str()};
}

// MLP-tiny samples (16 features, 8 classes): the class is the argmax of a fixed linear map.
std::string mlp_arrays(const char* name, int64_t rows, bool validation) {
  const std::string dir = fresh(name);
  Rng rng(11);
  std::vector<float> w(16 * 8);
  for (float& x : w) x = static_cast<float>(rng.normal());
  auto write = [&](const std::string& suffix, int64_t n) {
    std::vector<float> x(static_cast<size_t>(n * 16)), y(static_cast<size_t>(n));
    for (int64_t r = 0; r < n; ++r) {
      int best = 0;
      double best_v = -1e30;
      for (int64_t i = 0; i < 16; ++i)
        x[static_cast<size_t>(r * 16 + i)] = static_cast<float>(rng.normal());
      for (int c = 0; c < 8; ++c) {
        double v = 0;
        for (int64_t i = 0; i < 16; ++i)
          v += x[static_cast<size_t>(r * 16 + i)] * w[static_cast<size_t>(i * 8 + c)];
        if (v > best_v) best_v = v, best = c;
      }
      y[static_cast<size_t>(r)] = static_cast<float>(best);
    }
    EXPECT_TRUE(write_npy(cat(dir, "/x", suffix), {n, 16}, x).ok());
    EXPECT_TRUE(write_npy(cat(dir, "/labels", suffix), {n}, y, true).ok());
  };
  write(".npy", rows);
  if (validation) write(".val.npy", 64);
  return dir;
}

TrainFlags mlp_on(const std::string& dir) {
  TrainFlags f;
  f.model.model = "mlp";
  f.data_path = dir;
  f.steps = 12;
  f.threads = 1;
  f.json = true;
  f.optimizer.lr = 0.01;
  return f;
}

TEST(NpyTraining, EveryPlanLearnsTheSameFromArrays) {
  const std::string dir = mlp_arrays("npy_train", 40, true);  // 5 batches: epochs wrap
  TrainFlags one = mlp_on(dir);
  one.eval_every = 6;
  const CmdResult a = train(one);
  ASSERT_EQ(a.code, kExitOk) << a.err;
  const std::vector<double> want = a.json()["losses"];
  EXPECT_LT(want.back(), want.front());
  const nlohmann::json val = a.json()["val_losses"];
  ASSERT_EQ(val.size(), 2u);
  EXPECT_LT(val[1]["loss"].get<double>(), val[0]["loss"].get<double>());
  TrainFlags mesh = one;
  mesh.parallel.mesh = "2x2";
  TrainFlags pipe = one;
  pipe.parallel.devices = 2;
  pipe.micro_batches = 2;
  pipe.parallel.space = "inter-only";
  pipe.parallel.stage_imbalance = 1e9;
  pipe.parallel.pipeline_layers = 2;
  for (const TrainFlags& f : {mesh, pipe}) {
    const CmdResult r = train(f);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const std::vector<double> got = r.json()["losses"];
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4 * want[i]);
  }
}

TEST(NpyTraining, AResumedRunSeesTheSamples) {
  const std::string dir = mlp_arrays("npy_resume", 24, false), ck = fresh("npy_ck");
  const CmdResult all = train(mlp_on(dir));
  ASSERT_EQ(all.code, kExitOk) << all.err;
  TrainFlags first = mlp_on(dir);
  first.steps = 7;
  first.checkpoint_dir = ck;
  ASSERT_EQ(train(first).code, kExitOk);
  TrainFlags rest = mlp_on(dir);
  rest.resume = ck;
  const CmdResult resumed = train(rest);
  ASSERT_EQ(resumed.code, kExitOk) << resumed.err;
  const std::vector<double> a = all.json()["losses"], b = resumed.json()["losses"];
  ASSERT_EQ(b.size(), 5u);
  for (size_t i = 0; i < b.size(); ++i) EXPECT_EQ(b[i], a[7 + i]) << "step " << 8 + i;
}

TEST(NpyTraining, ArraysThatDoNotFitTheModelAreRefused) {
  const std::string dir = mlp_arrays("npy_refuse", 16, false);
  fs::remove(dir + "/labels.npy");
  CmdResult r = train(mlp_on(dir));
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("no array for the model input 'labels'"), std::string::npos) << r.err;
  ASSERT_TRUE(write_npy(dir + "/labels.npy", {16, 2}, std::vector<float>(32, 0), true).ok());
  r = train(mlp_on(dir));
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("labels.npy: each sample has shape (2, )"), std::string::npos) << r.err;
  ASSERT_TRUE(write_npy(dir + "/labels.npy", {15}, std::vector<float>(15, 0), true).ok());
  r = train(mlp_on(dir));
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("has 15 samples along dim 0"), std::string::npos) << r.err;
  ASSERT_TRUE(write_npy(dir + "/labels.npy", {16}, std::vector<float>(16, 0), true).ok());
  TrainFlags eval = mlp_on(dir);
  eval.eval_every = 2;
  r = train(eval);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("<input>.val.npy"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

// What each device reads of a step's data: under a pipeline the first stage takes the samples,
// the last the labels; under a mesh the devices together take every row.
TEST(InputRows, EachDeviceReadsOnlyWhatItTakes) {
  ModelSpec spec = resolve_model("mlp", "tiny", {}).value();
  TrainOptions o;
  o.compile.pipeline = true;
  o.compile.devices = 2;
  o.compile.micro_batches = 2;
  o.compile.planner.num_layers = 2;
  o.compile.planner.imbalance_tolerance = 1e9;
  o.compile.planner.space = parse_plan_space("inter-only").value();
  o.loop.steps = 1;
  o.threads = 1;
  Result<TrainReport> r = train_model(spec, o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  ASSERT_EQ(r->program.stages.size(), 2u);
  using Rows = std::vector<std::pair<int64_t, int64_t>>;
  const auto first = input_rows(r->program, {0}), last = input_rows(r->program, {1});
  ASSERT_EQ(first.size(), 2u);  // x, labels
  EXPECT_EQ(first[0], (Rows{{0, 8}}));
  EXPECT_EQ(first[1], Rows{});
  EXPECT_EQ(last[0], Rows{});
  EXPECT_EQ(last[1], (Rows{{0, 8}}));
  TrainOptions m;
  m.compile.mesh = {2, 2};
  m.loop.steps = 1;
  m.threads = 1;
  Result<TrainReport> mesh = train_model(spec, m);
  ASSERT_TRUE(mesh.ok()) << mesh.status().to_string();
  EXPECT_EQ(input_rows(mesh->program, {0, 1, 2, 3})[0], (Rows{{0, 8}}));
  int64_t rows_of_device0 = 0;
  const auto device0 = input_rows(mesh->program, {0});
  for (const auto& [lo, hi] : device0[0]) rows_of_device0 += hi - lo;
  std::printf("2x2 mesh: device 0 reads %lld of 8 rows of x\n",
              static_cast<long long>(rows_of_device0));
  EXPECT_GT(rows_of_device0, 0);
}

}  // namespace
}  // namespace alpa
