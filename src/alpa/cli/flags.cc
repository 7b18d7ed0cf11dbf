#include <CLI/CLI.hpp>

#include <charconv>

#include "alpa/cli/commands.h"
#include "alpa/cli/validators.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/plan/manual.h"
#include "alpa/plan/plan.h"

namespace alpa {
namespace {

// CLI11 fills plain integers; 0 means "not given" (the options only accept positive values).
struct OverrideSlots {
  int64_t batch = 0, seq = 0, layers = 0, hidden = 0, heads = 0, vocab = 0;
};

}  // namespace

void add_model_flags(CLI::App& app, ModelFlags& f) {
  app.add_option("--model", f.model,
                 "Model: gpt, mlp, convnet, moe (GShard mixture of experts), wresnet "
                 "(Wide-ResNet), or the path of a text IR file (a forward graph with "
                 "parameters marked role=weight/input and a scalar output named loss)")
      ->capture_default_str();
  app.add_option("--size", f.size,
                 "Named size of a built-in model. gpt: tiny, small, 125m, 350m, 760m, 1.3b, "
                 "2.6b, 6.7b, 15b, 39b; mlp: tiny, small, large; convnet: tiny, small; "
                 "moe: tiny, small, 380m, 690m, 1.3b, 2.4b, 10b, 27b, 70b; "
                 "wresnet: tiny, small, 250m, 500m, 1b, 2b, 4b, 6.8b, 13b")
      ->capture_default_str();
  auto add = [&](const char* name, std::optional<int64_t>* slot, int64_t max, const char* help) {
    app.add_option_function<int64_t>(
           name, [slot](const int64_t& v) { *slot = v; }, help)
        ->check(integer_in(1, max, "larger than any model alpa plans"))
        ->group("Model overrides");
  };
  add("--batch", &f.batch, int64_t{1} << 24,
      "Global batch size (sequences or samples per training step)");
  add("--seq", &f.seq, int64_t{1} << 20, "GPT sequence length");
  add("--layers", &f.layers, int64_t{1} << 14, "Number of layers");
  add("--hidden", &f.hidden, int64_t{1} << 20, "Hidden size");
  add("--heads", &f.heads, int64_t{1} << 14, "GPT attention heads");
  add("--vocab", &f.vocab, int64_t{1} << 24, "GPT vocabulary size");
  app.add_option("--dtype", f.dtype,
                 "Element type: f32, or mixed precision f16/bf16 (f32 master weights and "
                 "arithmetic, GEMMs in bf16 on oneDNN, f16 as f16-rounded operands)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->group("Model overrides");
  app.add_option("--loss", f.loss,
                 "ONNX models: the loss to add on an output, cross_entropy (classes on the last "
                 "dim; integer labels) or mse, as KIND or KIND:OUTPUT (default output: the "
                 "first); a 'labels' input is added. Without it the graph's output 'loss' is used")
      ->group("Model overrides");
}

Result<ModelSpec> resolve_model_flags(const ModelFlags& f) {
  ModelOverrides o;
  o.batch = f.batch;
  o.seq = f.seq;
  o.layers = f.layers;
  o.hidden = f.hidden;
  o.heads = f.heads;
  o.vocab = f.vocab;
  if (!f.dtype.empty()) o.dtype = parse_dtype(f.dtype);
  if (!f.loss.empty()) o.loss = f.loss;
  ALPA_ASSIGN_OR_RETURN(ModelSpec spec, resolve_model(f.model, f.size, o));
  // An explicit f16/bf16 is executed: f32 master weights, GEMMs in that type.
  if (o.dtype && *o.dtype != DType::kF32) spec.mixed_precision = *o.dtype;
  return spec;
}

void add_optimizer_flags(CLI::App& app, OptimizerFlags& f) {
  app.add_option("--optimizer", f.optimizer, "Optimizer: adamw or sgd (with momentum)")
      ->check(CLI::IsMember({"adamw", "adam", "sgd"}))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--lr", f.lr, "Learning rate")
      ->check(positive_number())
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--momentum", f.momentum, "SGD momentum")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--weight-decay", f.weight_decay,
                 "Weight decay (AdamW: decoupled; SGD: L2 on the gradient)")
      ->check(non_negative_number())
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--lr-schedule", f.lr_schedule,
                 "Learning-rate schedule after the warmup: constant, or a cosine or linear decay "
                 "from --lr to --min-lr at --decay-steps")
      ->check(CLI::IsMember({"constant", "cosine", "linear"}))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--warmup-steps", f.warmup_steps,
                 "Linear warmup from 0 to --lr over this many steps")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--min-lr", f.min_lr, "Where a decaying schedule ends")
      ->check(non_negative_number())
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--decay-steps", f.decay_steps, "The step a decay ends at (0: --steps)")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--clip-grad", f.clip_grad,
                 "Clip the global gradient norm (over every weight, under any plan) to this "
                 "value, as torch.nn.utils.clip_grad_norm_; 0: no clipping")
      ->check(non_negative_number())
      ->capture_default_str()
      ->group("Optimizer");
  app.add_flag("--grad-norm", f.grad_norm,
               "Compute and report the global gradient norm each step (implied by --clip-grad)")
      ->group("Optimizer");
  app.add_option("--loss-scale", f.loss_scale,
                 "Dynamic loss scaling for --dtype f16, as PyTorch's GradScaler: the backward "
                 "starts from the loss times a scale, a step whose gradients overflow is skipped "
                 "and halves the scale, 2000 good steps double it")
      ->check(CLI::IsMember({"none", "dynamic"}))
      ->capture_default_str()
      ->group("Optimizer");
  app.add_option("--loss-scale-init", f.loss_scale_log2, "The first loss scale, as a power of 2")
      ->check(CLI::Range(-60.0, 100.0))
      ->capture_default_str()
      ->group("Optimizer");
}

