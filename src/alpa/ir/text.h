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
//
// A graph may declare its batch in the header, `graph mlp(batch=8) {`; shape extents and
// numeric attributes may then be products and quotients of numbers and `batch`
// (`f32[batch,16]`, `f32[batch*128,64]`, `values=[1/batch/128]`), evaluated at the declared
// batch or at the one the reader asks for (parse_graph_at): the file is one graph per batch
// size, which is how a model file is micro-batched (docs/ir.md).
#pragma once

#include <optional>
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

struct ParsedGraph {
  Graph graph;
  std::optional<int64_t> declared_batch;  // the header's batch=N (nullopt: none declared)
};
// Parses with `batch` standing for `batch` (nullopt: the declared one). Asking for a batch
// of a graph that declares none is an error that says how to declare it.
Result<ParsedGraph> parse_graph_at(std::string_view text, std::string_view source_name,
                                   std::optional<int64_t> batch);

// The text of `at_batch` (the graph built for `batch` rows) with the batch declared: every
// extent and numeric attribute that differs in `at_other` (the same graph built for `other`
// rows) is written as a multiple or fraction of `batch`, or a number over `batch`, so that
// parse_graph_at(text, _, batch) == at_batch. Errors when the graphs differ in structure or a
// value does not scale with the batch.
Result<std::string> print_graph_with_batch(const Graph& at_batch, int64_t batch,
                                           const Graph& at_other, int64_t other);

// Reads and parses a file.
Result<Graph> load_graph_file(const std::string& path);
Status save_graph_file(const Graph& graph, const std::string& path);

}  // namespace alpa
