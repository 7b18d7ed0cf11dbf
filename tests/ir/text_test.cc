#include "alpa/ir/text.h"

#include <gtest/gtest.h>

#include <cctype>

#include "alpa/ir/builder.h"

namespace alpa {
namespace {

Graph sample_graph() {
  Builder b("sample");
  Value x = b.parameter("x", {DType::kF32, {2, 3, 4}}, ParamRole::kInput, ParamInit::kNormal, 1);
  Value w = b.parameter("w", {DType::kF32, {4, 5}}, ParamRole::kWeight, ParamInit::kUniform, 0.25);
  Value ids = b.parameter("ids", {DType::kI32, {2, 3}}, ParamRole::kInput, ParamInit::kRandint, 7);
  Value table = b.parameter("table", {DType::kF32, {7, 4}});
  Value e = b.gather(table, ids);
  Value h = b.add(x, e);
  Value y = b.matmul(h, w);
  Value t = b.transpose(y, {2, 0, 1});
  Value s = b.slice(t, {1, 0, 0}, {4, 2, 3});
  Value p = b.pad(s, {0, 1, 0}, {2, 0, 0}, -1.5);
  Value c = b.concat({p, p}, 1);
  Value m = b.reduce_max(c, {1});
  Value k = b.constant({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, {DType::kF32, {5, 3}});
  Value io = b.convert(b.iota({DType::kI32, {5, 3}}, 1), DType::kF32);
  Value cmp = b.compare(m, k, CompareDir::kLt);
  Value sel = b.select(cmp, io, b.exp(m));
  Value r = b.reshape(sel, {15});
  Value tiny = b.scalar(1e-12);
  Value q = b.add(b.reduce_sum(r, {0}), tiny);
  b.name(q, "total.sum");
  b.output("loss", q);
  b.output("new.w", b.sub(w, b.full_like(w, 0.5)), w);
  return b.finish().value();
}

TEST(Text, RoundTripsSampleGraph) {
  const Graph g = sample_graph();
  const std::string text = print_graph(g);
  Result<Graph> parsed = parse_graph(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().to_string() << "\n" << text;
  EXPECT_EQ(*parsed, g);
  EXPECT_EQ(print_graph(*parsed), text);
  EXPECT_NE(text.find("%total.sum = add("), std::string::npos) << text;
  EXPECT_NE(text.find("output new.w = %"), std::string::npos) << text;
  EXPECT_NE(text.find(" alias %w"), std::string::npos) << text;
  EXPECT_NE(text.find("{role=input, init=normal, scale=1}"), std::string::npos) << text;
  EXPECT_NE(text.find("values=[1e-12]"), std::string::npos) << text;
}

TEST(Text, ParsesHandWrittenGraphWithComments) {
  const char* text = R"(
# a tiny model
graph tiny {
  %x = parameter() {role=input} : f32[2,2]   // data
  %w = parameter() {init=normal, scale=0.5} : f32[2,2]
  %y = dot_general(%x, %w) {lhs_contract=[1], rhs_contract=[0]} : f32[2,2]
  %7 = reduce_sum(%y) {dims=[0, 1]} : f32[]
  output loss = %7
}
)";
  Result<Graph> g = parse_graph(text, "tiny.ir");
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->size(), 4);
  EXPECT_EQ(g->node(3).name, "");  // numeric labels are unnamed values
  EXPECT_EQ(g->node(1).attr<ParameterAttrs>().scale, 0.5);
}

struct ErrorCase {
  const char* what;
  const char* text;
  const char* expect_message;  // substring of the message
  const char* expect_hint;     // substring of the hint, or ""
};

class TextErrors : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(TextErrors, NameLocationAndCause) {
  const ErrorCase& c = GetParam();
  Result<Graph> g = parse_graph(c.text, "m.ir");
  ASSERT_FALSE(g.ok()) << c.what;
  EXPECT_EQ(g.status().code(), StatusCode::kParseError);
  EXPECT_NE(g.status().message().find(c.expect_message), std::string::npos)
      << c.what << ": " << g.status().to_string();
  EXPECT_NE(g.status().hint().find(c.expect_hint), std::string::npos)
      << c.what << ": " << g.status().to_string();
}

INSTANTIATE_TEST_SUITE_P(
    AllKinds, TextErrors,
    ::testing::Values(
        ErrorCase{"missing header", "%x = parameter() : f32[2]",
                  "m.ir:1:1: expected 'graph NAME {'", "graph my_model"},
        ErrorCase{"unknown op",
                  "graph g {\n  %x = parameter() : f32[2]\n  %y = ngg(%x) : f32[2]\n}",
                  "m.ir:3:8: unknown op 'ngg'", "did you mean 'neg'"},
        ErrorCase{"undefined value", "graph g {\n  %y = neg(%x) : f32[2]\n}",
                  "m.ir:2:12: use of undefined value %x", "earlier line"},
        ErrorCase{"duplicate value",
                  "graph g {\n %x = parameter() : f32[2]\n %x = parameter() : f32[2]\n}",
                  "m.ir:3:2: value %x is defined twice", ""},
        ErrorCase{"unknown attribute",
                  "graph g {\n %x = parameter() : f32[2,2]\n %y = transpose(%x) {prem=[1,0]} : "
                  "f32[2,2]\n}",
                  "m.ir:3:22: unknown attribute 'prem' for transpose", "did you mean 'perm'"},
        ErrorCase{"bad attribute value", "graph g {\n %x = parameter() {role=wieght} : f32[2]\n}",
                  "attribute 'role' of parameter cannot be 'wieght'", "weight, input, state"},
        ErrorCase{
            "wrong attribute type",
            "graph g {\n %x = parameter() : f32[2,2]\n %y = transpose(%x) {perm=1} : f32[2,2]\n}",
            "expects a list", ""},
        ErrorCase{"bad dtype", "graph g {\n %x = parameter() : f31[2]\n}", "unknown dtype 'f31'",
                  "f32"},
        ErrorCase{"type mismatch",
                  "graph g {\n %a = parameter() : f32[2]\n %b = parameter() : f32[3]\n %c = "
                  "add(%a, %b) : f32[2]\n}",
                  "m.ir:4:7: add operands must have the same type", "broadcast explicitly"},
        ErrorCase{"wrong declared type",
                  "graph g {\n %a = parameter() : f32[2]\n %c = neg(%a) : f32[3]\n}",
                  "neg result type is f32[2], but f32[3] was given", ""},
        ErrorCase{"missing brace", "graph g {\n %a = parameter() : f32[2]\n", "missing '}'", ""},
        ErrorCase{"negative extent", "graph g {\n %a = parameter() : f32[-2]\n}", "negative extent",
                  ""},
        ErrorCase{"bad alias",
                  "graph g {\n %a = parameter() : f32[2]\n %b = neg(%a) : f32[2]\n output o = %b "
                  "alias %b\n}",
                  "which is not a parameter", ""},
        ErrorCase{"trailing garbage", "graph g {\n}\nextra", "unexpected 'extra' after the graph",
                  ""},
        ErrorCase{"bad arity", "graph g {\n %a = parameter() : f32[2]\n %b = add(%a) : f32[2]\n}",
                  "add takes 2 operand(s), got 1", ""},
        ErrorCase{"constant count", "graph g {\n %a = constant() {values=[1,2,3]} : f32[2]\n}",
                  "constant has 3 values for type f32[2]", ""},
        // Hostile sizes: element counts that would wrap int64, more dims than a layout holds.
        ErrorCase{"elements overflow",
                  "graph g {\n %w = parameter() : f32[4294967296,4294967296]\n}",
                  "more than 8 dims or more than 2^48 elements", "check the extents"},
        ErrorCase{"too many dims", "graph g {\n %w = parameter() : f32[1,1,1,1,1,1,1,1,1]\n}",
                  "more than 8 dims", ""}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) {
      std::string name = info.param.what;
      for (char& ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return name;
    });

// Attribute lists nested 100,000 deep end in an error, not a stack overflow.
TEST(Text, DeeplyNestedAttributeListsAreRefused) {
  const std::string text = "graph g {\n %x = parameter() {dims=" + std::string(100000, '[') +
                           std::string(100000, ']') + "} : f32[2]\n}\n";
  Result<Graph> g = parse_graph(text, "deep.ir");
  ASSERT_FALSE(g.ok());
  EXPECT_NE(g.status().message().find("nested more than 8 levels"), std::string::npos)
      << g.status().message();
}

TEST(Text, DevicesAndDirectoriesAreNotModelFiles) {
  Result<Graph> zero = load_graph_file("/dev/zero");  // would never end if read
  ASSERT_FALSE(zero.ok());
  EXPECT_NE(zero.status().message().find("not a regular file"), std::string::npos);
  Result<Graph> dir = load_graph_file("/");
  ASSERT_FALSE(dir.ok());
  EXPECT_NE(dir.status().message().find("is a directory"), std::string::npos);
}

TEST(Text, LoadMissingFileIsNotFound) {
  Result<Graph> g = load_graph_file("/nonexistent/model.ir");
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace alpa
