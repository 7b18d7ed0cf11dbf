// The built-in GPT's weights as Hugging Face GPT-2 weights, and back.
//
// The built-in GPT (models/gpt.h) is GPT-2's architecture: pre-LayerNorm blocks (eps 1e-5),
// the exact (erf) GELU, attention scaled by 1/sqrt(head dim), tied input and output
// embeddings. Hugging Face stores it as (Conv1D weights are [in, out], as x @ W here):
//   transformer.wte.weight [V,C] = wte          transformer.wpe.weight [T,C] = wpe
//   transformer.h.{l}.ln_1.weight/bias          = h{l}.ln1.g / b
//   transformer.h.{l}.attn.c_attn.weight [C,3C] = wq | wk | wv (concatenated on dim 1)
//   transformer.h.{l}.attn.c_attn.bias [3C]     = bq | bk | bv
//   transformer.h.{l}.attn.c_proj.weight/bias   = h{l}.attn.wo / bo
//   transformer.h.{l}.ln_2.weight/bias          = h{l}.ln2.g / b
//   transformer.h.{l}.mlp.c_fc.weight [C,4C]    = h{l}.mlp.w1, bias b1
//   transformer.h.{l}.mlp.c_proj.weight [4C,C]  = h{l}.mlp.w2, bias b2
//   transformer.ln_f.weight/bias                = lnf.g / b
// with config.json (model_type gpt2, n_embd, n_layer, n_head, n_positions, vocab_size,
// layer_norm_epsilon 1e-5, activation_function "gelu"). Reading also accepts names without
// the "transformer." prefix (a GPT2Model), ignores the attention-mask buffers (attn.bias,
// attn.masked_bias) and accepts lm_head.weight only when it equals wte (tied).
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "alpa/data/safetensors.h"
#include "alpa/models/gpt.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/tensor.h"
#include "alpa/support/status.h"

namespace alpa {

// Whole tensors by the built-in GPT's parameter names ("wte", "h0.attn.wq", ...).
using GptWeights = std::map<std::string, NamedTensor>;

// The Hugging Face tensors of `weights` (a GPT of `config`'s sizes), in file order.
Result<std::vector<NamedTensor>> gpt2_tensors(const GptConfig& config, const GptWeights& weights);
// config.json for `config` (stored in `dtype`).
nlohmann::ordered_json gpt2_config_json(const GptConfig& config, StoredDType dtype);

// The sizes config.json in `dir` describes (layers, hidden, heads, vocab; seq = n_positions).
// Settings the built-in GPT cannot represent (another activation, epsilon, inner size) are
// errors naming the field.
Result<GptConfig> read_gpt2_config(const std::string& dir);

// Reads the GPT-2 in `dir` (config.json and model.safetensors or its shards) as the weights of
// `model`, whose sizes must match the config (seq may be shorter than n_positions: the first
// positions are used). A mismatch names the file, the field or tensor, and the model flag
// that fixes it.
Result<GptWeights> load_gpt2_weights(const std::string& dir, const GptConfig& model);

// `alpa train --init-from DIR`: the GPT-2 in `dir` as whole initial weights of `spec` (which
// must be --model gpt), by parameter name.
Result<std::map<std::string, Tensor>> init_weights_from(const std::string& dir,
                                                        const ModelSpec& spec);

}  // namespace alpa
