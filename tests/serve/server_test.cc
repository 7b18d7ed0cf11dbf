// The HTTP server over loopback: completions and chat (plain and streamed), errors, the queue
// limit, cancellation of a client that goes away, metrics, and SIGTERM draining.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "alpa/serve/api.h"
#include "alpa/serve/http_server.h"
#include "serve/checkpoints.h"

namespace alpa::serve {
namespace {

using nlohmann::json;

// A server on a free loopback port; the engine steps on its own thread unless `manual`.
struct Fixture {
  explicit Fixture(bool manual = false, int64_t max_queue = 64, size_t max_body = 1 << 20,
                   std::string dir = "") {
    if (dir.empty()) dir = testing::checkpoint("gpt2", "f32", 1).dir;
    Result<LoadedModel> m = load_model_dir(dir);
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    EngineOptions o;
    o.block_size = 4;
    o.num_blocks = 256;
    o.threads = 2;
    o.max_queue = max_queue;
    engine = std::make_unique<Engine>(*m, o);
    ServerOptions so;
    so.port = 0;
    so.heartbeat_s = 0.05;
    so.max_body_bytes = max_body;
    server = std::make_unique<HttpServer>(*engine, so);
    Result<int> p = server->bind();
    EXPECT_TRUE(p.ok());
    port = *p;
    if (!manual) engine->start();
    thread = std::thread([this] { server->serve(); });
  }
  ~Fixture() {
    server->stop();
    thread.join();
    engine->stop();
  }
  httplib::Result post(const std::string& path, const json& body) {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c.Post(path.c_str(), body.dump(), "application/json");
  }
  std::unique_ptr<Engine> engine;
  std::unique_ptr<HttpServer> server;
  int port = 0;
  std::thread thread;
};

// The JSON payloads of a server-sent event stream ("[DONE]" last).
std::vector<std::string> sse_data(const std::string& body) {
  std::vector<std::string> out;
  size_t at = 0;
  while ((at = body.find("data: ", at)) != std::string::npos) {
    const size_t end = body.find("\n\n", at);
    out.push_back(body.substr(at + 6, end - at - 6));
    at = end;
  }
  return out;
}

TEST(Server, CompletionsPlainAndStreamedAgree) {
  Fixture f;
  json req = {{"model", "gpt2_f32_1"}, {"prompt", "the weather in"}, {"max_tokens", 12},
              {"temperature", 0},      {"ignore_eos", true},         {"logprobs", 2}};
  auto plain = f.post("/v1/completions", req);
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  json j = json::parse(plain->body);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["usage"]["completion_tokens"], 12);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["choices"][0]["logprobs"]["token_logprobs"].size(), 12u);
  const std::string text = j["choices"][0]["text"];
  // The same as the engine gives directly.
  auto ids = f.engine->model().encode("the weather in");
  SamplingParams p;
  p.temperature = 0;
  p.max_tokens = 12;
  p.ignore_eos = true;
  auto direct = f.engine->submit(*ids, p);
  ASSERT_TRUE(direct.ok());
  size_t next = 0;
  std::vector<TokenEvent> ev;
  while (!(*direct)->read(next, ev, std::chrono::milliseconds(100))) {
  }
  EXPECT_EQ((*direct)->text(), text);

  req["stream"] = true;
  auto streamed = f.post("/v1/completions", req);
  ASSERT_TRUE(streamed);
  EXPECT_EQ(streamed->status, 200);
  EXPECT_NE(streamed->get_header_value("Content-Type").find("text/event-stream"),
            std::string::npos);
  auto chunks = sse_data(streamed->body);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks.back(), "[DONE]");
  std::string joined;
  for (size_t i = 0; i + 1 < chunks.size(); ++i)
    joined += json::parse(chunks[i])["choices"][0]["text"].get<std::string>();
  EXPECT_EQ(joined, text);
  EXPECT_EQ(json::parse(chunks[chunks.size() - 2])["choices"][0]["finish_reason"], "length");
}

