// GPT in the GPT-3 / Megatron-LM layout, at any size.
//
// tokens (B, T) -> token embedding wte (V, C) + position embedding wpe (T, C)
//   -> L pre-LayerNorm blocks: x += attn(ln1(x)); x += mlp(ln2(x))
//      attn: q, k, v = linear(C -> C) each, H heads of C/H, causal softmax, output linear
//      mlp: linear(C -> 4C), GELU (erf form), linear(4C -> C)
//   -> final LayerNorm -> logits = x @ wte^T (tied embeddings) -> cross-entropy vs labels.
// Parameter names: wte, wpe, h<l>.ln1.{g,b}, h<l>.attn.{wq,bq,wk,bk,wv,bv,wo,bo},
// h<l>.ln2.{g,b}, h<l>.mlp.{w1,b1,w2,b2}, lnf.{g,b}. Inputs: tokens, labels (i32, (B, T)).
// Outputs: loss (scalar), logits (B, T, V).
// Building a graph allocates no weights, so paper-size models (39B) build in milliseconds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct GptConfig {
  int64_t layers = 2;
  int64_t hidden = 64;
  int64_t heads = 4;
  int64_t seq = 32;
  int64_t vocab = 128;
  int64_t batch = 8;  // sequences per forward pass (one micro-batch)
  DType dtype = DType::kF32;
  double init_std = 0.02;
};

// Named sizes: tiny, small (the benchmark model), 125m, 350m, 760m, 1.3b, 2.6b, 6.7b, 15b,
// 39b (the paper's table, seq 1024, vocab 51200).
Result<GptConfig> gpt_preset(std::string_view size);
std::vector<std::string> gpt_preset_names();
Status validate_gpt_config(const GptConfig& c);
// Weight elements: L (12 C^2 + 13 C) + V C + T C + 2 C.
int64_t gpt_parameter_count(const GptConfig& c);

Result<Graph> build_gpt(const GptConfig& c);

}  // namespace alpa
