#include "alpa/serve/api.h"

#include <cmath>

namespace alpa::serve {

using nlohmann::json;

json ApiError::body() const {
  json e = {{"message", message}, {"type", type}};
  e["param"] = param.empty() ? json(nullptr) : json(param);
  e["code"] = code.empty() ? json(nullptr) : json(code);
  return json{{"error", e}};
}

std::string dump_json(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

ApiError bad(const std::string& param, const std::string& message) {
  ApiError e;
  e.param = param;
  e.message = message;
  return e;
}

// Field readers: absent or null leaves `out` as it is.
std::optional<ApiError> read_int(const json& j, const char* key, int64_t lo, int64_t hi,
                                 int64_t& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !(it->is_number_float() && std::isfinite(it->get<double>()) &&
                                    it->get<double>() == std::floor(it->get<double>())))
    return bad(key, cat("'", key, "' must be an integer"));
  const double v = it->get<double>();
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi))
    return bad(key, cat("'", key, "' must be between ", lo, " and ", hi, ", got ", it->dump()));
  out = it->is_number_integer() ? it->get<int64_t>() : static_cast<int64_t>(v);
  return std::nullopt;
}

std::optional<ApiError> read_real(const json& j, const char* key, double lo, double hi,
                                  double& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return bad(key, cat("'", key, "' must be a number"));
  const double v = it->get<double>();
  if (!(v >= lo && v <= hi))
    return bad(key, cat("'", key, "' must be between ", lo, " and ", hi, ", got ", it->dump()));
  out = v;
  return std::nullopt;
}

std::optional<ApiError> read_bool(const json& j, const char* key, bool& out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return bad(key, cat("'", key, "' must be true or false"));
  out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> read_stop(const json& j, std::vector<std::string>& out) {
  auto it = j.find("stop");
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) {
    out = {it->get<std::string>()};
  } else if (it->is_array() && it->size() <= 16) {
    for (const json& s : *it) {
      if (!s.is_string()) return bad("stop", "'stop' must be a string or an array of strings");
      out.push_back(s.get<std::string>());
    }
  } else {
    return bad("stop", "'stop' must be a string or an array of up to 16 strings");
  }
  for (const std::string& s : out)
    if (s.empty() || s.size() > 256) return bad("stop", "each stop string must be 1-256 bytes");
  return std::nullopt;
}

std::optional<ApiError> read_sampling(const json& j, const LoadedModel& model, bool chat,
                                      ApiRequest& r) {
  SamplingParams& p = r.params;
  const int64_t context = model.config.max_positions;
  std::optional<ApiError> e;
  if ((e = read_int(j, "max_tokens", 1, context, p.max_tokens))) return e;
  if (chat && (e = read_int(j, "max_completion_tokens", 1, context, p.max_tokens))) return e;
  if ((e = read_real(j, "temperature", 0, 2, p.temperature))) return e;
  if ((e = read_real(j, "top_p", 1e-9, 1, p.top_p))) return e;
  if ((e = read_int(j, "top_k", 0, model.config.vocab, p.top_k))) return e;
  int64_t seed = -1;
  if ((e = read_int(j, "seed", 0, int64_t{1} << 62, seed))) return e;
  p.has_seed = seed >= 0;
  p.seed = p.has_seed ? static_cast<uint64_t>(seed) : 0;
  if ((e = read_stop(j, p.stop))) return e;
  if ((e = read_bool(j, "stream", r.stream))) return e;
  if ((e = read_bool(j, "ignore_eos", p.ignore_eos))) return e;
  int64_t n = 1;
  if ((e = read_int(j, "n", 1, 1, n))) return e;
  if (chat) {
    if ((e = read_bool(j, "logprobs", r.logprobs))) return e;
    int64_t top = 0;
    if ((e = read_int(j, "top_logprobs", 0, 20, top))) return e;
    if (r.logprobs) p.logprobs = top;
  } else {
    if ((e = read_int(j, "logprobs", 0, 20, p.logprobs))) return e;
    r.logprobs = p.logprobs >= 0;
    bool echo = false;
    if ((e = read_bool(j, "echo", echo))) return e;
    if (echo) return bad("echo", "'echo' is not supported");
  }
  return std::nullopt;
}

// A chat's messages, rendered by the checkpoint's chat template (its errors, e.g.
// raise_exception, name the template) or the documented format, to prompt ids.
std::optional<ApiError> read_messages(const json& j, const LoadedModel& model, ApiRequest& r) {
  auto it = j.find("messages");
  if (it == j.end() || !it->is_array() || it->empty())
    return bad("messages", "'messages' must be a non-empty array of {role, content}");
  std::vector<ChatMessage> messages;
  size_t total = 0;
  for (const json& m : *it) {
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      return bad("messages", "each message needs a string 'role'");
    const std::string role = m["role"].get<std::string>();
    if (role != "system" && role != "user" && role != "assistant")
      return bad("messages", cat("message role '", role, "' is not system, user or assistant"));
    if (!m.contains("content") || !m["content"].is_string())
      return bad("messages", "each message needs a string 'content'");
    messages.push_back({role, m["content"].get<std::string>()});
    total += messages.back().content.size();
  }
  if (total > (size_t{1} << 20)) return bad("messages", "too long");
  Result<std::vector<int32_t>> ids = model.encode_chat(messages);
  if (!ids.ok()) return bad("messages", ids.status().message());
  r.prompt = std::move(*ids);
  if (r.prompt.empty()) return bad("messages", "the chat's prompt is empty");
  return std::nullopt;
}

