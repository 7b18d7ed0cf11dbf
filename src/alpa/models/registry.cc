#include "alpa/models/registry.h"

#include <filesystem>

#include "alpa/autodiff/mixed_precision.h"
#include "alpa/ir/text.h"
#include "alpa/support/files.h"

namespace alpa {
namespace {

// The overrides every transformer family (GPT, MoE) takes.
template <typename Config>
void apply_transformer_overrides(Config& c, const ModelOverrides& o) {
  if (o.batch) c.batch = *o.batch;
  if (o.seq) c.seq = *o.seq;
  if (o.layers) c.layers = *o.layers;
  if (o.hidden) c.hidden = *o.hidden;
  if (o.heads) c.heads = *o.heads;
  if (o.vocab) c.vocab = *o.vocab;
  if (o.dtype) c.dtype = *o.dtype;
}

// An ONNX file: its batch from --batch (a symbolic batch) or the file (a fixed one).
Result<ModelSpec> resolve_onnx(const std::string& path, const ModelOverrides& o) {
  if (o.seq || o.layers || o.hidden || o.heads || o.vocab || o.dtype)
    return invalid_argument(cat(path, ": only --batch and --loss apply to an ONNX model"),
                            "export the model again with the sizes you want");
  ModelSpec spec;
  spec.family = ModelFamily::kFile;
  spec.name = path;
  if (o.loss) {
    ALPA_ASSIGN_OR_RETURN(spec.onnx_loss, parse_onnx_loss(*o.loss));
  }
  ALPA_ASSIGN_OR_RETURN(spec.onnx, OnnxModel::load(path));
  if (spec.onnx->fixed_batch() > 0) {
    spec.batch = spec.onnx->fixed_batch();
    if (o.batch && *o.batch != spec.batch)
      return invalid_argument(cat(path, ": the inputs' batch is fixed at ", spec.batch,
                                  ", so --batch ", *o.batch, " cannot apply"),
                              "export with dynamic_axes={'input': {0: 'batch'}} to choose it");
  } else {
    spec.batch = o.batch ? *o.batch : 1;
  }
  // Checks the loss and the batch now, so errors show before planning.
  ALPA_ASSIGN_OR_RETURN(OnnxImport imported, spec.onnx->import(spec.batch, spec.onnx_loss));
  if (imported.graph.parameters(ParamRole::kWeight).empty())
    return invalid_argument(cat(path, ": the model has no float initializers (weights)"),
                            "export with export_params=True");
  spec.file_graph = std::move(imported.graph);
  return spec;
}

constexpr const char* kDeclareBatch =
    "declare the batch dimension in the file's header, graph NAME(batch=N) {, and write `batch` "
    "for the rows in the inputs' dim 0 and the shapes that follow them (docs/ir.md)";

// A text IR file: its declared batch, or the rows of its first input; --batch re-reads a file
// that declares its batch at that size.
Result<ModelSpec> resolve_ir_file(const std::string& path, const ModelOverrides& o) {
  if (o.seq || o.layers || o.hidden || o.heads || o.vocab || o.dtype)
    return invalid_argument(cat(path, ": only --batch applies to a text IR model"),
                            "edit the other shapes in the IR file instead");
  ModelSpec spec;
  spec.family = ModelFamily::kFile;
  spec.name = path;
  Result<std::string> text = read_file(path);
  if (!text.ok()) return text.status().with_context("model file");
  spec.file_text = std::move(*text);
  ALPA_ASSIGN_OR_RETURN(ParsedGraph parsed, parse_graph_at(spec.file_text, path, std::nullopt));
  spec.file_batch_declared = parsed.declared_batch.has_value();
  spec.batch = parsed.declared_batch.value_or(1);
  if (!parsed.declared_batch) {
    for (ValueId id : parsed.graph.parameters(ParamRole::kInput)) {
      const TensorType& t = parsed.graph.type(id);
      if (t.rank() > 0) {
        spec.batch = t.shape[0];
        break;
      }
    }
  }
  if (o.batch && *o.batch != spec.batch) {
    if (!spec.file_batch_declared)
      return invalid_argument(
          cat(path, ": --batch ", *o.batch, " differs from the file's batch of ", spec.batch,
              ", and the file declares no batch dimension"),
          kDeclareBatch);
    spec.batch = *o.batch;
    ALPA_ASSIGN_OR_RETURN(parsed, parse_graph_at(spec.file_text, path, spec.batch));
  }
  spec.file_graph = std::move(parsed.graph);
  const GraphOutput* loss = spec.file_graph.find_output("loss");
  if (loss == nullptr)
    return invalid_argument(cat(path, ": the graph has no output named 'loss'"),
                            "add `output loss = %your_scalar_loss`");
  const TensorType& lt = spec.file_graph.type(loss->value);
  if (!lt.shape.empty() || !is_float(lt.dtype))
    return invalid_argument(
        cat(path, ": output 'loss' must be a float scalar, got ", lt.to_string()));
  if (spec.file_graph.parameters(ParamRole::kWeight).empty())
    return invalid_argument(cat(path, ": the graph has no weight parameters"),
                            "mark weights with {role=weight} (the default role)");
  return spec;
}

}  // namespace

Result<ModelSpec> resolve_model(std::string_view model, std::string_view size,
                                const ModelOverrides& o) {
  ModelSpec spec;
  if (model == "gpt") {
    spec.family = ModelFamily::kGpt;
    ALPA_ASSIGN_OR_RETURN(spec.gpt, gpt_preset(size));
    GptConfig& c = spec.gpt;
    apply_transformer_overrides(c, o);
    ALPA_RETURN_IF_ERROR(validate_gpt_config(c));
    spec.name = cat("gpt-", size);
    spec.batch = c.batch;
    return spec;
  }
  if (model == "mlp") {
    spec.family = ModelFamily::kMlp;
    ALPA_ASSIGN_OR_RETURN(spec.mlp, mlp_preset(size));
    MlpConfig& c = spec.mlp;
    if (o.batch) c.batch = *o.batch;
    if (o.layers) c.layers = *o.layers;
    if (o.hidden) c.hidden = *o.hidden;
    if (o.dtype) c.dtype = *o.dtype;
    if (o.seq || o.heads || o.vocab)
      return invalid_argument("--seq, --heads and --vocab do not apply to the MLP");
    spec.name = cat("mlp-", size);
    spec.batch = c.batch;
    return spec;
  }
  if (model == "convnet") {
    if (size != "tiny" && size != "small")
      return not_found(cat("unknown ConvNet size '", size, "'"), "sizes: tiny, small");
    spec.family = ModelFamily::kConvNet;
    ConvNetConfig& c = spec.convnet;
    if (size == "small") {
      c.batch = 32;
      c.channels = 3;
      c.width = 32;
      c.image = 32;
      c.layers = 3;
      c.classes = 10;
    }
    if (o.batch) c.batch = *o.batch;
    if (o.layers) c.layers = *o.layers;
    if (o.hidden) c.width = *o.hidden;
    if (o.seq || o.heads || o.vocab || o.dtype)
      return invalid_argument("--seq, --heads, --vocab and --dtype do not apply to the ConvNet");
    spec.name = cat("convnet-", size);
    spec.batch = c.batch;
    return spec;
  }
  if (model == "moe") {
    spec.family = ModelFamily::kMoe;
    ALPA_ASSIGN_OR_RETURN(spec.moe, moe_preset(size));
    MoeConfig& c = spec.moe;
    apply_transformer_overrides(c, o);
    ALPA_RETURN_IF_ERROR(validate_moe_config(c));
    spec.name = cat("moe-", size);
    spec.batch = c.batch;
    return spec;
  }
  if (model == "wresnet") {
    spec.family = ModelFamily::kWResNet;
    ALPA_ASSIGN_OR_RETURN(spec.wresnet, wresnet_preset(size));
    WResNetConfig& c = spec.wresnet;
    if (o.seq || o.heads || o.vocab)
      return invalid_argument("--seq, --heads and --vocab do not apply to the Wide-ResNet",
                              "--layers sets its depth, --hidden its base channels");
    if (o.batch) c.batch = *o.batch;
    if (o.layers) {
      ALPA_ASSIGN_OR_RETURN(c.blocks, wresnet_blocks_for_depth(*o.layers));
    }
    if (o.hidden) c.base = *o.hidden;
    if (o.dtype) c.dtype = *o.dtype;
    ALPA_RETURN_IF_ERROR(validate_wresnet_config(c));
    spec.name = cat("wresnet-", size);
    spec.batch = c.batch;
    return spec;
  }
  const std::string path(model);
  if (is_onnx_path(path)) return resolve_onnx(path, o);
  if (o.loss)
    return invalid_argument("--loss applies to ONNX models only",
                            "a built-in model or text IR file has its own loss");
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    return not_found(cat("unknown model '", model, "'"),
                     "use gpt, mlp, convnet, moe, wresnet, or the path of a text IR file (.ir)");
  return resolve_ir_file(path, o);
}

namespace {

// A text IR file at `batch / micro_batches` rows; every input's dim 0 must be the batch.
Result<Graph> file_forward(const ModelSpec& spec, int micro_batches) {
  if (micro_batches == 1) return spec.file_graph;
  if (!spec.file_batch_declared)
    return invalid_argument(
        cat(spec.name, " declares no batch dimension, so it cannot be split into ", micro_batches,
            " micro-batches"),
        kDeclareBatch);
  ALPA_ASSIGN_OR_RETURN(ParsedGraph micro,
                        parse_graph_at(spec.file_text, spec.name, spec.batch / micro_batches));
  const std::vector<ValueId> whole = spec.file_graph.parameters(ParamRole::kInput);
  const std::vector<ValueId> part = micro.graph.parameters(ParamRole::kInput);
  for (size_t i = 0; i < whole.size() && i < part.size(); ++i) {
    Shape want = spec.file_graph.type(whole[i]).shape;
    if (!want.empty()) want[0] /= micro_batches;
    if (micro.graph.type(part[i]).shape != want)
      return invalid_argument(
          cat(spec.name, ": input %", spec.file_graph.node(whole[i]).name,
              " does not hold the batch in dim 0 (", spec.file_graph.type(whole[i]).to_string(),
              " at batch ", spec.batch, ", ", micro.graph.type(part[i]).to_string(), " at batch ",
              spec.batch / micro_batches, ")"),
          "write every input's type as dtype[batch, ...]: micro-batches split inputs along dim 0");
  }
  return std::move(micro.graph);
}

Result<Graph> build_family_forward(const ModelSpec& spec, int micro_batches) {
  if (micro_batches < 1)
    return invalid_argument(cat("micro-batches must be >= 1, got ", micro_batches));
  if (spec.family == ModelFamily::kFile && !spec.onnx && micro_batches > 1 &&
      !spec.file_batch_declared)
    return file_forward(spec, micro_batches);  // the error that says how to declare it
  if (spec.batch % micro_batches != 0)
    return invalid_argument(
        cat("batch ", spec.batch, " is not divisible by ", micro_batches, " micro-batches"),
        "choose a micro-batch count that divides the batch");
  if (spec.onnx) {
    if (micro_batches == 1) return spec.file_graph;
    ALPA_ASSIGN_OR_RETURN(OnnxImport m,
                          spec.onnx->import(spec.batch / micro_batches, spec.onnx_loss));
    return std::move(m.graph);
  }
  if (spec.family == ModelFamily::kFile) return file_forward(spec, micro_batches);
  if (spec.family == ModelFamily::kGpt) {
    GptConfig c = spec.gpt;
    c.batch = spec.batch / micro_batches;
    return build_gpt(c);
  }
  if (spec.family == ModelFamily::kConvNet) {
    ConvNetConfig c = spec.convnet;
    c.batch = spec.batch / micro_batches;
    return build_convnet(c);
  }
  if (spec.family == ModelFamily::kMoe) {
    MoeConfig c = spec.moe;
    c.batch = spec.batch / micro_batches;
    return build_moe(c);
  }
  if (spec.family == ModelFamily::kWResNet) {
    WResNetConfig c = spec.wresnet;
    c.batch = spec.batch / micro_batches;
    return build_wresnet(c);
  }
  MlpConfig c = spec.mlp;
  c.batch = spec.batch / micro_batches;
  return build_mlp(c);
}

}  // namespace

Result<Graph> build_forward(const ModelSpec& spec, int micro_batches) {
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_family_forward(spec, micro_batches));
  if (spec.mixed_precision == DType::kF32) return forward;
  return mixed_precision(forward, spec.mixed_precision);
}

