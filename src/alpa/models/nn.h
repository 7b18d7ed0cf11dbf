// Neural-network layers as compositions of IR ops: what model builders are written with.
//
// Each function emits primitive ops only (no fused ops), so autodiff, sharding and the cost
// model see through them. Shapes in comments: B batch, T sequence, C channels/hidden, V vocab.
#pragma once

#include "alpa/ir/builder.h"

namespace alpa::nn {

// x (..., C) -> (..., C): normalise over the last dim, then scale by gamma (C) and shift by
// beta (C). eps as in torch.nn.LayerNorm.
Value layer_norm(Builder& b, Value x, Value gamma, Value beta, double eps = 1e-5);

// Softmax over the last dim.
Value softmax(Builder& b, Value x);

// log(softmax(x)) over the last dim, computed stably.
Value log_softmax(Builder& b, Value x);

// GELU, exact form 0.5 x (1 + erf(x / sqrt 2)) (torch.nn.GELU()).
Value gelu(Builder& b, Value x);

// max(x, 0)
Value relu(Builder& b, Value x);

// x (..., IN) @ w (IN, OUT) + bias (OUT) -> (..., OUT). `bias` may be invalid (no bias).
Value linear(Builder& b, Value x, Value w, Value bias);

// Mean cross-entropy of logits (..., V) against integer labels (...) -> scalar.
// (torch.nn.functional.cross_entropy with mean reduction.)
Value cross_entropy(Builder& b, Value logits, Value labels);

// Causal mask for (..., T, T) attention scores: keeps s[..., i, j] for j <= i and puts
// `masked_value` elsewhere.
Value causal_mask(Builder& b, Value scores, double masked_value = -1e9);

}  // namespace alpa::nn
