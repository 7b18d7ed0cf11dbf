// alpa plan: plans how to shard a model's training step over a device mesh of a cluster and
// explains the plan (layouts, communication, predicted step time and memory).
#include <algorithm>
#include <cctype>
#include <map>

#include <nlohmann/json.hpp>

#include "alpa/autodiff/train_step.h"
#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cluster/cluster.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/ir/analysis.h"
#include "alpa/plan/plan.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

struct WeightGroup {
  std::string name;
  std::string type;
  std::string layout;
  int count = 0;
  double bytes_per_device = 0;  // per member
  double comm_s = 0;            // resharding of the members, their gradients and state
};

// Weight groups: layout and bytes per device of the members, and the communication of the
// weight, its gradient and its optimizer state.
struct WeightGroups {
  std::map<std::string, WeightGroup> groups;
  std::vector<std::string> order;
};

WeightGroups weight_groups(const Graph& g, const ShardingPlan& p, const MeshShape& mesh,
                           const std::vector<CommEntry>& comm) {
  WeightGroups out;
  std::map<std::string, WeightGroup>& groups = out.groups;
  std::vector<std::string>& order = out.order;
  std::map<ValueId, std::string> group_of_value;
  for (ValueId w : g.parameters(ParamRole::kWeight)) {
    const std::string gname = weight_group_name(g.node(w).name);
    WeightGroup& wg = groups[gname];
    if (wg.count == 0) {
      order.push_back(gname);
      wg.name = gname;
      wg.type = g.type(w).to_string();
      wg.layout = p.specs[w].to_string();
      const Shape local = p.specs[w].local_shape(g.type(w).shape, mesh);
      wg.bytes_per_device = static_cast<double>(num_elements(local) * dtype_bytes(g.type(w).dtype));
    } else if (wg.layout != p.specs[w].to_string()) {
      wg.layout = "mixed";
    }
    ++wg.count;
    group_of_value[w] = gname;
    const GraphOutput* upd = g.find_output(g.node(w).name);
    if (upd) group_of_value[upd->value] = gname;
  }
  // Attribute each communication to the weight group whose value or update it touches (the
  // gradient flowing into an update is attributed to that weight).
  for (const CommEntry& e : comm) {
    auto it = group_of_value.find(e.producer);
    if (it == group_of_value.end() && e.user != kNoValue) it = group_of_value.find(e.user);
    if (it == group_of_value.end()) continue;
    groups[it->second].comm_s += e.seconds;
  }
  return out;
}

// `--plan auto` on one mesh: the candidates searched and the one kept (plan/mesh_search.h).
void mesh_search_json(const Compiled& compiled, nlohmann::ordered_json& j) {
  if (const auto& ms = compiled.mesh_search) {
    j["plan_chosen"] = ms->winner;
    nlohmann::ordered_json cs = nlohmann::ordered_json::array();
    for (const MeshCandidate& c : ms->candidates) {
      nlohmann::ordered_json x = {{"name", c.name}, {"planned", c.planned}};
      if (c.planned) x["predicted_step_time_s"] = c.step_s;
      if (c.planned) x["peak_memory_bytes"] = c.peak_memory_bytes;
      if (!c.rejected.empty()) x["rejected"] = c.rejected;
      cs.push_back(std::move(x));
    }
    j["plan_candidates"] = cs;
    j["warnings"] = ms->warnings;
  }
  j["resolved_once"] = compiled.mesh_plan->resolved_once;
}

void mesh_search_text(const Compiled& compiled, std::ostream& out) {
  const ShardingPlan& p = *compiled.mesh_plan;
  if (const auto& ms = compiled.mesh_search) {
    out << "  chosen: " << ms->winner << " (cheapest predicted step of";
    for (const MeshCandidate& c : ms->candidates)
      out << (&c == &ms->candidates.front() ? " " : ", ") << c.name << " "
          << (c.planned ? format_seconds(c.step_s) : c.rejected)
          << (c.planned && !c.fits ? " (does not fit)" : "");
    out << ")\n";
    for (const std::string& w : ms->warnings) out << "  warning: " << w << "\n";
  }
  if (p.resolved_once > 0)
    out << "  " << p.resolved_once << " partial sums resolved once at their producer\n";
}

}  // namespace

