// Typed attributes of ops.
//
// Each attribute struct lists its fields once, in `fields(visitor)`; printing, parsing,
// equality and hashing are generated from that list (attrs.cc, text.cc). Field values are
// int64, double, lists of those, or enums with a name table (EnumNames). Defaults are the
// member initialisers; the text form may omit a field that has its default.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>
#include <variant>
#include <vector>

namespace alpa {

// ---- Enums with text names ----------------------------------------------------------------

template <typename E>
struct EnumNames;  // specialised below: static constexpr std::array<std::string_view, N> kNames

// What a parameter is: trained weight, data fed each step, or optimizer/training state.
enum class ParamRole : uint8_t { kWeight, kInput, kState };
template <>
struct EnumNames<ParamRole> {
  static constexpr std::array<std::string_view, 3> kNames = {"weight", "input", "state"};
};

// How a parameter is initialised (weights and state) or synthesised (inputs) when a runner
// has no data for it. `scale` is the std for normal, the bound for uniform (-s, s), and the
// exclusive upper bound for randint [0, s).
enum class ParamInit : uint8_t { kZeros, kOnes, kNormal, kUniform, kRandint };
template <>
struct EnumNames<ParamInit> {
  static constexpr std::array<std::string_view, 5> kNames = {"zeros", "ones", "normal", "uniform",
                                                             "randint"};
};

enum class CompareDir : uint8_t { kEq, kNe, kLt, kLe, kGt, kGe };
template <>
struct EnumNames<CompareDir> {
  static constexpr std::array<std::string_view, 6> kNames = {"eq", "ne", "lt", "le", "gt", "ge"};
};

template <typename T>
concept NamedEnum = requires {
  EnumNames<T>::kNames;
};

template <NamedEnum E>
constexpr std::string_view enum_name(E e) {
  return EnumNames<E>::kNames[static_cast<size_t>(e)];
}
// The enum named `name`, or nullopt.
template <NamedEnum E>
constexpr std::optional<E> parse_enum(std::string_view name) {
  for (size_t i = 0; i < EnumNames<E>::kNames.size(); ++i)
    if (EnumNames<E>::kNames[i] == name) return static_cast<E>(i);
  return std::nullopt;
}

// ---- Attribute structs --------------------------------------------------------------------

struct NoAttrs {
  template <typename V>
  void fields(V&) {}
  friend bool operator==(const NoAttrs&, const NoAttrs&) = default;
};

struct ParameterAttrs {
  ParamRole role = ParamRole::kWeight;
  ParamInit init = ParamInit::kZeros;
  double scale = 0.0;
  template <typename V>
  void fields(V& v) {
    v("role", role);
    v("init", init);
    v("scale", scale);
  }
  friend bool operator==(const ParameterAttrs&, const ParameterAttrs&) = default;
};

// One value (a splat over the result shape) or one value per element, row-major.
struct ConstantAttrs {
  std::vector<double> values = {0.0};
  template <typename V>
  void fields(V& v) {
    v("values", values);
  }
  friend bool operator==(const ConstantAttrs&, const ConstantAttrs&) = default;
};

// result[i_0, ..., i_n] = i_dim
struct IotaAttrs {
  int64_t dim = 0;
  template <typename V>
  void fields(V& v) {
    v("dim", dim);
  }
  friend bool operator==(const IotaAttrs&, const IotaAttrs&) = default;
};

struct CompareAttrs {
  CompareDir dir = CompareDir::kEq;
  template <typename V>
  void fields(V& v) {
    v("dir", dir);
  }
  friend bool operator==(const CompareAttrs&, const CompareAttrs&) = default;
};

// Operand dim i becomes result dim dims[i]; dims is strictly increasing. An operand dim of
// extent 1 may broadcast to any extent (HLO broadcast_in_dim).
struct BroadcastAttrs {
  std::vector<int64_t> dims;
  template <typename V>
  void fields(V& v) {
    v("dims", dims);
  }
  friend bool operator==(const BroadcastAttrs&, const BroadcastAttrs&) = default;
};

// result dim i = operand dim perm[i]
struct TransposeAttrs {
  std::vector<int64_t> perm;
  template <typename V>
  void fields(V& v) {
    v("perm", perm);
  }
  friend bool operator==(const TransposeAttrs&, const TransposeAttrs&) = default;
};

// result = operand[start_0:limit_0, ...] (unit stride)
struct SliceAttrs {
  std::vector<int64_t> start;
  std::vector<int64_t> limit;
  template <typename V>
  void fields(V& v) {
    v("start", start);
    v("limit", limit);
  }
  friend bool operator==(const SliceAttrs&, const SliceAttrs&) = default;
};

// Pads each dim with `low` elements before and `high` after, all equal to `value`.
struct PadAttrs {
  std::vector<int64_t> low;
  std::vector<int64_t> high;
  double value = 0.0;
  template <typename V>
  void fields(V& v) {
    v("low", low);
    v("high", high);
    v("value", value);
  }
  friend bool operator==(const PadAttrs&, const PadAttrs&) = default;
};

struct ConcatAttrs {
  int64_t dim = 0;
  template <typename V>
  void fields(V& v) {
    v("dim", dim);
  }
  friend bool operator==(const ConcatAttrs&, const ConcatAttrs&) = default;
};

// Reduces over `dims` (sorted, unique); the reduced dims are removed from the result.
struct ReduceAttrs {
  std::vector<int64_t> dims;
  template <typename V>
  void fields(V& v) {
    v("dims", dims);
  }
  friend bool operator==(const ReduceAttrs&, const ReduceAttrs&) = default;
};

// result = [batch dims (lhs order)..., lhs free dims..., rhs free dims...]
struct DotAttrs {
  std::vector<int64_t> lhs_batch;
  std::vector<int64_t> rhs_batch;
  std::vector<int64_t> lhs_contract;
  std::vector<int64_t> rhs_contract;
  template <typename V>
  void fields(V& v) {
    v("lhs_batch", lhs_batch);
    v("rhs_batch", rhs_batch);
    v("lhs_contract", lhs_contract);
    v("rhs_contract", rhs_contract);
  }
  friend bool operator==(const DotAttrs&, const DotAttrs&) = default;
};

// 2-D convolution, NCHW activations, OIHW filters (I = C / groups).
// padding = {top, bottom, left, right}.
struct ConvAttrs {
  std::vector<int64_t> stride = {1, 1};
  std::vector<int64_t> padding = {0, 0, 0, 0};
  std::vector<int64_t> dilation = {1, 1};
  int64_t groups = 1;
  template <typename V>
  void fields(V& v) {
    v("stride", stride);
    v("padding", padding);
    v("dilation", dilation);
    v("groups", groups);
  }
  friend bool operator==(const ConvAttrs&, const ConvAttrs&) = default;
};

// gather:      table (A..., V, B...) , indices (I...)   -> (A..., I..., B...)  [V at `axis`]
// scatter_add: indices (I...), updates (A..., I..., B...) -> (A..., V, B...) zeros + adds
struct GatherAttrs {
  int64_t axis = 0;
  template <typename V>
  void fields(V& v) {
    v("axis", axis);
  }
  friend bool operator==(const GatherAttrs&, const GatherAttrs&) = default;
};

// A collective over the groups of a logical 2-D device mesh `mesh` = [n0, n1]. The group of a
// device is the devices that share its coordinates on the axes NOT in `axes`; its position in
// the group is its coordinate along `axes`, major axis first (axes [0, 1]: c0 * n1 + c1).
// Group size n = product of mesh[a] for a in axes.
//   all_reduce      sum over the group (same shape)
//   all_gather      concatenation along `dim` in group order (dim extent x n)
//   reduce_scatter  sum over the group, then this device's chunk along `dim` (extent / n)
//   all_to_all      chunk j along `dim` goes to member j; received chunks are concatenated
//                   along `concat_dim` in group order (dim extent / n, concat_dim extent x n)
//   shard_slice     this device's chunk along `dim` (local, no communication; extent / n)
//   to_partial      x on the group's position 0, zeros elsewhere: a partial sum over the group
//                   whose total is x (local, no communication; same shape)
struct CollectiveAttrs {
  std::vector<int64_t> axes;  // [0], [1] or [0, 1]
  std::vector<int64_t> mesh;  // [n0, n1]
  int64_t dim = 0;
  int64_t concat_dim = 0;
  template <typename V>
  void fields(V& v) {
    v("axes", axes);
    v("mesh", mesh);
    v("dim", dim);
    v("concat_dim", concat_dim);
  }
  friend bool operator==(const CollectiveAttrs&, const CollectiveAttrs&) = default;
};

using Attrs = std::variant<NoAttrs, ParameterAttrs, ConstantAttrs, IotaAttrs, CompareAttrs,
                           BroadcastAttrs, TransposeAttrs, SliceAttrs, PadAttrs, ConcatAttrs,
                           ReduceAttrs, DotAttrs, ConvAttrs, GatherAttrs, CollectiveAttrs>;

// Index of attribute struct T in the Attrs variant.
template <typename T, typename V = Attrs, size_t I = 0>
constexpr size_t attrs_index() {
  if constexpr (std::is_same_v<std::variant_alternative_t<I, V>, T>) {
    return I;
  } else {
    return attrs_index<T, V, I + 1>();
  }
}

}  // namespace alpa
