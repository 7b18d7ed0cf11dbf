// alpa demo: the main job of the README: trains a tiny GPT and shows the loss falling.
#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/progress.h"
#include "alpa/cli/trainer.h"

namespace alpa {

int run_demo(const DemoFlags& flags, std::ostream& out, std::ostream& err) {
  Result<ModelSpec> spec = resolve_model("gpt", "tiny", {});
  if (!spec.ok()) return report_error(spec.status(), flags.json, out, err);
  TrainOptions options;
  options.steps = flags.steps;
  options.seed = flags.seed;
  options.threads = flags.threads;
  options.optimizer.kind = OptimizerKind::kAdamW;
  options.optimizer.learning_rate = 3e-3;

  const bool human = !flags.json;
  const GptConfig& c = spec->gpt;
  if (human) {
    out << "alpa demo: training a tiny GPT (" << c.layers << " layers, hidden " << c.hidden
        << ", " << c.heads << " heads, seq " << c.seq << ", vocab " << c.vocab << ") on one "
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
      out << "step " << (s.step < 10 ? "  " : s.step < 100 ? " " : "") << s.step << "  loss "
          << format_fixed(s.loss, 4) << "  " << std::string(static_cast<size_t>(frac * width), '#')
          << "\n";
      out.flush();
    }
    progress.update(s.step, "loss " + format_fixed(s.loss, 4));
  });
  progress.finish();
  if (!report.ok()) return report_error(report.status(), flags.json, out, err);
  const TrainReport& r = *report;
  if (flags.json) {
    nlohmann::json j;
    j["command"] = "demo";
    j["model"] = spec->name;
    j["parameters"] = r.parameters;
    j["losses"] = r.losses;
    j["step_time_s"] = r.step_time_s();
    j["tokens_per_s"] = r.tokens_per_s();
    out << j.dump() << "\n";
    return kExitOk;
  }
  out << "\nloss fell from " << format_fixed(r.losses.front(), 3) << " to "
      << format_fixed(r.losses.back(), 3) << " in " << r.losses.size() << " steps ("
      << format_seconds(r.step_time_s()) << " per step, "
      << format_count(static_cast<int64_t>(r.tokens_per_s())) << " tokens/s, " << r.threads
      << " thread" << (r.threads > 1 ? "s" : "") << ").\n"
      << "Next: `alpa train --help`, `alpa graph --model gpt --size 39b`.\n";
  return kExitOk;
}

}  // namespace alpa
