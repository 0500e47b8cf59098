// CPU matmul, embedding and the MoE grouped matmul (f32, i32 ids/offsets).
//
// Every GEMM goes through OpenBLAS cblas_sgemm, which threads internally; batches and experts
// are looped serially around it (never sgemm inside an OpenMP region). The small loops here
// (bias, embedding rows) are parallelised with OpenMP over disjoint outputs: no atomics.
#include <cblas.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <numeric>
#include <utility>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"

namespace grpo {

namespace {

// Row-major C [M, N] (+)= op(A) @ op(B) with op(A) [M, K], op(B) [K, N]: A is [M, K] (or
// [K, M] when ta), B is [K, N] (or [N, K] when tb); C is overwritten unless accumulate.
// Handles empty sizes, where BLAS leading-dimension rules would otherwise reject a 0.
void gemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, const float* A, const float* B, bool accumulate,
          float* C) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // op(A) @ op(B) is all zeros
    if (!accumulate) std::memset(C, 0, size_t(M * N) * sizeof(float));
    return;
  }
  const int64_t lda = ta ? M : K, ldb = tb ? K : N;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, int(M), int(N), int(K),
              1.0f, A, int(lda), B, int(ldb), accumulate ? 1.0f : 0.0f, C, int(N));
}

// cblas takes 32-bit sizes.
void check_blas_size(const char* op, const char* what, int64_t n, const Tensor& t) {
  GRPO_CHECK(n <= INT_MAX,
             op << ": " << what << " = " << n << " of " << t.str() << " exceeds the BLAS limit " << INT_MAX);
}

// Byte ranges of two tensors overlap (an output may not alias an input of a GEMM).
bool overlaps(const Tensor& a, const Tensor& b) {
  if (!a.defined() || !b.defined() || a.nbytes() == 0 || b.nbytes() == 0) return false;
  const char* a0 = static_cast<const char*>(a.data);
  const char* b0 = static_cast<const char*>(b.data);
  return a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
}

void check_no_alias(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in) {
  GRPO_CHECK(!overlaps(out, in), op << ": " << out_name << " " << out.str() << " overlaps " << in_name << " "
                                    << in.str() << " (outputs may not alias inputs)");
}

// Shapes of one matmul call, validated.
struct MatmulDims {
  int64_t batch = 1, M = 0, N = 0, K = 0;
};

MatmulDims matmul_dims(const char* op, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  checks::tensor(op, "a", a, DType::f32, Device::cpu);
  checks::tensor(op, "b", b, DType::f32, Device::cpu);
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
  check_blas_size(op, "M", d.M, a);
  check_blas_size(op, "K", d.K, a);
  check_blas_size(op, "N", d.N, b);
  return d;
}

// out (or dout) must be [batch,] M, N.
void check_out_shape(const char* op, const char* name, const Tensor& t, const Tensor& a, const Tensor& b,
                     const MatmulDims& d) {
  if (a.ndim == 3)
    checks::tensor(op, name, t, DType::f32, Device::cpu, 3);
  else
    checks::tensor(op, name, t, DType::f32, Device::cpu, 2);
  const bool ok = t.size(-2) == d.M && t.size(-1) == d.N && (a.ndim == 2 || t.shape[0] == d.batch);
  if (!ok) {
    if (a.ndim == 3)
      GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected [" << d.batch << ", " << d.M << ", " << d.N
                    << "] for a " << a.str() << " and b " << b.str());
    GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected [" << d.M << ", " << d.N << "] for a " << a.str()
                  << " and b " << b.str());
  }
}

void check_bias(const char* op, const char* name, const Tensor& bias, const MatmulDims& d) {
  checks::shape(op, name, bias, DType::f32, Device::cpu, {d.N});
}

// Validates ids i32 [T] against a table of V rows: names the first bad id and its position.
void check_ids(const char* op, const Tensor& ids, const Tensor& table) {
  const int32_t* p = ids.ptr<int32_t>();
  const int64_t V = table.shape[0];
  for (int64_t t = 0; t < ids.numel(); ++t)
    GRPO_CHECK(p[t] >= 0 && p[t] < V,
               op << ": ids[" << t << "] = " << p[t] << " is outside [0, " << V << ") for table " << table.str());
}