Result<OptimizerOptions> optimizer_options(const OptimizerFlags& f) {
  OptimizerOptions o;
  ALPA_ASSIGN_OR_RETURN(o.kind, parse_optimizer(f.optimizer));
  ALPA_ASSIGN_OR_RETURN(LrSchedule::Kind kind, parse_lr_schedule(f.lr_schedule));
  o.learning_rate = f.lr;
  o.momentum = f.momentum;
  o.weight_decay = f.weight_decay;
  o.scheduled_lr = kind != LrSchedule::Kind::kConstant || f.warmup_steps > 0;
  o.clip_norm = f.clip_grad;
  o.track_grad_norm = f.grad_norm || f.clip_grad > 0;
  o.loss_scaling = f.loss_scale == "dynamic";
  o.loss_scale_log2 = f.loss_scale_log2;
  return o;
}

Result<std::optional<LrSchedule>> lr_schedule(const OptimizerFlags& f, int steps) {
  ALPA_ASSIGN_OR_RETURN(LrSchedule::Kind kind, parse_lr_schedule(f.lr_schedule));
  if (kind == LrSchedule::Kind::kConstant && f.warmup_steps == 0)
    return std::optional<LrSchedule>();
  if (f.min_lr > f.lr)
    return invalid_argument(cat("--min-lr ", f.min_lr, " is above --lr ", f.lr),
                            "the floor a decay ends at must not exceed the peak rate");
  LrSchedule s;
  s.kind = kind;
  s.peak = f.lr;
  s.warmup = f.warmup_steps;
  s.floor = f.min_lr;
  s.decay_steps = f.decay_steps > 0 ? f.decay_steps : steps;
  return std::optional<LrSchedule>(s);
}

