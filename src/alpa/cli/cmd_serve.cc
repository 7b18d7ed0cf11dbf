// alpa serve: the OpenAI-compatible HTTP server over the serving engine.
#include <unistd.h>
#include <CLI/CLI.hpp>

#include <cerrno>
#include <csignal>
#include <thread>

#include "alpa/cli/commands.h"
#include "alpa/cli/serve_commands.h"
#include "alpa/runtime/mpi_world.h"
#include "alpa/serve/engine.h"
#include "alpa/serve/http_server.h"

namespace alpa {
namespace {

volatile sig_atomic_t g_serve_wake_fd = -1;

void serve_signal_handler(int sig) {
  const int fd = g_serve_wake_fd;
  if (fd >= 0) (void)!write(fd, &sig, sizeof sig);  // async-signal-safe
}

}  // namespace

CLI::App* add_serve_command(CLI::App& app, ServeFlags& s) {
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "Serve a decoder checkpoint in Hugging Face layout over HTTP with an OpenAI-compatible "
      "API: POST /v1/completions and /v1/chat/completions (\"stream\": true for server-sent "
      "events), GET /v1/models, /health, /metrics. Continuous batching over a paged KV cache; "
      "SIGTERM, SIGINT or SIGUSR1 finishes the requests in flight, then exits.\n"
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
  cmd->add_option("--backend", s.backend,
                  "threads (one process, a thread per device) or mpi (one device per process: "
                  "mpirun -np N alpa serve --backend mpi [--mesh 1xN | --pipeline S ...], a "
                  "1xN mesh when no split is given; process 0 serves HTTP "
                  "and drives the others' steps; SIGUSR1 to mpirun, which forwards it, or SIGTERM "
                  "to process 0 drains, then every process exits; SIGTERM to mpirun ends the "
                  "job at once)")
      ->check(CLI::IsMember({"threads", "mpi"}))
      ->capture_default_str();
  cmd->add_option("--timeout", s.timeout_s,
                  "mpi: seconds a process waits for a peer within a step before the job is "
                  "ended (a peer died or hung)")
      ->check(CLI::Range(1.0, 86400.0))
      ->capture_default_str();
  return cmd;
}

namespace {

serve::EngineOptions engine_options(const ServeFlags& s, const serve::ParallelShape& shape) {
  serve::EngineOptions o;
  o.block_size = s.block_size;
  o.kv_memory_mb = s.kv_memory_mb;
  o.max_running = s.max_running;
  o.max_step_tokens = s.max_step_tokens;
  o.max_queue = s.max_queue;
  o.static_batching = s.static_batching;
  o.threads = s.threads;
  o.parallel = shape;
  return o;
}

// "alpa serve: process 1 holds N of M parameters (B bytes of weights read)\n", one string so
// that the lines of an MPI job's processes do not interleave.
std::string holds_line(const std::string& who, int64_t held, const serve::LoadedModel& model) {
  return cat("alpa serve: ", who, " holds ", held, " of ", model.config.num_parameters(),
             " parameters (", model.weights->bytes_read(), " bytes of weights read)\n");
}

// A process of an MPI job other than process 0: opens the same model, reads its own device's
// part only and runs the steps process 0 drives until process 0 stops.
int follow_serve(const ServeFlags& s, World& world, std::ostream& out, std::ostream& err) {
  using namespace serve;
  // Signals mpirun forwards reach every process of the job; process 0 drains and then
  // releases the others, which must not die before it.
  signal(SIGTERM, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGUSR1, SIG_IGN);
  Result<LoadedModel> model = load_model_dir(s.model, ModelWeights::kOnDemand);
  if (!model.ok()) return report_error(model.status(), false, out, err);
  Result<ParallelShape> shape = serve_parallel_shape(s.parallel, model->config);
  if (!shape.ok()) return report_error(shape.status(), false, out, err);
  // The same options as process 0's engine, so every device's cache has its blocks.
  const EngineOptions o = engine_options(s, *shape);
  const KvCacheShape cache = engine_cache_shape(model->config, o);
  Result<std::unique_ptr<ParallelDecoder>> part = ParallelDecoder::create_distributed(
      DecoderSource(model->config, *model->weights), *shape, cache.block_size, cache.num_blocks,
      engine_threads(o), world);
  if (!part.ok()) return report_error(part.status(), false, out, err);
  err << holds_line(cat("process ", world.process_index()), (*part)->parameters_held(), *model)
      << std::flush;
  model->weights.reset();  // the part is read: the checkpoint's files are let go
  if (Status st = (*part)->follow(); !st.ok())
    return report_error(st.with_context(cat("process ", world.process_index())), false, out, err);
  return kExitOk;
}

}  // namespace

int run_serve(const ServeFlags& given, std::ostream& out, std::ostream& err) {
  ServeFlags s = given;
  using namespace serve;
  // SIGTERM and SIGINT are caught by a handler that writes the signal's number to a pipe, read
  // by one waiter thread. A handler, not a blocked mask and sigwait: threads that libraries start
  // before main (OpenBLAS's pool) do not inherit a mask, and a signal the kernel hands to one of
  // them would take the default action and kill the server mid-request.
  int wake[2];
  if (pipe(wake) != 0) return report_error(io_error("alpa serve: pipe() failed"), false, out, err);
  g_serve_wake_fd = wake[1];
  struct sigaction on_signal {};
  on_signal.sa_handler = serve_signal_handler;
  sigemptyset(&on_signal.sa_mask);
  sigaction(SIGTERM, &on_signal, nullptr);
  sigaction(SIGINT, &on_signal, nullptr);
  // mpirun forwards SIGUSR1 to every process (SIGTERM ends its job at once): it drains too.
  sigaction(SIGUSR1, &on_signal, nullptr);
  MpiJob job;
  MpiWorld* world = nullptr;
  if (s.backend == "mpi") {
    Result<MpiJob> started = start_mpi_job(
        s.timeout_s, "mpirun -np N alpa serve --backend mpi --mesh 1xN ... (N devices)");
    if (!started.ok()) return report_error(started.status(), false, out, err);
    job = std::move(started).value();
    world = job.world.get();
    // No split asked for: every process a tensor-parallel shard (mesh 1xN), as alpa train.
    ServeParallelFlags& p = s.parallel;
    if (p.mesh.empty() && p.pipeline == 1 && p.devices == 0 && world->num_processes() > 1)
      p.mesh = cat("1x", world->num_processes());
    if (world->process_index() != 0) return follow_serve(s, *world, out, err);
  }
  Result<LoadedModel> model = load_model_dir(s.model, ModelWeights::kOnDemand);
  if (!model.ok()) return report_error(model.status(), false, out, err);
  Result<ParallelShape> shape = serve_parallel_shape(s.parallel, model->config);
  if (!shape.ok()) return report_error(shape.status(), false, out, err);
  if (model->chat_template == nullptr)
    err << "alpa serve: warning: " << s.model << " has no chat template; chats use the format "
        << "\"User: ...\\nAssistant:\" (docs/chat_templates.md)" << std::endl;
  EngineOptions o = engine_options(s, *shape);
  o.world = world;
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
  const DecoderConfig& c = model->config;
  const EngineMetrics m = engine.metrics();
  out << "alpa serve: " << model->name << " (" << family_name(c.family) << ", "
      << c.num_parameters() << " parameters) on http://" << s.host << ":" << *port << "; "
      << engine.parallel_description() << "; KV cache " << m.kv_blocks_total << " blocks of "
      << s.block_size << " positions" << (shape->devices() > 1 ? " on every device" : "")
      << (s.static_batching ? "; static batching" : "") << std::endl;
  if (shape->devices() > 1)
    err << holds_line(world != nullptr ? "process 0" : "this process", engine.parameters_held(),
                      *model)
        << std::flush;
  model->weights.reset();  // the engine holds what it read: the checkpoint's files are let go
  std::thread waiter([&] {
    int sig = 0;
    while (read(wake[0], &sig, sizeof sig) < 0 && errno == EINTR) {
    }
    if (sig == 0) return;  // the server stopped by itself
    err << "alpa serve: signal " << sig << ", draining " << server.in_flight()
        << " requests in flight" << std::endl;
    server.drain();
  });
  server.serve();
  if (!server.draining()) {
    const int stopped = 0;
    (void)!write(wake[1], &stopped, sizeof stopped);
  }
  waiter.join();
  signal(SIGTERM, SIG_DFL);
  signal(SIGINT, SIG_DFL);
  signal(SIGUSR1, SIG_DFL);
  g_serve_wake_fd = -1;
  close(wake[0]);
  close(wake[1]);
  engine.stop();
  out << "alpa serve: stopped" << std::endl;
  return kExitOk;
}

Result<MpiJob> start_mpi_job(double timeout_s, const std::string& launch) {
  if (!MpiSession::launched_by_mpirun())
    return failed_precondition("--backend mpi, but this process was not started by mpirun", launch);
  MpiJob job;
  ALPA_ASSIGN_OR_RETURN(job.session, MpiSession::start());
  ALPA_ASSIGN_OR_RETURN(job.world, MpiWorld::create(timeout_s));
  return job;
}

}  // namespace alpa
