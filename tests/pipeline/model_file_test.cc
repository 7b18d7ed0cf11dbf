// Model files behave like built-ins: a text IR file that declares its batch
// (`graph NAME(batch=N) {`, docs/ir.md) is read at --batch and at each micro-batch size, so
// micro-batches on one device, a 2x2 mesh and a two-stage pipeline train exactly as one
// device with one micro-batch does; a file that declares none says how to declare it; the
// planner's micro-batch search considers counts above 1 for such files and says why it rejects
// a count; built-ins emit their forward with the batch declared, and the text reads back.
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/trainer.h"
#include "alpa/compile/compile.h"
#include "alpa/ir/text.h"
#include "alpa/support/files.h"
#include "pipeline/manual_stages.h"
#include "spmd/spmd_test_util.h"
#include "support/cmd_run.h"

namespace alpa {
namespace {

// A two-layer MLP with a mean squared error: the mean's 1/rows is written over `batch`.
constexpr const char* kMlp = R"(graph mlp(batch=8) {
  %x = parameter() {role=input, init=normal, scale=1} : f32[batch,16]
  %y = parameter() {role=input, init=normal, scale=1} : f32[batch,4]
  %w1 = parameter() {init=normal, scale=0.3} : f32[16,32]
  %b1 = parameter() {init=normal, scale=0.1} : f32[32]
  %h = dot_general(%x, %w1) {lhs_contract=[1], rhs_contract=[0]} : f32[batch,32]
  %bb = broadcast(%b1) {dims=[1]} : f32[batch,32]
  %h1 = add(%h, %bb) : f32[batch,32]
  %r = tanh(%h1) : f32[batch,32]
  %w2 = parameter() {init=normal, scale=0.3} : f32[32,4]
  %o = dot_general(%r, %w2) {lhs_contract=[1], rhs_contract=[0]} : f32[batch,4]
  %d = sub(%o, %y) : f32[batch,4]
  %sq = mul(%d, %d) : f32[batch,4]
  %s = reduce_sum(%sq) {dims=[0,1]} : f32[]
  %n = constant() {values=[0.25/batch]} : f32[]
  %loss = mul(%s, %n) : f32[]
  output loss = %loss
}
)";

// Two convolution branches added, then the rows folded into the batch (batch*4) and back.
constexpr const char* kConv = R"(graph branches(batch=4) {
  %x = parameter() {role=input, init=normal, scale=1} : f32[batch,2,6,6]
  %y = parameter() {role=input, init=normal, scale=1} : f32[batch,3]
  %k1 = parameter() {init=normal, scale=0.3} : f32[4,2,3,3]
  %k2 = parameter() {init=normal, scale=0.3} : f32[4,2,1,1]
  %c1 = conv2d(%x, %k1) {padding=[1,1,1,1]} : f32[batch,4,6,6]
  %c2 = conv2d(%x, %k2) : f32[batch,4,6,6]
  %a = add(%c1, %c2) : f32[batch,4,6,6]
  %t = tanh(%a) : f32[batch,4,6,6]
  %f = reshape(%t) : f32[batch*4,36]
  %w = parameter() {init=normal, scale=0.2} : f32[36,3]
  %g = dot_general(%f, %w) {lhs_contract=[1], rhs_contract=[0]} : f32[batch*4,3]
  %e = tanh(%g) : f32[batch*4,3]
  %u = reshape(%e) : f32[batch,12]
  %w2 = parameter() {init=normal, scale=0.3} : f32[12,3]
  %o = dot_general(%u, %w2) {lhs_contract=[1], rhs_contract=[0]} : f32[batch,3]
  %d = sub(%o, %y) : f32[batch,3]
  %sq = mul(%d, %d) : f32[batch,3]
  %s = reduce_sum(%sq) {dims=[0,1]} : f32[]
  %n = constant() {values=[1/batch/3]} : f32[]
  %loss = mul(%s, %n) : f32[]
  output loss = %loss
}
)";