std::optional<ApiError> read_prompt(const json& j, const LoadedModel& model, bool chat,
                                    ApiRequest& r) {
  if (chat) return read_messages(j, model, r);
  auto it = j.find("prompt");
  if (it == j.end()) return bad("prompt", "'prompt' is required");
  const json* p = &*it;
  if (p->is_array() && p->size() == 1 && (*p)[0].is_string()) p = &(*p)[0];
  if (p->is_array() && !p->empty() && !(*p)[0].is_string()) {
    for (const json& t : *p) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= model.config.vocab)
        return bad("prompt", "a token-id prompt must hold ids inside the vocabulary");
      r.prompt.push_back(static_cast<int32_t>(t.get<int64_t>()));
    }
    return std::nullopt;
  }
  if (!p->is_string()) return bad("prompt", "'prompt' must be a string or an array of token ids");
  const std::string text = p->get<std::string>();
  if (text.size() > (size_t{1} << 20)) return bad("prompt", "too long");
  Result<std::vector<int32_t>> ids = model.encode(text);
  if (!ids.ok()) return bad("prompt", ids.status().message());
  r.prompt = std::move(*ids);
  if (r.prompt.empty()) return bad("prompt", "'prompt' is empty");
  return std::nullopt;
}

}  // namespace

std::variant<ApiRequest, ApiError> parse_request(std::string_view body, const LoadedModel& model,
                                                 bool chat) {
  json j = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return bad("", "the body is not valid JSON");
  if (!j.is_object()) return bad("", "the body must be a JSON object");
  auto m = j.find("model");
  if (m != j.end() && !m->is_null()) {
    if (!m->is_string()) return bad("model", "'model' must be a string");
    if (m->get<std::string>() != model.name) {
      ApiError e = bad("model", cat("the model '", m->get<std::string>(),
                                    "' does not exist; this server has '", model.name, "'"));
      e.status = 404;
      e.code = "model_not_found";
      return e;
    }
  }
  ApiRequest r;
  r.chat = chat;
  if (auto e = read_sampling(j, model, chat, r)) return *e;
  if (auto e = read_prompt(j, model, chat, r)) return *e;
  const int64_t context = model.config.max_positions;
  if (static_cast<int64_t>(r.prompt.size()) >= context)
    return bad(chat ? "messages" : "prompt",
               cat("the prompt is ", r.prompt.size(), " tokens; the model's context is ", context));
  return r;
}

namespace {

std::string token_text(const LoadedModel& model, int32_t id) {
  Result<std::string> t = model.decode({id});
  return t.ok() ? *t : "";
}

json logprobs_json(const ApiRequest& req, const std::vector<TokenEvent>& events,
                   const LoadedModel& model) {
  if (req.chat) {
    json content = json::array();
    for (const TokenEvent& e : events) {
      json top = json::array();
      for (auto& [id, lp] : e.top)
        top.push_back({{"token", token_text(model, id)}, {"logprob", lp}});
      content.push_back(
          {{"token", token_text(model, e.token)}, {"logprob", e.logprob}, {"top_logprobs", top}});
    }
    return {{"content", content}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array();
  for (const TokenEvent& e : events) {
    tokens.push_back(token_text(model, e.token));
    lps.push_back(e.logprob);
    json top = json::object();
    for (auto& [id, lp] : e.top) top[token_text(model, id)] = lp;
    tops.push_back(top);
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops}};
}

}  // namespace

json response_body(const ApiRequest& req, const Request& done, const LoadedModel& model,
                   const std::string& id, int64_t created) {
  const std::vector<TokenEvent> events = done.events();
  json choice = {{"index", 0}, {"finish_reason", done.finish_reason()}};
  if (req.chat) {
    choice["message"] = {{"role", "assistant"}, {"content", done.text()}};
  } else {
    choice["text"] = done.text();
  }
  choice["logprobs"] = req.logprobs ? logprobs_json(req, events, model) : json(nullptr);
  const int64_t completion = static_cast<int64_t>(events.size());
  return {{"id", id},
          {"object", req.chat ? "chat.completion" : "text_completion"},
          {"created", created},
          {"model", model.name},
          {"choices", json::array({choice})},
          {"usage",
           {{"prompt_tokens", done.prompt_tokens()},
            {"completion_tokens", completion},
            {"total_tokens", done.prompt_tokens() + completion}}}};
}

json stream_chunk(const ApiRequest& req, const std::vector<TokenEvent>& events,
                  const std::string& finish_reason, bool first, const LoadedModel& model,
                  const std::string& id, int64_t created) {
  std::string text;
  for (const TokenEvent& e : events) text += e.text;
  json choice = {{"index", 0}};
  choice["finish_reason"] = finish_reason.empty() ? json(nullptr) : json(finish_reason);
  if (req.chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = delta;
  } else {
    choice["text"] = text;
  }
  choice["logprobs"] =
      req.logprobs && !events.empty() ? logprobs_json(req, events, model) : json(nullptr);
  return {{"id", id},
          {"object", req.chat ? "chat.completion.chunk" : "text_completion"},
          {"created", created},
          {"model", model.name},
          {"choices", json::array({choice})}};
}

}  // namespace alpa::serve
