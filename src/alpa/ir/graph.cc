#include "alpa/ir/graph.h"

#include <cctype>

namespace alpa {

ValueId Graph::add_node(Node node) {
  const ValueId id = size();
  if (!node.name.empty()) by_name_[node.name] = id;
  nodes_.push_back(std::move(node));
  return id;
}

void Graph::rename(ValueId id, std::string name) {
  Node& n = nodes_[static_cast<size_t>(id)];
  if (!n.name.empty()) by_name_.erase(n.name);
  n.name = std::move(name);
  if (!n.name.empty()) by_name_[n.name] = id;
}

std::vector<ValueId> Graph::parameters() const {
  std::vector<ValueId> ids;
  for (ValueId i = 0; i < size(); ++i)
    if (nodes_[i].op == OpKind::kParameter) ids.push_back(i);
  return ids;
}

std::vector<ValueId> Graph::parameters(ParamRole role) const {
  std::vector<ValueId> ids;
  for (ValueId i = 0; i < size(); ++i)
    if (nodes_[i].op == OpKind::kParameter && nodes_[i].attr<ParameterAttrs>().role == role)
      ids.push_back(i);
  return ids;
}

ValueId Graph::find(std::string_view name) const {
  auto it = by_name_.find(std::string(name));
  return it == by_name_.end() ? kNoValue : it->second;
}

const GraphOutput* Graph::find_output(std::string_view name) const {
  for (const GraphOutput& o : outputs_)
    if (o.name == name) return &o;
  return nullptr;
}

std::vector<std::vector<ValueId>> compute_users(const Graph& g) {
  std::vector<std::vector<ValueId>> users(static_cast<size_t>(g.size()));
  for (ValueId i = 0; i < g.size(); ++i) {
    for (ValueId op : g.node(i).operands) {
      auto& u = users[static_cast<size_t>(op)];
      if (u.empty() || u.back() != i) u.push_back(i);
    }
  }
  return users;
}

std::string value_ref(const Graph& g, ValueId id) {
  std::string ref = "%";
  if (id < 0 || id >= g.size()) return ref + "<invalid " + std::to_string(id) + ">";
  const Node& n = g.node(id);
  return ref + (n.name.empty() ? std::to_string(id) : n.name);
}

bool is_valid_node_name(std::string_view name) {
  if (name.empty()) return false;
  if (!(std::isalpha(static_cast<unsigned char>(name[0])) || name[0] == '_')) return false;
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.')) return false;
  return true;
}

}  // namespace alpa