// offsets i32 [E + 1]: offsets[0] == 0, non-decreasing, offsets[E] == R.
void check_offsets(const char* op, const Tensor& offsets, int64_t E, int64_t R, const Tensor& x) {
  checks::shape(op, "expert_offsets", offsets, DType::i32, Device::cpu, {E + 1});
  const int32_t* o = offsets.ptr<int32_t>();
  GRPO_CHECK(o[0] == 0, op << ": expert_offsets[0] = " << o[0] << ", expected 0");
  for (int64_t e = 0; e < E; ++e)
    GRPO_CHECK(o[e + 1] >= o[e],
               op << ": expert_offsets decrease at expert " << e << " (" << o[e] << " then " << o[e + 1] << ")");
  GRPO_CHECK(o[E] == R, op << ": expert_offsets[" << E << "] = " << o[E] << ", expected " << R << " (the rows of x "
                           << x.str() << ")");
}

// Shapes of a grouped matmul, validated: x [R, K], w [E, N, K].
struct GroupedDims {
  int64_t E = 0, R = 0, N = 0, K = 0;
};

GroupedDims grouped_dims(const char* op, const Tensor& x, const Tensor& w, const Tensor& offsets) {
  checks::tensor(op, "x", x, DType::f32, Device::cpu, 2);
  checks::tensor(op, "w", w, DType::f32, Device::cpu, 3);
  GroupedDims d{w.shape[0], x.shape[0], w.shape[1], x.shape[1]};
  GRPO_CHECK(w.shape[2] == d.K, op << ": x " << x.str() << " and w " << w.str() << ": inner dimensions " << d.K
                                   << " and " << w.shape[2] << " differ");
  check_offsets(op, offsets, d.E, d.R, x);
  check_blas_size(op, "R", d.R, x);
  check_blas_size(op, "K", d.K, x);
  check_blas_size(op, "N", d.N, w);
  return d;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// matmul

void CpuOps::matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) {
  const char* op = "matmul";
  const MatmulDims d = matmul_dims(op, a, b, trans_a, trans_b);
  check_out_shape(op, "out", out, a, b, d);
  if (bias.defined()) check_bias(op, "bias", bias, d);
  check_no_alias(op, "out", out, "a", a);
  check_no_alias(op, "out", out, "b", b);
  check_no_alias(op, "out", out, "bias", bias);

  float* po = out.ptr<float>();
  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  const int64_t rows = d.batch * d.M, N = d.N;
  bool onto_out = accumulate;
  if (bias.defined()) {
    // out (+)= bias row by row first, then the GEMM accumulates onto it.
    const float* pbias = bias.ptr<float>();
#pragma omp parallel for schedule(static) if (rows * N > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      float* row = po + r * N;
      if (accumulate)
        for (int64_t n = 0; n < N; ++n) row[n] += pbias[n];
      else
        std::memcpy(row, pbias, size_t(N) * sizeof(float));
    }
    onto_out = true;
  }
  const int64_t sa = d.M * d.K, sb = d.K * N, so = d.M * N;
  for (int64_t i = 0; i < d.batch; ++i)
    gemm(trans_a, trans_b, d.M, N, d.K, pa + i * sa, pb + i * sb, onto_out, po + i * so);
}