void add_parallel_flags(CLI::App& app, ParallelFlags& f, const std::string& default_mesh,
                        const std::string& default_cluster) {
  const char* g = "Parallelism";
  app.add_option(
         "--mesh", f.mesh,
         "Logical device mesh N0xN1, e.g. 2x4 (axis 0 spans hosts first). Default: " + default_mesh)
      ->group(g);
  app.add_option(
         "--cluster", f.cluster,
         "Cluster the plan is for: a preset (p3.16xlarge, p4d.24xlarge, p4de.24xlarge, dgx-h100, "
         "local) or a cluster JSON file. Default: " +
             default_cluster)
      ->group(g);
  app.add_option(
         "--plan", f.plan,
         "How to shard: auto (the ILP chooses), data-parallel, zero, zero3, tensor-parallel, 2d, "
         "or a plan file written by `alpa plan --out` (or by hand)")
      ->capture_default_str()
      ->group(g);
  app.add_option("--memory-budget", f.memory_budget_gb, "Per-device memory budget in GB (0: none)")
      ->check(non_negative_number())
      ->group(g);
  app.add_option("--batch-axis", f.batch_axis,
                 "Mesh axis the batch is split over: auto (axis 0 on a 2-D mesh), none, 0 or 1")
      ->check(CLI::IsMember({"auto", "none", "0", "1"}))
      ->capture_default_str()
      ->group(g);
  app.add_flag("--prefer-reduce-scatter", f.prefer_reduce_scatter,
               "Shard optimizer state across devices (ZeRO-2-like weight-update sharding)")
      ->group(g);
  app.add_flag("--allow-mixed-mesh-shape", f.allow_mixed_mesh_shape,
               "Allow splitting one dim over both mesh axes (S01)")
      ->group(g);
  app.add_option("--ilp-time-limit", f.ilp_time_limit_s, "Seconds the ILP solver may take")
      ->check(positive_number())
      ->capture_default_str()
      ->group(g);
  const char* p = "Pipeline parallelism";
  app.add_option("--gpus,--devices", f.devices,
                 "Devices to split the training over with pipeline stages: the planner chooses "
                 "the stages, each stage's submesh and logical mesh and its intra-op plan "
                 "(and the micro-batch count unless --micro-batches is given)")
      ->check(integer_in(1, kMaxDevicesFlag, "devices a plan may span"))
      ->group(p);
  app.add_option("--pipeline", f.pipeline,
                 "auto (the default with --devices): plan the stages; none: one mesh (--mesh). "
                 "A plan file with stages (--plan) gives them by hand")
      ->check(CLI::IsMember({"auto", "none"}))
      ->group(p);
  app.add_option("--pipeline-layers", f.pipeline_layers,
                 "Layers the forward operators are clustered into before stages are chosen "
                 "(0: automatic -- GPT and MoE: whole blocks, one per layer up to 48; "
                 "Wide-ResNet: one per residual block, as Alpa's suite; other models: Alpa's "
                 "FLOP-balanced clustering)")
      ->check(non_negative_number())
      ->group(p);
  app.add_option("--schedule", f.schedule,
                 "Pipeline schedule: 1f1b (default), gpipe, interleaved (interleaved-1f1b: "
                 "Megatron-LM's virtual stages, each mesh running --virtual-stages stages of "
                 "the model; micro-batches a multiple of the meshes) or auto (the planned "
                 "stages simulated under each and the fastest that fits kept)")
      ->check(CLI::IsMember({"1f1b", "gpipe", "interleaved", "interleaved-1f1b", "auto"}))
      ->group(p);
  app.add_option("--virtual-stages", f.virtual_stages,
                 "Interleaved schedule: stages per mesh (default 2; with --schedule auto, the "
                 "one count tried instead of 2, 4 and 8)")
      ->check(integer_in(2, 64, "virtual stages per mesh"))
      ->group(p);
  app.add_option(
         "--stage-imbalance", f.stage_imbalance,
         "Only consider a stage whose share of the devices is within a factor (1 + this) "
         "of its share of the FLOPs (Alpa's stage_imbalance_tolerance). Default as in Alpa's "
         "benchmarks: 0.25 for Wide-ResNet, 1 for every other model; 1e9 considers "
         "every candidate")
      ->check(non_negative_number())
      ->group(p);
  app.add_option("--choose", f.choose,
                 "How the pipeline is chosen among the planner's candidates: simulation (each "
                 "candidate's program is simulated on the cluster model and the fastest that fits "
                 "wins; plans again for less memory when none fits) or planner (the planner's own "
                 "estimate). Default: simulation for plan and simulate, planner for train and "
                 "compile")
      ->check(CLI::IsMember({"simulation", "planner"}))
      ->group(p);
  app.add_option("--space", f.space,
                 "Plans the pipeline planner may choose: full (default), intra-only (one stage "
                 "on every device: auto-sharding alone) or inter-only (one device per stage: "
                 "pipeline parallelism alone), the paper's ablations")
      ->check(CLI::IsMember({"full", "intra-only", "inter-only"}))
      ->group(p);
  app.add_option("--plan-threads", f.plan_threads,
                 "Threads the pipeline planner solves one micro-batch count's stage candidates on "
                 "(0: the cores the counts planned side by side leave; 1: one at a time). The "
                 "plan does not depend on it unless stage ILPs reach their time limit (CBC counts "
                 "the process's CPU time)")
      ->check(CLI::Range(0, 256))
      ->group(p);
  app.add_flag("--search-every-count", f.search_every_count,
               "Search every stage candidate of every micro-batch count with the intra-op ILP. "
               "By default a count costs a stage by the layouts an earlier count searched for "
               "the same layers (no ILP) and searches again only the stages it chooses: faster "
               "planning; where a carried layout stands in for a search, the plan may differ "
               "slightly")
      ->group(p);
  app.add_option("--remat", f.remat,
                 "Recomputation of activations per pipeline stage: auto (default: the planner "
                 "recomputes only where a stage would not fit, choosing the faster of selective "
                 "and full), none, selective (elementwise ops and the attention core, as "
                 "Megatron-LM's selective recompute) or full (activation checkpointing per "
                 "transformer block). With a pipeline plan file: every stage's, instead of the "
                 "file's \"remat\"")
      ->check(CLI::IsMember({"auto", "none", "selective", "full"}))
      ->group(p);
}

