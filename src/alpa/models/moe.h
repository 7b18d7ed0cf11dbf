// GShard mixture-of-experts transformer language model, at any size (the paper's MoE family).
//
// tokens (B, T) -> token embedding wte (V, C) + position embedding wpe (T, C)
//   -> L pre-LayerNorm blocks: x += attn(ln1(x)); x += ffn(ln2(x))
//      attn: as GPT (q, k, v, output linears C -> C, H heads, causal softmax)
//      ffn of an even-indexed block (0, 2, ...): a mixture of E experts with top-2 gating
//      ffn of an odd-indexed block: dense, linear(C -> F), GELU, linear(F -> C)
//   -> final LayerNorm -> logits = x @ wte^T (tied) -> cross-entropy vs labels
//   loss = cross-entropy + aux_loss_weight * (sum over MoE blocks of the GShard balance loss)
//
// The MoE FFN (all einsums are dot_general; shapes per block, N = B T tokens):
//   x (N, C) -> groups (G, S, C), S = min(expert_group_size, N), G = N / S
//   probs = softmax(x wg) (G, S, E); the top-1 and top-2 experts per token
//   capacity K = ceil(2 S / E) slots per expert and group; a token's slot is the number of
//   earlier tokens of its group routed to that expert (top-1 choices first, then top-2), an
//   exclusive prefix sum written as a dot_general with a strictly lower-triangular 0/1 matrix;
//   tokens whose slot is >= K are dropped for that expert (GShard).
//   dispatch (G, S, E, K) in {0, 1}; combine = dispatch x normalised gate (g1 + g2 = 1)
//   expert_in = einsum(GSEK, GSC -> GEKC); h = relu(expert_in wi + bi) (E, G, K, F) with
//   wi (E, C, F) contracted in one dot_general batched over the expert dim;
//   out = h wo + bo (E, G, K, C); y = einsum(GSEK, EGKC -> GSC)
// The expert dim is a plain tensor dim, so auto-sharding may split it (expert parallelism).
// Gating decisions (argmax, capacity) carry no gradient; the gate weights train through the
// combine weights and the balance loss.
//
// Parameter names: wte, wpe, h<l>.ln1.{g,b}, h<l>.attn.{wq,bq,wk,bk,wv,bv,wo,bo},
// h<l>.ln2.{g,b}, dense blocks h<l>.mlp.{w1,b1,w2,b2}, MoE blocks h<l>.moe.{wg,wi,bi,wo,bo},
// lnf.{g,b}. Inputs: tokens, labels (i32 (B, T)). Outputs: loss, logits (B, T, V), aux_loss.
//
// Differences from Alpa's benchmark model (alpa/model/moe.py), on purpose: pre-LayerNorm and
// causal attention as our GPT (Alpa's is a post-LayerNorm BERT encoder), so the synthetic
// next-token task applies; expert biases (Alpa's count formula counts them, its layer has
// none); capacity rounds up (Alpa: 2S // E); the balance loss is included (Alpa leaves it out).
// F = ffn_factor * C with ffn_factor = 8 for every FFN, as Alpa's benchmarks configure it; the
// paper's nominal sizes (380M ... 70B) are counted with that factor.
// Building a graph allocates no weights: the 70B model builds in milliseconds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct MoeConfig {
  int64_t layers = 2;
  int64_t hidden = 32;
  int64_t heads = 4;
  int64_t seq = 16;
  int64_t vocab = 64;
  int64_t batch = 8;               // sequences per forward pass (one micro-batch)
  int64_t experts = 4;             // E, >= 2 (top-2 gating)
  int64_t expert_group_size = 16;  // S: tokens per routing group (capped at the batch's tokens)
  int64_t ffn_factor = 8;          // F = ffn_factor * hidden, dense and expert FFNs
  double aux_loss_weight = 0.01;   // weight of the GShard load-balancing loss (0: none)
  DType dtype = DType::kF32;
  double init_std = 0.02;
};

// Named sizes: tiny, small (CPU), and the paper's 380m, 690m, 1.3b, 2.4b, 10b, 27b, 70b (seq
// 1024, vocab 32000, 16 heads, expert group size 2048, fp16, batch 1024).
Result<MoeConfig> moe_preset(std::string_view size);
std::vector<std::string> moe_preset_names();
Status validate_moe_config(const MoeConfig& c);

// Tokens per routing group for `c` (expert_group_size, capped at the tokens of one forward
// pass) and expert capacity ceil(2 S / E).
int64_t moe_group_size(const MoeConfig& c);
int64_t moe_expert_capacity(const MoeConfig& c);

// Weight elements, F = ffn_factor * C, M = ceil(L / 2) MoE blocks, D = L - M dense blocks:
//   L (4 C^2 + 4 C + 4 C)                      attention and the two LayerNorms
//   + D (2 C F + F + C)                        dense FFNs
//   + M (C E + E (2 C F + F + C))              gates and experts
//   + V C + T C + 2 C                          embeddings and the final LayerNorm
int64_t moe_parameter_count(const MoeConfig& c);

Result<Graph> build_moe(const MoeConfig& c);

// ---- the MoE FFN on its own (used by build_moe; tests check it against a reference) ----

// Expert capacity of a group of S tokens over E experts: ceil(2 S / E).
int64_t moe_capacity(int64_t group_size, int64_t experts);

struct MoeFfnWeights {
  Value wg;  // (C, E) gate
  Value wi;  // (E, C, F)
  Value bi;  // (E, F)
  Value wo;  // (E, F, C)
  Value bo;  // (E, C)
};

struct MoeFfn {
  Value y;         // (G, S, C)
  Value dispatch;  // (G, S, E, K) in {0, 1}: token s of group g goes to slot k of expert e
  Value combine;   // (G, S, E, K): dispatch x the token's normalised gate for e
  Value balance;   // scalar GShard load-balancing loss
};

// x (G, S, C) -> the top-2 gated mixture of experts of the header comment. Errors go to the
// builder's sticky status.
MoeFfn moe_ffn(Builder& b, Value x, const MoeFfnWeights& w);

}  // namespace alpa
