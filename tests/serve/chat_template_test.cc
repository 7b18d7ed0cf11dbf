// Chat templates (serve/chat_template.h): the templates GPT-2/OPT/LLaMA-family checkpoints
// ship (ChatML, Zephyr/TinyLlama, Llama-2-chat, Llama-3-instruct; written here in their
// published shape) rendered for a three-message conversation with and without the generation
// prompt; the Jinja constructs of the subset one by one; errors for constructs outside it and
// for raise_exception; and a checkpoint directory's template, bos/eos tokens and special
// tokens through load_model_dir.
#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "alpa/serve/chat_template.h"
#include "alpa/serve/model_dir.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

namespace fs = std::filesystem;

const std::vector<ChatMessage> kChat = {
    {"system", "Be brief."}, {"user", "Hi there"}, {"assistant", "Hello!"}};

std::string render(const std::string& source, const std::vector<ChatMessage>& messages,
                   bool generation, const std::string& bos = "<s>",
                   const std::string& eos = "</s>") {
  Result<ChatTemplate> t = ChatTemplate::parse(source, "test.jinja");
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  if (!t.ok()) return "<parse error>";
  Result<std::string> out = t->render(messages, bos, eos, generation);
  EXPECT_TRUE(out.ok()) << out.status().to_string();
  return out.ok() ? *out : "<render error>";
}

std::string parse_error_of(const std::string& source) {
  Result<ChatTemplate> t = ChatTemplate::parse(source, "bad.jinja");
  EXPECT_FALSE(t.ok()) << source;
  return t.ok() ? "" : t.status().to_string();
}

std::string render_error_of(const std::string& source, const std::vector<ChatMessage>& m) {
  Result<ChatTemplate> t = ChatTemplate::parse(source, "t.jinja");
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  if (!t.ok()) return "";
  Result<std::string> out = t->render(m, "<s>", "</s>", true);
  EXPECT_FALSE(out.ok()) << source;
  return out.ok() ? "" : out.status().message();
}

TEST(ChatTemplate, ChatMl) {
  const std::string t =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
      "{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const std::string body =
      "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n"
      "<|im_start|>assistant\nHello!<|im_end|>\n";
  EXPECT_EQ(render(t, kChat, false), body);
  EXPECT_EQ(render(t, kChat, true), body + "<|im_start|>assistant\n");
}

// TinyLlama-1.1B-Chat / Zephyr: one tag per line, so the output depends on trim_blocks and
// lstrip_blocks; the newlines after {{ }} stay.
TEST(ChatTemplate, ZephyrTinyLlama) {
  const std::string t =
      "{% for message in messages %}\n"
      "{% if message['role'] == 'user' %}\n"
      "{{ '<|user|>\n' + message['content'] + eos_token }}\n"
      "{% elif message['role'] == 'system' %}\n"
      "{{ '<|system|>\n' + message['content'] + eos_token }}\n"
      "{% elif message['role'] == 'assistant' %}\n"
      "{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n"
      "{% endif %}\n"
      "{% if loop.last and add_generation_prompt %}\n"
      "{{ '<|assistant|>' }}\n"
      "{% endif %}\n"
      "{% endfor %}";
  const std::string body =
      "<|system|>\nBe brief.</s>\n<|user|>\nHi there</s>\n"
      "<|assistant|>\nHello!</s>\n";
  EXPECT_EQ(render(t, kChat, false), body);
  EXPECT_EQ(render(t, kChat, true), body + "<|assistant|>\n");
}

const char* kLlama2 =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}";

TEST(ChatTemplate, Llama2Chat) {
  const std::string want = "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello! </s>";
  EXPECT_EQ(render(kLlama2, kChat, false), want);
  EXPECT_EQ(render(kLlama2, kChat, true), want);  // the template ignores it
  EXPECT_EQ(render(kLlama2, {{"user", " hi "}}, true), "<s>[INST] hi [/INST]");
  // Roles that do not alternate: the template's own error.
  const std::string e = render_error_of(kLlama2, {{"user", "a"}, {"user", "b"}});
  EXPECT_NE(e.find("Conversation roles must alternate user/assistant"), std::string::npos) << e;
  EXPECT_NE(e.find("t.jinja"), std::string::npos) << e;
}

