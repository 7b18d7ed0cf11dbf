// alpa export: a checkpoint of the built-in GPT written as Hugging Face GPT-2 weights
// (model.safetensors and config.json), which `alpa train --init-from`, `alpa forward` and
// GPT-2 implementations elsewhere read.
#include <filesystem>

#include <nlohmann/json.hpp>

#include "alpa/cli/commands.h"
#include "alpa/cli/format.h"
#include "alpa/cli/gpt2_weights.h"
#include "alpa/onnx/onnx_model.h"
#include "alpa/runtime/checkpoint.h"
#include "alpa/support/files.h"
#include "alpa/support/json_excerpt.h"

namespace alpa {
namespace {

namespace fs = std::filesystem;

struct Exported {
  std::string model;
  int64_t step = 0;
  int64_t parameters = 0;
  GptConfig config;
  std::string weights_path, config_path;
  int64_t weights_bytes = 0;
};

// The GPT the checkpoint holds: the model flags, with --size the checkpoint's unless given.
Result<ModelSpec> checkpoint_model(const ExportFlags& flags, const LoadedCheckpoint& ck) {
  const std::string& name = ck.info.model;
  if (name.rfind("gpt-", 0) != 0)
    return failed_precondition(cat("checkpoint ", ck.path, " is of model ", name,
                                   "; alpa export writes GPT-2 weights of the built-in GPT only"),
                               "export a checkpoint written by `alpa train --model gpt`");
  if (flags.model.model != "gpt")
    return invalid_argument(cat("--model ", flags.model.model,
                                ": alpa export writes GPT-2 "
                                "weights of the built-in GPT, --model gpt"));
  ModelFlags m = flags.model;
  if (!flags.size_given) m.size = name.substr(4);
  ALPA_ASSIGN_OR_RETURN(ModelSpec spec, resolve_model_flags(m));
  return spec;
}

// An ONNX model's checkpoint: the model's file with the trained weights as its initializers.
Result<Exported> export_onnx(const ExportFlags& flags) {
  if (!is_onnx_path(flags.model.model))
    return invalid_argument("--format onnx writes the weights into the ONNX file they came from",
                            "give that file with --model model.onnx");
  ALPA_ASSIGN_OR_RETURN(LoadedCheckpoint ck, read_checkpoint(flags.checkpoint));
  ALPA_ASSIGN_OR_RETURN(std::shared_ptr<const OnnxModel> model, OnnxModel::load(flags.model.model));
  std::map<std::string, std::vector<float>> weights;
  Exported e;
  for (size_t t = 0; t < ck.info.tensors.size(); ++t) {
    const CheckpointTensor& ct = ck.info.tensors[t];
    if (ct.role != "weight") continue;
    weights[ct.name] = ck.tensors[t].to_vector();
    e.parameters += ct.type.num_elements();
  }
  Result<std::string> bytes = model->with_weights(weights);
  if (!bytes.ok())
    return bytes.status().with_context(cat("checkpoint ", ck.path, " into ", flags.model.model));
  e.model = ck.info.model;
  e.step = ck.info.step;
  e.weights_path = flags.out;
  e.weights_bytes = static_cast<int64_t>(bytes->size());
  ALPA_RETURN_IF_ERROR(write_file(flags.out, *bytes));
  return e;
}

Result<Exported> export_checkpoint(const ExportFlags& flags) {
  if (flags.format == "onnx") return export_onnx(flags);
  if (flags.format != "safetensors")
    return invalid_argument(cat("unknown --format '", flags.format, "'"),
                            "use safetensors or onnx");
  if (flags.out.empty()) return invalid_argument("give the output directory with --out");
  ALPA_ASSIGN_OR_RETURN(StoredDType dtype, parse_stored_dtype(flags.dtype));
  ALPA_ASSIGN_OR_RETURN(LoadedCheckpoint ck, read_checkpoint(flags.checkpoint));
  ALPA_ASSIGN_OR_RETURN(ModelSpec spec, checkpoint_model(flags, ck));
  GptWeights weights;
  Exported e;
  for (size_t t = 0; t < ck.info.tensors.size(); ++t) {
    const CheckpointTensor& ct = ck.info.tensors[t];
    if (ct.role != "weight") continue;
    weights[ct.name] = {ct.name, ct.type.shape, ck.tensors[t].to_vector()};
    e.parameters += ct.type.num_elements();
  }
  Result<std::vector<NamedTensor>> tensors = gpt2_tensors(spec.gpt, weights);
  if (!tensors.ok())
    return tensors.status().with_context(
        cat("checkpoint ", ck.path, " as ", spec.name, flags.size_given ? " (given flags)" : ""));
  std::error_code ec;
  fs::create_directories(flags.out, ec);
  if (!fs::is_directory(flags.out, ec))
    return io_error(cat("cannot create the directory ", flags.out),
                    "give --out a directory path that can be written");
  e.model = ck.info.model;
  e.step = ck.info.step;
  e.config = spec.gpt;
  e.weights_path = (fs::path(flags.out) / "model.safetensors").string();
  e.config_path = (fs::path(flags.out) / "config.json").string();
  const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                       {"alpa.model", ck.info.model},
                                                       {"alpa.step", std::to_string(ck.info.step)},
                                                       {"alpa.checkpoint", ck.path}};
  ALPA_ASSIGN_OR_RETURN(std::string bytes, encode_safetensors(*tensors, dtype, metadata));
  e.weights_bytes = static_cast<int64_t>(bytes.size());
  ALPA_RETURN_IF_ERROR(write_file(e.weights_path, bytes));
  ALPA_RETURN_IF_ERROR(write_file(e.config_path, gpt2_config_json(spec.gpt, dtype).dump(2) + "\n"));
  return e;
}

}  // namespace

int run_export(const ExportFlags& flags, std::ostream& out, std::ostream& err) {
  Result<Exported> r = export_checkpoint(flags);
  if (!r.ok()) return report_error(r.status(), flags.json, out, err);
  const Exported& e = *r;
  if (flags.format == "onnx" && !flags.json) {
    out << "exported " << e.model << " at step " << e.step << " (" << format_count(e.parameters)
        << " parameters) as ONNX: " << e.weights_path << " ("
        << format_bytes(static_cast<double>(e.weights_bytes)) << ")\n";
    return kExitOk;
  }
  if (flags.json) {
    nlohmann::ordered_json j = {{"command", "export"},
                                {"model", e.model},
                                {"step", e.step},
                                {"parameters", e.parameters},
                                {"dtype", flags.dtype},
                                {"weights", e.weights_path},
                                {"weights_bytes", e.weights_bytes},
                                {"config", e.config_path}};
    out << json_line(j) << "\n";
    return kExitOk;
  }
  out << "exported " << e.model << " at step " << e.step << " (" << format_count(e.parameters)
      << " parameters; " << e.config.layers << " layers, hidden " << e.config.hidden << ", "
      << e.config.heads << " heads, vocab " << e.config.vocab << ", " << e.config.seq
      << " positions) as GPT-2 weights in " << flags.dtype << ":\n"
      << "  " << e.weights_path << " (" << format_bytes(static_cast<double>(e.weights_bytes))
      << ")\n"
      << "  " << e.config_path << "\n";
  return kExitOk;
}

}  // namespace alpa
