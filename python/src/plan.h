// Compiling a model from Python arguments (the flags of `alpa plan` / `alpa train`), and
// alpa.Plan, the compiled result with its plan, predictions and program.
#pragma once

#include <memory>
#include <string>

#include "alpa/compile/compile.h"
#include "alpa/plan/plan.h"
#include "model.h"

namespace alpa::python {

// Where and how to compile: the Python keywords of plan(), simulate() and Trainer().
struct ParallelArgs {
  std::string cluster;  // preset or cluster JSON
  std::string mesh;     // "2x2"; empty: `devices`, or the default mesh
  int devices = 0;      // > 0: a pipeline over this many devices
  std::string plan = "auto";
  int micro_batches = 0;
  std::string schedule;  // "1f1b" / "gpipe" (pipelines)
  std::string choose;    // "simulation" / "planner" (pipelines)
  double memory_budget_gb = 0;
  OptimizerFlags optimizer;
};

struct PyPlan {
  std::string model;
  std::string cluster;
  std::string plan_source;
  std::shared_ptr<const Compiled> compiled;
  Plan plan;  // the alpa-plan/1 form
};

// Resolves `args` as the CLI resolves its flags and compiles. `default_mesh` applies when
// neither a mesh nor devices are given; `training` chooses a pipeline as `alpa train` does.
PyPlan compile_model(const PyModel& model, const ParallelArgs& args,
                     const std::string& default_mesh, bool training);

}  // namespace alpa::python
