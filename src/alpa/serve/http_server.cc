#include "alpa/serve/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <csignal>
#include <ctime>
#include <iomanip>
#include <sstream>
#include <thread>

#include "alpa/serve/api.h"

namespace alpa::serve {

using nlohmann::json;

HttpServer::HttpServer(Engine& engine, ServerOptions options)
    : engine_(engine), options_(std::move(options)), server_(std::make_unique<httplib::Server>()) {
  routes();
}

HttpServer::~HttpServer() {
  stop();
}

namespace {

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump_json(e.body()), "application/json");
}

ApiError error_of(int status, const std::string& message, const std::string& type,
                  const std::string& code = "") {
  ApiError e;
  e.status = status;
  e.message = message;
  e.type = type;
  e.code = code;
  return e;
}

// What a provider call writes for a request's new events; `final` when it has finished.
struct Stream {
  std::shared_ptr<Request> request;
  ApiRequest api;
  std::string id;
  int64_t created = 0;
  size_t next = 0;
  bool first = true;
};

std::string finished_error(const Request& r) {
  return r.finish_reason() == "cancelled" ? "the server stopped before the request finished"
                                          : r.error();
}

}  // namespace

void HttpServer::routes() {
  httplib::Server& s = *server_;
  const int threads =
      options_.http_threads > 0
          ? options_.http_threads
          : static_cast<int>(engine_.options().max_queue + engine_.options().max_running + 16);
  s.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  s.set_payload_max_length(options_.max_body_bytes);
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    send_error(res, error_of(500, "internal error", "server_error"));
  });
  s.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    std::string what = res.status == 404   ? cat("no route ", req.method, " ", req.path)
                       : res.status == 413 ? "the request body is too large"
                                           : cat("HTTP ", res.status);
    send_error(res, error_of(res.status, what, "invalid_request_error"));
  });
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    res.status = draining_ ? 503 : 200;
    res.set_content(draining_ ? R"({"status":"draining"})" : R"({"status":"ok"})",
                    "application/json");
  });
  s.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    json model = {
        {"id", engine_.model().name}, {"object", "model"}, {"created", 0}, {"owned_by", "alpa"}};
    res.set_content(dump_json({{"object", "list"}, {"data", json::array({model})}}),
                    "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics_text(), "text/plain; version=0.0.4");
  });
  for (bool chat : {false, true}) {
    s.Post(chat ? "/v1/chat/completions" : "/v1/completions", [this, chat](
                                                                  const httplib::Request& hreq,
                                                                  httplib::Response& res) {
      if (draining_) {
        send_error(res, error_of(503, "the server is shutting down", "server_error"));
        return;
      }
      auto parsed = parse_request(hreq.body, engine_.model(), chat);
      if (auto* e = std::get_if<ApiError>(&parsed)) {
        send_error(res, *e);
        return;
      }
      auto st = std::make_shared<Stream>();
      st->api = std::move(std::get<ApiRequest>(parsed));
      Result<std::shared_ptr<Request>> r = engine_.submit(st->api.prompt, st->api.params);
      if (!r.ok()) {
        const StatusCode code = r.status().code();
        send_error(res, code == StatusCode::kResourceExhausted
                            ? error_of(429, r.status().message(), "rate_limit_error")
                        : code == StatusCode::kFailedPrecondition
                            ? error_of(503, r.status().message(), "server_error")
                            : error_of(400, r.status().message(), "invalid_request_error"));
        return;
      }
      st->request = *r;
      st->id = cat(chat ? "chatcmpl-" : "cmpl-", ++next_id_);
      st->created = static_cast<int64_t>(std::time(nullptr));
      ++in_flight_;
      const auto beat = std::chrono::milliseconds(
          std::max<int64_t>(1, static_cast<int64_t>(options_.heartbeat_s * 1000)));
      const LoadedModel* model = &engine_.model();
      auto provider = [st, beat, model](size_t, httplib::DataSink& sink) {
        std::vector<TokenEvent> events;
        const bool done = st->request->read(st->next, events, beat);
        std::string out;
        if (st->api.stream) {
          if (done && st->request->finish_reason() != "stop" &&
              st->request->finish_reason() != "length") {
            out = "data: " +
                  dump_json(error_of(500, finished_error(*st->request), "server_error").body()) +
                  "\n\n";
          } else if (!events.empty() || done) {
            out = "data: " +
                  dump_json(stream_chunk(st->api, events, done ? st->request->finish_reason() : "",
                                         st->first, *model, st->id, st->created)) +
                  "\n\n";
            st->first = false;
          } else {
            out = ": keep-alive\n\n";
          }
          if (done) out += "data: [DONE]\n\n";
        } else if (done) {
          const std::string reason = st->request->finish_reason();
          out = reason == "stop" || reason == "length"
                    ? dump_json(response_body(st->api, *st->request, *model, st->id, st->created))
                    : dump_json(error_of(500, finished_error(*st->request), "server_error").body());
          out += "\n";
        } else {
          out = " ";  // JSON allows leading whitespace: a heartbeat that finds a gone client
        }
        if (!sink.write(out.data(), out.size())) {
          st->request->cancel();
          return false;
        }
        if (done) sink.done();
        return true;
      };
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(st->api.stream ? "text/event-stream" : "application/json",
                                       provider, [this, st](bool success) {
                                         if (!success) st->request->cancel();
                                         --in_flight_;
                                       });
    });
  }
}

