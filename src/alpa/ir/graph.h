// Graph: a static-shape SSA computation.
//
// IR semantics:
// - A Graph is a list of Nodes in definition order; a node's id is its index. Operands always
//   refer to earlier nodes, so the list is a topological order and the executor's schedule.
// - Every value has a static TensorType. Elementwise ops need operands of one type;
//   broadcasting is explicit (broadcast op). Reductions remove the reduced dims.
// - Parameters are the graph's inputs, in definition order. Their role says whether a value is
//   a trained weight, data fed per step, or training state (optimizer moments, step count).
// - Outputs are named. An output may alias a parameter: it is that parameter's new value
//   after one execution (weights and optimizer state in a training step), so a runtime can
//   reuse the parameter's buffer and a planner must give both the same layout.
// - Node names are optional; when present they are unique, start with a letter or '_' and use
//   [A-Za-z0-9_.] (they print as %name; unnamed nodes print as %<id>).
//
// A Graph is plain data: passes read one and build another, they do not edit in place.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "alpa/ir/attrs.h"
#include "alpa/ir/op.h"
#include "alpa/ir/types.h"

namespace alpa {

using ValueId = int32_t;
inline constexpr ValueId kNoValue = -1;

struct Node {
  OpKind op = OpKind::kParameter;
  TensorType type;
  std::vector<ValueId> operands;
  Attrs attrs;
  std::string name;

  template <typename T>
  const T& attr() const {
    return std::get<T>(attrs);
  }
  friend bool operator==(const Node&, const Node&) = default;
};

struct GraphOutput {
  std::string name;
  ValueId value = kNoValue;
  ValueId alias = kNoValue;  // parameter whose new value this is, or kNoValue
  friend bool operator==(const GraphOutput&, const GraphOutput&) = default;
};

class Graph {
 public:
  explicit Graph(std::string name = "main") : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void set_name(std::string name) { name_ = std::move(name); }

  int32_t size() const { return static_cast<int32_t>(nodes_.size()); }
  const Node& node(ValueId id) const { return nodes_[static_cast<size_t>(id)]; }
  const TensorType& type(ValueId id) const { return node(id).type; }
  const std::vector<Node>& nodes() const { return nodes_; }
  const std::vector<GraphOutput>& outputs() const { return outputs_; }

  // Appends a node without checking it (the Builder and the parser check first; the verifier
  // checks whole graphs). Returns its id.
  ValueId add_node(Node node);
  void add_output(GraphOutput output) { outputs_.push_back(std::move(output)); }
  void set_outputs(std::vector<GraphOutput> outputs) { outputs_ = std::move(outputs); }
  // Gives node `id` a name (empty clears it). The caller keeps names unique.
  void rename(ValueId id, std::string name);

  // Parameter ids in definition order, optionally only those with one role.
  std::vector<ValueId> parameters() const;
  std::vector<ValueId> parameters(ParamRole role) const;
  // Node with this name, or kNoValue.
  ValueId find(std::string_view name) const;
  // Output with this name, or nullptr.
  const GraphOutput* find_output(std::string_view name) const;

  // Structural equality: same name, nodes (op, type, operands, attributes, names) and outputs.
  friend bool operator==(const Graph& a, const Graph& b) {
    return a.name_ == b.name_ && a.nodes_ == b.nodes_ && a.outputs_ == b.outputs_;
  }

 private:
  std::string name_;
  std::vector<Node> nodes_;
  std::vector<GraphOutput> outputs_;
  std::unordered_map<std::string, ValueId> by_name_;
};

// users[v] = nodes that use v as an operand (each once, in increasing order).
std::vector<std::vector<ValueId>> compute_users(const Graph& g);

// The printed reference of a value: "%name" or "%<id>".
std::string value_ref(const Graph& g, ValueId id);

// True if `name` is a valid node name ([A-Za-z_][A-Za-z0-9_.]*).
bool is_valid_node_name(std::string_view name);

}  // namespace alpa
