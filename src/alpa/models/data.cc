#include "alpa/models/data.h"

#include <numeric>

#include "alpa/ir/param_init.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

Status expect_inputs(const std::vector<DataInput>& slots, std::vector<std::string> names) {
  std::vector<std::string> have;
  for (const DataInput& s : slots) have.push_back(s.name);
  if (have != names) {
    std::string want;
    for (const std::string& n : names) want += " " + n;
    return internal_error(cat("training graph inputs do not match the model's:", want));
  }
  return ok_status();
}

class GptData : public DataSource {
 public:
  GptData(int64_t batch, int64_t seq, int64_t vocab, uint64_t seed)
      : batch_(batch), seq_(seq), vocab_(vocab), seed_(seed) {
    Rng rng(seed ^ 0x5eed0f9e7ull);
    for (auto& perm : perms_) {
      perm.resize(static_cast<size_t>(vocab));
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t i = vocab - 1; i > 0; --i)
        std::swap(perm[i], perm[rng.below(static_cast<uint64_t>(i + 1))]);
    }
  }
  std::vector<std::vector<float>> batch(int64_t step) override {
    Rng rng = Rng(seed_).fork(static_cast<uint64_t>(step) + 1);
    std::vector<float> tokens(static_cast<size_t>(batch_ * seq_)), labels(tokens.size());
    for (int64_t b = 0; b < batch_; ++b) {
      const auto& perm = perms_[rng.below(2)];
      int64_t tok = static_cast<int64_t>(rng.below(static_cast<uint64_t>(vocab_)));
      for (int64_t t = 0; t < seq_; ++t) {
        const int64_t next = perm[tok];
        tokens[b * seq_ + t] = static_cast<float>(tok);
        labels[b * seq_ + t] = static_cast<float>(next);
        tok = next;
      }
    }
    return {std::move(tokens), std::move(labels)};
  }

 private:
  int64_t batch_, seq_, vocab_;
  uint64_t seed_;
  std::vector<int64_t> perms_[2];
};

// Per input, whether each of `batch` rows is in its ranges.
std::vector<std::vector<char>> row_mask(const std::vector<RowRanges>& rows, int64_t batch) {
  std::vector<std::vector<char>> mask(rows.size(), std::vector<char>(static_cast<size_t>(batch)));
  for (size_t i = 0; i < rows.size(); ++i)
    for (const auto& [lo, hi] : rows[i])
      for (int64_t r = std::max<int64_t>(lo, 0); r < std::min(hi, batch); ++r)
        mask[i][static_cast<size_t>(r)] = 1;
  return mask;
}

// Random windows of a token dataset.
class TokenWindows : public DataSource {
 public:
  TokenWindows(const TokenDataset& ds, Split split, int64_t batch, int64_t seq, uint64_t seed)
      : ds_(ds), split_(split), batch_(batch), seq_(seq), seed_(seed) {}
  std::vector<std::vector<float>> batch(int64_t step) override {
    Rng rng = Rng(seed_ ^ 0xda7a5e7ull).fork(static_cast<uint64_t>(step) + 1);
    std::vector<float> tokens(static_cast<size_t>(batch_ * seq_)), labels(tokens.size());
    const auto windows = static_cast<uint64_t>(ds_.size(split_) - seq_);
    for (int64_t b = 0; b < batch_; ++b) {
      const auto o = static_cast<int64_t>(rng.below(windows));  // drawn for every row
      const bool want_tokens = wanted(0, b), want_labels = wanted(1, b);
      rows_read_ += want_tokens + want_labels;
      for (int64_t t = 0; t < seq_; ++t) {
        if (want_tokens) tokens[b * seq_ + t] = static_cast<float>(ds_.token(split_, o + t));
        if (want_labels) labels[b * seq_ + t] = static_cast<float>(ds_.token(split_, o + t + 1));
      }
    }
    return {std::move(tokens), std::move(labels)};
  }
  void only_rows(std::vector<RowRanges> rows) override { mask_ = row_mask(rows, batch_); }

 private:
  bool wanted(size_t input, int64_t row) const {
    return mask_.empty() || mask_[input][static_cast<size_t>(row)];
  }
  const TokenDataset& ds_;
  Split split_;
  int64_t batch_, seq_;
  uint64_t seed_;
  std::vector<std::vector<char>> mask_;  // per input and row (empty: every row)
};

