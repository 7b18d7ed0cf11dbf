// ShardingSpec: the paper's notation round-trips, validation names the problem, local shapes.
#include "alpa/sharding/sharding_spec.h"

#include <gtest/gtest.h>

namespace alpa {
namespace {

TEST(ShardingSpec, TextRoundTrips) {
  for (const char* t :
       {"S0R", "RS1", "S01R", "RR+P1", "S1S0", "R", "S0", "()", "()+P01", "RRS1+P0", "S01"}) {
    Result<ShardingSpec> s = ShardingSpec::parse(t);
    ASSERT_TRUE(s.ok()) << t << ": " << s.status().to_string();
    EXPECT_EQ(s->to_string(), t);
  }
  ShardingSpec s = *ShardingSpec::parse("S0R+P1");
  EXPECT_EQ(s.dims, (SpecDims{kAxis0, 0}));
  EXPECT_EQ(s.partial, kAxis1);
}

TEST(ShardingSpec, ParseErrorsExplainTheFormat) {
  for (const char* t : {"", "S", "S2R", "S10", "S0S0", "RR+Q", "RR+P", "S0R+P0", "X", "RR+P1x"}) {
    Result<ShardingSpec> s = ShardingSpec::parse(t);
    ASSERT_FALSE(s.ok()) << t;
    EXPECT_EQ(s.status().code(), StatusCode::kParseError) << t;
    EXPECT_NE(s.status().hint().find("R, S0, S1, S01"), std::string::npos) << t;
  }
}

TEST(ShardingSpec, MoreDimsThanATensorHasIsAnError) {
  EXPECT_TRUE(ShardingSpec::parse("RRRRRRRR").ok());
  Result<ShardingSpec> s = ShardingSpec::parse("RRRRRRRRR");  // aborted before
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("more than 8 dims"), std::string::npos);
  EXPECT_FALSE(ShardingSpec::parse(std::string(100000, 'R')).ok());
}

TEST(ShardingSpec, ValidateAndLocalShape) {
  const MeshShape mesh{2, 4};
  ShardingSpec s = *ShardingSpec::parse("S0S1");
  EXPECT_TRUE(s.validate({8, 12}, mesh).ok());
  EXPECT_EQ(s.local_shape({8, 12}, mesh), (Shape{4, 3}));
  EXPECT_EQ(s.shards(mesh), 8);
  EXPECT_EQ(ShardingSpec::parse("S01R")->local_shape({16, 3}, mesh), (Shape{2, 3}));
  Status bad = s.validate({8, 10}, mesh);  // 10 % 4 != 0
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.message().find("does not divide"), std::string::npos);
  EXPECT_FALSE(s.validate({8}, mesh).ok());  // rank mismatch
  ShardingSpec twice{{kAxis0, kAxis0}, 0};
  EXPECT_FALSE(twice.validate({8, 8}, mesh).ok());
  ShardingSpec partial_clash{{kAxis1, 0}, kAxis1};
  EXPECT_FALSE(partial_clash.validate({8, 8}, mesh).ok());
}

TEST(ShardingSpec, CanonicalDropsExtentOneAxes) {
  EXPECT_EQ(ShardingSpec::parse("RS1+P0")->canonical({1, 4}).to_string(), "RS1");
  EXPECT_EQ(ShardingSpec::parse("S0S1")->canonical({1, 4}).to_string(), "RS1");
  EXPECT_EQ(ShardingSpec::parse("S01")->canonical({2, 1}).to_string(), "S0");
}

TEST(ShardingSpec, ShardOffsets) {
  const MeshShape mesh{2, 2};
  const ShardingSpec t = *ShardingSpec::parse("S0S1");
  EXPECT_EQ(shard_offsets(t, {4, 6}, mesh, {1, 0}), (std::vector<int64_t>{2, 0}));
  EXPECT_EQ(shard_offsets(t, {4, 6}, mesh, {1, 1}), (std::vector<int64_t>{2, 3}));
  const ShardingSpec f = *ShardingSpec::parse("S01R");
  EXPECT_EQ(shard_offsets(f, {8, 2}, mesh, {1, 0}), (std::vector<int64_t>{4, 0}));  // block 2
  EXPECT_EQ(shard_offsets(f, {8, 2}, mesh, {0, 1}), (std::vector<int64_t>{2, 0}));  // block 1
}

}  // namespace
}  // namespace alpa
