#include "alpa/intra/strategy.h"

#include "alpa/cost/collective.h"

#include <algorithm>
#include <numeric>

#include "alpa/cost/compute.h"
#include "alpa/ir/analysis.h"

namespace alpa {
namespace {

// ---- factor rules (enumerated ops) --------------------------------------------------------

// Loop factors of an op: tensor dims that carry the same factor are split together.
struct FactorRule {
  std::vector<int64_t> extent;             // per factor
  std::vector<char> contracted;            // per factor: summed over (not in the result)
  std::vector<std::vector<int>> operands;  // per operand, per dim: factor or -1 (replicated)
  std::vector<int> result;                 // per result dim: factor or -1
  int add(int64_t e, bool c = false) {
    extent.push_back(e);
    contracted.push_back(c);
    return static_cast<int>(extent.size()) - 1;
  }
};

std::vector<int64_t> free_dims(int64_t rank, const std::vector<int64_t>& a,
                               const std::vector<int64_t>& b) {
  std::vector<int64_t> f;
  for (int64_t d = 0; d < rank; ++d)
    if (std::find(a.begin(), a.end(), d) == a.end() && std::find(b.begin(), b.end(), d) == b.end())
      f.push_back(d);
  return f;
}

FactorRule rule_for(const Graph& g, ValueId id) {
  const Node& n = g.node(id);
  FactorRule r;
  auto dims_of = [&](ValueId v) { return std::vector<int>(g.type(v).shape.size(), -1); };
  r.result.assign(n.type.shape.size(), -1);
  for (ValueId o : n.operands) r.operands.push_back(dims_of(o));
  switch (n.op) {
    case OpKind::kParameter:
      for (size_t d = 0; d < n.type.shape.size(); ++d) r.result[d] = r.add(n.type.shape[d]);
      break;
    case OpKind::kDotGeneral: {
      const auto& a = n.attr<DotAttrs>();
      const Shape& ls = g.type(n.operands[0]).shape;
      const Shape& rs = g.type(n.operands[1]).shape;
      int out = 0;
      for (size_t i = 0; i < a.lhs_batch.size(); ++i) {
        const int f = r.add(ls[a.lhs_batch[i]]);
        r.operands[0][a.lhs_batch[i]] = r.operands[1][a.rhs_batch[i]] = r.result[out++] = f;
      }
      for (int64_t d : free_dims(static_cast<int64_t>(ls.size()), a.lhs_batch, a.lhs_contract))
        r.operands[0][d] = r.result[out++] = r.add(ls[d]);
      for (int64_t d : free_dims(static_cast<int64_t>(rs.size()), a.rhs_batch, a.rhs_contract))
        r.operands[1][d] = r.result[out++] = r.add(rs[d]);
      for (size_t i = 0; i < a.lhs_contract.size(); ++i) {
        const int f = r.add(ls[a.lhs_contract[i]], true);
        r.operands[0][a.lhs_contract[i]] = r.operands[1][a.rhs_contract[i]] = f;
      }
      break;
    }
    case OpKind::kConv2d: {  // x (N, C, H, W), w (O, C/g, KH, KW) -> (N, O, OH, OW)
      const Shape& xs = g.type(n.operands[0]).shape;
      const Shape& ws = g.type(n.operands[1]).shape;
      r.operands[0][0] = r.result[0] = r.add(xs[0]);
      r.operands[1][0] = r.result[1] = r.add(ws[0]);
      if (n.attr<ConvAttrs>().groups == 1) r.operands[0][1] = r.operands[1][1] = r.add(xs[1], true);
      break;
    }
    case OpKind::kConv2dGradInput: {  // dy (N, O, ..), w (O, C, ..) -> dx (N, C, ..)
      const Shape& dys = g.type(n.operands[0]).shape;
      r.operands[0][0] = r.result[0] = r.add(dys[0]);
      if (n.attr<ConvAttrs>().groups == 1) {
        r.operands[0][1] = r.operands[1][0] = r.add(dys[1], true);
        r.operands[1][1] = r.result[1] = r.add(n.type.shape[1]);
      }
      break;
    }
    case OpKind::kConv2dGradFilter: {  // x (N, C, ..), dy (N, O, ..) -> dw (O, C, ..)
      const Shape& xs = g.type(n.operands[0]).shape;
      r.operands[0][0] = r.operands[1][0] = r.add(xs[0], true);
      if (n.attr<ConvAttrs>().groups == 1) {
        r.operands[0][1] = r.result[1] = r.add(xs[1]);
        r.operands[1][1] = r.result[0] = r.add(n.type.shape[0]);
      }
      break;
    }
    case OpKind::kGather: {  // table (A.., V, B..), idx (I..) -> (A.., I.., B..)
      const int64_t axis = n.attr<GatherAttrs>().axis;
      const Shape& ts = g.type(n.operands[0]).shape;
      const int64_t ni = g.type(n.operands[1]).rank();
      int out = 0;
      for (int64_t d = 0; d < axis; ++d) r.operands[0][d] = r.result[out++] = r.add(ts[d]);
      for (int64_t d = 0; d < ni; ++d)
        r.operands[1][d] = r.result[out++] = r.add(g.type(n.operands[1]).shape[d]);
      for (int64_t d = axis + 1; d < static_cast<int64_t>(ts.size()); ++d)
        r.operands[0][d] = r.result[out++] = r.add(ts[d]);
      break;
    }
    case OpKind::kScatterAdd: {  // idx (I..), upd (A.., I.., B..) -> (A.., V, B..)
      const int64_t axis = n.attr<GatherAttrs>().axis;
      const Shape& ts = n.type.shape;
      const int64_t ni = g.type(n.operands[0]).rank();
      int u = 0;
      for (int64_t d = 0; d < axis; ++d) r.operands[1][u++] = r.result[d] = r.add(ts[d]);
      for (int64_t d = 0; d < ni; ++d)  // the scattered dims are summed into the table
        r.operands[0][d] = r.operands[1][u++] = r.add(g.type(n.operands[0]).shape[d], true);
      for (int64_t d = axis + 1; d < static_cast<int64_t>(ts.size()); ++d)
        r.operands[1][u++] = r.result[d] = r.add(ts[d]);
      break;
    }
    default: ALPA_UNREACHABLE() << "no factor rule for " << op_name(n.op);
  }
  return r;
}

bool is_enumerated(OpKind op) {
  switch (op) {
    case OpKind::kParameter:
    case OpKind::kDotGeneral:
    case OpKind::kConv2d:
    case OpKind::kConv2dGradInput:
    case OpKind::kConv2dGradFilter:
    case OpKind::kGather:
    case OpKind::kScatterAdd: return true;
    default: return false;
  }
}

std::string spec_list(const std::vector<ShardingSpec>& specs) {
  std::string s;
  for (size_t i = 0; i < specs.size(); ++i) s += (i ? " x " : "") + specs[i].to_string();
  return s;
}

std::vector<Strategy> enumerate(const Graph& g, ValueId id, const MeshLinks& mesh,
                                const DeviceSpec& device, const ShardingOptions& opt,
                                int batch_axis, const std::vector<char>& fused) {
  const Node& n = g.node(id);
  const FactorRule r = rule_for(g, id);
  const MeshShape ms = mesh.shape();
  const int nf = static_cast<int>(r.extent.size());
  std::vector<int> axes;
  for (int a : {0, 1})
    if (ms[a] > 1) axes.push_back(a);
  std::vector<Strategy> out;
  // choice[k]: factor split over axes[k], or -1.
  std::vector<int> choice(axes.size(), -1);
  const double flops = node_flops(g, id);
  const bool is_input =
      n.op == OpKind::kParameter && n.attr<ParameterAttrs>().role == ParamRole::kInput;
  for (;;) {
    std::vector<uint8_t> fa(static_cast<size_t>(nf), 0);
    bool ok = true;
    for (size_t k = 0; k < axes.size(); ++k)
      if (choice[k] >= 0) fa[choice[k]] |= axes[k] == 0 ? kAxis0 : kAxis1;
    for (int f = 0; f < nf && ok; ++f) {
      if (fa[f] == kBothAxes && !opt.allow_mixed_mesh_shape) ok = false;
      if (fa[f] && r.extent[f] % axes_size(fa[f], ms) != 0) ok = false;
    }
    if (ok && n.op != OpKind::kParameter && !opt.allow_replicated_compute) {
      // Every mesh axis of extent > 1 splits some factor (no repeated work).
      uint8_t used = 0;
      for (uint8_t f : fa) used |= f;
      for (int a : axes)
        if (!(used & (a == 0 ? kAxis0 : kAxis1))) ok = false;
    }
    if (ok && is_input && batch_axis >= 0 && n.type.rank() > 0) {
      const uint8_t want = batch_axis == 0 ? kAxis0 : kAxis1;
      ok = r.result[0] >= 0 && fa[r.result[0]] == want;
    }
    if (ok) {
      Strategy s;
      auto spec_of = [&](const std::vector<int>& dims) {
        ShardingSpec sp = ShardingSpec::replicated(static_cast<int64_t>(dims.size()));
        for (size_t d = 0; d < dims.size(); ++d)
          if (dims[d] >= 0) sp.dims[d] = fa[dims[d]];
        return sp;
      };
      s.output = spec_of(r.result);
      uint8_t used = 0;
      for (int f = 0; f < nf; ++f) {
        used |= fa[f];
        if (r.contracted[f]) s.output.partial |= fa[f];
      }
      for (const auto& od : r.operands) s.operands.push_back(spec_of(od));
      s.name = s.output.to_string();
      if (!s.operands.empty()) s.name += " = " + spec_list(s.operands);
      const double shards = static_cast<double>(axes_size(used, ms));
      const double bytes = node_memory_traffic(g, id, fused, [&](ValueId v, int k) {
        return k < 0 ? local_bytes(n.type, s.output, ms)
                     : local_bytes(g.type(v), s.operands[static_cast<size_t>(k)], ms);
      });
      s.compute = n.op == OpKind::kParameter
                      ? 0.0
                      : compute_time(device, n.type.dtype, flops / shards, bytes);
      s.memory = fused[id] ? 0.0 : local_bytes(n.type, s.output, ms);
      s.native = s.output;
      // A partial output may also be resolved here, once for all users.
      if (s.output.partial) {
        const uint8_t p = s.output.partial;
        const double bytes_local = local_bytes(n.type, s.output, ms);
        Strategy ar = s;
        ar.output.partial = 0;
        ar.comm = collective_time(mesh, Collective::kAllReduce, p, bytes_local);
        ar.name += " [all-reduce " + axes_to_string(p) + "]";
        out.push_back(ar);
        if (p != kBothAxes && opt.prefer_reduce_scatter) {
          for (int64_t d = 0; d < n.type.rank(); ++d) {
            const uint8_t cur = s.output.dims[d];
            const bool appendable = cur == 0 || (cur == kAxis0 && p == kAxis1);
            if (!appendable || (!opt.allow_mixed_mesh_shape && cur != 0)) continue;
            ShardingSpec rs_spec = s.output;
            rs_spec.dims[d] |= p;
            rs_spec.partial = 0;
            if (!rs_spec.validate(n.type.shape, ms).ok()) continue;
            Strategy rs = s;
            rs.output = rs_spec;
            rs.comm = collective_time(mesh, Collective::kReduceScatter, p, bytes_local);
            rs.memory = local_bytes(n.type, rs_spec, ms);
            rs.name = rs_spec.to_string() + " = " + spec_list(rs.operands) + " [reduce-scatter " +
                      axes_to_string(p) + "]";
            out.push_back(std::move(rs));
          }
        }
      }
      out.push_back(std::move(s));
    }
    // Next combination.
    size_t k = 0;
    for (; k < axes.size(); ++k) {
      if (++choice[k] < nf) break;
      choice[k] = -1;
    }
    if (k == axes.size()) break;
  }
  return out;
}

// ---- follow rules --------------------------------------------------------------------------

bool linear_unary(OpKind op) {
  return op == OpKind::kNeg || op == OpKind::kStopGradient || op == OpKind::kConvert;
}

// Maps a reshape's operand layout to its result layout. Dims are matched in groups of equal
// element count; a 1:1 group keeps its split; otherwise only a split of the group's outermost
// operand dim carries over, to the outermost result dim, when it divides it. `required` is the
// operand layout the mapping uses (splits that cannot carry over are dropped there too).
void map_reshape(const Shape& in, const Shape& out, const ShardingSpec& s, const MeshShape& mesh,
                 ShardingSpec* required, ShardingSpec* result) {
  *required = s;
  *result = ShardingSpec::replicated(static_cast<int64_t>(out.size()));
  result->partial = s.partial;
  size_t i = 0, j = 0;
  while (i < in.size() || j < out.size()) {
    // Skip extent-1 dims on either side (they cannot be split).
    if (i < in.size() && in[i] == 1 && !(j < out.size() && out[j] == 1)) {
      required->dims[i++] = 0;
      continue;
    }
    if (j < out.size() && out[j] == 1 && !(i < in.size() && in[i] == 1)) {
      ++j;
      continue;
    }
    if (i >= in.size() || j >= out.size()) break;
    const size_t i0 = i, j0 = j;
    int64_t pi = in[i++], pj = out[j++];
    while (pi != pj) {
      if (pi < pj && i < in.size())
        pi *= in[i++];
      else if (pj < pi && j < out.size())
        pj *= out[j++];
      else
        break;
    }
    const uint8_t split = s.dims[i0];
    const int64_t n = axes_size(split, mesh);
    const bool one_to_one = i - i0 == 1 && j - j0 == 1;
    if (split && (one_to_one || out[j0] % n == 0))
      result->dims[j0] = split;
    else
      required->dims[i0] = 0;
    for (size_t k = i0 + 1; k < i; ++k) required->dims[k] = 0;
  }
}

}  // namespace

int resolve_batch_axis(const ShardingOptions& options, const MeshShape& mesh) {
  int axis = options.force_batch_dim_to_mesh_dim;
  if (axis == ShardingOptions::kAutoBatchAxis) {
    if (mesh[0] > 1 && mesh[1] > 1) return 0;
    return mesh[0] > 1 ? 0 : (mesh[1] > 1 ? 1 : -1);
  }
  if (axis >= 0 && mesh[axis] == 1) return -1;
  return axis;
}

Result<Strategy> follow_strategy(const Graph& g, ValueId id, ValueId leader,
                                 const ShardingSpec& leader_spec, const MeshShape& mesh) {
  const Node& n = g.node(id);
  const OpFamily family = op_info(n.op).family;
  Strategy s;
  const int nops = static_cast<int>(n.operands.size());
  s.operands.assign(static_cast<size_t>(nops), ShardingSpec{});
  auto leader_index = [&]() {
    for (int k = 0; k < nops; ++k)
      if (n.operands[k] == leader) return k;
    return -1;
  };
  const int li = leader_index();
  if (li < 0) return internal_error("follow_strategy: leader is not an operand");
  const ShardingSpec& ls = leader_spec;
  switch (family) {
    case OpFamily::kUnary: {
      const bool linear =
          linear_unary(n.op) && is_float(g.type(n.operands[0]).dtype) && is_float(n.type.dtype);
      s.operands[0] = linear ? ls : ls.without_partial();
      s.output = s.operands[0];
      break;
    }
    case OpFamily::kBinary:
    case OpFamily::kSelect: {
      ShardingSpec base = ls.without_partial();
      bool keep_partial = false;
      if (ls.partial) {
        if (n.op == OpKind::kAdd || n.op == OpKind::kSub) keep_partial = true;
        if (n.op == OpKind::kMul) keep_partial = true;             // the other operand non-partial
        if (n.op == OpKind::kDiv && li == 0) keep_partial = true;  // partial numerator only
      }
      for (int k = 0; k < nops; ++k) {
        s.operands[k] = base;
        if (keep_partial && (k == li || n.op == OpKind::kAdd || n.op == OpKind::kSub))
          s.operands[k].partial = ls.partial;
      }
      if (n.op == OpKind::kCompare || n.op == OpKind::kSelect) {
        // Predicates and selected values share one layout, never partial.
        for (auto& o : s.operands) o = base;
      }
      s.output = base;
      if (keep_partial) s.output.partial = ls.partial;
      break;
    }
    case OpFamily::kMovement:
      switch (n.op) {
        case OpKind::kBroadcast: {
          const auto& dims = n.attr<BroadcastAttrs>().dims;
          const Shape& in = g.type(n.operands[0]).shape;
          s.operands[0] = ls;
          s.output = ShardingSpec::replicated(n.type.rank());
          s.output.partial = ls.partial;
          for (size_t i = 0; i < dims.size(); ++i) {
            if (in[i] == 1 && n.type.shape[dims[i]] != 1)
              s.operands[0].dims[i] = 0;
            else
              s.output.dims[dims[i]] = ls.dims[i];
          }
          break;
        }
        case OpKind::kReshape:
          map_reshape(g.type(n.operands[0]).shape, n.type.shape, ls, mesh, &s.operands[0],
                      &s.output);
          break;
        case OpKind::kTranspose: {
          const auto& perm = n.attr<TransposeAttrs>().perm;
          s.operands[0] = ls;
          s.output = ShardingSpec::replicated(n.type.rank());
          s.output.partial = ls.partial;
          for (size_t i = 0; i < perm.size(); ++i) s.output.dims[i] = ls.dims[perm[i]];
          break;
        }
        case OpKind::kSlice:
        case OpKind::kPad:
        case OpKind::kConcat: {
          ShardingSpec req = ls;
          const Shape& in = g.type(n.operands[li]).shape;
          for (int64_t d = 0; d < n.type.rank(); ++d)
            if (in[d] != n.type.shape[d] ||
                (n.op == OpKind::kConcat && d == n.attr<ConcatAttrs>().dim))
              req.dims[d] = 0;
          if (n.op == OpKind::kPad && n.attr<PadAttrs>().value != 0.0) req.partial = 0;
          for (int k = 0; k < nops; ++k) s.operands[k] = req;
          s.output = req;
          break;
        }
        default: return internal_error(cat("no follow rule for ", op_name(n.op)));
      }
      break;
    case OpFamily::kReduce: {
      const auto& rd = n.attr<ReduceAttrs>().dims;
      ShardingSpec req = ls;
      if (n.op == OpKind::kReduceMax) {
        req.partial = 0;
        for (int64_t d : rd) req.dims[d] = 0;
      }
      s.operands[0] = req;
      s.output = ShardingSpec::replicated(n.type.rank());
      s.output.partial = req.partial;
      int64_t out = 0;
      for (int64_t d = 0; d < req.rank(); ++d) {
        if (std::find(rd.begin(), rd.end(), d) != rd.end())
          s.output.partial |= req.dims[d];
        else
          s.output.dims[out++] = req.dims[d];
      }
      break;
    }
    default: return internal_error(cat("no follow rule for ", op_name(n.op)));
  }
  s.name = s.output.to_string() + " <- " + spec_list(s.operands);
  s.native = s.output;
  return s;
}

Result<std::vector<NodeStrategies>> generate_strategies(const Graph& g, const MeshLinks& mesh,
                                                        const DeviceSpec& device,
                                                        const ShardingOptions& options) {
  const MeshShape ms = mesh.shape();
  const int batch_axis = resolve_batch_axis(options, ms);
  const std::vector<char> fused = fused_values(g, options.fusion_group);
  std::vector<NodeStrategies> out(static_cast<size_t>(g.size()));
  // The enumerated node each follow chain starts from.
  std::vector<ValueId> root(static_cast<size_t>(g.size()), kNoValue);
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g.node(id);
    NodeStrategies& ns = out[id];
    const OpFamily family = op_info(n.op).family;
    if (family == OpFamily::kCollective)
      return invalid_argument(cat("node ", value_ref(g, id), " is a collective: auto-sharding ",
                                  "takes a single-device graph"));
    if (n.op == OpKind::kConstant || n.op == OpKind::kIota) {
      ns.kind = StrategyKind::kFree;
      continue;
    }
    if (n.op == OpKind::kParameter && n.name.size() > 7 &&
        n.name.compare(n.name.size() - 7, 7, ".adam_v") == 0) {
      const ValueId m = g.find(n.name.substr(0, n.name.size() - 7) + ".adam_m");
      if (m != kNoValue && m < id && g.type(m) == n.type &&
          out[m].kind == StrategyKind::kEnumerated) {
        ns.kind = StrategyKind::kFollow;
        ns.leader = m;
        for (const Strategy& s : out[m].strategies) {
          Strategy f = s;
          f.name = s.output.to_string() + " (as " + value_ref(g, m) + ")";
          ns.strategies.push_back(std::move(f));
        }
        root[id] = root[m];
        continue;
      }
    }
    if (is_enumerated(n.op)) {
      ns.kind = StrategyKind::kEnumerated;
      int axis = batch_axis;
      // A batch that does not divide the data axis falls back to unconstrained strategies.
      if (n.op == OpKind::kParameter && axis >= 0 && n.type.rank() > 0 &&
          n.type.shape[0] % ms[axis] != 0)
        axis = -1;
      ns.strategies = enumerate(g, id, mesh, device, options, axis, fused);
      if (ns.strategies.empty() && !options.allow_replicated_compute) {
        // E.g. a product too small to split over every axis: let it repeat work.
        ShardingOptions relaxed = options;
        relaxed.allow_replicated_compute = true;
        ns.strategies = enumerate(g, id, mesh, device, relaxed, axis, fused);
      }
      if (ns.strategies.empty()) return internal_error(cat("no strategy for ", value_ref(g, id)));
      root[id] = id;
      continue;
    }
    // Follow-ops: free if every operand is free. Otherwise follow, in order of preference:
    // an operand that descends from a parameter of this node's shape (a weight or optimizer
    // state being updated: the update keeps the parameter's layout, as its aliased output
    // must, and pulls the gradient into it, Alpa's rule for donated outputs); else the operand
    // with the most strategies (ties: the first).
    ValueId leader = kNoValue;
    int best_rank = -1;
    size_t best = 0;
    for (ValueId o : n.operands) {
      if (out[o].kind == StrategyKind::kFree) continue;
      if (n.op == OpKind::kSelect && o == n.operands[0] && n.operands.size() == 3 &&
          (out[n.operands[1]].kind != StrategyKind::kFree ||
           out[n.operands[2]].kind != StrategyKind::kFree))
        continue;  // prefer a selected value over the predicate
      const ValueId r = root[o];
      const int rank =
          (r != kNoValue && g.node(r).op == OpKind::kParameter && g.type(r).shape == n.type.shape)
              ? 1
              : 0;
      if (leader == kNoValue || rank > best_rank ||
          (rank == best_rank && out[o].strategies.size() > best)) {
        leader = o;
        best_rank = rank;
        best = out[o].strategies.size();
      }
    }
    if (leader == kNoValue) {
      ns.kind = StrategyKind::kFree;
      continue;
    }
    ns.kind = StrategyKind::kFollow;
    ns.leader = leader;
    root[id] = root[leader];
    const double flops = node_flops(g, id);
    for (const Strategy& ls : out[leader].strategies) {
      ALPA_ASSIGN_OR_RETURN(Strategy s, follow_strategy(g, id, leader, ls.output, ms));
      s.memory = fused[id] ? 0.0 : local_bytes(n.type, s.output, ms);
      const double bytes = node_memory_traffic(g, id, fused, [&](ValueId v, int k) {
        return k < 0 ? local_bytes(n.type, s.output, ms)
                     : local_bytes(g.type(v), s.operands[static_cast<size_t>(k)], ms);
      });
      s.compute = compute_time(device, n.type.dtype,
                               flops / static_cast<double>(s.output.shards(ms)), bytes);
      ns.strategies.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace alpa
