// The OpenAI-compatible request and response bodies: /v1/completions and
// /v1/chat/completions.
//
// Requests are validated field by field; an invalid one gives an ApiError (HTTP status, the
// OpenAI error object: message, type, param naming the field). Responses are built from a
// finished (or, for streaming, a partial) Request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "alpa/serve/engine.h"
#include "alpa/serve/model_dir.h"
#include "alpa/serve/sampling.h"

namespace alpa::serve {

struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the field at fault ("" when none)
  std::string code;   // e.g. "model_not_found" ("" when none)
  nlohmann::json body() const;
};

struct ApiRequest {
  bool chat = false;
  bool stream = false;
  std::vector<int32_t> prompt;
  SamplingParams params;
  bool logprobs = false;  // chat: logprobs: true
};

// Parses and validates a request body for `model` (chat: /v1/chat/completions). Prompts are
// text (tokenized with the model's tokenizer) or, for completions, arrays of token ids.
// Sampling defaults: max_tokens 16, temperature 1, top_p 1.
std::variant<ApiRequest, ApiError> parse_request(std::string_view body, const LoadedModel& model,
                                                 bool chat);

// A response body of a finished request (non-streaming).
nlohmann::json response_body(const ApiRequest& req, const Request& done, const LoadedModel& model,
                             const std::string& id, int64_t created);
// One server-sent event chunk: the text of `events` (may be empty), and when `finish_reason`
// is not empty the chunk that ends the choice.
nlohmann::json stream_chunk(const ApiRequest& req, const std::vector<TokenEvent>& events,
                            const std::string& finish_reason, bool first, const LoadedModel& model,
                            const std::string& id, int64_t created);

// JSON text with invalid UTF-8 replaced (a model may produce any bytes).
std::string dump_json(const nlohmann::json& j);

}  // namespace alpa::serve
