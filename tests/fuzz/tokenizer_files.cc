// Tokenizer files: the input is a vocabulary (JSON) and a merges list separated by a NUL byte;
// any bytes give a tokenizer or an error, and a tokenizer encodes and decodes a sample.
#include <cstring>
#include <string>

#include "alpa/data/bpe_tokenizer.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view in = alpa::fuzz::text_of(data, size);
  const size_t nul = in.find('\0');
  const std::string_view vocab = in.substr(0, nul);
  const std::string_view merges = nul == std::string_view::npos ? "" : in.substr(nul + 1);
  alpa::Result<alpa::BpeTokenizer> t = alpa::BpeTokenizer::from_text(vocab, merges, {});
  if (t.ok()) {
    alpa::Result<std::vector<int32_t>> ids = t->encode("Hello, world! It's 42 \xc3\xa9t\xc3\xa9.");
    if (ids.ok()) (void)t->decode(*ids);
  }
  return 0;
}
