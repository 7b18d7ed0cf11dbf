// Kernel of dot_general on cblas_sgemm (bf16 operands: oneDNN's bf16 matmul, gemm_bf16.h).
//
// result = [batch dims (lhs order)..., lhs free dims..., rhs free dims...], written as a
// contiguous [batch, M, N]. Each operand is used in place whenever its free dims collapse to
// one (extent, stride) and its contracting dims collapse to one (extent, stride) with one of
// the two strides equal to 1: that is a matrix sgemm reads directly, transposed or not, with
// the other stride as leading dimension. Batch dims may have any strides: one sgemm per batch
// index at computed offsets. Attention's q:[B,T,H,D] with batch {0,2} and contracting {3} is
// used in place with lda = H*D. Only an operand that fails this is copied, into
// [batch..., free..., contract...] order (a strided copy), which always qualifies.
//
// The contracting pairs may be reordered freely (the sum is the same); they are ordered by
// decreasing lhs stride so that the common layouts collapse on both sides.
#include <algorithm>
#include <numeric>

#include "alpa/runtime/gemm.h"
#include "alpa/runtime/gemm_bf16.h"
#include "alpa/runtime/kernel_util.h"

namespace alpa::kernels {
namespace {

// One operand seen as a batch of matrices [rows = free, cols = contract].
struct MatrixView {
  const float* data = nullptr;
  std::vector<int64_t> batch_strides;  // one per batch dim (pairing order)
  int64_t free_ext = 1, free_stride = 0;
  int64_t con_ext = 1, con_stride = 0;
  bool ok = false;
};

// Collapses `dims` (in the given order, outer to inner) into one (extent, stride), ignoring
// extent-1 dims. Returns false if they are not uniformly strided.
bool collapse_dims(const Shape& shape, const std::vector<int64_t>& strides,
                   const std::vector<int64_t>& dims, int64_t* ext, int64_t* stride) {
  *ext = 1;
  *stride = 0;
  bool any = false;
  for (int64_t d : dims) {
    const int64_t e = shape[d];
    if (e == 1) continue;
    if (any && *stride != strides[d] * e) return false;
    *ext *= e;
    *stride = strides[d];
    any = true;
  }
  if (!any) *stride = 0;  // no real dim: the stride is free
  return true;
}

MatrixView view_of(const Tensor& t, const std::vector<int64_t>& batch,
                   const std::vector<int64_t>& free, const std::vector<int64_t>& con) {
  MatrixView v;
  v.data = t.data();
  const std::vector<int64_t> st = row_major_strides(t.shape());
  for (int64_t d : batch) v.batch_strides.push_back(st[d]);
  v.ok = collapse_dims(t.shape(), st, free, &v.free_ext, &v.free_stride) &&
         collapse_dims(t.shape(), st, con, &v.con_ext, &v.con_stride);
  return v;
}

// sgemm operand description of a [rows, cols] matrix with strides (row_stride, col_stride):
// NoTrans with ld = row_stride when col_stride == 1, Trans with ld = col_stride when
// row_stride == 1. Extent-1 dims have a free stride. Returns false if neither fits.
bool as_blas(int64_t rows, int64_t rs, int64_t cols, int64_t cs, CBLAS_TRANSPOSE* trans,
             int64_t* ld) {
  if (rows <= 1) rs = std::max<int64_t>(cols, 1);  // any stride works for a single row
  if (cols <= 1) cs = 1;
  if (cs == 1 && rs >= std::max<int64_t>(cols, 1)) {
    *trans = CblasNoTrans;
    *ld = rs;
    return true;
  }
  if (rows <= 1) rs = 1;
  if (rs == 1 && cs >= std::max<int64_t>(rows, 1)) {
    *trans = CblasTrans;
    *ld = cs;
    return true;
  }
  return false;
}

// Copies operand `t` into [batch..., free..., contract...] order; returns the view of the copy.
MatrixView copy_operand(const KernelContext& ctx, const Tensor& t,
                        const std::vector<int64_t>& batch, const std::vector<int64_t>& free,
                        const std::vector<int64_t>& con) {
  const std::vector<int64_t> st = row_major_strides(t.shape());
  std::vector<int64_t> order = batch;
  order.insert(order.end(), free.begin(), free.end());
  order.insert(order.end(), con.begin(), con.end());
  std::vector<int64_t> ext, strides;
  for (int64_t d : order) {
    ext.push_back(t.shape()[d]);
    strides.push_back(st[d]);
  }
  float* buf = ctx.scratch(t.size());
  strided_copy(ctx, t.data(), ext, strides, buf);
  MatrixView v;
  v.data = buf;
  int64_t m = 1, k = 1;
  for (int64_t d : free) m *= t.shape()[d];
  for (int64_t d : con) k *= t.shape()[d];
  v.free_ext = m;
  v.con_ext = k;
  v.free_stride = k;
  v.con_stride = 1;
  // Batch strides of the copy: row-major over the batch extents, times m * k.
  v.batch_strides.resize(batch.size());
  int64_t acc = m * k;
  for (size_t i = batch.size(); i-- > 0;) {
    v.batch_strides[i] = acc;
    acc *= t.shape()[batch[i]];
  }
  v.ok = true;
  return v;
}

// bf16 operands (as the graph types them) run a bf16 GEMM with f32 accumulation (gemm_bf16.h).
// f16 operands are f16-representable f32 values multiplied by sgemm: exact products, f32 sums.
bool operands_bf16(const KernelContext& ctx, const Node& node, const Tensor& lhs,
                   const Tensor& rhs) {
  if (ctx.graph != nullptr)
    return ctx.graph->type(node.operands[0]).dtype == DType::kBF16 &&
           ctx.graph->type(node.operands[1]).dtype == DType::kBF16;
  return lhs.dtype() == DType::kBF16 && rhs.dtype() == DType::kBF16;
}

Status dot_kernel(const KernelContext& ctx, const Node& node, std::span<const Tensor* const> in,
                  Tensor& out) {
  const DotAttrs& a = node.attr<DotAttrs>();
  const Tensor& lhs = *in[0];
  const Tensor& rhs = *in[1];
  const std::vector<int64_t> lst = row_major_strides(lhs.shape());

  // Contracting pairs ordered by decreasing lhs stride (ties: original order).
  std::vector<size_t> pairs(a.lhs_contract.size());
  std::iota(pairs.begin(), pairs.end(), 0);
  std::stable_sort(pairs.begin(), pairs.end(), [&](size_t i, size_t j) {
    return lst[a.lhs_contract[i]] > lst[a.lhs_contract[j]];
  });
  std::vector<int64_t> lcon, rcon;
  for (size_t p : pairs) {
    lcon.push_back(a.lhs_contract[p]);
    rcon.push_back(a.rhs_contract[p]);
  }
  auto free_dims = [](const Tensor& t, const std::vector<int64_t>& batch,
                      const std::vector<int64_t>& con) {
    std::vector<int64_t> f;
    for (int64_t d = 0; d < t.rank(); ++d)
      if (std::find(batch.begin(), batch.end(), d) == batch.end() &&
          std::find(con.begin(), con.end(), d) == con.end())
        f.push_back(d);
    return f;
  };
  const std::vector<int64_t> lfree = free_dims(lhs, a.lhs_batch, lcon);
  const std::vector<int64_t> rfree = free_dims(rhs, a.rhs_batch, rcon);

  std::vector<int64_t> batch_ext;
  int64_t nbatch = 1;
  for (int64_t d : a.lhs_batch) {
    batch_ext.push_back(lhs.shape()[d]);
    nbatch *= lhs.shape()[d];
  }

  MatrixView lv = view_of(lhs, a.lhs_batch, lfree, lcon);
  MatrixView rv = view_of(rhs, a.rhs_batch, rfree, rcon);
  // From the shapes: a view that failed to collapse has partial extents.
  auto extent = [](const Tensor& t, const std::vector<int64_t>& dims) {
    int64_t e = 1;
    for (int64_t d : dims) e *= t.shape()[d];
    return e;
  };
  const int64_t m = extent(lhs, lfree), n = extent(rhs, rfree), k = extent(lhs, lcon);
  float* y = out.data();
  if (out.size() == 0) return ok_status();
  if (k == 0) {
    fill(ctx, y, out.size(), 0.0f);
    return ok_status();
  }

  // lhs is [M, K]: rows = free, cols = contract. rhs is [K, N]: rows = contract, cols = free.
  CBLAS_TRANSPOSE ta, tb;
  int64_t lda, ldb;
  if (!lv.ok || !as_blas(m, lv.free_stride, k, lv.con_stride, &ta, &lda)) {
    lv = copy_operand(ctx, lhs, a.lhs_batch, lfree, lcon);
    ALPA_CHECK(as_blas(m, lv.free_stride, k, lv.con_stride, &ta, &lda));
  }
  if (!rv.ok || !as_blas(k, rv.con_stride, n, rv.free_stride, &tb, &ldb)) {
    rv = copy_operand(ctx, rhs, a.rhs_batch, rfree, rcon);
    // The copy is [N, K] row-major: as a [K, N] matrix it is transposed with ld = K.
    ALPA_CHECK(as_blas(k, rv.con_stride, n, rv.free_stride, &tb, &ldb));
  }

  auto offsets = [&](int64_t b, int64_t* loff, int64_t* roff) {
    int64_t rem = b;
    *loff = *roff = 0;
    for (size_t i = batch_ext.size(); i-- > 0;) {
      const int64_t idx = rem % batch_ext[i];
      rem /= batch_ext[i];
      *loff += idx * lv.batch_strides[i];
      *roff += idx * rv.batch_strides[i];
    }
  };
  if (operands_bf16(ctx, node, lhs, rhs)) {
    std::vector<int64_t> loffs(static_cast<size_t>(nbatch)), roffs(loffs.size());
    for (int64_t b = 0; b < nbatch; ++b) offsets(b, &loffs[b], &roffs[b]);
    bf16_batched_gemm(ctx, nbatch, m, n, k, {lv.data, ta, lda, loffs.data()},
                      {rv.data, tb, ldb, roffs.data()}, y);
    return ok_status();
  }
  batched_gemm(ctx, nbatch, [&](int64_t b, const KernelContext& c) {
    int64_t loff, roff;
    offsets(b, &loff, &roff);
    parallel_gemm(c, ta, tb, m, n, k, lv.data + loff, lda, rv.data + roff, ldb, 0.0f, y + b * m * n,
                  std::max<int64_t>(n, 1));
  });
  return ok_status();
}

}  // namespace

void register_dot_kernels(KernelFn* table) {
  set_kernel(table, OpKind::kDotGeneral, dot_kernel);
}

}  // namespace alpa::kernels
