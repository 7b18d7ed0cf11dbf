// Prefill and decode throughput of the serving decoder (random weights, GPT-2 layout) over the
// paged KV cache, as bench/serve_bench.py drives it beside a PyTorch eager reference.
// Usage: serve_bench LAYERS HIDDEN HEADS VOCAB POSITIONS BATCH PROMPT_LEN DECODE_TOKENS THREADS
//                    [TENSOR STAGES]
// TENSOR x STAGES > 1 runs the parallel decoder (parallel_decoder.h: tensor-parallel shards of
// every layer, pipeline stages of layers; devices are threads sharing THREADS cores).
// Prints one JSON line: prefill and decode tokens per second.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "alpa/serve/decoder.h"
#include "alpa/serve/parallel_decoder.h"
#include "alpa/support/rng.h"

int main(int argc, char** argv) {
  using namespace alpa::serve;
  if (argc != 10 && argc != 12) {
    std::fprintf(stderr,
                 "usage: serve_bench LAYERS HIDDEN HEADS VOCAB POSITIONS BATCH PROMPT_LEN "
                 "DECODE_TOKENS THREADS [TENSOR STAGES]\n");
    return 2;
  }
  auto arg = [&](int i) { return std::atoll(argv[i]); };
  DecoderConfig c;
  c.family = Family::kGpt2;
  c.layers = arg(1);
  c.hidden = arg(2);
  c.heads = arg(3);
  c.kv_heads = c.heads;
  c.head_dim = c.hidden / c.heads;
  c.vocab = arg(4);
  c.max_positions = arg(5);
  c.intermediate = 4 * c.hidden;
  const int64_t batch = arg(6), prompt = arg(7), decode = arg(8);
  alpa::ThreadPool pool(static_cast<int>(arg(9)));
  Decoder d = Decoder::random(c, 1);
  KvCacheShape shape{c.layers, c.kv_heads, c.head_dim, 16, 0};
  shape.num_blocks = batch * ((prompt + decode) / 16 + 2);
  KvCache cache(shape);
  std::vector<BlockTable> tables(static_cast<size_t>(batch));
  std::vector<std::vector<int32_t>> tokens(static_cast<size_t>(batch));
  alpa::Rng rng(2);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t i = 0; i < prompt + decode; ++i)
      tokens[static_cast<size_t>(b)].push_back(static_cast<int32_t>(rng.below(c.vocab)));
    cache.reserve(tables[static_cast<size_t>(b)], prompt + decode);
  }
  ParallelShape split;
  if (argc == 12) split = {static_cast<int>(arg(10)), static_cast<int>(arg(11))};
  std::unique_ptr<ParallelDecoder> parallel;
  if (split.devices() > 1) {
    alpa::Result<std::unique_ptr<ParallelDecoder>> p = ParallelDecoder::create(
        d, split, shape.block_size, shape.num_blocks, static_cast<int>(arg(9)));
    if (!p.ok()) {
      std::fprintf(stderr, "%s\n", p.status().to_string().c_str());
      return 1;
    }
    parallel = std::move(*p);
  }
  std::vector<float> logits;
  auto forward = [&](const std::vector<SequenceChunk>& chunks) {
    if (parallel == nullptr) return d.forward(chunks, cache, pool, logits);
    const alpa::Status s = parallel->forward(chunks, logits);
    if (s.ok()) return;
    std::fprintf(stderr, "%s\n", s.to_string().c_str());
    std::exit(1);
  };
  using clock = std::chrono::steady_clock;
  std::vector<SequenceChunk> chunks;
  for (int64_t b = 0; b < batch; ++b)
    chunks.push_back(
        {tokens[static_cast<size_t>(b)].data(), prompt, 0, &tables[static_cast<size_t>(b)], false});
  const auto t0 = clock::now();
  forward(chunks);
  const auto t1 = clock::now();
  for (int64_t step = 0; step < decode; ++step) {
    chunks.clear();
    for (int64_t b = 0; b < batch; ++b)
      chunks.push_back({tokens[static_cast<size_t>(b)].data() + prompt + step, 1, prompt + step,
                        &tables[static_cast<size_t>(b)], false});
    forward(chunks);
  }
  const auto t2 = clock::now();
  const double prefill_s = std::chrono::duration<double>(t1 - t0).count();
  const double decode_s = std::chrono::duration<double>(t2 - t1).count();
  std::printf(
      "{\"impl\": \"alpa\", \"tensor\": %d, \"stages\": %d, \"batch\": %lld, \"prompt\": %lld, "
      "\"decode\": %lld, "
      "\"prefill_tokens_per_s\": %.2f, \"decode_tokens_per_s\": %.2f, \"params\": %lld}\n",
      split.tensor, split.stages, static_cast<long long>(batch), static_cast<long long>(prompt),
      static_cast<long long>(decode), static_cast<double>(batch * prompt) / prefill_s,
      static_cast<double>(batch * decode) / decode_s, static_cast<long long>(d.num_parameters()));
  return 0;
}
