// The `alpa` program: parses flags with CLI11 and runs one command (commands.h).
#include <CLI/CLI.hpp>

#include <iostream>

#include "alpa/cli/commands.h"
#include "alpa/cli/serve_commands.h"
#include "alpa/cli/validators.h"
#include "alpa/support/system.h"

namespace {

using namespace alpa;

// `alpa train` and its flags.
CLI::App* add_train_command(CLI::App& app, TrainFlags& train) {
  CLI::App* train_cmd = app.add_subcommand(
      "train",
      "Train a model on this machine and print the loss per step, step time, tokens/s and "
      "GFLOP/s: on one device, on a mesh of virtual devices (--mesh 2x2), or as a pipeline of "
      "stages on virtual devices (--devices 8).\nExample: alpa train --model gpt --size tiny "
      "--steps 50");
  add_model_flags(*train_cmd, train.model);
  add_optimizer_flags(*train_cmd, train.optimizer);
  train_cmd->add_option("--steps", train.steps, "Training steps")
      ->check(positive_number())
      ->capture_default_str();
  train_cmd->add_option("--seed", train.seed, "Seed for weights and synthetic data")
      ->capture_default_str();
  train_cmd
      ->add_option("--micro-batches", train.micro_batches,
                   "Split each batch into this many micro-batches (gradient accumulation). "
                   "Default: 1; with pipeline stages the planner chooses")
      ->check(integer_in(1, int64_t{1} << 24, "at most one per sample"));
  train_cmd->add_option("--threads", train.threads, "CPU threads (0: all cores)")
      ->check(integer_in(0, kMaxThreads, "threads a process may start"))
      ->capture_default_str();
  add_parallel_flags(*train_cmd, train.parallel, "1x1 (one device)", "local");
  train_cmd
      ->add_option("--backend", train.backend,
                   "Where the devices run: threads (virtual devices in this process) or mpi (one "
                   "process per device: mpirun -np N alpa train --backend mpi ...; the mesh or "
                   "--devices must have N devices, default mesh 1xN)")
      ->check(CLI::IsMember({"threads", "mpi"}))
      ->capture_default_str();
  train_cmd
      ->add_option("--timeout", train.timeout_s,
                   "Seconds a device waits for a peer before the run stops with an error naming "
                   "the rank (MPI: the whole job is aborted)")
      ->check(positive_number())
      ->capture_default_str();
  train_cmd->add_option("--checkpoint-dir", train.checkpoint_dir,
                        "Write checkpoints (weights and optimizer state, sharded, with a "
                        "manifest) into this directory: after the last step, and every "
                        "--checkpoint-every steps");
  train_cmd
      ->add_option("--checkpoint-every", train.checkpoint_every,
                   "Steps between checkpoints (0: only after the last step)")
      ->check(non_negative_number())
      ->capture_default_str();
  train_cmd->add_option("--resume", train.resume,
                        "Start from a checkpoint (a --checkpoint-dir, or one of its step-* "
                        "directories), under any plan, device count or backend; --steps counts "
                        "from the start of training");
  train_cmd->add_option("--init-from", train.init_from,
                        "Start from GPT-2 weights (a directory written by `alpa export`: "
                        "config.json and model.safetensors) with fresh optimizer state, under "
                        "any plan (--model gpt with the weights' sizes)");
  train_cmd
      ->add_option("--data-offset", train.data_offset,
                   "Train step s on the data of step s + N (continue another run's data, e.g. "
                   "after --init-from from its checkpoint at step N)")
      ->check(integer_in(0, int64_t{1} << 40, "steps"));
  train_cmd->add_option("--trace", train.trace_path,
                        "Write the last step's timeline (every device; each pipeline "
                        "instruction with its measured time) as a Chrome trace (JSON), "
                        "comparable with `alpa simulate --trace`");
  train_cmd
      ->add_option("--eval-every", train.eval_every,
                   "Every N steps and after the last, the loss on held-out data (the "
                   "validation split of --data), with the weights of that step; 0: never")
      ->check(CLI::Range(0, 1 << 30));
  train_cmd
      ->add_option("--eval-batches", train.eval_batches,
                   "Held-out batches per validation (the same ones each time)")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  train_cmd->add_option(
      "--log", train.log_path,
      "Write one JSON object per step to this file (replaced if it exists): "
      "step, loss, lr, seconds, tokens_per_s, and where known grad_norm, val_loss and mfu "
      "(model FLOP/s over the cluster's peak for the cores in use); flushed as "
      "each step ends");
  train_cmd->add_option("--data", train.data_path,
                        "Train on a token dataset written by `alpa data prepare` (GPT and MoE; "
                        "--vocab must hold its vocabulary), or on a directory of NumPy arrays "
                        "(any model: <input>.npy per model input, samples along dim 0, and "
                        "optionally <input>.val.npy held out), instead of synthetic data");
  train_cmd->add_option("--program", train.program_path,
                        "Run a program compiled by `alpa compile --out` instead of planning: its "
                        "devices, stages and layouts are fixed; the model flags default to the "
                        "ones it was compiled with");
  train_cmd->add_flag("--profile", train.profile,
                      "Also report where the step time goes, per op kind");
  train_cmd->add_flag("--json", train.json, "Print one JSON object instead of text");
  return train_cmd;
}

// `alpa graph` and its flags.
CLI::App* add_graph_command(CLI::App& app, GraphFlags& graph) {
  CLI::App* graph_cmd = app.add_subcommand(
      "graph",
      "Build a model's training step and summarise it: ops by kind, parameters, FLOPs per "
      "step, parameter, optimizer-state and activation bytes. No weights are allocated, so "
      "paper-size models work.\nExample: alpa graph --model gpt --size 39b");
  add_model_flags(*graph_cmd, graph.model);
  add_optimizer_flags(*graph_cmd, graph.optimizer);
  graph_cmd->add_option("--micro-batches", graph.micro_batches, "Micro-batches per step")
      ->check(positive_number())
      ->capture_default_str();
  graph_cmd
      ->add_option("--emit", graph.emit,
                   "Print the text IR instead of the summary: forward or train-step")
      ->check(CLI::IsMember({"forward", "train-step"}));
  graph_cmd->add_option("--out", graph.out_path, "With --emit: write the IR to this file");
  graph_cmd->add_flag("--json", graph.json, "Print one JSON object instead of text");
  return graph_cmd;
}

// `alpa plan` and its flags.
CLI::App* add_plan_command(CLI::App& app, PlanFlags& plan) {
  CLI::App* plan_cmd = app.add_subcommand(
      "plan",
      "Plan how to split a model's training step over devices and explain it. With --mesh: "
      "one mesh, the auto-sharding ILP (layouts of the weights, communication, predicted step "
      "time and memory per device). With --gpus: pipeline stages, their submeshes, logical "
      "meshes and intra-op plans, and the micro-batch count. No weights are allocated.\n"
      "Examples: alpa plan --model gpt --size 1.3b --cluster p3.16xlarge --mesh 1x4\n"
      "          alpa plan --model gpt --size 2.6b --cluster p3.16xlarge --gpus 8 --batch 1024");
  add_model_flags(*plan_cmd, plan.model);
  add_optimizer_flags(*plan_cmd, plan.optimizer);
  add_parallel_flags(*plan_cmd, plan.parallel, "1x8", "p3.16xlarge");
  plan_cmd
      ->add_option("--micro-batches", plan.micro_batches,
                   "Micro-batches per step. Default: 1; with --gpus the planner searches the "
                   "divisors of the batch")
      ->check(positive_number());
  plan_cmd->add_option("--out", plan.out_path,
                       "Write the complete plan as JSON (for `alpa train --plan`, or to edit)");
  plan_cmd->add_option("--top", plan.top, "Largest communications to list")
      ->check(non_negative_number())
      ->capture_default_str();
  plan_cmd->add_flag("--json", plan.json, "Print one JSON object instead of text");
  return plan_cmd;
}

// `alpa simulate` and its flags.
CLI::App* add_simulate_command(CLI::App& app, SimulateFlags& sim) {
  CLI::App* sim_cmd = app.add_subcommand(
      "simulate",
      "Plan a pipeline as `alpa plan --gpus N` does (or take a pipeline plan file) and run its "
      "training step in simulated time on the cluster's cost model: step time, samples/s, "
      "TFLOP/s per device (Megatron's formula for GPT), bubble fraction, peak memory per stage; "
      "--trace writes the simulated timeline for Perfetto / chrome://tracing. --baseline "
      "grid-searches a hand-written plan family instead (Megatron-LM, DeepSpeed ZeRO, pipeline + "
      "data parallel), each configuration simulated the same way.\n"
      "Example: alpa simulate --model gpt --size 1.3b --cluster p3.16xlarge --gpus 4 --batch 1024 "
      "--trace gpt.json");
  add_model_flags(*sim_cmd, sim.plan.model);
  add_optimizer_flags(*sim_cmd, sim.plan.optimizer);
  add_parallel_flags(*sim_cmd, sim.plan.parallel, "(pipelines only)", "p3.16xlarge");
  sim_cmd
      ->add_option("--micro-batches", sim.plan.micro_batches,
                   "Micro-batches per step (default: searched by the planner)")
      ->check(positive_number());
  sim_cmd
      ->add_option("--baseline", sim.baseline,
                   "Instead of the planner: megatron (data x tensor x pipeline degrees and "
                   "micro-batch size, Megatron's GPT sharding), deepspeed (ZeRO-2/ZeRO-3 data "
                   "parallel, expert parallel for MoE), pp-dp (pipeline + data parallel); the "
                   "fastest configuration that fits is reported with every one tried")
      ->check(CLI::IsMember({"megatron", "deepspeed", "pp-dp"}));
  sim_cmd->add_option("--program", sim.program_path,
                      "Simulate a program compiled by `alpa compile --out` (its model flags "
                      "default to the ones it was compiled with)");
  sim_cmd->add_option("--trace", sim.trace_path,
                      "Write the simulated step as a Chrome trace (JSON) to this file");
  sim_cmd->add_flag("--json", sim.plan.json, "Print one JSON object instead of text");
  return sim_cmd;
}

// `alpa compile` and its flags.
CLI::App* add_compile_command(CLI::App& app, CompileFlags& comp) {
  CLI::App* comp_cmd = app.add_subcommand(
      "compile",
      "Compile a model for a mesh or a pipeline of devices exactly as `alpa train` would, and "
      "write the executable program: per-device programs with local shapes, layouts, cross-mesh "
      "transfers and every device's instruction list (docs/programs.md). `alpa train --program` "
      "runs it (every MPI rank gets it as written) and `alpa simulate --program` simulates it, "
      "without planning again.\n"
      "Examples: alpa compile --model gpt --size tiny --mesh 2x2 --out gpt.program.json\n"
      "          alpa compile --model gpt --size tiny --devices 4 --out pipe.program.json");
  add_model_flags(*comp_cmd, comp.plan.model);
  add_optimizer_flags(*comp_cmd, comp.plan.optimizer);
  add_parallel_flags(*comp_cmd, comp.plan.parallel, "1x1 (one device)", "local");
  comp_cmd
      ->add_option("--micro-batches", comp.plan.micro_batches,
                   "Micro-batches per step. Default: 1; with --devices the planner chooses")
      ->check(positive_number());
  comp_cmd->add_option("--out", comp.plan.out_path, "Write the program (JSON) here")->required();
  comp_cmd->add_flag("--json", comp.plan.json, "Print one JSON object instead of text");
  return comp_cmd;
}

// `alpa profile` and its flags.
CLI::App* add_profile_command(CLI::App& app, ProfileFlags& prof) {
  CLI::App* prof_cmd = app.add_subcommand(
      "profile",
      "Measure this machine for the cost model and write a cluster JSON: one device's SGEMM "
      "speed and efficiency by product size, memory bandwidth, and the collectives of the "
      "threads backend (or, under mpirun with --backend mpi, of the MPI backend). Plans and "
      "simulations made with --cluster <file> then use the measured tables.\n"
      "Example: alpa profile --out local.json && alpa train --mesh 1x2 --cluster local.json");
  prof_cmd->add_option("--backend", prof.backend, "Collectives to measure: threads or mpi")
      ->check(CLI::IsMember({"threads", "mpi"}))
      ->capture_default_str();
  prof_cmd->add_option("--out", prof.out_path, "Write the cluster JSON here (default: stdout)");
  prof_cmd->add_option("--name", prof.name, "The cluster's name")->capture_default_str();
  prof_cmd
      ->add_option("--max-group", prof.max_group,
                   "threads: measure groups of 2, 4, ... devices up to this")
      ->check(CLI::Range(2, 64))
      ->capture_default_str();
  prof_cmd->add_option("--budget", prof.budget_s, "Seconds of repetitions per measurement")
      ->check(positive_number())
      ->capture_default_str();
  return prof_cmd;
}

// `alpa data prepare` and its flags.
CLI::App* add_data_command(CLI::App& app, DataPrepareFlags& data) {
  CLI::App* data_cmd = app.add_subcommand("data", "Prepare training data");
  data_cmd->require_subcommand(1);
  CLI::App* prep = data_cmd->add_subcommand(
      "prepare",
      "Tokenize text files (each a document, followed by the tokenizer's end of text: GPT-2's "
      "<|endoftext|>, a SentencePiece model's eos) with a byte-level BPE or SentencePiece "
      "tokenizer into a token dataset: train.bin and validation.bin (uint16 tokens, the last "
      "--validation fraction held out) and header.json. `alpa train --data DIR` reads it.\n"
      "Example: alpa data prepare --vocab encoder.json --merges vocab.bpe --out corpus "
      "/usr/share/common-licenses/*\n"
      "Example: alpa data prepare --tokenizer tokenizer.model --out corpus docs/*.md");
  prep->add_option("--vocab", data.vocab, "Vocabulary: GPT-2's encoder.json or a vocab.json");
  prep->add_option("--merges", data.merges, "Merges: GPT-2's vocab.bpe or a merges.txt");
  prep->add_option("--tokenizer", data.tokenizer_json,
                   "Instead of --vocab and --merges: a Hugging Face tokenizer.json (byte-level "
                   "BPE) or a SentencePiece model (a .model file: LLaMA's, T5's tokenizer.model, "
                   "or spm_train's), told apart by their content");
  prep->add_option("--out", data.out, "The dataset directory to write")->required();
  prep->add_option("--validation", data.validation, "Fraction of the tokens held out")
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  prep->add_option("files", data.files, "Text files (UTF-8)")->required();
  prep->add_flag("--json", data.json, "Print one JSON object instead of text");
  return prep;
}

// `alpa export` and its flags.
CLI::App* add_export_command(CLI::App& app, ExportFlags& ex) {
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Write a checkpoint of the built-in GPT as Hugging Face GPT-2 weights: model.safetensors "
      "and config.json in --out, which `alpa train --init-from`, `alpa forward` and GPT-2 "
      "implementations elsewhere read. Give the model flags the run was trained with (--size "
      "defaults to the checkpoint's; the head count is not stored in checkpoints).\n"
      "Example: alpa export --checkpoint ck --format safetensors --out gpt2-tiny\n"
      "An ONNX model's checkpoint is written as the same ONNX file with the trained weights:\n"
      "  alpa export --format onnx --checkpoint ck --model model.onnx --out trained.onnx");
  cmd->add_option("--checkpoint", ex.checkpoint,
                  "A checkpoint directory (its latest step) or one of its step-* directories")
      ->required();
  cmd->add_option("--format", ex.format, "Output format")
      ->check(CLI::IsMember({"safetensors", "onnx"}))
      ->capture_default_str();
  cmd->add_option("--out", ex.out, "The directory to write (--format onnx: the file)")->required();
  cmd->add_option("--dtype", ex.dtype, "How the weights are stored: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  // The sizes of the checkpoint's GPT (the storage dtype is --dtype above).
  cmd->add_option("--model", ex.model.model,
                  "The checkpoint's model (gpt, or the .onnx file it was trained from)")
      ->capture_default_str();
  cmd->add_option("--size", ex.model.size, "The checkpoint's GPT size (default: its own)");
  for (auto [name, slot] : {std::pair{"--seq", &ex.model.seq},
                            {"--layers", &ex.model.layers},
                            {"--hidden", &ex.model.hidden},
                            {"--heads", &ex.model.heads},
                            {"--vocab", &ex.model.vocab}})
    cmd->add_option_function<int64_t>(
           name, [slot](const int64_t& v) { *slot = v; }, "As the run was trained with")
        ->check(integer_in(1, int64_t{1} << 24, "larger than any model alpa trains"))
        ->group("Model overrides");
  cmd->add_flag("--json", ex.json, "Print one JSON object instead of text");
  return cmd;
}

// `alpa forward` and its flags.
CLI::App* add_forward_command(CLI::App& app, ForwardFlags& fw) {
  CLI::App* cmd = app.add_subcommand(
      "forward",
      "Compute a GPT-2's logits for token sequences on this machine (one device): the weights "
      "of `alpa export` (or a Hugging Face GPT-2 with activation \"gelu\"), the tokens one "
      "sequence per line. Shorter sequences than the model's positions use its first "
      "positions.\n"
      "Example: alpa forward --weights gpt2-tiny --tokens prompt.txt --out logits.safetensors");
  cmd->add_option("--weights", fw.weights, "Directory with config.json and model.safetensors")
      ->required();
  cmd->add_option("--tokens", fw.tokens,
                  "Text file: one sequence per line, token ids separated by spaces")
      ->required();
  cmd->add_option("--out", fw.out, "Write the logits [batch, seq, vocab] here (safetensors)");
  cmd->add_option("--threads", fw.threads, "CPU threads (0: all cores)")
      ->check(integer_in(0, kMaxThreads, "threads a process may start"))
      ->capture_default_str();
  cmd->add_flag("--json", fw.json, "Print one JSON object instead of text");
  return cmd;
}

// `alpa demo` and its flags.
CLI::App* add_demo_command(CLI::App& app, DemoFlags& demo) {
  CLI::App* demo_cmd = app.add_subcommand(
      "demo", "Train a tiny GPT on this machine and show the loss falling (a few seconds).");
  demo_cmd->add_option("--steps", demo.steps, "Training steps")
      ->check(positive_number())
      ->capture_default_str();
  demo_cmd->add_option("--seed", demo.seed, "Seed")->capture_default_str();
  demo_cmd->add_option("--threads", demo.threads, "CPU threads (0: all cores)")
      ->check(integer_in(0, kMaxThreads, "threads a process may start"))
      ->capture_default_str();
  demo_cmd->add_flag("--json", demo.json, "Print one JSON object instead of text");
  return demo_cmd;
}

}  // namespace

