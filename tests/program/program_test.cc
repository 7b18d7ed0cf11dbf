// The executable program format (program/program.h, io.h, verify.h): compiled programs of one
// device, a mesh and a pipeline verify and round-trip exactly through their JSON form; a
// damaged file is refused with an error naming the field or the broken invariant; a parsed
// program runs to the same losses as the one it was written from.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "alpa/compile/compile.h"
#include "alpa/program/io.h"
#include "alpa/program/verify.h"
#include "alpa/runtime/init.h"
#include "alpa/runtime/program_runner.h"
#include "pipeline/manual_stages.h"

namespace alpa {
namespace {

using json = nlohmann::ordered_json;

Program compiled(bool pipeline, MeshShape mesh = {1, 1}, int micro_batches = 2) {
  const ModelSpec spec = resolve_model("gpt", "tiny", {}).value();
  CompileOptions o;
  o.micro_batches = micro_batches;
  o.pipeline = pipeline;
  o.mesh = mesh;
  o.devices = 4;
  o.check_by_simulation = false;
  if (pipeline) o.stages = testing::manual_stage_plan({{1, 2}, {1, 2}}, 2, micro_batches);
  return compile(spec, cluster_preset("local").value(), o).value().program;
}

const Program& pipeline_program() {
  static const Program p = compiled(true);
  return p;
}

// The text of `p` with `edit` applied to its JSON, parsed back.
Result<Program> edited(const Program& p, const std::function<void(json&)>& edit) {
  json j = json::parse(program_to_json(p));
  edit(j);
  return program_from_json(j.dump(), "edited.json");
}

void expect_refused(const Result<Program>& r, const std::string& says) {
  ASSERT_FALSE(r.ok()) << "accepted; expected: " << says;
  EXPECT_NE(r.status().message().find(says), std::string::npos) << r.status().message();
  EXPECT_FALSE(r.status().hint().empty());
}

TEST(Program, CompiledProgramsVerifyAndRoundTrip) {
  for (const Program& p : {compiled(false), compiled(false, {2, 2}), pipeline_program()}) {
    SCOPED_TRACE(cat(p.stages.size(), " stage(s) on ", p.num_devices, " devices"));
    ASSERT_TRUE(verify_program(p).ok()) << verify_program(p).to_string();
    const std::string text = program_to_json(p);
    Result<Program> back = program_from_json(text, "p.json");
    ASSERT_TRUE(back.ok()) << back.status().to_string();
    EXPECT_TRUE(*back == p);
    EXPECT_EQ(program_to_json(*back), text);
  }
  const Program& p = pipeline_program();
  EXPECT_EQ(p.stages.size(), 2u);
  EXPECT_EQ(p.schedule, "1f1b");
  EXPECT_FALSE(p.transfers.empty());
}

TEST(Program, InstructionsHaveATextForm) {
  const Stage& st = pipeline_program().stages[0];
  for (const Instruction& x : st.instructions) {
    Result<Instruction> back = parse_instruction(st, to_string(st, x));
    ASSERT_TRUE(back.ok()) << to_string(st, x);
    EXPECT_EQ(*back, x);
  }
  for (const char* bad : {"RUN nothing mb0", "JUMP t0 mb0", "SEND 3 mb0", "ACC v1 mbx", "RUN"})
    EXPECT_FALSE(parse_instruction(st, bad).ok()) << bad;
}

TEST(Program, DamagedFilesAreRefusedNamingTheField) {
  const Program& p = pipeline_program();
  expect_refused(program_from_json("{not json", "x.json"), "x.json: not valid JSON");
  expect_refused(edited(p, [](json& j) { j.erase("devices"); }), "edited.json: devices: missing");
  expect_refused(edited(p, [](json& j) { j["format"] = "alpa-program/9"; }),
                 "is not alpa-program/1");
  expect_refused(edited(p, [](json& j) { j["micro_batches"] = "four"; }),
                 "micro_batches: expected an integer");
  expect_refused(edited(p, [](json& j) { j["stages"][0]["values"][1]["layout"] = "S7R"; }),
                 "stages[0].values[1].layout");
  expect_refused(edited(p, [](json& j) { j["stages"][1]["values"][0]["type"] = "f32[x]"; }),
                 "stages[1].values[0].type");
  expect_refused(edited(p, [](json& j) { j["stages"][1]["tasks"][0]["inputs"][0] = 100000; }),
                 "stage 1 task 0 (forward) input 0: value 100000 out of range");
  expect_refused(edited(p, [](json& j) { j["stages"][0]["instructions"][0] = "RUN nothing mb0"; }),
                 "stages[0].instructions[0]");
  expect_refused(edited(p,
                        [](json& j) {
                          json& lines = j["stages"][0]["tasks"][0]["program"];
                          lines[1] = "  %x = no_such_op() : f32[2]";
                        }),
                 "stages[0].tasks[0].program");
  expect_refused(edited(p, [](json& j) { j["transfers"][0]["boxes"][0][3][0] = 1; }), "transfer 0");
  expect_refused(edited(p,
                        [](json& j) {
                          j["stages"][0]["devices"] = {0, 2};
                        }),
                 "stages 0 and 1 both use device 2");
}

TEST(Program, TheVerifierFindsBrokenInvariants) {
  const Program& good = pipeline_program();
  // A value held in another layout than the task's program expects.
  Program p = good;
  StageValue* owned = nullptr;
  for (StageValue& v : p.stages[0].values)
    if (v.kind == ValueKind::kOwned && v.type.rank() == 2 && v.layout.is_replicated() &&
        v.type.shape[0] % 2 == 0)
      owned = &v;
  ASSERT_NE(owned, nullptr);
  owned->layout.dims[0] = kAxis1;  // split over the stage's 1x2 mesh: half the rows
  Status s = verify_program(p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is held as"), std::string::npos) << s.message();
  // A value never freed.
  p = good;
  std::vector<Instruction>& list = p.stages[1].instructions;
  for (size_t i = 0; i < list.size(); ++i)
    if (list[i].kind == InstrKind::kFree) {
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  s = verify_program(p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("is never freed"), std::string::npos) << s.message();
  // A value read after it was freed: its FREE moved to the front.
  p = good;
  std::vector<Instruction>& l0 = p.stages[0].instructions;
  for (size_t i = 0; i < l0.size(); ++i)
    if (l0[i].kind == InstrKind::kFree && l0[i].micro_batch >= 0) {
      const Instruction f = l0[i];
      l0.erase(l0.begin() + static_cast<std::ptrdiff_t>(i));
      l0.insert(l0.begin(), f);
      break;
    }
  s = verify_program(p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not held there"), std::string::npos) << s.message();
  // A RECV without its SEND.
  p = good;
  for (std::vector<Instruction>* l : {&p.stages[0].instructions, &p.stages[1].instructions})
    for (size_t i = 0; i < l->size(); ++i)
      if ((*l)[i].kind == InstrKind::kSend && (*l)[i].micro_batch == 1) {
        l->erase(l->begin() + static_cast<std::ptrdiff_t>(i));
        i = l->size();
      }
  s = verify_program(p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("sent 0 time(s)"), std::string::npos) << s.message();
  // Stages that wait for each other: stage 0 receives a backward gradient before it sends the
  // forward activations stage 1 needs to compute it.
  p = good;
  for (size_t i = 0; i < l0.size(); ++i) {
    std::vector<Instruction>& list0 = p.stages[0].instructions;
    if (list0[i].kind == InstrKind::kRecv && list0[i].micro_batch >= 0) {
      const Instruction r = list0[i];
      list0.erase(list0.begin() + static_cast<std::ptrdiff_t>(i));
      list0.insert(list0.begin(), r);
      break;
    }
  }
  s = verify_program(p);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("wait for each other forever"), std::string::npos) << s.message();
}

TEST(Program, AParsedProgramRunsLikeTheOneItWasWrittenFrom) {
  const Program& p = pipeline_program();
  const Program back = program_from_json(program_to_json(p)).value();
  auto losses = [](const Program& prog) {
    ProgramRunner runner(prog);
    std::vector<Tensor> whole(prog.params.size());
    for (size_t i = 0; i < prog.params.size(); ++i) {
      const StepParam& sp = prog.params[i];
      whole[i] = init_tensor(sp.name, sp.type, sp.attrs, 5);
    }
    EXPECT_TRUE(runner.load_parameters(whole).ok());
    std::vector<double> out;
    for (int s = 0; s < 3; ++s) out.push_back(runner.run_step(whole).value());
    return out;
  };
  EXPECT_EQ(losses(back), losses(p));  // bit-identical
}

}  // namespace
}  // namespace alpa