void CpuOps::matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b, bool trans_a,
                             bool trans_b, bool accumulate_da, bool accumulate_db) {
  const char* op = "matmul_backward";
  const MatmulDims d = matmul_dims(op, a, b, trans_a, trans_b);
  check_out_shape(op, "dout", dout, a, b, d);
  if (da.defined()) checks::same(op, "a", a, "da", da);
  if (db.defined()) checks::same(op, "b", b, "db", db);
  if (dbias.defined()) check_bias(op, "dbias", dbias, d);
  for (const auto& [name, g] : {std::pair{"da", da}, std::pair{"db", db}, std::pair{"dbias", dbias}}) {
    check_no_alias(op, name, g, "dout", dout);
    check_no_alias(op, name, g, "a", a);
    check_no_alias(op, name, g, "b", b);
  }
  check_no_alias(op, "da", da, "db", db);
  check_no_alias(op, "da", da, "dbias", dbias);
  check_no_alias(op, "db", db, "dbias", dbias);

  const float* pa = a.ptr<float>();
  const float* pb = b.ptr<float>();
  const float* pd = dout.ptr<float>();
  const int64_t M = d.M, N = d.N, K = d.K;
  const int64_t sa = M * K, sb = K * N, so = M * N;
  // With A' = op(a) [M, K], B' = op(b) [K, N] and dout [M, N]:
  //   dA' = dout @ B'^T,   dB' = A'^T @ dout.
  if (da.defined()) {
    float* pda = da.ptr<float>();
    for (int64_t i = 0; i < d.batch; ++i) {
      if (!trans_a)  // da [M, K] = dout @ op(b)^T
        gemm(false, !trans_b, M, K, N, pd + i * so, pb + i * sb, accumulate_da, pda + i * sa);
      else  // da [K, M] = dA'^T = op(b) @ dout^T
        gemm(trans_b, true, K, M, N, pb + i * sb, pd + i * so, accumulate_da, pda + i * sa);
    }
  }
  if (db.defined()) {
    float* pdb = db.ptr<float>();
    for (int64_t i = 0; i < d.batch; ++i) {
      if (!trans_b)  // db [K, N] = op(a)^T @ dout
        gemm(!trans_a, false, K, N, M, pa + i * sa, pd + i * so, accumulate_db, pdb + i * sb);
      else  // db [N, K] = dB'^T = dout^T @ op(a)
        gemm(true, trans_a, N, K, M, pd + i * so, pa + i * sa, accumulate_db, pdb + i * sb);
    }
  }
  if (dbias.defined()) {
    // dbias[n] (+)= sum over every row of dout. Columns are split into blocks, one block per
    // iteration, so each element of dbias has a single writer; sums in f64.
    float* pdbias = dbias.ptr<float>();
    const int64_t rows = d.batch * M;
    constexpr int64_t kBlock = 64;
    const int64_t nblocks = (N + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (rows * N > (1 << 16))
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      const int64_t n0 = blk * kBlock, n1 = std::min(N, n0 + kBlock);
      double acc[kBlock] = {};
      for (int64_t r = 0; r < rows; ++r) {
        const float* row = pd + r * N;
        for (int64_t n = n0; n < n1; ++n) acc[n - n0] += row[n];
      }
      for (int64_t n = n0; n < n1; ++n) pdbias[n] = float((accumulate_db ? double(pdbias[n]) : 0.0) + acc[n - n0]);
    }
  }
}

// ---------------------------------------------------------------------------------------
// embedding

void CpuOps::embedding(Tensor out, Tensor ids, Tensor table) {
  const char* op = "embedding";
  checks::tensor(op, "ids", ids, DType::i32, Device::cpu, 1);
  checks::tensor(op, "table", table, DType::f32, Device::cpu, 2);
  const int64_t T = ids.shape[0], C = table.shape[1];
  checks::shape(op, "out", out, DType::f32, Device::cpu, {T, C});
  check_no_alias(op, "out", out, "table", table);
  check_ids(op, ids, table);
  const int32_t* pid = ids.ptr<int32_t>();
  const float* ptab = table.ptr<float>();
  float* po = out.ptr<float>();
#pragma omp parallel for schedule(static) if (T * C > (1 << 16))
  for (int64_t t = 0; t < T; ++t) std::memcpy(po + t * C, ptab + int64_t(pid[t]) * C, size_t(C) * sizeof(float));
}