class MlpData : public DataSource {
 public:
  MlpData(int64_t batch, int64_t input, int64_t classes, uint64_t seed)
      : batch_(batch), input_(input), classes_(classes), seed_(seed) {
    Rng rng(seed ^ 0x7eac4e5ull);
    teacher_ = sample_init(ParamInit::kNormal, 1.0, rng, input * classes);
  }
  std::vector<std::vector<float>> batch(int64_t step) override {
    Rng rng = Rng(seed_).fork(static_cast<uint64_t>(step) + 1);
    std::vector<float> x = sample_init(ParamInit::kNormal, 1.0, rng, batch_ * input_);
    std::vector<float> labels(static_cast<size_t>(batch_));
    for (int64_t b = 0; b < batch_; ++b) {
      int64_t best = 0;
      double best_v = -1e300;
      for (int64_t c = 0; c < classes_; ++c) {
        double v = 0;
        for (int64_t i = 0; i < input_; ++i) v += x[b * input_ + i] * teacher_[i * classes_ + c];
        if (v > best_v) best_v = v, best = c;
      }
      labels[b] = static_cast<float>(best);
    }
    return {std::move(x), std::move(labels)};
  }

 private:
  int64_t batch_, input_, classes_;
  uint64_t seed_;
  std::vector<float> teacher_;
};

// Images whose label is the argmax of a fixed random map of their channel means.
class ConvNetData : public DataSource {
 public:
  ConvNetData(const Shape& x, int64_t classes, uint64_t seed)
      : x_(x), classes_(classes), seed_(seed) {
    Rng rng(seed ^ 0xc0de5ull);
    teacher_ = sample_init(ParamInit::kNormal, 1.0, rng, x[1] * classes);
  }
  std::vector<std::vector<float>> batch(int64_t step) override {
    Rng rng = Rng(seed_).fork(static_cast<uint64_t>(step) + 1);
    std::vector<float> x = sample_init(ParamInit::kNormal, 1.0, rng, num_elements(x_));
    const int64_t b = x_[0], c = x_[1], hw = x_[2] * x_[3];
    std::vector<float> labels(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      int64_t best = 0;
      double best_v = -1e300;
      for (int64_t k = 0; k < classes_; ++k) {
        double v = 0;
        for (int64_t ch = 0; ch < c; ++ch) {
          double mean = 0;
          for (int64_t p = 0; p < hw; ++p) mean += x[(i * c + ch) * hw + p];
          v += mean / static_cast<double>(hw) * teacher_[ch * classes_ + k];
        }
        if (v > best_v) best_v = v, best = k;
      }
      labels[i] = static_cast<float>(best);
    }
    return {std::move(x), std::move(labels)};
  }

 private:
  Shape x_;
  int64_t classes_;
  uint64_t seed_;
  std::vector<float> teacher_;
};

// Images of one of `classes` fixed random patterns (one per class, unit normal pixels) plus
// noise of half that scale; the label is the pattern's class, drawn uniformly.
class PatternImages : public DataSource {
 public:
  PatternImages(const Shape& x, int64_t classes, uint64_t seed)
      : x_(x), classes_(classes), seed_(seed) {
    Rng rng(seed ^ 0x9a77e4full);
    patterns_ = sample_init(ParamInit::kNormal, 1.0, rng, classes * num_elements(x) / x[0]);
  }
  std::vector<std::vector<float>> batch(int64_t step) override {
    Rng rng = Rng(seed_).fork(static_cast<uint64_t>(step) + 1);
    std::vector<float> x = sample_init(ParamInit::kNormal, 0.5, rng, num_elements(x_));
    const int64_t b = x_[0], per_image = num_elements(x_) / b;
    std::vector<float> labels(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      const int64_t k = static_cast<int64_t>(rng.below(static_cast<uint64_t>(classes_)));
      labels[i] = static_cast<float>(k);
      for (int64_t p = 0; p < per_image; ++p) x[i * per_image + p] += patterns_[k * per_image + p];
    }
    return {std::move(x), std::move(labels)};
  }

