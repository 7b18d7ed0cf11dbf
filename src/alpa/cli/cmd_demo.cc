// alpa demo: the main job of the README: trains a tiny GPT and shows the loss falling.
#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/progress.h"
#include "alpa/cli/trainer.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

// The largest |got - want| / |want| over the first got.size() entries.
double max_relative_difference(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::abs(got[i] - want[i]) / std::abs(want[i]));
  return worst;
}

// The three runs as one JSON object.
nlohmann::json demo_json(const ModelSpec& spec, const TrainReport& r, const TrainReport& m,
                         double worst, const TrainReport& p, double worst_pipe) {
  const bool match = worst <= 1e-5, pipe_match = worst_pipe <= 1e-5;
  nlohmann::json j;
  j["command"] = "demo";
  j["model"] = spec.name;
  j["parameters"] = r.parameters;
  j["losses"] = r.losses;
  j["step_time_s"] = r.step_time_s();
  j["tokens_per_s"] = r.tokens_per_s();
  j["mesh_losses"] = m.losses;
  j["mesh_matches_one_device"] = match;
  j["mesh_max_relative_loss_difference"] = worst;
  j["mesh_collectives"] = m.collectives;
  j["pipeline_losses"] = p.losses;
  j["pipeline_stages"] = p.program.stages.size();
  j["pipeline_micro_batches"] = p.micro_batches;
  j["pipeline_matches_one_device"] = pipe_match;
  j["pipeline_max_relative_loss_difference"] = worst_pipe;
  return j;
}

}  // namespace

