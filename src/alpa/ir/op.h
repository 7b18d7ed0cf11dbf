// OpKind and the op table's per-op facts, generated from ops.def.
//
// infer_result_type is the shape rule of every op: given the operand types, the attributes
// and (for kDeclared ops) the declared result type, it returns the result type or a Status
// naming what is inconsistent. The builder, the parser and the verifier all call it, so an
// op's typing rule lives in exactly one place.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "alpa/ir/attrs.h"
#include "alpa/ir/types.h"
#include "alpa/support/status.h"

namespace alpa {

enum class OpKind : uint8_t {
#define ALPA_OP(kind, name, arity, attrs, family, result) k##kind,
#include "alpa/ir/ops.def"
#undef ALPA_OP
};

inline constexpr int kNumOps = 0
#define ALPA_OP(kind, name, arity, attrs, family, result) +1
#include "alpa/ir/ops.def"
#undef ALPA_OP
    ;

enum class OpFamily : uint8_t {
  kSource,       // no operands: parameter, constant, iota
  kUnary,        // elementwise, one operand
  kBinary,       // elementwise, two operands of one type
  kSelect,       // elementwise select(pred, on_true, on_false)
  kMovement,     // rearranges elements without arithmetic
  kReduce,       // reduces dims
  kContraction,  // dot / convolution: the FLOP-heavy ops
  kIndexing,     // gather / scatter-add
  kCollective,   // communication across a device mesh (per-device programs only)
};

enum class ResultTypeRule : uint8_t { kInferred, kDeclared };

struct OpInfo {
  std::string_view name;
  int arity;  // -1: one or more
  OpFamily family;
  ResultTypeRule result_type;
  size_t attrs_index;  // alternative of Attrs this op carries
};

const OpInfo& op_info(OpKind kind);
inline std::string_view op_name(OpKind kind) {
  return op_info(kind).name;
}
std::optional<OpKind> parse_op_name(std::string_view name);
// Default-constructed attributes of the right struct for `kind`.
Attrs default_attrs(OpKind kind);

inline bool is_elementwise(OpKind kind) {
  const OpFamily f = op_info(kind).family;
  return f == OpFamily::kUnary || f == OpFamily::kBinary || f == OpFamily::kSelect;
}

// A collective that moves data between devices (all-reduce, all-gather, reduce-scatter,
// all-to-all); shard_slice and to_partial are local.
inline bool is_communicating(OpKind kind) {
  return kind == OpKind::kAllReduce || kind == OpKind::kAllGather ||
         kind == OpKind::kReduceScatter || kind == OpKind::kAllToAll;
}

// The shape rule. `declared` must be given for kDeclared ops and is checked against the rule;
// for kInferred ops it may be given (then it must equal the inferred type) or be null.
Result<TensorType> infer_result_type(OpKind kind, const Attrs& attrs,
                                     std::span<const TensorType> operands,
                                     const TensorType* declared);

// Size of the group of a collective (product of the mesh extents of its axes); 0 if the
// attributes are invalid.
int64_t collective_group_size(const CollectiveAttrs& a);

// Output spatial extent of a convolution along one axis.
int64_t conv_output_size(int64_t in, int64_t kernel, int64_t stride, int64_t pad_lo, int64_t pad_hi,
                         int64_t dilation);

}  // namespace alpa
