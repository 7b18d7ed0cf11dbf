// Kernel micro-benchmarks: the GEMMs of the GPT benchmark model and a fused softmax, through
// the Executor (so they include its dispatch). Run: build/release/bench/kernels_bench
// Counters: GFLOP/s for products, GB/s (input + output bytes) for the elementwise program.
#include <benchmark/benchmark.h>

#include "alpa/ir/builder.h"
#include "alpa/runtime/executor.h"

namespace alpa {
namespace {

void run_graph(benchmark::State& state, const Graph& g, double flops, double bytes) {
  ExecutorOptions o;
  o.num_threads = static_cast<int>(state.range(0));
  Executor ex(g, o);
  std::vector<Tensor> params;
  for (ValueId id : g.parameters()) params.emplace_back(g.type(id));
  for (auto _ : state) {
    std::vector<Tensor> p = params;
    benchmark::DoNotOptimize(ex.run(std::move(p)));
  }
  if (flops > 0)
    state.counters["GFLOP/s"] =
        benchmark::Counter(flops * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  if (bytes > 0)
    state.counters["GB/s"] =
        benchmark::Counter(bytes * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

Graph dot_graph(Shape a, Shape b, DotAttrs d) {
  Builder bl("dot");
  Value x = bl.parameter("a", {DType::kF32, std::move(a)}, ParamRole::kInput);
  Value y = bl.parameter("b", {DType::kF32, std::move(b)}, ParamRole::kInput);
  bl.output("c", bl.dot_general(x, y, std::move(d)));
  return bl.finish().value();
}

// (B*T, C) x (C, 4C): the MLP up-projection.
void BM_MlpUp(benchmark::State& s) {
  run_graph(s, dot_graph({2048, 512}, {512, 2048}, {{}, {}, {1}, {0}}), 2.0 * 2048 * 512 * 2048, 0);
}
// (B*T, C) x (V, C)^T: the tied LM head.
void BM_LmHead(benchmark::State& s) {
  run_graph(s, dot_graph({2048, 512}, {8192, 512}, {{}, {}, {1}, {1}}), 2.0 * 2048 * 512 * 8192, 0);
}
// Attention scores: q (B,T,H,D) . k (B,T,H,D) -> (B,H,T,T), 64 small products in place.
void BM_AttentionScores(benchmark::State& s) {
  run_graph(s, dot_graph({8, 256, 8, 64}, {8, 256, 8, 64}, {{0, 2}, {0, 2}, {3}, {3}}),
            2.0 * 8 * 8 * 256 * 256 * 64, 0);
}
// exp(x - max(x)) over (B,H,T,T): one fused program after the row max.
void BM_FusedSoftmaxNumerator(benchmark::State& s) {
  Builder b("softmax");
  const Shape sh = {8, 8, 256, 256};
  Value x = b.parameter("x", {DType::kF32, sh}, ParamRole::kInput);
  Value m = b.reduce_max(x, {3});
  b.output("y", b.exp(b.sub(x, b.broadcast(m, sh, {0, 1, 2}))));
  const double n = 8.0 * 8 * 256 * 256;
  run_graph(s, b.finish().value(), 0, 3 * 4 * n);
}

BENCHMARK(BM_MlpUp)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_LmHead)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_AttentionScores)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FusedSoftmaxNumerator)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace alpa

BENCHMARK_MAIN();
