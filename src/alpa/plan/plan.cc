#include "alpa/plan/plan.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "alpa/inter/virtual_stages.h"
#include "alpa/ir/text.h"
#include "alpa/support/files.h"
#include "alpa/support/hash.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

std::string graph_fingerprint(const Graph& g) {
  const uint64_t h = hash_string(print_graph(g));
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

Plan plan_from_sharding(const Graph& g, const ShardingPlan& sp, const std::string& model,
                        const std::string& cluster, int micro_batches) {
  Plan p;
  p.model = model;
  p.cluster = cluster;
  p.mesh = sp.mesh;
  p.micro_batches = micro_batches;
  p.graph_fingerprint = graph_fingerprint(g);
  for (ValueId v = 0; v < g.size(); ++v)
    if (sp.strategy[v] >= 0)
      p.layouts[value_ref(g, v)] = sp.ilp_specs.empty() ? sp.specs[v] : sp.ilp_specs[v];
  p.predicted_compute_s = sp.compute_s;
  p.predicted_communication_s = sp.communication_s;
  p.predicted_step_time_s = sp.compute_s + sp.communication_s;
  p.predicted_peak_memory_bytes = sp.peak_memory_bytes;
  return p;
}

std::string plan_to_json(const Plan& p) {
  nlohmann::ordered_json j;
  j["format"] = "alpa-plan/1";
  j["model"] = p.model;
  j["cluster"] = p.cluster;
  if (!p.is_pipeline()) j["mesh"] = {p.mesh[0], p.mesh[1]};
  j["micro_batches"] = p.micro_batches;
  if (!p.graph_fingerprint.empty()) j["graph_fingerprint"] = p.graph_fingerprint;
  j["options"] = {{"force_batch_dim_to_mesh_dim", p.options.force_batch_dim_to_mesh_dim},
                  {"prefer_reduce_scatter", p.options.prefer_reduce_scatter},
                  {"allow_mixed_mesh_shape", p.options.allow_mixed_mesh_shape},
                  {"memory_budget_bytes", p.memory_budget_bytes}};
  nlohmann::ordered_json layouts = nlohmann::ordered_json::object();
  for (const auto& [k, s] : p.layouts) layouts[k] = s.to_string();
  if (!p.is_pipeline() || !p.layouts.empty()) j["layouts"] = layouts;
  if (p.is_pipeline()) {
    j["pipeline"] = {
        {"devices", p.devices}, {"layers", p.pipeline_layers}, {"schedule", p.schedule}};
    if (p.virtual_stages != 1) j["pipeline"]["virtual_stages"] = p.virtual_stages;
    if (!p.layer_starts.empty()) j["pipeline"]["layer_starts"] = p.layer_starts;
    nlohmann::ordered_json stages = nlohmann::ordered_json::array();
    for (const PlanStage& st : p.stages) {
      nlohmann::ordered_json js;
      js["layers"] = {st.first_layer, st.last_layer};
      js["mesh"] = {st.mesh[0], st.mesh[1]};
      js["first_device"] = st.first_device;
      if (st.batch_axis == ShardingOptions::kAutoBatchAxis)
        js["batch_axis"] = "auto";
      else
        js["batch_axis"] = st.batch_axis;
      nlohmann::ordered_json sl = nlohmann::ordered_json::object();
      for (const auto& [k, s] : st.layouts) sl[k] = s.to_string();
      js["layouts"] = sl;
      js["remat"] = remat_name(st.remat);
      if (st.full_remat_layers > 0) js["full_remat_layers"] = st.full_remat_layers;
      js["predicted"] = {{"time_per_micro_batch_s", st.predicted_time_s},
                         {"peak_memory_bytes", st.predicted_peak_memory_bytes}};
      stages.push_back(js);
    }
    j["stages"] = stages;
  }
  j["predicted"] = {{"step_time_s", p.predicted_step_time_s},
                    {"compute_s", p.predicted_compute_s},
                    {"communication_s", p.predicted_communication_s},
                    {"peak_memory_bytes", p.predicted_peak_memory_bytes}};
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

namespace {

using ErrFn = std::function<Status(const std::string&, const std::string&)>;

Result<std::map<std::string, ShardingSpec>> parse_layouts(const nlohmann::json& l,
                                                          const std::string& where,
                                                          const ErrFn& err) {
  if (!l.is_object()) return err(cat(where, "\"layouts\" must be an object"), "");
  std::map<std::string, ShardingSpec> out;
  for (auto it = l.begin(); it != l.end(); ++it) {
    if (!it->is_string())
      return err(cat(where, "layout of \"", it.key(), "\" must be a string like \"S0R\""), "");
    Result<ShardingSpec> s = ShardingSpec::parse(it->get<std::string>());
    if (!s.ok())
      return err(cat(where, "layout of \"", it.key(), "\": ", s.status().message()),
                 s.status().hint());
    out[it.key()] = *s;
  }
  return out;
}

// Whether `x` is an integer in [lo, hi] (a number above 2^63 too is out of range, not wrapped).
bool int_in(const nlohmann::json& x, int64_t lo, int64_t hi) {
  if (x.is_number_unsigned()) {
    const uint64_t u = x.get<uint64_t>();
    return hi >= 0 && u <= static_cast<uint64_t>(hi) && static_cast<int64_t>(u) >= lo;
  }
  return x.is_number_integer() && x.get<int64_t>() >= lo && x.get<int64_t>() <= hi;
}
constexpr int64_t kMaxCount = kMaxDevices;       // devices, first devices, mesh extents
constexpr int64_t kMaxIndex = int64_t{1} << 30;  // layers, operator indices, micro-batches

// The "pipeline" object: devices, layers, layer_starts, schedule, virtual_stages.
Status parse_pipeline_fields(const nlohmann::json& j, Plan& p, const ErrFn& err) {
  const auto& pl = j.contains("pipeline") ? j["pipeline"] : nlohmann::json::object();
  if (!pl.is_object()) return err("field \"pipeline\" must be an object", "");
  for (auto it = pl.begin(); it != pl.end(); ++it) {
    const std::string& k = it.key();
    if (k == "devices" || k == "layers") {
      if (!int_in(*it, 1, k == "devices" ? kMaxCount : kMaxIndex))
        return err(cat("pipeline.", k, " must be an integer from 1 to ",
                       k == "devices" ? kMaxCount : kMaxIndex, ", got ", json_excerpt(*it)),
                   "");
      (k == "devices" ? p.devices : p.pipeline_layers) = it->get<int>();
    } else if (k == "schedule") {
      if (!it->is_string() ||
          (*it != "1f1b" && *it != "gpipe" && *it != "interleaved-1f1b" && *it != "interleaved"))
        return err("pipeline.schedule must be \"1f1b\", \"gpipe\" or \"interleaved-1f1b\"", "");
      p.schedule = *it == "interleaved" ? "interleaved-1f1b" : it->get<std::string>();
    } else if (k == "virtual_stages") {
      if (!int_in(*it, 1, 64))
        return err(
            cat("pipeline.virtual_stages must be an integer from 1 to 64, got ", json_excerpt(*it)),
            "");
      p.virtual_stages = it->get<int>();
    } else if (k == "layer_starts") {
      if (!it->is_array())
        return err("pipeline.layer_starts must be an array of operator indices",
                   "e.g. [118, 240]: where layers 1, 2, ... begin; or leave it out");
      p.layer_starts.clear();
      for (const auto& x : *it) {
        if (!int_in(x, 1, kMaxIndex))
          return err("pipeline.layer_starts must hold positive integers (operator indices)", "");
        p.layer_starts.push_back(x.get<int>());
      }
    } else {
      return err(cat("unknown field \"pipeline.", k, "\""),
                 "fields: devices, layers, layer_starts, schedule, virtual_stages");
    }
  }
  return ok_status();
}

Status parse_pipeline(const nlohmann::json& j, Plan& p, const ErrFn& err) {
  ALPA_RETURN_IF_ERROR(parse_pipeline_fields(j, p, err));
  const auto& st = j["stages"];
  if (!st.is_array() || st.empty())
    return err("field \"stages\" must be a non-empty array",
               "e.g. \"stages\": [{\"layers\": [0, 1], \"mesh\": [1, 2]}, ...]");
  const bool interleaved = p.schedule == "interleaved-1f1b";
  if (interleaved != (p.virtual_stages > 1))
    return err(interleaved ? "pipeline.schedule \"interleaved-1f1b\" needs pipeline.virtual_stages "
                             ">= 2"
                           : cat("pipeline.virtual_stages ", p.virtual_stages,
                                 " needs pipeline.schedule \"interleaved-1f1b\""),
               "");
  if (st.is_array() && st.size() % static_cast<size_t>(p.virtual_stages) != 0)
    return err(
        cat(st.size(), " stages do not split into ", p.virtual_stages, " virtual stages per mesh"),
        "an interleaved plan lists meshes x virtual_stages stages, stage c on the mesh of "
        "stage c mod (meshes)");
  const size_t meshes = st.is_array() ? st.size() / static_cast<size_t>(p.virtual_stages) : 0;
  int device = 0, layer = 0;
  for (size_t i = 0; i < st.size(); ++i) {
    const std::string where = cat("stage ", i, ": ");
    const auto& s = st[i];
    if (!s.is_object()) return err(cat(where, "must be an object"), "");
    PlanStage ps;
    for (auto it = s.begin(); it != s.end(); ++it) {
      const std::string& k = it.key();
      if (k == "layers") {
        const auto& l = *it;
        if (!l.is_array() || l.size() != 2 || !int_in(l[0], 0, kMaxIndex) ||
            !int_in(l[1], 0, kMaxIndex) || l[1].get<int>() < l[0].get<int>())
          return err(cat(where, "\"layers\" must be [first, last] with 0 <= first <= last, got ",
                         json_excerpt(l)),
                     "");
        ps.first_layer = l[0].get<int>();
        ps.last_layer = l[1].get<int>();
      } else if (k == "mesh") {
        const auto& m = *it;
        if (!m.is_array() || m.size() != 2 || !int_in(m[0], 1, kMaxCount) ||
            !int_in(m[1], 1, kMaxCount))
          return err(cat(where, "\"mesh\" must be two integers from 1 to ", kMaxCount, ", got ",
                         json_excerpt(m)),
                     "");
        ps.mesh = {m[0].get<int64_t>(), m[1].get<int64_t>()};
      } else if (k == "first_device") {
        if (!int_in(*it, 0, kMaxCount - 1))
          return err(cat(where, "\"first_device\" must be an integer from 0 to ", kMaxCount - 1),
                     "");
        ps.first_device = it->get<int>();
      } else if (k == "batch_axis") {
        if (it->is_string() && *it == "auto")
          ps.batch_axis = ShardingOptions::kAutoBatchAxis;
        else if (int_in(*it, -1, 1))
          ps.batch_axis = it->get<int>();
        else
          return err(cat(where, "\"batch_axis\" must be \"auto\", -1 (none), 0 or 1"), "");
      } else if (k == "layouts") {
        ALPA_ASSIGN_OR_RETURN(ps.layouts, parse_layouts(*it, where, err));
      } else if (k == "remat") {
        Result<RematMode> m = it->is_string() ? parse_remat(it->get<std::string>())
                                              : Result<RematMode>(invalid_argument(""));
        if (!m.ok() || *m == RematMode::kAuto)
          return err(cat(where, "\"remat\" must be \"none\", \"selective\" or \"full\", got ",
                         json_excerpt(*it)),
                     "what the stage's backward recomputes; the planner writes it");
        ps.remat = *m;
      } else if (k == "full_remat_layers") {
        if (!int_in(*it, 0, 1 << 20))
          return err(cat(where, "\"full_remat_layers\" must be a whole number from 0, got ",
                         json_excerpt(*it)),
                     "how many of the stage's first layers recompute fully");
        ps.full_remat_layers = it->get<int>();
      } else if (k == "predicted") {
        if (!it->is_object()) return err(cat(where, "\"predicted\" must be an object"), "");
        ps.predicted_time_s = it->value("time_per_micro_batch_s", 0.0);
        ps.predicted_peak_memory_bytes = it->value("peak_memory_bytes", 0.0);
      } else {
        return err(cat(where, "unknown field \"", k, "\""),
                   "fields: layers, mesh, first_device, batch_axis, layouts, remat, "
                   "full_remat_layers, predicted");
      }
    }
    if (!s.contains("layers")) return err(cat(where, "missing \"layers\""), "e.g. [0, 1]");
    if (i >= meshes) {  // interleaved: on the mesh of stage i mod meshes
      const PlanStage& on = p.stages[i % meshes];
      if (!s.contains("mesh")) ps.mesh = on.mesh;
      if (!s.contains("first_device")) ps.first_device = on.first_device;
      if (!s.contains("batch_axis")) ps.batch_axis = on.batch_axis;
      if (ps.mesh != on.mesh || ps.first_device != on.first_device)
        return err(cat(where, "runs on the mesh of stage ", i % meshes,
                       " (interleaved), so its \"mesh\" and \"first_device\" are that stage's"),
                   "leave them out");
    }
    if (!s.contains("mesh") && i < meshes)
      return err(cat(where, "missing \"mesh\""), "the stage's logical mesh, e.g. [1, 2]");
    if (!s.contains("first_device") && i < meshes) ps.first_device = device;
    if (ps.first_layer != layer)
      return err(cat(where, "starts at layer ", ps.first_layer,
                     ", but the previous stage ended at ", layer - 1),
                 "stages take consecutive layer ranges, in order, starting at layer 0");
    layer = ps.last_layer + 1;
    if (i < meshes) device = ps.first_device + static_cast<int>(ps.mesh[0] * ps.mesh[1]);
    p.stages.push_back(std::move(ps));
  }
  if (p.pipeline_layers == 0) p.pipeline_layers = layer;
  if (layer != p.pipeline_layers)
    return err(cat("the stages cover layers 0..", layer - 1, " but pipeline.layers is ",
                   p.pipeline_layers),
               "");
  if (!p.layer_starts.empty()) {
    if (static_cast<int>(p.layer_starts.size()) != p.pipeline_layers - 1)
      return err(cat("pipeline.layer_starts has ", p.layer_starts.size(), " entries for ",
                     p.pipeline_layers, " layers"),
                 "list where each layer after the first begins (layers - 1 entries), or leave "
                 "it out to re-cluster");
    for (size_t i = 1; i < p.layer_starts.size(); ++i)
      if (p.layer_starts[i] <= p.layer_starts[i - 1])
        return err(cat("pipeline.layer_starts must be strictly increasing: entry ", i, " is ",
                       p.layer_starts[i], " after ", p.layer_starts[i - 1]),
                   "");
  }
  int needed = 0;
  for (size_t a = 0; a < meshes; ++a) {
    const PlanStage& ps = p.stages[a];
    const int end = ps.first_device + static_cast<int>(ps.mesh[0] * ps.mesh[1]);
    needed = std::max(needed, end);
    for (size_t b = 0; b < a; ++b) {
      const PlanStage& q = p.stages[b];
      const int q_end = q.first_device + static_cast<int>(q.mesh[0] * q.mesh[1]);
      if (ps.first_device < q_end && q.first_device < end)
        return err(cat("stages ", b, " and ", a, " share devices (", q.first_device, "..",
                       q_end - 1, " and ", ps.first_device, "..", end - 1, ")"),
                   "each stage needs devices of its own; fix \"first_device\"");
    }
  }
  if (p.devices == 0) p.devices = needed;
  if (needed > p.devices)
    return err(
        cat("the stages use devices up to ", needed - 1, " but pipeline.devices is ", p.devices),
        "");
  return ok_status();
}

}  // namespace

Result<Plan> plan_from_json(std::string_view text, std::string_view source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto err = [&](const std::string& m, const std::string& hint = {}) {
    return parse_error(cat(source, ": ", m), hint);
  };
  const ErrFn errf = [&](const std::string& m, const std::string& hint) { return err(m, hint); };
  if (j.is_discarded()) return err("not valid JSON", "a plan is a JSON object; see docs/plans.md");
  if (!j.is_object()) return err("a plan must be a JSON object");
  static const std::set<std::string> kKnown = {
      "format",  "model",   "cluster",   "mesh",     "micro_batches", "graph_fingerprint",
      "options", "layouts", "predicted", "pipeline", "stages"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnown.count(it.key()))
      return err(cat("unknown field \"", it.key(), "\""),
                 "fields: format, model, cluster, mesh, micro_batches, graph_fingerprint, "
                 "options, layouts, predicted, pipeline, stages");
  Plan p;
  try {
    if (j.contains("format") && j["format"] != "alpa-plan/1")
      return err(cat("field \"format\" must be \"alpa-plan/1\", got ", json_excerpt(j["format"])));
    if (j.contains("model")) p.model = j.at("model").get<std::string>();
    if (j.contains("cluster")) p.cluster = j.at("cluster").get<std::string>();
    auto mesh_of = [&](const nlohmann::json& m, const std::string& where) -> Result<MeshShape> {
      if (!m.is_array() || m.size() != 2 || !int_in(m[0], 1, kMaxCount) ||
          !int_in(m[1], 1, kMaxCount) || m[0].get<int64_t>() * m[1].get<int64_t>() > kMaxCount)
        return err(cat(where, " must be two integers whose product is from 1 to ", kMaxCount,
                       ", got ", json_excerpt(m)));
      return MeshShape{m[0].get<int64_t>(), m[1].get<int64_t>()};
    };
    const bool pipeline = j.contains("stages");
    if (!pipeline && !j.contains("mesh"))
      return err("missing field \"mesh\"", "e.g. \"mesh\": [2, 2] (or \"stages\" for a pipeline)");
    if (j.contains("mesh")) {
      ALPA_ASSIGN_OR_RETURN(p.mesh, mesh_of(j.at("mesh"), "field \"mesh\""));
    }
    if (pipeline) {
      ALPA_RETURN_IF_ERROR(parse_pipeline(j, p, errf));
    }
    if (j.contains("micro_batches")) {
      if (!int_in(j["micro_batches"], 1, kMaxIndex))
        return err(cat("field \"micro_batches\" must be an integer from 1 to ", kMaxIndex));
      p.micro_batches = j["micro_batches"].get<int>();
    }
    if (j.contains("graph_fingerprint"))
      p.graph_fingerprint = j["graph_fingerprint"].get<std::string>();
    if (j.contains("options")) {
      const auto& o = j["options"];
      if (!o.is_object()) return err("field \"options\" must be an object");
      for (auto it = o.begin(); it != o.end(); ++it) {
        const std::string& k = it.key();
        if (k == "force_batch_dim_to_mesh_dim") {
          if (!int_in(*it, ShardingOptions::kAutoBatchAxis, 1))
            return err(
                "option \"force_batch_dim_to_mesh_dim\" must be -2 (auto), -1 (none), 0 "
                "or 1");
          p.options.force_batch_dim_to_mesh_dim = it->get<int>();
        } else if (k == "prefer_reduce_scatter")
          p.options.prefer_reduce_scatter = it->get<bool>();
        else if (k == "allow_mixed_mesh_shape")
          p.options.allow_mixed_mesh_shape = it->get<bool>();
        else if (k == "memory_budget_bytes") {
          if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0)
            return err("option \"memory_budget_bytes\" must be a finite number >= 0");
          p.memory_budget_bytes = it->get<double>();
        } else
          return err(cat("unknown option \"", k, "\""),
                     "options: force_batch_dim_to_mesh_dim, prefer_reduce_scatter, "
                     "allow_mixed_mesh_shape, memory_budget_bytes");
      }
    }
    if (!pipeline && (!j.contains("layouts") || !j["layouts"].is_object()))
      return err("missing object \"layouts\"", "e.g. \"layouts\": {\"%h0.mlp.w1\": \"RS1\"}");
    if (j.contains("layouts")) {
      ALPA_ASSIGN_OR_RETURN(p.layouts, parse_layouts(j["layouts"], "", errf));
    }
    if (j.contains("predicted")) {
      const auto& pr = j["predicted"];
      p.predicted_step_time_s = pr.value("step_time_s", 0.0);
      p.predicted_compute_s = pr.value("compute_s", 0.0);
      p.predicted_communication_s = pr.value("communication_s", 0.0);
      p.predicted_peak_memory_bytes = pr.value("peak_memory_bytes", 0.0);
    }
  } catch (const nlohmann::json::exception& e) {
    return err(cat("wrong type: ", e.what()));
  }
  return p;
}

Result<Plan> load_plan(const std::string& path) {
  Result<std::string> text = read_file(path);
  if (!text.ok()) return text.status().with_context("plan file");
  return plan_from_json(*text, path);
}

Status save_plan(const Plan& p, const std::string& path) {
  return write_file(path, plan_to_json(p));
}

Result<AutoShardingOptions> plan_constraints(const Plan& p, const Graph& g) {
  if (!p.graph_fingerprint.empty() && p.graph_fingerprint != graph_fingerprint(g))
    return failed_precondition(
        "the plan was made for a different training graph (model, sizes, optimizer or "
        "micro-batches differ)",
        "re-plan with `alpa plan ... --out plan.json`, or delete \"graph_fingerprint\" to apply "
        "its layouts anyway");
  AutoShardingOptions o;
  o.sharding = p.options;
  o.memory_budget_bytes = p.memory_budget_bytes;
  o.fixed = p.layouts;
  return o;
}

Result<PipelinePlan> pipeline_plan_of(const Plan& p) {
  if (!p.is_pipeline()) return invalid_argument("the plan has no pipeline stages");
  PipelinePlan pp;
  pp.micro_batches = p.micro_batches;
  pp.layers.num_layers = p.pipeline_layers;
  pp.layer_starts = p.layer_starts;
  for (const PlanStage& s : p.stages) {
    PlannedStage ps;
    ps.first_layer = s.first_layer;
    ps.last_layer = s.last_layer;
    ps.logical.shape = s.mesh;
    ps.logical.batch_axis = s.batch_axis;
    ps.submesh = {1, s.mesh[0] * s.mesh[1]};
    ps.first_device = s.first_device;
    ps.layouts = s.layouts;
    ps.remat = s.remat;
    ps.full_remat_layers = s.full_remat_layers;
    pp.stages.push_back(std::move(ps));
  }
  return pp;
}

Plan plan_from_pipeline(const PipelinePlan& pp, const std::string& model,
                        const std::string& cluster, int devices, const std::string& schedule,
                        const std::string& fingerprint) {
  Plan p;
  p.model = model;
  p.cluster = cluster;
  p.micro_batches = pp.micro_batches;
  p.graph_fingerprint = fingerprint;
  p.devices = devices;
  p.pipeline_layers = pp.layers.num_layers;
  for (size_t i = 1; i < pp.layers.layer_of.size(); ++i)
    if (pp.layers.layer_of[i] != pp.layers.layer_of[i - 1])
      p.layer_starts.push_back(static_cast<int>(i));
  p.schedule = schedule;
  if (Result<PlanMeshes> pm = plan_meshes(pp); pm.ok()) p.virtual_stages = pm->virtual_stages;
  p.predicted_step_time_s = pp.predicted_step_time_s;
  for (const PlannedStage& s : pp.stages) {
    PlanStage st;
    st.first_layer = s.first_layer;
    st.last_layer = s.last_layer;
    st.mesh = s.logical.shape;
    st.first_device = s.first_device;
    st.batch_axis = s.logical.batch_axis;
    st.layouts = s.layouts;
    st.remat = s.remat;
    st.full_remat_layers = s.full_remat_layers;
    st.predicted_time_s = s.time_s;
    st.predicted_peak_memory_bytes = s.peak_memory_bytes;
    p.predicted_peak_memory_bytes = std::max(p.predicted_peak_memory_bytes, s.peak_memory_bytes);
    p.stages.push_back(std::move(st));
  }
  return p;
}

}  // namespace alpa