std::string work_dir() {
  static const std::string dir = [] {
    std::string d = (std::filesystem::temp_directory_path() /
                     ("alpa_model_file_test_" + std::to_string(getpid())))
                        .string();
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

std::string write_model(const std::string& name, const std::string& text) {
  const std::string path = work_dir() + "/" + name + ".ir";
  EXPECT_TRUE(write_file(path, text).ok());
  return path;
}

struct Layout {
  const char* name;
  int micro_batches;
  MeshShape mesh;                 // one mesh (no pipeline when `stages` is empty)
  std::vector<MeshShape> stages;  // a pipeline: one mesh per stage
};

Result<TrainReport> train(const ModelSpec& spec, const Layout& l) {
  TrainOptions o;
  o.loop.steps = 3;
  o.threads = 1;
  o.loop.keep_final_params = true;
  o.compile.micro_batches = l.micro_batches;
  o.compile.mesh = l.mesh;
  if (!l.stages.empty()) {
    o.compile.pipeline = true;
    o.compile.devices = static_cast<int>(l.stages.size());
    for (const MeshShape& m : l.stages) o.compile.devices += static_cast<int>(m[0] * m[1]) - 1;
    o.compile.stages = testing::manual_stage_plan(l.stages, 2, l.micro_batches);
  }
  return train_model(spec, o);
}

class MicroBatchedFile : public ::testing::TestWithParam<const char*> {};

TEST_P(MicroBatchedFile, EqualsOneDevice) {
  const std::string text = std::string(GetParam()) == "mlp" ? kMlp : kConv;
  const std::string path = write_model(GetParam(), text);
  Result<ModelSpec> spec = resolve_model(path, "", {});
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_TRUE(spec->file_batch_declared);
  Result<TrainReport> one = train(*spec, {"one device", 1, {1, 1}, {}});
  ASSERT_TRUE(one.ok()) << one.status().to_string();
  const Layout layouts[] = {
      {"one device, 2 micro-batches", 2, {1, 1}, {}},
      {"one device, 4 micro-batches", 4, {1, 1}, {}},
      {"mesh 2x2, 2 micro-batches", 2, {2, 2}, {}},
      {"pipeline of 2 stages, 2 micro-batches", 2, {1, 1}, {{1, 1}, {1, 1}}},
      {"pipeline of 2 stages, 4 micro-batches", 4, {1, 1}, {{1, 1}, {1, 1}}},
  };
  for (const Layout& l : layouts) {
    Result<TrainReport> r = train(*spec, l);
    ASSERT_TRUE(r.ok()) << l.name << ": " << r.status().to_string();
    EXPECT_EQ(r->device_stats.size(), l.stages.empty() ? l.mesh.size() : l.stages.size());
    ASSERT_EQ(r->losses.size(), one->losses.size());
    for (size_t i = 0; i < one->losses.size(); ++i)
      EXPECT_NEAR(r->losses[i], one->losses[i], 1e-5 * std::abs(one->losses[i]))
          << l.name << ", step " << i + 1;
    ASSERT_EQ(r->final_params.size(), one->final_params.size()) << l.name;
    for (size_t p = 0; p < one->final_params.size(); ++p)
      EXPECT_LE(testing::error_ratio(r->final_params[p], one->final_params[p], 1e-4, 5e-5), 1.0)
          << l.name << ": " << one->param_names[p];
  }
  // The micro-batched runs did split the batch: the forward of one micro-batch is smaller.
  Result<Graph> quarter = build_forward(*spec, 4);
  ASSERT_TRUE(quarter.ok());
  EXPECT_EQ(quarter->type(quarter->parameters(ParamRole::kInput)[0]).shape[0], spec->batch / 4);
}

INSTANTIATE_TEST_SUITE_P(Models, MicroBatchedFile, ::testing::Values("mlp", "branches"));

TEST(ModelFileBatch, BatchFlagReadsTheFileAtThatSize) {
  const std::string path = write_model("mlp_b", kMlp);
  ModelOverrides o;
  o.batch = 12;
  Result<ModelSpec> spec = resolve_model(path, "", o);
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_EQ(spec->batch, 12);
  const Graph& g = spec->file_graph;
  EXPECT_EQ(g.type(g.parameters(ParamRole::kInput)[0]).shape, (Shape{12, 16}));
  // 0.25/batch at 12 rows.
  const Node& n = g.node(g.find("n"));
  EXPECT_DOUBLE_EQ(n.attr<ConstantAttrs>().values[0], 0.25 / 12);
  // 12 rows do not split into 8 micro-batches.
  Result<Graph> f = build_forward(*spec, 8);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("not divisible"), std::string::npos);
}

std::string undeclared() {  // the MLP with its batch written out and no declaration
  std::string t = kMlp;
  t.replace(t.find("(batch=8)"), 9, "");
  for (size_t at; (at = t.find("0.25/batch")) != std::string::npos;) t.replace(at, 10, "0.03125");
  for (size_t at; (at = t.find("batch")) != std::string::npos;) t.replace(at, 5, "8");
  return t;
}

TEST(ModelFileBatch, UndeclaredBatchSaysHowToDeclareIt) {
  const std::string path = write_model("undeclared", undeclared());
  Result<ModelSpec> spec = resolve_model(path, "", {});
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  EXPECT_FALSE(spec->file_batch_declared);
  EXPECT_EQ(spec->batch, 8);
  Result<Graph> f = build_forward(*spec, 2);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("declares no batch dimension"), std::string::npos);
  EXPECT_NE(f.status().hint().find("graph NAME(batch=N)"), std::string::npos);
  ModelOverrides o;
  o.batch = 16;
  Result<ModelSpec> b = resolve_model(path, "", o);
  ASSERT_FALSE(b.ok());
  EXPECT_NE(b.status().message().find("--batch 16 differs from the file's batch of 8"),
            std::string::npos);
  EXPECT_NE(b.status().hint().find("declare the batch dimension"), std::string::npos);
  o.batch = 8;  // the file's own batch is fine
  EXPECT_TRUE(resolve_model(path, "", o).ok());
  o.batch.reset();
  o.layers = 3;
  EXPECT_FALSE(resolve_model(path, "", o).ok());
}

