#include "alpa/serve_plan/inference_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>

#include "alpa/cost/collective.h"
#include "alpa/cost/compute.h"
#include "alpa/cost/mesh_links.h"
#include "alpa/support/text.h"

namespace alpa::serve {

const char* objective_name(Objective objective) {
  return objective == Objective::kLatency ? "latency" : "throughput";
}

Result<Objective> parse_objective(std::string_view text) {
  if (text == "latency") return Objective::kLatency;
  if (text == "throughput") return Objective::kThroughput;
  return invalid_argument(cat("unknown objective \"", text, "\""),
                          "use latency (least time per output token) or throughput (most "
                          "tokens/s)");
}

namespace {

constexpr double kGB = 1e9;

// "12.3" (decimal gigabytes, one decimal).
std::string format_gb(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", bytes / kGB);
  return buf;
}

// ---------------------------------------------------------------------------------------------
// Named shapes.
// ---------------------------------------------------------------------------------------------

// The fields every family sets the same way: heads of hidden / heads dims, one token id for
// both the start and the end of a sequence.
DecoderConfig base_shape(Family family, Activation activation, int64_t vocab, int64_t hidden,
                         int64_t layers, int64_t heads, int64_t token) {
  DecoderConfig c;
  c.family = family;
  c.activation = activation;
  c.vocab = vocab;
  c.hidden = hidden;
  c.layers = layers;
  c.heads = heads;
  c.kv_heads = heads;
  c.head_dim = hidden / heads;
  c.intermediate = 4 * hidden;
  c.tie_embeddings = true;
  c.bos_id = token;
  c.eos_id = token;
  return c;
}

DecoderConfig opt_shape(int64_t hidden, int64_t layers, int64_t heads) {
  // OPT's GPT-2 BPE vocabulary padded to 50272 (Hugging Face facebook/opt-* configs).
  DecoderConfig c = base_shape(Family::kOpt, Activation::kRelu, 50272, hidden, layers, heads, 2);
  c.max_positions = 2048;
  return c;
}

DecoderConfig llama_shape(int64_t hidden, int64_t layers, int64_t heads, int64_t kv_heads,
                          int64_t intermediate) {
  DecoderConfig c = base_shape(Family::kLlama, Activation::kSilu, 32000, hidden, layers, heads, 2);
  c.kv_heads = kv_heads;
  c.intermediate = intermediate;
  c.max_positions = 4096;
  c.tie_embeddings = false;
  c.bos_id = 1;
  return c;
}

DecoderConfig gpt2_shape(int64_t hidden, int64_t layers, int64_t heads) {
  DecoderConfig c =
      base_shape(Family::kGpt2, Activation::kGeluTanh, 50257, hidden, layers, heads, 50256);
  c.max_positions = 1024;
  return c;
}

struct NamedShape {
  const char* name;
  DecoderConfig (*make)();
};

// OPT: Zhang et al., "OPT: Open Pre-trained Transformer Language Models" (2022), Table 1
// (layers, heads, d_model; FFN = 4 d_model, 2048 positions): 175B 96 x 96 x 12288, 66B
// 64 x 72 x 9216, 30B 48 x 56 x 7168, 13B 40 x 40 x 5120, 6.7B 32 x 32 x 4096.
// LLaMA 2: Touvron et al. (2023), Table 1 and the meta-llama/Llama-2-*-hf configs (70B:
// 80 layers, 8192 wide, 64 heads with 8 KV heads, FFN 28672; 13B: 40 x 5120, 40 heads, FFN
// 13824; 7B: 32 x 4096, 32 heads, FFN 11008; 4096 positions, vocabulary 32000).
// GPT-2: Radford et al. (2019), the Hugging Face gpt2 / gpt2-xl configs.
constexpr NamedShape kShapes[] = {
    {"opt-175b", [] { return opt_shape(12288, 96, 96); }},
    {"opt-66b", [] { return opt_shape(9216, 64, 72); }},
    {"opt-30b", [] { return opt_shape(7168, 48, 56); }},
    {"opt-13b", [] { return opt_shape(5120, 40, 40); }},
    {"opt-6.7b", [] { return opt_shape(4096, 32, 32); }},
    {"llama-2-70b", [] { return llama_shape(8192, 80, 64, 8, 28672); }},
    {"llama-2-13b", [] { return llama_shape(5120, 40, 40, 40, 13824); }},
    {"llama-2-7b", [] { return llama_shape(4096, 32, 32, 32, 11008); }},
    {"gpt2", [] { return gpt2_shape(768, 12, 12); }},
    {"gpt2-xl", [] { return gpt2_shape(1600, 48, 25); }},
};

std::string shape_list() {
  std::string s;
  for (const NamedShape& n : kShapes) s += (s.empty() ? "" : ", ") + std::string(n.name);
  return s;
}

}  // namespace

std::vector<std::string> decoder_preset_names() {
  std::vector<std::string> names;
  for (const NamedShape& n : kShapes) names.emplace_back(n.name);
  return names;
}

Result<DecoderConfig> decoder_preset(std::string_view name) {
  for (const NamedShape& n : kShapes)
    if (name == n.name) return n.make();
  return not_found(cat("unknown model \"", name, "\""),
                   cat("named shapes: ", shape_list(), "; or a model directory with config.json"));
}

Result<DecoderConfig> load_decoder_shape(const std::string& preset_or_path) {
  for (const NamedShape& n : kShapes)
    if (preset_or_path == n.name) return n.make();
  std::error_code ec;
  if (std::filesystem::is_directory(preset_or_path, ec))
    return read_decoder_config((std::filesystem::path(preset_or_path) / "config.json").string());
  if (std::filesystem::is_regular_file(preset_or_path, ec))
    return read_decoder_config(preset_or_path);
  return decoder_preset(preset_or_path);
}

namespace {

// ---------------------------------------------------------------------------------------------
// Shapes of one device's shard.
// ---------------------------------------------------------------------------------------------

bool gated(const DecoderConfig& c) {
  return c.family == Family::kLlama;
}
bool has_biases(const DecoderConfig& c) {
  return c.family != Family::kLlama;
}
// Parameters of one normalization layer: LayerNorm has a scale and a bias, RMSNorm a scale.
double norm_params(const DecoderConfig& c) {
  return c.family == Family::kLlama ? c.hidden : 2.0 * c.hidden;
}
// Rows of the learned position table (OPT's is offset by 2; LLaMA's rotary has none).
double position_rows(const DecoderConfig& c) {
  if (c.family == Family::kLlama) return 0;
  return c.family == Family::kOpt ? c.max_positions + 2.0 : c.max_positions;
}

// One device's share of the split dimensions under tensor parallelism of degree tp.
struct Split {
  double h = 0;      // hidden (never split)
  double q = 0;      // query width (heads / tp)
  double kv = 0;     // key (= value) width: KV heads / tp, or one head replicated
  double f = 0;      // FFN inner width per matrix
  double vocab = 0;  // vocabulary rows
};

Split split_of(const DecoderConfig& c, int tp) {
  Split s;
  s.h = static_cast<double>(c.hidden);
  s.q = static_cast<double>(c.q_dim()) / tp;
  const int64_t kv_heads = c.kv_heads >= tp ? c.kv_heads / tp : 1;
  s.kv = static_cast<double>(kv_heads * c.head_dim);
  s.f = static_cast<double>(c.intermediate) / tp;
  s.vocab = std::ceil(static_cast<double>(c.vocab) / tp);
  return s;
}

// Parameters of one decoder layer on one device.
double layer_params(const DecoderConfig& c, const Split& s) {
  double p = s.h * s.q + 2 * s.h * s.kv + s.q * s.h;  // q, k, v, out
  p += (gated(c) ? 3 : 2) * s.h * s.f;                // up (and gate), down
  if (has_biases(c)) p += s.q + 2 * s.kv + s.h + s.f + s.h;
  return p + 2 * norm_params(c);
}

int layers_of_stage(const DecoderConfig& c, int pp, int stage) {
  const int64_t base = c.layers / pp, extra = c.layers % pp;
  return static_cast<int>(base + (stage < extra ? 1 : 0));
}

// Parameters of stage `stage` on one device: its layers, the embeddings on the first, the final
// norm and output projection on the last (a tied projection is the embedding itself when one
// stage holds both, else a copy).
double stage_params(const DecoderConfig& c, const Split& s, int pp, int stage) {
  double p = layers_of_stage(c, pp, stage) * layer_params(c, s);
  if (stage == 0) p += s.vocab * s.h + position_rows(c) * s.h;
  if (stage == pp - 1) {
    p += norm_params(c);
    if (!c.tie_embeddings || pp > 1) p += s.vocab * s.h;
  }
  return p;
}

}  // namespace

int64_t decoder_parameters(const DecoderConfig& c) {
  return c.num_parameters();  // what stage_params counts for one device (tests hold them equal)
}

namespace {

// ---------------------------------------------------------------------------------------------
// Time.
// ---------------------------------------------------------------------------------------------

// One stage's devices on the cluster: the device, the tp group's links, the hand-off link.
struct StageLinks {
  MeshLinks tp_links;
  bool has_tp = false;
  LinkSpec handoff;          // to the next stage
  double handoff_share = 1;  // fraction of the hidden states each link carries
};

StageLinks stage_links(const Cluster& cluster, int tp, int stage) {
  StageLinks l;
  const int first = stage * tp;
  l.has_tp = tp > 1;
  if (l.has_tp) l.tp_links = mesh_links(cluster, MeshShape{1, tp}, first).value();
  const int next = first + tp;
  const bool crosses = next / cluster.devices_per_host != (next - 1) / cluster.devices_per_host;
  // Each of the tp devices sends its 1/tp of the hidden states over its own NVLink port; across
  // hosts they share the NIC.
  l.handoff = crosses ? cluster.inter_host : cluster.intra_host;
  l.handoff_share = crosses ? 1.0 : 1.0 / tp;
  return l;
}

// One forward pass over a stage: `seqs` sequences each adding `fresh` positions, attending on
// average to `attended` positions, the KV cache of `cached` positions per sequence read.
struct Pass {
  double seqs = 1;
  double fresh = 1;
  double attended = 1;
  double cached = 0;
};

struct Costing {
  const DecoderConfig& c;
  const Cluster& cluster;
  Split s;
  DType dtype;
  double bytes;  // per element