Result<TrainStep> training_step(const ModelSpec& spec, const OptimizerOptions& optimizer,
                                int micro_batches) {
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, micro_batches));
  TrainStepOptions o;
  o.optimizer = optimizer;
  o.micro_batches = micro_batches;
  return build_train_step(forward, o);
}

Result<TrainStep> micro_batch_step(const ModelSpec& spec, const OptimizerOptions& optimizer,
                                   int micro_batches) {
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, micro_batches));
  TrainStepOptions o;
  o.optimizer = optimizer;
  return build_train_step(forward, o);
}

namespace {

// The forward of one micro-batch of `rows` rows.
Result<Graph> forward_at_rows(const ModelSpec& spec, int64_t rows) {
  ModelSpec at = spec;
  at.batch = rows;
  if (spec.onnx) {
    ALPA_ASSIGN_OR_RETURN(OnnxImport m, spec.onnx->import(rows, spec.onnx_loss));
    at.file_graph = std::move(m.graph);
  } else if (spec.family == ModelFamily::kFile) {
    ALPA_ASSIGN_OR_RETURN(ParsedGraph p, parse_graph_at(spec.file_text, spec.name, rows));
    at.file_graph = std::move(p.graph);
  }
  return build_forward(at, 1);
}

}  // namespace

Result<EmittedForward> emit_forward(const ModelSpec& spec, int micro_batches) {
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, micro_batches));
  EmittedForward e;
  const bool fixed = spec.family == ModelFamily::kFile &&
                     (spec.onnx ? spec.onnx->fixed_batch() > 0 : !spec.file_batch_declared);
  if (fixed) {
    e.text = print_graph(forward);
    e.why_no_batch = cat(spec.name, " declares no batch dimension");
    return e;
  }
  const int64_t rows = spec.batch / micro_batches;
  Result<Graph> other = forward_at_rows(spec, 2 * rows);
  Result<std::string> text =
      other.ok() ? print_graph_with_batch(forward, rows, *other, 2 * rows) : other.status();
  if (text.ok()) {
    e.text = std::move(*text);
    e.batch_declared = true;
  } else {
    e.text = print_graph(forward);
    e.why_no_batch = text.status().message();
  }
  return e;
}

int64_t tokens_per_batch(const ModelSpec& spec) {  // GPT, MoE: tokens; others: samples
  if (spec.family == ModelFamily::kGpt) return spec.batch * spec.gpt.seq;
  if (spec.family == ModelFamily::kMoe) return spec.batch * spec.moe.seq;
  return spec.batch;
}

}  // namespace alpa
