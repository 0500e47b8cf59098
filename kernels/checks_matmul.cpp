#include "kernels/checks_matmul.h"

#include <algorithm>
#include <climits>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"
#include "kernels/op_checks.h"

namespace grpo::checks {

namespace {

bool contains(std::span<const DType> dts, DType dt) { return std::find(dts.begin(), dts.end(), dt) != dts.end(); }

// As checks::tensor, with a set of accepted dtypes; with one dtype the message is tensor()'s.
void tensor_in(const char* op, const char* name, const Tensor& t, std::span<const DType> dts, Device dev,
               int ndim = -1) {
  if (!t.defined() || dts.size() == 1 || contains(dts, t.dtype)) {
    tensor(op, name, t, contains(dts, t.dtype) ? t.dtype : dts[0], dev, ndim);
    return;
  }
  std::ostringstream want;
  for (size_t i = 0; i < dts.size(); ++i) want << (i ? " or " : "") << dtype_name(dts[i]);
  GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected dtype " << want.str());
}

// The input's dtype, or f32 too (f32 results from bf16 inputs); one entry when they agree.
struct Wide {
  DType v[2];
  size_t n;
  explicit Wide(DType in) : v{in, DType::f32}, n(in == DType::f32 ? 1 : 2) {}
  std::span<const DType> span() const { return {v, n}; }
};

// cuBLAS and cblas take 32-bit sizes.
void blas_size(const char* op, const char* what, int64_t n, const Tensor& t) {
  GRPO_CHECK(n <= INT_MAX,
             op << ": " << what << " = " << n << " of " << t.str() << " exceeds the BLAS limit " << INT_MAX);
}

}  // namespace

bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data);
  const char* b0 = static_cast<const char*>(b.data);
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void no_alias(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in) {
  GRPO_CHECK(!overlaps(out, in), op << ": " << out_name << " " << out.str() << " overlaps " << in_name << " "
                                    << in.str() << " (outputs may not alias inputs)");
}

// ---- matmul ----------------------------------------------------------------------------

MatmulDims matmul_dims(const char* op, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                       const MatmulPolicy& p) {
  tensor_in(op, "a", a, p.dtypes, p.device);
  tensor(op, "b", b, a.dtype, p.device);
  GRPO_CHECK(a.ndim == 2 || a.ndim == 3, op << ": a is " << a.str() << ", expected 2 or 3 dimensions");
  GRPO_CHECK(b.ndim == a.ndim,
             op << ": a " << a.str() << " and b " << b.str() << ": both must be 2-D or both 3-D (batched)");
  MatmulDims d;
  if (a.ndim == 3) {
    GRPO_CHECK(a.shape[0] == b.shape[0], op << ": a " << a.str() << " and b " << b.str() << ": batch sizes "
                                            << a.shape[0] << " and " << b.shape[0] << " differ");
    d.batch = a.shape[0];
  }
  const int64_t a0 = a.size(-2), a1 = a.size(-1), b0 = b.size(-2), b1 = b.size(-1);
  d.M = trans_a ? a1 : a0;
  d.K = trans_a ? a0 : a1;
  const int64_t kb = trans_b ? b1 : b0;
  d.N = trans_b ? b0 : b1;
  GRPO_CHECK(d.K == kb, op << ": a " << a.str() << " and b " << b.str() << ": inner dimensions " << d.K << " and " << kb
                           << " differ (trans_a = " << (trans_a ? "true" : "false")
                           << ", trans_b = " << (trans_b ? "true" : "false") << ")");
  blas_size(op, "M", d.M, a);
  blas_size(op, "K", d.K, a);
  blas_size(op, "N", d.N, b);
  return d;
}