Result<int> HttpServer::bind() {
  std::signal(SIGPIPE, SIG_IGN);  // a write to a client that has gone must fail, not kill us
  // cpp-httplib listens with a backlog of 5: when more clients connect at once (64 streaming
  // clients, one connection per request) the accept queue overflows and connections are
  // reset. Listening again on the same socket raises the backlog (the kernel caps it at
  // net.core.somaxconn).
  auto listen_fd = std::make_shared<int>(-1);
  server_->set_socket_options([listen_fd](socket_t sock) {
    httplib::default_socket_options(sock);
    if (*listen_fd < 0) *listen_fd = static_cast<int>(sock);
  });
  int port = options_.port;
  if (port == 0) {
    port = server_->bind_to_any_port(options_.host);
    if (port < 0) return io_error(cat("cannot bind ", options_.host, " to any port"));
  } else if (!server_->bind_to_port(options_.host, port)) {
    return io_error(cat("cannot bind ", options_.host, ":", port),
                    "is the port in use? choose another with --port");
  }
  if (*listen_fd >= 0) ::listen(*listen_fd, SOMAXCONN);
  return port;
}

void HttpServer::serve() {
  server_->listen_after_bind();
}

void HttpServer::drain() {
  draining_ = true;
  while (in_flight_ > 0 || !engine_.idle())
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  stop();
}

void HttpServer::stop() {
  if (server_) server_->stop();
}

namespace {

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  return v[i];
}

void summary(std::ostringstream& os, const std::string& name, const std::string& help,
             const std::vector<double>& v) {
  os << "# HELP " << name << " " << help << " (the last 1000 samples)\n# TYPE " << name
     << " summary\n";
  for (double q : {0.5, 0.9, 0.99})
    os << name << "{quantile=\"" << q << "\"} " << quantile(v, q) << "\n";
  double sum = 0;
  for (double x : v) sum += x;
  os << name << "_sum " << sum << "\n" << name << "_count " << v.size() << "\n";
}

}  // namespace

std::string HttpServer::metrics_text() const {
  EngineMetrics m = engine_.metrics();
  std::ostringstream os;
  os << std::setprecision(15);  // counters and parameter counts past a million stay exact
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    os << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
       << name << " " << value << "\n";
  };
  metric("alpa_queue_length", "gauge", "Requests waiting to be admitted.", m.waiting);
  metric("alpa_running_sequences", "gauge", "Sequences in the running batch.", m.running);
  metric("alpa_kv_blocks_used", "gauge", "KV cache blocks held by sequences.", m.kv_blocks_used);
  metric("alpa_kv_blocks_total", "gauge", "KV cache blocks.", m.kv_blocks_total);
  metric("alpa_tensor_parallel_devices", "gauge", "Devices each layer is split over (mesh 1xN).",
         m.tensor_parallel);
  metric("alpa_pipeline_stages", "gauge", "Pipeline stages the layers are split into.",
         m.pipeline_stages);
  metric("alpa_model_parameters", "gauge", "Parameters of the whole model.",
         static_cast<double>(engine_.model().config.num_parameters()));
  metric("alpa_parameters_held", "gauge",
         "Parameters this process holds (its devices' parts of a split model).",
         static_cast<double>(engine_.parameters_held()));
  metric("alpa_requests_in_flight", "gauge", "HTTP generation requests being answered.",
         static_cast<double>(in_flight_));
  metric("alpa_tokens_per_second", "gauge", "Generated tokens per second over the last 10 s.",
         m.tokens_per_second);
  metric("alpa_generation_tokens_total", "counter", "Tokens generated.", m.generated_tokens);
  metric("alpa_prompt_tokens_total", "counter", "Prompt tokens received.", m.prompt_tokens);
  metric("alpa_preemptions_total", "counter", "Sequences preempted for KV blocks.", m.preemptions);
  os << "# HELP alpa_requests_total Requests by outcome.\n# TYPE alpa_requests_total counter\n"
     << "alpa_requests_total{outcome=\"finished\"} " << m.requests_finished << "\n"
     << "alpa_requests_total{outcome=\"cancelled\"} " << m.requests_cancelled << "\n"
     << "alpa_requests_total{outcome=\"rejected\"} " << m.requests_rejected << "\n";
  summary(os, "alpa_time_to_first_token_seconds", "Time from arrival to the first token", m.ttft);
  summary(os, "alpa_inter_token_latency_seconds", "Time between tokens of a sequence", m.itl);
  summary(os, "alpa_request_latency_seconds", "Time from arrival to the last token", m.e2e);
  return os.str();
}

}  // namespace alpa::serve