int run_demo(const DemoFlags& flags, std::ostream& out, std::ostream& err) {
  Result<ModelSpec> spec = resolve_model("gpt", "tiny", {});
  if (!spec.ok()) return report_error(spec.status(), flags.json, out, err);
  TrainOptions options;
  options.loop.steps = flags.steps;
  options.loop.seed = flags.seed;
  options.threads = flags.threads;
  options.compile.optimizer.kind = OptimizerKind::kAdamW;
  options.compile.optimizer.learning_rate = 3e-3;

  const bool human = !flags.json;
  const GptConfig& c = spec->gpt;
  if (human) {
    out << "alpa demo: training a tiny GPT (" << c.layers << " layers, hidden " << c.hidden << ", "
        << c.heads << " heads, seq " << c.seq << ", vocab " << c.vocab << ") on one "
        << "device.\nTask: each sequence follows one of two fixed permutations of the "
           "vocabulary; the model must\ninfer which one from context. Loss starts near ln("
        << c.vocab << ") = " << format_fixed(std::log(static_cast<double>(c.vocab)), 2)
        << " and can fall to about ln(2)/" << c.seq << " = "
        << format_fixed(std::log(2.0) / static_cast<double>(c.seq), 3) << ".\n\n";
    out.flush();
  }
  ProgressLine progress(flags.steps, human && stderr_is_terminal());
  const int every = std::max(1, flags.steps / 15);
  Result<TrainReport> report = train_model(*spec, options, [&](const StepReport& s) {
    if (human && (s.step == 1 || s.step % every == 0 || s.step == flags.steps)) {
      const int width = 40;
      const double frac = std::min(1.0, s.loss / std::log(static_cast<double>(c.vocab)));
      out << "step "
          << (s.step < 10    ? "  "
              : s.step < 100 ? " "
                             : "")
          << s.step << "  loss " << format_fixed(s.loss, 4) << "  "
          << std::string(static_cast<size_t>(frac * width), '#') << "\n";
      out.flush();
    }
    progress.update(s.step, "loss " + format_fixed(s.loss, 4));
  });
  progress.finish();
  if (!report.ok()) return report_error(report.status(), flags.json, out, err);
  const TrainReport& r = *report;
  if (human)
    out << "\nloss fell from " << format_fixed(r.losses.front(), 3) << " to "
        << format_fixed(r.losses.back(), 3) << " in " << r.losses.size() << " steps ("
        << format_seconds(r.step_time_s()) << " per step, "
        << format_count(static_cast<int64_t>(r.tokens_per_s())) << " tokens/s, " << r.threads
        << " thread" << (r.threads > 1 ? "s" : "") << ").\n";

  // Part 2: the same model sharded automatically over a 2x2 mesh of virtual devices.
  TrainOptions sharded = options;
  sharded.loop.steps = std::min(flags.steps, 20);
  sharded.compile.mesh = {2, 2};
  sharded.cluster = "local";
  if (human) {
    out << "\nNow the same training sharded over a 2x2 mesh of virtual devices (4 threads): the "
           "auto-sharding\nILP chooses a layout for every tensor, the graph is lowered to one "
           "program per device with\nthe collectives it needs, and "
        << sharded.loop.steps << " steps run on the 4 devices.\n";
    out.flush();
  }
  Result<TrainReport> mesh = train_model(*spec, sharded);
  if (!mesh.ok()) return report_error(mesh.status(), flags.json, out, err);
  const TrainReport& m = *mesh;
  const double worst = max_relative_difference(m.losses, r.losses);
  const bool match = worst <= 1e-5;

  // Part 3: a pipeline. The inter-op pass slices the model into stages on submeshes of 4
  // virtual devices; 4 micro-batches flow through them on a 1F1B schedule.
  TrainOptions piped = options;
  piped.loop.steps = sharded.loop.steps;
  piped.cluster = "local";
  piped.compile.micro_batches = 4;
  piped.compile.pipeline = true;
  piped.compile.devices = 4;
  piped.compile.schedule = ScheduleKind::k1F1B;
  if (human) {
    out << "\nplan: " << m.collectives << " collectives per step per device, planned in "
        << format_seconds(m.plan_seconds) << "; layouts used (value count):";
    std::map<std::string, int> layouts;
    const ShardingPlan& plan = *m.compiled->mesh_plan;
    for (size_t i = 0; i < plan.specs.size(); ++i)
      if (plan.strategy[i] >= 0) layouts[plan.specs[i].to_string()]++;
    std::vector<std::pair<int, std::string>> by_count;
    for (const auto& [l, c] : layouts) by_count.push_back({c, l});
    std::sort(by_count.rbegin(), by_count.rend());
    int shown = 0;
    for (const auto& [c, l] : by_count)
      if (shown++ < 8) out << " " << l << " " << c;
    out << "\n\nAnd as a pipeline: the inter-operator pass clusters the operators into layers, "
           "chooses stages,\ntheir submeshes of the 4 devices and each stage's intra-op plan; "
        << piped.compile.micro_batches << " micro-batches run on a 1F1B schedule.\n";
    out.flush();
  }
  Result<TrainReport> pipe = train_model(*spec, piped);
  if (!pipe.ok()) return report_error(pipe.status(), flags.json, out, err);
  const TrainReport& p = *pipe;
  const double worst_pipe = max_relative_difference(p.losses, r.losses);
  const bool pipe_match = worst_pipe <= 1e-5;
  const bool all_match = match && pipe_match;
  if (flags.json) {
    out << json_line(demo_json(*spec, r, m, worst, p, worst_pipe)) << "\n";
    return all_match ? kExitOk : kExitUserError;
  }
  const CompiledPipeline& cp = *p.compiled->pipeline;
  for (size_t st = 0; st < cp.plan.stages.size(); ++st) {
    const PlannedStage& ps = cp.plan.stages[st];
    const int64_t n = ps.logical.shape[0] * ps.logical.shape[1];
    out << "  stage " << st << ": layers " << ps.first_layer << "-" << ps.last_layer << " of "
        << cp.plan.layers.num_layers << ", devices " << ps.first_device << "-"
        << ps.first_device + n - 1 << ", logical mesh " << ps.logical.to_string() << "\n";
  }
  out << "  " << p.program.transfers.size() << " values cross between stages per step; planned in "
      << format_seconds(p.plan_seconds) << "\n";
  out << "\nstep  one device  2x2 mesh   pipeline\n";
  for (size_t i = 0; i < m.losses.size(); ++i)
    if (i < 3 || i + 3 >= m.losses.size() || (i + 1) % 5 == 0)
      out << (i + 1 < 10 ? " " : "") << i + 1 << "    " << format_fixed(r.losses[i], 5) << "     "
          << format_fixed(m.losses[i], 5) << "    " << format_fixed(p.losses[i], 5) << "\n";
  out << (match ? "\nThe sharded run matches one device (largest relative loss difference "
                : "\nMISMATCH: the sharded run differs from one device (largest relative loss "
                  "difference ")
      << worst << ").\n"
      << (pipe_match ? "The pipeline matches one device (largest relative loss difference "
                     : "MISMATCH: the pipeline differs from one device (largest relative loss "
                       "difference ")
      << worst_pipe << ").\n"
      << "Next: `alpa plan --model gpt --size 1.3b --cluster p3.16xlarge --mesh 1x4`,\n      "
         "`alpa plan --model gpt --size 2.6b --cluster p3.16xlarge --gpus 8 --batch 1024`,\n      "
         "`alpa simulate --model gpt --size 1.3b --cluster p3.16xlarge --gpus 4 --batch 1024 "
         "--trace gpt.json`,\n      "
         "`mpirun -np 4 alpa train --backend mpi --model gpt --size tiny --mesh 2x2` (README: "
         "root and oversubscription), `alpa train --help`.\n";
  return all_match ? kExitOk : kExitUserError;
}

}  // namespace alpa
