#include "alpa/runtime/executor.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "alpa/ir/analysis.h"
#include "alpa/ir/verifier.h"
#include "alpa/runtime/blas.h"

namespace alpa {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t fp32_bytes(const TensorType& t) {
  return t.num_elements() * static_cast<int64_t>(sizeof(float));
}

}  // namespace

Executor::Executor(Graph graph, ExecutorOptions options)
    : graph_(std::move(graph)), options_(options) {
  const Status s = verify(graph_);
  ALPA_CHECK(s.ok()) << "Executor given an invalid graph: " << s.to_string();
  int threads = options_.num_threads;
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads_ = std::make_unique<ThreadPool>(threads);
  pool_ = std::make_unique<BufferPool>();
  select_blas_kernels();

  // What each node reads: its operands, or for a fused root the values its program loads.
  const int32_t n = graph_.size();
  if (options_.fuse_elementwise) {
    fusion_ = plan_fusion(graph_);
  } else {
    fusion_.program_of.assign(static_cast<size_t>(n), -1);
    fusion_.skipped.assign(static_cast<size_t>(n), 0);
  }
  std::vector<std::vector<ValueId>> reads(static_cast<size_t>(n));
  for (ValueId i = 0; i < n; ++i) {
    if (fusion_.skipped[i]) continue;
    if (fusion_.program_of[i] >= 0) {
      for (const FusedLoad& l : fusion_.programs[fusion_.program_of[i]].loads)
        if (std::find(reads[i].begin(), reads[i].end(), l.value) == reads[i].end())
          reads[i].push_back(l.value);
    } else {
      reads[i] = graph_.node(i).operands;
    }
  }
  std::vector<ValueId> last_use(static_cast<size_t>(n));
  for (ValueId i = 0; i < n; ++i) {
    last_use[i] = i;
    for (ValueId op : reads[i]) last_use[op] = i;
  }
  for (const GraphOutput& o : graph_.outputs()) last_use[o.value] = n;

  steps_.resize(static_cast<size_t>(n));
  for (ValueId i = 0; i < n; ++i) {
    const Node& node = graph_.node(i);
    Step& step = steps_[static_cast<size_t>(i)];
    if (fusion_.skipped[i]) {
      step.skip = true;
      continue;
    }
    step.program = fusion_.program_of[i];
    if (node.op == OpKind::kParameter) {
      step.param_index = static_cast<int>(param_ids_.size());
      param_ids_.push_back(i);
    } else if (step.program < 0) {
      step.kernel = kernel_for(node.op);
      ALPA_CHECK(step.kernel != nullptr) << "no kernel for op " << op_name(node.op);
    }
    // Reuse the buffer of an input that dies here, for elementwise ops, fused programs (an
    // input they read only contiguously) and reshape.
    const bool can_reuse = is_elementwise(node.op) || node.op == OpKind::kReshape;
    for (ValueId op : reads[i]) {
      if (!can_reuse || step.reuse != kNoValue) break;
      if (last_use[static_cast<size_t>(op)] != i ||
          graph_.type(op).num_elements() != node.type.num_elements())
        continue;
      if (step.program >= 0) {
        bool only_contiguous = true;
        for (const FusedLoad& l : fusion_.programs[step.program].loads)
          if (l.value == op && !l.contiguous) only_contiguous = false;
        if (!only_contiguous) continue;
      }
      step.reuse = op;
    }
    step.relabel = node.op == OpKind::kReshape && step.reuse != kNoValue;
    // Frees after this node: what it reads that dies here, and itself if never used.
    for (ValueId op : reads[i]) {
      if (last_use[static_cast<size_t>(op)] != i || op == step.reuse) continue;
      if (std::find(step.frees.begin(), step.frees.end(), op) == step.frees.end())
        step.frees.push_back(op);
    }
    if (last_use[static_cast<size_t>(i)] == i) step.frees.push_back(i);
  }
}