Result<ResolvedPipeline> resolve_pipeline(const ParallelFlags& f,
                                          const std::string& default_cluster) {
  ResolvedPipeline r;
  r.cluster = f.cluster.empty() ? default_cluster : f.cluster;
  r.devices = f.devices;
  r.layers = f.pipeline_layers;
  if (f.stage_imbalance >= 0) r.imbalance_tolerance = f.stage_imbalance;
  ALPA_ASSIGN_OR_RETURN(r.space, parse_plan_space(f.space));
  ALPA_ASSIGN_OR_RETURN(r.remat, parse_remat(f.remat));
  const bool is_file = f.plan != "auto" && !parse_manual_plan(f.plan).ok();
  if (is_file) {
    Result<Plan> loaded = load_plan(f.plan);
    if (loaded.ok() && loaded->is_pipeline()) {
      if (f.pipeline == "none")
        return invalid_argument("--pipeline none, but the plan file has pipeline stages");
      ALPA_ASSIGN_OR_RETURN(PipelinePlan pp, pipeline_plan_of(*loaded));
      // --remat none|selective|full overrides what the file's stages recompute.
      if (r.remat != RematMode::kAuto)
        for (PlannedStage& ps : pp.stages) {
          ps.remat = r.remat;
          ps.full_remat_layers = 0;
        }
      r.plan = std::move(pp);
      r.fingerprint = loaded->graph_fingerprint;
      r.source = f.plan;
      if (f.devices > 0 && f.devices != loaded->devices)
        return invalid_argument(
            cat("--devices ", f.devices, " differs from the plan file's ", loaded->devices),
            "leave out --devices to use the plan's");
      r.devices = loaded->devices;
      if (f.pipeline_layers > 0 && f.pipeline_layers != loaded->pipeline_layers)
        return invalid_argument("--pipeline-layers differs from the plan file's layers");
      r.layers = loaded->pipeline_layers;
      ALPA_ASSIGN_OR_RETURN(r.schedule, parse_schedule(loaded->schedule));
      if (loaded->virtual_stages > 1) {
        r.virtual_stages = loaded->virtual_stages;
        if (!f.schedule.empty() && f.schedule != "interleaved" && f.schedule != "interleaved-1f1b")
          return invalid_argument(
              cat("--schedule ", f.schedule, ", but the plan file's stages are interleaved (",
                  loaded->virtual_stages, " per mesh)"),
              "leave out --schedule to run the file's interleaved schedule, or re-plan");
        if (f.virtual_stages > 0 && f.virtual_stages != loaded->virtual_stages)
          return invalid_argument(cat("--virtual-stages ", f.virtual_stages,
                                      " differs from the plan file's ", loaded->virtual_stages),
                                  "leave out --virtual-stages to use the plan's");
      }
      if (f.cluster.empty() && !loaded->cluster.empty()) r.cluster = loaded->cluster;
      r.enabled = true;
    }
  }
  if (!r.enabled) {
    if (f.pipeline == "auto" && f.devices == 0)
      return invalid_argument("--pipeline auto needs the number of devices",
                              "add --devices N (N virtual devices on threads for train; N GPUs "
                              "of the cluster for plan)");
    r.enabled = f.devices > 0 && f.pipeline != "none";
    if (!r.enabled) {
      if (!f.schedule.empty() || f.pipeline_layers > 0 || f.virtual_stages > 0)
        return invalid_argument(
            "--schedule and --pipeline-layers apply to pipeline stages (so does --virtual-stages)",
            "add --devices N (or --gpus N) to plan stages over N devices");
      if (r.space != PlanSpace::kFull)
        return invalid_argument(
            cat("--space ", f.space, " chooses among pipeline plans, and there is no pipeline"),
            "add --devices N (or --gpus N) to plan over N devices; on one mesh (--mesh) the "
            "plan is auto-sharding alone");
      return r;
    }
    if (f.plan != "auto")
      return invalid_argument(cat("--plan ", f.plan,
                                  " is a plan for one mesh; with pipeline stages use --plan auto "
                                  "or a plan file with \"stages\""),
                              "write stage layouts in a pipeline plan file (docs/plans.md)");
  }
  if (!f.mesh.empty())
    return invalid_argument("--mesh and pipeline stages exclude each other",
                            "each stage gets its own mesh; leave out --mesh (or use --pipeline "
                            "none)");
  if (f.schedule == "auto") {
    r.choose_schedule = true;
    r.schedule = ScheduleKind::k1F1B;
  } else if (!f.schedule.empty()) {
    ALPA_ASSIGN_OR_RETURN(r.schedule, parse_schedule(f.schedule));
  }
  if (f.virtual_stages > 0) {
    if (!r.choose_schedule && r.schedule != ScheduleKind::kInterleaved1F1B)
      return invalid_argument(
          cat("--virtual-stages applies to the interleaved schedule, not ",
              schedule_name(r.schedule)),
          "add --schedule interleaved (or --schedule auto to compare it with the others)");
    r.virtual_stages = f.virtual_stages;
  }
  if (f.prefer_reduce_scatter) r.sharding.sharding.prefer_reduce_scatter = true;
  if (f.allow_mixed_mesh_shape) r.sharding.sharding.allow_mixed_mesh_shape = true;
  if (f.memory_budget_gb > 0) r.sharding.memory_budget_bytes = f.memory_budget_gb * 1e9;
  r.sharding.ilp.time_limit_s = f.ilp_time_limit_s;
  return r;
}