void matmul_out(const char* op, const char* name, const Tensor& t, const Tensor& a, const Tensor& b,
                const MatmulDims& d, bool wide, const MatmulPolicy& p) {
  const int ndim = a.ndim == 3 ? 3 : 2;
  if (wide)
    tensor_in(op, name, t, Wide(a.dtype).span(), p.device, ndim);
  else
    tensor(op, name, t, a.dtype, p.device, ndim);
  const bool ok = t.size(-2) == d.M && t.size(-1) == d.N && (a.ndim == 2 || t.shape[0] == d.batch);
  if (!ok) {
    if (a.ndim == 3)
      GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected [" << d.batch << ", " << d.M << ", " << d.N
                    << "] for a " << a.str() << " and b " << b.str());
    GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected [" << d.M << ", " << d.N << "] for a " << a.str()
                  << " and b " << b.str());
  }
}

void matmul_bias(const char* op, const char* name, const Tensor& bias, const Tensor& a, const MatmulDims& d,
                 const MatmulPolicy& p) {
  tensor_in(op, name, bias, Wide(a.dtype).span(), p.device, 1);
  shape(op, name, bias, bias.dtype, p.device, {d.N});
}

void grad_of(const char* op, const char* x_name, const Tensor& x, const char* g_name, const Tensor& g, bool wide) {
  if (!wide || x.dtype == DType::f32) {
    same(op, x_name, x, g_name, g);
    return;
  }
  GRPO_CHECK(g.defined() && same_shape(x, g) && (g.dtype == x.dtype || g.dtype == DType::f32) && g.device == x.device,
             op << ": " << x_name << " is " << x.str() << " but " << g_name << " is " << g.str()
                << " (they must match; " << g_name << " may also be f32)");
}

MatmulDims matmul_args(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias,
                       bool trans_a, bool trans_b, const MatmulPolicy& p) {
  const MatmulDims d = matmul_dims(op, a, b, trans_a, trans_b, p);
  matmul_out(op, "out", out, a, b, d, true, p);
  if (bias.defined()) matmul_bias(op, "bias", bias, a, d, p);
  no_alias(op, "out", out, "a", a);
  no_alias(op, "out", out, "b", b);
  no_alias(op, "out", out, "bias", bias);
  return d;
}

MatmulDims matmul_backward_args(const char* op, const Tensor& da, const Tensor& db, const Tensor& dbias,
                                const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                                const MatmulPolicy& p) {
  const MatmulDims d = matmul_dims(op, a, b, trans_a, trans_b, p);
  matmul_out(op, "dout", dout, a, b, d, false, p);
  if (da.defined()) grad_of(op, "a", a, "da", da, false);
  if (db.defined()) grad_of(op, "b", b, "db", db, true);
  if (dbias.defined()) matmul_bias(op, "dbias", dbias, a, d, p);
  for (const auto& [name, g] : {std::pair{"da", da}, std::pair{"db", db}, std::pair{"dbias", dbias}}) {
    no_alias(op, name, g, "dout", dout);
    no_alias(op, name, g, "a", a);
    no_alias(op, name, g, "b", b);
  }
  no_alias(op, "da", da, "db", db);
  no_alias(op, "da", da, "dbias", dbias);
  no_alias(op, "db", db, "dbias", dbias);
  return d;
}

// ---- embedding -------------------------------------------------------------------------

void embedding_args(const char* op, const Tensor& out, const Tensor& ids, const Tensor& table, const MatmulPolicy& p) {
  tensor(op, "ids", ids, DType::i32, p.device, 1);
  tensor_in(op, "table", table, p.dtypes, p.device, 2);
  const int64_t T = ids.shape[0], C = table.shape[1];
  tensor_in(op, "out", out, p.dtypes, p.device, 2);
  shape(op, "out", out, out.dtype, p.device, {T, C});
  no_alias(op, "out", out, "table", table);
}