  double gemm(double tokens, double in, double out) const {
    const double flops = 2 * tokens * in * out;
    const double moved = (in * out + tokens * (in + out)) * bytes;
    return compute_time(cluster.device, dtype, flops, moved);
  }
  double memory_bound(double moved) const {
    return compute_time(cluster.device, dtype, 0, moved * bytes);
  }
  double all_reduce(const StageLinks& l, double elements) const {
    if (!l.has_tp) return 0;
    return collective_time(l.tp_links, Collective::kAllReduce, kAxis1, elements * bytes);
  }

  double layer(const StageLinks& l, const Pass& p) const {
    const double n = p.seqs * p.fresh;
    const double g = gated(c) ? 2 : 1;
    double t = gemm(n, s.h, s.q + 2 * s.kv) + gemm(n, s.q, s.h) + gemm(n, s.h, g * s.f) +
               gemm(n, s.f, s.h);
    // Fused attention: 4 FLOPs per query element per attended position; reads the cached keys
    // and values and the fresh q, k, v, writes the output and the fresh k, v.
    const double attn_flops = 4 * n * p.attended * s.q;
    const double attn_bytes = (p.seqs * p.cached * 2 * s.kv + n * (2 * s.q + 4 * s.kv)) * bytes;
    t += compute_time(cluster.device, dtype, attn_flops, attn_bytes);
    // Norms (read + write), residual adds (2 reads + write), the activation function.
    t += memory_bound(n * (10 * s.h + (gated(c) ? 3 : 2) * s.f));
    return t + 2 * all_reduce(l, n * s.h);
  }

