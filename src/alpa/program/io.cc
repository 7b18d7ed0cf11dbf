#include "alpa/program/io.h"

#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "alpa/ir/text.h"
#include "alpa/program/verify.h"
#include "alpa/support/files.h"

namespace alpa {
namespace {

using json = nlohmann::ordered_json;

constexpr const char* kHint =
    "the program file is damaged or was edited by hand; write it again with `alpa compile ... "
    "--out FILE`";

// ---- writing ------------------------------------------------------------------------------

json lines_json(const Graph& g) {
  json lines = json::array();
  const std::string text = print_graph(g);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

json stage_json(const Stage& st) {
  json values = json::array();
  for (const StageValue& v : st.values) {
    json j = {{"name", v.name},
              {"type", v.type.to_string()},
              {"layout", v.layout.to_string()},
              {"kind", std::string(value_kind_name(v.kind))}};
    if (v.param >= 0) j["param"] = v.param;
    if (v.per_step) j["per_step"] = true;
    if (v.accumulated) j["accumulated"] = true;
    values.push_back(std::move(j));
  }
  json tasks = json::array();
  for (const Task& t : st.tasks)
    tasks.push_back({{"name", t.name},
                     {"inputs", t.inputs},
                     {"outputs", t.outputs},
                     {"program", lines_json(t.program)}});
  json instructions = json::array();
  for (const Instruction& x : st.instructions) instructions.push_back(to_string(st, x));
  return {{"mesh", {st.mesh.shape.n0, st.mesh.shape.n1}},
          {"devices", st.mesh.devices},
          {"loss", st.loss},
          {"values", values},
          {"tasks", tasks},
          {"instructions", instructions}};
}

json transfer_json(const Transfer& t) {
  json boxes = json::array();
  for (const CrossMeshTransfer& c : t.plan.transfers)
    boxes.push_back({c.src_rank, c.dst_rank, c.box.offset, c.box.extent});
  json j = {{"from", {t.from_stage, t.from_value}},
            {"to", {t.to_stage, t.to_value}},
            {"shape", t.plan.shape},
            {"src_layout", t.plan.src_spec.to_string()},
            {"dst_layout", t.plan.dst_spec.to_string()},
            {"receive_layout", t.plan.receive_spec.to_string()},
            {"boxes", boxes}};
  if (t.restore) j["restore"] = lines_json(*t.restore);
  return j;
}

// ---- reading ------------------------------------------------------------------------------

// A JSON object being read, with its path in the document for messages.
class Fields {
 public:
  Fields(const json& j, std::string path, std::string_view source)
      : j_(j), path_(std::move(path)), source_(source) {}

  const std::string& path() const { return path_; }
  std::string at(std::string_view key) const {
    return path_.empty() ? std::string(key) : cat(path_, ".", key);
  }
  Status error(const std::string& where, const std::string& why) const {
    return invalid_argument(cat(source_, ": ", where, ": ", why), kHint);
  }
  bool has(const char* key) const { return j_.contains(key); }

  Result<const json*> get(const char* key, json::value_t type, const char* what) const {
    if (!j_.contains(key)) return error(at(key), "missing");
    const json& v = j_.at(key);
    const bool ok = type == json::value_t::number_integer ? v.is_number_integer()
                    : type == json::value_t::number_float ? v.is_number()
                                                          : v.type() == type;
    if (!ok) return error(at(key), cat("expected ", what));
    return &v;
  }
  Result<std::string> string(const char* key) const {
    ALPA_ASSIGN_OR_RETURN(const json* v, get(key, json::value_t::string, "a string"));
    return v->get<std::string>();
  }
  Result<int64_t> integer(const char* key, int64_t lo, int64_t hi) const {
    ALPA_ASSIGN_OR_RETURN(const json* v, get(key, json::value_t::number_integer, "an integer"));
    return in_range(*v, at(key), lo, hi);
  }
  Result<double> number(const char* key) const {
    ALPA_ASSIGN_OR_RETURN(const json* v, get(key, json::value_t::number_float, "a number"));
    return v->get<double>();
  }
  Result<bool> flag(const char* key) const {
    if (!j_.contains(key)) return false;
    ALPA_ASSIGN_OR_RETURN(const json* v, get(key, json::value_t::boolean, "true or false"));
    return v->get<bool>();
  }
  Result<const json*> array(const char* key) const {
    return get(key, json::value_t::array, "an array");
  }
  Result<const json*> object(const char* key) const {
    return get(key, json::value_t::object, "an object");
  }
  Result<int64_t> in_range(const json& v, const std::string& where, int64_t lo, int64_t hi) const {
    if (!v.is_number_integer()) return error(where, "expected an integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
      return error(where, cat("out of range [", lo, ", ", hi, "]"));
    const int64_t x = v.get<int64_t>();
    if (x < lo || x > hi) return error(where, cat(x, " is out of range [", lo, ", ", hi, "]"));
    return x;
  }
  Result<std::vector<int>> ints(const char* key, int64_t lo, int64_t hi) const {
    ALPA_ASSIGN_OR_RETURN(const json* a, array(key));
    std::vector<int> out;
    for (size_t i = 0; i < a->size(); ++i) {
      ALPA_ASSIGN_OR_RETURN(int64_t x, in_range((*a)[i], cat(at(key), "[", i, "]"), lo, hi));
      out.push_back(static_cast<int>(x));
    }
    return out;
  }
  Result<std::vector<int64_t>> int64s(const json& a, const std::string& where, int64_t lo,
                                      int64_t hi) const {
    if (!a.is_array()) return error(where, "expected an array of integers");
    std::vector<int64_t> out;
    for (size_t i = 0; i < a.size(); ++i) {
      ALPA_ASSIGN_OR_RETURN(int64_t x, in_range(a[i], cat(where, "[", i, "]"), lo, hi));
      out.push_back(x);
    }
    return out;
  }
  Result<TensorType> type(const char* key) const {
    ALPA_ASSIGN_OR_RETURN(std::string text, string(key));
    std::optional<TensorType> t = parse_tensor_type(text);
    if (!t) return error(at(key), cat("'", text, "' is not a type (write it as f32[2,3])"));
    return *t;
  }
  Result<ShardingSpec> layout(const char* key) const {
    ALPA_ASSIGN_OR_RETURN(std::string text, string(key));
    Result<ShardingSpec> s = ShardingSpec::parse(text);
    if (!s.ok()) return error(at(key), s.status().message());
    return s;
  }
  Result<Graph> graph(const char* key) const {
    ALPA_ASSIGN_OR_RETURN(const json* a, array(key));
    std::string text;
    for (size_t i = 0; i < a->size(); ++i) {
      if (!(*a)[i].is_string()) return error(cat(at(key), "[", i, "]"), "expected a string");
      text += (*a)[i].get<std::string>();
      text += '\n';
    }
    Result<Graph> g = parse_graph(text, cat(source_, ": ", at(key)));
    if (!g.ok()) return invalid_argument(g.status().message(), kHint);
    return g;
  }
  Fields child(const json& j, const std::string& path) const { return Fields(j, path, source_); }

 private:
  const json& j_;
  std::string path_;
  std::string_view source_;
};

constexpr int64_t kMaxIndex = std::numeric_limits<int>::max();

Result<StepParam> read_param(const Fields& f) {
  StepParam p;
  ALPA_ASSIGN_OR_RETURN(p.name, f.string("name"));
  ALPA_ASSIGN_OR_RETURN(p.type, f.type("type"));
  ALPA_ASSIGN_OR_RETURN(std::string role, f.string("role"));
  ALPA_ASSIGN_OR_RETURN(std::string init, f.string("init"));
  const std::optional<ParamRole> r = parse_enum<ParamRole>(role);
  const std::optional<ParamInit> i = parse_enum<ParamInit>(init);
  if (!r) return f.error(f.at("role"), cat("'", role, "' is not weight, input or state"));
  if (!i) return f.error(f.at("init"), cat("'", init, "' is not an initialiser"));
  p.attrs.role = *r;
  p.attrs.init = *i;
  ALPA_ASSIGN_OR_RETURN(p.attrs.scale, f.number("scale"));
  return p;
}

Result<StageValue> read_value(const Fields& f) {
  StageValue v;
  ALPA_ASSIGN_OR_RETURN(v.name, f.string("name"));
  ALPA_ASSIGN_OR_RETURN(v.type, f.type("type"));
  ALPA_ASSIGN_OR_RETURN(v.layout, f.layout("layout"));
  ALPA_ASSIGN_OR_RETURN(std::string kind, f.string("kind"));
  bool known = false;
  for (ValueKind k :
       {ValueKind::kOwned, ValueKind::kInput, ValueKind::kReceived, ValueKind::kComputed})
    if (value_kind_name(k) == kind) v.kind = k, known = true;
  if (!known)
    return f.error(f.at("kind"), cat("'", kind, "' is not owned, input, received or computed"));
  if (f.has("param")) {
    ALPA_ASSIGN_OR_RETURN(int64_t p, f.integer("param", 0, kMaxIndex));
    v.param = static_cast<int>(p);
  }
  ALPA_ASSIGN_OR_RETURN(v.per_step, f.flag("per_step"));
  ALPA_ASSIGN_OR_RETURN(v.accumulated, f.flag("accumulated"));
  return v;
}

Result<Task> read_task(const Fields& f) {
  Task t;
  ALPA_ASSIGN_OR_RETURN(t.name, f.string("name"));
  ALPA_ASSIGN_OR_RETURN(t.inputs, f.ints("inputs", 0, kMaxIndex));
  ALPA_ASSIGN_OR_RETURN(t.outputs, f.ints("outputs", 0, kMaxIndex));
  ALPA_ASSIGN_OR_RETURN(t.program, f.graph("program"));
  return t;
}

Result<Stage> read_stage(const Fields& f) {
  Stage st;
  ALPA_ASSIGN_OR_RETURN(std::vector<int> shape, f.ints("mesh", 1, kMaxIndex));
  if (shape.size() != 2) return f.error(f.at("mesh"), "expected [n0, n1]");
  st.mesh.shape = {shape[0], shape[1]};
  ALPA_ASSIGN_OR_RETURN(st.mesh.devices, f.ints("devices", 0, kMaxIndex));
  ALPA_ASSIGN_OR_RETURN(int64_t loss, f.integer("loss", -1, kMaxIndex));
  st.loss = static_cast<int>(loss);
  ALPA_ASSIGN_OR_RETURN(const json* values, f.array("values"));
  for (size_t i = 0; i < values->size(); ++i) {
    const std::string path = cat(f.at("values"), "[", i, "]");
    if (!(*values)[i].is_object()) return f.error(path, "expected an object");
    ALPA_ASSIGN_OR_RETURN(StageValue v, read_value(f.child((*values)[i], path)));
    st.values.push_back(std::move(v));
  }
  ALPA_ASSIGN_OR_RETURN(const json* tasks, f.array("tasks"));
  for (size_t i = 0; i < tasks->size(); ++i) {
    const std::string path = cat(f.at("tasks"), "[", i, "]");
    if (!(*tasks)[i].is_object()) return f.error(path, "expected an object");
    ALPA_ASSIGN_OR_RETURN(Task t, read_task(f.child((*tasks)[i], path)));
    st.tasks.push_back(std::move(t));
  }
  ALPA_ASSIGN_OR_RETURN(const json* instructions, f.array("instructions"));
  for (size_t i = 0; i < instructions->size(); ++i) {
    const std::string path = cat(f.at("instructions"), "[", i, "]");
    if (!(*instructions)[i].is_string()) return f.error(path, "expected a string");
    Result<Instruction> x = parse_instruction(st, (*instructions)[i].get<std::string>());
    if (!x.ok()) return f.error(path, x.status().message());
    st.instructions.push_back(*x);
  }
  return st;
}

Result<Transfer> read_transfer(const Fields& f, const std::vector<Stage>& stages) {
  Transfer t;
  ALPA_ASSIGN_OR_RETURN(std::vector<int> from, f.ints("from", 0, kMaxIndex));
  ALPA_ASSIGN_OR_RETURN(std::vector<int> to, f.ints("to", 0, kMaxIndex));
  if (from.size() != 2) return f.error(f.at("from"), "expected [stage, value]");
  if (to.size() != 2) return f.error(f.at("to"), "expected [stage, value]");
  t.from_stage = from[0], t.from_value = from[1], t.to_stage = to[0], t.to_value = to[1];
  for (int s : {t.from_stage, t.to_stage})
    if (s >= static_cast<int>(stages.size()))
      return f.error(f.path(), cat("stage ", s, " out of range (", stages.size(), " stages)"));
  t.plan.src = stages[static_cast<size_t>(t.from_stage)].mesh;
  t.plan.dst = stages[static_cast<size_t>(t.to_stage)].mesh;
  ALPA_ASSIGN_OR_RETURN(const json* shape, f.array("shape"));
  ALPA_ASSIGN_OR_RETURN(t.plan.shape, f.int64s(*shape, f.at("shape"), 0, int64_t{1} << 48));
  ALPA_ASSIGN_OR_RETURN(t.plan.src_spec, f.layout("src_layout"));
  ALPA_ASSIGN_OR_RETURN(t.plan.dst_spec, f.layout("dst_layout"));
  ALPA_ASSIGN_OR_RETURN(t.plan.receive_spec, f.layout("receive_layout"));
  ALPA_ASSIGN_OR_RETURN(const json* boxes, f.array("boxes"));
  for (size_t i = 0; i < boxes->size(); ++i) {
    const std::string path = cat(f.at("boxes"), "[", i, "]");
    const json& b = (*boxes)[i];
    if (!b.is_array() || b.size() != 4)
      return f.error(path, "expected [source device, destination device, offset, extent]");
    CrossMeshTransfer c;
    ALPA_ASSIGN_OR_RETURN(int64_t src, f.in_range(b[0], path + "[0]", 0, kMaxIndex));
    ALPA_ASSIGN_OR_RETURN(int64_t dst, f.in_range(b[1], path + "[1]", 0, kMaxIndex));
    c.src_rank = static_cast<int>(src);
    c.dst_rank = static_cast<int>(dst);
    ALPA_ASSIGN_OR_RETURN(c.box.offset, f.int64s(b[2], path + "[2]", 0, int64_t{1} << 48));
    ALPA_ASSIGN_OR_RETURN(c.box.extent, f.int64s(b[3], path + "[3]", 0, int64_t{1} << 48));
    t.plan.transfers.push_back(std::move(c));
  }
  if (f.has("restore")) {
    ALPA_ASSIGN_OR_RETURN(Graph g, f.graph("restore"));
    t.restore = std::move(g);
  }
  return t;
}

Result<Program> read_program(const json& j, std::string_view source) {
  const Fields f(j, "", source);
  ALPA_ASSIGN_OR_RETURN(std::string format, f.string("format"));
  if (format != kProgramFormat)
    return invalid_argument(cat(source, ": format '", format, "' is not ", kProgramFormat),
                            "this build reads alpa-program/1 files; compile the program again "
                            "with this build's `alpa compile`");
  Program p;
  ALPA_ASSIGN_OR_RETURN(p.model, f.string("model"));
  ALPA_ASSIGN_OR_RETURN(const json* src, f.object("source"));
  for (const auto& [k, v] : src->items()) {
    if (!v.is_string()) return f.error(cat("source.", k), "expected a string");
    p.source[k] = v.get<std::string>();
  }
  ALPA_ASSIGN_OR_RETURN(p.step_fingerprint, f.string("step_fingerprint"));
  ALPA_ASSIGN_OR_RETURN(int64_t devices, f.integer("devices", 1, kMaxProgramDevices));
  ALPA_ASSIGN_OR_RETURN(int64_t mbs, f.integer("micro_batches", 1, 1 << 20));
  p.num_devices = static_cast<int>(devices);
  p.micro_batches = static_cast<int>(mbs);
  ALPA_ASSIGN_OR_RETURN(p.schedule, f.string("schedule"));
  if (f.has("virtual_stages")) {
    ALPA_ASSIGN_OR_RETURN(int64_t v, f.integer("virtual_stages", 1, kMaxIndex));
    p.virtual_stages = static_cast<int>(v);
  }
  ALPA_ASSIGN_OR_RETURN(p.predicted_step_time_s, f.number("predicted_step_time_s"));
  auto each = [&](const char* key, auto read) -> Status {
    ALPA_ASSIGN_OR_RETURN(const json* a, f.array(key));
    for (size_t i = 0; i < a->size(); ++i) {
      const std::string path = cat(key, "[", i, "]");
      if (!(*a)[i].is_object()) return f.error(path, "expected an object");
      ALPA_RETURN_IF_ERROR(read(f.child((*a)[i], path)));
    }
    return ok_status();
  };
  ALPA_RETURN_IF_ERROR(each("params", [&](const Fields& x) -> Status {
    ALPA_ASSIGN_OR_RETURN(StepParam sp, read_param(x));
    p.params.push_back(std::move(sp));
    return ok_status();
  }));
  ALPA_RETURN_IF_ERROR(each("stages", [&](const Fields& x) -> Status {
    ALPA_ASSIGN_OR_RETURN(Stage st, read_stage(x));
    p.stages.push_back(std::move(st));
    return ok_status();
  }));
  ALPA_RETURN_IF_ERROR(each("transfers", [&](const Fields& x) -> Status {
    ALPA_ASSIGN_OR_RETURN(Transfer t, read_transfer(x, p.stages));
    p.transfers.push_back(std::move(t));
    return ok_status();
  }));
  return p;
}

Result<int> parse_index(std::string_view text, std::string_view prefix, std::string_view what) {
  if (text.substr(0, prefix.size()) != prefix)
    return invalid_argument(cat("expected ", what, " as ", prefix, "N, got '", text, "'"));
  text.remove_prefix(prefix.size());
  int v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || ptr != text.data() + text.size() || v < 0)
    return invalid_argument(cat("expected ", what, " as ", prefix, "N, got '", prefix, text, "'"));
  return v;
}

}  // namespace

Result<Instruction> parse_instruction(const Stage& stage, std::string_view text) {
  std::vector<std::string_view> words;
  for (size_t i = 0; i < text.size();) {
    const size_t j = text.find(' ', i);
    const size_t end = j == std::string_view::npos ? text.size() : j;
    if (end > i) words.push_back(text.substr(i, end - i));
    i = end + 1;
  }
  if (words.size() != 3)
    return invalid_argument(cat("'", text, "' is not an instruction (e.g. \"RUN forward mb0\")"));
  Instruction x;
  if (words[2] == "step") {
    x.micro_batch = -1;
  } else {
    ALPA_ASSIGN_OR_RETURN(x.micro_batch, parse_index(words[2], "mb", "a micro-batch"));
  }
  const std::string_view op = words[0], arg = words[1];
  if (op == "RUN") {
    x.kind = InstrKind::kRun;
    for (size_t k = 0; k < stage.tasks.size(); ++k)
      if (stage.tasks[k].name == arg) x.task = static_cast<int>(k);
    if (x.task < 0)
      return invalid_argument(cat("RUN of task '", arg, "', which the stage does not have"));
  } else if (op == "RECV" || op == "SEND") {
    x.kind = op == "RECV" ? InstrKind::kRecv : InstrKind::kSend;
    ALPA_ASSIGN_OR_RETURN(x.transfer, parse_index(arg, "t", "a transfer"));
  } else if (op == "ACC" || op == "FREE") {
    x.kind = op == "ACC" ? InstrKind::kAccumulate : InstrKind::kFree;
    ALPA_ASSIGN_OR_RETURN(x.value, parse_index(arg, "v", "a value"));
  } else {
    return invalid_argument(cat("unknown instruction '", op, "' (RECV, RUN, ACC, SEND, FREE)"));
  }
  return x;
}

std::string program_to_json(const Program& p) {
  json params = json::array();
  for (const StepParam& sp : p.params)
    params.push_back({{"name", sp.name},
                      {"type", sp.type.to_string()},
                      {"role", std::string(enum_name(sp.attrs.role))},
                      {"init", std::string(enum_name(sp.attrs.init))},
                      {"scale", sp.attrs.scale}});
  json stages = json::array();
  for (const Stage& st : p.stages) stages.push_back(stage_json(st));
  json transfers = json::array();
  for (const Transfer& t : p.transfers) transfers.push_back(transfer_json(t));
  json source = json::object();
  for (const auto& [k, v] : p.source) source[k] = v;
  json j = {{"format", std::string(kProgramFormat)},
            {"model", p.model},
            {"source", source},
            {"step_fingerprint", p.step_fingerprint},
            {"devices", p.num_devices},
            {"micro_batches", p.micro_batches},
            {"schedule", p.schedule}};
  if (p.virtual_stages != 1) j["virtual_stages"] = p.virtual_stages;  // interleaved only
  j["predicted_step_time_s"] = p.predicted_step_time_s;
  j["params"] = params;
  j["stages"] = stages;
  j["transfers"] = transfers;
  return j.dump(1, ' ', false, json::error_handler_t::replace) + "\n";
}

Result<Program> program_from_json(std::string_view text, std::string_view source_name) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return invalid_argument(cat(source_name, ": not valid JSON"), kHint);
  if (!j.is_object()) return invalid_argument(cat(source_name, ": expected a JSON object"), kHint);
  ALPA_ASSIGN_OR_RETURN(Program p, read_program(j, source_name));
  Status s = verify_program(p);
  if (!s.ok()) return invalid_argument(cat(source_name, ": ", s.message()), kHint);
  return p;
}

Status save_program(const Program& p, const std::string& path) {
  return write_file(path, program_to_json(p));
}

Result<Program> load_program(const std::string& path) {
  ALPA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  return program_from_json(text, path);
}

}  // namespace alpa
