// The serving planner (serve_plan/inference_plan.h): memory per device, KV-cache capacity, the
// objectives' choices, what does not fit or cannot be formed.
#include "alpa/serve_plan/inference_plan.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace alpa::serve {
namespace {

DecoderConfig shape(const char* name) {
  Result<DecoderConfig> c = decoder_preset(name);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return *c;
}

Cluster preset(const char* name) {
  Result<Cluster> c = cluster_preset(name);
  EXPECT_TRUE(c.ok()) << c.status().to_string();
  return *c;
}

// A small OPT-like decoder: 4 layers, 64 wide, 4 heads, FFN 256, vocabulary 1000.
DecoderConfig small_opt() {
  DecoderConfig c = shape("opt-6.7b");
  c.layers = 4;
  c.hidden = 64;
  c.heads = 4;
  c.kv_heads = 4;
  c.head_dim = 16;
  c.intermediate = 256;
  c.vocab = 1000;
  c.max_positions = 128;
  return c;
}

TEST(InferencePlan, ParameterCountsMatchThePublishedModels) {
  // GPT-2 small: 124,439,808 parameters (the Hugging Face checkpoint's tensor sizes).
  EXPECT_EQ(decoder_parameters(shape("gpt2")), 124439808);
  // OPT-175B: 174.6 B with the 2050-row position table; 349 GB in f16.
  const int64_t opt = decoder_parameters(shape("opt-175b"));
  EXPECT_GT(opt, 174'000'000'000);
  EXPECT_LT(opt, 175'000'000'000);
  // LLaMA-2-70B: 68.98 B (untied output projection, grouped-query attention).
  const int64_t llama = decoder_parameters(shape("llama-2-70b"));
  EXPECT_EQ(llama, 68976648192);
}

TEST(InferencePlan, MemoryPerDeviceAddsUp) {
  const DecoderConfig c = small_opt();
  Cluster cluster = preset("dgx-h100");
  cluster.devices_per_host = 4;
  Workload w;
  w.prompt_len = 40;
  w.output_len = 8;
  // One device holds every weight once (the tied embedding counted once).
  Result<Cluster> one = with_devices(cluster, 1);
  ASSERT_TRUE(one.ok());
  Result<InferenceCandidate> whole = predict_inference(c, *one, 1, 1, w);
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  EXPECT_EQ(whole->memory.weights, 2.0 * decoder_parameters(c));
  // tp 2 x pp 2, by hand. One layer on one device: q, k, v, out 4 x 64 x 32; up and down
  // 2 x 64 x 128; biases q, k, v (3 x 32), up (128), out and down replicated (2 x 64); two
  // LayerNorms 4 x 64.
  const double layer = 4 * 64 * 32 + 2 * 64 * 128 + 3 * 32 + 128 + 2 * 64 + 4 * 64;
  // Stage 0: 2 layers, half the token embedding, the whole 130-row position table. Stage 1:
  // 2 layers, the final LayerNorm and its copy of half the tied embedding (smaller).
  const double stage0 = 2 * layer + 500 * 64 + 130 * 64;
  Result<Cluster> four = with_devices(cluster, 4);
  ASSERT_TRUE(four.ok());
  Result<InferenceCandidate> split = predict_inference(c, *four, 2, 2, w);
  ASSERT_TRUE(split.ok()) << split.status().to_string();
  EXPECT_EQ(split->memory.weights, 2 * stage0);
  EXPECT_EQ(split->layers_per_stage, 2);
  // Capacity = weights + workspace + what is left for the KV cache; the KV cache holds whole
  // blocks of 16 positions of K and V for 2 layers x 2 heads x 16 dims in f16.
  const StageMemory& m = split->memory;
  EXPECT_DOUBLE_EQ(m.weights + m.workspace + m.kv_free, split->memory_capacity);
  const double block = 16 * 2 * 2 * 32 * 2.0;
  EXPECT_EQ(m.kv_blocks, static_cast<int64_t>(m.kv_free / block));
  EXPECT_EQ(m.kv_tokens, 16 * m.kv_blocks);
  EXPECT_EQ(m.kv_sequences, m.kv_blocks / 3);  // 48 positions = 3 blocks
  EXPECT_DOUBLE_EQ(split->memory_needed, m.weights + m.workspace + 3 * block);
  EXPECT_TRUE(split->fits);
}

TEST(InferencePlan, KvCapacityShrinksAsPromptsGrow) {
  const DecoderConfig c = shape("opt-30b");
  Result<Cluster> cluster = with_devices(preset("p4de.24xlarge"), 8);
  ASSERT_TRUE(cluster.ok());
  int64_t last_tokens = INT64_MAX, last_sequences = INT64_MAX;
  for (int64_t prompt : {128, 512, 1024, 1900}) {
    Workload w;
    w.prompt_len = prompt;
    w.output_len = 128;
    w.batch = 4;
    Result<InferenceCandidate> cand = predict_inference(c, *cluster, 8, 1, w);
    ASSERT_TRUE(cand.ok()) << cand.status().to_string();
    EXPECT_LT(cand->memory.kv_sequences, last_sequences) << "prompt " << prompt;
    EXPECT_LT(cand->memory.kv_tokens, last_tokens) << "prompt " << prompt;  // workspace grows
    last_tokens = cand->memory.kv_tokens;
    last_sequences = cand->memory.kv_sequences;
  }
}

TEST(InferencePlan, DecodeIsBoundByReadingTheWeights) {
  // One H100, batch 1: a token reads every weight once (13.3 GB in f16) at 3.35 TB/s.
  const DecoderConfig c = shape("opt-6.7b");
  Result<Cluster> one = with_devices(preset("dgx-h100"), 1);
  ASSERT_TRUE(one.ok());
  Result<InferenceCandidate> cand = predict_inference(c, *one, 1, 1, Workload{});
  ASSERT_TRUE(cand.ok());
  const double weights_s = 2.0 * decoder_parameters(c) / 3.35e12;
  EXPECT_GT(cand->per_token_s, weights_s);
  EXPECT_LT(cand->per_token_s, 1.1 * weights_s);
  // Prefill of 512 tokens is compute-bound: at least 2 x params x tokens at 989 TFLOP/s.
  EXPECT_GT(cand->prefill_s, 2.0 * decoder_parameters(c) * 512 / 989e12);
  EXPECT_GT(cand->tokens_per_s, 1 / cand->per_token_s);  // batching raises throughput
}

TEST(InferencePlan, LatencyPicksWiderTensorParallelismThanThroughputAcrossHosts) {
  // OPT-30B on 2 p4de hosts (16 x A100-80GB), up to 1024 sequences in flight: tp 8 x pp 2 has
  // the least time per token (each token reads 1/16 of the weights per device, two stages in
  // turn); at ~1000 sequences a decode step is no longer bound by the weights, and fewer
  // all-reduces per token (more stages, narrower tp) give the most tokens/s.
  const DecoderConfig c = shape("opt-30b");
  const Cluster p4de = preset("p4de.24xlarge");
  Workload w;
  w.max_batch = 1024;
  Result<InferencePlan> latency = plan_inference(c, p4de, 16, Objective::kLatency, w);
  Result<InferencePlan> throughput = plan_inference(c, p4de, 16, Objective::kThroughput, w);
  ASSERT_TRUE(latency.ok()) << latency.status().to_string();
  ASSERT_TRUE(throughput.ok()) << throughput.status().to_string();
  ASSERT_EQ(latency->candidates.size(), 4u);  // tp 1, 2, 4, 8
  const InferenceCandidate& l = latency->candidates[latency->chosen];
  const InferenceCandidate& t = throughput->candidates[throughput->chosen];
  EXPECT_EQ(l.tp, 8);
  EXPECT_EQ(l.pp, 2);
  EXPECT_LT(t.tp, l.tp);
  EXPECT_LT(l.per_token_s, t.per_token_s);
  EXPECT_GT(t.tokens_per_s, l.tokens_per_s);
  for (const InferenceCandidate& cand : latency->candidates) {
    ASSERT_TRUE(cand.fits);
    EXPECT_GE(cand.per_token_s, l.per_token_s);
    EXPECT_LE(cand.tokens_per_s, t.tokens_per_s);
  }
  // OPT-175B on 2 p4d hosts: the KV cache admits ~110 sequences, decode stays bound by reading
  // the weights, and tp 8 x pp 2 wins both objectives.
  Result<InferencePlan> big =
      plan_inference(shape("opt-175b"), preset("p4d.24xlarge"), 16, Objective::kThroughput, {});
  ASSERT_TRUE(big.ok()) << big.status().to_string();
  EXPECT_EQ(big->candidates[big->chosen].tp, 8);
}

TEST(InferencePlan, ARequestRateKeepsOnlySplitsThatSustainIt) {
  // OPT-30B on 2 p4de hosts, up to 1024 sequences: tp 8 x pp 2 has the least time per token
  // but not the most requests/s; at a rate only tp 2 x pp 8 sustains, latency takes it.
  const DecoderConfig c = shape("opt-30b");
  const Cluster p4de = preset("p4de.24xlarge");
  Workload w;
  w.max_batch = 1024;
  Result<InferencePlan> any = plan_inference(c, p4de, 16, Objective::kLatency, w);
  ASSERT_TRUE(any.ok()) << any.status().to_string();
  const InferenceCandidate* most = nullptr;
  for (const InferenceCandidate& cand : any->candidates) {
    EXPECT_DOUBLE_EQ(cand.max_rate, cand.tokens_per_s / w.output_len);
    if (!most || cand.max_rate > most->max_rate) most = &cand;
  }
  ASSERT_NE(most, &any->candidates[any->chosen]);
  w.rate = most->max_rate * 0.999;
  Result<InferencePlan> at_rate = plan_inference(c, p4de, 16, Objective::kLatency, w);
  ASSERT_TRUE(at_rate.ok()) << at_rate.status().to_string();
  const InferenceCandidate& chosen = at_rate->candidates[at_rate->chosen];
  EXPECT_EQ(chosen.tp, most->tp);
  EXPECT_TRUE(chosen.sustains_rate);
  EXPECT_NE(at_rate->reason.find("sustain"), std::string::npos) << at_rate->reason;
  // Beyond every split: an error naming the most any split sustains, and more devices.
  w.rate = most->max_rate * 1.5;
  Result<InferencePlan> beyond = plan_inference(c, p4de, 16, Objective::kLatency, w);
  ASSERT_FALSE(beyond.ok());
  EXPECT_EQ(beyond.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(beyond.status().message().find("no split sustains"), std::string::npos)
      << beyond.status().message();
  EXPECT_NE(beyond.status().hint().find("sustains it"), std::string::npos)
      << beyond.status().hint();
  w.rate = -1;
  EXPECT_FALSE(plan_inference(c, p4de, 16, Objective::kLatency, w).ok());
}

TEST(InferencePlan, Opt175bDoesNotFitOnEightA100_40GB) {
  const DecoderConfig c = shape("opt-175b");
  Result<InferencePlan> plan =
      plan_inference(c, preset("p4d.24xlarge"), 8, Objective::kLatency, Workload{});
  ASSERT_FALSE(plan.ok());
  EXPECT_EQ(plan.status().code(), StatusCode::kResourceExhausted);
  const std::string& msg = plan.status().message();
  EXPECT_NE(msg.find("349.2 GB"), std::string::npos) << msg;  // the f16 weights
  EXPECT_NE(msg.find("343.6 GB"), std::string::npos) << msg;  // 8 x 40 GiB
  EXPECT_NE(msg.find("5.6 GB too few for the weights alone"), std::string::npos) << msg;
  EXPECT_NE(msg.find("short by"), std::string::npos) << msg;
  EXPECT_NE(plan.status().hint().find("--gpus 16"), std::string::npos) << plan.status().hint();
  // Every candidate is listed as not fitting, each saying by how much.
  Result<InferencePlan> all =
      enumerate_inference(c, preset("p4d.24xlarge"), 8, Objective::kLatency, Workload{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->chosen, -1);
  for (const InferenceCandidate& cand : all->candidates) {
    EXPECT_FALSE(cand.fits);
    EXPECT_NE(cand.why_not.find("short by"), std::string::npos);
  }
  // The 80 GB part holds it.
  Result<InferencePlan> p4de =
      plan_inference(c, preset("p4de.24xlarge"), 8, Objective::kLatency, Workload{});
  ASSERT_TRUE(p4de.ok()) << p4de.status().to_string();
  EXPECT_EQ(p4de->candidates[p4de->chosen].tp, 8);
}

TEST(InferencePlan, TensorParallelismMustDivideTheHeads) {
  const DecoderConfig c = shape("gpt2-xl");  // 25 heads
  Result<Cluster> cluster = with_devices(preset("dgx-h100"), 8);
  ASSERT_TRUE(cluster.ok());
  Result<InferenceCandidate> bad = predict_inference(c, *cluster, 2, 4, Workload{});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("does not divide the 25 heads"), std::string::npos)
      << bad.status().message();
  Result<InferencePlan> plan =
      enumerate_inference(c, preset("dgx-h100"), 8, Objective::kLatency, Workload{});
  ASSERT_TRUE(plan.ok());
  ASSERT_EQ(plan->candidates.size(), 1u);
  EXPECT_EQ(plan->candidates[0].tp, 1);
  EXPECT_EQ(plan->skipped.size(), 3u);  // tp 2, 4, 8
  // Across hosts and beyond the layers.
  EXPECT_FALSE(predict_inference(shape("gpt2"), *cluster, 1, 16, Workload{}).ok());
  Result<Cluster> two_hosts = with_devices(preset("dgx-h100"), 16);
  ASSERT_TRUE(two_hosts.ok());
  Result<InferenceCandidate> wide = predict_inference(shape("opt-175b"), *two_hosts, 16, 1, {});
  ASSERT_FALSE(wide.ok());
  EXPECT_NE(wide.status().message().find("inside one host"), std::string::npos);
}

TEST(InferencePlan, BadInputIsNamed) {
  Result<DecoderConfig> unknown = decoder_preset("opt-176b");
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().hint().find("opt-175b"), std::string::npos);
  EXPECT_FALSE(parse_objective("fast").ok());
  Workload w;
  w.prompt_len = 2000;
  w.output_len = 100;
  Result<InferencePlan> plan =
      enumerate_inference(shape("opt-30b"), preset("p4de.24xlarge"), 8, Objective::kLatency, w);
  ASSERT_FALSE(plan.ok());
  EXPECT_NE(plan.status().message().find("2048 positions"), std::string::npos);
  Result<InferencePlan> odd =
      enumerate_inference(shape("opt-30b"), preset("p4de.24xlarge"), 12, Objective::kLatency, {});
  EXPECT_FALSE(odd.ok());  // 12 devices are not whole hosts of 8
}

TEST(InferencePlan, ReadsAModelDirectory) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("alpa_inference_plan_" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "config.json")
      << R"({"model_type": "llama", "vocab_size": 32000, "hidden_size": 8192,
             "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
             "intermediate_size": 28672, "max_position_embeddings": 4096,
             "hidden_act": "silu", "tie_word_embeddings": false})";
  Result<DecoderConfig> c = load_decoder_shape(dir.string());
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(decoder_parameters(*c), decoder_parameters(shape("llama-2-70b")));
}

}  // namespace
}  // namespace alpa::serve