TEST(ChatTemplate, Llama3Instruct) {
  const std::string t =
      "{% set loop_messages = messages %}{% for message in loop_messages %}"
      "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ "
      "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
      "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
      "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
      "{% endif %}";
  const std::string body =
      "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
      "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>";
  EXPECT_EQ(render(t, kChat, false, "<|begin_of_text|>"), body);
  EXPECT_EQ(render(t, kChat, true, "<|begin_of_text|>"),
            body + "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // `set` inside the loop does not leak out of it.
  EXPECT_EQ(render(t + "[{{ content }}]", kChat, false, "<|begin_of_text|>"), body + "[]");
}

TEST(ChatTemplate, ExpressionsOfTheSubset) {
  const std::vector<ChatMessage> two = {{"user", "  Hi  "}, {"assistant", "Yo"}};
  EXPECT_EQ(render("{{ messages[0].role | upper }}|{{ messages[-1]['content'] | lower }}|"
                   "{{ messages | length }}|{{ messages[0].content | trim | length }}",
                   two, false),
            "USER|yo|2|2");
  EXPECT_EQ(render("{{ messages[1].content | tojson }} {{ 'a\"b\n' | tojson }}", two, false),
            "\"Yo\" \"a\\\"b\\n\"");
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}"
                   "{{ 'F' if loop.first else '' }}{{ 'L' if loop.last }}{% endfor %}",
                   two, false),
            "10F21L");
  EXPECT_EQ(render("{{ x is defined }} {{ messages is defined }} {{ none is none }} "
                   "{{ 1 is not none }} {{ not add_generation_prompt }} {{ 'y' ~ 3 ~ true }}",
                   two, true),
            "False True True True False y3True");
  EXPECT_EQ(render("{% if 2 > 1 and not (1 == 2) or x %}a{% elif true %}b{% else %}c{% endif %}"
                   "{% if 'se' in 'user' and 'z' not in ['a'] %}d{% endif %}"
                   "{% set n = 7 // 2 * 2 - 1 %}{{ n }}{{ -7 % 3 }}{{ 'abc'[1:] }}",
                   two, false),
            "ad52bc");
  EXPECT_EQ(render("{{ messages[5] is defined }}{{ messages[0].missing is defined }}"
                   "{{ messages[0].content.strip().startswith('Hi') }}",
                   two, false),
            "FalseFalseTrue");
  // Whitespace control, and lstrip_blocks/trim_blocks around indented block tags.
  EXPECT_EQ(render("a  {%- if true -%}  b  {%- endif -%}  c {{- ' d ' -}} e", two, false),
            "abc d e");
  EXPECT_EQ(render("x\n    {% if true %}\n  y\n    {% endif %}\nz{# note #}\n", two, false),
            "x\n  y\nz");
}

TEST(ChatTemplate, ConstructsOutsideTheSubsetAreLoadErrors) {
  struct Case {
    std::string source, names;
  };
  const std::vector<Case> cases = {
      {"{% macro f() %}x{% endmacro %}", "'{% macro %}' is not supported"},
      {"{{ messages | map(attribute='role') }}", "filter 'map' is not supported"},
      {"{% set ns = namespace(found=false) %}", "function 'namespace' is not supported"},
      {"{{ messages[0].content.split(' ') }}", "method 'split' is not supported"},
      {"{{ x is divisibleby }}", "test 'divisibleby' is not supported"},
      {"{% if true %}open", "'{% if %}' is not closed by '{% endif %}'"},
      {"{{ 'a' ", "the tag is not closed"},
      {"{% for k, v in x %}{% endfor %}", "unpacking several loop variables"},
      {"{{ {'a': 1} }}", "dictionary literals are not supported"},
      {"{% endfor %}", "without a matching opening tag"},
      {"{{ 1.5 }}", "floating-point numbers are not supported"},
  };
  for (const Case& c : cases) {
    const std::string e = parse_error_of(c.source);
    EXPECT_NE(e.find(c.names), std::string::npos) << c.source << " -> " << e;
    EXPECT_NE(e.find("bad.jinja:1"), std::string::npos) << e;  // the file and line
  }
  EXPECT_NE(parse_error_of("a\nb\n{% break %}").find("bad.jinja:3"), std::string::npos);
}

