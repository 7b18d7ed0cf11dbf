#include "alpa/models/nn.h"

#include <cmath>

namespace alpa::nn {
namespace {

std::vector<int64_t> leading_dims(int64_t rank) {
  std::vector<int64_t> dims;
  for (int64_t i = 0; i + 1 < rank; ++i) dims.push_back(i);
  return dims;
}

// (...) -> (..., C): repeats each element along a new last dim.
Value expand_last(Builder& b, Value x, const Shape& full) {
  return b.broadcast(x, full, leading_dims(static_cast<int64_t>(full.size())));
}

}  // namespace

Value layer_norm(Builder& b, Value x, Value gamma, Value beta, double eps) {
  const Shape shape = b.shape(x);
  const int64_t last = static_cast<int64_t>(shape.size()) - 1;
  const double inv_c = 1.0 / static_cast<double>(shape.back());
  Value mean = b.scale(b.reduce_sum(x, {last}), inv_c);    // (...)
  Value centered = b.sub(x, expand_last(b, mean, shape));  // (..., C)
  Value var = b.scale(b.reduce_sum(b.mul(centered, centered), {last}), inv_c);
  Value rstd = b.rsqrt(b.add_scalar(var, eps));  // (...)
  Value normed = b.mul(centered, expand_last(b, rstd, shape));
  return b.add(b.mul(normed, b.broadcast_to(gamma, shape)), b.broadcast_to(beta, shape));
}

// The max subtracted for stability carries no gradient: softmax(x - c) = softmax(x) for any
// c, so the exact gradient through it is zero, and stopping it saves the max's backward pass.
Value softmax(Builder& b, Value x) {
  const Shape shape = b.shape(x);
  const int64_t last = static_cast<int64_t>(shape.size()) - 1;
  Value m = b.stop_gradient(b.reduce_max(x, {last}));
  Value e = b.exp(b.sub(x, expand_last(b, m, shape)));
  Value s = b.reduce_sum(e, {last});
  return b.div(e, expand_last(b, s, shape));
}

Value log_softmax(Builder& b, Value x) {
  const Shape shape = b.shape(x);
  const int64_t last = static_cast<int64_t>(shape.size()) - 1;
  Value m = b.stop_gradient(b.reduce_max(x, {last}));
  Value z = b.sub(x, expand_last(b, m, shape));
  Value lse = b.log(b.reduce_sum(b.exp(z), {last}));
  return b.sub(z, expand_last(b, lse, shape));
}

Value gelu(Builder& b, Value x) {
  Value inner = b.erf(b.scale(x, 1.0 / std::sqrt(2.0)));
  return b.mul(b.scale(x, 0.5), b.add_scalar(inner, 1.0));
}

Value relu(Builder& b, Value x) {
  return b.max(x, b.full_like(x, 0.0));
}

Value linear(Builder& b, Value x, Value w, Value bias) {
  Value y = b.matmul(x, w);
  if (!bias.valid()) return y;
  return b.add(y, b.broadcast_to(bias, b.shape(y)));
}

Value cross_entropy(Builder& b, Value logits, Value labels) {
  const Shape shape = b.shape(logits);
  const int64_t last = static_cast<int64_t>(shape.size()) - 1;
  Value logp = log_softmax(b, logits);                 // (..., V)
  Value classes = b.iota({DType::kI32, shape}, last);  // (..., V)
  Value hit = b.compare(classes, expand_last(b, labels, shape), CompareDir::kEq);
  Value onehot = b.convert(hit, b.type(logits).dtype);
  Value picked = b.reduce_sum(b.mul(onehot, logp), {last});  // (...)
  return b.neg(b.mean_all(picked));
}

Value causal_mask(Builder& b, Value scores, double masked_value) {
  const Shape shape = b.shape(scores);
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t t = shape[rank - 1];
  Value row = b.iota({DType::kI32, {t, t}}, 0);
  Value col = b.iota({DType::kI32, {t, t}}, 1);
  Value keep = b.broadcast_to(b.compare(col, row, CompareDir::kLe), shape);
  return b.select(keep, scores, b.full_like(scores, masked_value));
}

}  // namespace alpa::nn