TEST(Server, ChatPlainAndStreamed) {
  Fixture f;
  json req = {{"messages",
               {{{"role", "system"}, {"content", "be brief"}},
                {{"role", "user"}, {"content", "hello there"}}}},
              {"max_tokens", 8},
              {"temperature", 0},
              {"ignore_eos", true}};
  auto plain = f.post("/v1/chat/completions", req);
  ASSERT_TRUE(plain);
  ASSERT_EQ(plain->status, 200) << plain->body;
  json j = json::parse(plain->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  // The documented template: the same as a completion of the formatted prompt.
  auto as_completion =
      f.post("/v1/completions",
             {{"prompt", chat_prompt({{"system", "be brief"}, {"user", "hello there"}})},
              {"max_tokens", 8},
              {"temperature", 0},
              {"ignore_eos", true}});
  ASSERT_TRUE(as_completion);
  EXPECT_EQ(j["choices"][0]["message"]["content"],
            json::parse(as_completion->body)["choices"][0]["text"]);
  req["stream"] = true;
  auto streamed = f.post("/v1/chat/completions", req);
  ASSERT_TRUE(streamed);
  auto chunks = sse_data(streamed->body);
  ASSERT_GE(chunks.size(), 2u);
  json first = json::parse(chunks[0]);
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  std::string joined;
  for (size_t i = 0; i + 1 < chunks.size(); ++i)
    joined += json::parse(chunks[i])["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(joined, j["choices"][0]["message"]["content"]);
}

// A checkpoint with a chat template (tokenizer_config.json): chats are rendered by it, its
// special tokens become their ids, and its raise_exception is a 400 naming the messages.
TEST(Server, ChatUsesTheCheckpointTemplate) {
  const json tc = {
      {"chat_template",
       "{% for m in messages %}{% if m.role == 'system' %}"
       "{{ raise_exception('this model takes no system messages') }}{% endif %}"
       "<|im_start|>{{ m.role }}\n{{ m.content }}{{ eos_token }}{% endfor %}"
       "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"},
      {"eos_token", "<|endoftext|>"},
      {"added_tokens_decoder", {{"7", {{"content", "<|im_start|>"}, {"special", true}}}}}};
  const std::string dir =
      testing::gpt2_checkpoint_with("chat_template_server", {{"tokenizer_config.json", tc.dump()}});
  Fixture f(false, 64, 1 << 20, dir);
  const LoadedModel& model = f.engine->model();
  ASSERT_NE(model.chat_template, nullptr);
  const std::vector<int32_t> ids = *model.encode_chat({{"user", "the weather"}});
  ASSERT_EQ(ids.front(), 7);  // <|im_start|> as its id, not as text
  auto chat = f.post("/v1/chat/completions",
                     {{"messages", {{{"role", "user"}, {"content", "the weather"}}}},
                      {"max_tokens", 6},
                      {"temperature", 0},
                      {"ignore_eos", true}});
  ASSERT_TRUE(chat);
  ASSERT_EQ(chat->status, 200) << chat->body;
  json j = json::parse(chat->body);
  EXPECT_EQ(j["usage"]["prompt_tokens"], ids.size());
  const size_t fallback = model.encode(chat_prompt({{"user", "the weather"}}))->size();
  EXPECT_NE(j["usage"]["prompt_tokens"], fallback);
  // The same as a completion of the rendered prompt's ids.
  auto completion =
      f.post("/v1/completions",
             {{"prompt", ids}, {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_TRUE(completion);
  EXPECT_EQ(j["choices"][0]["message"]["content"],
            json::parse(completion->body)["choices"][0]["text"]);
  auto refused =
      f.post("/v1/chat/completions",
             {{"messages",
               {{{"role", "system"}, {"content", "x"}}, {{"role", "user"}, {"content", "y"}}}}});
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 400);
  json e = json::parse(refused->body)["error"];
  EXPECT_EQ(e["param"], "messages");
  EXPECT_NE(e["message"].get<std::string>().find("this model takes no system messages"),
            std::string::npos)
      << e;
  std::filesystem::remove_all(dir);
}

TEST(Server, ErrorsAreOpenAiShapedAndNameTheField) {
  Fixture f(false, 64, 4096);
  httplib::Client c("127.0.0.1", f.port);
  auto check = [&](const std::string& path, const std::string& body, int status,
                   const std::string& param) {
    auto r = c.Post(path.c_str(), body, "application/json");
    ASSERT_TRUE(r) << body;
    EXPECT_EQ(r->status, status) << body << " -> " << r->body;
    json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    if (param.empty()) {
      EXPECT_TRUE(j["error"]["param"].is_null()) << r->body;
    } else {
      EXPECT_EQ(j["error"]["param"], param) << r->body;
    }
  };
  check("/v1/completions", "{not json", 400, "");
  check("/v1/completions", "[1, 2]", 400, "");
  check("/v1/completions", R"({"max_tokens": 3})", 400, "prompt");
  check("/v1/completions", R"({"prompt": 7})", 400, "prompt");
  check("/v1/completions", R"({"prompt": [1, 99999]})", 400, "prompt");
  check("/v1/completions", R"({"prompt": "hi", "max_tokens": -1})", 400, "max_tokens");
  check("/v1/completions", R"({"prompt": "hi", "max_tokens": 1e12})", 400, "max_tokens");
  check("/v1/completions", R"({"prompt": "hi", "max_tokens": "5"})", 400, "max_tokens");
  check("/v1/completions", R"({"prompt": "hi", "temperature": "hot"})", 400, "temperature");
  check("/v1/completions", R"({"prompt": "hi", "top_p": 0})", 400, "top_p");
  check("/v1/completions", R"({"prompt": "hi", "n": 2})", 400, "n");
  check("/v1/completions", R"({"prompt": "hi", "stop": [1]})", 400, "stop");
  check("/v1/completions", R"({"prompt": "hi", "stream": "yes"})", 400, "stream");
  check("/v1/completions", R"({"prompt": "hi", "model": "gpt-4"})", 404, "model");
  check("/v1/chat/completions", R"({"messages": []})", 400, "messages");
  check("/v1/chat/completions", R"({"messages": [{"role": "robot", "content": "x"}]})", 400,
        "messages");
  check("/v1/chat/completions", R"({"messages": [{"role": "user"}]})", 400, "messages");
  check("/v1/completions", "{\"prompt\": \"" + std::string(5000, 'a') + "\"}", 413, "");
  check("/v1/completions", R"({"prompt": ")" + std::string(3000, 'a') + "\"}", 400, "prompt");
  auto missing = c.Get("/v1/nothing");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_TRUE(json::parse(missing->body).contains("error"));
  auto unknown = f.post("/v1/completions", {{"prompt", "x"}, {"model", "nope"}});
  EXPECT_EQ(json::parse(unknown->body)["error"]["code"], "model_not_found");
}

TEST(Server, FullQueueAnswers429) {
  Fixture f(/*manual=*/true, /*max_queue=*/1);
  SamplingParams p;
  ASSERT_TRUE(f.engine->submit({1, 2, 3}, p).ok());  // the queue's one place
  auto r = f.post("/v1/completions", {{"prompt", "hi"}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(json::parse(r->body)["error"]["type"], "rate_limit_error");
}

TEST(Server, ModelsHealthAndMetrics) {
  Fixture f;
  httplib::Client c("127.0.0.1", f.port);
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "gpt2_f32_1");
  auto health = c.Get("/health");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  for (int i = 0; i < 3; ++i)
    f.post("/v1/completions", {{"prompt", "abc"}, {"max_tokens", 5}, {"ignore_eos", true}});
  // The engine settles its gauges at the end of the step that answered the last request.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!f.engine->idle() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto metrics = c.Get("/metrics");
  ASSERT_TRUE(metrics);
  const std::string& m = metrics->body;
  for (const char* name :
       {"alpa_queue_length 0", "alpa_running_sequences 0", "alpa_kv_blocks_used 0",
        "alpa_kv_blocks_total 256", "alpa_generation_tokens_total 15",
        "alpa_requests_total{outcome=\"finished\"} 3", "alpa_time_to_first_token_seconds_count 3",
        "alpa_inter_token_latency_seconds_count 12", "alpa_tokens_per_second"})
    EXPECT_NE(m.find(name), std::string::npos) << name << "\n" << m;
}

// Sends a request on a raw socket and closes it once the engine holds the sequence's blocks.
void disconnect_midway(Fixture& f, bool stream) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(f.port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const std::string body = json{
      {"prompt", "a long walk"},
      {"max_tokens", 40},
      {"ignore_eos", true},
      {"stream", stream}}.dump();
  const std::string req =
      "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: "
      "application/json\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_EQ(write(fd, req.data(), req.size()), static_cast<ssize_t>(req.size()));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (f.engine->metrics().waiting == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (int i = 0; i < 4; ++i) f.engine->step();  // prefill and three tokens
  EXPECT_GT(f.engine->metrics().kv_blocks_used, 0);
  close(fd);
  while (f.engine->metrics().kv_blocks_used > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    f.engine->step();
  }
  EXPECT_EQ(f.engine->metrics().kv_blocks_used, 0);
  EXPECT_EQ(f.engine->metrics().requests_cancelled, 1);
  EXPECT_EQ(f.engine->metrics().running, 0);
}

TEST(Server, DisconnectedStreamingClientIsCancelled) {
  Fixture f(/*manual=*/true);
  disconnect_midway(f, true);
}

TEST(Server, DisconnectedPlainClientIsCancelled) {
  Fixture f(/*manual=*/true);
  disconnect_midway(f, false);
}

TEST(Server, SigtermDrainsRequestsInFlight) {
  const std::string dir = testing::checkpoint("gpt2-long", "f32", 1).dir;
  int out[2];
  ASSERT_EQ(pipe(out), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], 1);
    close(out[0]);
    const std::string alpa = std::string(ALPA_BINARY_DIR) + "/src/alpa";
    execl(alpa.c_str(), "alpa", "serve", "--model", dir.c_str(), "--port", "0", "--threads", "1",
          nullptr);
    _exit(127);
  }
  close(out[1]);
  FILE* in = fdopen(out[0], "r");
  char line[512] = {0};
  ASSERT_NE(fgets(line, sizeof line, in), nullptr);
  const std::string banner = line;
  const size_t colon = banner.find("127.0.0.1:");
  ASSERT_NE(colon, std::string::npos) << banner;
  const int port = std::stoi(banner.substr(colon + 10));
  httplib::Client c("127.0.0.1", port);
  std::string body;
  bool signalled = false;
  httplib::Request req;
  req.method = "POST";
  req.path = "/v1/completions";
  req.set_header("Content-Type", "application/json");
  req.body =
      json{{"prompt", "x"}, {"max_tokens", 1500}, {"ignore_eos", true}, {"stream", true}}.dump();
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    body.append(data, n);
    if (!signalled && body.find("data: ") != std::string::npos) {
      kill(pid, SIGTERM);
      signalled = true;
    }
    return true;
  };
  auto r = c.send(req);
  ASSERT_TRUE(r);
  EXPECT_TRUE(signalled);
  auto chunks = sse_data(body);
  ASSERT_GE(chunks.size(), 2u);
  EXPECT_EQ(chunks.back(), "[DONE]");
  // Every token arrived although SIGTERM came after the first.
  EXPECT_EQ(json::parse(chunks[chunks.size() - 2])["choices"][0]["finish_reason"], "length");
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  fclose(in);
}

}  // namespace
}  // namespace alpa::serve
