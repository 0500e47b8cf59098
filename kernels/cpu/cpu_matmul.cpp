// CPU matmul, embedding and the MoE grouped matmul (f32, i32 ids/offsets).
//
// Every GEMM goes through OpenBLAS cblas_sgemm, which threads internally; batches and experts
// are looped serially around it (never sgemm inside an OpenMP region). The small loops here
// (bias, embedding rows) are parallelised with OpenMP over disjoint outputs: no atomics.
// Argument checks are shared with the CUDA backend (kernels/checks_matmul.h).
#include <cblas.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "kernels/checks_matmul.h"
#include "kernels/cpu/cpu_ops.h"

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

constexpr DType kF32[] = {DType::f32};
constexpr checks::MatmulPolicy kCpu{Device::cpu, kF32};

}  // namespace

// ---------------------------------------------------------------------------------------
// matmul

void CpuOps::matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) {
  GRPO_CPU_RECORD(matmul(out, a, b, bias, trans_a, trans_b, accumulate));
  const char* op = "matmul";
  const checks::MatmulDims d = checks::matmul_args(op, out, a, b, bias, trans_a, trans_b, kCpu);

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
  GRPO_CPU_RECORD(matmul_backward(da, db, dbias, dout, a, b, trans_a, trans_b, accumulate_da, accumulate_db));
  const char* op = "matmul_backward";
  const checks::MatmulDims d =
      checks::matmul_backward_args(op, da, db, dbias, dout, a, b, trans_a, trans_b, kCpu);

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
  GRPO_CPU_RECORD(embedding(out, ids, table));
  const char* op = "embedding";
  checks::embedding_args(op, out, ids, table, kCpu);
  const int64_t T = ids.shape[0], C = table.shape[1];
  checks::ids_in_range(op, ids.ptr<int32_t>(), T, table);
  const int32_t* pid = ids.ptr<int32_t>();
  const float* ptab = table.ptr<float>();
  float* po = out.ptr<float>();
#pragma omp parallel for schedule(static) if (T * C > (1 << 16))
  for (int64_t t = 0; t < T; ++t) std::memcpy(po + t * C, ptab + int64_t(pid[t]) * C, size_t(C) * sizeof(float));
}

void CpuOps::embedding_backward(Tensor dtable, Tensor dout, Tensor ids) {
  GRPO_CPU_RECORD(embedding_backward(dtable, dout, ids));
  const char* op = "embedding_backward";
  checks::embedding_backward_args(op, dtable, dout, ids, kCpu);
  const int64_t T = ids.shape[0], C = dtable.shape[1];
  checks::ids_in_range(op, ids.ptr<int32_t>(), T, dtable);
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
  GRPO_CPU_RECORD(grouped_matmul(out, x, w, expert_offsets));
  const char* op = "grouped_matmul";
  const checks::GroupedDims d = checks::grouped_matmul_args(op, out, x, w, expert_offsets, kCpu);
  const int32_t* o = expert_offsets.ptr<int32_t>();
  checks::expert_offsets(op, o, d.E, d.R, x);
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
  GRPO_CPU_RECORD(grouped_matmul_backward(dx, dw, dout, x, w, expert_offsets));
  const char* op = "grouped_matmul_backward";
  const checks::GroupedDims d =
      checks::grouped_matmul_backward_args(op, dx, dw, dout, x, w, expert_offsets, kCpu);
  const int32_t* o = expert_offsets.ptr<int32_t>();
  checks::expert_offsets(op, o, d.E, d.R, x);
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
