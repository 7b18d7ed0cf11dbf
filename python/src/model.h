// alpa.Model: a resolved model (built-in family and size, a text IR file, or any file the
// registry resolves), with the flags it was resolved from so plans and trainers rebuild it.
#pragma once

#include <map>
#include <string>

#include "alpa/cli/commands.h"
#include "alpa/ir/graph.h"
#include "alpa/models/registry.h"

namespace alpa::python {

struct PyModel {
  ModelFlags flags;
  ModelSpec spec;
  Graph forward;  // one micro-batch = the whole batch
};

}  // namespace alpa::python
