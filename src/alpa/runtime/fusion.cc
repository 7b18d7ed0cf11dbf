#include "alpa/runtime/fusion.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "alpa/runtime/kernel_util.h"
#include "alpa/runtime/scalar_ops.h"
#include "alpa/runtime/tensor.h"

namespace alpa {
namespace {

bool is_fusible(const Node& n) {
  return is_elementwise(n.op);
}

bool is_generator(const Node& n) {
  return n.op == OpKind::kBroadcast || n.op == OpKind::kIota ||
         (n.op == OpKind::kConstant && n.attr<ConstantAttrs>().values.size() == 1);
}

// Builds the program of one root by a depth-first walk over its operands.
class ProgramBuilder {
 public:
  ProgramBuilder(const Graph& g, const std::vector<std::vector<ValueId>>& users,
                 const std::vector<char>& is_output, std::vector<char>& inlined,
                 std::vector<char>& cut, std::vector<int>& sizes, ValueId root)
      : g_(g), users_(users), is_output_(is_output), inlined_(inlined), cut_(cut), sizes_(sizes) {
    prog_.root = root;
    prog_.shape = g.type(root).shape;
    contiguous_ = kernels::row_major_strides(prog_.shape);
  }

  // Builds the program; false when fusion would not save anything (plain kernel).
  bool build() {
    fit_budget();
    value(prog_.root, /*is_root=*/true);
    return fused_;
  }
  FusedProgram take() { return std::move(prog_); }

 private:
  int emit(FusedInst inst) {
    prog_.insts.push_back(inst);
    return static_cast<int>(prog_.insts.size()) - 1;
  }

  int load(ValueId v, std::vector<int64_t> strides) {
    auto key = std::make_pair(v, strides);
    auto it = loads_.find(key);
    if (it != loads_.end()) return it->second;
    FusedLoad l;
    l.value = v;
    l.contiguous = strides == contiguous_;
    l.strides = std::move(strides);
    prog_.loads.push_back(std::move(l));
    FusedInst inst;
    inst.kind = FusedInstKind::kLoad;
    inst.load = static_cast<int>(prog_.loads.size()) - 1;
    return loads_[key] = emit(inst);
  }

  bool room() const { return static_cast<int>(prog_.insts.size()) + 5 < kMaxFusedInsts; }

  bool can_inline(ValueId v) const {
    const Node& n = g_.node(v);
    if (cut_[v] || !is_fusible(n) || is_output_[v] || users_[v].size() != 1) return false;
    const Node& user = g_.node(users_[v][0]);
    return is_fusible(user) && user.type.shape == n.type.shape;
  }

  // Instructions of v's program if everything inlinable below it is inlined: one per inlined
  // node and one per other operand of each node (a load or generator; an upper bound, since
  // equal loads are shared; an operand used twice by one node, mul(p, p), counts once).
  // Inlinable nodes form trees (each has one user), so sizes are summed over children and
  // memoised in sizes_ for the whole fusion pass (-1: not known); a cut changes the sizes of
  // its ancestors only, which fit_budget forgets. Iterative: chains may be 100k nodes long.
  int subtree_size(ValueId v) {
    if (sizes_[v] >= 0) return sizes_[v];
    std::vector<std::pair<ValueId, bool>> stack = {{v, false}};
    while (!stack.empty()) {
      const auto [at, expanded] = stack.back();
      stack.pop_back();
      if (sizes_[at] >= 0) continue;
      const std::vector<ValueId>& ops = g_.node(at).operands;
      if (!expanded) {
        stack.push_back({at, true});
        for (ValueId o : ops)
          if (can_inline(o) && sizes_[o] < 0) stack.push_back({o, false});
        continue;
      }
      int size = 1;
      for (size_t i = 0; i < ops.size(); ++i) {
        if (std::find(ops.begin(), ops.begin() + static_cast<std::ptrdiff_t>(i), ops[i]) !=
            ops.begin() + static_cast<std::ptrdiff_t>(i))
          continue;
        size += can_inline(ops[i]) ? sizes_[ops[i]] : 1;
      }
      sizes_[at] = size;
    }
    return sizes_[v];
  }

