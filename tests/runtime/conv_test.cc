// conv2d, conv2d_grad_input and conv2d_grad_filter against naive loops (stride 2, asymmetric
// padding, dilation 2, groups 2, the 1x1 fast path), and the adjoint identities
// <conv(x, w), g> == <x, grad_input(g, w)> == <w, grad_filter(x, g)>.
#include "runtime_test_util.h"

namespace alpa {
namespace {

using testing::f32;

struct ConvCase {
  const char* name;
  Shape x, w;  // [N, C, H, W], [O, C/groups, KH, KW]
  ConvAttrs attrs;
};

Shape conv_out_shape(const ConvCase& c) {
  const auto& a = c.attrs;
  return {c.x[0], c.w[0],
          conv_output_size(c.x[2], c.w[2], a.stride[0], a.padding[0], a.padding[1], a.dilation[0]),
          conv_output_size(c.x[3], c.w[3], a.stride[1], a.padding[2], a.padding[3], a.dilation[1])};
}

// Calls f(n, o, oy, ox, c, i, j, x_index, w_index, y_index) for every multiply-add of the
// convolution whose input element lies inside the image.
template <typename F>
void for_each_tap(const ConvCase& c, const Shape& ys, F f) {
  const auto& a = c.attrs;
  const int64_t cg = c.w[1], og = c.w[0] / a.groups;
  for (int64_t n = 0; n < ys[0]; ++n)
    for (int64_t o = 0; o < ys[1]; ++o)
      for (int64_t oy = 0; oy < ys[2]; ++oy)
        for (int64_t ox = 0; ox < ys[3]; ++ox)
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t i = 0; i < c.w[2]; ++i)
              for (int64_t j = 0; j < c.w[3]; ++j) {
                const int64_t iy = oy * a.stride[0] - a.padding[0] + i * a.dilation[0];
                const int64_t ix = ox * a.stride[1] - a.padding[2] + j * a.dilation[1];
                if (iy < 0 || iy >= c.x[2] || ix < 0 || ix >= c.x[3]) continue;
                const int64_t ch = (o / og) * cg + ci;
                const int64_t xi = ((n * c.x[1] + ch) * c.x[2] + iy) * c.x[3] + ix;
                const int64_t wi = ((o * cg + ci) * c.w[2] + i) * c.w[3] + j;
                const int64_t yi = ((n * ys[1] + o) * ys[2] + oy) * ys[3] + ox;
                f(xi, wi, yi);
              }
}

double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

void check_case(const ConvCase& c, int threads) {
  const Shape ys = conv_out_shape(c);
  const TensorType xt = f32(c.x), wt = f32(c.w), yt = f32(ys);
  Builder b("conv");
  Value x = b.parameter("x", xt, ParamRole::kInput);
  Value w = b.parameter("w", wt, ParamRole::kInput);
  Value g = b.parameter("g", yt, ParamRole::kInput);
  b.output("y", b.conv2d(x, w, c.attrs));
  b.output("dx", b.conv2d_grad_input(g, w, c.attrs, xt));
  b.output("dw", b.conv2d_grad_filter(x, g, c.attrs, wt));
  Graph graph = testing::finish(b);
  Tensor xv = testing::random_tensor(xt, 11), wv = testing::random_tensor(wt, 12),
         gv = testing::random_tensor(yt, 13);

  std::vector<double> y(static_cast<size_t>(num_elements(ys))), dx(static_cast<size_t>(xv.size())),
      dw(static_cast<size_t>(wv.size()));
  for_each_tap(c, ys, [&](int64_t xi, int64_t wi, int64_t yi) {
    y[yi] += static_cast<double>(xv.data()[xi]) * wv.data()[wi];
    dx[xi] += static_cast<double>(gv.data()[yi]) * wv.data()[wi];
    dw[wi] += static_cast<double>(gv.data()[yi]) * xv.data()[xi];
  });

  std::vector<Tensor> out = testing::run_graph(graph, {xv, wv, gv}, threads);
  ASSERT_EQ(out.size(), 3u);
  const std::string what = std::string(c.name) + " threads=" + std::to_string(threads);
  testing::expect_near(out[0].to_vector(), y, 1e-4, 1e-4, what + " conv2d");
  testing::expect_near(out[1].to_vector(), dx, 1e-4, 1e-4, what + " grad_input");
  testing::expect_near(out[2].to_vector(), dw, 1e-4, 1e-4, what + " grad_filter");

  // Adjoints: <conv(x, w), g> = <x, grad_input(g, w)> = <w, grad_filter(x, g)>.
  const double lhs = dot(out[0].to_vector(), gv.to_vector());
  const double via_input = dot(xv.to_vector(), out[1].to_vector());
  const double via_filter = dot(wv.to_vector(), out[2].to_vector());
  const double tol = 1e-4 * (1.0 + std::fabs(lhs));
  EXPECT_NEAR(via_input, lhs, tol) << what;
  EXPECT_NEAR(via_filter, lhs, tol) << what;
}

const std::vector<ConvCase>& cases() {
  static const std::vector<ConvCase> kCases = {
      {"stride 2, asymmetric padding",
       {2, 3, 9, 8},
       {4, 3, 3, 2},
       {{2, 2}, {1, 2, 0, 1}, {1, 1}, 1}},
      {"dilation 2, groups 2", {2, 4, 10, 9}, {6, 2, 3, 3}, {{1, 1}, {2, 1, 1, 2}, {2, 2}, 2}},
      {"mixed strides and dilations, groups 2",
       {1, 6, 11, 7},
       {4, 3, 2, 3},
       {{2, 1}, {0, 1, 2, 0}, {2, 1}, 2}},
      {"1x1 stride 1 (direct path)", {2, 5, 4, 6}, {7, 5, 1, 1}, {{1, 1}, {0, 0, 0, 0}, {1, 1}, 1}},
      {"1x1 groups 2 (direct path)", {2, 4, 3, 3}, {6, 2, 1, 1}, {{1, 1}, {0, 0, 0, 0}, {1, 1}, 2}},
      {"1x1 stride 2", {1, 3, 5, 5}, {2, 3, 1, 1}, {{2, 2}, {0, 0, 0, 0}, {1, 1}, 1}},
      {"padding larger than the kernel reach",
       {1, 2, 3, 3},
       {2, 2, 2, 2},
       {{1, 1}, {3, 3, 3, 3}, {1, 1}, 1}},
  };
  return kCases;
}

TEST(Conv2d, MatchesNaiveLoopsAndAdjointsOneThread) {
  for (const ConvCase& c : cases()) check_case(c, 1);
}

TEST(Conv2d, MatchesNaiveLoopsAndAdjointsTwoThreads) {
  for (const ConvCase& c : cases()) check_case(c, 2);
}

}  // namespace
}  // namespace alpa
