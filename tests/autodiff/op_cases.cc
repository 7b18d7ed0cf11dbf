// The op test table (see op_cases.h). One function per op family; each case is a few lines.
#include "autodiff/op_cases.h"

#include <cmath>

#include "alpa/ir/builder.h"
#include "alpa/support/rng.h"

namespace alpa {
namespace {

TensorType f32(Shape s) {
  return {DType::kF32, std::move(s)};
}
TensorType i32(Shape s) {
  return {DType::kI32, std::move(s)};
}

double to_f32(double x) {
  return static_cast<double>(static_cast<float>(x));
}

// Builds one case: parameters are declared through it so their values line up with
// g.parameters(); finish() adds the "result" and "loss" outputs.
class CaseBuilder {
 public:
  CaseBuilder(std::string name, OpKind op, uint64_t seed)
      : name_(std::move(name)), op_(op), rng_(seed) {}

  Builder& b() { return b_; }
  Rng& rng() { return rng_; }

  std::vector<double> uniform(int64_t n, double lo, double hi) {
    std::vector<double> v(static_cast<size_t>(n));
    for (double& e : v) e = to_f32(lo + (hi - lo) * rng_.uniform());
    return v;
  }

  // A trained f32 parameter with values uniform in [lo, hi).
  Value weight(const std::string& name, Shape shape, double lo = -1.0, double hi = 1.0) {
    const int64_t n = num_elements(shape);
    return weight_values(name, std::move(shape), uniform(n, lo, hi));
  }
  Value weight_values(const std::string& name, Shape shape, std::vector<double> values) {
    return param(name, f32(std::move(shape)), ParamRole::kWeight, std::move(values));
  }
  // A data input of any dtype with the given values (not differentiated).
  Value input(const std::string& name, TensorType type, std::vector<double> values) {
    return param(name, std::move(type), ParamRole::kInput, std::move(values));
  }
  Value input_uniform(const std::string& name, Shape shape, double lo, double hi) {
    const int64_t n = num_elements(shape);
    return input(name, f32(std::move(shape)), uniform(n, lo, hi));
  }
  // i32 indices uniform in [0, bound), or the given values.
  Value indices(const std::string& name, Shape shape, int64_t bound) {
    std::vector<double> v(static_cast<size_t>(num_elements(shape)));
    for (double& e : v) e = static_cast<double>(rng_.below(static_cast<uint64_t>(bound)));
    return input(name, i32(std::move(shape)), std::move(v));
  }

  OpCase finish(Value result, bool check_gradient = true) {
    OpCase c;
    c.name = name_;
    c.op = op_;
    c.check_gradient = check_gradient;
    if (b_.ok()) {
      b_.output("result", result);
      const TensorType t = b_.type(result);
      if (is_float(t.dtype)) {
        Value r = b_.constant(uniform(t.num_elements(), -1.0, 1.0), t);
        Value prod = b_.mul(result, r);
        std::vector<int64_t> all;
        for (int64_t d = 0; d < t.rank(); ++d) all.push_back(d);
        b_.output("loss", all.empty() ? prod : b_.reduce_sum(prod, all));
      } else {
        c.check_gradient = false;
      }
    }
    Result<Graph> g = b_.finish();
    if (!g.ok()) {
      c.status = g.status().with_context("building case " + name_);
      return c;
    }
    c.graph = std::move(g).value();
    c.params = std::move(values_);
    return c;
  }

 private:
  Value param(const std::string& name, TensorType type, ParamRole role,
              std::vector<double> values) {
    Value v = b_.parameter(name, std::move(type), role);
    values_.push_back(std::move(values));
    return v;
  }

