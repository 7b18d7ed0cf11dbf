#include "alpa/cli/trainer.h"

#include <algorithm>
#include <map>
#include <chrono>
#include <cmath>
#include <thread>

#include "alpa/ir/analysis.h"
#include "alpa/models/data.h"
#include "alpa/runtime/blas.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/init.h"

namespace alpa {

double TrainReport::step_time_s() const {
  if (step_seconds.empty()) return 0;
  std::vector<double> t(step_seconds.begin() + (step_seconds.size() > 1 ? 1 : 0),
                        step_seconds.end());
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

namespace {

std::vector<TrainReport::NodeTime> slowest_nodes(const Executor& exec,
                                                 const std::vector<double>& seconds, size_t k) {
  const Graph& g = exec.graph();
  std::vector<ValueId> ids;
  for (ValueId v = 0; v < g.size(); ++v)
    if (seconds[v] > 0) ids.push_back(v);
  std::sort(ids.begin(), ids.end(), [&](ValueId a, ValueId b) { return seconds[a] > seconds[b]; });
  if (ids.size() > k) ids.resize(k);
  std::vector<TrainReport::NodeTime> out;
  for (ValueId v : ids) {
    const Node& n = g.node(v);
    std::string what = cat(value_ref(g, v), " ", op_name(n.op), " ", n.type.to_string());
    const std::vector<ValueId> members = exec.fused_members(v);
    if (members.size() > 1) {
      std::map<std::string, int> count;
      for (ValueId m : members)
        if (m != v) ++count[std::string(op_name(g.node(m).op))];
      what += " fused:";
      for (const auto& [op, c] : count) what += c > 1 ? cat(" ", op, "x", c) : cat(" ", op);
    }
    out.push_back({what, seconds[v]});
  }
  return out;
}

}  // namespace

Result<TrainReport> train_model(const ModelSpec& spec, const TrainOptions& options,
                                const std::function<void(const StepReport&)>& on_step) {
  if (options.steps < 1) return invalid_argument(cat("--steps must be >= 1, got ", options.steps));
  if (options.threads < 0) return invalid_argument("--threads must be >= 0");
  ALPA_ASSIGN_OR_RETURN(Graph forward, build_forward(spec, options.micro_batches));
  TrainStepOptions tso;
  tso.optimizer = options.optimizer;
  tso.micro_batches = options.micro_batches;
  ALPA_ASSIGN_OR_RETURN(TrainStep ts, build_train_step(forward, tso));
  const Graph& g = ts.graph;

  TrainReport report;
  const GraphStats stats = graph_stats(g);
  report.parameters = stats.parameters;
  report.flops_per_step = stats.flops;
  report.tokens_per_step = tokens_per_batch(spec);
  report.threads = options.threads > 0
                       ? options.threads
                       : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));

  ALPA_ASSIGN_OR_RETURN(std::unique_ptr<DataSource> data, make_data_source(spec, g, options.seed));
  ExecutorOptions eo;
  eo.num_threads = report.threads;
  Executor exec(g, eo);
  report.blas_core = blas_core_name();
  report.seconds_by_op.assign(kNumOps, 0.0);

  // Parameter slots: where each parameter's value comes from at every step.
  const std::vector<ValueId> params = g.parameters();
  std::vector<int> alias_output(params.size(), -1);  // output carrying the new value
  std::vector<int> input_index(params.size(), -1);   // position among the data inputs
  int num_inputs = 0;
  for (size_t p = 0; p < params.size(); ++p) {
    for (size_t o = 0; o < g.outputs().size(); ++o)
      if (g.outputs()[o].alias == params[p]) alias_output[p] = static_cast<int>(o);
    if (g.node(params[p]).attr<ParameterAttrs>().role == ParamRole::kInput)
      input_index[p] = num_inputs++;
  }
  std::vector<Tensor> values = init_parameters(g, options.seed);
  std::vector<double> node_seconds(static_cast<size_t>(g.size()), 0.0);

  for (int step = 1; step <= options.steps; ++step) {
    std::vector<std::vector<float>> batch = data->batch(step - 1);
    for (size_t p = 0; p < params.size(); ++p)
      if (input_index[p] >= 0)
        values[p] = Tensor::from_values(g.type(params[p]), std::move(batch[input_index[p]]));
    const auto t0 = std::chrono::steady_clock::now();
    ALPA_ASSIGN_OR_RETURN(std::vector<Tensor> outputs, exec.run(std::move(values)));
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double loss = outputs[0].item();
    if (!std::isfinite(loss))
      return failed_precondition(cat("the loss became ", loss, " at step ", step),
                                 "lower the learning rate (--lr)");
    if (step > 1 || options.steps == 1) {
      for (int k = 0; k < kNumOps; ++k) report.seconds_by_op[k] += exec.stats().seconds_by_op[k];
      for (ValueId v = 0; v < g.size(); ++v) node_seconds[v] += exec.stats().seconds_by_node[v];
    }
    report.losses.push_back(loss);
    report.step_seconds.push_back(seconds);
    values.assign(params.size(), Tensor());
    for (size_t p = 0; p < params.size(); ++p)
      if (alias_output[p] >= 0) values[p] = std::move(outputs[alias_output[p]]);
    if (on_step) on_step(StepReport{step, loss, seconds});
  }
  report.slowest_nodes = slowest_nodes(exec, node_seconds, 120);
  return report;
}

}  // namespace alpa
