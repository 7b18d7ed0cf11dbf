#include "alpa/spmd/lower.h"

#include <algorithm>
#include <unordered_map>

#include "alpa/ir/builder.h"
#include "alpa/ir/dce.h"
#include "alpa/sharding/reshard.h"

namespace alpa {
namespace {

class Lowerer {
 public:
  Lowerer(const Graph& g, const ShardingPlan& plan, const LowerOptions& options)
      : g_(g), plan_(plan), options_(options), mesh_(plan.mesh), b_(g.name() + ".spmd") {}

  Result<SpmdProgram> run() {
    if (plan_.specs.size() != static_cast<size_t>(g_.size()))
      return invalid_argument("the plan does not belong to this graph (node count differs)");
    if (!options_.output_specs.empty() && options_.output_specs.size() != g_.outputs().size())
      return invalid_argument(cat("output_specs has ", options_.output_specs.size(),
                                  " layouts for ", g_.outputs().size(), " outputs"));
    SpmdProgram out;
    out.mesh = mesh_;
    for (ValueId v = 0; v < g_.size(); ++v) {
      if (plan_.strategy[v] < 0) continue;  // free: generated where used
      ALPA_RETURN_IF_ERROR(lower_node(v));
    }
    for (ValueId p : g_.parameters()) out.param_specs.push_back(plan_.specs[p].canonical(mesh_));
    for (size_t i = 0; i < g_.outputs().size(); ++i) {
      const GraphOutput& o = g_.outputs()[i];
      const ShardingSpec target =
          (options_.output_specs.empty() ? plan_.specs[o.value].without_partial()
                                         : options_.output_specs[i])
              .canonical(mesh_);
      ALPA_RETURN_IF_ERROR(target.validate(g_.type(o.value).shape, mesh_)
                               .with_context(cat("layout of output '", o.name, "'")));
      ALPA_ASSIGN_OR_RETURN(Value local, value_in(o.value, target));
      Value alias;
      if (o.alias != kNoValue) alias = Value{param_local_[o.alias]};
      b_.output(o.name, local, alias);
      out.output_specs.push_back(target);
    }
    if (!b_.ok()) return b_.status().with_context("SPMD lowering");
    ALPA_ASSIGN_OR_RETURN(Graph program, b_.finish());
    // Values lowered in their planned layout but only ever used in another one (a broadcast
    // re-emitted in its user's layout) are dropped.
    out.program = eliminate_dead_code(program);
    for (const Node& n : out.program.nodes()) out.collectives += is_communicating(n.op);
    return out;
  }

 private:
  static std::string key(ValueId v, const ShardingSpec& s) {
    return std::to_string(v) + "|" + s.to_string();
  }

  TensorType local_type(ValueId v, const ShardingSpec& s) const {
    TensorType t = g_.type(v);
    t.shape = s.local_shape(t.shape, mesh_);
    return t;
  }

  CollectiveAttrs attrs(uint8_t axes, int64_t dim = 0, int64_t concat_dim = 0) const {
    return CollectiveAttrs{axis_list(axes), {mesh_[0], mesh_[1]}, dim, concat_dim};
  }

  // Emits the reshard from `from` to `to` of the local value `x` (a value of `v`).
  Result<Value> reshard(ValueId v, Value x, const ShardingSpec& from, const ShardingSpec& to) {
    ALPA_ASSIGN_OR_RETURN(std::vector<ReshardStep> steps,
                          plan_reshard(from, to, g_.type(v).shape, mesh_));
    for (const ReshardStep& s : steps) {
      OpKind op = OpKind::kShardSlice;
      CollectiveAttrs a = attrs(s.axes, s.dim >= 0 ? s.dim : 0);
      switch (s.kind) {
        case ReshardKind::kAllReduce: op = OpKind::kAllReduce; break;
        case ReshardKind::kReduceScatter: op = OpKind::kReduceScatter; break;
        case ReshardKind::kAllGather: op = OpKind::kAllGather; break;
        case ReshardKind::kAllToAll:
          op = OpKind::kAllToAll;
          a.concat_dim = s.from_dim;
          break;
        case ReshardKind::kMakePartial: op = OpKind::kToPartial; break;
        case ReshardKind::kSlice: op = OpKind::kShardSlice; break;
      }
      x = b_.emit(op, {&x, 1}, a, nullptr);
      if (!b_.ok()) return b_.status().with_context(cat("reshard of ", value_ref(g_, v)));
    }
    return x;
  }

