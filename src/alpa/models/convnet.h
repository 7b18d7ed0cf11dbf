// A small convolutional classifier (NCHW):
//   x (B, C, H, W) -> [conv 3x3 pad 1 + ReLU] x layers (channels double each layer, stride 2
//   after the first) -> global average pool -> linear (classes) -> cross-entropy.
// Parameter names: c<i>.w (O, I, 3, 3), c<i>.b (O), out.w, out.b. Inputs: x, labels (i32 (B)).
// Outputs: loss, logits (B, classes).
#pragma once

#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct ConvNetConfig {
  int64_t batch = 8;
  int64_t channels = 4;  // input channels
  int64_t width = 8;     // channels of the first conv
  int64_t image = 8;     // H = W
  int64_t layers = 2;
  int64_t classes = 4;
};

Result<Graph> build_convnet(const ConvNetConfig& c);

}  // namespace alpa