  // Cuts inlinable subtrees until the root's program fits kMaxFusedInsts: each cut is the
  // deepest node on the path of largest subtrees whose removal is enough, so as much as
  // possible stays fused and a long chain is split into few programs, not many. A cut node is
  // materialised and becomes the root of its own program.
  void fit_budget() {
    for (int total = subtree_size(prog_.root); total > kMaxFusedInsts;
         total = subtree_size(prog_.root)) {
      const int excess = total - kMaxFusedInsts;
      ValueId at = prog_.root, pick = kNoValue;
      std::vector<ValueId> path = {at};
      for (;;) {
        ValueId next = kNoValue;
        int best = 0;
        for (ValueId o : g_.node(at).operands) {
          if (!can_inline(o)) continue;
          const int s = subtree_size(o);
          if (s > best) best = s, next = o;
        }
        if (next == kNoValue || best - 1 < excess) break;
        pick = next;
        at = next;
        path.push_back(at);
      }
      if (pick == kNoValue) break;  // cannot happen: the root's largest child always suffices
      cut_[pick] = 1;
      path.pop_back();  // the cut node's own tree is unchanged
      for (ValueId a : path) sizes_[a] = -1;
    }
  }

  int generator(ValueId v) {
    const Node& n = g_.node(v);
    FusedInst inst;
    if (n.op == OpKind::kConstant) {
      inst.kind = FusedInstKind::kSplat;
      inst.value =
          round_to_dtype(static_cast<float>(n.attr<ConstantAttrs>().values[0]), n.type.dtype);
      return emit(inst);
    }
    if (n.op == OpKind::kIota) {
      inst.kind = FusedInstKind::kIota;
      inst.iota_dim = n.attr<IotaAttrs>().dim;
      return emit(inst);
    }
    // Broadcast: read the source with stride 0 on new and expanded dims.
    const ValueId src = n.operands[0];
    const Shape& in = g_.type(src).shape;
    const auto& dims = n.attr<BroadcastAttrs>().dims;
    const std::vector<int64_t> in_strides = kernels::row_major_strides(in);
    std::vector<int64_t> strides(prog_.shape.size(), 0);
    for (size_t i = 0; i < dims.size(); ++i)
      if (in[i] != 1) strides[dims[i]] = in_strides[i];
    const Node& s = g_.node(src);
    if (s.op == OpKind::kConstant && s.attr<ConstantAttrs>().values.size() == 1) {
      inst.kind = FusedInstKind::kSplat;
      inst.value =
          round_to_dtype(static_cast<float>(s.attr<ConstantAttrs>().values[0]), s.type.dtype);
      return emit(inst);
    }
    return load(src, std::move(strides));
  }

  int value(ValueId v, bool is_root) {
    auto it = reg_.find(v);
    if (it != reg_.end()) return it->second;
    const Node& n = g_.node(v);
    int r;
    if (!is_root) {
      if (room() && can_inline(v)) {
        inlined_[v] = 1;
        fused_ = true;
        r = op(v);
      } else if (room() && is_generator(n) && n.type.shape == prog_.shape) {
        fused_ = true;
        r = generator(v);
      } else {
        r = load(v, contiguous_);
      }
    } else {
      r = op(v);
    }
    reg_[v] = r;
    return r;
  }

  int op(ValueId v) {
    const Node n = g_.node(v);
    prog_.members.push_back(v);
    std::vector<int> in;
    for (ValueId o : n.operands) in.push_back(value(o, false));
    FusedInst inst;
    inst.op = n.op;
    switch (op_info(n.op).family) {
      case OpFamily::kUnary:
        if (n.op == OpKind::kConvert) {
          inst.kind = FusedInstKind::kConvert;
          inst.from = g_.type(n.operands[0]).dtype;
          inst.to = n.type.dtype;
        } else {
          inst.kind = FusedInstKind::kUnary;
        }
        inst.a = in[0];
        break;
      case OpFamily::kBinary:
        if (n.op == OpKind::kCompare) {
          inst.kind = FusedInstKind::kCompare;
          inst.dir = n.attr<CompareAttrs>().dir;
        } else {
          inst.kind = FusedInstKind::kBinary;
        }
        inst.a = in[0];
        inst.b = in[1];
        break;
      case OpFamily::kSelect:
        inst.kind = FusedInstKind::kSelect;
        inst.a = in[0];
        inst.b = in[1];
        inst.c = in[2];
        break;
      default: ALPA_UNREACHABLE() << op_name(n.op);
    }
    return emit(inst);
  }

