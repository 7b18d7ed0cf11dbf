// Reading an ONNX file, importing its graph at a batch size, and writing new weights into it.
#include "alpa/onnx/onnx_model.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "alpa/onnx/import_context.h"
#include "alpa/support/text.h"

namespace alpa {

using onnx_import::Ctx;
using onnx_import::HostTensor;
using onnx_import::OValue;

struct OnnxModel::Impl {
  onnx::ModelProto proto;
  // Graph inputs that are data (not initializers), in order.
  std::vector<const onnx::ValueInfoProto*> inputs;
  std::map<std::string, const onnx::TensorProto*> initializers;
};

OnnxModel::OnnxModel(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OnnxModel::~OnnxModel() = default;

bool is_onnx_path(std::string_view path) {
  return path.size() > 5 && path.substr(path.size() - 5) == ".onnx";
}

Result<OnnxLoss> parse_onnx_loss(std::string_view text) {
  OnnxLoss l;
  const size_t colon = text.find(':');
  l.kind = std::string(text.substr(0, colon));
  if (colon != std::string_view::npos) l.output = std::string(text.substr(colon + 1));
  if (l.kind != "cross_entropy" && l.kind != "mse")
    return invalid_argument(cat("unknown --loss '", text, "'"),
                            "use cross_entropy or mse, optionally with the output it applies to "
                            "(cross_entropy:logits)");
  if (colon != std::string_view::npos && l.output.empty())
    return invalid_argument(cat("--loss '", text, "' names no output after ':'"));
  return l;
}

Result<std::shared_ptr<const OnnxModel>> OnnxModel::load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return not_found(cat("no ONNX file ", path), "give the path of a .onnx file");
  const auto size = std::filesystem::file_size(path, ec);
  if (ec || size > (uint64_t{1} << 31) - 1)
    return invalid_argument(cat(path, ": the file is larger than 2 GB or cannot be sized"),
                            "ONNX files over 2 GB keep external data, which is not supported");
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (!f.good() && !f.eof()) return io_error(cat("cannot read ", path));
  return parse(ss.str(), path);
}

namespace {

Status check_opset(const onnx::ModelProto& m, const std::string& path, int64_t& opset) {
  opset = -1;
  for (const onnx::OperatorSetIdProto& o : m.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  if (opset < 0)
    return invalid_argument(cat(path, ": the model imports no opset of the default ONNX domain"),
                            "export with torch.onnx.export(..., opset_version=17)");
  if (opset < 13 || opset > 17)
    return invalid_argument(cat(path, ": opset ", opset, " is not supported (13 to 17 are)"),
                            "export again with torch.onnx.export(..., opset_version=17)");
  return ok_status();
}

// The batch of the data inputs: the name of a symbolic first dimension, or the fixed one.
Status find_batch(const std::vector<const onnx::ValueInfoProto*>& inputs, const std::string& path,
                  std::string& param, int64_t& fixed) {
  for (const onnx::ValueInfoProto* in : inputs) {
    if (!in->type().has_tensor_type())
      return invalid_argument(cat(path, ": input '", in->name(), "' is not a tensor"));
    const onnx::TensorShapeProto& s = in->type().tensor_type().shape();
    if (s.dim_size() == 0) continue;
    const onnx::TensorShapeProto::Dimension& d = s.dim(0);
    if (d.has_dim_param() && param.empty() && fixed == 0) param = d.dim_param();
    if (d.has_dim_value() && param.empty() && fixed == 0) fixed = d.dim_value();
  }
  return ok_status();
}

}  // namespace

Result<std::shared_ptr<const OnnxModel>> OnnxModel::parse(std::string_view bytes,
                                                          const std::string& path) {
  auto impl = std::make_unique<Impl>();
  if (bytes.size() > static_cast<size_t>(INT32_MAX) ||
      !impl->proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    return parse_error(cat(path, ": not an ONNX model (the protocol buffer does not parse)"),
                       "the file is truncated or not ONNX: export it again with torch.onnx.export");
  if (!impl->proto.has_graph() || impl->proto.graph().node_size() == 0)
    return parse_error(cat(path, ": not an ONNX model (no graph, or a graph without nodes)"),
                       "the file is truncated or not ONNX: export it again with torch.onnx.export");
  int64_t opset = 0;
  ALPA_RETURN_IF_ERROR(check_opset(impl->proto, path, opset));
  const onnx::GraphProto& g = impl->proto.graph();
  for (const onnx::TensorProto& t : g.initializer()) impl->initializers[t.name()] = &t;
  for (const onnx::ValueInfoProto& in : g.input())
    if (!impl->initializers.count(in.name())) impl->inputs.push_back(&in);
  std::string param;
  int64_t fixed = 0;
  ALPA_RETURN_IF_ERROR(find_batch(impl->inputs, path, param, fixed));
  std::shared_ptr<OnnxModel> m(new OnnxModel(std::move(impl)));
  m->path_ = path;
  m->opset_ = opset;
  m->batch_param_ = param;
  m->fixed_batch_ = fixed;
  // Import once at a batch of 1 (or the fixed one) so every error shows when the file is read.
  Result<OnnxImport> probe = m->import(fixed > 0 ? fixed : 1, OnnxLoss{"", "\x01"});
  if (!probe.ok()) return probe.status();
  return std::shared_ptr<const OnnxModel>(std::move(m));
}

namespace {

// The data inputs as parameters (the batch dimension set), with their bounds for sampling.
Status add_inputs(Ctx& c, const std::vector<const onnx::ValueInfoProto*>& inputs,
                  const std::string& batch_param, const std::map<std::string, int64_t>& bounds) {
  for (const onnx::ValueInfoProto* in : inputs) {
    const onnx::TypeProto::Tensor& tt = in->type().tensor_type();
    const std::string what = cat(c.path, ": input '", in->name(), "'");
    ALPA_ASSIGN_OR_RETURN(DType dt, onnx_import::dtype_of(tt.elem_type(), what));
    if (!tt.has_shape())
      return invalid_argument(cat(what, " has no shape"), "export with example inputs");
    Shape shape;
    for (int i = 0; i < tt.shape().dim_size(); ++i) {
      const onnx::TensorShapeProto::Dimension& d = tt.shape().dim(i);
      if (d.has_dim_value() && d.dim_value() > 0) {
        shape.push_back(d.dim_value());
      } else if (d.has_dim_param() && !batch_param.empty() && d.dim_param() == batch_param) {
        shape.push_back(c.batch);
      } else {
        return invalid_argument(
            cat(what, " dimension ", i, " is dynamic ('",
                d.has_dim_param() ? d.dim_param() : std::string("?"),
                "') and is not the batch dimension, so its size cannot be resolved"),
            "export with fixed sizes except the batch: dynamic_axes={'input': {0: 'batch'}}");
      }
    }
    if (!shape_within_limits(shape))
      return invalid_argument(cat(what, " has shape ", shape_to_string(shape), ", beyond limits"));
    ParamInit init = ParamInit::kNormal;
    double scale = 1.0;
    if (dt == DType::kI32) {
      init = ParamInit::kRandint;
      auto it = bounds.find(in->name());
      scale = it == bounds.end() ? 2.0 : static_cast<double>(it->second);
    } else if (dt == DType::kPred) {
      init = ParamInit::kRandint;
      scale = 2.0;
    }
    Value v = c.b.parameter(c.ir_name(in->name()), {dt, shape}, ParamRole::kInput, init, scale);
    c.values[in->name()] = OValue::of(v);
    c.input_of_value[v.id] = in->name();
  }
  return ok_status();
}

// The value of input `name` of a node: known, an initializer (made a weight on first use),
// or absent ("").
Result<OValue> fetch(Ctx& c, const onnx::NodeProto& n, const std::string& name, bool host_only) {
  if (name.empty()) return OValue{};
  if (auto it = c.values.find(name); it != c.values.end()) return it->second;
  auto w = c.pending_weights.find(name);
  if (w == c.pending_weights.end())
    return onnx_import::node_error(c, n, cat("input '", name, "' is not defined before it"),
                                   "the graph is not in topological order or is damaged");
  ALPA_ASSIGN_OR_RETURN(HostTensor h, onnx_import::read_tensor(
                                          *w->second, cat(c.path, ": initializer '", name, "'")));
  if (host_only) {
    c.running_stats.insert(name);
    return OValue::of(std::move(h));
  }
  const std::string ir = c.ir_name(name);
  Value v = c.b.parameter(ir, {h.dtype, h.shape}, ParamRole::kWeight, ParamInit::kNormal, 0.02);
  c.weight_initializer[ir] = name;
  c.pending_weights.erase(w);
  OValue o = OValue::of(v);
  c.values[name] = o;
  return o;
}

Status convert_node(Ctx& c, const onnx::NodeProto& n) {
  const auto& table = onnx_import::converters();
  auto conv = table.find(n.op_type());
  if (conv == table.end() || !(n.domain().empty() || n.domain() == "ai.onnx"))
    return onnx_import::node_error(c, n, "unsupported operator");
  std::vector<OValue> in;
  const bool bn = n.op_type() == "BatchNormalization";
  for (int i = 0; i < n.input_size(); ++i) {
    ALPA_ASSIGN_OR_RETURN(OValue v, fetch(c, n, n.input(i), bn && (i == 3 || i == 4)));
    in.push_back(std::move(v));
  }
  if (n.output_size() < 1)
    return onnx_import::node_error(c, n, "the node has no outputs",
                                   "every operator this importer reads has at least one");
  std::vector<OValue> out(static_cast<size_t>(n.output_size()));
  ALPA_RETURN_IF_ERROR(conv->second(c, n, in, out));
  if (!c.b.ok())
    return onnx_import::node_error(c, n, c.b.status().message(),
                                   "this use of the operator is not supported; see docs/onnx.md");
  for (int i = 0; i < n.output_size(); ++i)
    if (!n.output(i).empty() && out[static_cast<size_t>(i)].present())
      c.values[n.output(i)] = out[static_cast<size_t>(i)];
  return ok_status();
}

// Every op type the importer does not convert, with the nodes that use it.
Status check_supported(const onnx::GraphProto& g, const std::string& path) {
  std::map<std::string, std::vector<std::string>> missing;
  const auto& table = onnx_import::converters();
  for (const onnx::NodeProto& n : g.node()) {
    const bool default_domain = n.domain().empty() || n.domain() == "ai.onnx";
    if (default_domain && table.count(n.op_type())) continue;
    const std::string type = default_domain ? n.op_type() : cat(n.domain(), ".", n.op_type());
    missing[type].push_back(n.name().empty() ? (n.output_size() ? n.output(0) : "?") : n.name());
  }
  if (missing.empty()) return ok_status();
  std::string list;
  for (const auto& [type, nodes] : missing) {
    list += cat("\n  ", type, ": ");
    for (size_t i = 0; i < nodes.size() && i < 8; ++i) list += cat(i ? ", " : "", nodes[i]);
    if (nodes.size() > 8) list += cat(", ... (", nodes.size(), " nodes)");
  }
  return invalid_argument(cat(path, ": ", missing.size(), " unsupported operator type",
                              missing.size() == 1 ? "" : "s", ":", list),
                          "rewrite those parts of the model with supported operators "
                          "(docs/onnx.md lists them), or export with another opset");
}

}  // namespace

namespace onnx_import {
// Adds the output "loss" (unless `probe`: then only checks the outputs exist) and, with
// `with_outputs`, the file's outputs.
Status add_loss(Ctx& c, const OnnxLoss& loss, std::vector<std::string>& outputs, bool probe,
                bool with_outputs);
}  // namespace onnx_import

Result<OnnxImport> OnnxModel::import(int64_t batch, const OnnxLoss& loss, bool with_outputs) const {
  if (fixed_batch_ > 0 && batch != fixed_batch_)
    return invalid_argument(
        cat(path_, ": the inputs' batch is fixed at ", fixed_batch_, "; batch ", batch, " asked"),
        "export with a symbolic batch: dynamic_axes={'input': {0: 'batch'}}, or use --batch " +
            std::to_string(fixed_batch_));
  if (batch < 1) return invalid_argument(cat("batch must be >= 1, got ", batch));
  const onnx::GraphProto& g = impl_->proto.graph();
  ALPA_RETURN_IF_ERROR(check_supported(g, path_));
  std::map<std::string, int64_t> bounds;
  OnnxImport result;
  // Twice: the first pass finds the ranges integer inputs index (token ids), the second
  // builds the graph with data sampled in them.
  for (int pass = 0; pass < 2; ++pass) {
    Ctx c(impl_->proto, batch, path_);
    c.opset = opset_;
    for (const auto& [name, t] : impl_->initializers) {
      if (t->data_type() == onnx::TensorProto::FLOAT ||
          t->data_type() == onnx::TensorProto::DOUBLE ||
          t->data_type() == onnx::TensorProto::FLOAT16) {
        c.pending_weights[name] = t;
      } else {
        ALPA_ASSIGN_OR_RETURN(
            HostTensor h, onnx_import::read_tensor(*t, cat(path_, ": initializer '", name, "'")));
        c.values[name] = OValue::of(std::move(h));
      }
    }
    ALPA_RETURN_IF_ERROR(add_inputs(c, impl_->inputs, batch_param_, bounds));
    for (const onnx::NodeProto& n : g.node()) ALPA_RETURN_IF_ERROR(convert_node(c, n));
    result.outputs.clear();
    const bool probe = loss.output == "\x01";
    ALPA_RETURN_IF_ERROR(
        onnx_import::add_loss(c, probe ? OnnxLoss{} : loss, result.outputs, probe, with_outputs));
    bounds = c.int_bounds;
    if (pass == 1 || probe) {
      ALPA_ASSIGN_OR_RETURN(result.graph, c.b.finish());
      result.weight_initializer = c.weight_initializer;
    }
    if (probe) break;
  }
  return result;
}

std::vector<OnnxWeight> OnnxModel::initial_values() const {
  std::vector<OnnxWeight> out;
  Result<OnnxImport> imp = import(fixed_batch_ > 0 ? fixed_batch_ : 1, OnnxLoss{"", "\x01"});
  if (!imp.ok()) return out;
  for (const auto& [ir, init] : imp->weight_initializer) {
    Result<HostTensor> h = onnx_import::read_tensor(*impl_->initializers.at(init), init);
    if (!h.ok()) continue;
    OnnxWeight w{ir, init, h->shape, {}};
    w.values.assign(h->values.begin(), h->values.end());
    out.push_back(std::move(w));
  }
  return out;
}

Result<std::string> OnnxModel::with_weights(
    const std::map<std::string, std::vector<float>>& weights) const {
  Result<OnnxImport> imp = import(fixed_batch_ > 0 ? fixed_batch_ : 1, OnnxLoss{"", "\x01"});
  if (!imp.ok()) return imp.status();
  onnx::ModelProto out = impl_->proto;
  std::map<std::string, onnx::TensorProto*> by_name;
  for (onnx::TensorProto& t : *out.mutable_graph()->mutable_initializer()) by_name[t.name()] = &t;
  for (const auto& [ir, init] : imp->weight_initializer) {
    auto w = weights.find(ir);
    if (w == weights.end())
      return invalid_argument(cat("no value for weight '", ir, "' (initializer '", init, "')"),
                              "the checkpoint must be of this model");
    onnx::TensorProto* t = by_name.at(init);
    int64_t n = 1;
    for (int64_t d : t->dims()) n *= d;
    if (static_cast<int64_t>(w->second.size()) != n)
      return invalid_argument(cat("weight '", ir, "' has ", w->second.size(),
                                  " values; initializer '", init, "' holds ", n));
    t->clear_float_data();
    t->clear_double_data();
    t->clear_int32_data();
    t->set_data_type(onnx::TensorProto::FLOAT);
    t->set_raw_data(std::string(reinterpret_cast<const char*>(w->second.data()),
                                w->second.size() * sizeof(float)));
  }
  std::string bytes;
  if (!out.SerializeToString(&bytes)) return internal_error("serializing the ONNX model failed");
  return bytes;
}

}  // namespace alpa
