// Choosing the next token from a row of logits.
//
// Greedy when temperature is 0; otherwise the logits are divided by the temperature, cut to
// the top_k most likely tokens (0: all) and then to the smallest set whose probability reaches
// top_p, renormalized, and one token is drawn with the sequence's own generator (seeded per
// request, so a sequence's draws do not depend on what else is in the batch). Log-probabilities
// are those of the model's distribution before temperature and truncation (OpenAI's meaning).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "alpa/support/rng.h"
#include "alpa/support/status.h"

namespace alpa::serve {

struct SamplingParams {
  int64_t max_tokens = 16;
  double temperature = 1.0;
  int64_t top_k = 0;   // 0: no limit
  double top_p = 1.0;  // (0, 1]
  uint64_t seed = 0;
  bool has_seed = false;
  std::vector<std::string> stop;
  int64_t logprobs = -1;  // -1: none; n >= 0: the chosen token's and the n most likely
  bool ignore_eos = false;
};

// Checks ranges; errors name the field as the HTTP API spells it.
Status validate(const SamplingParams& params);

struct Sample {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // the `logprobs` most likely, best first
};

Sample sample_token(const float* logits, int64_t vocab, const SamplingParams& params, Rng& rng);

}  // namespace alpa::serve