  const Graph& g_;
  const std::vector<std::vector<ValueId>>& users_;
  const std::vector<char>& is_output_;
  std::vector<char>& inlined_;
  std::vector<char>& cut_;
  std::vector<int>& sizes_;
  FusedProgram prog_;
  std::vector<int64_t> contiguous_;
  std::unordered_map<ValueId, int> reg_;
  std::map<std::pair<ValueId, std::vector<int64_t>>, int> loads_;
  bool fused_ = false;
};

}  // namespace

FusionPlan plan_fusion(const Graph& g) {
  const int32_t n = g.size();
  FusionPlan plan;
  plan.program_of.assign(static_cast<size_t>(n), -1);
  plan.skipped.assign(static_cast<size_t>(n), 0);
  const std::vector<std::vector<ValueId>> users = compute_users(g);
  std::vector<char> is_output(static_cast<size_t>(n), 0);
  for (const GraphOutput& o : g.outputs()) is_output[o.value] = 1;
  std::vector<char> inlined(static_cast<size_t>(n), 0);
  std::vector<char> cut(static_cast<size_t>(n), 0);
  std::vector<int> sizes(static_cast<size_t>(n), -1);

  // Roots, from the last node back: a node is inlined only into its single user, which comes
  // later, so its fate is known when the walk reaches it.
  for (ValueId v = n - 1; v >= 0; --v) {
    if (inlined[v] || !is_fusible(g.node(v))) continue;
    ProgramBuilder b(g, users, is_output, inlined, cut, sizes, v);
    if (b.build()) {
      plan.program_of[v] = static_cast<int>(plan.programs.size());
      plan.programs.push_back(b.take());
    }
  }

  // What must be materialised: outputs, operands of plain kernels, loads of programs.
  // Generators nobody needs materialised are skipped, as are inlined nodes.
  std::vector<char> needed = is_output;
  for (ValueId v = n - 1; v >= 0; --v) {
    const Node& node = g.node(v);
    if (inlined[v] || (is_generator(node) && !needed[v])) {
      plan.skipped[v] = 1;
      continue;
    }
    if (plan.program_of[v] >= 0) {
      for (const FusedLoad& l : plan.programs[plan.program_of[v]].loads) needed[l.value] = 1;
    } else {
      for (ValueId o : node.operands) needed[o] = 1;
    }
  }
  return plan;
}

namespace {

constexpr int64_t kBlock = 1024;

// Multi-index of flat index `i` in `shape`.
void unflatten(int64_t i, const Shape& shape, std::vector<int64_t>& idx) {
  for (size_t d = shape.size(); d-- > 0;) {
    idx[d] = shape[d] == 0 ? 0 : i % shape[d];
    i = shape[d] == 0 ? 0 : i / shape[d];
  }
}

// Walks `count` elements from multi-index `idx` in runs along the last dim, calling
// run(j, run_length, idx) for each; idx is advanced past the elements.
template <typename F>
void for_each_run(const Shape& shape, std::vector<int64_t>& idx, int64_t count, F run) {
  const size_t r = shape.size();
  if (r == 0) {
    run(0, count);
    return;
  }
  int64_t j = 0;
  while (j < count) {
    const int64_t len = std::min(shape[r - 1] - idx[r - 1], count - j);
    run(j, len);
    j += len;
    idx[r - 1] += len;
    for (size_t d = r - 1; d > 0 && idx[d] >= shape[d]; --d) {
      idx[d] = 0;
      ++idx[d - 1];
    }
  }
}

void gather_block(const FusedLoad& l, const float* data, const Shape& shape, int64_t i0,
                  int64_t count, std::vector<int64_t>& idx, float* dst) {
  unflatten(i0, shape, idx);
  const size_t r = shape.size();
  const int64_t inner = r == 0 ? 0 : l.strides[r - 1];
  for_each_run(shape, idx, count, [&](int64_t j, int64_t len) {
    int64_t base = 0;
    for (size_t d = 0; d < r; ++d) base += idx[d] * l.strides[d];
    const float* src = data + base;
    if (inner == 1) {
      std::memcpy(dst + j, src, static_cast<size_t>(len) * sizeof(float));
    } else if (inner == 0) {
      const float v = *src;
      for (int64_t t = 0; t < len; ++t) dst[j + t] = v;
    } else {
      for (int64_t t = 0; t < len; ++t) dst[j + t] = src[t * inner];
    }
  });
}

void iota_block(int64_t dim, const Shape& shape, int64_t i0, int64_t count,
                std::vector<int64_t>& idx, float* dst) {
  unflatten(i0, shape, idx);
  const bool last = dim == static_cast<int64_t>(shape.size()) - 1;
  for_each_run(shape, idx, count, [&](int64_t j, int64_t len) {
    const float v = static_cast<float>(idx[dim]);
    if (last) {
      for (int64_t t = 0; t < len; ++t) dst[j + t] = v + static_cast<float>(t);
    } else {
      for (int64_t t = 0; t < len; ++t) dst[j + t] = v;
    }
  });
}

template <typename F>
inline void map1(const float* a, float* y, int64_t n, F f) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) y[i] = f(a[i]);
}