Executor::~Executor() = default;
Executor::Executor(Executor&&) noexcept = default;
Executor& Executor::operator=(Executor&&) noexcept = default;

std::vector<ValueId> Executor::fused_members(ValueId id) const {
  const int p = fusion_.program_of[static_cast<size_t>(id)];
  if (p < 0) return {id};
  return fusion_.programs[static_cast<size_t>(p)].members;
}

int Executor::num_threads() const {
  return threads_->num_threads();
}

Status Executor::check_params(const std::vector<Tensor>& params,
                              const std::vector<const Tensor*>& borrowed) const {
  if (params.size() != param_ids_.size()) {
    std::string names;
    for (size_t k = 0; k < param_ids_.size() && k < 8; ++k)
      names += (k ? ", " : "") + value_ref(graph_, param_ids_[k]);
    if (param_ids_.size() > 8) names += ", ...";
    return invalid_argument(
        cat("graph ", graph_.name(), " takes ", param_ids_.size(), " parameter(s) (", names,
            "), but ", params.size(), " tensor(s) were passed"),
        "pass one tensor per graph parameter, in definition order");
  }
  if (!borrowed.empty() && borrowed.size() != params.size())
    return internal_error(
        cat("run: ", borrowed.size(), " borrowed entries for ", params.size(), " parameters"));
  for (size_t k = 0; k < params.size(); ++k) {
    const TensorType& want = graph_.type(param_ids_[k]);
    const Tensor& given = !borrowed.empty() && borrowed[k] ? *borrowed[k] : params[k];
    if (given.type() != want)
      return invalid_argument(cat("parameter ", value_ref(graph_, param_ids_[k]), " (#", k,
                                  ") has type ", want.to_string(), ", but a tensor of type ",
                                  given.type().to_string(), " was passed"));
  }
  return ok_status();
}

Result<std::vector<Tensor>> Executor::run(std::vector<Tensor> params) {
  return run(std::move(params), {});
}