  // The stage's time for one pass, its hand-off to the next stage included.
  double stage(int tp, int pp, int index, const Pass& p) const {
    const StageLinks l = stage_links(cluster, tp, index);
    const double n = p.seqs * p.fresh;
    double t = layers_of_stage(c, pp, index) * layer(l, p);
    if (index == 0) t += memory_bound(2 * n * s.h) + all_reduce(l, n * s.h);  // vocab-parallel
    if (index == pp - 1) {
      // The last positions only: final norm, output projection, logits gathered in f32.
      t += memory_bound(2 * p.seqs * s.h) + gemm(p.seqs, s.h, s.vocab);
      if (l.has_tp)
        t += collective_time(l.tp_links, Collective::kAllGather, kAxis1, p.seqs * c.vocab * 4.0);
    } else {
      t += l.handoff.latency + n * s.h * bytes * l.handoff_share / l.handoff.bandwidth;
    }
    return t;
  }

  // Per-stage times of one pass.
  std::vector<double> stages(int tp, int pp, const Pass& p) const {
    std::vector<double> t(pp);
    for (int i = 0; i < pp; ++i) t[i] = stage(tp, pp, i, p);
    return t;
  }
};

double sum(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return s;
}
double max_of(const std::vector<double>& v) {
  return *std::max_element(v.begin(), v.end());
}

// ---------------------------------------------------------------------------------------------
// Memory.
// ---------------------------------------------------------------------------------------------

// One prefill forward's intermediates on one device: a layer's hidden states in and out, the
// fresh q, k, v and attention output, the FFN's inner activations, the last positions' logits
// (f32).
double workspace_bytes(const DecoderConfig& c, const Split& s, double bytes, double seqs,
                       double tokens) {
  const double g = gated(c) ? 2 : 1;
  return tokens * (2 * s.h + 2 * s.q + 2 * s.kv + g * s.f) * bytes + seqs * s.vocab * 4;
}

StageMemory stage_memory(const DecoderConfig& c, const Split& s, double bytes, int pp, int stage,
                         const Workload& w, double capacity) {
  StageMemory m;
  m.weights = stage_params(c, s, pp, stage) * bytes;
  m.workspace = workspace_bytes(c, s, bytes, static_cast<double>(w.batch),
                                static_cast<double>(w.batch * w.prompt_len));
  m.kv_free = capacity - m.weights - m.workspace;
  const double block =
      kKvBlockTokens * 2.0 * layers_of_stage(c, pp, stage) * s.kv * bytes;  // K and V
  m.kv_blocks = m.kv_free > 0 ? static_cast<int64_t>(std::floor(m.kv_free / block)) : 0;
  m.kv_tokens = m.kv_blocks * kKvBlockTokens;
  const int64_t per_seq = (w.prompt_len + w.output_len + kKvBlockTokens - 1) / kKvBlockTokens;
  m.kv_sequences = m.kv_blocks / per_seq;
  return m;
}

double kv_bytes_per_sequence(const DecoderConfig& c, const Split& s, double bytes, int pp,
                             int stage, const Workload& w) {
  const int64_t per_seq = (w.prompt_len + w.output_len + kKvBlockTokens - 1) / kKvBlockTokens;
  return per_seq * kKvBlockTokens * 2.0 * layers_of_stage(c, pp, stage) * s.kv * bytes;
}

Status check_split(const DecoderConfig& c, const Cluster& cluster, int tp, int pp) {
  const std::string what = cat("tp ", tp, " x pp ", pp);
  if (tp < 1 || pp < 1) return invalid_argument(cat(what, ": degrees must be at least 1"));
  if (static_cast<int64_t>(tp) * pp != cluster.num_devices())
    return invalid_argument(cat(what, " is not the cluster's ", cluster.num_devices(), " devices"),
                            "tp x pp must equal the device count");
  if (tp > cluster.devices_per_host || cluster.devices_per_host % tp != 0)
    return invalid_argument(cat(what,
                                ": tensor parallelism must stay inside one host's NVLink domain (",
                                cluster.devices_per_host, " devices per host) and divide it"));
  if (c.heads % tp != 0)
    return invalid_argument(cat(what, ": tp ", tp, " does not divide the ", c.heads, " heads"),
                            "tensor parallelism splits attention heads evenly");
  if (c.kv_heads % tp != 0 && tp % c.kv_heads != 0)
    return invalid_argument(cat(what, ": tp ", tp, " neither divides nor is a multiple of the ",
                                c.kv_heads, " KV heads"));
  if (pp > c.layers)
    return invalid_argument(cat(what, ": ", pp, " stages for ", c.layers, " layers"),
                            "each pipeline stage needs at least one layer");
  return ok_status();
}

Status check_workload(const DecoderConfig& c, const Workload& w) {
  if (w.prompt_len < 1 || w.output_len < 1)
    return invalid_argument(cat("prompt length ", w.prompt_len, " and output length ", w.output_len,
                                " must be at least 1"));
  if (w.prompt_len + w.output_len > c.max_positions)
    return invalid_argument(cat("prompt length ", w.prompt_len, " + output length ", w.output_len,
                                " exceeds the ", c.max_positions, " positions of the model"),
                            "shorten --prompt-len or --output-len");
  if (!(w.rate >= 0) || !std::isfinite(w.rate))
    return invalid_argument(cat("request rate ", w.rate, " must be a finite number >= 0"));
  if (w.batch < 1 || w.max_batch < w.batch)
    return invalid_argument(
        cat("batch ", w.batch, " must be at least 1 and at most max batch ", w.max_batch));
  if (!is_float(w.dtype))
    return invalid_argument(cat("dtype ", dtype_name(w.dtype), " is not a float type"),
                            "use f16, bf16 or f32");
  return ok_status();
}

// Output tokens/s of `seqs` sequences in flight, split into micro-batches over the pp stages:
// the pipelined prefill, then output_len rounds of every micro-batch through every stage.
// `seqs` becomes the sequences used (a multiple of the micro-batches).
double throughput(const Costing& k, int tp, int pp, int64_t& seqs, const Workload& w) {
  const int64_t micro = std::min<int64_t>(pp, seqs);
  seqs = seqs / micro * micro;
  const double b = static_cast<double>(seqs / micro);
  const double used = static_cast<double>(seqs);
  Pass prefill{b, static_cast<double>(w.prompt_len), (w.prompt_len + 1) / 2.0, 0};
  const std::vector<double> pre = k.stages(tp, pp, prefill);
  const double prefill_s = sum(pre) + (micro - 1) * max_of(pre);
  const double context = w.prompt_len + w.output_len / 2.0;
  Pass decode{b, 1, context, context};
  const std::vector<double> dec = k.stages(tp, pp, decode);
  const double round = std::max(micro * max_of(dec), sum(dec));
  return used * w.output_len / (prefill_s + w.output_len * round);
}

}  // namespace

Result<InferenceCandidate> predict_inference(const DecoderConfig& c, const Cluster& cluster, int tp,
                                             int pp, const Workload& w) {
  ALPA_RETURN_IF_ERROR(check_split(c, cluster, tp, pp));
  ALPA_RETURN_IF_ERROR(check_workload(c, w));
  InferenceCandidate cand;
  cand.tp = tp;
  cand.pp = pp;
  cand.layers_per_stage = layers_of_stage(c, pp, 0);
  cand.memory_capacity = cluster.device.memory_bytes;
  const Split s = split_of(c, tp);
  const double bytes = static_cast<double>(dtype_bytes(w.dtype));
  // The stage short by most (or with the least room) is the one reported; the fewest
  // sequences any stage admits bound the batch.
  double worst_short = -std::numeric_limits<double>::infinity();
  int64_t min_sequences = std::numeric_limits<int64_t>::max();
  for (int i = 0; i < pp; ++i) {
    const StageMemory m = stage_memory(c, s, bytes, pp, i, w, cand.memory_capacity);
    const double needed =
        m.weights + m.workspace + w.batch * kv_bytes_per_sequence(c, s, bytes, pp, i, w);
    if (needed - cand.memory_capacity > worst_short) {
      worst_short = needed - cand.memory_capacity;
      cand.memory = m;
      cand.memory_needed = needed;
    }
    min_sequences = std::min(min_sequences, m.kv_sequences);
  }
  cand.fits = worst_short <= 0;
  if (!cand.fits) {
    const StageMemory& m = cand.memory;
    cand.why_not =
        cat("needs ", format_gb(cand.memory_needed), " GB per device (weights ",
            format_gb(m.weights), " + workspace ", format_gb(m.workspace), " + KV of ", w.batch,
            " sequence", w.batch == 1 ? "" : "s", " ",
            format_gb(cand.memory_needed - m.weights - m.workspace), "), has ",
            format_gb(cand.memory_capacity), " GB: short by ", format_gb(worst_short), " GB");
  }
  const Costing k{c, cluster, s, w.dtype, bytes};
  Pass prefill{static_cast<double>(w.batch), static_cast<double>(w.prompt_len),
               (w.prompt_len + 1) / 2.0, 0};
  cand.prefill_s = sum(k.stages(tp, pp, prefill));
  const double context = w.prompt_len + w.output_len / 2.0;
  Pass decode{static_cast<double>(w.batch), 1, context, context};
  cand.per_token_s = sum(k.stages(tp, pp, decode));
  cand.throughput_batch = cand.fits ? std::min(w.max_batch, min_sequences) : 0;
  if (cand.throughput_batch > 0)
    cand.tokens_per_s = throughput(k, tp, pp, cand.throughput_batch, w);
  cand.max_rate = cand.tokens_per_s / static_cast<double>(w.output_len);
  cand.sustains_rate = cand.fits && cand.max_rate >= w.rate;
  return cand;
}

namespace {

// Whether candidate a is better than b under the objective (both fit).
bool better(const InferenceCandidate& a, const InferenceCandidate& b, Objective objective) {
  auto less = [](double x, double y) { return x < y * (1 - 1e-9); };
  if (objective == Objective::kLatency) {
    if (less(a.per_token_s, b.per_token_s)) return true;
    if (less(b.per_token_s, a.per_token_s)) return false;
    return less(a.prefill_s, b.prefill_s);
  }
  if (less(b.tokens_per_s, a.tokens_per_s)) return true;
  if (less(a.tokens_per_s, b.tokens_per_s)) return false;
  return less(a.per_token_s, b.per_token_s);
}

std::string format_fixed_1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string ms(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  return buf;
}

// Why nothing fits: the weights against the devices' memory, and the closest split.
std::string none_fits_reason(const InferencePlan& plan) {
  const DecoderConfig& c = plan.config;
  const double bytes = static_cast<double>(dtype_bytes(plan.workload.dtype));
  const double weights = static_cast<double>(decoder_parameters(c)) * bytes;
  const double memory = plan.devices * plan.cluster.device.memory_bytes;
  const InferenceCandidate* closest = nullptr;
  for (const InferenceCandidate& cand : plan.candidates)
    if (!closest || cand.memory_needed - cand.memory_capacity <
                        closest->memory_needed - closest->memory_capacity)
      closest = &cand;
  std::string r = cat("no split fits: the ", format_fixed_1(decoder_parameters(c) / 1e9),
                      "B-parameter model's ", dtype_name(plan.workload.dtype), " weights are ",
                      format_gb(weights), " GB; ", plan.devices, " x ", plan.cluster.device.name,
                      " hold ", format_gb(memory), " GB");
  if (weights > memory)
    r += cat(" (", format_gb(weights - memory), " GB too few for the weights alone)");
  if (closest)
    r += cat("; the closest, tp ", closest->tp, " x pp ", closest->pp, ", ", closest->why_not);
  return r;
}

// The objective's choice among the candidates that fit (and sustain the rate), with the reason.
void choose(InferencePlan& plan) {
  const Workload& w = plan.workload;
  int fitting = 0, eligible = 0;
  const InferenceCandidate* fastest = nullptr;  // the most requests/s of those that fit
  for (size_t i = 0; i < plan.candidates.size(); ++i) {
    const InferenceCandidate& cand = plan.candidates[i];
    if (!cand.fits) continue;
    ++fitting;
    if (!fastest || cand.max_rate > fastest->max_rate) fastest = &cand;
    if (!cand.sustains_rate) continue;
    ++eligible;
    if (plan.chosen < 0 || better(cand, plan.candidates[plan.chosen], plan.objective))
      plan.chosen = static_cast<int>(i);
  }
  if (fitting == 0) {
    plan.reason = none_fits_reason(plan);
    return;
  }
  const std::string among = w.rate > 0 ? cat(" of the ", eligible, " splits that fit and sustain ",
                                             format_fixed_1(w.rate), " requests/s")
                                       : cat(" of the ", fitting, " splits that fit");
  if (plan.chosen < 0) {
    plan.reason =
        cat("no split sustains ", format_fixed_1(w.rate), " requests/s of ", w.output_len,
            " tokens: the most is ", format_fixed_1(fastest->max_rate), " (tp ", fastest->tp,
            " x pp ", fastest->pp, ", ", format_fixed_1(fastest->tokens_per_s), " tokens/s)");
    return;
  }
  const InferenceCandidate& best = plan.candidates[plan.chosen];
  plan.reason =
      plan.objective == Objective::kLatency
          ? cat("objective latency: the least time per output token (", ms(best.per_token_s),
                " at batch ", w.batch, ", first token after ", ms(best.prefill_s), ")", among)
          : cat("objective throughput: the most output tokens/s (",
                format_fixed_1(best.tokens_per_s), " at ", best.throughput_batch,
                " sequences in flight)", among);
}

}  // namespace

Result<InferencePlan> enumerate_inference(const DecoderConfig& config, const Cluster& cluster,
                                          int devices, Objective objective,
                                          const Workload& workload) {
  InferencePlan plan;
  plan.config = config;
  ALPA_ASSIGN_OR_RETURN(plan.cluster, with_devices(cluster, devices));
  ALPA_RETURN_IF_ERROR(check_workload(config, workload));
  plan.devices = devices;
  plan.objective = objective;
  plan.workload = workload;
  for (int tp = 1; tp <= devices; ++tp) {
    if (devices % tp != 0) continue;
    Result<InferenceCandidate> cand =
        predict_inference(config, plan.cluster, tp, devices / tp, workload);
    if (cand.ok()) {
      plan.candidates.push_back(*cand);
    } else {
      plan.skipped.push_back(cand.status().message());
    }
  }
  if (plan.candidates.empty()) {
    std::string why;
    for (const std::string& s : plan.skipped) why += (why.empty() ? "" : "; ") + s;
    return invalid_argument(
        cat("no tensor x pipeline split of ", devices, " devices can be formed: ", why),
        "use a device count whose tensor-parallel degrees divide the heads");
  }
  choose(plan);
  return plan;
}

namespace {
bool fits_any(const InferencePlan& plan) {
  for (const InferenceCandidate& c : plan.candidates)
    if (c.fits) return true;
  return false;
}
}  // namespace

Result<InferencePlan> plan_inference(const DecoderConfig& config, const Cluster& cluster,
                                     int devices, Objective objective, const Workload& workload) {
  ALPA_ASSIGN_OR_RETURN(InferencePlan plan,
                        enumerate_inference(config, cluster, devices, objective, workload));
  if (plan.chosen >= 0) return plan;
  // Suggest the smallest multiple of this cluster's hosts that holds the model.
  std::string hint = "use more devices or a cluster with more memory per device";
  if (fits_any(plan)) {
    // Copies of the fastest split, each serving its share of the requests (replicas are not
    // planned here: each copy is one plan of its own).
    const InferenceCandidate* fastest = &plan.candidates[0];
    for (const InferenceCandidate& c : plan.candidates)
      if (c.fits && (!fastest->fits || c.max_rate > fastest->max_rate)) fastest = &c;
    const int64_t copies = fastest->max_rate > 0
                               ? static_cast<int64_t>(std::ceil(workload.rate / fastest->max_rate))
                               : 0;
    if (copies > 0)
      hint =
          cat(copies, " copies of tp ", fastest->tp, " x pp ", fastest->pp, " (", copies * devices,
              " devices) sustain it; this planner splits one copy of the model");
  }
  const int per_host = cluster.devices_per_host;
  for (int n = std::max(devices, per_host) + per_host; n <= 64 * per_host; n += per_host) {
    Result<InferencePlan> more = enumerate_inference(config, cluster, n, objective, workload);
    if (more.ok() && more->chosen >= 0) {
      hint = cat(
          "--gpus ", n, " (", n / per_host, " hosts of ", cluster.name, ") ",
          !fits_any(plan) ? "holds it" : "sustains it",
          fits_any(plan) ? ", or faster devices" : ", or a cluster with more memory per device");
      break;
    }
  }
  return resource_exhausted(plan.reason, hint);
}

}  // namespace alpa::serve
