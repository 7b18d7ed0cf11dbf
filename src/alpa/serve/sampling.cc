#include "alpa/serve/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace alpa::serve {

Status validate(const SamplingParams& p) {
  if (p.max_tokens < 1 || p.max_tokens > (int64_t{1} << 20))
    return invalid_argument(cat("max_tokens = ", p.max_tokens, " is out of range"),
                            "use an integer from 1 to the model's context length");
  if (!(p.temperature >= 0) || p.temperature > 100)
    return invalid_argument(cat("temperature = ", p.temperature, " is out of range"),
                            "use 0 (greedy) to 100");
  if (p.top_k < 0) return invalid_argument("top_k must be >= 0", "0 means no limit");
  if (!(p.top_p > 0 && p.top_p <= 1))
    return invalid_argument(cat("top_p = ", p.top_p, " is out of range"), "use (0, 1]");
  if (p.logprobs > 20)
    return invalid_argument(cat("logprobs = ", p.logprobs, " is out of range"), "use 0 to 20");
  if (p.stop.size() > 16) return invalid_argument("stop has more than 16 strings");
  for (const std::string& s : p.stop)
    if (s.empty() || s.size() > 256)
      return invalid_argument("stop strings must be 1 to 256 bytes long");
  return ok_status();
}

Sample sample_token(const float* logits, int64_t vocab, const SamplingParams& p, Rng& rng) {
  Sample out;
  float best = -INFINITY;
  int64_t arg = 0;
  for (int64_t i = 0; i < vocab; ++i)
    if (logits[i] > best) best = logits[i], arg = i;
  double z = 0;
  for (int64_t i = 0; i < vocab; ++i) z += std::exp(static_cast<double>(logits[i] - best));
  const double log_z = static_cast<double>(best) + std::log(z);
  auto logprob = [&](int64_t i) { return static_cast<float>(logits[i] - log_z); };

  std::vector<int32_t> order;
  int64_t sorted = 0;
  auto sorted_prefix = [&](int64_t n) {
    if (sorted >= n) return;
    sorted = n;
    order.resize(static_cast<size_t>(vocab));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + n, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
  };
  if (p.temperature == 0) {
    out.token = static_cast<int32_t>(arg);
  } else {
    const int64_t k = p.top_k > 0 ? std::min(p.top_k, vocab) : vocab;
    sorted_prefix(k);
    std::vector<double> prob(static_cast<size_t>(k));
    double sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      prob[static_cast<size_t>(i)] = std::exp(
          (static_cast<double>(logits[order[static_cast<size_t>(i)]]) - best) / p.temperature);
      sum += prob[static_cast<size_t>(i)];
    }
    int64_t keep = k;
    if (p.top_p < 1) {
      double acc = 0;
      for (int64_t i = 0; i < k; ++i) {
        acc += prob[static_cast<size_t>(i)] / sum;
        if (acc >= p.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    double kept = 0;
    for (int64_t i = 0; i < keep; ++i) kept += prob[static_cast<size_t>(i)];
    double u = rng.uniform() * kept;
    int64_t pick = keep - 1;
    for (int64_t i = 0; i < keep; ++i) {
      u -= prob[static_cast<size_t>(i)];
      if (u < 0) {
        pick = i;
        break;
      }
    }
    out.token = order[static_cast<size_t>(pick)];
  }
  out.logprob = logprob(out.token);
  if (p.logprobs > 0) {
    const int64_t n = std::min(p.logprobs, vocab);
    sorted_prefix(n);
    for (int64_t i = 0; i < n; ++i)
      out.top.emplace_back(order[static_cast<size_t>(i)], logprob(order[static_cast<size_t>(i)]));
  }
  return out;
}

}  // namespace alpa::serve