  // The local value of `v` in layout `spec`.
  Result<Value> value_in(ValueId v, const ShardingSpec& spec_in) {
    const ShardingSpec spec = spec_in.canonical(mesh_);
    auto it = cache_.find(key(v, spec));
    if (it != cache_.end()) return it->second;
    if (plan_.strategy[v] < 0) return materialize_free(v, spec);
    const ShardingSpec from = plan_.specs[v].canonical(mesh_);
    auto base = cache_.find(key(v, from));
    if (base == cache_.end())
      return internal_error(cat("SPMD lowering: ", value_ref(g_, v), " used before lowered"));
    // A broadcast that only needs slicing on dims its operand does not carry is emitted again
    // directly in the wanted layout, instead of whole and then sliced.
    if (g_.node(v).op == OpKind::kBroadcast && broadcast_absorbs_slices(v, from, spec)) {
      ALPA_ASSIGN_OR_RETURN(Value operand,
                            value_in(g_.node(v).operands[0], plan_.operand_specs[v][0]));
      ALPA_ASSIGN_OR_RETURN(Value x, emit_local(v, {operand}, spec));
      cache_[key(v, spec)] = x;
      return x;
    }
    ALPA_ASSIGN_OR_RETURN(Value x, reshard(v, base->second, from, spec));
    cache_[key(v, spec)] = x;
    return x;
  }

  // True if `to` differs from `from` (a broadcast's layout) only by splits on result dims that
  // do not come from an operand dim of extent > 1: then the broadcast itself can produce `to`.
  bool broadcast_absorbs_slices(ValueId v, const ShardingSpec& from, const ShardingSpec& to) const {
    if (from.partial != to.partial) return false;
    const Node& n = g_.node(v);
    const auto& dims = n.attr<BroadcastAttrs>().dims;
    const Shape& in = g_.type(n.operands[0]).shape;
    for (int64_t d = 0; d < n.type.rank(); ++d) {
      if (from.dims[d] == to.dims[d]) continue;
      if (from.dims[d] != 0) return false;  // only added splits
      auto it = std::find(dims.begin(), dims.end(), d);
      if (it != dims.end() && in[it - dims.begin()] != 1) return false;
    }
    return true;
  }

  // Emits node v's op on local operands producing layout `out_spec` (its own, native layout).
  Result<Value> emit_local(ValueId v, const std::vector<Value>& operands,
                           const ShardingSpec& out_spec) {
    const Node& n = g_.node(v);
    Attrs a = n.attrs;
    if (n.op == OpKind::kSlice) {  // split dims keep their whole local extent
      auto& s = std::get<SliceAttrs>(a);
      const Shape local = out_spec.local_shape(n.type.shape, mesh_);
      for (size_t d = 0; d < local.size(); ++d)
        if (out_spec.dims[d]) s.limit[d] = s.start[d] + local[d];
    }
    const TensorType t = local_type(v, out_spec);
    const bool declared = op_info(n.op).result_type == ResultTypeRule::kDeclared;
    Value x = b_.emit(n.op, operands, std::move(a), declared ? &t : nullptr);
    if (!b_.ok())
      return b_.status().with_context(cat("SPMD lowering of ", value_ref(g_, v), " (",
                                          op_name(n.op), ") as ", out_spec.to_string()));
    return x;
  }

