#include "alpa/ir/verifier.h"

#include <unordered_set>

namespace alpa {

Status verify(const Graph& g) {
  std::unordered_set<std::string> names;
  for (ValueId id = 0; id < g.size(); ++id) {
    const Node& n = g.node(id);
    const std::string where = cat("node ", value_ref(g, id), " (", op_name(n.op), ")");
    if (!n.name.empty()) {
      if (!is_valid_node_name(n.name))
        return invalid_argument(cat(where, ": invalid name '", n.name, "'"));
      if (!names.insert(n.name).second)
        return invalid_argument(cat(where, ": name '", n.name, "' is used twice"));
    }
    std::vector<TensorType> types;
    for (ValueId op : n.operands) {
      if (op < 0 || op >= id)
        return invalid_argument(cat(where, ": operand ", op, " is not defined before use"));
      types.push_back(g.type(op));
    }
    Result<TensorType> t = infer_result_type(n.op, n.attrs, types, &n.type);
    if (!t.ok()) return t.status().with_context(where);
    if (!shape_within_limits(n.type.shape))
      return invalid_argument(cat(where, ": its type ", n.type.to_string(), " has more than ",
                                  kMaxTensorRank, " dims or more than 2^48 elements"),
                              "no tensor is that large; check the model's sizes (--batch, ...)");
    if (n.op == OpKind::kConstant || n.op == OpKind::kPad) {
      // Constants and pad values must be finite or +-inf; NaN literals are rejected.
      const auto& vals = n.op == OpKind::kConstant ? n.attr<ConstantAttrs>().values
                                                   : std::vector<double>{n.attr<PadAttrs>().value};
      for (double v : vals)
        if (v != v) return invalid_argument(cat(where, ": NaN literal"));
    }
  }
  std::unordered_set<std::string> output_names;
  std::unordered_set<ValueId> aliased;
  for (const GraphOutput& o : g.outputs()) {
    const std::string where = cat("output '", o.name, "'");
    if (!is_valid_node_name(o.name))
      return invalid_argument(cat(where, ": invalid output name"),
                              "names start with a letter or '_' and use [A-Za-z0-9_.]");
    if (!output_names.insert(o.name).second)
      return invalid_argument(cat(where, " is declared twice"));
    if (o.value < 0 || o.value >= g.size())
      return invalid_argument(cat(where, " refers to an undefined value"));
    if (o.alias != kNoValue) {
      if (o.alias < 0 || o.alias >= g.size() || g.node(o.alias).op != OpKind::kParameter)
        return invalid_argument(
            cat(where, " aliases ", value_ref(g, o.alias), ", which is not a parameter"));
      if (g.type(o.alias) != g.type(o.value))
        return invalid_argument(cat(where, " has type ", g.type(o.value).to_string(),
                                    " but aliases ", value_ref(g, o.alias), " of type ",
                                    g.type(o.alias).to_string()));
      if (!aliased.insert(o.alias).second)
        return invalid_argument(cat(value_ref(g, o.alias), " is aliased by two outputs"));
    }
  }
  return ok_status();
}

}  // namespace alpa