void embedding_backward_args(const char* op, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                             const MatmulPolicy& p) {
  tensor(op, "ids", ids, DType::i32, p.device, 1);
  tensor_in(op, "dtable", dtable, p.dtypes, p.device, 2);
  const int64_t T = ids.shape[0], C = dtable.shape[1];
  tensor_in(op, "dout", dout, p.dtypes, p.device, 2);
  shape(op, "dout", dout, dout.dtype, p.device, {T, C});
  no_alias(op, "dtable", dtable, "dout", dout);
}

void bad_id(const char* op, int64_t t, int32_t id, const Tensor& table) {
  GRPO_THROW(op << ": ids[" << t << "] = " << id << " is outside [0, " << table.shape[0] << ") for table "
                << table.str());
}

void ids_in_range(const char* op, const int32_t* ids, int64_t n, const Tensor& table) {
  const int64_t V = table.shape[0];
  for (int64_t t = 0; t < n; ++t)
    if (ids[t] < 0 || ids[t] >= V) bad_id(op, t, ids[t], table);
}

// ---- grouped matmul --------------------------------------------------------------------

GroupedDims grouped_dims(const char* op, const Tensor& x, const Tensor& w, const Tensor& offsets,
                         const MatmulPolicy& p) {
  tensor_in(op, "x", x, p.dtypes, p.device, 2);
  tensor(op, "w", w, x.dtype, p.device, 3);
  GroupedDims d{w.shape[0], x.shape[0], w.shape[1], x.shape[1]};
  GRPO_CHECK(w.shape[2] == d.K, op << ": x " << x.str() << " and w " << w.str() << ": inner dimensions " << d.K
                                   << " and " << w.shape[2] << " differ");
  shape(op, "expert_offsets", offsets, DType::i32, p.device, {d.E + 1});
  blas_size(op, "R", d.R, x);
  blas_size(op, "K", d.K, x);
  blas_size(op, "N", d.N, w);
  return d;
}

void expert_offsets(const char* op, const int32_t* o, int64_t E, int64_t R, const Tensor& x) {
  GRPO_CHECK(o[0] == 0, op << ": expert_offsets[0] = " << o[0] << ", expected 0");
  for (int64_t e = 0; e < E; ++e)
    GRPO_CHECK(o[e + 1] >= o[e],
               op << ": expert_offsets decrease at expert " << e << " (" << o[e] << " then " << o[e + 1] << ")");
  GRPO_CHECK(o[E] == R, op << ": expert_offsets[" << E << "] = " << o[E] << ", expected " << R << " (the rows of x "
                           << x.str() << ")");
}

GroupedDims grouped_matmul_args(const char* op, const Tensor& out, const Tensor& x, const Tensor& w,
                                const Tensor& offsets, const MatmulPolicy& p) {
  const GroupedDims d = grouped_dims(op, x, w, offsets, p);
  tensor_in(op, "out", out, Wide(x.dtype).span(), p.device, 2);
  shape(op, "out", out, out.dtype, p.device, {d.R, d.N});
  no_alias(op, "out", out, "x", x);
  no_alias(op, "out", out, "w", w);
  return d;
}

GroupedDims grouped_matmul_backward_args(const char* op, const Tensor& dx, const Tensor& dw, const Tensor& dout,
                                         const Tensor& x, const Tensor& w, const Tensor& offsets,
                                         const MatmulPolicy& p) {
  const GroupedDims d = grouped_dims(op, x, w, offsets, p);
  shape(op, "dout", dout, x.dtype, p.device, {d.R, d.N});
  if (dx.defined()) grad_of(op, "x", x, "dx", dx, false);
  if (dw.defined()) grad_of(op, "w", w, "dw", dw, true);
  for (const auto& [name, g] : {std::pair{"dx", dx}, std::pair{"dw", dw}}) {
    no_alias(op, name, g, "dout", dout);
    no_alias(op, name, g, "x", x);
    no_alias(op, name, g, "w", w);
  }
  no_alias(op, "dx", dx, "dw", dw);
  return d;
}

}  // namespace grpo::checks
