// How long the executor takes to prepare large graphs (fusion planning, liveness, schedule):
// GPT-39B's whole training step (about 30k nodes) and elementwise chains of 10k to 100k ops.
// Prints one row per graph: nodes, fused programs, seconds to build the graph, seconds to
// prepare the executor. Nothing is allocated for weights (the executor allocates when it runs).
//
// Usage: graph_compile_bench
#include <chrono>
#include <cstdio>

#include "alpa/ir/builder.h"
#include "alpa/models/registry.h"
#include "alpa/runtime/executor.h"
#include "alpa/runtime/fusion.h"

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

alpa::Graph chain(int n) {
  alpa::Builder b("chain");
  alpa::Value v = b.parameter("x", {alpa::DType::kF32, {64}}, alpa::ParamRole::kInput);
  for (int i = 0; i < n; ++i) v = i % 2 ? b.neg(v) : b.tanh(v);
  b.output("y", v);
  return std::move(b.finish()).value();
}

void row(const char* name, alpa::Graph g, double build_s) {
  const int nodes = g.size();
  Clock::time_point t0 = Clock::now();
  const size_t programs = alpa::plan_fusion(g).programs.size();
  const double fusion_s = since(t0);
  t0 = Clock::now();
  alpa::Executor ex(std::move(g));
  const double prepare_s = since(t0);
  std::printf("| %-28s | %8d | %8zu | %8.3f | %8.3f | %8.3f |\n", name, nodes, programs, build_s,
              fusion_s, prepare_s);
  std::fflush(stdout);
}

}  // namespace

int main() {
  std::printf("| %-28s | %8s | %8s | %8s | %8s | %8s |\n", "graph", "nodes", "programs", "build s",
              "fusion s", "executor s");
  std::printf("|---|---|---|---|---|---|\n");
  for (int n : {10000, 20000, 40000, 100000}) {
    const Clock::time_point t0 = Clock::now();
    alpa::Graph g = chain(n);
    row(("elementwise chain " + std::to_string(n)).c_str(), std::move(g), since(t0));
  }
  for (const char* size : {"1.3b", "39b"}) {
    const Clock::time_point t0 = Clock::now();
    auto spec = alpa::resolve_model("gpt", size, {});
    auto step = alpa::training_step(*spec, alpa::OptimizerOptions{}, 1);
    if (!step.ok()) {
      std::fprintf(stderr, "%s\n", step.status().to_string().c_str());
      return 1;
    }
    row((std::string("GPT-") + size + " training step").c_str(), std::move(step->graph), since(t0));
  }
  return 0;
}
