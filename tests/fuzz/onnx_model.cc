// ONNX files: any bytes give a model or an error; a model imports at two batch sizes (or
// errors) and writes its weights back.
#include <map>

#include "alpa/onnx/onnx_model.h"
#include "fuzz_target.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = alpa::OnnxModel::parse(alpa::fuzz::text_of(data, size), "fuzz.onnx");
  if (!m.ok()) return 0;
  for (int64_t batch : {1, 3}) (void)(*m)->import(batch, alpa::OnnxLoss{}, true);
  (void)(*m)->import(2, alpa::OnnxLoss{"cross_entropy", ""});
  std::map<std::string, std::vector<float>> weights;
  for (alpa::OnnxWeight& w : (*m)->initial_values()) weights[w.name] = std::move(w.values);
  (void)(*m)->with_weights(weights);
  return 0;
}
