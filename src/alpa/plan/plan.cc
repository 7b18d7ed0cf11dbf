#include "alpa/plan/plan.h"

#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "alpa/ir/text.h"

namespace alpa {

std::string graph_fingerprint(const Graph& g) {
  const std::string text = print_graph(g);
  uint64_t h = 1469598103934665603ull;
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
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
    if (sp.strategy[v] >= 0) p.layouts[value_ref(g, v)] = sp.specs[v];
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
  j["mesh"] = {p.mesh[0], p.mesh[1]};
  j["micro_batches"] = p.micro_batches;
  if (!p.graph_fingerprint.empty()) j["graph_fingerprint"] = p.graph_fingerprint;
  j["options"] = {{"force_batch_dim_to_mesh_dim", p.options.force_batch_dim_to_mesh_dim},
                  {"prefer_reduce_scatter", p.options.prefer_reduce_scatter},
                  {"allow_mixed_mesh_shape", p.options.allow_mixed_mesh_shape},
                  {"memory_budget_bytes", p.memory_budget_bytes}};
  nlohmann::ordered_json layouts = nlohmann::ordered_json::object();
  for (const auto& [k, s] : p.layouts) layouts[k] = s.to_string();
  j["layouts"] = layouts;
  j["predicted"] = {{"step_time_s", p.predicted_step_time_s},
                    {"compute_s", p.predicted_compute_s},
                    {"communication_s", p.predicted_communication_s},
                    {"peak_memory_bytes", p.predicted_peak_memory_bytes}};
  return j.dump(2) + "\n";
}

Result<Plan> plan_from_json(std::string_view text, std::string_view source) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  auto err = [&](const std::string& m, const std::string& hint = {}) {
    return parse_error(cat(source, ": ", m), hint);
  };
  if (j.is_discarded()) return err("not valid JSON", "a plan is a JSON object; see docs/plans.md");
  if (!j.is_object()) return err("a plan must be a JSON object");
  static const std::set<std::string> kKnown = {"format", "model", "cluster", "mesh",
                                               "micro_batches", "graph_fingerprint", "options",
                                               "layouts", "predicted"};
  for (auto it = j.begin(); it != j.end(); ++it)
    if (!kKnown.count(it.key()))
      return err(cat("unknown field \"", it.key(), "\""),
                 "fields: format, model, cluster, mesh, micro_batches, graph_fingerprint, "
                 "options, layouts, predicted");
  Plan p;
  try {
    if (j.contains("format") && j["format"] != "alpa-plan/1")
      return err(cat("field \"format\" must be \"alpa-plan/1\", got ", j["format"].dump()));
    if (j.contains("model")) p.model = j.at("model").get<std::string>();
    if (j.contains("cluster")) p.cluster = j.at("cluster").get<std::string>();
    if (!j.contains("mesh")) return err("missing field \"mesh\"", "e.g. \"mesh\": [2, 2]");
    const auto& m = j.at("mesh");
    if (!m.is_array() || m.size() != 2 || !m[0].is_number_integer() || !m[1].is_number_integer() ||
        m[0].get<int64_t>() < 1 || m[1].get<int64_t>() < 1)
      return err(cat("field \"mesh\" must be two positive integers, got ", m.dump()));
    p.mesh = {m[0].get<int64_t>(), m[1].get<int64_t>()};
    if (j.contains("micro_batches")) {
      if (!j["micro_batches"].is_number_integer() || j["micro_batches"].get<int>() < 1)
        return err("field \"micro_batches\" must be an integer >= 1");
      p.micro_batches = j["micro_batches"].get<int>();
    }
    if (j.contains("graph_fingerprint")) p.graph_fingerprint = j["graph_fingerprint"].get<std::string>();
    if (j.contains("options")) {
      const auto& o = j["options"];
      if (!o.is_object()) return err("field \"options\" must be an object");
      for (auto it = o.begin(); it != o.end(); ++it) {
        const std::string& k = it.key();
        if (k == "force_batch_dim_to_mesh_dim") p.options.force_batch_dim_to_mesh_dim = it->get<int>();
        else if (k == "prefer_reduce_scatter") p.options.prefer_reduce_scatter = it->get<bool>();
        else if (k == "allow_mixed_mesh_shape") p.options.allow_mixed_mesh_shape = it->get<bool>();
        else if (k == "memory_budget_bytes") p.memory_budget_bytes = it->get<double>();
        else
          return err(cat("unknown option \"", k, "\""),
                     "options: force_batch_dim_to_mesh_dim, prefer_reduce_scatter, "
                     "allow_mixed_mesh_shape, memory_budget_bytes");
      }
    }
    if (!j.contains("layouts") || !j["layouts"].is_object())
      return err("missing object \"layouts\"", "e.g. \"layouts\": {\"%h0.mlp.w1\": \"RS1\"}");
    for (auto it = j["layouts"].begin(); it != j["layouts"].end(); ++it) {
      if (!it->is_string())
        return err(cat("layout of \"", it.key(), "\" must be a string like \"S0R\""));
      Result<ShardingSpec> s = ShardingSpec::parse(it->get<std::string>());
      if (!s.ok()) return err(cat("layout of \"", it.key(), "\": ", s.status().message()),
                              s.status().hint());
      p.layouts[it.key()] = *s;
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
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found(cat("cannot open plan file '", path, "'"));
  std::ostringstream ss;
  ss << in.rdbuf();
  return plan_from_json(ss.str(), path);
}

Status save_plan(const Plan& p, const std::string& path) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return io_error(cat("cannot write '", tmp, "'"));
    out << plan_to_json(p);
    if (!out.flush()) return io_error(cat("failed writing '", tmp, "'"));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return io_error(cat("cannot rename '", tmp, "' to '", path, "'"));
  return ok_status();
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

}  // namespace alpa
