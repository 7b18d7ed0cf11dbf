// alpa serve: the OpenAI-compatible HTTP server over the serving engine.
#include <pthread.h>
#include <CLI/CLI.hpp>

#include <csignal>
#include <thread>

#include "alpa/cli/commands.h"
#include "alpa/cli/serve_commands.h"
#include "alpa/serve/engine.h"
#include "alpa/serve/http_server.h"

namespace alpa {

CLI::App* add_serve_command(CLI::App& app, ServeFlags& s) {
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a decoder checkpoint in Hugging Face layout over HTTP with an OpenAI-compatible "
      "API: POST /v1/completions and /v1/chat/completions (\"stream\": true for server-sent "
      "events), GET /v1/models, /health, /metrics. Continuous batching over a paged KV cache; "
      "SIGTERM finishes the requests in flight, then exits.\n"
      "Example: alpa serve --model ./gpt2 --port 8000");
  cmd->add_option("--model", s.model, "Model directory")->required();
  cmd->add_option("--host", s.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", s.port, "Port (0: any free port, printed)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--block-size", s.block_size, "KV cache block size (positions)")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--kv-memory-mb", s.kv_memory_mb, "KV cache size (on every device)")
      ->check(CLI::Range(1.0, 1e7))
      ->capture_default_str();
  cmd->add_option("--max-running", s.max_running, "Sequences in the running batch")
      ->check(CLI::Range(int64_t{1}, int64_t{4096}))
      ->capture_default_str();
  cmd->add_option("--max-step-tokens", s.max_step_tokens,
                  "Tokens per forward pass (long prompts are prefilled in chunks of this)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_option("--max-queue", s.max_queue, "Waiting requests; more get HTTP 429")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20))
      ->capture_default_str();
  cmd->add_flag("--static-batching", s.static_batching,
                "Admit a new batch only when the last has finished (a baseline)");
  cmd->add_option("--threads", s.threads, "CPU threads (0: all cores)")->check(CLI::Range(0, 1024));
  add_serve_parallel_options(cmd, s.parallel);
  return cmd;
}

int run_serve(const ServeFlags& s, std::ostream& out, std::ostream& err) {
  using namespace serve;
  // SIGTERM and SIGINT are taken by one thread (sigwait); every thread started below inherits
  // them blocked.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGUSR1);  // sent by this function when the server stops by itself
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  Result<LoadedModel> model = load_model_dir(s.model);
  if (!model.ok()) return report_error(model.status(), false, out, err);
  Result<ParallelShape> shape = serve_parallel_shape(s.parallel, model->decoder->config());
  if (!shape.ok()) return report_error(shape.status(), false, out, err);
  if (model->chat_template == nullptr)
    err << "alpa serve: warning: " << s.model << " has no chat template; chats use the format "
        << "\"User: ...\\nAssistant:\" (docs/chat_templates.md)" << std::endl;
  EngineOptions o;
  o.block_size = s.block_size;
  o.kv_memory_mb = s.kv_memory_mb;
  o.max_running = s.max_running;
  o.max_step_tokens = s.max_step_tokens;
  o.max_queue = s.max_queue;
  o.static_batching = s.static_batching;
  o.threads = s.threads;
  o.parallel = *shape;
  Result<std::unique_ptr<Engine>> made = Engine::create(*model, o);
  if (!made.ok()) return report_error(made.status(), false, out, err);
  Engine& engine = **made;
  ServerOptions so;
  so.host = s.host;
  so.port = s.port;
  HttpServer server(engine, so);
  Result<int> port = server.bind();
  if (!port.ok()) return report_error(port.status(), false, out, err);
  engine.start();
  const DecoderConfig& c = model->decoder->config();
  const EngineMetrics m = engine.metrics();
  out << "alpa serve: " << model->name << " (" << family_name(c.family) << ", "
      << model->decoder->num_parameters() << " parameters) on http://" << s.host << ":" << *port
      << "; " << engine.parallel_description() << "; KV cache " << m.kv_blocks_total
      << " blocks of " << s.block_size << " positions"
      << (shape->devices() > 1 ? " on every device" : "")
      << (s.static_batching ? "; static batching" : "") << std::endl;
  std::thread waiter([&] {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) return;  // the server stopped by itself
    err << "alpa serve: signal " << sig << ", draining " << server.in_flight()
        << " requests in flight" << std::endl;
    server.drain();
  });
  server.serve();
  if (!server.draining()) {
    pthread_kill(waiter.native_handle(), SIGUSR1);
  }
  waiter.join();
  engine.stop();
  out << "alpa serve: stopped" << std::endl;
  return kExitOk;
}

}  // namespace alpa
