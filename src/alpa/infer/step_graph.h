// A decoder's inference step as an IR graph: what the compile driver plans, lowers and the
// runtime runs, so that serving takes the road training takes (compile/compile.h).
//
// One step runs `tokens` consecutive tokens of each of `batch` rows, row b's first token at
// position positions[b]:
//   inputs   tokens (i32, (B, T)), positions (i32, (B,))
//   weights  the checkpoint's tensors under their Hugging Face names (f32 in the graph; the
//            driver converts f16 / bf16 as it loads), and for rotary models two tables the
//            driver computes, "rope.cos" and "rope.sin" ((S, D/2): cos and sin of position x
//            inverse frequency, the angle in f32 as serve/decoder_forward.cc rotates)
//   state    the KV cache of every layer, "cache.<l>.k" and "cache.<l>.v" ((B, S, Hkv, D)
//            f32, S = context positions), and "logits" ((B, T, V)): the step's outputs alias
//            them, so the cache stays on the devices between steps and the driver reads the
//            logits back as a state (ProgramRunner::gather_parameter)
// A step writes the keys and values of its tokens into the cache at their positions (a one-hot
// of the position contracted with the new rows, selected where written: no dynamic update op
// is needed), then attends from each token to every cached position at or before its own.
// Prefill (T = a chunk of the prompt), chunked prefill and decoding (T = 1) are the same graph
// at different T. Positions at or beyond S are not written (a padded chunk's tail), and
// learned position tables are read at min(position, last row).
//
// The layers are the families of serve/config.h, in the same arithmetic as the serve kernels:
// GPT-2 (Conv1D [in, out] weights, fused q|k|v, tanh or exact GELU), OPT (nn.Linear [out, in],
// positions offset by 2, ReLU), LLaMA (RMSNorm, rotary pairs (i, i + D/2), grouped-query
// attention, SwiGLU, an untied lm_head when the config says so).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "alpa/autodiff/train_step.h"
#include "alpa/data/safetensors.h"
#include "alpa/serve/config.h"
#include "alpa/support/status.h"

namespace alpa::infer {

struct StepShape {
  int64_t batch = 1;    // rows (sequences) per step
  int64_t tokens = 1;   // tokens per row per step: 1 decodes, more prefill a chunk
  int64_t context = 0;  // KV cache positions per row (0: the model's max_positions)
  // A tied vocabulary projection as a weight of its own, "lm_head.weight" (read from the
  // embedding's tensor): a pipeline's last stage then holds it instead of receiving the first
  // stage's embedding every step.
  bool separate_head = false;
};

// The prefix the checkpoint's tensor names carry ("transformer." or "" for GPT-2,
// "model.decoder." or "decoder." for OPT, "" for LLaMA whose names carry "model." already),
// read from which of the family's embedding names `weights` holds.
std::string checkpoint_prefix(const serve::DecoderConfig& config, const SafetensorsSet& weights);

// The token embedding's tensor name under `prefix` (checkpoint_prefix).
std::string embedding_name(const serve::DecoderConfig& config, const std::string& prefix);

// The step graph wrapped as a one-micro-batch step of the compile driver (every node a forward
// node; the cache and the logits are its states). Errors: a shape that is not positive, a
// context beyond the model's positions, a head dimension that rotary embeddings cannot pair.
Result<TrainStep> decoder_step(const serve::DecoderConfig& config, const StepShape& shape,
                               const std::string& prefix);

// The rotary tables of a LLaMA step of `context` positions: cos then sin, each (S, D/2).
std::vector<float> rope_table(const serve::DecoderConfig& config, int64_t context, bool sine);

}  // namespace alpa::infer
