// alpa compile: compiles a model for a mesh or a pipeline, as `alpa train` would, and writes
// the executable program (docs/programs.md) that `alpa train --program` and
// `alpa simulate --program` run without planning again.
#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/program/io.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {

std::string compile_phases_text(const Compiled& c) {
  std::string text = format_seconds(c.seconds) + " (";
  for (size_t i = 0; i < c.phases.size(); ++i)
    text += cat(i ? "; " : "", c.phases[i].name, " ", format_seconds(c.phases[i].seconds));
  return text + ")";
}

nlohmann::ordered_json compile_phases_json(const Compiled& c) {
  nlohmann::ordered_json phases = nlohmann::ordered_json::object();
  for (const CompilePhase& ph : c.phases) phases[ph.name] = ph.seconds;
  return phases;
}

int run_compile(const CompileFlags& flags, std::ostream& out, std::ostream& err) {
  const PlanFlags& pf = flags.plan;
  auto fail = [&](const Status& s) { return report_error(s, pf.json, out, err); };
  if (pf.out_path.empty())
    return fail(
        invalid_argument("alpa compile needs --out FILE", "name the program file to write"));
  Result<ModelSpec> spec = resolve_model_flags(pf.model);
  if (!spec.ok()) return fail(spec.status());
  Result<OptimizerOptions> opt = optimizer_options(pf.optimizer);
  if (!opt.ok()) return fail(opt.status());
  Result<CompileSetup> setup =
      resolve_compile(pf.parallel, *spec, *opt, pf.micro_batches, "1x1", "local");
  if (!setup.ok()) return fail(setup.status());
  // A program is for running: by default it is compiled exactly as `alpa train` compiles in
  // place (--choose simulation: as `alpa plan` and `alpa simulate` do).
  if (pf.parallel.choose.empty()) setup->options.check_by_simulation = false;
  Result<Compiled> c = compile_with_progress(pf.json, *spec, setup->cluster, setup->options);
  if (!c.ok()) return fail(c.status());
  Program& p = c->program;
  p.source = program_source(pf.model, pf.optimizer, c->micro_batches);
  p.source["cluster"] = setup->cluster;  // what simulate and train --program default to
  Status saved = save_program(p, pf.out_path);
  if (!saved.ok()) return fail(saved);

  int64_t instructions = 0, tasks = 0;
  for (const Stage& st : p.stages) {
    instructions += static_cast<int64_t>(st.instructions.size());
    tasks += static_cast<int64_t>(st.tasks.size());
  }
  if (pf.json) {
    nlohmann::ordered_json j;
    j["command"] = "compile";
    j["model"] = spec->name;
    j["cluster"] = c->cluster.name;
    j["devices"] = p.num_devices;
    j["micro_batches"] = p.micro_batches;
    j["schedule"] = p.schedule;
    j["plan"] = setup->plan_source;
    j["stages"] = p.stages.size();
    j["tasks"] = tasks;
    j["instructions"] = instructions;
    j["transfers"] = p.transfers.size();
    j["collectives"] = count_collectives(p);
    j["predicted_step_time_s"] = p.predicted_step_time_s;
    if (c->sim) j["simulated_peak_memory_bytes"] = c->sim->peak_memory_bytes();
    j["compile_phases"] = compile_phases_json(*c);
    j["compile_time_s"] = c->seconds;
    j["out"] = pf.out_path;
    out << json_line(j) << "\n";
    return kExitOk;
  }
  out << "alpa compile: " << spec->name << " on " << p.num_devices << " device"
      << (p.num_devices > 1 ? "s" : "") << " of " << c->cluster.name
      << ", plan: " << setup->plan_source << "\n";
  for (size_t s = 0; s < p.stages.size(); ++s) {
    const Stage& st = p.stages[s];
    out << "  stage " << s << ": mesh " << st.mesh.to_string() << ", " << st.values.size()
        << " values, tasks:";
    for (const Task& t : st.tasks) out << " " << t.name << " (" << t.program.size() << " ops)";
    out << ", " << st.instructions.size() << " instructions\n";
  }
  out << "  " << p.transfers.size() << " transfers, " << count_collectives(p)
      << " collectives in the per-device programs, " << p.micro_batches << " micro-batch"
      << (p.micro_batches > 1 ? "es" : "") << " per step (" << p.schedule << ")\n"
      << "  predicted step " << format_seconds(p.predicted_step_time_s);
  if (c->sim) out << ", peak memory " << format_bytes(c->sim->peak_memory_bytes()) << " per device";
  out << "\n  compiled in " << compile_phases_text(*c) << "\n"
      << "wrote " << pf.out_path << " (run it: alpa train --program " << pf.out_path
      << "; simulate it: alpa simulate --program " << pf.out_path << ")\n";
  return kExitOk;
}

}  // namespace alpa
