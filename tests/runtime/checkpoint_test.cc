// Checkpoints (runtime/checkpoint.h): blocks written by their holders read back whole; the
// newest complete step is found through `latest`; a step whose manifest never got written (a
// crash mid-write) is not a checkpoint; truncated or corrupted files are refused with an error
// naming the file, never half-loaded.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>

#include "alpa/runtime/checkpoint.h"
#include "alpa/runtime/threads_communicator.h"

namespace alpa {
namespace {
namespace fs = std::filesystem;

Tensor iota_tensor(Shape shape, float base) {
  Tensor t(TensorType{DType::kF32, shape});
  for (int64_t i = 0; i < t.size(); ++i) t.data()[i] = base + 0.5f * static_cast<float>(i);
  return t;
}

// The block [start, start + extents) of a 2-D or 3-D tensor.
Tensor block_of(const Tensor& whole, const std::vector<int64_t>& start, const Shape& ext) {
  Tensor b(TensorType{DType::kF32, ext});
  const Shape& s = whole.shape();
  int64_t k = 0;
  if (s.size() == 2) {
    for (int64_t i = 0; i < ext[0]; ++i)
      for (int64_t j = 0; j < ext[1]; ++j)
        b.data()[k++] = whole.data()[(start[0] + i) * s[1] + start[1] + j];
  } else {
    for (int64_t i = 0; i < ext[0]; ++i)
      for (int64_t j = 0; j < ext[1]; ++j)
        for (int64_t l = 0; l < ext[2]; ++l)
          b.data()[k++] =
              whole.data()[((start[0] + i) * s[1] + start[1] + j) * s[2] + start[2] + l];
  }
  return b;
}

class CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(ALPA_BINARY_DIR) / "tests" /
           cat("ckpt-", ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    w_ = iota_tensor({4, 6}, 1.0f);
    m_ = iota_tensor({2, 4, 3}, -7.0f);
    step_ = Tensor::scalar(3.0f);
    info_.model = "test-model";
    info_.plan = "mesh 1x2";
    info_.backend = "threads";
    info_.ranks = 2;
    info_.tensors = {
        {"w", "weight", w_.type()}, {"m", "state", m_.type()}, {"step", "state", step_.type()}};
    // w split by columns, m split along its middle dim, step whole.
    blocks_data_ = {block_of(w_, {0, 0}, {4, 3}), block_of(w_, {0, 3}, {4, 3}),
                    block_of(m_, {0, 0, 0}, {2, 2, 3}), block_of(m_, {0, 2, 0}, {2, 2, 3})};
    blocks_ = {{0, {0, 0}, &blocks_data_[0]},
               {0, {0, 3}, &blocks_data_[1]},
               {1, {0, 0, 0}, &blocks_data_[2]},
               {1, {0, 2, 0}, &blocks_data_[3]},
               {2, {}, &step_}};
  }
  std::string write(int64_t step) {
    info_.step = step;
    Result<std::string> p = write_checkpoint(world_, dir_.string(), info_, blocks_);
    EXPECT_TRUE(p.ok()) << p.status().to_string();
    return p.ok() ? *p : "";
  }
  Status read_error(const std::string& path) {
    Result<LoadedCheckpoint> r = read_checkpoint(path);
    EXPECT_FALSE(r.ok()) << "a damaged checkpoint was loaded";
    return r.ok() ? ok_status() : r.status();
  }

