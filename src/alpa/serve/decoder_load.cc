// Reading a decoder's tensors from a Hugging Face checkpoint, and random weights.
#include <algorithm>
#include <cmath>
#include <utility>

#include "alpa/serve/decoder.h"
#include "alpa/support/rng.h"

namespace alpa::serve {
namespace {

using Range = std::pair<int64_t, int64_t>;

// Reads tensors by name with their shapes checked; errors name the tensor and the file. A
// reader that does not read (`read` false) checks the names and shapes and returns no values.
class TensorReader {
 public:
  TensorReader(const SafetensorsSet& set, bool read) : set_(set), read_(read) {}

  // The whole tensor, or with dim >= 0 the ranges of that dimension (SafetensorsSet::slice).
  Result<std::vector<float>> get(const std::string& name, std::vector<int64_t> shape, int dim = -1,
                                 const std::vector<Range>& ranges = {}) const {
    const SafetensorsEntry* e = set_.find(name);
    if (e == nullptr)
      return not_found(cat(set_.source(), ": tensor \"", name, "\" is missing"),
                       "is the directory a Hugging Face checkpoint of the family config.json "
                       "names?");
    if (e->shape != shape) {
      std::string want, got;
      for (int64_t d : shape) want += cat(want.empty() ? "" : ", ", d);
      for (int64_t d : e->shape) got += cat(got.empty() ? "" : ", ", d);
      return invalid_argument(cat(set_.file_of(name), ": tensor \"", name, "\" has shape [", got,
                                  "], config.json implies [", want, "]"));
    }
    ALPA_RETURN_IF_ERROR(set_.check_values(name));
    if (!read_) return std::vector<float>();
    const bool whole = dim < 0 || (ranges.size() == 1 && ranges[0].first == 0 &&
                                   ranges[0].second == shape[static_cast<size_t>(dim)]);
    return whole ? set_.values(name) : set_.slice(name, dim, ranges);
  }
  bool has(const std::string& name) const { return set_.contains(name); }