Result<ResolvedParallel> resolve_parallel(const ParallelFlags& f, const Graph& train_step,
                                          const std::string& default_mesh,
                                          const std::string& default_cluster) {
  ResolvedParallel r;
  r.cluster = f.cluster.empty() ? default_cluster : f.cluster;
  r.plan_source = f.plan;
  std::optional<MeshShape> from_file;
  if (f.plan == "auto") {
    // defaults below
  } else if (Result<ManualPlanKind> k = parse_manual_plan(f.plan); k.ok()) {
    (void)k;
  } else {
    Result<Plan> loaded = load_plan(f.plan);
    if (!loaded.ok() && loaded.status().code() == StatusCode::kNotFound)
      return invalid_argument(
          cat("--plan '", f.plan, "' is neither a plan name nor a plan file"),
          "plans: auto, data-parallel, zero, zero3, tensor-parallel, 2d, or the path "
          "of a file written by `alpa plan --out`");
    ALPA_ASSIGN_OR_RETURN(Plan p, std::move(loaded));
    ALPA_ASSIGN_OR_RETURN(r.options, plan_constraints(p, train_step));
    from_file = p.mesh;
    if (f.cluster.empty() && !p.cluster.empty()) r.cluster = p.cluster;
  }
  const std::string mesh_text = f.mesh.empty() ? "" : f.mesh;
  if (!mesh_text.empty()) {
    ALPA_ASSIGN_OR_RETURN(r.mesh, parse_mesh_shape(mesh_text));
    if (from_file && *from_file != r.mesh)
      return invalid_argument(cat("--mesh ", mesh_text, " differs from the plan file's mesh ",
                                  (*from_file)[0], "x", (*from_file)[1]),
                              "leave out --mesh to use the plan's");
  } else if (from_file) {
    r.mesh = *from_file;
  } else {
    ALPA_ASSIGN_OR_RETURN(r.mesh, parse_mesh_shape(default_mesh));
  }
  if (f.plan != "auto" && !from_file) {
    ALPA_ASSIGN_OR_RETURN(ManualPlanKind k, parse_manual_plan(f.plan));
    ALPA_ASSIGN_OR_RETURN(r.options, manual_plan(train_step, r.mesh, k));
  }
  if (f.batch_axis != "auto")
    r.options.sharding.force_batch_dim_to_mesh_dim =
        f.batch_axis == "none" ? -1 : std::stoi(f.batch_axis);
  if (f.prefer_reduce_scatter) r.options.sharding.prefer_reduce_scatter = true;
  if (f.allow_mixed_mesh_shape) r.options.sharding.allow_mixed_mesh_shape = true;
  if (f.memory_budget_gb > 0) r.options.memory_budget_bytes = f.memory_budget_gb * 1e9;
  r.options.ilp.time_limit_s = f.ilp_time_limit_s;
  return r;
}

