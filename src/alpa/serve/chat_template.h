// Chat templates: the Jinja programs that Hugging Face checkpoints ship (tokenizer_config.json's
// "chat_template", or chat_template.jinja) to turn a conversation into a prompt, evaluated by a
// small interpreter of the subset those templates use (GPT-2/OPT/LLaMA families: Llama-2-chat,
// Llama-3-instruct, ChatML, Zephyr/TinyLlama). docs/chat_templates.md lists the subset:
//
//   {{ expr }}, {% if %}/{% elif %}/{% else %}/{% endif %}, {% for x in expr %}/{% endfor %}
//   (loop.index, loop.index0, loop.first, loop.last, loop.length), {% set name = expr %},
//   {# comments #}, whitespace control {%- -%} {{- -}}; string, integer, true/false/none and
//   list literals; + - * / // % ~, == != < > <= >=, in / not in, and / or / not, x if c else y;
//   x.name, x['key'], x[i], x[a:b]; tests "is [not] defined/undefined/none/string/number";
//   filters trim, upper, lower, capitalize, length, tojson; string methods strip, lstrip,
//   rstrip, upper, lower, startswith, endswith; raise_exception('message').
//
// Rendering follows Hugging Face's environment (trim_blocks and lstrip_blocks: a newline right
// after a block tag is dropped, and spaces before a block tag on its own line). Anything
// outside the subset is an error when the template is parsed, naming the construct and the
// line; raise_exception and type errors (adding a string to a number, say) are errors of
// render().
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "alpa/support/status.h"

namespace alpa::serve {

struct ChatMessage {
  std::string role;  // system, user, assistant
  std::string content;
};

class ChatTemplate {
 public:
  // Parses `source`; `name` (the file it came from) is named in errors.
  static Result<ChatTemplate> parse(std::string_view source, std::string_view name);

  // The prompt of `messages`, with the variables messages, bos_token, eos_token and
  // add_generation_prompt.
  Result<std::string> render(const std::vector<ChatMessage>& messages, const std::string& bos_token,
                             const std::string& eos_token, bool add_generation_prompt) const;

  const std::string& name() const { return name_; }

  struct Node;  // the parsed program (chat_template.cc)

 private:
  std::shared_ptr<const Node> root_;
  std::string name_;
};

}  // namespace alpa::serve
