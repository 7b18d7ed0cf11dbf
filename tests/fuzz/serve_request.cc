// Fuzz target: an HTTP request body of /v1/completions and /v1/chat/completions (malformed
// JSON, wrong types, huge or negative numbers, unknown models, long prompts). The first byte
// picks the endpoint; a body the server accepts is queued, run for two engine steps and
// cancelled, and every block must return to the cache.
#include <memory>
#include <string>

#include "alpa/data/bpe_tokenizer.h"
#include "alpa/serve/api.h"
#include "alpa/serve/engine.h"
#include "fuzz_target.h"

namespace {

alpa::serve::LoadedModel tiny_model() {
  using namespace alpa::serve;
  DecoderConfig c;
  c.family = Family::kGpt2;
  c.vocab = 257;
  c.hidden = 16;
  c.layers = 1;
  c.heads = 2;
  c.kv_heads = 2;
  c.head_dim = 8;
  c.intermediate = 32;
  c.max_positions = 64;
  c.eos_id = 256;
  // A byte-level vocabulary without merges: every byte is a token.
  std::string vocab = "{";
  for (int b = 0; b < 256; ++b)
    vocab += "\"<" + std::to_string(b) + ">\": " + std::to_string(b) + ",";
  vocab += "\"<|endoftext|>\": 256}";
  LoadedModel m;
  m.name = "tiny";
  m.config = c;
  m.decoder = std::make_shared<const Decoder>(Decoder::random(c, 1));
  auto tok = alpa::BpeTokenizer::from_text(vocab, "");
  if (tok.ok()) m.tokenizer = std::make_shared<alpa::BpeTokenizer>(std::move(*tok));
  m.eos_id = 256;
  return m;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace alpa::serve;
  static LoadedModel model = tiny_model();
  static Engine engine(model, [] {
    EngineOptions o;
    o.block_size = 4;
    o.num_blocks = 64;
    o.threads = 1;
    return o;
  }());
  if (size == 0) return 0;
  const bool chat = data[0] & 1;
  const std::string_view body = alpa::fuzz::text_of(data + 1, size - 1);
  auto parsed = parse_request(body, model, chat);
  if (auto* req = std::get_if<ApiRequest>(&parsed)) {
    auto r = engine.submit(req->prompt, req->params);
    if (r.ok()) {
      engine.step();
      engine.step();
      (*r)->cancel();
      while (engine.step()) {
      }
      (void)response_body(*req, **r, model, "x", 0);
    }
    if (engine.metrics().kv_blocks_used != 0) __builtin_trap();
  } else {
    const ApiError& e = std::get<ApiError>(parsed);
    if (e.status < 400 || e.status > 499 || e.message.empty()) __builtin_trap();
    (void)dump_json(e.body());
  }
  return 0;
}
