// Wide-ResNet image classifier (bottleneck blocks, batch norm), at any size (the paper's
// Wide-ResNet family). NCHW activations, OIHW filters.
//
// x (B, 3, H, W)
//   -> stem: conv 7x7 stride 2 pad 3 (base channels), BN, ReLU, max-pool 3x3 stride 2 (SAME)
//   -> 4 stages; stage s has f = base * 2^s bottleneck channels and blocks[s] blocks:
//        y = relu(bn1(conv1x1(x -> f)))
//        y = relu(bn2(conv3x3(y -> f * width, stride)))     stride 2 in the first block of
//        y = bn3(conv1x1(y -> 4 f))                          stages 1..3, else 1
//        out = relu(y + shortcut), shortcut = bn(conv1x1 stride(x -> 4 f)) when the shape
//        changes (first block of each stage), else x
//   -> global average pool -> linear (classes) -> cross-entropy vs labels
// Convolutions have no bias (each is followed by batch norm). Batch norm is in training mode:
// statistics over (B, H, W) of the batch this graph sees (one micro-batch), learnable scale g
// and shift b, eps 1e-5; bn3's scale starts at zero, so every block starts as its shortcut.
// There is no running average: this is a training graph.
//
// The width factor multiplies the output channels of the 3x3 conv only (and so the input of
// the expanding 1x1 conv), as in Alpa's benchmark model (alpa/model/wide_resnet.py); with that
// convention the paper's nominal sizes (250M ... 13B) are the parameter counts of the model.
// The IR has no max-pool op: the stem's pool is a separable max of three shifted slices per
// spatial dim (stride 1), then every second position is kept (reshape + slice). The pool pads
// with 0, which equals padding with -inf because its input is a ReLU output (>= 0).
//
// Parameter names: stem.w, stem.bn.{g,b}, s<i>.b<j>.{conv1,conv2,conv3,proj}.w,
// s<i>.b<j>.{bn1,bn2,bn3,proj_bn}.{g,b}, fc.w (4 f_3, classes), fc.b. Inputs: x (B, 3, H, W),
// labels (i32 (B)). Outputs: loss, logits (B, classes).
// Building a graph allocates no weights: the 13B model builds in milliseconds.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "alpa/ir/builder.h"
#include "alpa/ir/graph.h"
#include "alpa/support/status.h"

namespace alpa {

struct WResNetConfig {
  int64_t batch = 8;     // images per forward pass (one micro-batch)
  int64_t image = 16;    // H = W
  int64_t channels = 3;  // input channels
  int64_t classes = 10;
  int64_t base = 4;   // stem channels; stage s has base * 2^s bottleneck channels
  int64_t width = 2;  // width factor of the 3x3 convs
  std::vector<int64_t> blocks = {1, 1, 1, 1};  // bottleneck blocks per stage (4 stages)
  DType dtype = DType::kF32;
};

// Named sizes: tiny, small (CPU), and the paper's 250m, 500m, 1b, 2b, 4b, 6.8b, 13b (224x224
// images, 1000 classes, fp32, batch 1536).
Result<WResNetConfig> wresnet_preset(std::string_view size);
std::vector<std::string> wresnet_preset_names();
// Blocks per stage of a standard bottleneck depth: 14 [1,1,1,1], 26 [2,2,2,2], 38 [3,3,3,3],
// 50 [3,4,6,3], 101 [3,4,23,3], 152 [3,8,36,3]. Depth = 3 x blocks + 2.
Result<std::vector<int64_t>> wresnet_blocks_for_depth(int64_t depth);
int64_t wresnet_depth(const WResNetConfig& c);
Status validate_wresnet_config(const WResNetConfig& c);

// Weight elements: every conv filter, batch-norm scale and shift, and the classifier (the
// "params" collection of a flax model; batch-norm running statistics are not parameters).
int64_t wresnet_parameter_count(const WResNetConfig& c);

Result<Graph> build_wresnet(const WResNetConfig& c);

// ---- layers (used by build_wresnet; tests check them on their own) ----

// x (B, C, H, W) -> (B, C, H, W): training-mode batch norm, statistics over (B, H, W) per
// channel (biased variance), then scale gamma (C) and shift beta (C).
Value batch_norm_train(Builder& b, Value x, Value gamma, Value beta, double eps = 1e-5);

// x (B, C, H, W), x >= 0 -> (B, C, ceil(H / 2), ceil(W / 2)): 3x3 max-pool, stride 2, SAME
// padding (pads with 0, which is -inf for a non-negative input).
Value max_pool_3x3_s2(Builder& b, Value x);

}  // namespace alpa
