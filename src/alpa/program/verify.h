// The program verifier: checks the invariants of program.h before anything runs, so a
// damaged or hand-edited program file is refused with an error naming what is wrong.
//
// - shape: devices >= 1, micro-batches >= 1, stage meshes valid, disjoint and covering the
//   devices; parameters named once; every index (value, task, transfer, parameter) in range;
// - types: every value's layout valid for its type on its stage's mesh; owned and input values
//   agree with their step parameter (an input's dim 0 holds every micro-batch); every task
//   program verifies and its parameters and outputs have the local types their values'
//   layouts give; an aliased output updates the owned value its parameter reads;
// - transfers: the cross-mesh plan goes from the sender's mesh and layout to the receiver's,
//   its boxes tile every receiver's block exactly once, and the restoring program (if any)
//   turns the receive layout into the receiver's;
// - dataflow, per stage in instruction order: every value is written before it is read,
//   freed after its last read and at most once, and only the loss is left at the end; every
//   RECV has exactly one SEND and the stages can run to the end without waiting forever.
//
// Not a cost model and not a runtime: it does not execute anything.
#pragma once

#include "alpa/program/program.h"
#include "alpa/support/status.h"

namespace alpa {

Status verify_program(const Program& p);

}  // namespace alpa