 private:
  Shape x_;
  int64_t classes_;
  uint64_t seed_;
  std::vector<float> patterns_;
};

// Samples of a directory of arrays: the step's rows drawn without replacement, epoch by epoch,
// in an order shuffled from (seed, epoch).
class ArrayBatches : public DataSource {
 public:
  ArrayBatches(const ArrayDataset& ds, Split split, size_t inputs, int64_t batch, uint64_t seed)
      : ds_(ds), split_(split), inputs_(inputs), batch_(batch), seed_(seed) {}
  std::vector<std::vector<float>> batch(int64_t step) override {
    const size_t n_inputs = inputs_;
    std::vector<std::vector<float>> out(n_inputs);
    for (size_t i = 0; i < n_inputs; ++i)
      out[i].resize(static_cast<size_t>(batch_ * array(i).row_size()));
    const int64_t rows = array(0).rows();
    for (int64_t b = 0; b < batch_; ++b) {
      const int64_t g = step * batch_ + b;
      const int64_t row = order(g / rows)[static_cast<size_t>(g % rows)];
      for (size_t i = 0; i < n_inputs; ++i)
        if (mask_.empty() || mask_[i][static_cast<size_t>(b)]) {
          array(i).read_row(row, out[i].data() + b * array(i).row_size());
          ++rows_read_;
        }
    }
    return out;
  }
  void only_rows(std::vector<RowRanges> rows) override { mask_ = row_mask(rows, batch_); }

 private:
  const NpyArray& array(size_t i) const {
    return split_ == Split::kTrain ? ds_.train(i) : *ds_.validation(i);
  }
  const std::vector<int64_t>& order(int64_t epoch) {
    if (epoch != epoch_) {
      const int64_t rows = array(0).rows();
      order_.resize(static_cast<size_t>(rows));
      for (int64_t r = 0; r < rows; ++r) order_[static_cast<size_t>(r)] = r;
      Rng rng = Rng(seed_ ^ 0xa77a5ull).fork(static_cast<uint64_t>(epoch) + 1);
      for (int64_t r = rows - 1; r > 0; --r)
        std::swap(order_[static_cast<size_t>(r)],
                  order_[static_cast<size_t>(rng.below(static_cast<uint64_t>(r) + 1))]);
      epoch_ = epoch;
    }
    return order_;
  }

  const ArrayDataset& ds_;
  Split split_;
  size_t inputs_;
  int64_t batch_;
  uint64_t seed_;
  int64_t epoch_ = -1;
  std::vector<int64_t> order_;
  std::vector<std::vector<char>> mask_;  // per input and row (empty: every row)
};

class FixedData : public DataSource {
 public:
  FixedData(const std::vector<DataInput>& inputs, uint64_t seed) {
    Rng rng(seed ^ 0xf17edull);
    for (const DataInput& in : inputs)
      values_.push_back(sample_init(in.attrs.init, in.attrs.scale, rng, in.type.num_elements()));
  }
  std::vector<std::vector<float>> batch(int64_t) override { return values_; }

 private:
  std::vector<std::vector<float>> values_;
};

}  // namespace

Result<std::unique_ptr<DataSource>> make_token_data_source(const ModelSpec& spec,
                                                           const std::vector<DataInput>& slots,
                                                           const TokenDataset& dataset, Split split,
                                                           uint64_t seed) {
  if (spec.family != ModelFamily::kGpt && spec.family != ModelFamily::kMoe)
    return invalid_argument(cat("--data gives token sequences; ", spec.name, " does not take them"),
                            "train a GPT or MoE model on a token dataset");
  ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"tokens", "labels"}));
  const int64_t vocab = spec.family == ModelFamily::kGpt ? spec.gpt.vocab : spec.moe.vocab;
  if (dataset.info().vocab_size > vocab)
    return invalid_argument(
        cat("the dataset's vocabulary has ", dataset.info().vocab_size, " symbols but ", spec.name,
            "'s has ", vocab),
        cat("add --vocab ", dataset.info().vocab_size, " (or larger) to the model flags"));
  const Shape& s = slots[0].type.shape;
  if (dataset.size(split) <= s[1])
    return invalid_argument(
        cat("the dataset's ", split == Split::kTrain ? "training" : "validation", " split has ",
            dataset.size(split), " tokens, not more than one sequence of ", s[1]),
        "tokenize more text, or shorten --seq");
  return std::unique_ptr<DataSource>(
      std::make_unique<TokenWindows>(dataset, split, s[0], s[1], seed));
}

