// The `alpa` commands as library functions: each parses nothing itself (flags are filled by
// CLI11 in main.cc), writes its report to `out` (one JSON object with --json) and errors to
// `err`, and returns the process exit code. Tests call these directly.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "alpa/compile/compile.h"
#include "alpa/inter/stage_planner.h"
#include "alpa/intra/auto_sharding.h"
#include "alpa/models/registry.h"
#include "alpa/program/program.h"
#include "alpa/runtime/train.h"
#include "alpa/sim/simulator.h"
#include "alpa/spmd/schedule.h"
#include "alpa/support/status.h"

namespace CLI {
class App;
}

namespace alpa {

inline constexpr int kExitOk = 0;
inline constexpr int kExitUserError = 1;

// Flags shared by every command that takes a model.
struct ModelFlags {
  std::string model = "gpt";
  std::string size = "tiny";
  std::optional<int64_t> batch, seq, layers, hidden, heads, vocab;
  std::string dtype;  // empty: the size's default
  std::string loss;   // ONNX models: cross_entropy|mse[:OUTPUT] (empty: the graph's loss)
};
void add_model_flags(CLI::App& app, ModelFlags& flags);
Result<ModelSpec> resolve_model_flags(const ModelFlags& flags);

struct OptimizerFlags {
  std::string optimizer = "adamw";
  double lr = 1e-3;
  double momentum = 0.9;
  double weight_decay = 0.0;
  std::string lr_schedule = "constant";  // constant | cosine | linear
  int warmup_steps = 0;
  double min_lr = 0;                // the floor a decay ends at
  int decay_steps = 0;              // the step the decay ends at; 0: --steps
  double clip_grad = 0;             // clip the global gradient norm to this; 0: no clipping
  bool grad_norm = false;           // compute (and report) the global gradient norm
  std::string loss_scale = "none";  // none | dynamic (f16 training)
  double loss_scale_log2 = 16;      // the first scale, 2^this
};
void add_optimizer_flags(CLI::App& app, OptimizerFlags& flags);
Result<OptimizerOptions> optimizer_options(const OptimizerFlags& flags);
// The learning-rate schedule the flags give for a run of `steps` steps (none: constant).
Result<std::optional<LrSchedule>> lr_schedule(const OptimizerFlags& flags, int steps);

// Flags of commands that shard a model over a device mesh.
struct ParallelFlags {
  std::string mesh;     // "2x2"; empty: the command's default
  std::string cluster;  // preset name or cluster JSON; empty: the command's default
  std::string plan =
      "auto";  // auto, data-parallel, zero, zero3, tensor-parallel, 2d, or a plan file
  double memory_budget_gb = 0;  // per device; 0: none
  std::string batch_axis = "auto";
  bool prefer_reduce_scatter = false;
  bool allow_mixed_mesh_shape = false;
  double ilp_time_limit_s = 30;
  // Pipeline parallelism.
  int devices = 0;          // --gpus / --devices: plan stages over this many devices
  std::string pipeline;     // "auto" (default with --devices) or "none"
  int pipeline_layers = 0;  // layer clusters (0: automatic)
  std::string schedule;     // "1f1b" (default), "gpipe", "interleaved" or "auto"
  int virtual_stages = 0;   // interleaved: stages per mesh (0: 2; auto: 2, 4, 8)
  // Alpa's stage_imbalance_tolerance; negative: by model (Alpa's suites: 0.25 for Wide-ResNet,
  // 1 for the others).
  double stage_imbalance = -1;
  std::string space = "full";       // plan space: full, intra-only, inter-only
  std::string remat = "auto";       // recomputation per stage: auto, none, selective, full
  int plan_threads = 0;             // threads for one count's stage solves (0: the cores left)
  bool search_every_count = false;  // no layouts carried across micro-batch counts
  // How a pipeline is chosen among the planner's candidates: "simulation" (each candidate's
  // program simulated, the fastest that fits wins) or "planner" (its own estimate); empty: the
  // command's default (plan, simulate: simulation; train, compile: planner).
  std::string choose;
};
void add_parallel_flags(CLI::App& app, ParallelFlags& flags, const std::string& default_mesh,
                        const std::string& default_cluster);

struct ResolvedParallel {
  MeshShape mesh{1, 1};
  std::string cluster;
  AutoShardingOptions options;
  std::string plan_source;  // "auto", a manual plan name, or the plan file
};
// Pipeline parallelism from the flags: enabled by --devices/--gpus, --pipeline auto, or a
// plan file with stages.
struct ResolvedPipeline {
  bool enabled = false;
  int devices = 0;
  std::string cluster;
  AutoShardingOptions sharding;      // per-stage intra-op options
  std::optional<PipelinePlan> plan;  // from a plan file
  std::string fingerprint;           // the plan file's graph fingerprint, if any
  ScheduleKind schedule = ScheduleKind::k1F1B;
  int virtual_stages = 0;        // interleaved (0: kDefaultVirtualStages or the plan file's)
  bool choose_schedule = false;  // --schedule auto
  int layers = 0;
  double imbalance_tolerance = std::numeric_limits<double>::infinity();
  PlanSpace space = PlanSpace::kFull;
  RematMode remat = RematMode::kAuto;
  std::string source = "auto";  // "auto" or the plan file
};
Result<ResolvedPipeline> resolve_pipeline(const ParallelFlags& flags,
                                          const std::string& default_cluster);

// Turns the flags into a mesh, a cluster and auto-sharding options for `train_step`.
Result<ResolvedParallel> resolve_parallel(const ParallelFlags& flags, const Graph& train_step,
                                          const std::string& default_mesh,
                                          const std::string& default_cluster);

// The compile options the flags ask for: a pipeline (--devices, or a plan file with stages) or
// one mesh (--mesh, default `default_mesh`) with its plan source (auto, a manual plan, or a
// plan file's layouts), on the cluster (--cluster, default `default_cluster`).
struct CompileSetup {
  std::string cluster;  // preset or cluster JSON
  CompileOptions options;
  std::string plan_source;  // "auto", a manual plan name, or the plan file
  ResolvedPipeline pipe;    // the pipeline flags resolved (pipe.enabled: a pipeline)
};
Result<CompileSetup> resolve_compile(const ParallelFlags& flags, const ModelSpec& spec,
                                     const OptimizerOptions& optimizer, int micro_batches,
                                     const std::string& default_mesh,
                                     const std::string& default_cluster);

// What a program records of the flags it was compiled from (Program::source), and the flags
// back from a program, so `alpa train|simulate --program FILE` needs no model flags.
std::map<std::string, std::string> program_source(const ModelFlags& model,
                                                  const OptimizerFlags& optimizer,
                                                  int micro_batches);
Status flags_from_program(const Program& program, ModelFlags& model, OptimizerFlags& optimizer,
                          int& micro_batches);

struct TrainFlags {
  ModelFlags model;
  OptimizerFlags optimizer;
  int steps = 20;
  uint64_t seed = 0;
  int micro_batches = 0;  // 0: not given (1; a pipeline searches)
  int threads = 0;
  bool profile = false;  // print time per op kind
  bool json = false;
  ParallelFlags parallel;
  std::string backend = "threads";  // threads | mpi
  double timeout_s = 120;           // longest wait for a peer device
  std::string checkpoint_dir;
  int checkpoint_every = 0;
  std::string resume;
  std::string trace_path;    // Chrome trace of the last step
  std::string program_path;  // run this compiled program (`alpa compile --out`)
  std::string data_path;     // a token dataset (`alpa data prepare`) instead of synthetic data
  std::string log_path;      // one JSON line per step (step, loss, lr, seconds, tokens/s)
  bool model_given = false;  // any model or optimizer flag was given (else: the program's)
  std::string init_from;     // start from GPT-2 weights (`alpa export`), fresh optimizer state
  int64_t data_offset = 0;   // step s trains on the data of step s + data_offset
  int eval_every = 0;        // validation loss every N steps (and after the last); 0: never
  int eval_batches = 4;      // held-out batches per validation
};
int run_train(const TrainFlags& flags, std::ostream& out, std::ostream& err);

struct GraphFlags {
  ModelFlags model;
  OptimizerFlags optimizer;
  int micro_batches = 1;
  std::string emit;      // "", "forward" or "train-step": print the text IR
  std::string out_path;  // with --emit: write it to this file instead of stdout
  bool json = false;
};
int run_graph(const GraphFlags& flags, std::ostream& out, std::ostream& err);

struct PlanFlags {
  ModelFlags model;
  OptimizerFlags optimizer;
  ParallelFlags parallel;
  int micro_batches = 0;  // 0: not given (1; a pipeline searches)
  std::string out_path;   // write the complete plan as JSON
  int top = 10;           // communication entries to list
  bool json = false;
};
int run_plan(const PlanFlags& flags, std::ostream& out, std::ostream& err);
// Compiles as `alpa plan` does (pipelines: planned by the checked planner, or a plan file's
// stages), with a progress line on a terminal.
Result<Compiled> compile_for_plan(const PlanFlags& flags, const ModelSpec& spec,
                                  const CompileSetup& setup);
// compile() on the cluster (preset or file) with a progress line on a terminal (not with --json).
Result<Compiled> compile_with_progress(bool json, const ModelSpec& spec, const std::string& cluster,
                                       CompileOptions options);
// "12.3 ms (model step 1.0 ms; plan 10.2 ms; ...)": compile's phases as `alpa plan` and
// `alpa compile` print them; in JSON, "compile_phases": {"model step": s, ...}.
std::string compile_phases_text(const Compiled& compiled);
nlohmann::ordered_json compile_phases_json(const Compiled& compiled);
// A pipeline stage's memory per device in the parts of cost/memory.h, as `alpa plan` and
// `alpa simulate` report it: {"planned": {...}, "simulated": {...}}, each part left out when
// null.
nlohmann::ordered_json stage_memory_json(const MemoryBreakdown* planned,
                                         const MemoryBreakdown* simulated);
// `alpa plan` for a pipeline (--gpus / a pipeline plan file): stages, submeshes, per-stage plans.
int run_plan_pipeline(const PlanFlags& flags, const ModelSpec& spec, const CompileSetup& setup,
                      const Compiled& compiled, std::ostream& out, std::ostream& err);

// alpa compile: compiles as `alpa train` would and writes the executable program
// (program/io.h) that `alpa train --program` and `alpa simulate --program` run.
struct CompileFlags {
  PlanFlags plan;  // plan.out_path: where the program goes (required)
};
int run_compile(const CompileFlags& flags, std::ostream& out, std::ostream& err);

// alpa simulate: plans like `alpa plan --gpus` (or takes a pipeline plan file) and runs the
// step's instruction lists in simulated time (sim/simulator.h).
struct SimulateFlags {
  PlanFlags plan;
  std::string trace_path;    // Chrome/Perfetto trace of the simulated step
  std::string baseline;      // empty: the planner; else megatron | deepspeed | pp-dp
  std::string program_path;  // simulate this compiled program (`alpa compile --out`)
  bool model_given = false;  // any model or optimizer flag was given (else: the program's)
};
int run_simulate(const SimulateFlags& flags, std::ostream& out, std::ostream& err);

// alpa profile: measures this machine's device and collectives into a cluster JSON.
struct ProfileFlags {
  std::string backend = "threads";  // threads | mpi (under mpirun)
  std::string out_path;             // empty: print the JSON
  std::string name = "local-profiled";
  int max_group = 4;      // threads: groups of 2, 4, ... up to this
  double budget_s = 0.2;  // seconds of repetitions per measurement
};
int run_profile(const ProfileFlags& flags, std::ostream& out, std::ostream& err);

struct DemoFlags {
  int steps = 300;
  uint64_t seed = 0;
  int threads = 0;
  bool json = false;
};
int run_demo(const DemoFlags& flags, std::ostream& out, std::ostream& err);

// alpa data prepare: text files tokenized into a token dataset (data/token_dataset.h) that
// `alpa train --data DIR` reads.
struct DataPrepareFlags {
  std::string vocab;           // GPT-2's encoder.json / a vocab.json
  std::string merges;          // GPT-2's vocab.bpe / a merges.txt
  std::string tokenizer_json;  // or a tokenizer.json or a SentencePiece .model (--tokenizer)
  std::string out;             // the dataset directory
  double validation = 0.1;
  std::vector<std::string> files;
  bool json = false;
};
int run_data_prepare(const DataPrepareFlags& flags, std::ostream& out, std::ostream& err);

// alpa export: a checkpoint of the built-in GPT as Hugging Face GPT-2 weights
// (cli/gpt2_weights.h): DIR/model.safetensors and DIR/config.json.
struct ExportFlags {
  std::string checkpoint;  // a checkpoint directory or one of its step directories
  std::string format = "safetensors";
  std::string out;            // the directory to write
  std::string dtype = "f32";  // f32 | f16 | bf16: how the weights are stored
  ModelFlags model;           // the checkpoint's model; --size defaults to the checkpoint's
  bool size_given = false;    // --size was given
  bool json = false;
};
int run_export(const ExportFlags& flags, std::ostream& out, std::ostream& err);

// alpa forward: the logits of GPT-2 weights (`alpa export`, or a Hugging Face GPT-2 with the
// exact GELU) for token sequences, computed by the runtime on one device.
struct ForwardFlags {
  std::string weights;  // directory with config.json and model.safetensors (or shards)
  std::string tokens;   // text file: one sequence per line, token ids separated by spaces
  std::string out;      // write the logits [B, T, V] (f32) as safetensors (tensor "logits")
  int threads = 0;
  bool json = false;
};
int run_forward(const ForwardFlags& flags, std::ostream& out, std::ostream& err);
// The sequences of a tokens file (equal lengths, ids below `vocab`); errors name the line.
Result<std::vector<std::vector<int32_t>>> read_token_lines(const std::string& path, int64_t vocab);

// alpa plan-serve: a decoder's serving split (tensor x pipeline parallel) on a cluster, every
// candidate with its predicted memory, latency and throughput (serve_plan/inference_plan.h).
struct PlanServeFlags {
  std::string model;  // a named shape (opt-175b, ...) or a model directory
  std::string cluster = "p4d.24xlarge";
  int gpus = 8;
  std::string objective = "latency";  // latency | throughput
  std::string dtype = "f16";
  int64_t prompt_len = 512;
  int64_t output_len = 128;
  int64_t batch = 1;
  int64_t max_batch = 256;
  double rate = 0;  // requests/s each split must sustain (0: any)
  bool json = false;
};
CLI::App* add_plan_serve_command(CLI::App& app, PlanServeFlags& flags);
int run_plan_serve(const PlanServeFlags& flags, std::ostream& out, std::ostream& err);

// Prints a user error ("error: ...", "hint: ...") to err and, with --json, a JSON object
// {"error": ..., "hint": ...} to out. Returns kExitUserError.
int report_error(const Status& status, bool json, std::ostream& out, std::ostream& err);

}  // namespace alpa