Result<std::vector<Tensor>> Executor::run(std::vector<Tensor> params,
                                          const std::vector<const Tensor*>& borrowed) {
  const Clock::time_point start = Clock::now();
  stats_ = ExecutorStats{};
  stats_.seconds_by_op.assign(kNumOps, 0.0);
  stats_.seconds_by_node.assign(static_cast<size_t>(graph_.size()), 0.0);
  ALPA_RETURN_IF_ERROR(check_params(params, borrowed));
  const int64_t allocations_before = pool_->allocations();
  set_blas_threads(1);  // parallelism comes from threads_ (gemm.h)

  const int32_t n = graph_.size();
  std::vector<Tensor> values(static_cast<size_t>(n));
  // Borrowed parameters are read in place: at(v) is where value v lives.
  std::vector<const Tensor*> view(static_cast<size_t>(n), nullptr);
  auto at = [&](ValueId v) -> const Tensor* {
    const Tensor* b = view[static_cast<size_t>(v)];
    return b != nullptr ? b : &values[static_cast<size_t>(v)];
  };
  // counted[v]: v's bytes are in `live` (computed values, not parameters passed in).
  std::vector<char> counted(static_cast<size_t>(n), 0);
  int64_t live = 0, peak = 0;
  Workspace workspace(pool_.get());
  KernelContext ctx{threads_.get(), &workspace, &graph_, kNoValue, options_.device};
  std::vector<const Tensor*> inputs;

  auto release = [&](ValueId v) {
    Tensor& t = values[static_cast<size_t>(v)];
    if (counted[static_cast<size_t>(v)]) live -= fp32_bytes(t.type());
    counted[static_cast<size_t>(v)] = 0;
    pool_->release(t.release());
  };
  auto fail = [&](Status s) {
    for (ValueId v = 0; v < n; ++v) release(v);
    workspace.release_all();
    pool_->trim();
    return s;
  };

  for (ValueId i = 0; i < n; ++i) {
    const Node& node = graph_.node(i);
    const Step& step = steps_[static_cast<size_t>(i)];
    if (step.skip) continue;
    if (step.param_index >= 0) {
      const size_t k = static_cast<size_t>(step.param_index);
      if (!borrowed.empty() && borrowed[k] != nullptr)
        view[static_cast<size_t>(i)] = borrowed[k];
      else
        values[static_cast<size_t>(i)] = std::move(params[k]);
    } else {
      const Clock::time_point t0 = Clock::now();
      Tensor out;
      // A borrowed parameter's buffer is never taken over: the result gets its own.
      const ValueId reuse =
          step.reuse != kNoValue && view[static_cast<size_t>(step.reuse)] == nullptr ? step.reuse
                                                                                     : kNoValue;
      if (reuse != kNoValue) {
        const size_t r = static_cast<size_t>(reuse);
        out = std::move(values[r]);
        out.set_type(node.type);
        if (!counted[r]) live += fp32_bytes(node.type);  // a parameter's buffer becomes ours
        counted[r] = 0;
      } else {
        out = Tensor::adopt(node.type, pool_->acquire(node.type.num_elements()));
        live += fp32_bytes(node.type);
      }
      if (step.program >= 0) {
        const FusedProgram& prog = fusion_.programs[step.program];
        inputs.clear();
        for (const FusedLoad& l : prog.loads)
          inputs.push_back(l.value == reuse ? &out : at(l.value));
        run_fused(ctx, prog, inputs, out.data());
        peak = std::max(peak, live);
        stats_.seconds_fused += seconds_since(t0);
      } else if (step.relabel && reuse == kNoValue) {
        // A reshape of a borrowed parameter: a copy under the new type.
        const Tensor& src = *at(node.operands[0]);
        std::copy(src.data(), src.data() + src.size(), out.data());
      } else if (!step.relabel) {
        inputs.clear();
        for (ValueId op : node.operands) inputs.push_back(op == reuse ? &out : at(op));
        ctx.id = i;
        Status s = step.kernel(ctx, node, inputs, out);
        peak = std::max(peak, live + workspace.held_bytes());
        workspace.release_all();
        if (!s.ok()) {
          pool_->release(out.release());
          return fail(std::move(s));
        }
      }
      peak = std::max(peak, live);
      values[static_cast<size_t>(i)] = std::move(out);
      counted[static_cast<size_t>(i)] = 1;
      const double seconds = seconds_since(t0);
      stats_.seconds_by_op[static_cast<size_t>(node.op)] += seconds;
      stats_.seconds_by_node[static_cast<size_t>(i)] = seconds;
    }
    for (ValueId v : step.frees) release(v);
  }

  // Outputs: move a value out at its last mention in the output list, copy it before that.
  const std::vector<GraphOutput>& outs = graph_.outputs();
  std::vector<Tensor> results;
  results.reserve(outs.size());
  for (size_t j = 0; j < outs.size(); ++j) {
    const ValueId v = outs[j].value;
    bool later = false;
    for (size_t k = j + 1; k < outs.size() && !later; ++k) later = outs[k].value == v;
    if (later || view[static_cast<size_t>(v)] != nullptr) {
      results.push_back(*at(v));
      live += fp32_bytes(results.back().type());
      peak = std::max(peak, live);
    } else {
      results.push_back(std::move(values[static_cast<size_t>(v)]));
      counted[static_cast<size_t>(v)] = 0;
    }
  }
  // Everything else was freed at its last use: `values` holds nothing now.
  pool_->trim();
  stats_.peak_live_bytes = peak;
  stats_.buffer_allocations = pool_->allocations() - allocations_before;
  stats_.seconds = seconds_since(start);
  stats_.fused_programs = static_cast<int64_t>(fusion_.programs.size());
  for (const FusedProgram& p : fusion_.programs)
    stats_.fused_nodes += static_cast<int64_t>(p.members.size());
  return results;
}

}  // namespace alpa