// Alpa's suites: tolerance 0.25 for Wide-ResNet, whose convolution stages differ most in FLOPs
// per device (a wider search there costs minutes of ILP solves for plans the pruning keeps out
// anyway), 1.0 for the others.
static double default_stage_imbalance(const ModelSpec& spec) {
  return spec.family == ModelFamily::kWResNet ? 0.25 : 1.0;
}

Result<CompileSetup> resolve_compile(const ParallelFlags& f, const ModelSpec& spec,
                                     const OptimizerOptions& optimizer, int micro_batches,
                                     const std::string& default_mesh,
                                     const std::string& default_cluster) {
  CompileSetup s;
  ALPA_ASSIGN_OR_RETURN(s.pipe, resolve_pipeline(f, default_cluster));
  CompileOptions& o = s.options;
  o.optimizer = optimizer;
  const ResolvedPipeline& pipe = s.pipe;
  if (pipe.enabled) {
    if (pipe.devices < 1)
      return invalid_argument(cat("--devices must be >= 1, got ", pipe.devices));
    if (pipe.plan && micro_batches > 0 && micro_batches != pipe.plan->micro_batches)
      return invalid_argument(cat("--micro-batches ", micro_batches, " differs from the plan ",
                                  "file's ", pipe.plan->micro_batches),
                              "leave out --micro-batches to use the plan's");
    o.pipeline = true;
    o.devices = pipe.devices;
    o.micro_batches = pipe.plan ? pipe.plan->micro_batches : micro_batches;
    o.sharding = pipe.sharding;
    o.stages = pipe.plan;
    o.stages_fingerprint = pipe.fingerprint;
    o.schedule = pipe.schedule;
    o.virtual_stages = pipe.virtual_stages;
    o.choose_schedule = pipe.choose_schedule;
    o.planner.num_layers = pipe.layers;
    o.planner.imbalance_tolerance =
        f.stage_imbalance >= 0 ? pipe.imbalance_tolerance : default_stage_imbalance(spec);
    o.planner.space = pipe.space;
    o.planner.solve_threads = f.plan_threads;
    o.planner.reuse_across_counts = !f.search_every_count;
    o.planner.remat = pipe.remat;
    if (!f.choose.empty()) o.check_by_simulation = f.choose == "simulation";
    s.cluster = pipe.cluster;
    s.plan_source = pipe.source;
    return s;
  }
  // One mesh: manual plans and plan files are layouts of the training graph, which a plan
  // file made with micro-batches was made for.
  o.micro_batches = std::max(1, micro_batches);
  if (!f.plan.empty() && f.plan != "auto" && !parse_manual_plan(f.plan).ok()) {
    if (Result<Plan> file = load_plan(f.plan); file.ok()) {
      if (micro_batches > 0 && micro_batches != file->micro_batches)
        return invalid_argument(cat("--micro-batches ", micro_batches, " differs from the plan ",
                                    "file's ", file->micro_batches),
                                "leave out --micro-batches to use the plan's");
      o.micro_batches = file->micro_batches;
    }
  }
  ALPA_ASSIGN_OR_RETURN(TrainStep step, training_step(spec, optimizer, o.micro_batches));
  ALPA_ASSIGN_OR_RETURN(ResolvedParallel par,
                        resolve_parallel(f, step.graph, default_mesh, default_cluster));
  o.mesh = par.mesh;
  o.sharding = par.options;
  // `--plan auto`: the automatic candidates and the manual plans, the cheapest kept; options
  // the user forced are planned as given and compared (plan/mesh_search.h).
  o.search_mesh = f.plan == "auto";
  std::string forced;
  if (f.batch_axis != "auto") forced = cat("--batch-axis ", f.batch_axis);
  if (f.allow_mixed_mesh_shape)
    forced += (forced.empty() ? "" : " ") + std::string("--allow-mixed-mesh-shape");
  if (f.prefer_reduce_scatter)
    forced += (forced.empty() ? "" : " ") + std::string("--prefer-reduce-scatter");
  o.mesh_search.forced = !forced.empty();
  o.mesh_search.forced_what = forced;
  s.cluster = par.cluster;
  s.plan_source = par.plan_source;
  return s;
}

