// The HTTP front of the engine (Debian's cpp-httplib), OpenAI-compatible:
//   POST /v1/completions, /v1/chat/completions   ("stream": true: server-sent events)
//   GET  /v1/models, /health, /metrics (Prometheus text)
// Invalid requests get 400 with an OpenAI error object naming the field; an unknown model
// 404; a full queue 429; a server that is draining 503. A client that goes away has its
// sequence cancelled: the response is written while it is generated (token events, or for a
// non-streaming request whitespace before the JSON body every heartbeat), and the first write
// that fails cancels the request, whose KV blocks the engine then frees.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "alpa/serve/engine.h"
#include "alpa/support/status.h"

namespace httplib {
class Server;
}

namespace alpa::serve {

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;       // 0: any free port
  int http_threads = 0;  // 0: enough for the queue and the running batch
  size_t max_body_bytes = size_t{4} << 20;
  double heartbeat_s = 0.5;
};

class HttpServer {
 public:
  HttpServer(Engine& engine, ServerOptions options);
  ~HttpServer();

  // Binds the socket; returns the port.
  Result<int> bind();
  // Serves until stop() (blocks).
  void serve();
  // Refuses new requests (503), waits for the ones in flight to finish, then stops.
  void drain();
  void stop();
  bool draining() const { return draining_; }
  int64_t in_flight() const { return in_flight_; }

 private:
  void routes();
  std::string metrics_text() const;

  Engine& engine_;
  ServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::atomic<bool> draining_{false};
  std::atomic<int64_t> in_flight_{0};
  std::atomic<int64_t> next_id_{0};
  std::atomic<int64_t> http_errors_{0};
};

}  // namespace alpa::serve
