// alpa.plan, alpa.Plan, alpa.SimReport and simulation.
#include "plan.h"

#include "alpa/cluster/cluster.h"
#include "alpa/program/io.h"
#include "alpa/sim/simulator.h"
#include "alpa/spmd/schedule.h"
#include "common.h"

namespace alpa::python {
namespace {

ParallelFlags parallel_flags(const ParallelArgs& a) {
  ParallelFlags f;
  f.mesh = a.mesh;
  f.cluster = a.cluster;
  f.plan = a.plan;
  f.memory_budget_gb = a.memory_budget_gb;
  f.devices = a.devices;
  f.schedule = a.schedule;
  f.choose = a.choose;
  return f;
}

// The pipeline's stages as an editable plan (the weights' layouts per stage), as `alpa plan
// --out` writes it.
Plan pipeline_plan(const Compiled& c, const CompileSetup& setup, const std::string& model) {
  const MaterializedPipeline& m = c.pipeline->stages;
  PipelinePlan saved = c.pipeline->plan;
  saved.stages = m.stages;
  saved.predicted_step_time_s = m.predicted_step_time_s;
  for (size_t s = 0; s < saved.stages.size(); ++s) {
    const StageGraph& sg = m.graphs[s];
    saved.stages[s].layouts.clear();
    for (ValueId v : sg.owned)
      if (sg.graph.node(v).attr<ParameterAttrs>().role == ParamRole::kWeight)
        saved.stages[s].layouts[value_ref(c.step.graph, sg.source[v])] =
            m.plans[s].specs[v].canonical(m.plans[s].mesh);
  }
  Plan p = plan_from_pipeline(saved, model, setup.cluster, setup.pipe.devices,
                              std::string(schedule_name(c.pipeline->schedule)),
                              graph_fingerprint(c.step.graph));
  p.options = setup.pipe.sharding.sharding;
  p.memory_budget_bytes = setup.pipe.sharding.memory_budget_bytes;
  return p;
}

Plan mesh_plan(const Compiled& c, const CompileSetup& setup, const std::string& model) {
  const ShardingPlan& sp = *c.mesh_plan;
  Plan p = plan_from_sharding(c.step.graph, sp, model, setup.cluster, c.micro_batches);
  // The options the plan was made under: the mesh search's winner's where it searched.
  const AutoShardingOptions& o = c.mesh_search ? c.mesh_search->options : setup.options.sharding;
  p.options = o.sharding;
  p.memory_budget_bytes = o.memory_budget_bytes;
  return p;
}

}  // namespace

PyPlan compile_model(const PyModel& model, const ParallelArgs& args,
                     const std::string& default_mesh, bool training) {
  if (!args.mesh.empty() && args.devices > 0)
    fail("give either mesh= (one mesh) or devices= (a pipeline), not both");
  if (args.devices < 0) fail(cat("devices must be >= 1, got ", args.devices));
  if (args.micro_batches < 0) fail(cat("micro_batches must be >= 0, got ", args.micro_batches));
  const OptimizerOptions optimizer = unwrap(optimizer_options(args.optimizer));
  const std::string default_cluster = training ? "local" : "p3.16xlarge";
  CompileSetup setup;
  std::optional<Result<Compiled>> c;
  {
    py::gil_scoped_release release;
    Result<CompileSetup> s = resolve_compile(parallel_flags(args), model.spec, optimizer,
                                             args.micro_batches, default_mesh, default_cluster);
    if (!s.ok()) c = s.status();
    if (s.ok()) {
      setup = *s;
      if (training && args.choose.empty()) setup.options.check_by_simulation = false;
      if (!training) setup.options.plan_one_device = true;
      Result<Cluster> cl = load_cluster(setup.cluster);
      c = cl.ok() ? compile(model.spec, *cl, setup.options) : Result<Compiled>(cl.status());
    }
  }
  PyPlan p;
  p.model = model.spec.name;
  p.cluster = setup.cluster;
  p.plan_source = setup.plan_source;
  p.compiled = std::make_shared<const Compiled>(unwrap(std::move(*c)));
  const Compiled& cc = *p.compiled;
  if (cc.pipeline) {
    p.plan = pipeline_plan(cc, setup, p.model);
  } else if (cc.mesh_plan) {
    p.plan = mesh_plan(cc, setup, p.model);
  } else {  // one device, unplanned: the training graph as it is
    p.plan.model = p.model;
    p.plan.micro_batches = cc.micro_batches;
    p.plan.graph_fingerprint = graph_fingerprint(cc.step.graph);
    if (cc.sim) p.plan.predicted_step_time_s = cc.sim->step_time_s;
    if (cc.sim) p.plan.predicted_peak_memory_bytes = cc.sim->peak_memory_bytes();
  }
  p.plan.cluster = setup.cluster;
  return p;
}

}  // namespace alpa::python