int run_plan(const PlanFlags& flags, std::ostream& out, std::ostream& err) {
  auto fail = [&](const Status& s) { return report_error(s, flags.json, out, err); };
  Result<ModelSpec> spec = resolve_model_flags(flags.model);
  if (!spec.ok()) return fail(spec.status());
  Result<OptimizerOptions> optimizer = optimizer_options(flags.optimizer);
  if (!optimizer.ok()) return fail(optimizer.status());
  Result<CompileSetup> setup =
      resolve_compile(flags.parallel, *spec, *optimizer, flags.micro_batches, "1x8", "p3.16xlarge");
  if (!setup.ok()) return fail(setup.status());
  Result<Compiled> compiled = compile_for_plan(flags, *spec, *setup);
  if (!compiled.ok()) return fail(compiled.status());
  if (setup->options.pipeline) return run_plan_pipeline(flags, *spec, *setup, *compiled, out, err);
  const Graph& g = compiled->step.graph;
  const ShardingPlan& p = *compiled->mesh_plan;
  const Cluster* cluster = &compiled->cluster;
  const MeshShape mesh_shape = setup->options.mesh;
  const int devices = static_cast<int>(mesh_shape.size());
  Result<MeshLinks> mesh = mesh_links(*cluster, mesh_shape);
  if (!mesh.ok()) return fail(mesh.status());
  const int micro_batches = compiled->micro_batches;

  if (!flags.out_path.empty()) {
    Plan file = plan_from_sharding(g, p, spec->name, setup->cluster, micro_batches);
    const AutoShardingOptions& chosen =
        compiled->mesh_search ? compiled->mesh_search->options : setup->options.sharding;
    file.options = chosen.sharding;
    file.memory_budget_bytes = chosen.memory_budget_bytes;
    Status s = save_plan(file, flags.out_path);
    if (!s.ok()) return fail(s);
  }

  const std::vector<CommEntry> comm = plan_communication(g, p, *mesh);
  WeightGroups wgs = weight_groups(g, p, mesh->shape(), comm);
  std::map<std::string, WeightGroup>& groups = wgs.groups;
  const std::vector<std::string>& order = wgs.order;
  std::map<std::string, std::pair<int, double>> by_kind;
  for (const CommEntry& e : comm) {
    const std::string k = e.collectives.substr(0, e.collectives.find('('));
    by_kind[k].first++;
    by_kind[k].second += e.seconds;
  }
  std::vector<CommEntry> top = comm;
  std::sort(top.begin(), top.end(),
            [](const CommEntry& a, const CommEntry& b) { return a.seconds > b.seconds; });
  if (static_cast<int>(top.size()) > flags.top)
    top.resize(static_cast<size_t>(std::max(0, flags.top)));

  const double step = p.compute_s + p.communication_s;
  const double flops = graph_flops(g);
  const double device_memory = cluster->device.memory_bytes;
  if (flags.json) {
    nlohmann::ordered_json j;
    j["command"] = "plan";
    j["model"] = spec->name;
    j["cluster"] = cluster->name;
    j["mesh"] = {mesh_shape.n0, mesh_shape.n1};
    j["devices"] = devices;
    j["plan"] = setup->plan_source;
    mesh_search_json(*compiled, j);
    j["predicted_step_time_s"] = step;
    j["compute_s"] = p.compute_s;
    j["communication_s"] = p.communication_s;
    j["peak_memory_bytes"] = p.peak_memory_bytes;
    j["device_memory_bytes"] = device_memory;
    j["fits_memory"] = p.peak_memory_bytes <= device_memory;
    j["tflops_per_device"] = step > 0 ? flops / devices / step / 1e12 : 0;
    j["samples_per_s"] = step > 0 ? static_cast<double>(spec->batch) / step : 0;
    j["planning_time_s"] = p.total_s;
    j["compile_phases"] = compile_phases_json(*compiled);
    j["ilp"] = {{"leader_nodes", p.leader_nodes},   {"ilp_nodes", p.ilp_nodes},
                {"core_nodes", p.ilp.core_nodes},   {"variables", p.ilp.variables},
                {"constraints", p.ilp.constraints}, {"optimal", p.ilp.optimal},
                {"solve_s", p.ilp.solve_s}};
    nlohmann::ordered_json ws = nlohmann::ordered_json::array();
    for (const std::string& n : order) {
      const WeightGroup& wg = groups[n];
      ws.push_back({{"name", wg.name},
                    {"count", wg.count},
                    {"type", wg.type},
                    {"layout", wg.layout},
                    {"bytes_per_device", wg.bytes_per_device},
                    {"communication_s", wg.comm_s}});
    }
    j["weights"] = ws;
    nlohmann::ordered_json kinds = nlohmann::ordered_json::object();
    for (const auto& [k, v] : by_kind) kinds[k] = {{"count", v.first}, {"seconds", v.second}};
    j["collectives"] = kinds;
    if (!flags.out_path.empty()) j["out"] = flags.out_path;
    out << json_line(j) << "\n";
    return kExitOk;
  }

  out << "alpa plan: " << spec->name << " (" << format_count_short(graph_stats(g).parameters)
      << " parameters), batch " << spec->batch << ", on " << cluster->name << " ("
      << cluster->device.name << "), mesh " << mesh->shape().to_string() << " = " << devices
      << " devices, plan: " << setup->plan_source << "\n"
      << "  planned in " << format_seconds(p.total_s) << " (strategies "
      << format_seconds(p.strategies_s) << ", costs " << format_seconds(p.cost_graph_s) << ", ILP "
      << format_seconds(p.ilp.reduce_s + p.ilp.build_s + p.ilp.solve_s) << ": " << p.leader_nodes
      << " choices in " << p.ilp_nodes << " ILP nodes, " << p.ilp.core_nodes
      << " left after exact reductions, " << format_count(p.ilp.variables) << " variables, "
      << (p.ilp.optimal ? "optimal" : "time limit reached: best found") << ")\n"
      << "  compiled in " << compile_phases_text(*compiled) << "\n";
  mesh_search_text(*compiled, out);
  out << "\n"
      << "predicted per training step, per device:\n"
      << "  compute        " << format_seconds(p.compute_s) << "\n"
      << "  communication  " << format_seconds(p.communication_s) << "\n"
      << "  step time      " << format_seconds(step) << "  ("
      << format_fixed(step > 0 ? flops / devices / step / 1e12 : 0, 2) << " TFLOP/s per device, "
      << format_fixed(step > 0 ? static_cast<double>(spec->batch) / step : 0, 1) << " samples/s)\n"
      << "  peak memory    " << format_bytes(p.peak_memory_bytes) << " of "
      << format_bytes(device_memory)
      << (p.peak_memory_bytes <= device_memory
              ? ""
              : "  -- does NOT fit: add devices, use --memory-budget, or micro-batches")
      << "\n\nweights (layout on the mesh, bytes per device, communication of the weight, its "
         "gradient and state):\n";
  size_t width = 8;
  for (const std::string& n : order) width = std::max(width, n.size() + 6);
  for (const std::string& n : order) {
    const WeightGroup& wg = groups[n];
    std::string label = wg.count > 1 ? cat(wg.name, " (", wg.count, ")") : wg.name;
    out << "  " << label << std::string(width > label.size() ? width - label.size() : 1, ' ')
        << wg.type << "  " << wg.layout << "  " << format_bytes(wg.bytes_per_device) << "  "
        << format_seconds(wg.comm_s) << "\n";
  }
  out << "\ncollectives by kind:\n";
  for (const auto& [k, v] : by_kind)
    out << "  " << k << std::string(k.size() < 16 ? 16 - k.size() : 1, ' ') << v.first << " x, "
        << format_seconds(v.second) << "\n";
  if (!top.empty()) {
    out << "\nlargest communication:\n";
    for (const CommEntry& e : top)
      out << "  " << format_seconds(e.seconds) << "  " << e.collectives << "  "
          << value_ref(g, e.producer) << " " << g.type(e.producer).to_string()
          << (e.user == kNoValue
                  ? " (its own partial sum)"
                  : cat(" -> ", value_ref(g, e.user), " (", op_name(g.node(e.user).op), ")"))
          << "\n";
  }
  if (!flags.out_path.empty()) out << "\nwrote " << flags.out_path << "\n";
  return kExitOk;
}

}  // namespace alpa
