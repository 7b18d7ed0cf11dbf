// alpa export and alpa train --init-from: weights exported from a checkpoint continue the loss
// curve exactly where the run stopped, under one device, a 2x2 mesh and a 2-stage pipeline;
// wrong weights, models and files are refused naming the file, the tensor and the flag.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/cli/gpt2_weights.h"
#include "alpa/data/safetensors.h"
#include "alpa/support/files.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

using test_support::CmdRun;
using test_support::run;

std::string temp_dir(const std::string& name) {
  // Per process: ctest runs this binary's tests side by side.
  const std::string d =
      ::testing::TempDir() + "/init_from_" + name + "_" + std::to_string(::getpid());
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TrainFlags tiny_train(int steps) {
  TrainFlags f;
  f.steps = steps;
  f.threads = 1;
  f.json = true;
  f.optimizer.lr = 1e-2;
  return f;
}

CmdRun export_to(const std::string& checkpoint, const std::string& out,
                 const std::string& dtype = "f32") {
  ExportFlags e;
  e.checkpoint = checkpoint;
  e.out = out;
  e.dtype = dtype;
  e.json = true;
  return run(run_export, e);
}

// Trains gpt-tiny for 3 steps with a checkpoint, then 2 more; exports the step-3 checkpoint.
// Returns the 5 losses; the export is in `dir`/hf.
std::vector<double> train_and_export(const std::string& dir) {
  TrainFlags a = tiny_train(5);
  a.checkpoint_dir = dir + "/ck";
  a.checkpoint_every = 3;
  CmdRun r = run(run_train, a);
  EXPECT_EQ(r.code, kExitOk) << r.err;
  if (r.code != kExitOk) return {};
  CmdRun e = export_to(dir + "/ck/step-00000003", dir + "/hf");
  EXPECT_EQ(e.code, kExitOk) << e.err;
  EXPECT_EQ(e.json()["step"].get<int>(), 3);
  EXPECT_EQ(e.json()["parameters"].get<int64_t>(), 110336);
  return r.json()["losses"].get<std::vector<double>>();
}

struct PlanCase {
  const char* name;
  std::string mesh;
  int devices;
  int micro_batches;
};

void PrintTo(const PlanCase& c, std::ostream* os) {
  *os << c.name;
}

class InitFrom : public ::testing::TestWithParam<PlanCase> {};

TEST_P(InitFrom, ContinuesTheLossCurveWithFreshOptimizerState) {
  const std::string dir = temp_dir(GetParam().name);
  const std::vector<double> losses = train_and_export(dir);
  ASSERT_EQ(losses.size(), 5u);
  TrainFlags c = tiny_train(2);
  c.init_from = dir + "/hf";
  c.data_offset = 3;
  c.parallel.mesh = GetParam().mesh;
  c.parallel.devices = GetParam().devices;
  c.micro_batches = GetParam().micro_batches;
  CmdRun r = run(run_train, c);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  const std::vector<double> tuned = r.json()["losses"].get<std::vector<double>>();
  ASSERT_EQ(tuned.size(), 2u);
  // Step 1 of the new run: the exported weights on step 4's batch, before any update.
  std::printf("%s: loss at step 4 %.7f, first loss from the export %.7f\n", GetParam().name,
              losses[3], tuned[0]);
  EXPECT_NEAR(tuned[0], losses[3], 1e-5 * losses[3]);
  EXPECT_LT(tuned[0], losses[0] - 0.1);  // trained weights, not the initialisers'
  // Its optimizer state starts fresh, so the next step differs from the original run's.
  EXPECT_GT(std::fabs(tuned[1] - losses[4]), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(Plans, InitFrom,
                         ::testing::Values(PlanCase{"one_device", "", 0, 0},
                                           PlanCase{"mesh_2x2", "2x2", 0, 0},
                                           PlanCase{"pipeline_2", "", 2, 2}),
                         [](const auto& info) { return std::string(info.param.name); });

// Shared by the error tests: gpt-tiny trained 1 step and exported.
const std::string& exported_tiny() {
  static const std::string dir = [] {
    const std::string d = temp_dir("errors");
    TrainFlags a = tiny_train(1);
    a.checkpoint_dir = d + "/ck";
    EXPECT_EQ(run(run_train, a).code, kExitOk);
    EXPECT_EQ(export_to(d + "/ck", d + "/hf").code, kExitOk);
    return d + "/hf";
  }();
  return dir;
}

// `dir` with model.safetensors rewritten by `edit`.
std::string edited_copy(const std::string& name,
                        const std::function<void(std::vector<NamedTensor>&)>& edit) {
  const std::string dir = temp_dir(name);
  fs::copy_file(exported_tiny() + "/config.json", dir + "/config.json");
  Result<SafetensorsSet> set = SafetensorsSet::open(exported_tiny());
  EXPECT_TRUE(set.ok());
  std::vector<NamedTensor> tensors;
  for (const std::string& n : set->names())
    tensors.push_back({n, set->find(n)->shape, *set->values(n)});
  edit(tensors);
  EXPECT_TRUE(write_safetensors(dir + "/model.safetensors", tensors, StoredDType::kF32).ok());
  return dir;
}

std::string train_error(TrainFlags f) {
  f.json = false;
  CmdRun r = run(run_train, f);
  EXPECT_EQ(r.code, kExitUserError);
  return r.err;
}

TEST(InitFromErrors, ModelFlagsThatDoNotMatchNameTheFlag) {
  TrainFlags f = tiny_train(1);
  f.init_from = exported_tiny();
  f.model.hidden = 32;
  const std::string e = train_error(f);
  EXPECT_NE(e.find(exported_tiny() + "/config.json: n_embd is 64, but the model has --hidden 32"),
            std::string::npos)
      << e;
  EXPECT_NE(e.find("--hidden 64"), std::string::npos) << e;
  f.model.hidden.reset();
  f.model.layers = 3;
  EXPECT_NE(train_error(f).find("--layers 3"), std::string::npos);
}

TEST(InitFromErrors, OtherModelsAndResumeAreRefused) {
  TrainFlags f = tiny_train(1);
  f.init_from = exported_tiny();
  f.model.model = "mlp";
  EXPECT_NE(train_error(f).find("only the built-in GPT"), std::string::npos);
  TrainFlags g = tiny_train(1);
  g.init_from = exported_tiny();
  g.resume = exported_tiny();
  EXPECT_NE(train_error(g).find("--init-from and --resume"), std::string::npos);
  TrainFlags h = tiny_train(1);
  h.init_from = temp_dir("nothing");
  EXPECT_NE(train_error(h).find("config.json"), std::string::npos);
}

TEST(InitFromErrors, MissingWrongAndIntegerTensorsNameFileAndTensor) {
  const std::string missing = edited_copy("missing", [](std::vector<NamedTensor>& t) {
    std::erase_if(t, [](const NamedTensor& x) { return x.name == "transformer.h.1.ln_2.bias"; });
  });
  TrainFlags f = tiny_train(1);
  f.init_from = missing;
  std::string e = train_error(f);
  EXPECT_NE(e.find(missing + "/model.safetensors: no tensor 'transformer.h.1.ln_2.bias'"),
            std::string::npos)
      << e;
  const std::string shape = edited_copy("shape", [](std::vector<NamedTensor>& t) {
    for (NamedTensor& x : t)
      if (x.name == "transformer.h.0.mlp.c_fc.weight") x.shape = {256, 64};
  });
  f.init_from = shape;
  e = train_error(f);
  EXPECT_NE(e.find(shape + "/model.safetensors: tensor 'transformer.h.0.mlp.c_fc.weight' has "
                           "shape [256,64], but config.json's GPT-2 has [64,256]"),
            std::string::npos)
      << e;
  const std::string extra = edited_copy("extra", [](std::vector<NamedTensor>& t) {
    t.push_back({"transformer.h.2.ln_1.weight", {64}, std::vector<float>(64, 1.0f)});
  });
  f.init_from = extra;
  EXPECT_NE(train_error(f).find("'transformer.h.2.ln_1.weight' is not part of a GPT-2 with 2"),
            std::string::npos);
  const std::string untied = edited_copy("untied", [](std::vector<NamedTensor>& t) {
    t.push_back({"lm_head.weight", {128, 64}, std::vector<float>(128 * 64, 0.5f)});
  });
  f.init_from = untied;
  EXPECT_NE(train_error(f).find("lm_head.weight differs"), std::string::npos);
  // An integer tensor where a weight belongs.
  const std::string ints = temp_dir("ints");
  fs::copy_file(exported_tiny() + "/config.json", ints + "/config.json");
  std::string header = R"({"transformer.wte.weight": {"dtype": "I32", "shape": [128, 64],
                           "data_offsets": [0, 32768]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  ASSERT_TRUE(
      write_file(ints + "/model.safetensors", bytes + header + std::string(32768, '\0')).ok());
  f.init_from = ints;
  e = train_error(f);
  EXPECT_NE(e.find("tensor 'transformer.wte.weight' is I32"), std::string::npos) << e;
}

TEST(InitFromErrors, ConfigSettingsTheModelCannotRepresent) {
  const std::string dir = temp_dir("gelu_new");
  fs::copy_file(exported_tiny() + "/model.safetensors", dir + "/model.safetensors");
  Result<std::string> text = read_file(exported_tiny() + "/config.json");
  ASSERT_TRUE(text.ok());
  nlohmann::json j = nlohmann::json::parse(*text);
  j["activation_function"] = "gelu_new";
  ASSERT_TRUE(write_file(dir + "/config.json", j.dump()).ok());
  TrainFlags f = tiny_train(1);
  f.init_from = dir;
  EXPECT_NE(train_error(f).find("activation_function is \"gelu_new\""), std::string::npos);
  j["activation_function"] = "gelu";
  j["n_embd"] = "sixty-four";
  ASSERT_TRUE(write_file(dir + "/config.json", j.dump()).ok());
  EXPECT_NE(train_error(f).find("\"n_embd\" must be an integer"), std::string::npos);
}

TEST(ExportErrors, OtherModelsAndWrongFlags) {
  const std::string dir = temp_dir("export_mlp");
  TrainFlags a = tiny_train(1);
  a.model.model = "mlp";
  a.checkpoint_dir = dir + "/ck";
  ASSERT_EQ(run(run_train, a).code, kExitOk);
  CmdRun r = export_to(dir + "/ck", dir + "/hf");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("is of model mlp-"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "/hf/model.safetensors"));
  // A GPT checkpoint exported with other sizes than it was trained with.
  ExportFlags e;
  e.checkpoint = fs::path(exported_tiny()).parent_path().string() + "/ck";
  e.out = dir + "/hf2";
  e.model.layers = 3;
  CmdRun r2 = run(run_export, e);
  EXPECT_EQ(r2.code, kExitUserError);
  EXPECT_NE(r2.err.find("no parameter 'h2."), std::string::npos) << r2.err;
  EXPECT_NE(run(run_export, ExportFlags{}).code, kExitOk);
}

TEST(Export, StoredDtypesRoundTheWeights) {
  const std::string ck = fs::path(exported_tiny()).parent_path().string() + "/ck";
  const std::string dir = temp_dir("dtypes");
  Result<SafetensorsSet> f32 = SafetensorsSet::open(exported_tiny());
  ASSERT_TRUE(f32.ok());
  for (const char* d : {"f16", "bf16"}) {
    ASSERT_EQ(export_to(ck, dir + "/" + d, d).code, kExitOk);
    Result<SafetensorsSet> half = SafetensorsSet::open(dir + "/" + d);
    ASSERT_TRUE(half.ok());
    EXPECT_EQ(half->names(), f32->names());
    const StoredDType sd = *parse_stored_dtype(d);
    for (const std::string& n : f32->names()) {
      EXPECT_EQ(half->find(n)->dtype, safetensors_dtype_name(sd));
      std::vector<float> full = *f32->values(n), got = *half->values(n);
      for (size_t i = 0; i < full.size(); ++i) ASSERT_EQ(got[i], round_to_stored(full[i], sd)) << n;
    }
    EXPECT_EQ(half->metadata().at("alpa.step"), "1");
    EXPECT_EQ(half->metadata().at("format"), "pt");
  }
}

TEST(Forward, TokenFilesAreChecked) {
  const std::string dir = temp_dir("tokens");
  auto forward_error = [&](const std::string& text) {
    EXPECT_TRUE(write_file(dir + "/t.txt", text).ok());
    ForwardFlags f;
    f.weights = exported_tiny();
    f.tokens = dir + "/t.txt";
    CmdRun r = run(run_forward, f);
    EXPECT_EQ(r.code, kExitUserError) << text;
    return r.err;
  };
  EXPECT_NE(forward_error("1 2 3\n4 128 6\n").find("t.txt:2: '128' is not a token id"),
            std::string::npos);
  EXPECT_NE(forward_error("1 2 3\n4 5\n").find("t.txt:2: 2 tokens, but the first"),
            std::string::npos);
  EXPECT_NE(forward_error("1 x\n").find("'x'"), std::string::npos);
  EXPECT_NE(forward_error("\n\n").find("no token ids"), std::string::npos);
  std::string long_line;
  for (int i = 0; i < 33; ++i) long_line += "1 ";
  EXPECT_NE(forward_error(long_line).find("at most 32"), std::string::npos);
  // A good file: logits written, next tokens reported.
  ASSERT_TRUE(write_file(dir + "/t.txt", "1 2 3 4\n5 6 7 8\n").ok());
  ForwardFlags f;
  f.weights = exported_tiny();
  f.tokens = dir + "/t.txt";
  f.out = dir + "/logits.safetensors";
  f.threads = 1;
  f.json = true;
  CmdRun r = run(run_forward, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.json()["next_tokens"].size(), 2u);
  Result<SafetensorsSet> logits = SafetensorsSet::open(f.out);
  ASSERT_TRUE(logits.ok());
  EXPECT_EQ(logits->find("logits")->shape, (std::vector<int64_t>{2, 4, 128}));
}

}  // namespace
}  // namespace alpa
