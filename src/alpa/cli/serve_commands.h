// `alpa generate` and `alpa serve`: decoder checkpoints in Hugging Face layout (the serve
// module). Like commands.h, each run_* writes its report to `out`, errors to `err`, and
// returns the exit code; the add_* functions register the subcommand and its flags.
#pragma once

#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "alpa/runtime/mpi_world.h"
#include "alpa/serve/parallel_decoder.h"
#include "alpa/support/status.h"

namespace CLI {
class App;
}

namespace alpa {

// How a model is split over devices (threads of this process): --mesh 1xN (tensor parallel
// over N devices), --pipeline S (S stages), or --devices N with --objective latency |
// throughput (the split the inference planner, serve_plan/inference_plan.h, chooses for N
// devices of the "local" cluster preset).
struct ServeParallelFlags {
  std::string mesh;  // "1xN"
  int pipeline = 1;
  int devices = 0;
  std::string objective = "latency";
};
void add_serve_parallel_options(CLI::App* cmd, ServeParallelFlags& flags);
// The shape the flags ask for `config`; errors for a mesh other than 1xN or contradicting flags.
Result<serve::ParallelShape> serve_parallel_shape(const ServeParallelFlags& flags,
                                                  const serve::DecoderConfig& config);

struct GenerateFlags {
  std::string model;  // the model directory
  std::string prompt;
  std::vector<int64_t> prompt_ids;  // instead of the text
  bool chat = false;                // the prompt is a user message in the chat format
  int64_t max_tokens = 64;
  double temperature = 1.0;
  int64_t top_k = 0;
  double top_p = 1.0;
  int64_t seed = 0;
  std::vector<std::string> stop;
  int64_t logprobs = -1;
  bool ignore_eos = false;
  int threads = 0;
  bool json = false;
  ServeParallelFlags parallel;
  // Through the compile driver (infer/compiled_decoder.h): prefill and decode steps planned for
  // --mesh by the intra-op ILP and run by the ProgramRunner; greedy only.
  bool compiled = false;
  int64_t context = 0;   // --compiled: KV cache positions (0: prompt + max tokens)
  int64_t chunk = 16;    // --compiled: prompt tokens per prefill step
  double memory_mb = 0;  // --compiled: memory per device the plan must fit (0: the machine's)
  std::string backend = "threads";  // --compiled: or "mpi", one device per process of mpirun
};
CLI::App* add_generate_command(CLI::App& app, GenerateFlags& flags);
int run_generate(const GenerateFlags& flags, std::ostream& out, std::ostream& err);

struct ServeFlags {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8000;  // 0: any free port (printed)
  int64_t block_size = 16;
  double kv_memory_mb = 512;
  int64_t max_running = 16;
  int64_t max_step_tokens = 256;
  int64_t max_queue = 256;
  bool static_batching = false;
  int threads = 0;
  ServeParallelFlags parallel;
  std::string backend = "threads";  // or "mpi": one device per process of an mpirun job
  double timeout_s = 600;           // mpi: the longest wait for a peer within a step
};
CLI::App* add_serve_command(CLI::App& app, ServeFlags& flags);
// Serves until SIGTERM or SIGINT, then drains the requests in flight and returns 0.
int run_serve(const ServeFlags& flags, std::ostream& out, std::ostream& err);

// `--backend mpi`: MPI started in this process and the job's World (one device per process,
// waits bounded by timeout_s), or an error when this process was not started by mpirun, with
// `launch`, the command that starts it, as the hint.
struct MpiJob {
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<MpiWorld> world;
};
Result<MpiJob> start_mpi_job(double timeout_s, const std::string& launch);

}  // namespace alpa
