// Token datasets (data/token_dataset.h) and training on them: a dataset round-trips the text
// it was made from; damaged datasets are refused naming the file; a GPT trains on one
// device, a 2x2 mesh and a 4-stage pipeline with the same losses; a resumed run sees the
// samples the uninterrupted run saw.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alpa/cli/commands.h"
#include "alpa/data/token_dataset.h"
#include "alpa/support/files.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

const BpeTokenizer& gpt2() {
  static const BpeTokenizer t =
      std::move(BpeTokenizer::load(std::string(GPT2_DIR) + "/package/encoder.json",
                                   std::string(GPT2_DIR) + "/package/vocab.bpe"))
          .value();
  return t;
}

std::vector<std::string> texts() {
  return {std::string(ALPA_SOURCE_DIR) + "/README.md",
          std::string(ALPA_SOURCE_DIR) + "/docs/architecture.md",
          std::string(ALPA_SOURCE_DIR) + "/tests/data/unicode_sample.txt"};
}

std::string fresh(const char* name) {
  const fs::path d = fs::path(::testing::TempDir()) / name;
  fs::remove_all(d);
  return d.string();
}

TEST(TokenDataset, RoundTripsItsDocuments) {
  const std::string dir = fresh("ds_roundtrip");
  Result<TokenDatasetInfo> info = write_token_dataset(dir, gpt2(), texts(), 0.1);
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info->documents, 3);
  Result<TokenDataset> ds = TokenDataset::open(dir);
  ASSERT_TRUE(ds.ok()) << ds.status().to_string();
  EXPECT_EQ(ds->info().vocab_size, 50257);
  EXPECT_EQ(ds->info().bytes_per_token(), 2);
  const int64_t total = ds->size(Split::kTrain) + ds->size(Split::kValidation);
  EXPECT_EQ(ds->size(Split::kValidation), total / 10);
  // The whole stream decodes to the documents, each followed by <|endoftext|>.
  std::vector<int32_t> ids;
  for (Split s : {Split::kTrain, Split::kValidation})
    for (int64_t i = 0; i < ds->size(s); ++i) ids.push_back(ds->token(s, i));
  std::string want;
  for (const std::string& f : texts()) want += *read_file(f) + "<|endoftext|>";
  EXPECT_EQ(*gpt2().decode(ids), want);
}

TEST(TokenDataset, DamagedDatasetsAreRefusedNamingTheFile) {
  const std::string dir = fresh("ds_damaged");
  ASSERT_TRUE(write_token_dataset(dir, gpt2(), texts(), 0.1).ok());
  const fs::path train = fs::path(dir) / "train.bin";
  const std::string saved = *read_file(train.string());
  fs::resize_file(train, fs::file_size(train) - 2);  // one token short
  Result<TokenDataset> r = TokenDataset::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("train.bin has"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos);
  std::string flipped = saved;
  flipped[100] ^= 0x01;
  ASSERT_TRUE(write_file(train.string(), flipped).ok());
  r = TokenDataset::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status().message();
  ASSERT_TRUE(write_file(train.string(), saved).ok());
  ASSERT_TRUE(TokenDataset::open(dir).ok());
  const fs::path header = fs::path(dir) / "header.json";
  std::string h = *read_file(header.string());
  ASSERT_TRUE(write_file(header.string(), h.substr(0, h.size() / 2)).ok());
  r = TokenDataset::open(dir);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("header.json: not a JSON object"), std::string::npos)
      << r.status().message();
  EXPECT_FALSE(TokenDataset::open(fresh("ds_none")).ok());
}

using test_support::CmdRun;
CmdRun train(const TrainFlags& f) {
  return test_support::run(run_train, f);
}

std::vector<double> losses_of(const CmdRun& r) {
  return nlohmann::json::parse(r.out)["losses"].get<std::vector<double>>();
}

TrainFlags gpt_on(const std::string& dir) {
  TrainFlags f;
  f.data_path = dir;
  f.model.vocab = 50257;
  f.model.seq = 16;
  f.steps = 3;
  f.threads = 1;
  f.json = true;
  return f;
}

TEST(TokenDatasetTraining, OneDeviceMeshAndPipelineGiveTheSameLosses) {
  const std::string dir = fresh("ds_train");
  ASSERT_TRUE(write_token_dataset(dir, gpt2(), texts(), 0.1).ok());
  const CmdRun one = train(gpt_on(dir));
  ASSERT_EQ(one.code, kExitOk) << one.err;
  const std::vector<double> want = losses_of(one);
  ASSERT_EQ(want.size(), 3u) << one.out;
  EXPECT_NEAR(want[0], std::log(50257.0), 0.2);  // a fresh model on real text
  TrainFlags mesh = gpt_on(dir);
  mesh.parallel.mesh = "2x2";
  TrainFlags pipe = gpt_on(dir);
  pipe.parallel.devices = 4;
  pipe.micro_batches = 2;
  pipe.parallel.space = "inter-only";  // one device per stage: 4 stages
  pipe.parallel.pipeline_layers = 4;
  pipe.parallel.stage_imbalance = 1e9;
  for (const TrainFlags& f : {mesh, pipe}) {
    const CmdRun r = train(f);
    ASSERT_EQ(r.code, kExitOk) << r.err;
    const std::vector<double> got = losses_of(r);
    ASSERT_EQ(got.size(), want.size()) << r.out;
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4 * want[i]);
    if (f.parallel.devices == 4)
      EXPECT_EQ(nlohmann::json::parse(r.out)["pipeline"]["stages"].size(), 4u);
  }
  TrainFlags small_vocab = gpt_on(dir);  // the dataset's vocabulary does not fit the model's
  small_vocab.model.vocab = 128;
  const CmdRun refused = train(small_vocab);
  EXPECT_EQ(refused.code, kExitUserError);
  EXPECT_NE(refused.err.find("--vocab 50257"), std::string::npos) << refused.err;
}

TEST(TokenDatasetTraining, AResumedRunSeesTheSamples) {
  const std::string dir = fresh("ds_resume"), ck = fresh("ds_resume_ck");
  ASSERT_TRUE(write_token_dataset(dir, gpt2(), texts(), 0.1).ok());
  TrainFlags whole = gpt_on(dir);
  whole.steps = 4;
  whole.json = true;
  const CmdRun all = train(whole);
  ASSERT_EQ(all.code, kExitOk) << all.err;
  TrainFlags first = whole;
  first.steps = 2;
  first.checkpoint_dir = ck;
  ASSERT_EQ(train(first).code, kExitOk);
  TrainFlags rest = whole;
  rest.resume = ck;
  const CmdRun resumed = train(rest);
  ASSERT_EQ(resumed.code, kExitOk) << resumed.err;
  auto json_losses = [](const std::string& out) {
    const size_t at = out.find("\"losses\":[");
    return out.substr(at, out.find(']', at) - at);
  };
  const std::string a = json_losses(all.out), b = json_losses(resumed.out);
  // The resumed run's two losses are the uninterrupted run's last two, bit for bit.
  EXPECT_NE(a.find(b.substr(std::string("\"losses\":[").size())), std::string::npos)
      << a << " vs " << b;
}

}  // namespace
}  // namespace alpa
