// Synthetic, learnable training data for the built-in models and for model files.
//
// - GPT and MoE: each sequence follows one of two fixed random permutations of the vocabulary
//   (tokens[t+1] = perm_j[tokens[t]], j chosen per sequence). After the first token the next
//   token is fully determined once the model has seen which permutation is active, so the loss
//   can fall from ln(V) to about ln(2)/T.
// - MLP: labels are argmax(x W_teacher) for a fixed random teacher W.
// - ConvNet: normal images whose label is the argmax of a fixed random linear map of their
//   channel means.
// - Wide-ResNet: each image is one of `classes` fixed random patterns (its label, uniform)
//   plus noise. (The channel-means task is too faint for a network that max-pools and
//   batch-normalises early: the tiny Wide-ResNet learned only the label frequencies.)
// - Model files: every input is sampled from its parameter's init once (a fixed batch, which
//   the model can fit).
// Batches depend only on (seed, step), never on the order of calls.
//
// Real text: a token dataset (data/token_dataset.h) gives GPT and MoE batches of random windows
// of the training split (tokens[o, o+T), labels tokens[o+1, o+T+1), offsets drawn from (seed,
// step)), so a resumed run sees exactly the samples the uninterrupted run would.
#pragma once

#include <memory>
#include <vector>

#include "alpa/data/npy.h"
#include "alpa/data/token_dataset.h"
#include "alpa/ir/graph.h"
#include "alpa/models/registry.h"
#include "alpa/support/status.h"

namespace alpa {

// Rows [begin, end) along dim 0 of one input, sorted and disjoint.
using RowRanges = std::vector<std::pair<int64_t, int64_t>>;

class DataSource {
 public:
  virtual ~DataSource() = default;
  // One vector of values per input parameter of the training graph, in parameter order.
  virtual std::vector<std::vector<float>> batch(int64_t step) = 0;
  // From now on, make only these rows of each input (in order; the others stay zero): a
  // process reads only the samples its devices take. The samples of a row do not change.
  // Sources that generate their data (synthetic) make every row.
  virtual void only_rows(std::vector<RowRanges> rows) { (void)rows; }
  // Rows read from a dataset so far, over all inputs.
  int64_t rows_read() const { return rows_read_; }

 protected:
  int64_t rows_read_ = 0;
};

// A data input of the step that will run: its name, whole type (every micro-batch) and how a
// model file's inputs are sampled.
struct DataInput {
  std::string name;
  TensorType type;
  ParameterAttrs attrs;
};

// The data for `inputs` (in order), matched by name (tokens/labels, x/labels) for the
// built-in models.
Result<std::unique_ptr<DataSource>> make_data_source(const ModelSpec& spec,
                                                     const std::vector<DataInput>& inputs,
                                                     uint64_t seed);
// GPT or MoE batches from a token dataset's `split` (the model's vocabulary must hold the
// dataset's; the split must be longer than one sequence). `dataset` outlives the source.
Result<std::unique_ptr<DataSource>> make_token_data_source(const ModelSpec& spec,
                                                           const std::vector<DataInput>& inputs,
                                                           const TokenDataset& dataset, Split split,
                                                           uint64_t seed);
// Batches of a directory of NumPy arrays (data/npy.h), one per input of `slots` in order (the
// dataset opened with their names): each step's rows drawn without replacement, epoch after
// epoch, in an order shuffled from (seed, epoch); each sample's shape must be the input's.
Result<std::unique_ptr<DataSource>> make_array_data_source(const std::vector<DataInput>& slots,
                                                           const ArrayDataset& dataset, Split split,
                                                           uint64_t seed);
// The same for the input parameters of `graph` (usually the training step).
Result<std::unique_ptr<DataSource>> make_data_source(const ModelSpec& spec, const Graph& graph,
                                                     uint64_t seed);

}  // namespace alpa