TEST(ModelFileBatch, ParseErrorsNameTheProblem) {
  auto message = [](const std::string& text, std::optional<int64_t> batch = std::nullopt) {
    Result<ParsedGraph> g = parse_graph_at(text, "m.ir", batch);
    return g.ok() ? std::string("ok") : g.status().message() + " | " + g.status().hint();
  };
  std::string t = undeclared();
  EXPECT_NE(message(t, 4).find("declares no batch"), std::string::npos) << message(t, 4);
  t.replace(t.find("f32[8,16]"), 9, "f32[batch,16]");
  EXPECT_NE(message(t).find("'batch' is used but the graph declares no batch"), std::string::npos);
  std::string c = kConv;
  c.replace(c.find("f32[batch*4,36]"), 15, "f32[batch*4/3,108]");
  c.replace(c.find("f32[36,3]"), 9, "f32[108,3]");
  c.replace(c.find("f32[batch*4,3]"), 14, "f32[batch*4/3,3]");
  c.replace(c.find("f32[batch*4,3]"), 14, "f32[batch*4/3,3]");
  c.replace(c.find("f32[batch,12]"), 13, "f32[batch,4]");
  c.replace(c.find("f32[12,3]"), 9, "f32[4,3]");
  EXPECT_NE(message(c).find("extent batch*4/3 is 5.33"), std::string::npos) << message(c);
  EXPECT_EQ(message(c, 6), "ok");  // 8 rows of 108: the 6x4x6x6 tensor
  EXPECT_NE(message("graph g(size=3) {\n}\n").find("expected 'batch=N'"), std::string::npos);
  EXPECT_NE(message("graph g(batch=0) {\n}\n").find("not >= 1"), std::string::npos);
  // An input whose rows are not dim 0 cannot be split into micro-batches.
  std::string m = kMlp;
  m.replace(m.find("f32[batch,4]\n"), 12, "f32[4,batch]");
  m.replace(m.find("%d = sub(%o, %y)"), 16,
            "%yt = transpose(%y) {perm=[1,0]} : f32[batch,4]\n"
            "  %d = sub(%o, %yt)");
  const std::string path = write_model("rows_not_first", m);
  Result<ModelSpec> spec = resolve_model(path, "", {});
  ASSERT_TRUE(spec.ok()) << spec.status().to_string();
  Result<Graph> f = build_forward(*spec, 2);
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("does not hold the batch in dim 0"), std::string::npos)
      << f.status().message();
}

// Built-ins write their forward with the batch declared; the text reads back as the same
// graph at that batch and as the built-in's own graph at another.
TEST(ModelFileBatch, BuiltInsEmitTheirBatch) {
  for (const char* family : {"mlp", "gpt", "convnet", "wresnet"}) {
    ModelSpec spec = resolve_model(family, "tiny", {}).value();
    Result<EmittedForward> e = emit_forward(spec);
    ASSERT_TRUE(e.ok()) << family << ": " << e.status().to_string();
    EXPECT_TRUE(e->batch_declared) << family << ": " << e->why_no_batch;
    const std::string* text = &e->text;
    EXPECT_NE(text->find(cat("(batch=", spec.batch, ")")), std::string::npos) << family;
    Result<ParsedGraph> same = parse_graph_at(*text, family, std::nullopt);
    ASSERT_TRUE(same.ok()) << family << ": " << same.status().to_string();
    EXPECT_TRUE(same->graph == build_forward(spec, 1).value()) << family;
    Result<ParsedGraph> half = parse_graph_at(*text, family, spec.batch / 2);
    ASSERT_TRUE(half.ok()) << family << ": " << half.status().to_string();
    EXPECT_TRUE(half->graph == build_forward(spec, 2).value()) << family;
  }
}