 private:
  const SafetensorsSet& set_;
  bool read_;
};

int64_t width(const std::vector<Range>& ranges) {
  int64_t n = 0;
  for (const Range& r : ranges) n += r.second - r.first;
  return n;
}

// nn.Linear tensors ([out, in]) stacked along out, of each the output rows `rows[i]`.
Result<Linear> linear_outputs(const TensorReader& r, const std::vector<std::string>& names,
                              const std::vector<int64_t>& outs, const std::vector<Range>& rows,
                              int64_t in, bool bias) {
  Linear l;
  l.in = in;
  l.out_major = true;
  for (size_t i = 0; i < names.size(); ++i) {
    ALPA_ASSIGN_OR_RETURN(std::vector<float> w,
                          r.get(names[i] + ".weight", {outs[i], in}, 0, {rows[i]}));
    l.w.insert(l.w.end(), w.begin(), w.end());
    if (bias) {
      ALPA_ASSIGN_OR_RETURN(std::vector<float> b,
                            r.get(names[i] + ".bias", {outs[i]}, 0, {rows[i]}));
      l.b.insert(l.b.end(), b.begin(), b.end());
    }
    l.out += rows[i].second - rows[i].first;
  }
  return l;
}

// An nn.Linear ([out, in]) of the inputs `cols`; its bias where `bias` (shard 0 of a sum).
Result<Linear> linear_inputs(const TensorReader& r, const std::string& name, int64_t out,
                             int64_t in, const Range& cols, bool has_bias, bool bias) {
  Linear l;
  l.in = cols.second - cols.first;
  l.out = out;
  l.out_major = true;
  ALPA_ASSIGN_OR_RETURN(l.w, r.get(name + ".weight", {out, in}, 1, {cols}));
  if (has_bias) {
    ALPA_ASSIGN_OR_RETURN(std::vector<float> b, r.get(name + ".bias", {out}));
    if (bias) l.b = std::move(b);
  }
  return l;
}

// GPT-2's Conv1D (weight [in, out]) of the output columns `cols`.
Result<Linear> conv1d_outputs(const TensorReader& r, const std::string& name, int64_t in,
                              int64_t out, const std::vector<Range>& cols) {
  Linear l;
  l.in = in;
  l.out = width(cols);
  l.out_major = false;
  ALPA_ASSIGN_OR_RETURN(l.w, r.get(name + ".weight", {in, out}, 1, cols));
  ALPA_ASSIGN_OR_RETURN(l.b, r.get(name + ".bias", {out}, 0, cols));
  return l;
}

// A Conv1D of the input rows `rows`; its bias where `bias` (shard 0 of a sum).
Result<Linear> conv1d_inputs(const TensorReader& r, const std::string& name, int64_t in,
                             int64_t out, const Range& rows, bool bias) {
  Linear l;
  l.in = rows.second - rows.first;
  l.out = out;
  l.out_major = false;
  ALPA_ASSIGN_OR_RETURN(l.w, r.get(name + ".weight", {in, out}, 0, {rows}));
  ALPA_ASSIGN_OR_RETURN(std::vector<float> b, r.get(name + ".bias", {out}));
  if (bias) l.b = std::move(b);
  return l;
}

Result<Norm> norm(const TensorReader& r, const std::string& name, int64_t n, bool bias) {
  Norm nm;
  ALPA_ASSIGN_OR_RETURN(nm.w, r.get(name + ".weight", {n}));
  if (bias) {
    ALPA_ASSIGN_OR_RETURN(nm.b, r.get(name + ".bias", {n}));
  }
  return nm;
}

Result<DecoderLayer> gpt2_layer(const TensorReader& r, const DecoderConfig& c, const std::string& p,
                                const LayerShare& s) {
  DecoderLayer l;
  const int64_t C = c.hidden;
  ALPA_ASSIGN_OR_RETURN(l.attn_norm, norm(r, p + "ln_1", C, true));
  // c_attn's outputs are [q | k | v].
  ALPA_ASSIGN_OR_RETURN(l.qkv, conv1d_outputs(r, p + "attn.c_attn", C, 3 * C, s.fused_qkv(c)));
  ALPA_ASSIGN_OR_RETURN(l.o, conv1d_inputs(r, p + "attn.c_proj", C, C, s.q, s.sum_bias));
  ALPA_ASSIGN_OR_RETURN(l.mlp_norm, norm(r, p + "ln_2", C, true));
  ALPA_ASSIGN_OR_RETURN(l.up, conv1d_outputs(r, p + "mlp.c_fc", C, c.intermediate, {s.mlp}));
  ALPA_ASSIGN_OR_RETURN(l.down,
                        conv1d_inputs(r, p + "mlp.c_proj", c.intermediate, C, s.mlp, s.sum_bias));
  return l;
}

Result<DecoderLayer> opt_layer(const TensorReader& r, const DecoderConfig& c, const std::string& p,
                               const LayerShare& s) {
  DecoderLayer l;
  const int64_t C = c.hidden, I = c.intermediate;
  ALPA_ASSIGN_OR_RETURN(l.attn_norm, norm(r, p + "self_attn_layer_norm", C, true));
  const std::string a = p + "self_attn.";
  ALPA_ASSIGN_OR_RETURN(l.qkv, linear_outputs(r, {a + "q_proj", a + "k_proj", a + "v_proj"},
                                              {C, C, C}, {s.q, s.kv, s.kv}, C, true));
  ALPA_ASSIGN_OR_RETURN(l.o, linear_inputs(r, a + "out_proj", C, C, s.q, true, s.sum_bias));
  ALPA_ASSIGN_OR_RETURN(l.mlp_norm, norm(r, p + "final_layer_norm", C, true));
  ALPA_ASSIGN_OR_RETURN(l.up, linear_outputs(r, {p + "fc1"}, {I}, {s.mlp}, C, true));
  ALPA_ASSIGN_OR_RETURN(l.down, linear_inputs(r, p + "fc2", C, I, s.mlp, true, s.sum_bias));
  // OPT scales q (bias included) by 1/sqrt(head_dim); attention applies the same scale.
  return l;
}

Result<DecoderLayer> llama_layer(const TensorReader& r, const DecoderConfig& c,
                                 const std::string& p, const LayerShare& s) {
  DecoderLayer l;
  const int64_t C = c.hidden, I = c.intermediate;
  ALPA_ASSIGN_OR_RETURN(l.attn_norm, norm(r, p + "input_layernorm", C, false));
  const std::string a = p + "self_attn.";
  ALPA_ASSIGN_OR_RETURN(
      l.qkv, linear_outputs(r, {a + "q_proj", a + "k_proj", a + "v_proj"},
                            {c.q_dim(), c.kv_dim(), c.kv_dim()}, {s.q, s.kv, s.kv}, C, false));
  ALPA_ASSIGN_OR_RETURN(l.o, linear_inputs(r, a + "o_proj", C, c.q_dim(), s.q, false, false));
  ALPA_ASSIGN_OR_RETURN(l.mlp_norm, norm(r, p + "post_attention_layernorm", C, false));
  // The up projection is [gate | up].
  ALPA_ASSIGN_OR_RETURN(l.up, linear_outputs(r, {p + "mlp.gate_proj", p + "mlp.up_proj"}, {I, I},
                                             {s.mlp, s.mlp}, C, false));
  ALPA_ASSIGN_OR_RETURN(l.down, linear_inputs(r, p + "mlp.down_proj", C, I, s.mlp, false, false));
  return l;
}

}  // namespace

Result<Decoder> Decoder::load(const DecoderConfig& config, const SafetensorsSet& weights) {
  ALPA_ASSIGN_OR_RETURN(Decoder d, load_part(config, weights, 0, config.layers, 0, 1));
  d.set_whole();
  return d;
}

Result<Decoder> Decoder::load_part(const DecoderConfig& config, const SafetensorsSet& weights,
                                   int64_t first, int64_t last, int part, int parts) {
  return read_part(config, weights, first, last, part, parts, true);
}

Status Decoder::check_tensors(const DecoderConfig& config, const SafetensorsSet& weights) {
  return read_part(config, weights, 0, config.layers, 0, 1, false).status();
}

Result<Decoder> Decoder::read_part(const DecoderConfig& config, const SafetensorsSet& weights,
                                   int64_t first, int64_t last, int part, int parts, bool values) {
  const DecoderConfig& c = config;
  ALPA_RETURN_IF_ERROR(check_part(c, first, last, part, parts));
  Decoder d;
  d.config_ = config;
  d.set_part(first, parts);
  const bool head = last == c.layers;
  const TensorReader read(weights, values), check(weights, false);
  // The token embedding is read by the first stage, and by the last when the head is tied to it.
  const TensorReader& embedding = first == 0 || (head && c.tie_embeddings) ? read : check;
  // Of the embedding and the vocabulary projection, a shard reads its vocabulary rows only.
  const std::vector<Range> rows = {d.vocab_range(part)};
  const LayerShare share = layer_share(c, part, parts);
  std::vector<float> tied;  // the embedding the head is tied to, on a last stage only
  std::string layer_prefix, final_norm;
  switch (c.family) {
    case Family::kGpt2: {
      const std::string prefix = read.has("transformer.wte.weight") ? "transformer." : "";
      ALPA_ASSIGN_OR_RETURN(tied,
                            embedding.get(prefix + "wte.weight", {c.vocab, c.hidden}, 0, rows));
      ALPA_ASSIGN_OR_RETURN(
          d.pos_embedding_,
          (first == 0 ? read : check).get(prefix + "wpe.weight", {c.max_positions, c.hidden}));
      layer_prefix = prefix + "h.";
      final_norm = prefix + "ln_f";
      break;
    }
    case Family::kOpt: {
      const std::string prefix =
          read.has("model.decoder.embed_tokens.weight") ? "model.decoder." : "decoder.";
      ALPA_ASSIGN_OR_RETURN(
          tied, embedding.get(prefix + "embed_tokens.weight", {c.vocab, c.hidden}, 0, rows));
      ALPA_ASSIGN_OR_RETURN(d.pos_embedding_, (first == 0 ? read : check)
                                                  .get(prefix + "embed_positions.weight",
                                                       {c.max_positions + 2, c.hidden}));
      d.pos_offset_ = 2;
      layer_prefix = prefix + "layers.";
      final_norm = prefix + "final_layer_norm";
      break;
    }
    case Family::kLlama: {
      ALPA_ASSIGN_OR_RETURN(
          tied, embedding.get("model.embed_tokens.weight", {c.vocab, c.hidden}, 0, rows));
      layer_prefix = "model.layers.";
      final_norm = "model.norm";
      break;
    }
  }
  for (int64_t i = 0; i < c.layers; ++i) {
    const std::string p = cat(layer_prefix, i, ".");
    const TensorReader& r = i >= first && i < last ? read : check;
    Result<DecoderLayer> l = c.family == Family::kGpt2  ? gpt2_layer(r, c, p, share)
                             : c.family == Family::kOpt ? opt_layer(r, c, p, share)
                                                        : llama_layer(r, c, p, share);
    if (!l.ok()) return l.status();
    if (values && &r == &read) d.layers_.push_back(std::move(*l));
  }
  const bool bias = c.family != Family::kLlama;
  ALPA_ASSIGN_OR_RETURN(d.final_norm_, norm(head ? read : check, final_norm, c.hidden, bias));
  std::vector<float> untied;
  if (c.family == Family::kLlama && !c.tie_embeddings) {
    ALPA_ASSIGN_OR_RETURN(
        untied, (head ? read : check).get("lm_head.weight", {c.vocab, c.hidden}, 0, rows));
  }
  if (values) d.take_vocab(std::move(tied), std::move(untied), part, first == 0, head, false);
  return d;
}

namespace {

void fill_normal(std::vector<float>& v, int64_t n, Rng& rng) {
  v.resize(static_cast<size_t>(n));
  for (float& x : v) x = static_cast<float>(0.02 * rng.normal());
}

Linear random_linear(int64_t in, int64_t out, bool bias, Rng& rng) {
  Linear l;
  l.in = in;
  l.out = out;
  fill_normal(l.w, in * out, rng);
  if (bias) fill_normal(l.b, out, rng);
  return l;
}

Norm unit_norm(int64_t n, bool bias) {
  Norm nm;
  nm.w.assign(static_cast<size_t>(n), 1.0f);
  if (bias) nm.b.assign(static_cast<size_t>(n), 0.0f);
  return nm;
}

}  // namespace

Decoder Decoder::random(const DecoderConfig& config, uint64_t seed) {
  Decoder d;
  d.config_ = config;
  const DecoderConfig& c = config;
  Rng rng(seed);
  const bool bias = c.family != Family::kLlama;
  fill_normal(d.token_embedding_, c.vocab * c.hidden, rng);
  if (c.family != Family::kLlama) {
    d.pos_offset_ = c.family == Family::kOpt ? 2 : 0;
    fill_normal(d.pos_embedding_, (c.max_positions + d.pos_offset_) * c.hidden, rng);
  }
  const int64_t up = c.family == Family::kLlama ? 2 * c.intermediate : c.intermediate;
  for (int64_t i = 0; i < c.layers; ++i) {
    DecoderLayer l;
    l.attn_norm = unit_norm(c.hidden, bias);
    l.mlp_norm = unit_norm(c.hidden, bias);
    l.qkv = random_linear(c.hidden, c.q_dim() + 2 * c.kv_dim(), bias, rng);
    l.o = random_linear(c.q_dim(), c.hidden, bias, rng);
    l.up = random_linear(c.hidden, up, bias, rng);
    l.down = random_linear(c.intermediate, c.hidden, bias, rng);
    d.layers_.push_back(std::move(l));
  }
  d.final_norm_ = unit_norm(c.hidden, bias);
  d.set_whole();
  // An untied projection starts equal to the embedding.
  std::vector<float> untied = c.tie_embeddings ? std::vector<float>() : d.token_embedding_;
  d.take_vocab(std::move(d.token_embedding_), std::move(untied), 0, true, true, true);
  return d;
}

int64_t Decoder::num_parameters() const {
  int64_t n = static_cast<int64_t>(token_embedding_.size() + pos_embedding_.size());
  const auto norm = [](const Norm& x) { return static_cast<int64_t>(x.w.size() + x.b.size()); };
  for (const DecoderLayer& l : layers_) {
    n += norm(l.attn_norm) + norm(l.mlp_norm);
    for (const Linear* x : {&l.qkv, &l.o, &l.up, &l.down})
      n += static_cast<int64_t>(x->w.size() + x->b.size());
  }
  n += norm(final_norm_);
  if (!config_.tie_embeddings) n += static_cast<int64_t>(lm_head_.w.size());
  return n;
}

}  // namespace alpa::serve