namespace alpa::python {
namespace {

py::tuple mesh_tuple(const MeshShape& m) {
  return py::make_tuple(m.n0, m.n1);
}

py::dict layouts_dict(const std::map<std::string, ShardingSpec>& layouts) {
  py::dict d;
  for (const auto& [value, spec] : layouts) d[py::str(value)] = spec.to_string();
  return d;
}

py::list plan_stages(const PyPlan& p) {
  py::list out;
  const Plan& plan = p.plan;
  if (!plan.is_pipeline()) {
    py::dict s;
    s["layers"] = py::none();
    s["mesh"] = mesh_tuple(plan.mesh);
    s["first_device"] = 0;
    s["devices"] = plan.mesh.size();
    s["predicted_time_s"] = plan.predicted_step_time_s;
    s["predicted_peak_memory_bytes"] = plan.predicted_peak_memory_bytes;
    s["layouts"] = layouts_dict(plan.layouts);
    out.append(s);
    return out;
  }
  for (const PlanStage& ps : plan.stages) {
    py::dict s;
    s["layers"] = py::make_tuple(ps.first_layer, ps.last_layer);
    s["mesh"] = mesh_tuple(ps.mesh);
    s["first_device"] = ps.first_device;
    s["devices"] = ps.mesh.size();
    s["predicted_time_s"] = ps.predicted_time_s;
    s["predicted_peak_memory_bytes"] = ps.predicted_peak_memory_bytes;
    s["layouts"] = layouts_dict(ps.layouts);
    out.append(s);
  }
  return out;
}

py::dict all_layouts(const PyPlan& p) {
  if (!p.plan.is_pipeline()) return layouts_dict(p.plan.layouts);
  std::map<std::string, ShardingSpec> all;
  for (const PlanStage& s : p.plan.stages) all.insert(s.layouts.begin(), s.layouts.end());
  return layouts_dict(all);
}

std::string bytes_text(double b) {
  char buf[32];
  if (b >= 1e9)
    std::snprintf(buf, sizeof buf, "%.2f GB", b / 1e9);
  else if (b >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1f MB", b / 1e6);
  else
    std::snprintf(buf, sizeof buf, "%.1f kB", b / 1e3);
  return buf;
}
std::string seconds_text(double s) {
  char buf[32];
  if (s >= 1)
    std::snprintf(buf, sizeof buf, "%.3f s", s);
  else
    std::snprintf(buf, sizeof buf, "%.3f ms", s * 1e3);
  return buf;
}

std::string plan_repr(const PyPlan& p) {
  const Plan& plan = p.plan;
  const Program& prog = p.compiled->program;
  std::string where =
      plan.is_pipeline()
          ? cat("pipeline of ", plan.stages.size(), plan.stages.size() == 1 ? " stage" : " stages",
                " on ", prog.num_devices, " devices, ", prog.micro_batches,
                prog.micro_batches == 1 ? " micro-batch (" : " micro-batches (", prog.schedule, ")")
          : cat("mesh ", plan.mesh.to_string(), ", ", prog.num_devices, " devices");
  return cat("<alpa.Plan '", p.model, "' on ", p.cluster, ": ", where, "; predicted ",
             seconds_text(plan.predicted_step_time_s), " per step, peak ",
             bytes_text(plan.predicted_peak_memory_bytes), " per device>");
}

py::list sim_stages(const SimReport& r) {
  py::list out;
  for (const SimStage& s : r.stages) {
    py::dict d;
    d["first_device"] = s.first_device;
    d["devices"] = s.devices;
    d["busy_s"] = s.busy_s;
    d["compute_s"] = s.compute_s;
    d["communication_s"] = s.communication_s;
    d["owned_bytes"] = s.owned_bytes;
    d["peak_memory_bytes"] = s.peak_memory_bytes;
    d["peak_live_micro_batches"] = s.peak_live_micro_batches;
    out.append(d);
  }
  return out;
}

std::string sim_repr(const SimReport& r) {
  return cat("<alpa.SimReport: ", seconds_text(r.step_time_s), " per step, ", r.stages.size(),
             r.stages.size() == 1 ? " stage" : " stages", ", bubble ",
             static_cast<int>(r.bubble_fraction * 1000 + 0.5) / 10.0, "%, peak ",
             bytes_text(r.peak_memory_bytes()), " per device>");
}

SimReport simulate_plan(const PyPlan& p, const std::string& cluster) {
  py::gil_scoped_release release;
  const Program& prog = p.compiled->program;
  if (cluster.empty()) {
    if (p.compiled->sim) return *p.compiled->sim;
    return unwrap(simulate(prog, p.compiled->cluster));
  }
  Cluster c = unwrap(sized_cluster(cluster, prog.num_devices));
  return unwrap(simulate(prog, c));
}

PyPlan plan_model(const PyModel& model, const ParallelArgs& args) {
  return compile_model(model, args, "1x8", /*training=*/false);
}

void bind_sim_report(py::module_& m) {
  py::class_<SimReport>(m, "SimReport",
                        "One training step of a compiled program simulated on a cluster's cost "
                        "model (what `alpa simulate` reports).")
      .def_readonly("step_time_s", &SimReport::step_time_s, "simulated seconds per step")
      .def_readonly("bubble_fraction", &SimReport::bubble_fraction,
                    "1 - busy / (devices x step time): idle share of a pipeline")
      .def_readonly("instructions", &SimReport::instructions)
      .def_property_readonly("peak_memory_bytes", &SimReport::peak_memory_bytes,
                             "the largest per-device peak over the stages")
      .def_property_readonly("stages", &sim_stages, "per stage: devices, times, memory")
      .def("__repr__", &sim_repr);
}

}  // namespace

void bind_plan(py::module_& m) {
  bind_sim_report(m);
  py::class_<PyPlan>(m, "Plan",
                     "A compiled parallelization plan: stages on meshes, the layouts of the "
                     "values,\npredictions, and the executable program.")
      .def_readonly("model", &PyPlan::model)
      .def_readonly("cluster", &PyPlan::cluster)
      .def_readonly("source", &PyPlan::plan_source, "'auto', a manual plan's name or a plan file")
      .def_property_readonly(
          "kind", [](const PyPlan& p) { return p.plan.is_pipeline() ? "pipeline" : "mesh"; })
      .def_property_readonly("mesh",
                             [](const PyPlan& p) -> py::object {
                               if (p.plan.is_pipeline()) return py::none();
                               return mesh_tuple(p.plan.mesh);
                             })
      .def_property_readonly("devices",
                             [](const PyPlan& p) { return p.compiled->program.num_devices; })
      .def_property_readonly("micro_batches",
                             [](const PyPlan& p) { return p.compiled->program.micro_batches; })
      .def_property_readonly("schedule",
                             [](const PyPlan& p) { return p.compiled->program.schedule; })
      .def_property_readonly("predicted_step_time_s",
                             [](const PyPlan& p) { return p.plan.predicted_step_time_s; })
      .def_property_readonly("predicted_peak_memory_bytes",
                             [](const PyPlan& p) { return p.plan.predicted_peak_memory_bytes; })
      .def_property_readonly("predicted_compute_s",
                             [](const PyPlan& p) { return p.plan.predicted_compute_s; })
      .def_property_readonly("predicted_communication_s",
                             [](const PyPlan& p) { return p.plan.predicted_communication_s; })
      .def_property_readonly("stages", &plan_stages,
                             "per stage: layers, mesh, first_device, devices, predicted time "
                             "and memory, layouts")
      .def_property_readonly("layouts", &all_layouts,
                             "{value: layout} in the paper's notation ('S0R', 'RS1', 'R')")
      .def_property_readonly(
          "collectives", [](const PyPlan& p) { return count_collectives(p.compiled->program); },
          "communicating ops in the per-device programs")
      .def(
          "to_json", [](const PyPlan& p) { return plan_to_json(p.plan); },
          "The plan as alpa-plan/1 JSON (docs/plans.md): `alpa train --plan FILE` reads it.")
      .def(
          "save", [](const PyPlan& p, const std::string& path) { check(save_plan(p.plan, path)); },
          py::arg("path"), "Writes to_json() to a file.")
      .def(
          "program_json", [](const PyPlan& p) { return program_to_json(p.compiled->program); },
          "The executable program as alpa-program/1 JSON (docs/programs.md).")
      .def("_simulate", &simulate_plan, py::arg("cluster") = "")
      .def("__repr__", &plan_repr);

  py::class_<ParallelArgs>(m, "_ParallelArgs")
      .def(py::init<>())
      .def_readwrite("cluster", &ParallelArgs::cluster)
      .def_readwrite("mesh", &ParallelArgs::mesh)
      .def_readwrite("devices", &ParallelArgs::devices)
      .def_readwrite("plan", &ParallelArgs::plan)
      .def_readwrite("micro_batches", &ParallelArgs::micro_batches)
      .def_readwrite("schedule", &ParallelArgs::schedule)
      .def_readwrite("choose", &ParallelArgs::choose)
      .def_readwrite("memory_budget_gb", &ParallelArgs::memory_budget_gb)
      .def_property(
          "optimizer", [](const ParallelArgs& a) { return a.optimizer.optimizer; },
          [](ParallelArgs& a, const std::string& v) { a.optimizer.optimizer = v; })
      .def_property(
          "lr", [](const ParallelArgs& a) { return a.optimizer.lr; },
          [](ParallelArgs& a, double v) { a.optimizer.lr = v; })
      .def_property(
          "momentum", [](const ParallelArgs& a) { return a.optimizer.momentum; },
          [](ParallelArgs& a, double v) { a.optimizer.momentum = v; })
      .def_property(
          "weight_decay", [](const ParallelArgs& a) { return a.optimizer.weight_decay; },
          [](ParallelArgs& a, double v) { a.optimizer.weight_decay = v; });
  m.def("_plan", &plan_model, py::arg("model"), py::arg("args"));
}

}  // namespace alpa::python
