// The shape of a decoder checkpoint, read from a Hugging Face `config.json`.
//
// Three families are understood, told apart by "model_type":
//   gpt2   learned positions, pre-LayerNorm, fused qkv (Conv1D, [in, out]), GELU MLP (gelu_new
//          or the exact "gelu" of `alpa export`)
//   opt    learned positions offset by 2, pre-LayerNorm, q/k/v with bias, ReLU MLP
//   llama  rotary positions, RMSNorm, grouped-query attention, SwiGLU MLP, no biases
//          (also "mistral", which has the same tensors)
// Anything a family allows but this reader does not run (OPT's post-LayerNorm layout or a
// projection of the embeddings, LLaMA's rope scaling) is refused with the field named.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "alpa/support/status.h"

namespace alpa::serve {

enum class Family { kGpt2, kOpt, kLlama };
const char* family_name(Family family);

enum class Activation { kGeluTanh, kGeluExact, kRelu, kSilu };

struct DecoderConfig {
  Family family = Family::kGpt2;
  int64_t vocab = 0;
  int64_t hidden = 0;
  int64_t layers = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;  // == heads unless grouped-query attention
  int64_t head_dim = 0;
  int64_t intermediate = 0;
  int64_t max_positions = 0;
  double norm_eps = 1e-5;
  double rope_theta = 10000.0;
  bool tie_embeddings = true;
  Activation activation = Activation::kGeluTanh;
  int32_t bos_id = -1;
  int32_t eos_id = -1;

  int64_t q_dim() const { return heads * head_dim; }
  int64_t kv_dim() const { return kv_heads * head_dim; }
  // Every weight, bias and norm value of the model (a tied vocabulary projection once).
  int64_t num_parameters() const;
};

// Rotary embeddings (LLaMA): the inverse frequency of pair (i, i + head_dim/2) of a head,
// 1 / rope_theta^(2i / head_dim), in f32; a position's angle is position x this, in f32.
float rope_inverse_frequency(const DecoderConfig& config, int64_t i);

// Parses config.json's text; `where` (the file) is named in errors.
Result<DecoderConfig> parse_decoder_config(std::string_view json_text, const std::string& where);
Result<DecoderConfig> read_decoder_config(const std::string& path);

}  // namespace alpa::serve