  ThreadWorld world_{1};
  fs::path dir_;
  Tensor w_, m_, step_;
  std::vector<Tensor> blocks_data_;
  std::vector<CheckpointBlock> blocks_;
  CheckpointInfo info_;
};

TEST_F(CheckpointTest, BlocksReadBackWhole) {
  const std::string path = write(7);
  EXPECT_EQ(fs::path(path).filename(), "step-00000007");
  Result<LoadedCheckpoint> r = read_checkpoint(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->info.step, 7);
  EXPECT_EQ(r->info.model, "test-model");
  EXPECT_EQ(r->info.plan, "mesh 1x2");
  ASSERT_EQ(r->tensors.size(), 3u);
  EXPECT_EQ(r->info.tensors[0].name, "w");
  EXPECT_EQ(r->info.tensors[1].role, "state");
  EXPECT_EQ(r->tensors[0].to_vector(), w_.to_vector());
  EXPECT_EQ(r->tensors[1].to_vector(), m_.to_vector());
  EXPECT_EQ(r->tensors[2].to_vector(), step_.to_vector());
  EXPECT_FALSE(fs::exists(fs::path(path) / "manifest.json.tmp"));
}

TEST_F(CheckpointTest, LatestIsTheNewestCompleteStep) {
  write(1);
  const std::string second = write(2);
  EXPECT_EQ(read_checkpoint(dir_.string())->info.step, 2);
  EXPECT_EQ(read_checkpoint((dir_ / "step-00000001").string())->info.step, 1);
  // A crash while writing step 3: its shards exist but no manifest; `latest` still names 2.
  fs::create_directories(dir_ / "step-00000003");
  std::ofstream(dir_ / "step-00000003" / "rank-00000.bin") << "partial";
  std::ofstream(dir_ / "step-00000003" / "manifest.json.tmp") << "{\"checkpoint\":";
  EXPECT_EQ(read_checkpoint(dir_.string())->info.step, 2);
  Status s = read_error((dir_ / "step-00000003").string());
  EXPECT_NE(s.message().find("not a checkpoint"), std::string::npos) << s.message();
}

TEST_F(CheckpointTest, ARunThatNeverFinishedACheckpointHasNone) {
  fs::create_directories(dir_ / "step-00000005");
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("no complete step"), std::string::npos) << s.message();
  s = read_error((dir_ / "nowhere").string());
  EXPECT_NE(s.message().find("does not exist"), std::string::npos) << s.message();
}

void truncate_by_one(const fs::path& p) {
  fs::resize_file(p, fs::file_size(p) - 1);
}

void flip_byte(const fs::path& p, int64_t at) {
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(at);
  f.write(&c, 1);
}

TEST_F(CheckpointTest, TruncatedShardIsRefused) {
  const fs::path step = write(4);
  truncate_by_one(step / "rank-00000.bin");
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("rank-00000.bin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
}

TEST_F(CheckpointTest, FlippedByteInAShardIsRefused) {
  const fs::path step = write(4);
  flip_byte(step / "rank-00000.bin", 50);
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("rank-00000.bin"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("checksum"), std::string::npos) << s.message();
}

TEST_F(CheckpointTest, TruncatedOrEditedManifestIsRefused) {
  const fs::path step = write(4);
  const fs::path manifest = step / "manifest.json";
  const fs::path saved = dir_ / "manifest.saved";
  fs::copy_file(manifest, saved);
  truncate_by_one(manifest);
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("manifest.json"), std::string::npos) << s.message();
  // A changed digit keeps the JSON valid; the manifest's own checksum catches it.
  fs::copy_file(saved, manifest, fs::copy_options::overwrite_existing);
  std::string text;
  {
    std::ifstream in(manifest);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  const size_t at = text.find("\"step\": 4");
  ASSERT_NE(at, std::string::npos);
  text[at + 8] = '5';
  std::ofstream(manifest, std::ios::trunc) << text;
  s = read_error(dir_.string());
  EXPECT_NE(s.message().find("checksum does not match its contents"), std::string::npos)
      << s.message();
}

TEST_F(CheckpointTest, BlocksThatDoNotTileATensorAreRefused) {
  blocks_.erase(blocks_.begin() + 1);  // half of w missing
  write(1);
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("cover 12 of 24"), std::string::npos) << s.message();
  blocks_.push_back(blocks_[0]);  // and now a block twice
  fs::remove_all(dir_);
  write(1);
  s = read_error(dir_.string());
  EXPECT_NE(s.message().find("overlap"), std::string::npos) << s.message();
}