std::map<std::string, std::string> program_source(const ModelFlags& m, const OptimizerFlags& o,
                                                  int micro_batches) {
  std::map<std::string, std::string> s;
  auto number = [](double v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    return std::string(buf, r.ptr);
  };
  s["model"] = m.model;
  s["size"] = m.size;
  const std::pair<const char*, const std::optional<int64_t>*> sizes[] = {
      {"batch", &m.batch},   {"seq", &m.seq},     {"layers", &m.layers},
      {"hidden", &m.hidden}, {"heads", &m.heads}, {"vocab", &m.vocab}};
  for (const auto& [key, v] : sizes)
    if (*v) s[key] = std::to_string(**v);
  if (!m.dtype.empty()) s["dtype"] = m.dtype;
  if (!m.loss.empty()) s["loss"] = m.loss;
  s["optimizer"] = o.optimizer;
  s["lr"] = number(o.lr);
  s["momentum"] = number(o.momentum);
  s["weight_decay"] = number(o.weight_decay);
  if (o.lr_schedule != "constant") s["lr_schedule"] = o.lr_schedule;
  if (o.warmup_steps > 0) s["warmup_steps"] = std::to_string(o.warmup_steps);
  if (o.min_lr > 0) s["min_lr"] = number(o.min_lr);
  if (o.decay_steps > 0) s["decay_steps"] = std::to_string(o.decay_steps);
  if (o.clip_grad > 0) s["clip_grad"] = number(o.clip_grad);
  if (o.grad_norm) s["grad_norm"] = "true";
  if (o.loss_scale != "none") s["loss_scale"] = o.loss_scale;
  if (o.loss_scale_log2 != 16) s["loss_scale_init"] = number(o.loss_scale_log2);
  s["micro_batches"] = std::to_string(std::max(1, micro_batches));
  return s;
}