  Status lower_node(ValueId v) {
    const Node& n = g_.node(v);
    const ShardingSpec spec = plan_.specs[v].canonical(mesh_);
    if (n.op == OpKind::kParameter) {
      const auto& pa = n.attr<ParameterAttrs>();
      Value x = b_.parameter(n.name.empty() ? cat("p", v) : n.name, local_type(v, spec), pa.role,
                             pa.init, pa.scale);
      if (!b_.ok()) return b_.status();
      param_local_[v] = x.id;
      cache_[key(v, spec)] = x;
      return ok_status();
    }
    std::vector<Value> ops;
    for (size_t k = 0; k < n.operands.size(); ++k) {
      ALPA_ASSIGN_OR_RETURN(Value x, value_in(n.operands[k], plan_.operand_specs[v][k]));
      ops.push_back(x);
    }
    const ShardingSpec native = plan_.native_specs[v].canonical(mesh_);
    ALPA_ASSIGN_OR_RETURN(Value x, emit_local(v, ops, native));
    if (!(native == spec)) {
      ALPA_ASSIGN_OR_RETURN(x, reshard(v, x, native, spec));
    }
    cache_[key(v, spec)] = x;
    return ok_status();
  }

  // Generates a free value (constants, iota and ops of those only) in layout `spec`.
  Result<Value> materialize_free(ValueId v, const ShardingSpec& spec) {
    const Node& n = g_.node(v);
    Value x;
    if (spec.partial) {
      ALPA_ASSIGN_OR_RETURN(Value whole, value_in(v, spec.without_partial()));
      x = b_.emit(OpKind::kToPartial, {&whole, 1}, attrs(spec.partial), nullptr);
    } else if (n.op == OpKind::kConstant && n.attr<ConstantAttrs>().values.size() == 1) {
      const TensorType t = local_type(v, spec);
      x = b_.emit(OpKind::kConstant, {}, n.attrs, &t);
    } else if (n.op == OpKind::kIota && spec.dims[n.attr<IotaAttrs>().dim] == 0) {
      const TensorType t = local_type(v, spec);
      x = b_.emit(OpKind::kIota, {}, n.attrs, &t);
    } else if (is_elementwise(n.op)) {
      std::vector<Value> ops;
      for (ValueId o : n.operands) {
        ALPA_ASSIGN_OR_RETURN(Value y, value_in(o, spec));
        ops.push_back(y);
      }
      ALPA_ASSIGN_OR_RETURN(x, emit_local(v, ops, spec));
    } else if (n.op == OpKind::kBroadcast) {
      const auto& dims = n.attr<BroadcastAttrs>().dims;
      const Shape& in = g_.type(n.operands[0]).shape;
      ShardingSpec in_spec = ShardingSpec::replicated(static_cast<int64_t>(in.size()));
      for (size_t i = 0; i < dims.size(); ++i)
        if (in[i] == n.type.shape[dims[i]]) in_spec.dims[i] = spec.dims[dims[i]];
      ALPA_ASSIGN_OR_RETURN(Value y, value_in(n.operands[0], in_spec));
      ALPA_ASSIGN_OR_RETURN(x, emit_local(v, {y}, spec));
    } else {
      // Anything else: whole on every device, then this device's block.
      const ShardingSpec whole = ShardingSpec::replicated(n.type.rank());
      if (spec == whole) {
        std::vector<Value> ops;
        for (ValueId o : n.operands) {
          ALPA_ASSIGN_OR_RETURN(Value y, value_in(o, ShardingSpec::replicated(g_.type(o).rank())));
          ops.push_back(y);
        }
        if (ops.empty()) {
          const TensorType t = g_.type(v);
          x = b_.emit(n.op, {}, n.attrs, &t);
        } else {
          ALPA_ASSIGN_OR_RETURN(x, emit_local(v, ops, whole));
        }
      } else {
        ALPA_ASSIGN_OR_RETURN(Value y, value_in(v, whole));
        ALPA_ASSIGN_OR_RETURN(x, reshard(v, y, whole, spec));
      }
    }
    if (!b_.ok()) return b_.status().with_context(cat("SPMD lowering of ", value_ref(g_, v)));
    cache_[key(v, spec)] = x;
    return x;
  }

  const Graph& g_;
  const ShardingPlan& plan_;
  const LowerOptions& options_;
  MeshShape mesh_;
  Builder b_;
  std::unordered_map<std::string, Value> cache_;
  std::unordered_map<ValueId, ValueId> param_local_;
};

}  // namespace

Result<SpmdProgram> lower_to_spmd(const Graph& g, const ShardingPlan& plan,
                                  const LowerOptions& options) {
  Lowerer l(g, plan, options);
  return l.run();
}

}  // namespace alpa