TEST_F(CheckpointTest, UnwritableDirectoryIsAnError) {
  Result<std::string> r = write_checkpoint(world_, "/proc/no-such-place/ckpt", info_, blocks_);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("cannot create"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

// Writing a step again (a run resumed from an earlier step reaches it a second time) replaces
// it only once the new one is complete; `latest` never names an incomplete step.
TEST_F(CheckpointTest, RewritingTheLatestStepNeverLosesIt) {
  write(1);
  write(2);
  blocks_data_[0].data()[0] = 1000.0f;  // the second writing of step 2 holds other values
  const std::string again = write(2);
  EXPECT_EQ(fs::path(again).filename(), "step-00000002");
  Result<LoadedCheckpoint> r = read_checkpoint(dir_.string());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->tensors[0].data()[0], 1000.0f);
  EXPECT_FALSE(fs::exists(dir_ / "step-00000002.partial"));
  // A crash while the new step 2 was being written: its staging directory is incomplete and
  // `latest` still names the complete old step 2.
  fs::create_directories(dir_ / "step-00000002.partial");
  std::ofstream(dir_ / "step-00000002.partial" / "rank-00000.bin") << "partial";
  EXPECT_EQ(read_checkpoint(dir_.string())->tensors[0].data()[0], 1000.0f);
  // A crash while a step was replaced without an atomic exchange: `latest` names the complete
  // staging directory, or (just after the rename) the step that replaced it.
  fs::remove_all(dir_ / "step-00000002.partial");
  fs::copy(dir_ / "step-00000002", dir_ / "step-00000002.partial");
  std::ofstream(dir_ / "latest") << "step-00000002.partial\n";
  EXPECT_EQ(read_checkpoint(dir_.string())->path, (dir_ / "step-00000002.partial").string());
  fs::remove_all(dir_ / "step-00000002.partial");
  EXPECT_EQ(read_checkpoint(dir_.string())->path, (dir_ / "step-00000002").string());
}

// What interrupted writes leave (staging directories, steps without a manifest, latest.tmp)
// goes with the next checkpoint; nothing else in the directory is touched.
TEST_F(CheckpointTest, InterruptedWritesAreCleanedUpByTheNextCheckpoint) {
  write(1);
  fs::create_directories(dir_ / "step-00000002.partial");
  fs::create_directories(dir_ / "step-00000003");
  std::ofstream(dir_ / "step-00000003" / "rank-00000.bin") << "partial";
  std::ofstream(dir_ / "latest.tmp") << "step-0000";
  std::ofstream(dir_ / "notes.txt") << "the user's";
  write(4);
  EXPECT_FALSE(fs::exists(dir_ / "step-00000002.partial"));
  EXPECT_FALSE(fs::exists(dir_ / "step-00000003"));
  EXPECT_FALSE(fs::exists(dir_ / "latest.tmp"));
  EXPECT_FALSE(fs::exists(dir_ / "step-00000004.partial"));
  EXPECT_TRUE(fs::exists(dir_ / "notes.txt"));
  EXPECT_TRUE(fs::exists(dir_ / "step-00000001" / "manifest.json"));
  EXPECT_EQ(read_checkpoint(dir_.string())->info.step, 4);
}

TEST_F(CheckpointTest, ADeletedLatestNamesTheNewestCompleteStep) {
  write(3);
  write(5);
  fs::remove(dir_ / "latest");
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("no `latest`"), std::string::npos) << s.message();
  EXPECT_NE(s.hint().find("step-00000005"), std::string::npos) << s.hint();
}

}  // namespace
}  // namespace alpa

namespace alpa {
namespace {

// A manifest crafted with a valid checksum but hostile numbers: refused, never a crash or a
// huge allocation.
TEST_F(CheckpointTest, CraftedBlockOffsetsAndShapesAreRefused) {
  const fs::path step = write(4);
  const fs::path manifest = step / "manifest.json";
  nlohmann::json wrapped;
  {
    std::ifstream in(manifest);
    wrapped = nlohmann::json::parse(in);
  }
  auto write_with = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json w = wrapped;
    edit(w["checkpoint"]);
    const std::string body = w["checkpoint"].dump();
    w["checksum"] = checksum_hex(body.data(), body.size());
    std::ofstream(manifest, std::ios::trunc) << w.dump(1);
  };
  const int64_t huge = int64_t{1} << 62;
  write_with([&](nlohmann::json& b) { b["tensors"][0]["blocks"][0]["start"][0] = huge; });
  Status s = read_error(dir_.string());
  EXPECT_NE(s.message().find("lies outside the tensor"), std::string::npos) << s.message();
  write_with([&](nlohmann::json& b) { b["tensors"][0]["blocks"][0]["offset"] = huge; });
  s = read_error(dir_.string());
  EXPECT_NE(s.message().find("lies past its end"), std::string::npos) << s.message();
  write_with([&](nlohmann::json& b) { b["tensors"][0]["shape"] = {int64_t{1} << 40, 1 << 20}; });
  s = read_error(dir_.string());
  EXPECT_NE(s.message().find("has shape"), std::string::npos) << s.message();
  write_with([&](nlohmann::json& b) { b["tensors"][0]["shape"] = {1 << 20, 1 << 20}; });
  s = read_error(dir_.string());
  EXPECT_NE(s.message().find("larger than the checkpoint's files"), std::string::npos)
      << s.message();
}

}  // namespace
}  // namespace alpa