Result<std::unique_ptr<DataSource>> make_array_data_source(const std::vector<DataInput>& slots,
                                                           const ArrayDataset& dataset, Split split,
                                                           uint64_t seed) {
  if (split == Split::kValidation && dataset.validation(0) == nullptr)
    return invalid_argument("the arrays have no held-out samples for validation",
                            "save them as <input>.val.npy beside each <input>.npy");
  for (size_t i = 0; i < slots.size(); ++i) {
    const NpyArray& a = split == Split::kTrain ? dataset.train(i) : *dataset.validation(i);
    const Shape& want = slots[i].type.shape;
    std::vector<int64_t> per_sample(a.shape().begin() + 1, a.shape().end());
    std::vector<int64_t> want_sample(want.begin() + (want.empty() ? 0 : 1), want.end());
    if (per_sample != want_sample) {
      std::string got = "(", need = "(";
      for (int64_t e : per_sample) got += cat(e, ", ");
      for (int64_t e : want_sample) need += cat(e, ", ");
      return invalid_argument(cat(a.path(), ": each sample has shape ", got, "), but the model's ",
                                  "input '", slots[i].name, "' takes samples of shape ", need, ")"),
                              "save the samples along dim 0 with the model input's other dims, "
                              "or change the model flags");
    }
    if (!want.empty() && want[0] != slots[0].type.shape[0])
      return invalid_argument("the model's inputs hold different numbers of samples per step");
  }
  if (slots.empty() || slots[0].type.shape.empty())
    return invalid_argument("the model has no batched input to read arrays into");
  return std::unique_ptr<DataSource>(
      std::make_unique<ArrayBatches>(dataset, split, slots.size(), slots[0].type.shape[0], seed));
}

Result<std::unique_ptr<DataSource>> make_data_source(const ModelSpec& spec, const Graph& graph,
                                                     uint64_t seed) {
  std::vector<DataInput> inputs;
  for (ValueId id : graph.parameters(ParamRole::kInput))
    inputs.push_back({graph.node(id).name, graph.type(id), graph.node(id).attr<ParameterAttrs>()});
  return make_data_source(spec, inputs, seed);
}

Result<std::unique_ptr<DataSource>> make_data_source(const ModelSpec& spec,
                                                     const std::vector<DataInput>& slots,
                                                     uint64_t seed) {
  switch (spec.family) {
    case ModelFamily::kGpt: {
      ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"tokens", "labels"}));
      const Shape& s = slots[0].type.shape;
      return std::unique_ptr<DataSource>(
          std::make_unique<GptData>(s[0], s[1], spec.gpt.vocab, seed));
    }
    case ModelFamily::kMlp: {
      ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"x", "labels"}));
      const Shape& s = slots[0].type.shape;
      return std::unique_ptr<DataSource>(
          std::make_unique<MlpData>(s[0], s[1], spec.mlp.classes, seed));
    }
    case ModelFamily::kConvNet: {
      ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"x", "labels"}));
      return std::unique_ptr<DataSource>(
          std::make_unique<ConvNetData>(slots[0].type.shape, spec.convnet.classes, seed));
    }
    case ModelFamily::kMoe: {
      ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"tokens", "labels"}));
      const Shape& s = slots[0].type.shape;
      return std::unique_ptr<DataSource>(
          std::make_unique<GptData>(s[0], s[1], spec.moe.vocab, seed));
    }
    case ModelFamily::kWResNet: {
      ALPA_RETURN_IF_ERROR(expect_inputs(slots, {"x", "labels"}));
      return std::unique_ptr<DataSource>(
          std::make_unique<PatternImages>(slots[0].type.shape, spec.wresnet.classes, seed));
    }
    case ModelFamily::kFile:
      return std::unique_ptr<DataSource>(std::make_unique<FixedData>(slots, seed));
  }
  return internal_error("unknown model family");
}

}  // namespace alpa