Status flags_from_program(const Program& p, ModelFlags& m, OptimizerFlags& o, int& micro_batches) {
  const std::map<std::string, std::string>& s = p.source;
  auto bad = [&](const std::string& key) {
    return invalid_argument(cat("the program's source.", key, " '", s.at(key), "' is not valid"),
                            "give the model flags explicitly, or compile the program again");
  };
  auto integer = [&](const char* key, int64_t& out) -> Status {
    auto [ptr, ec] = std::from_chars(s.at(key).data(), s.at(key).data() + s.at(key).size(), out);
    if (ec != std::errc() || ptr != s.at(key).data() + s.at(key).size() || out < 1) return bad(key);
    return ok_status();
  };
  auto real = [&](const char* key, double& out) -> Status {
    auto [ptr, ec] = std::from_chars(s.at(key).data(), s.at(key).data() + s.at(key).size(), out);
    if (ec != std::errc() || ptr != s.at(key).data() + s.at(key).size()) return bad(key);
    return ok_status();
  };
  if (!s.count("model"))
    return invalid_argument("the program does not record the model it was compiled from",
                            "give the model flags (--model, --size, ...) explicitly");
  m = ModelFlags{};
  m.model = s.at("model");
  if (s.count("size")) m.size = s.at("size");
  std::optional<int64_t>* slots[] = {&m.batch, &m.seq, &m.layers, &m.hidden, &m.heads, &m.vocab};
  const char* keys[] = {"batch", "seq", "layers", "hidden", "heads", "vocab"};
  for (size_t i = 0; i < 6; ++i)
    if (s.count(keys[i])) {
      int64_t v = 0;
      ALPA_RETURN_IF_ERROR(integer(keys[i], v));
      *slots[i] = v;
    }
  if (s.count("dtype")) m.dtype = s.at("dtype");
  if (s.count("loss")) m.loss = s.at("loss");
  if (s.count("optimizer")) o.optimizer = s.at("optimizer");
  if (s.count("lr")) ALPA_RETURN_IF_ERROR(real("lr", o.lr));
  if (s.count("momentum")) ALPA_RETURN_IF_ERROR(real("momentum", o.momentum));
  if (s.count("weight_decay")) ALPA_RETURN_IF_ERROR(real("weight_decay", o.weight_decay));
  if (s.count("lr_schedule")) o.lr_schedule = s.at("lr_schedule");
  if (s.count("warmup_steps")) {
    int64_t v = 0;
    ALPA_RETURN_IF_ERROR(integer("warmup_steps", v));
    o.warmup_steps = static_cast<int>(std::min<int64_t>(v, 1 << 30));
  }
  if (s.count("min_lr")) ALPA_RETURN_IF_ERROR(real("min_lr", o.min_lr));
  if (s.count("decay_steps")) {
    int64_t v = 0;
    ALPA_RETURN_IF_ERROR(integer("decay_steps", v));
    o.decay_steps = static_cast<int>(std::min<int64_t>(v, 1 << 30));
  }
  if (s.count("clip_grad")) ALPA_RETURN_IF_ERROR(real("clip_grad", o.clip_grad));
  o.grad_norm = s.count("grad_norm") > 0;
  if (s.count("loss_scale")) o.loss_scale = s.at("loss_scale");
  if (s.count("loss_scale_init")) ALPA_RETURN_IF_ERROR(real("loss_scale_init", o.loss_scale_log2));
  if (s.count("micro_batches")) {
    int64_t v = 0;
    ALPA_RETURN_IF_ERROR(integer("micro_batches", v));
    micro_batches = static_cast<int>(v);
  }
  return ok_status();
}

}  // namespace alpa
