// Elementwise fusion for the CPU executor.
//
// plan_fusion decides, once per graph, which nodes are computed inside a fused loop instead
// of being materialised:
// - an elementwise node (unary, binary, compare, select, convert) whose only user is an
//   elementwise node of the same shape, and which is not a graph output, is *inlined* into
//   that user;
// - splat constants, iotas and broadcasts are *generators*: an elementwise user of their shape
//   reads them by index (a broadcast reads its source with stride 0 on the broadcast dims),
//   so they are materialised only if some other user or a graph output needs them;
// - every elementwise node that is not inlined and reads at least one inlined node or
//   generator becomes the *root* of a FusedProgram: straight-line register code over blocks of
//   the root's elements. Its materialised inputs are its `loads`.
// The result of a program equals running its nodes one by one (same float operations in the
// same order per element), so fusion changes no value.
//
// Not fused: reductions, movement and contractions (they are materialised as before).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/runtime/kernels.h"

namespace alpa {

// A materialised value read by a program: element of the root's index i_0..i_{r-1} is at
// sum_d i_d * strides[d] in the value's buffer (strides 0 on broadcast dims).
struct FusedLoad {
  ValueId value = kNoValue;
  std::vector<int64_t> strides;  // one per root dim
  bool contiguous = false;       // strides are the root's row-major strides
};

enum class FusedInstKind : uint8_t {
  kLoad,
  kSplat,
  kIota,
  kUnary,
  kBinary,
  kCompare,
  kSelect,
  kConvert
};

struct FusedInst {
  FusedInstKind kind = FusedInstKind::kLoad;
  OpKind op = OpKind::kAdd;                    // kUnary / kBinary
  CompareDir dir = CompareDir::kEq;            // kCompare
  DType from = DType::kF32, to = DType::kF32;  // kConvert
  int a = -1, b = -1, c = -1;                  // operand registers (earlier instruction indices)
  int load = -1;                               // kLoad: index into loads
  float value = 0;                             // kSplat
  int64_t iota_dim = 0;                        // kIota: the root dim whose index is the value
};

struct FusedProgram {
  ValueId root = kNoValue;
  Shape shape;  // the loop domain: the root's shape
  std::vector<FusedLoad> loads;
  std::vector<FusedInst> insts;  // evaluation order; the last one computes the root
  std::vector<ValueId> members;  // graph nodes this program computes (root included)
};

struct FusionPlan {
  std::vector<int> program_of;  // per node: its program if it is a root, else -1
  std::vector<char> skipped;    // per node: never materialised (inlined, or an unused generator)
  std::vector<FusedProgram> programs;
};

// Largest number of instructions in one program (larger trees are split by materialising).
inline constexpr int kMaxFusedInsts = 64;

FusionPlan plan_fusion(const Graph& g);

// Runs `p` over its whole domain. inputs[k] holds loads[k].value; `out` has the root's
// element count and may alias an input that the program reads only contiguously.
void run_fused(const KernelContext& ctx, const FusedProgram& p,
               std::span<const Tensor* const> inputs, float* out);

}  // namespace alpa