template <typename F>
inline void map2(const float* a, const float* b, float* y, int64_t n, F f) {
#pragma GCC ivdep
  for (int64_t i = 0; i < n; ++i) y[i] = f(a[i], b[i]);
}

void unary(OpKind op, const float* a, float* y, int64_t n) {
  scalar::with_unary(op, [&](auto k) {
    map1(a, y, n, [](float v) { return scalar::unary<decltype(k)::value>(v); });
  });
}

void binary(OpKind op, const float* a, const float* b, float* y, int64_t n) {
  scalar::with_binary(op, [&](auto k) {
    map2(a, b, y, n, [](float u, float v) { return scalar::binary<decltype(k)::value>(u, v); });
  });
}

void compare(CompareDir dir, const float* a, const float* b, float* y, int64_t n) {
  scalar::with_compare(dir, [&](auto d) {
    map2(a, b, y, n, [](float u, float v) { return scalar::compare<decltype(d)::value>(u, v); });
  });
}

void convert(DType from, DType to, const float* a, float* y, int64_t n) {
  if (scalar::convert_is_exact(from, to)) {
    if (a != y) std::memmove(y, a, static_cast<size_t>(n) * sizeof(float));
    return;
  }
  scalar::with_convert(to, [&](auto t) {
    map1(a, y, n, [](float v) { return scalar::convert<decltype(t)::value>(v); });
  });
}

}  // namespace

void run_fused(const KernelContext& ctx, const FusedProgram& p,
               std::span<const Tensor* const> inputs, float* out) {
  const int64_t total = num_elements(p.shape);
  if (total == 0) return;
  const int num = static_cast<int>(p.insts.size());
  const int64_t blocks = (total + kBlock - 1) / kBlock;
  // About 16K elements per chunk keeps small programs on one thread.
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 14) / kBlock);
  ctx.threads->parallel_for(blocks, grain, [&](int64_t b0, int64_t b1) {
    std::vector<float> scratch(static_cast<size_t>(num * kBlock));
    std::vector<const float*> reg(static_cast<size_t>(num));
    std::vector<int64_t> idx(p.shape.size());
    for (int k = 0; k < num; ++k) {
      if (p.insts[k].kind == FusedInstKind::kSplat) {
        float* s = scratch.data() + k * kBlock;
        std::fill(s, s + kBlock, p.insts[k].value);
      }
    }
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t i0 = blk * kBlock;
      const int64_t count = std::min(kBlock, total - i0);
      for (int k = 0; k < num; ++k) {
        const FusedInst& in = p.insts[k];
        float* dst = k == num - 1 ? out + i0 : scratch.data() + k * kBlock;
        switch (in.kind) {
          case FusedInstKind::kLoad: {
            const FusedLoad& l = p.loads[in.load];
            const float* data = inputs[in.load]->data();
            if (l.contiguous) {
              reg[k] = data + i0;
              continue;
            }
            gather_block(l, data, p.shape, i0, count, idx, dst);
            break;
          }
          case FusedInstKind::kSplat: reg[k] = scratch.data() + k * kBlock; continue;
          case FusedInstKind::kIota: iota_block(in.iota_dim, p.shape, i0, count, idx, dst); break;
          case FusedInstKind::kUnary: unary(in.op, reg[in.a], dst, count); break;
          case FusedInstKind::kBinary: binary(in.op, reg[in.a], reg[in.b], dst, count); break;
          case FusedInstKind::kCompare: compare(in.dir, reg[in.a], reg[in.b], dst, count); break;
          case FusedInstKind::kSelect: {
            const float *pr = reg[in.a], *t = reg[in.b], *f = reg[in.c];
#pragma GCC ivdep
            for (int64_t i = 0; i < count; ++i) {
              const float tv = t[i], fv = f[i];
              dst[i] = scalar::select(pr[i], tv, fv);
            }
            break;
          }
          case FusedInstKind::kConvert: convert(in.from, in.to, reg[in.a], dst, count); break;
        }
        reg[k] = dst;
      }
    }
  });
}

}  // namespace alpa