void CpuOps::embedding_backward(Tensor dtable, Tensor dout, Tensor ids) {
  const char* op = "embedding_backward";
  checks::tensor(op, "ids", ids, DType::i32, Device::cpu, 1);
  checks::tensor(op, "dtable", dtable, DType::f32, Device::cpu, 2);
  const int64_t T = ids.shape[0], C = dtable.shape[1];
  checks::shape(op, "dout", dout, DType::f32, Device::cpu, {T, C});
  check_no_alias(op, "dtable", dtable, "dout", dout);
  check_ids(op, ids, dtable);
  const int32_t* pid = ids.ptr<int32_t>();
  const float* pd = dout.ptr<float>();
  float* pt = dtable.ptr<float>();
  // NOTES: tokens are grouped by id (stable, so each row sums its tokens in token order)
  // and each group is one iteration: every row of dtable has exactly one writer, and the
  // result does not depend on the thread count.
  std::vector<int64_t> order(static_cast<size_t>(T));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [pid](int64_t x, int64_t y) { return pid[x] < pid[y]; });
  std::vector<int64_t> starts;  // group g is order[starts[g] .. starts[g + 1])
  for (int64_t i = 0; i < T; ++i)
    if (i == 0 || pid[order[size_t(i)]] != pid[order[size_t(i - 1)]]) starts.push_back(i);
  starts.push_back(T);
  const int64_t groups = int64_t(starts.size()) - 1;
#pragma omp parallel for schedule(dynamic, 16) if (T * C > (1 << 16))
  for (int64_t g = 0; g < groups; ++g) {
    float* row = pt + int64_t(pid[order[size_t(starts[size_t(g)])]]) * C;
    for (int64_t i = starts[size_t(g)]; i < starts[size_t(g + 1)]; ++i) {
      const float* src = pd + order[size_t(i)] * C;
      for (int64_t c = 0; c < C; ++c) row[c] += src[c];
    }
  }
}

// ---------------------------------------------------------------------------------------
// grouped matmul (MoE experts)

void CpuOps::grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) {
  const char* op = "grouped_matmul";
  const GroupedDims d = grouped_dims(op, x, w, expert_offsets);
  checks::shape(op, "out", out, DType::f32, Device::cpu, {d.R, d.N});
  check_no_alias(op, "out", out, "x", x);
  check_no_alias(op, "out", out, "w", w);
  const int32_t* o = expert_offsets.ptr<int32_t>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  float* po = out.ptr<float>();
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t r0 = o[e], n = o[e + 1] - o[e];
    if (n == 0) continue;
    // out[rows_e] [n, N] = x[rows_e] [n, K] @ w[e]^T
    gemm(false, true, n, d.N, d.K, px + r0 * d.K, pw + e * d.N * d.K, false, po + r0 * d.N);
  }
}

void CpuOps::grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor expert_offsets) {
  const char* op = "grouped_matmul_backward";
  const GroupedDims d = grouped_dims(op, x, w, expert_offsets);
  checks::shape(op, "dout", dout, DType::f32, Device::cpu, {d.R, d.N});
  if (dx.defined()) checks::same(op, "x", x, "dx", dx);
  if (dw.defined()) checks::same(op, "w", w, "dw", dw);
  for (const auto& [name, g] : {std::pair{"dx", dx}, std::pair{"dw", dw}}) {
    check_no_alias(op, name, g, "dout", dout);
    check_no_alias(op, name, g, "x", x);
    check_no_alias(op, name, g, "w", w);
  }
  check_no_alias(op, "dx", dx, "dw", dw);
  const int32_t* o = expert_offsets.ptr<int32_t>();
  const float* px = x.ptr<float>();
  const float* pw = w.ptr<float>();
  const float* pd = dout.ptr<float>();
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t r0 = o[e], n = o[e + 1] - o[e];
    if (n == 0) continue;  // no rows: dx has none to assign, dw[e] gains nothing
    const float* pwe = pw + e * d.N * d.K;
    // dx[rows_e] [n, K] = dout[rows_e] [n, N] @ w[e] [N, K]   (assigned; the offsets cover every row)
    if (dx.defined()) gemm(false, false, n, d.K, d.N, pd + r0 * d.N, pwe, false, dx.ptr<float>() + r0 * d.K);
    // dw[e] [N, K] += dout[rows_e]^T [N, n] @ x[rows_e] [n, K]
    if (dw.defined())
      gemm(true, false, d.N, d.K, n, pd + r0 * d.N, px + r0 * d.K, true, dw.ptr<float>() + e * d.N * d.K);
  }
}

}  // namespace grpo
