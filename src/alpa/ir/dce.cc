#include "alpa/ir/dce.h"

namespace alpa {

Graph eliminate_dead_code(const Graph& g, std::vector<ValueId>* remap_out) {
  const int32_t n = g.size();
  std::vector<char> live(static_cast<size_t>(n), 0);
  for (const GraphOutput& o : g.outputs()) {
    live[o.value] = 1;
    if (o.alias != kNoValue) live[o.alias] = 1;
  }
  for (ValueId i = n - 1; i >= 0; --i) {
    if (g.node(i).op == OpKind::kParameter) live[i] = 1;
    if (!live[i]) continue;
    for (ValueId op : g.node(i).operands) live[op] = 1;
  }
  Graph out(g.name());
  std::vector<ValueId> remap(static_cast<size_t>(n), kNoValue);
  for (ValueId i = 0; i < n; ++i) {
    if (!live[i]) continue;
    Node node = g.node(i);
    for (ValueId& op : node.operands) op = remap[op];
    remap[i] = out.add_node(std::move(node));
  }
  for (const GraphOutput& o : g.outputs())
    out.add_output({o.name, remap[o.value], o.alias == kNoValue ? kNoValue : remap[o.alias]});
  if (remap_out != nullptr) *remap_out = std::move(remap);
  return out;
}

}  // namespace alpa
