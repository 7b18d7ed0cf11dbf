// The text form of a Graph: print and parse, with parse(print(g)) == g for every graph.
//
//   graph mlp {
//     %x = parameter() {role=input, init=normal, scale=1} : f32[8,16]
//     %w = parameter() {init=normal, scale=0.1} : f32[16,4]
//     %2 = dot_general(%x, %w) {lhs_contract=[1], rhs_contract=[0]} : f32[8,4]
//     %3 = mul(%2, %2) : f32[8,4]
//     %4 = reduce_sum(%3) {dims=[0,1]} : f32[]
//     output loss = %4
//   }
//
// - One statement per line: `%id = op(operands) {attrs} : type` or
//   `output name = %id [alias %param]`. `#` and `//` start comments.
// - `%name` is a named node; `%<digits>` is an unnamed one (the number is only a label).
// - Attributes not printed have their default (attrs.h). The result type is always printed;
//   for ops whose type is inferred it is checked against the shape rule.
// Parse errors name file:line:column and, for unknown ops or attributes, the nearest valid
// spelling.
#pragma once

#include <string>
#include <string_view>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

std::string print_graph(const Graph& graph);
// Attributes of one node as "{k=v, ...}" ("" when all are defaults).
std::string print_attrs(const Attrs& attrs);

// Parses and verifies. `source_name` is used in error locations (a file path, say).
Result<Graph> parse_graph(std::string_view text, std::string_view source_name = "<text>");

// Reads and parses a file.
Result<Graph> load_graph_file(const std::string& path);
Status save_graph_file(const Graph& graph, const std::string& path);

}  // namespace alpa