int main(int argc, char** argv) {
  alpa::install_out_of_memory_handler();
  using namespace alpa;
  CLI::App app{
      "alpa: automatic parallelization for training large neural networks.\n"
      "Builds a model's training step (forward, backward, optimizer), plans how to split it "
      "across devices, and runs it."};
  app.set_version_flag("--version", "alpa 0.1.0");
  app.require_subcommand(1);
  app.fallthrough();

  TrainFlags train;
  CLI::App* train_cmd = add_train_command(app, train);

  GraphFlags graph;
  CLI::App* graph_cmd = add_graph_command(app, graph);

  PlanFlags plan;
  CLI::App* plan_cmd = add_plan_command(app, plan);

  SimulateFlags sim;
  CLI::App* sim_cmd = add_simulate_command(app, sim);

  CompileFlags comp;
  CLI::App* comp_cmd = add_compile_command(app, comp);

  ProfileFlags prof;
  CLI::App* prof_cmd = add_profile_command(app, prof);

  DemoFlags demo;
  CLI::App* demo_cmd = add_demo_command(app, demo);

  DataPrepareFlags data;
  CLI::App* data_cmd = add_data_command(app, data);

  ExportFlags ex;
  CLI::App* export_cmd = add_export_command(app, ex);

  ForwardFlags fw;
  CLI::App* forward_cmd = add_forward_command(app, fw);

  GenerateFlags gen;
  CLI::App* generate_cmd = add_generate_command(app, gen);

  ServeFlags srv;
  CLI::App* serve_cmd = add_serve_command(app, srv);

  PlanServeFlags plan_serve;
  CLI::App* plan_serve_cmd = add_plan_serve_command(app, plan_serve);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // With --program, the model flags default to the program's unless one is given.
  auto model_given = [](const CLI::App* cmd) {
    for (const char* name :
         {"--model",        "--size",           "--batch",       "--seq",
          "--layers",       "--hidden",         "--heads",       "--vocab",
          "--dtype",        "--optimizer",      "--lr",          "--momentum",
          "--weight-decay", "--micro-batches",  "--lr-schedule", "--warmup-steps",
          "--min-lr",       "--decay-steps",    "--clip-grad",   "--grad-norm",
          "--loss-scale",   "--loss-scale-init"})
      if (cmd->count(name) > 0) return true;
    return false;
  };
  train.model_given = model_given(train_cmd);
  sim.model_given = model_given(sim_cmd);
  if (train_cmd->parsed()) return run_train(train, std::cout, std::cerr);
  if (comp_cmd->parsed()) return run_compile(comp, std::cout, std::cerr);
  if (graph_cmd->parsed()) return run_graph(graph, std::cout, std::cerr);
  if (plan_cmd->parsed()) return run_plan(plan, std::cout, std::cerr);
  if (demo_cmd->parsed()) return run_demo(demo, std::cout, std::cerr);
  if (data_cmd->parsed()) return run_data_prepare(data, std::cout, std::cerr);
  if (sim_cmd->parsed()) return run_simulate(sim, std::cout, std::cerr);
  if (prof_cmd->parsed()) return run_profile(prof, std::cout, std::cerr);
  if (export_cmd->parsed()) {
    ex.size_given = export_cmd->count("--size") > 0;
    return run_export(ex, std::cout, std::cerr);
  }
  if (forward_cmd->parsed()) return run_forward(fw, std::cout, std::cerr);
  if (generate_cmd->parsed()) return run_generate(gen, std::cout, std::cerr);
  if (serve_cmd->parsed()) return run_serve(srv, std::cout, std::cerr);
  if (plan_serve_cmd->parsed()) return run_plan_serve(plan_serve, std::cout, std::cerr);
  return 0;
}