// The planner tries micro-batch counts above 1 for a file that declares its batch, and says
// why it rejects each count of one that does not.
TEST(ModelFileBatch, PlannerSearchesMicroBatchesAndSaysWhy) {
  Result<Cluster> cluster = sized_cluster("local", 2);
  ASSERT_TRUE(cluster.ok());
  PipelinePlannerOptions po;
  po.num_layers = 2;
  po.space = PlanSpace::kInterOnly;
  po.threads = 1;
  ModelSpec declared = resolve_model(write_model("plan_mlp", kMlp), "", {}).value();
  po.batch = declared.batch;
  Result<PipelinePlan> p = plan_pipeline(declared, {}, *cluster, po);
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  int finite_above_one = 0;
  for (const auto& [b, t] : p->micro_batch_search) finite_above_one += b > 1 && std::isfinite(t);
  EXPECT_GT(finite_above_one, 0);
  EXPECT_TRUE(p->micro_batch_rejections.empty());
  ModelSpec plain = resolve_model(write_model("plan_undeclared", undeclared()), "", {}).value();
  Result<PipelinePlan> q = plan_pipeline(plain, {}, *cluster, po);
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(q->micro_batches, 1);
  ASSERT_FALSE(q->micro_batch_rejections.empty());
  for (const auto& [b, why] : q->micro_batch_rejections) {
    EXPECT_GT(b, 1);
    EXPECT_NE(why.find("declares no batch dimension"), std::string::npos) << why;
  }
}

using test_support::CmdRun;
using test_support::run;

TrainFlags train_flags(const std::string& model) {
  TrainFlags t;
  t.model.model = model;
  t.model.size = "";
  t.steps = 2;
  t.threads = 1;
  t.json = true;
  return t;
}

// `alpa train --space` chooses among the pipeline plans as `alpa plan --space` does: one
// device per stage (inter-only) or one stage on every device (intra-only).
TEST(ModelFileCommands, TrainHonoursSpace) {
  const std::string path = write_model("space", kMlp);
  std::map<std::string, size_t> stages;
  for (const char* space : {"inter-only", "intra-only"}) {
    TrainFlags t = train_flags(path);
    t.parallel.devices = 2;
    t.parallel.pipeline_layers = 2;
    t.parallel.stage_imbalance = 1e9;
    t.parallel.space = space;
    CmdRun r = run(run_train, t);
    ASSERT_EQ(r.code, kExitOk) << space << ": " << r.err;
    stages[space] = nlohmann::json::parse(r.out)["pipeline"]["stages"].size();
  }
  EXPECT_EQ(stages["inter-only"], 2u);
  EXPECT_EQ(stages["intra-only"], 1u);
  TrainFlags t = train_flags(path);  // no pipeline: the flag would mean nothing
  t.parallel.space = "inter-only";
  CmdRun r = run(run_train, t);
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.err.find("--space inter-only chooses among pipeline plans"), std::string::npos)
      << r.err;
}

// `alpa graph --emit forward` writes the batch declaration: the file then trains at another
// --batch with --micro-batches, to the losses of that batch in one micro-batch.
TEST(ModelFileCommands, EmittedForwardTrainsMicroBatched) {
  const std::string path = work_dir() + "/emitted_mlp.ir";
  GraphFlags g;
  g.model.model = "mlp";
  g.emit = "forward";
  g.out_path = path;
  CmdRun e = run(run_graph, g);
  ASSERT_EQ(e.code, kExitOk) << e.err;
  TrainFlags t = train_flags(path);
  t.model.batch = 16;
  t.micro_batches = 4;
  CmdRun r = run(run_train, t);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["micro_batches"].get<int>(), 4);
  t.micro_batches = 1;  // the whole batch at once: the same losses
  CmdRun whole = run(run_train, t);
  ASSERT_EQ(whole.code, kExitOk) << whole.err;
  const auto a = j["losses"].get<std::vector<double>>();
  const auto b = nlohmann::json::parse(whole.out)["losses"].get<std::vector<double>>();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(b[i]));
}

// `alpa plan` lists each rejected micro-batch count with its reason, in text and JSON.
TEST(ModelFileCommands, PlanSaysWhyACountIsRejected) {
  PlanFlags f;
  f.model.model = write_model("plan_cli", undeclared());
  f.model.size = "";
  f.parallel.cluster = "local";
  f.parallel.devices = 2;
  f.json = true;
  CmdRun r = run(run_plan, f);
  ASSERT_EQ(r.code, kExitOk) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["micro_batches"].get<int>(), 1);
  int rejected = 0;
  for (const auto& c : j["micro_batch_search"])
    if (c.contains("rejected")) {
      ++rejected;
      EXPECT_NE(c["rejected"].get<std::string>().find("declares no batch dimension"),
                std::string::npos);
    }
  EXPECT_GT(rejected, 0);
  f.json = false;
  CmdRun text = run(run_plan, f);
  ASSERT_EQ(text.code, kExitOk) << text.err;
  EXPECT_NE(text.out.find("2 micro-batches: not possible: "), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("does not fit"), std::string::npos) << text.out;
}

}  // namespace
}  // namespace alpa
