#include "alpa/plan/manual.h"

#include <cctype>

namespace alpa {
namespace {

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The layer index in names like "l3.w" or "c2.b" (prefix letter + digits + '.'), or -1.
int layer_index(const std::string& name, char prefix) {
  if (name.size() < 3 || name[0] != prefix || !std::isdigit(static_cast<unsigned char>(name[1])))
    return -1;
  size_t i = 1;
  int v = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])))
    v = v * 10 + (name[i++] - '0');
  return i < name.size() && name[i] == '.' ? v : -1;
}

enum class Split { kNone, kDim0, kDim1, kReplicated };

// How a Megatron-style plan splits a weight, from its name; kNone: no rule (left to the ILP).
Split megatron_split(const Graph& g, const std::string& name) {
  for (std::string_view s : {".attn.wq", ".attn.wk", ".attn.wv", ".mlp.w1"})
    if (ends_with(name, s)) return Split::kDim1;  // columns of (in, out)
  for (std::string_view s : {".attn.bq", ".attn.bk", ".attn.bv", ".mlp.b1"})
    if (ends_with(name, s)) return Split::kDim0;
  for (std::string_view s : {".attn.wo", ".mlp.w2"})
    if (ends_with(name, s)) return Split::kDim0;  // rows
  for (std::string_view s : {".attn.bo", ".mlp.b2"})
    if (ends_with(name, s)) return Split::kReplicated;
  // MLP (l<i>.w (in, out)) and ConvNet (c<i>.w (O, I, kh, kw)): alternate columns and rows.
  int l = layer_index(name, 'l');
  if (l >= 0) {
    if (ends_with(name, ".w")) return l % 2 == 0 ? Split::kDim1 : Split::kDim0;
    if (ends_with(name, ".b")) return l % 2 == 0 ? Split::kDim0 : Split::kReplicated;
  }
  l = layer_index(name, 'c');
  if (l >= 0) {
    if (ends_with(name, ".w")) return l % 2 == 0 ? Split::kDim0 : Split::kDim1;
    if (ends_with(name, ".b")) return l % 2 == 0 ? Split::kDim0 : Split::kReplicated;
  }
  if (name == "out.w" || name == "out.b") {
    // Continues the alternation after the last hidden layer.
    int hidden = 0;
    for (ValueId p : g.parameters(ParamRole::kWeight)) {
      const std::string& n = g.node(p).name;
      if (ends_with(n, ".w") && (layer_index(n, 'l') >= 0 || layer_index(n, 'c') >= 0)) ++hidden;
    }
    const bool columns = hidden % 2 == 0;  // the previous layer split rows (or there is none)
    if (name == "out.w") return columns ? Split::kDim1 : Split::kDim0;
    return columns ? Split::kDim0 : Split::kReplicated;
  }
  return Split::kNone;
}

}  // namespace

std::string_view manual_plan_name(ManualPlanKind k) {
  switch (k) {
    case ManualPlanKind::kDataParallel: return "data-parallel";
    case ManualPlanKind::kZero: return "zero";
    case ManualPlanKind::kZero3: return "zero3";
    case ManualPlanKind::kTensorParallel: return "tensor-parallel";
    case ManualPlanKind::kTwoD: return "2d";
  }
  return "?";
}

std::vector<std::string> manual_plan_names() {
  return {"data-parallel", "zero", "zero3", "tensor-parallel", "2d"};
}

Result<ManualPlanKind> parse_manual_plan(std::string_view name) {
  for (ManualPlanKind k :
       {ManualPlanKind::kDataParallel, ManualPlanKind::kZero, ManualPlanKind::kZero3,
        ManualPlanKind::kTensorParallel, ManualPlanKind::kTwoD})
    if (manual_plan_name(k) == name) return k;
  return invalid_argument(
      cat("unknown plan '", name, "'"),
      "plans: auto, data-parallel, zero, zero3, tensor-parallel, 2d, or a plan.json "
      "file");
}

Result<AutoShardingOptions> manual_plan(const Graph& g, const MeshShape& mesh, ManualPlanKind kind,
                                        bool expert_parallel) {
  uint8_t all = 0;
  if (mesh[0] > 1) all |= kAxis0;
  if (mesh[1] > 1) all |= kAxis1;
  uint8_t data = 0, model = 0;
  switch (kind) {
    case ManualPlanKind::kDataParallel:
    case ManualPlanKind::kZero:
    case ManualPlanKind::kZero3: data = all; break;
    case ManualPlanKind::kTensorParallel: model = all; break;
    case ManualPlanKind::kTwoD:
      if (mesh[0] == 1 || mesh[1] == 1)
        return invalid_argument(cat("the 2d plan needs a 2-D mesh, got ", mesh[0], "x", mesh[1]),
                                "use data-parallel or tensor-parallel on a 1-D mesh");
      data = kAxis0;
      model = kAxis1;
      break;
  }
  AutoShardingOptions o;
  o.sharding.force_batch_dim_to_mesh_dim = -1;
  o.sharding.allow_mixed_mesh_shape = data == kBothAxes || model == kBothAxes;
  o.sharding.prefer_reduce_scatter =
      kind == ManualPlanKind::kZero || kind == ManualPlanKind::kZero3;
  auto fix = [&](ValueId v, const ShardingSpec& s) {
    if (s.validate(g.type(v).shape, mesh).ok()) o.fixed[value_ref(g, v)] = s;
  };
  for (ValueId v : g.parameters(ParamRole::kInput)) {
    ShardingSpec s = ShardingSpec::replicated(g.type(v).rank());
    if (s.rank() > 0) s.dims[0] = data;
    fix(v, s);
  }
  for (ValueId v : g.parameters(ParamRole::kWeight)) {
    const std::string& name = g.node(v).name;
    const int64_t rank = g.type(v).rank();
    ShardingSpec s = ShardingSpec::replicated(rank);
    const bool expert = expert_parallel && data != 0 && rank == 3 &&
                        (ends_with(name, ".wi") || ends_with(name, ".wo"));
    if (expert) {
      s.dims[0] = data;
      if (!s.validate(g.type(v).shape, mesh).ok()) s = ShardingSpec::replicated(rank);
    } else if (kind == ManualPlanKind::kZero3) {
      // The largest dimension the data devices divide.
      int best = -1;
      for (int d = 0; d < rank; ++d) {
        ShardingSpec t = ShardingSpec::replicated(rank);
        t.dims[static_cast<size_t>(d)] = data;
        if (t.validate(g.type(v).shape, mesh).ok() &&
            (best < 0 ||
             g.type(v).shape[static_cast<size_t>(d)] > g.type(v).shape[static_cast<size_t>(best)]))
          best = d;
      }
      if (best >= 0) s.dims[static_cast<size_t>(best)] = data;
    } else if (model != 0) {
      const Split split = megatron_split(g, name);
      if (split == Split::kNone) continue;
      if (split == Split::kDim0 && rank >= 1) s.dims[0] = model;
      if (split == Split::kDim1 && rank >= 2) s.dims[1] = model;
    }
    fix(v, s);
    if (kind == ManualPlanKind::kZero && !expert)
      continue;  // state: split by prefer_reduce_scatter
    for (const char* suffix : {".adam_m", ".adam_v", ".momentum"}) {
      const ValueId st = g.find(name + suffix);
      if (st != kNoValue) fix(st, s);
    }
  }
  return o;
}

}  // namespace alpa