  std::string name_;
  OpKind op_;
  Rng rng_;
  Builder b_;
  std::vector<std::vector<double>> values_;
};

uint64_t seed_of(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a: each case has its own fixed stream
  for (char ch : name) h = (h ^ static_cast<unsigned char>(ch)) * 1099511628211ull;
  return h;
}

// Adds a case built by `body(cb) -> result`.
template <typename F>
void add(std::vector<OpCase>& cases, const std::string& name, OpKind op, F body,
         bool check_gradient = true) {
  CaseBuilder cb(name, op, seed_of(name));
  Value result = body(cb);
  cases.push_back(cb.finish(result, check_gradient));
}

// ---- sources ------------------------------------------------------------------------------

void source_cases(std::vector<OpCase>& cs) {
  add(cs, "parameter.identity", OpKind::kParameter, [](CaseBuilder& c) {
    return c.weight("w", {2, 3});
  });
  add(cs, "constant.splat", OpKind::kConstant, [](CaseBuilder& c) {
    Value w = c.weight("w", {2, 3});
    return c.b().mul(w, c.b().constant(0.75, f32({2, 3})));
  });
  add(cs, "constant.values", OpKind::kConstant, [](CaseBuilder& c) {
    Value w = c.weight("w", {2, 3});
    return c.b().add(c.b().mul(w, w), c.b().constant({1, -2, 3, 0.5, -0.25, 4}, f32({2, 3})));
  });
  add(cs, "iota.f32_dim1", OpKind::kIota, [](CaseBuilder& c) {
    Value w = c.weight("w", {3, 4});
    return c.b().mul(w, c.b().iota(f32({3, 4}), 1));
  });
  add(cs, "iota.i32_dim0", OpKind::kIota, [](CaseBuilder& c) {
    Value w = c.weight("w", {3, 4});
    return c.b().mul(w, c.b().convert(c.b().iota(i32({3, 4}), 0), DType::kF32));
  });
}

// ---- elementwise --------------------------------------------------------------------------

void unary_cases(std::vector<OpCase>& cs) {
  struct U {
    const char* name;
    OpKind op;
    double lo, hi;
  };
  const U unary[] = {{"neg", OpKind::kNeg, -2, 2},    {"exp", OpKind::kExp, -1.5, 1.5},
                     {"log", OpKind::kLog, 0.5, 3},   {"tanh", OpKind::kTanh, -2, 2},
                     {"sqrt", OpKind::kSqrt, 0.5, 3}, {"rsqrt", OpKind::kRsqrt, 0.5, 3},
                     {"erf", OpKind::kErf, -1.5, 1.5}};
  for (const U& u : unary) {
    add(cs, std::string(u.name) + ".matrix", u.op, [&](CaseBuilder& c) {
      Value w = c.weight("w", {3, 4}, u.lo, u.hi);
      return c.b().emit(u.op, {&w, 1}, NoAttrs{}, nullptr);
    });
  }
  // Forward only: finite differences see through stop_gradient by design; its gradient
  // (none) is checked in backward_test.cc.
  add(
      cs, "stop_gradient.matrix", OpKind::kStopGradient,
      [](CaseBuilder& c) {
        Value w = c.weight("w", {3, 4}, -2, 2);
        return c.b().mul(w, c.b().stop_gradient(c.b().exp(w)));
      },
      /*check_gradient=*/false);
  add(cs, "convert.f32_f16_f32", OpKind::kConvert, [](CaseBuilder& c) {
    Value w = c.weight("w", {3, 4}, -4, 4);
    return c.b().convert(c.b().convert(w, DType::kF16), DType::kF32);
  });
  add(cs, "convert.f32_bf16_f32", OpKind::kConvert, [](CaseBuilder& c) {
    Value w = c.weight("w", {3, 4}, -4, 4);
    return c.b().convert(c.b().convert(w, DType::kBF16), DType::kF32);
  });
  add(cs, "convert.f32_f16_bf16_f32", OpKind::kConvert, [](CaseBuilder& c) {
    Value w = c.weight("w", {2, 5}, -100, 100);
    Value h = c.b().convert(w, DType::kF16);
    return c.b().convert(c.b().convert(h, DType::kBF16), DType::kF32);
  });
  add(cs, "convert.f32_i32_f32", OpKind::kConvert, [](CaseBuilder& c) {
    // Values k + [0.1, 0.9): far from the integers where truncation jumps. Gradient: zero.
    std::vector<double> v;
    for (int i = 0; i < 8; ++i) v.push_back(to_f32(i - 4 + 0.1 + 0.8 * c.rng().uniform()));
    Value w = c.weight_values("w", {2, 4}, v);
    Value t = c.b().convert(c.b().convert(w, DType::kI32), DType::kF32);
    return c.b().add(t, c.b().scale(w, 0.5));  // the 0.5 * w path keeps a nonzero gradient
  });
  add(
      cs, "convert.f32_to_pred", OpKind::kConvert,
      [](CaseBuilder& c) {
        Value x = c.input("x", f32({6}), {0.0, 1.5, -2.0, 0.0, 1e-3, -0.0});
        return c.b().convert(x, DType::kPred);
      },
      false);
  add(
      cs, "convert.f32_to_i32", OpKind::kConvert,
      [](CaseBuilder& c) {
        Value x = c.input("x", f32({6}), {-2.75, -1.0, -0.5, 0.5, 2.999, 7.0});
        return c.b().convert(x, DType::kI32);
      },
      false);
  add(cs, "convert.i32_to_f32", OpKind::kConvert, [](CaseBuilder& c) {
    Value i = c.indices("i", {2, 3}, 10);
    Value w = c.weight("w", {2, 3});
    return c.b().mul(w, c.b().convert(i, DType::kF32));
  });
}

void binary_cases(std::vector<OpCase>& cs) {
  struct B {
    const char* name;
    OpKind op;
  };
  for (const B& op : {B{"add", OpKind::kAdd}, B{"sub", OpKind::kSub}, B{"mul", OpKind::kMul}}) {
    add(cs, std::string(op.name) + ".matrix", op.op, [&](CaseBuilder& c) {
      Value a = c.weight("a", {3, 4}), b = c.weight("b", {3, 4});
      const Value ops[] = {a, b};
      return c.b().emit(op.op, ops, NoAttrs{}, nullptr);
    });
  }
  add(cs, "mul.same_operand", OpKind::kMul, [](CaseBuilder& c) {
    Value a = c.weight("a", {5});
    return c.b().mul(a, a);
  });
  add(cs, "div.matrix", OpKind::kDiv, [](CaseBuilder& c) {
    Value a = c.weight("a", {3, 4});
    std::vector<double> d = c.uniform(12, 0.5, 2.0);
    for (size_t i = 0; i < d.size(); i += 2) d[i] = -d[i];  // both signs, away from zero
    Value b = c.weight_values("b", {3, 4}, d);
    return c.b().div(a, b);
  });
  // max/min: b differs from a by at least 0.1 in a random direction (no ties).
  for (const B& op : {B{"max", OpKind::kMax}, B{"min", OpKind::kMin}}) {
    add(cs, std::string(op.name) + ".matrix", op.op, [&](CaseBuilder& c) {
      std::vector<double> av = c.uniform(12, -1, 1), bv(12);
      for (size_t i = 0; i < 12; ++i) {
        const double gap = 0.1 + 0.5 * c.rng().uniform();
        bv[i] = to_f32(av[i] + (c.rng().uniform() < 0.5 ? gap : -gap));
      }
      Value a = c.weight_values("a", {3, 4}, av), b = c.weight_values("b", {3, 4}, bv);
      const Value ops[] = {a, b};
      return c.b().emit(op.op, ops, NoAttrs{}, nullptr);
    });
  }
  add(cs, "pow.matrix", OpKind::kPow, [](CaseBuilder& c) {
    Value x = c.weight("x", {3, 4}, 0.5, 2.0);
    Value p = c.weight("p", {3, 4}, -1.5, 2.5);
    return c.b().pow(x, p);
  });
  add(cs, "pow.constant_exponent", OpKind::kPow, [](CaseBuilder& c) {
    Value x = c.weight("x", {6}, 0.5, 2.0);
    return c.b().pow(x, c.b().constant(3.0, f32({6})));
  });
  // compare: inputs from {0, 1, 2} so that every direction meets ties.
  const std::pair<const char*, CompareDir> dirs[] = {
      {"eq", CompareDir::kEq}, {"ne", CompareDir::kNe}, {"lt", CompareDir::kLt},
      {"le", CompareDir::kLe}, {"gt", CompareDir::kGt}, {"ge", CompareDir::kGe}};
  for (const auto& [dir_name, dir] : dirs) {
    add(
        cs, std::string("compare.") + dir_name, OpKind::kCompare,
        [&](CaseBuilder& c) {
          Value a = c.input("a", f32({9}), {0, 0, 0, 1, 1, 1, 2, 2, 2});
          Value b = c.input("b", f32({9}), {0, 1, 2, 0, 1, 2, 0, 1, 2});
          return c.b().compare(a, b, dir);
        },
        false);
  }
  add(
      cs, "compare.i32", OpKind::kCompare,
      [](CaseBuilder& c) {
        Value a = c.indices("a", {8}, 3), b = c.indices("b", {8}, 3);
        return c.b().compare(a, b, CompareDir::kLe);
      },
      false);
  add(cs, "select.from_compare", OpKind::kSelect, [](CaseBuilder& c) {
    Value x = c.input_uniform("x", {3, 4}, -1, 1), y = c.input_uniform("y", {3, 4}, -1, 1);
    Value t = c.weight("t", {3, 4}), f = c.weight("f", {3, 4});
    return c.b().select(c.b().compare(x, y, CompareDir::kLt), t, f);
  });
  add(cs, "select.pred_input_same_branch", OpKind::kSelect, [](CaseBuilder& c) {
    Value p = c.input("p", {DType::kPred, {6}}, {1, 0, 0, 1, 1, 0});
    Value w = c.weight("w", {6});
    return c.b().select(p, w, c.b().mul(w, w));  // w reaches both branches
  });
}

// ---- movement -----------------------------------------------------------------------------

void movement_cases(std::vector<OpCase>& cs) {
  struct Bc {
    const char* name;
    Shape in, out;
    std::vector<int64_t> dims;
  };
  const Bc bcs[] = {
      {"row", {3}, {2, 3}, {1}},
      {"column", {2}, {2, 3}, {0}},
      {"size1_expand", {3, 1}, {3, 4}, {0, 1}},
      {"scalar", {}, {2, 3}, {}},
      {"size1_expand_and_new_dim", {2, 1}, {2, 4, 3}, {0, 1}},
      {"size1_kept", {1, 3}, {1, 2, 3}, {0, 2}},
      {"all_size1", {1, 1}, {2, 3, 4}, {0, 2}},
  };
  for (const Bc& bc : bcs) {
    add(cs, std::string("broadcast.") + bc.name, OpKind::kBroadcast,
        [&](CaseBuilder& c) { return c.b().broadcast(c.weight("w", bc.in), bc.out, bc.dims); });
  }
  struct Rs {
    const char* name;
    Shape in, out;
  };
  for (const Rs& rs : {Rs{"merge", {2, 3, 4}, {6, 4}}, Rs{"regroup", {2, 3, 4}, {4, 3, 2}},
                       Rs{"flatten", {2, 6}, {12}}, Rs{"to_scalar", {1, 1}, {}},
                       Rs{"from_scalar", {}, {1, 1, 1}}}) {
    add(cs, std::string("reshape.") + rs.name, OpKind::kReshape,
        [&](CaseBuilder& c) { return c.b().reshape(c.weight("w", rs.in), rs.out); });
  }
  struct Tp {
    const char* name;
    Shape in;
    std::vector<int64_t> perm;
  };
  for (const Tp& tp :
       {Tp{"2d", {3, 4}, {1, 0}}, Tp{"rotate_left", {2, 3, 4}, {1, 2, 0}},
        Tp{"rotate_right", {2, 3, 4}, {2, 0, 1}}, Tp{"swap_middle", {2, 3, 2, 4}, {0, 2, 1, 3}},
        Tp{"scramble", {2, 3, 4, 5}, {3, 1, 0, 2}}}) {
    add(cs, std::string("transpose.") + tp.name, OpKind::kTranspose,
        [&](CaseBuilder& c) { return c.b().transpose(c.weight("w", tp.in), tp.perm); });
  }
  add(cs, "slice.2d", OpKind::kSlice, [](CaseBuilder& c) {
    return c.b().slice(c.weight("w", {4, 5}), {1, 0}, {3, 4});
  });
  add(cs, "slice.3d_all_dims", OpKind::kSlice, [](CaseBuilder& c) {
    return c.b().slice(c.weight("w", {3, 4, 5}), {1, 2, 1}, {3, 3, 5});
  });
  add(cs, "pad.2d_value", OpKind::kPad, [](CaseBuilder& c) {
    return c.b().pad(c.weight("w", {2, 3}), {1, 0}, {2, 1}, 1.5);
  });
  add(cs, "pad.3d_mixed", OpKind::kPad, [](CaseBuilder& c) {
    return c.b().pad(c.weight("w", {2, 3, 2}), {0, 2, 1}, {1, 0, 1}, 0.0);
  });
  add(cs, "concat.dim0", OpKind::kConcat, [](CaseBuilder& c) {
    return c.b().concat({c.weight("a", {2, 3}), c.weight("b", {1, 3})}, 0);
  });
  add(cs, "concat.dim1_three", OpKind::kConcat, [](CaseBuilder& c) {
    return c.b().concat(
        {c.weight("a", {2, 1, 2}), c.weight("b", {2, 3, 2}), c.weight("c", {2, 2, 2})}, 1);
  });
  add(cs, "concat.same_operand_twice", OpKind::kConcat, [](CaseBuilder& c) {
    Value a = c.weight("a", {2, 3});
    return c.b().concat({a, c.weight("b", {2, 1}), a}, 1);
  });
}

// ---- reductions ---------------------------------------------------------------------------

void reduce_cases(std::vector<OpCase>& cs) {
  struct Rd {
    const char* name;
    std::vector<int64_t> dims;
  };
  for (const Rd& rd : {Rd{"dim0", {0}}, Rd{"dim1", {1}}, Rd{"dims02", {0, 2}}, Rd{"all", {0, 1, 2}},
                       Rd{"none", {}}}) {
    add(cs, std::string("reduce_sum.") + rd.name, OpKind::kReduceSum, [&](CaseBuilder& c) {
      return c.b().reduce_sum(c.weight("w", {2, 3, 4}), rd.dims);
    });
  }
  // Continuous random values: no ties for the maximum.
  for (const Rd& rd :
       {Rd{"dim1", {1}}, Rd{"dim2", {2}}, Rd{"dims02", {0, 2}}, Rd{"all", {0, 1, 2}}}) {
    add(cs, std::string("reduce_max.") + rd.name, OpKind::kReduceMax, [&](CaseBuilder& c) {
      return c.b().reduce_max(c.weight("w", {2, 3, 4}), rd.dims);
    });
  }
}

// ---- contractions -------------------------------------------------------------------------

void dot_cases(std::vector<OpCase>& cs) {
  struct Dt {
    const char* name;
    Shape lhs, rhs;
    DotAttrs attrs;
  };
  const Dt dots[] = {
      {"matmul", {3, 4}, {4, 5}, {{}, {}, {1}, {0}}},
      {"lhs_transposed", {4, 3}, {4, 5}, {{}, {}, {0}, {0}}},
      {"rhs_transposed", {3, 4}, {5, 4}, {{}, {}, {1}, {1}}},
      {"both_transposed", {4, 3}, {5, 4}, {{}, {}, {0}, {1}}},
      {"batch_leading", {2, 3, 4}, {2, 4, 5}, {{0}, {0}, {2}, {1}}},
      // attention scores: q [B,T,H,D] x k [B,S,H,D] -> [B,H,T,S]
      {"attention_scores", {2, 3, 2, 4}, {2, 5, 2, 4}, {{0, 2}, {0, 2}, {3}, {3}}},
      // probs [B,H,T,S] x v [B,S,H,D] -> [B,H,T,D]
      {"attention_probs_v", {2, 2, 3, 5}, {2, 5, 2, 4}, {{0, 1}, {0, 2}, {3}, {1}}},
      {"two_contracting", {3, 4, 5}, {4, 5, 2}, {{}, {}, {1, 2}, {0, 1}}},
      {"two_contracting_crossed", {3, 4, 5}, {5, 4, 2}, {{}, {}, {1, 2}, {1, 0}}},
      {"matrix_vector", {3, 4}, {4}, {{}, {}, {1}, {0}}},
      {"vector_matrix", {4}, {4, 5}, {{}, {}, {0}, {0}}},
      {"vector_dot", {6}, {6}, {{}, {}, {0}, {0}}},
      {"batch_no_lhs_free", {2, 4}, {2, 4, 5}, {{0}, {0}, {1}, {1}}},
      {"batch_middle_rhs_first", {3, 2, 4}, {4, 2, 5}, {{1}, {1}, {2}, {0}}},
      {"batch_only", {2, 3}, {2, 3}, {{0, 1}, {0, 1}, {}, {}}},
      {"outer", {3}, {4}, {{}, {}, {}, {}}},
  };
  for (const Dt& d : dots) {
    add(cs, std::string("dot_general.") + d.name, OpKind::kDotGeneral, [&](CaseBuilder& c) {
      return c.b().dot_general(c.weight("lhs", d.lhs), c.weight("rhs", d.rhs), d.attrs);
    });
  }
}

ConvAttrs conv(std::vector<int64_t> stride, std::vector<int64_t> padding,
               std::vector<int64_t> dilation, int64_t groups) {
  ConvAttrs a;
  a.stride = std::move(stride);
  a.padding = std::move(padding);
  a.dilation = std::move(dilation);
  a.groups = groups;
  return a;
}

void conv_cases(std::vector<OpCase>& cs) {
  struct Cv {
    const char* name;
    Shape input, filter;
    ConvAttrs attrs;
  };
  const Cv convs[] = {
      {"same_3x3", {2, 2, 5, 5}, {3, 2, 3, 3}, conv({1, 1}, {1, 1, 1, 1}, {1, 1}, 1)},
      {"stride2", {1, 2, 7, 6}, {2, 2, 3, 3}, conv({2, 2}, {0, 0, 0, 0}, {1, 1}, 1)},
      {"asymmetric_padding", {1, 2, 4, 5}, {2, 2, 2, 3}, conv({1, 1}, {2, 0, 1, 3}, {1, 1}, 1)},
      {"dilation2", {1, 1, 7, 7}, {2, 1, 3, 3}, conv({1, 1}, {1, 1, 1, 1}, {2, 2}, 1)},
      {"groups2", {2, 4, 4, 4}, {6, 2, 2, 2}, conv({1, 1}, {0, 0, 0, 0}, {1, 1}, 2)},
      {"combined", {2, 4, 7, 6}, {4, 2, 2, 3}, conv({2, 1}, {1, 2, 0, 1}, {1, 2}, 2)},
  };
  for (const Cv& v : convs) {
    add(cs, std::string("conv2d.") + v.name, OpKind::kConv2d, [&](CaseBuilder& c) {
      return c.b().conv2d(c.weight("x", v.input), c.weight("w", v.filter), v.attrs);
    });
  }
  // The gradient ops as standalone ops, both operands trained. The output grids come from the
  // forward shape rule; "stride2_uncovered" leaves input rows no window reaches.
  const Cv grads[] = {
      {"same_3x3", {2, 2, 5, 5}, {3, 2, 3, 3}, conv({1, 1}, {1, 1, 1, 1}, {1, 1}, 1)},
      {"stride2_uncovered", {1, 2, 8, 7}, {2, 2, 3, 3}, conv({2, 2}, {0, 1, 0, 0}, {1, 1}, 1)},
      {"combined", {2, 4, 7, 6}, {4, 2, 2, 3}, conv({2, 1}, {1, 2, 0, 1}, {1, 2}, 2)},
  };
  for (const Cv& v : grads) {
    const auto& a = v.attrs;
    const Shape out = {v.input[0], v.filter[0],
                       conv_output_size(v.input[2], v.filter[2], a.stride[0], a.padding[0],
                                        a.padding[1], a.dilation[0]),
                       conv_output_size(v.input[3], v.filter[3], a.stride[1], a.padding[2],
                                        a.padding[3], a.dilation[1])};
    add(cs, std::string("conv2d_grad_input.") + v.name, OpKind::kConv2dGradInput,
        [&](CaseBuilder& c) {
          return c.b().conv2d_grad_input(c.weight("dy", out), c.weight("w", v.filter), a,
                                         f32(v.input));
        });
    add(cs, std::string("conv2d_grad_filter.") + v.name, OpKind::kConv2dGradFilter,
        [&](CaseBuilder& c) {
          return c.b().conv2d_grad_filter(c.weight("x", v.input), c.weight("dy", out), a,
                                          f32(v.filter));
        });
  }
}

// ---- indexing -----------------------------------------------------------------------------

void indexing_cases(std::vector<OpCase>& cs) {
  add(cs, "gather.axis0_repeated", OpKind::kGather, [](CaseBuilder& c) {
    Value t = c.weight("table", {5, 3});
    Value i = c.input("i", i32({2, 3}), {1, 4, 1, 0, 1, 4});
    return c.b().gather(t, i, 0);
  });
  add(cs, "gather.axis1", OpKind::kGather, [](CaseBuilder& c) {
    Value t = c.weight("table", {2, 5, 3});
    Value i = c.input("i", i32({4}), {3, 0, 3, 2});
    return c.b().gather(t, i, 1);
  });
  add(cs, "gather.last_axis", OpKind::kGather, [](CaseBuilder& c) {
    Value t = c.weight("table", {2, 4});
    return c.b().gather(t, c.indices("i", {3}, 4), 1);
  });
  add(cs, "gather.scalar_index", OpKind::kGather, [](CaseBuilder& c) {
    Value t = c.weight("table", {4, 3});
    return c.b().gather(t, c.input("i", i32({}), {2}), 0);
  });
  add(cs, "scatter_add.axis0_repeated", OpKind::kScatterAdd, [](CaseBuilder& c) {
    Value i = c.input("i", i32({4}), {2, 0, 2, 4});
    Value u = c.weight("updates", {4, 3});
    return c.b().scatter_add(i, u, 0, f32({5, 3}));
  });
  add(cs, "scatter_add.axis1", OpKind::kScatterAdd, [](CaseBuilder& c) {
    Value i = c.input("i", i32({2, 2}), {1, 3, 1, 0});
    Value u = c.weight("updates", {2, 2, 2, 3});
    return c.b().scatter_add(i, u, 1, f32({2, 4, 3}));
  });
}

std::vector<OpCase> build_all() {
  std::vector<OpCase> cs;
  source_cases(cs);
  unary_cases(cs);
  binary_cases(cs);
  movement_cases(cs);
  reduce_cases(cs);
  dot_cases(cs);
  conv_cases(cs);
  indexing_cases(cs);
  return cs;
}

}  // namespace

const std::vector<OpCase>& op_cases() {
  static const std::vector<OpCase> cases = build_all();
  return cases;
}

}  // namespace alpa