TEST(ChatTemplate, RenderErrorsAreClear) {
  const std::vector<ChatMessage> one = {{"user", "hi"}};
  EXPECT_NE(render_error_of("{{ raise_exception('only user messages, please') }}", one)
                .find("rejected the conversation: only user messages, please"),
            std::string::npos);
  EXPECT_NE(
      render_error_of("{{ 1 + 'a' }}", one).find("'+' cannot combine an integer and a string"),
      std::string::npos);
  EXPECT_NE(render_error_of("{{ nothing.role }}", one).find("undefined value has no attribute"),
            std::string::npos);
  EXPECT_NE(render_error_of("{% for m in 3 %}{% endfor %}", one).find("cannot loop over"),
            std::string::npos);
}

std::string checkpoint_with(const std::string& tag, const nlohmann::json& tokenizer_config,
                            const std::string& jinja = "") {
  std::vector<std::pair<std::string, std::string>> files = {
      {"tokenizer_config.json", tokenizer_config.dump()}};
  if (!jinja.empty()) files.emplace_back("chat_template.jinja", jinja);
  return testing::gpt2_checkpoint_with("chat_template_" + tag, files);
}

TEST(ChatTemplate, CheckpointTemplateAndSpecialTokens) {
  // "<|im_start|>" is an added token of tokenizer_config.json (id 7 here: the tiny vocabulary
  // has no room for new ids); "<|endoftext|>" is GPT-2's eos.
  const nlohmann::json tc = {
      {"chat_template",
       "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}{{ eos_token }}"
       "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
      {"eos_token", "<|endoftext|>"},
      {"added_tokens_decoder", {{"7", {{"content", "<|im_start|>"}, {"special", true}}}}}};
  const std::string dir = checkpoint_with("ok", tc);
  Result<LoadedModel> m = load_model_dir(dir);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  ASSERT_NE(m->chat_template, nullptr);
  EXPECT_EQ(m->eos_token, "<|endoftext|>");
  const std::vector<ChatMessage> chat = {{"user", "the weather"}};
  EXPECT_EQ(*m->chat_text(chat),
            "<|im_start|>user\nthe weather<|endoftext|><|im_start|>assistant\n");
  Result<std::vector<int32_t>> ids = m->encode_chat(chat);
  ASSERT_TRUE(ids.ok()) << ids.status().to_string();
  // The special texts became single ids; the rest is the tokenizer's encoding; no bos.
  std::vector<int32_t> want = {7};
  for (const char* part : {"user\nthe weather"}) {
    const std::vector<int32_t> p = *m->encode(part);  // GPT-2: no bos
    want.insert(want.end(), p.begin(), p.end());
  }
  want.push_back(m->eos_id);
  want.push_back(7);
  const std::vector<int32_t> tail = *m->encode("assistant\n");
  want.insert(want.end(), tail.begin(), tail.end());
  EXPECT_EQ(*ids, want);

  // chat_template.jinja is preferred to tokenizer_config.json's.
  Result<LoadedModel> j =
      load_model_dir(checkpoint_with("jinja", tc, "J:{{ messages[0].content }}"));
  if (j.ok()) fs::remove_all(j->dir);
  ASSERT_TRUE(j.ok()) << j.status().to_string();
  EXPECT_EQ(*j->chat_text(chat), "J:the weather");

  // No template: the documented format, and bos/eos from the tokenizer.
  Result<LoadedModel> plain = load_model_dir(checkpoint_with("none", nlohmann::json::object()));
  ASSERT_TRUE(plain.ok());
  fs::remove_all(plain->dir);
  fs::remove_all(dir);
  EXPECT_EQ(plain->chat_template, nullptr);
  EXPECT_EQ(*plain->chat_text(chat), "User: the weather\nAssistant:");
  EXPECT_EQ(*plain->encode_chat(chat), *plain->encode("User: the weather\nAssistant:"));
  EXPECT_EQ(plain->eos_token, "<|endoftext|>");
}

TEST(ChatTemplate, CheckpointWithUnsupportedTemplateFailsToLoad) {
  const std::string dir =
      checkpoint_with("bad", {{"chat_template",
                               "{% for m in messages %}{{ m.content | replace('a', 'b') }}"
                               "{% endfor %}"}});
  Result<LoadedModel> m = load_model_dir(dir);
  ASSERT_FALSE(m.ok());
  const std::string e = m.status().to_string();
  EXPECT_NE(e.find("chat template cannot be used"), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer_config.json"), std::string::npos) << e;
  EXPECT_NE(e.find("filter 'replace' is not supported"), std::string::npos) << e;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace alpa::serve
