// Kernels of conv2d, conv2d_grad_input and conv2d_grad_filter: im2col / col2im + sgemm.
//
// Layouts: input x [N, C, H, W], filter w [O, C/g, KH, KW], output y [N, O, OH, OW];
// padding {top, bottom, left, right}. Per image n and group g (Cg = C/g, Og = O/g):
//   col   = im2col(x[n, g])                 [Cg*KH*KW, OH*OW]
//   conv2d:       y[n, g]   = w[g] . col               ([Og, CgKK] x [CgKK, OHW])
//   grad_input:   dx[n, g] += col2im(w[g]^T . dy[n, g])  ([CgKK, Og] x [Og, OHW])
//   grad_filter:  dw[g]    += dy[n, g] . col^T         ([Og, OHW] x [OHW, CgKK]), summed over n
// A 1x1 filter with stride 1 and no padding uses x[n, g] itself as `col`.
#include <algorithm>
#include <cstring>

#include <cblas.h>

#include "alpa/runtime/gemm.h"
#include "alpa/runtime/kernel_util.h"

namespace alpa::kernels {
namespace {

struct ConvGeometry {
  int64_t n, c, h, w;  // input
  int64_t o, kh, kw;   // filter (per group input channels = c / groups)
  int64_t oh, ow;      // output
  int64_t sh, sw, pt, pl, dh, dw;
  int64_t groups;
  int64_t cg() const { return c / groups; }
  int64_t og() const { return o / groups; }
  int64_t kk() const { return cg() * kh * kw; }  // rows of col
  int64_t ohw() const { return oh * ow; }
  bool identity_col() const {
    return kh == 1 && kw == 1 && sh == 1 && sw == 1 && pt == 0 && pl == 0 && oh == h && ow == w;
  }
};

ConvGeometry geometry(const ConvAttrs& a, const Shape& x, const Shape& w, const Shape& y) {
  return ConvGeometry{x[0],         x[1],          x[2],          x[3],
                      w[0],         w[2],          w[3],          y[2],
                      y[3],         a.stride[0],   a.stride[1],   a.padding[0],
                      a.padding[2], a.dilation[0], a.dilation[1], a.groups};
}

// col[(c*KH + i)*KW + j, oh*OW + ow] = x[c, oh*sh - pt + i*dh, ow*sw - pl + j*dw] (0 outside).
// x points at one image's group: [Cg, H, W].
void im2col(const KernelContext& ctx, const ConvGeometry& g, const float* x, float* col) {
  const int64_t rows = g.kk(), ohw = g.ohw();
  parallel_for(ctx, rows, std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(ohw, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t r = b; r < e; ++r) {
                   const int64_t c = r / (g.kh * g.kw), i = (r / g.kw) % g.kh, j = r % g.kw;
                   const float* xc = x + c * g.h * g.w;
                   float* dst = col + r * ohw;
                   // Output columns whose input column is inside [0, W).
                   const int64_t off_w = j * g.dw - g.pl;
                   for (int64_t oy = 0; oy < g.oh; ++oy) {
                     const int64_t iy = oy * g.sh - g.pt + i * g.dh;
                     float* d = dst + oy * g.ow;
                     if (iy < 0 || iy >= g.h) {
                       std::fill(d, d + g.ow, 0.0f);
                       continue;
                     }
                     const float* src = xc + iy * g.w;
                     if (g.sw == 1) {
                       const int64_t lo = std::clamp<int64_t>(-off_w, 0, g.ow);
                       const int64_t hi = std::clamp<int64_t>(g.w - off_w, lo, g.ow);
                       std::fill(d, d + lo, 0.0f);
                       std::memcpy(d + lo, src + lo + off_w,
                                   static_cast<size_t>(hi - lo) * sizeof(float));
                       std::fill(d + hi, d + g.ow, 0.0f);
                     } else {
                       for (int64_t ox = 0; ox < g.ow; ++ox) {
                         const int64_t ix = ox * g.sw + off_w;
                         d[ox] = (ix >= 0 && ix < g.w) ? src[ix] : 0.0f;
                       }
                     }
                   }
                 }
               });
}

// x[c, ...] += the col entries that im2col would have read from there. x is zeroed first by
// the caller. Parallel over channels: each channel's rows write only that channel.
void col2im(const KernelContext& ctx, const ConvGeometry& g, const float* col, float* x) {
  const int64_t ohw = g.ohw(), kk2 = g.kh * g.kw;
  parallel_for(ctx, g.cg(), std::max<int64_t>(1, kCopyGrain / std::max<int64_t>(kk2 * ohw, 1)),
               [&](int64_t b, int64_t e) {
                 for (int64_t c = b; c < e; ++c) {
                   float* xc = x + c * g.h * g.w;
                   for (int64_t i = 0; i < g.kh; ++i) {
                     for (int64_t j = 0; j < g.kw; ++j) {
                       const float* src = col + ((c * g.kh + i) * g.kw + j) * ohw;
                       const int64_t off_w = j * g.dw - g.pl;
                       for (int64_t oy = 0; oy < g.oh; ++oy) {
                         const int64_t iy = oy * g.sh - g.pt + i * g.dh;
                         if (iy < 0 || iy >= g.h) continue;
                         float* dst = xc + iy * g.w;
                         const float* s = src + oy * g.ow;
                         const int64_t lo = std::clamp<int64_t>((-off_w + g.sw - 1) / g.sw, 0,
                                                                g.ow);  // first ox with ix >= 0
                         for (int64_t ox = lo; ox < g.ow; ++ox) {
                           const int64_t ix = ox * g.sw + off_w;
                           if (ix >= g.w) break;
                           dst[ix] += s[ox];
                         }
                       }
                     }
                   }
                 }
               });
}

// conv2d(x, w) -> y
Status conv2d_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                     Tensor& out) {
  const Tensor& x = *in[0];
  const Tensor& w = *in[1];
  const ConvGeometry g = geometry(node.attr<ConvAttrs>(), x.shape(), w.shape(), out.shape());
  const int64_t kk = g.kk(), ohw = g.ohw(), og = g.og();
  if (out.size() == 0) return ok_status();
  if (kk == 0) {
    fill(ctx, out.data(), out.size(), 0.0f);
    return ok_status();
  }
  float* col = g.identity_col() ? nullptr : ctx.scratch(kk * ohw);
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* xg = x.data() + (n * g.c + gi * g.cg()) * g.h * g.w;
      const float* cols = xg;
      if (col != nullptr) {
        im2col(ctx, g, xg, col);
        cols = col;
      }
      const float* wg = w.data() + gi * og * kk;
      float* yg = out.data() + (n * g.o + gi * og) * ohw;
      parallel_gemm(ctx, CblasNoTrans, CblasNoTrans, og, ohw, kk, wg, kk, cols, ohw, 0.0f, yg, ohw);
    }
  }
  return ok_status();
}

