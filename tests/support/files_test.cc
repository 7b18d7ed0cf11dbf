// support/files.h: reading only regular files of bounded size, writing through a temporary and
// a rename only over regular files (links followed, devices written through, never replaced).
#include "alpa/support/files.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

namespace alpa {
namespace {

namespace fs = std::filesystem;

fs::path fresh_dir(const char* name) {
  const fs::path d = fs::path(::testing::TempDir()) / name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

TEST(ReadFile, RefusesDevicesDirectoriesFifosAndOversizedFiles) {
  const fs::path d = fresh_dir("read_file");
  Result<std::string> zero = read_file("/dev/zero");
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("not a regular file"), std::string::npos);
  Result<std::string> dir = read_file(d.string());
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("is a directory"), std::string::npos);
  const fs::path fifo = d / "fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  Result<std::string> f = read_file(fifo.string());  // must not block waiting for a writer
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not a regular file"), std::string::npos);
  ASSERT_TRUE(write_file((d / "big").string(), std::string(100, 'x')).ok());
  Result<std::string> big = read_file((d / "big").string(), 99);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("100 bytes"), std::string::npos);
  Result<std::string> ok = read_file((d / "big").string(), 100);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->size(), 100u);
  EXPECT_EQ(read_file((d / "missing").string()).status().code(), StatusCode::kNotFound);
}

TEST(WriteFile, ReplacesRegularFilesAndFollowsLinks) {
  const fs::path d = fresh_dir("write_file");
  const fs::path target = d / "target.json";
  ASSERT_TRUE(write_file(target.string(), "one").ok());
  ASSERT_TRUE(write_file(target.string(), "two").ok());
  EXPECT_EQ(*read_file(target.string()), "two");
  // A link (dangling too) stays a link; what it names gets the bytes.
  const fs::path link = d / "link.json", named = d / "named.json";
  fs::create_symlink("named.json", link);
  ASSERT_TRUE(write_file(link.string(), "via link").ok());
  EXPECT_TRUE(fs::is_symlink(link));
  EXPECT_EQ(*read_file(named.string()), "via link");
  // No temporary file is left behind.
  for (const auto& e : fs::directory_iterator(d))
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos) << e.path();
  Status s = write_file(d.string(), "x");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("directory"), std::string::npos);
}

TEST(WriteFile, WritesThroughDevicesWithoutReplacingThem) {
  struct stat before {};
  if (::stat("/dev/full", &before) != 0) GTEST_SKIP() << "no /dev/full on this system";
  Status s = write_file("/dev/full", "bytes");
  ASSERT_FALSE(s.ok());  // the device's own error (no space), not a replacement
  EXPECT_NE(s.message().find("/dev/full"), std::string::npos);
  struct stat after {};
  ASSERT_EQ(::stat("/dev/full", &after), 0);
  EXPECT_TRUE(S_ISCHR(after.st_mode));
  EXPECT_TRUE(write_file("/dev/null", "bytes").ok());
  struct stat null {};
  ASSERT_EQ(::stat("/dev/null", &null), 0);
  EXPECT_TRUE(S_ISCHR(null.st_mode));
}

}  // namespace
}  // namespace alpa
