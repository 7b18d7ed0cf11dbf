// A bounded, UTF-8-safe excerpt of a JSON value for error messages: at most a few levels and
// about `max_chars` characters, never recursing into what a hostile file nests, and never
// throwing on bytes that are not UTF-8 (they print as U+FFFD). Header-only: the modules that
// read JSON already link nlohmann_json.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace alpa {

namespace detail {
template <typename Json>
void json_excerpt_into(const Json& v, int depth, size_t max_chars, std::string& out) {
  if (out.size() >= max_chars) return;
  if (v.is_array() || v.is_object()) {
    const bool array = v.is_array();
    out += array ? '[' : '{';
    if (depth >= 3 && !v.empty()) {
      out += "...";
    } else {
      size_t i = 0;
      for (auto it = v.begin(); it != v.end(); ++it, ++i) {
        if (i) out += ", ";
        if (i == 4 || out.size() >= max_chars) {
          out += "...";
          break;
        }
        if (!array)
          out += Json(it.key()).dump(-1, ' ', false, Json::error_handler_t::replace) + ": ";
        json_excerpt_into(*it, depth + 1, max_chars, out);
      }
    }
    out += array ? ']' : '}';
    return;
  }
  std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (s.size() > max_chars) {
    size_t cut = max_chars;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 start
    s = s.substr(0, cut) + "...";
  }
  out += s;
}
}  // namespace detail

template <typename Json>
std::string json_excerpt(const Json& v, size_t max_chars = 80) {
  std::string out;
  detail::json_excerpt_into(v, 0, max_chars, out);
  return out;
}

// j[key] when j is an object holding a string there, else `fallback`. (nlohmann's value()
// throws when the key holds another type: a file can put anything anywhere.)
template <typename Json>
std::string json_string_or(const Json& j, const char* key, const std::string& fallback = "") {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->template get<std::string>() : fallback;
}
template <typename Json>
bool json_bool_or(const Json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->template get<bool>() : fallback;
}

// The whole value as one line, bytes that are not UTF-8 replaced (U+FFFD) instead of throwing.
template <typename Json>
std::string json_line(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace alpa