// conv2d_grad_input(dy, w) -> dx
Status conv2d_grad_input_kernel(const KernelContext& ctx, const Node& node,
                                std::span<const Tensor* const> in, Tensor& out) {
  const Tensor& dy = *in[0];
  const Tensor& w = *in[1];
  const ConvGeometry g = geometry(node.attr<ConvAttrs>(), out.shape(), w.shape(), dy.shape());
  const int64_t kk = g.kk(), ohw = g.ohw(), og = g.og();
  if (out.size() == 0) return ok_status();
  const bool direct = g.identity_col();
  if (!direct || og == 0) fill(ctx, out.data(), out.size(), 0.0f);
  if (og == 0 || ohw == 0) return ok_status();
  float* col = direct ? nullptr : ctx.scratch(kk * ohw);
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      float* dxg = out.data() + (n * g.c + gi * g.cg()) * g.h * g.w;
      const float* wg = w.data() + gi * og * kk;
      const float* dyg = dy.data() + (n * g.o + gi * og) * ohw;
      // col = w[g]^T . dy[n, g]: [CgKK, OHW]
      parallel_gemm(ctx, CblasTrans, CblasNoTrans, kk, ohw, og, wg, kk, dyg, ohw, 0.0f,
                    direct ? dxg : col, ohw);
      if (!direct) col2im(ctx, g, col, dxg);
    }
  }
  return ok_status();
}

// conv2d_grad_filter(x, dy) -> dw
Status conv2d_grad_filter_kernel(const KernelContext& ctx, const Node& node,
                                 std::span<const Tensor* const> in, Tensor& out) {
  const Tensor& x = *in[0];
  const Tensor& dy = *in[1];
  const ConvGeometry g = geometry(node.attr<ConvAttrs>(), x.shape(), out.shape(), dy.shape());
  const int64_t kk = g.kk(), ohw = g.ohw(), og = g.og();
  if (out.size() == 0) return ok_status();
  if (g.n == 0 || ohw == 0) {
    fill(ctx, out.data(), out.size(), 0.0f);
    return ok_status();
  }
  float* col = g.identity_col() ? nullptr : ctx.scratch(kk * ohw);
  for (int64_t n = 0; n < g.n; ++n) {
    for (int64_t gi = 0; gi < g.groups; ++gi) {
      const float* xg = x.data() + (n * g.c + gi * g.cg()) * g.h * g.w;
      const float* cols = xg;
      if (col != nullptr) {
        im2col(ctx, g, xg, col);
        cols = col;
      }
      const float* dyg = dy.data() + (n * g.o + gi * og) * ohw;
      float* dwg = out.data() + gi * og * kk;
      // dw[g] (+)= dy[n, g] . col^T: [Og, OHW] x [OHW, CgKK]
      parallel_gemm(ctx, CblasNoTrans, CblasTrans, og, kk, ohw, dyg, ohw, cols, ohw,
                    n == 0 ? 0.0f : 1.0f, dwg, kk);
    }
  }
  return ok_status();
}

}  // namespace

void register_conv_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kConv2d, conv2d_kernel);
  set_kernel(table, OpKind::kConv2dGradInput, conv2d_grad_input_kernel);
  set_kernel(table, OpKind::kConv2dGradFilter, conv2d_grad_filter_kernel);
}

}  // namespace alpa::kernels
