// CUDA matmul family: matmul and its backward through cuBLAS, the MoE grouped matmul through
// cuBLAS's grouped GEMM, the embedding gather and its deterministic scatter-add backward.
//
// Row-major GEMMs on column-major cuBLAS: a row-major [M, N] matrix is the column-major
// [N, M] matrix of its transpose, so C = op(A) op(B) is computed as C^T = op(B)^T op(A)^T,
// i.e. cuBLAS is called with the operands swapped and m = N, n = M.
//
// Precision: every GEMM uses CUBLAS_COMPUTE_32F. f32 operands therefore run in full f32 (the
// handle's math mode excludes TF32), bf16 operands on tensor cores with f32 accumulation, and
// bf16 inputs may write f32 results (out, db, dw: f32 weight gradients of bf16 activations).
// One exception, chosen only on request (ExpertWeightGrad::grouped): grouped f32 weight
// gradients of bf16 inputs multiply exact f32 copies of the bf16 values with a FAST_16BF or
// TF32 compute type (grouped_weight_grad_f32).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <vector>

#include "kernels/checks_matmul.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {

using cuda::bf16;
using cuda::dptr;
using cuda::ld;
using cuda::st;

namespace {

constexpr DType kDtypes[] = {DType::f32, DType::bf16};
constexpr checks::MatmulPolicy kCuda{Device::cuda, kDtypes};

constexpr size_t align256(size_t n) { return (n + 255) & ~size_t(255); }

// ---------------------------------------------------------------------------------------
// GEMM

// Row-major C [M, N] (+)= op(A) [M, K] @ op(B) [K, N] for each of `batch` matrices (element
// strides sa, sb, sc); A is [M, K] (or [K, M] when ta), B is [K, N] (or [N, K] when tb), as the
// CPU backend's gemm. A and B have dtype `in`, C has `out`. Empty sizes are handled here:
// cuBLAS rejects a leading dimension of 0.
struct Gemm {
  bool ta = false, tb = false;
  int64_t M = 0, N = 0, K = 0;
  const void* A = nullptr;
  const void* B = nullptr;
  void* C = nullptr;
  DType in = DType::f32, out = DType::f32;
  int64_t batch = 1, sa = 0, sb = 0, sc = 0;
};

void gemm(CudaOps& ops, const Gemm& g, bool accumulate) {
  if (g.M == 0 || g.N == 0 || g.batch == 0) return;
  if (g.K == 0) {  // op(A) @ op(B) is all zeros
    if (!accumulate)
      GRPO_CUDA_CHECK(cudaMemsetAsync(g.C, 0, size_t(g.batch * g.M * g.N) * dtype_size(g.out), ops.stream()));
    return;
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const cublasOperation_t op_a = g.ta ? CUBLAS_OP_T : CUBLAS_OP_N, op_b = g.tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int M = int(g.M), N = int(g.N), K = int(g.K);
  const int lda = g.ta ? M : K, ldb = g.tb ? K : N;
  const cudaDataType_t in = cuda::cuda_dtype(g.in), out = cuda::cuda_dtype(g.out);
  if (g.batch == 1) {
    GRPO_CUBLAS_CHECK(cublasGemmEx(ops.cublas(), op_b, op_a, N, M, K, &alpha, g.B, in, ldb, g.A, in, lda, &beta, g.C,
                                   out, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else {
    GRPO_CUBLAS_CHECK(cublasGemmStridedBatchedEx(ops.cublas(), op_b, op_a, N, M, K, &alpha, g.B, in, ldb, g.sb, g.A,
                                                 in, lda, g.sa, &beta, g.C, out, N, g.sc, int(g.batch),
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  }
}

// out [rows, N] += bias [N].
template <class To, class Tb>
__global__ void bias_add_kernel(To* __restrict__ out, const Tb* __restrict__ bias, int64_t total, int64_t N) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x)
    st(out + i, ld(out + i) + ld(bias + i % N));
}

// dbias, pass 1: column sums of dout [rows, N] over one chunk of rows per blockIdx.y, for 32
// columns per blockIdx.x; partial [chunks, N] in f64 (the CPU sums in f64 too).
constexpr int kBiasRowsPerBlock = 8;  // blockDim.y
template <class T>
__global__ void dbias_partial_kernel(double* __restrict__ partial, const T* __restrict__ dout, int64_t rows,
                                     int64_t N, int64_t rows_per_chunk) {
  __shared__ double sums[kBiasRowsPerBlock][33];
  const int64_t col = blockIdx.x * 32LL + threadIdx.x;
  const int64_t r0 = blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
  double acc = 0.0;
  if (col < N)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += kBiasRowsPerBlock) acc += ld(dout + r * N + col);
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && col < N) {
    double s = 0.0;
    for (int y = 0; y < kBiasRowsPerBlock; ++y) s += sums[y][threadIdx.x];
    partial[blockIdx.y * N + col] = s;
  }
}

// dbias, pass 2: dbias[n] (+)= sum of the chunks' partials, in chunk order (deterministic).
template <class T>
__global__ void dbias_finish_kernel(T* __restrict__ dbias, const double* __restrict__ partial, int64_t chunks,
                                    int64_t N, bool accumulate) {
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int64_t c = 0; c < chunks; ++c) s += partial[c * N + n];
    st(dbias + n, float((accumulate ? double(ld(dbias + n)) : 0.0) + s));
  }
}

// ---------------------------------------------------------------------------------------
// embedding

// An invalid id at token t raises the flag to INT_MAX - t: the flag's final value (atomicMax)
// names the FIRST bad token, as the CPU's message does. Needs T <= INT_MAX (checked).
__device__ __forceinline__ void flag_bad_id(int* flag, int64_t t) { atomicMax(flag, int(INT_MAX - t)); }

constexpr int kWarpsPerBlock = 8;

// out [T, C] = table [V, C] rows by ids; one warp per token, lanes along the row (coalesced).
template <class To, class Tt>
__global__ void embedding_kernel(To* __restrict__ out, const int32_t* __restrict__ ids, const Tt* __restrict__ table,
                                 int64_t T, int64_t C, int64_t V, int* flag) {
  const int lane = threadIdx.x & 31;
  for (int64_t t = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5); t < T;
       t += int64_t(gridDim.x) * kWarpsPerBlock) {
    const int32_t id = ids[t];
    if (id < 0 || id >= V) {
      if (lane == 0) flag_bad_id(flag, t);
      continue;
    }
    const Tt* src = table + int64_t(id) * C;
    To* dst = out + t * C;
    for (int64_t c = lane; c < C; c += 32) st(dst + c, ld(src + c));
  }
}

// Backward, step 1: flags bad ids and writes positions 0..T-1 (the values sorted with the ids).
__global__ void embedding_check_iota_kernel(int32_t* __restrict__ iota, const int32_t* __restrict__ ids, int64_t T,
                                            int64_t V, int* flag) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < T; t += int64_t(gridDim.x) * blockDim.x) {
    iota[t] = int32_t(t);
    if (ids[t] < 0 || ids[t] >= V) flag_bad_id(flag, t);
  }
}

// Backward, step 3 (after a stable sort of (id, token) pairs by id): the warp at the first
// sorted position of each id owns that row of dtable and adds its tokens' dout rows in token
// order, starting from the row's old value. Every element has one writer and a fixed order of
// additions (the CPU's order: f32 results are bitwise equal to it). blockIdx.y picks 256
// columns, 8 per lane, so one row's loads are 8 independent coalesced reads per lane.
constexpr int kColsPerLane = 8;
constexpr int kColsPerWarp = 32 * kColsPerLane;
template <class Tg, class Td>
__global__ void embedding_scatter_kernel(Tg* __restrict__ dtable, const Td* __restrict__ dout,
                                         const uint32_t* __restrict__ sorted_ids, const int32_t* __restrict__ tokens,
                                         int64_t T, int64_t C, const int* flag) {
  if (*flag) return;  // a bad id: dtable stays untouched and the host throws
  const int64_t i = blockIdx.x * int64_t(kWarpsPerBlock) + (threadIdx.x >> 5);
  if (i >= T || (i > 0 && sorted_ids[i - 1] == sorted_ids[i])) return;
  const uint32_t id = sorted_ids[i];
  const int64_t c0 = blockIdx.y * int64_t(kColsPerWarp) + (threadIdx.x & 31);
  Tg* row = dtable + int64_t(id) * C;
  float acc[kColsPerLane];
#pragma unroll
  for (int v = 0; v < kColsPerLane; ++v) {
    const int64_t c = c0 + 32 * v;
    acc[v] = c < C ? ld(row + c) : 0.0f;
  }
  for (int64_t j = i; j < T && sorted_ids[j] == id; ++j) {
    const Td* src = dout + int64_t(tokens[j]) * C;
#pragma unroll
    for (int v = 0; v < kColsPerLane; ++v) {
      const int64_t c = c0 + 32 * v;
      if (c < C) acc[v] += ld(src + c);
    }
  }
#pragma unroll
  for (int v = 0; v < kColsPerLane; ++v) {
    const int64_t c = c0 + 32 * v;
    if (c < C) st(row + c, acc[v]);
  }
}

// The check of the flag the embedding kernels raise (CudaOps::check_flag): the CPU's message
// for the first bad id. The op must fail before its caller goes on with a wrong result.
void throw_if_bad_id(CudaOps& ops, const char* op, const Tensor& ids, const Tensor& table) {
  cuda::check_bad_index(ops, op, ids, "ids holds an id outside the table",
                        [op, table](int64_t t, int32_t id) { checks::bad_id(op, t, id, table); });
}

// ---------------------------------------------------------------------------------------
// grouped GEMM

// One GEMM per non-empty expert, in cuBLAS's column-major terms (C = op(A) op(B), C m x n,
// inner dimension k): the operations, m and the leading dimensions are shared, n and k are
// per expert (one of them is the expert's row count).
struct GroupedGemm {
  cublasOperation_t op_a = CUBLAS_OP_N, op_b = CUBLAS_OP_N;
  int m = 0, lda = 0, ldb = 0, ldc = 0;
  std::vector<int> n, k;
  std::vector<const void*> A, B;
  std::vector<void*> C;
  DType in = DType::f32, out = DType::f32;
  float beta = 0.0f;
  size_t size() const { return A.size(); }
  // cublasGemmGroupedBatchedEx (cuBLAS 13.1, CUBLAS_COMPUTE_32F) takes f32 -> f32 and
  // bf16 -> bf16 but answers NOT_SUPPORTED for bf16 -> f32 (checked on an H100).
  bool grouped_api() const { return in == out; }
  void add(int n_e, int k_e, const void* a, const void* b, void* c) {
    n.push_back(n_e);
    k.push_back(k_e);
    A.push_back(a);
    B.push_back(b);
    C.push_back(c);
  }
};

// Pointer arrays in device memory are padded to 32 entries (256 bytes) each.
size_t padded(size_t n) { return (n + 31) & ~size_t(31); }

// Runs g. Grouped: one cuBLAS call over all experts (one group per expert); its device
// pointer arrays were uploaded at d_ptrs (A, B, C, padded(size()) entries each). Otherwise
// (bf16 inputs with an f32 result, which the grouped API rejects): NOTES: the documented last
// resort, one cublasGemmEx per non-empty expert.
void run_grouped(CudaOps& ops, const GroupedGemm& g, void** d_ptrs) {
  const size_t G = g.size();
  if (G == 0) return;
  const cudaDataType_t in = cuda::cuda_dtype(g.in), out = cuda::cuda_dtype(g.out);
  const float alpha = 1.0f;
  if (!g.grouped_api()) {
    for (size_t e = 0; e < G; ++e)
      GRPO_CUBLAS_CHECK(cublasGemmEx(ops.cublas(), g.op_a, g.op_b, g.m, g.n[e], g.k[e], &alpha, g.A[e], in, g.lda,
                                     g.B[e], in, g.ldb, &g.beta, g.C[e], out, g.ldc, CUBLAS_COMPUTE_32F,
                                     CUBLAS_GEMM_DEFAULT));
    return;
  }
  // Host arrays, one entry per group.
  std::vector<cublasOperation_t> op_a(G, g.op_a), op_b(G, g.op_b);
  std::vector<int> m(G, g.m), lda(G, g.lda), ldb(G, g.ldb), ldc(G, g.ldc), group_size(G, 1);
  std::vector<float> alphas(G, alpha), betas(G, g.beta);
  const size_t P = padded(G);
  GRPO_CUBLAS_CHECK(cublasGemmGroupedBatchedEx(ops.cublas(), op_a.data(), op_b.data(), m.data(), g.n.data(),
                                               g.k.data(), alphas.data(), d_ptrs, in, lda.data(), d_ptrs + P, in,
                                               ldb.data(), betas.data(), d_ptrs + 2 * P, out, ldc.data(), int(G),
                                               group_size.data(), CUBLAS_COMPUTE_32F));
}

// Uploads the device pointer arrays of the grouped-API GEMMs among gs into one workspace (one
// copy) and runs every GEMM of gs in order.
void run_grouped_all(CudaOps& ops, std::initializer_list<const GroupedGemm*> gs) {
  std::vector<void*> host;
  for (const GroupedGemm* g : gs) {
    if (!g->grouped_api() || g->size() == 0) continue;
    const size_t P = padded(g->size());
    const size_t at = host.size();
    host.resize(at + 3 * P, nullptr);
    for (size_t e = 0; e < g->size(); ++e) {
      host[at + e] = const_cast<void*>(g->A[e]);
      host[at + P + e] = const_cast<void*>(g->B[e]);
      host[at + 2 * P + e] = g->C[e];
    }
  }
  void** d_ptrs = nullptr;
  if (!host.empty()) {
    d_ptrs = static_cast<void**>(ops.workspace(host.size() * sizeof(void*)));
    // From pageable memory: cudaMemcpyAsync returns once `host` has been staged.
    GRPO_CUDA_CHECK(cudaMemcpyAsync(d_ptrs, host.data(), host.size() * sizeof(void*), cudaMemcpyHostToDevice,
                                    ops.stream()));
  }
  size_t at = 0;
  for (const GroupedGemm* g : gs) {
    const bool uploaded = g->grouped_api() && g->size() > 0;
    run_grouped(ops, *g, uploaded ? d_ptrs + at : nullptr);
    if (uploaded) at += 3 * padded(g->size());
  }
}

const char* byte_ptr(const Tensor& t, int64_t elements) {
  return static_cast<const char*>(t.data) + elements * int64_t(dtype_size(t.dtype));
}
char* byte_ptr_mut(const Tensor& t, int64_t elements) {
  return static_cast<char*>(t.data) + elements * int64_t(dtype_size(t.dtype));
}

// ---------------------------------------------------------------------------------------
// f32 expert weight gradients from bf16 inputs through the grouped API (cuda_ops.h)

// f32 copy of n bf16 values (exact), 4 per thread.
__global__ void bf16_to_f32_kernel(float* __restrict__ out, const bf16* __restrict__ in, int64_t n) {
  const int64_t i = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) * 4;
#pragma unroll
  for (int v = 0; v < 4; ++v)
    if (i + v < n) out[i + v] = __bfloat162float(in[i + v]);
}

void to_f32(CudaOps& ops, float* out, const void* in, int64_t n) {
  if (n == 0) return;
  bf16_to_f32_kernel<<<cuda::grid_for((n + 3) / 4, 256), 256, 0, ops.stream()>>>(out, static_cast<const bf16*>(in),
                                                                                  n);
  GRPO_LAUNCH_CHECK("grouped_matmul_backward");
}

// Bytes of f32 rows (x and dout together) one chunk of experts converts at most; an expert
// with more rows than that is a chunk of its own.
constexpr size_t kWeightGradChunkBytes = size_t(64) << 20;

// The compute types tried for f32 operands that hold bf16 values, best first.
constexpr cublasComputeType_t kGroupedF32Compute[] = {CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_COMPUTE_32F_FAST_TF32};

// dw_e^T [K, N] += x_e^T @ dout_e for every expert with rows, x and dout bf16, dw f32: chunks
// of experts converted to f32 (exactly) and one grouped GEMM per chunk. Returns false, having
// written nothing, when cuBLAS accepts none of kGroupedF32Compute (remembered in the Ops).
bool grouped_weight_grad_f32(CudaOps& ops, const Tensor& dw, const Tensor& dout, const Tensor& x,
                             const std::vector<int32_t>& o, const checks::GroupedDims& d) {
  if (ops.grouped_f32_compute < 0) return false;
  const int64_t N = d.N, K = d.K;
  // Chunks [first expert, last expert + 1) with their rows [r0, r1).
  struct Chunk {
    int64_t e0, e1, r0, r1, groups;
  };
  std::vector<Chunk> chunks;
  const int64_t row_cap = std::max<int64_t>(1, int64_t(kWeightGradChunkBytes / (size_t(N + K) * sizeof(float))));
  int64_t max_rows = 0;
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t rows = o[size_t(e + 1)] - o[size_t(e)];
    if (rows == 0) continue;
    if (chunks.empty() || chunks.back().r1 - chunks.back().r0 + rows > row_cap)
      chunks.push_back({e, e, o[size_t(e)], o[size_t(e)], 0});
    Chunk& c = chunks.back();
    c.e1 = e + 1;
    c.r1 = o[size_t(e + 1)];
    ++c.groups;
    max_rows = std::max(max_rows, c.r1 - c.r0);
  }
  if (chunks.empty()) return true;
  // One workspace: the pointer arrays of every chunk (A, B, C, padded each), x and dout of the
  // largest chunk in f32.
  size_t ptrs = 0;
  for (const Chunk& c : chunks) ptrs += 3 * padded(size_t(c.groups));
  const size_t ptr_bytes = align256(ptrs * sizeof(void*));
  const size_t x_bytes = align256(size_t(max_rows * K) * sizeof(float));
  char* ws = static_cast<char*>(ops.workspace(ptr_bytes + x_bytes + size_t(max_rows * N) * sizeof(float)));
  auto** d_ptrs = reinterpret_cast<void**>(ws);
  auto* x32 = reinterpret_cast<float*>(ws + ptr_bytes);
  auto* d32 = reinterpret_cast<float*>(ws + ptr_bytes + x_bytes);
  std::vector<void*> host(ptrs, nullptr);
  size_t at = 0;
  for (const Chunk& c : chunks) {
    const size_t P = padded(size_t(c.groups));
    size_t g = 0;
    for (int64_t e = c.e0; e < c.e1; ++e) {
      const int64_t r = o[size_t(e)], rows = o[size_t(e + 1)] - r;
      if (rows == 0) continue;
      host[at + g] = x32 + (r - c.r0) * K;
      host[at + P + g] = d32 + (r - c.r0) * N;
      host[at + 2 * P + g] = byte_ptr_mut(dw, e * N * K);
      ++g;
    }
    at += 3 * P;
  }
  // From pageable memory: cudaMemcpyAsync returns once `host` has been staged.
  GRPO_CUDA_CHECK(
      cudaMemcpyAsync(d_ptrs, host.data(), ptrs * sizeof(void*), cudaMemcpyHostToDevice, ops.stream()));
  at = 0;
  for (const Chunk& c : chunks) {
    const size_t G = size_t(c.groups), P = padded(G);
    to_f32(ops, x32, byte_ptr(x, c.r0 * K), (c.r1 - c.r0) * K);
    to_f32(ops, d32, byte_ptr(dout, c.r0 * N), (c.r1 - c.r0) * N);
    std::vector<cublasOperation_t> op_a(G, CUBLAS_OP_N), op_b(G, CUBLAS_OP_T);
    std::vector<int> m(G, int(K)), n(G, int(N)), k, lda(G, int(K)), ldb(G, int(N)), ldc(G, int(K)), group_size(G, 1);
    std::vector<float> alphas(G, 1.0f), betas(G, 1.0f);
    for (int64_t e = c.e0; e < c.e1; ++e)
      if (o[size_t(e + 1)] > o[size_t(e)]) k.push_back(o[size_t(e + 1)] - o[size_t(e)]);
    auto call = [&](cublasComputeType_t compute) {
      return cublasGemmGroupedBatchedEx(ops.cublas(), op_a.data(), op_b.data(), m.data(), n.data(), k.data(),
                                        alphas.data(), d_ptrs + at, CUDA_R_32F, lda.data(), d_ptrs + at + P,
                                        CUDA_R_32F, ldb.data(), betas.data(), d_ptrs + at + 2 * P, CUDA_R_32F,
                                        ldc.data(), int(G), group_size.data(), compute);
    };
    if (ops.grouped_f32_compute == 0) {  // the first call: find a compute type cuBLAS takes
      for (cublasComputeType_t t : kGroupedF32Compute) {
        const cublasStatus_t st = call(t);
        if (st == CUBLAS_STATUS_SUCCESS) {
          ops.grouped_f32_compute = int(t);
          break;
        }
        GRPO_CHECK(st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE,
                   "grouped_matmul_backward: cuBLAS grouped GEMM failed: " << cublasGetStatusString(st));
      }
      if (ops.grouped_f32_compute == 0) {
        ops.grouped_f32_compute = -1;  // only the first chunk was converted; nothing written
        return false;
      }
    } else {
      GRPO_CUBLAS_CHECK(call(cublasComputeType_t(ops.grouped_f32_compute)));
    }
    at += 3 * P;
  }
  ops.expert_weight_grad_path = ops.grouped_f32_compute == int(CUBLAS_COMPUTE_32F_FAST_16BF)
                                    ? "grouped (bf16 tensor cores)"
                                    : "grouped (tf32)";
  return true;
}

// expert_offsets [E + 1] to the host, validated as on the CPU. NOTES: the one synchronising
// copy of the grouped ops: cuBLAS's grouped GEMM takes each expert's row count on the host.
std::vector<int32_t> host_offsets(CudaOps& ops, const char* op, const Tensor& offsets, const checks::GroupedDims& d,
                                  const Tensor& x) {
  std::vector<int32_t> o(size_t(d.E + 1));
  GRPO_CUDA_CHECK(cudaMemcpyAsync(o.data(), offsets.data, o.size() * sizeof(int32_t), cudaMemcpyDeviceToHost,
                                  ops.stream()));
  ops.synchronize(op);
  checks::expert_offsets(op, o.data(), d.E, d.R, x);
  return o;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// matmul

void CudaOps::matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) {
  const char* op = "matmul";
  const checks::MatmulDims d = checks::matmul_args(op, out, a, b, bias, trans_a, trans_b, kCuda);
  GRPO_CHECK(d.batch <= INT_MAX, op << ": batch " << d.batch << " exceeds the cuBLAS limit " << INT_MAX);
  Gemm g{trans_a, trans_b, d.M, d.N, d.K, a.data, b.data, out.data, a.dtype, out.dtype,
         d.batch, d.M * d.K, d.K * d.N, d.M * d.N};
  gemm(*this, g, accumulate);
  if (bias.defined() && out.numel() > 0) {
    // A separate pass (out is read once more): bias is rare in the models served here, and
    // cuBLAS's own epilogue would need cuBLASLt.
    const int64_t total = out.numel();
    GRPO_DISPATCH_FLOAT(out.dtype, op, To, GRPO_DISPATCH_FLOAT(bias.dtype, op, Tb, {
      bias_add_kernel<To, Tb><<<cuda::grid_for(total, 256), 256, 0, stream()>>>(dptr<To>(out), dptr<Tb>(bias), total,
                                                                              d.N);
    }));
    GRPO_LAUNCH_CHECK(op);
  }
}

void CudaOps::matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b, bool trans_a,
                              bool trans_b, bool accumulate_da, bool accumulate_db) {
  const char* op = "matmul_backward";
  const checks::MatmulDims d =
      checks::matmul_backward_args(op, da, db, dbias, dout, a, b, trans_a, trans_b, kCuda);
  GRPO_CHECK(d.batch <= INT_MAX, op << ": batch " << d.batch << " exceeds the cuBLAS limit " << INT_MAX);
  const int64_t M = d.M, N = d.N, K = d.K;
  const int64_t sa = M * K, sb = K * N, so = M * N;
  // With A' = op(a) [M, K], B' = op(b) [K, N] and dout [M, N]: dA' = dout @ B'^T, dB' = A'^T @ dout
  // (the CPU backend's calls, one strided-batched GEMM each).
  if (da.defined()) {
    if (!trans_a)  // da [M, K] = dout @ op(b)^T
      gemm(*this, {false, !trans_b, M, K, N, dout.data, b.data, da.data, a.dtype, da.dtype, d.batch, so, sb, sa},
           accumulate_da);
    else  // da [K, M] = op(b) @ dout^T
      gemm(*this, {trans_b, true, K, M, N, b.data, dout.data, da.data, a.dtype, da.dtype, d.batch, sb, so, sa},
           accumulate_da);
  }
  if (db.defined()) {
    if (!trans_b)  // db [K, N] = op(a)^T @ dout
      gemm(*this, {!trans_a, false, K, N, M, a.data, dout.data, db.data, a.dtype, db.dtype, d.batch, sa, so, sb},
           accumulate_db);
    else  // db [N, K] = dout^T @ op(a)
      gemm(*this, {true, trans_a, N, K, M, dout.data, a.data, db.data, a.dtype, db.dtype, d.batch, so, sa, sb},
           accumulate_db);
  }
  if (dbias.defined() && N > 0) {
    // Deterministic two-pass column sum (no atomics): ~1024 blocks of 32 columns x one chunk
    // of rows write f64 partials, then one thread per column adds them in order.
    const int64_t rows = d.batch * M, tiles = (N + 31) / 32;
    int64_t chunks = std::clamp<int64_t>((1024 + tiles - 1) / tiles, 1, std::max<int64_t>(1, (rows + 63) / 64));
    chunks = std::min<int64_t>(chunks, 65535);
    const int64_t per_chunk = std::max<int64_t>(1, (rows + chunks - 1) / chunks);
    chunks = std::max<int64_t>(1, (rows + per_chunk - 1) / per_chunk);
    auto* partial = static_cast<double*>(workspace(size_t(chunks * N) * sizeof(double)));
    GRPO_DISPATCH_FLOAT(dout.dtype, op, T, {
      dbias_partial_kernel<T><<<dim3(unsigned(tiles), unsigned(chunks)), dim3(32, kBiasRowsPerBlock), 0, stream()>>>(
          partial, dptr<T>(dout), rows, N, per_chunk);
    });
    GRPO_LAUNCH_CHECK(op);
    GRPO_DISPATCH_FLOAT(dbias.dtype, op, T, {
      dbias_finish_kernel<T><<<cuda::grid_for(N, 256), 256, 0, stream()>>>(dptr<T>(dbias), partial, chunks, N,
                                                                           accumulate_db);
    });
    GRPO_LAUNCH_CHECK(op);
  }
}

// ---------------------------------------------------------------------------------------
// embedding

void CudaOps::embedding(Tensor out, Tensor ids, Tensor table) {
  const char* op = "embedding";
  checks::embedding_args(op, out, ids, table, kCuda);
  const int64_t T = ids.shape[0], C = table.shape[1], V = table.shape[0];
  GRPO_CHECK(T < INT_MAX, op << ": " << T << " ids exceed the limit " << INT_MAX - 1);
  if (T == 0) return;
  int* flag = error_flag();
  GRPO_DISPATCH_FLOAT(out.dtype, op, To, GRPO_DISPATCH_FLOAT(table.dtype, op, Tt, {
    embedding_kernel<To, Tt><<<cuda::grid_for(T, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, stream()>>>(
        dptr<To>(out), dptr<int32_t>(ids), dptr<Tt>(table), T, C, V, flag);
  }));
  GRPO_LAUNCH_CHECK(op);
  throw_if_bad_id(*this, op, ids, table);
}

void CudaOps::embedding_backward(Tensor dtable, Tensor dout, Tensor ids) {
  const char* op = "embedding_backward";
  checks::embedding_backward_args(op, dtable, dout, ids, kCuda);
  const int64_t T = ids.shape[0], C = dtable.shape[1], V = dtable.shape[0];
  GRPO_CHECK(T < INT_MAX, op << ": " << T << " ids exceed the limit " << INT_MAX - 1);
  if (T == 0) return;
  // At least one column block: with C == 0 the kernels still check the ids.
  const int64_t col_blocks = std::max<int64_t>(1, (C + kColsPerWarp - 1) / kColsPerWarp);
  GRPO_CHECK(col_blocks <= 65535, op << ": rows of " << dtable.str() << " are too long");
  int* flag = error_flag();
  // Stable radix sort of (id, token) by id on the bits that a valid id can have; an invalid
  // id (flagged) may land anywhere, but then nothing is written.
  int end_bit = 1;
  while (end_bit < 32 && (uint64_t(1) << end_bit) < uint64_t(std::max<int64_t>(V, 1))) ++end_bit;
  const int n = int(T);
  size_t sort_bytes = 0;
  GRPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, static_cast<const uint32_t*>(nullptr),
                                                  static_cast<uint32_t*>(nullptr),
                                                  static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), n, 0, end_bit, stream()));
  // One workspace: sorted ids [T], tokens [T], sorted tokens [T], CUB's scratch.
  const size_t list = align256(size_t(T) * sizeof(int32_t));
  char* ws = static_cast<char*>(workspace(3 * list + sort_bytes));
  auto* sorted_ids = reinterpret_cast<uint32_t*>(ws);
  auto* tokens = reinterpret_cast<int32_t*>(ws + list);
  auto* sorted_tokens = reinterpret_cast<int32_t*>(ws + 2 * list);
  void* sort_scratch = ws + 3 * list;

  embedding_check_iota_kernel<<<cuda::grid_for(T, 256), 256, 0, stream()>>>(tokens, dptr<int32_t>(ids), T, V, flag);
  GRPO_LAUNCH_CHECK(op);
  GRPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(sort_scratch, sort_bytes, dptr<const uint32_t>(ids), sorted_ids,
                                                  tokens, sorted_tokens, n, 0, end_bit, stream()));
  const dim3 grid(unsigned((T + kWarpsPerBlock - 1) / kWarpsPerBlock), unsigned(col_blocks));
  GRPO_DISPATCH_FLOAT(dtable.dtype, op, Tg, GRPO_DISPATCH_FLOAT(dout.dtype, op, Td, {
    embedding_scatter_kernel<Tg, Td><<<grid, 32 * kWarpsPerBlock, 0, stream()>>>(
        dptr<Tg>(dtable), dptr<Td>(dout), sorted_ids, sorted_tokens, T, C, flag);
  }));
  GRPO_LAUNCH_CHECK(op);
  throw_if_bad_id(*this, op, ids, dtable);
}

// ---------------------------------------------------------------------------------------
// grouped matmul (MoE experts)

void CudaOps::grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) {
  const char* op = "grouped_matmul";
  const checks::GroupedDims d = checks::grouped_matmul_args(op, out, x, w, expert_offsets, kCuda);
  if (capturing() || d.R <= cuda::kDeviceGroupedMaxRows) {
    cuda::grouped_matmul_device(*this, op, out, x, w, expert_offsets, d.E, d.R, d.N, d.K);
    return;
  }
  const std::vector<int32_t> o = host_offsets(*this, op, expert_offsets, d, x);
  if (d.R == 0 || d.N == 0) return;
  if (d.K == 0) {  // x @ w^T over an empty inner dimension is all zeros
    GRPO_CUDA_CHECK(cudaMemsetAsync(out.data, 0, out.nbytes(), stream()));
    return;
  }
  // out_e^T [N, n_e] = w_e [N, K] @ x_e^T: column-major A = w_e (K x N, transposed),
  // B = x_e (K x n_e).
  GroupedGemm g;
  g.op_a = CUBLAS_OP_T;
  g.op_b = CUBLAS_OP_N;
  g.m = int(d.N);
  g.lda = int(d.K);
  g.ldb = int(d.K);
  g.ldc = int(d.N);
  g.in = x.dtype;
  g.out = out.dtype;
  g.beta = 0.0f;
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t r0 = o[size_t(e)], rows = o[size_t(e + 1)] - r0;
    if (rows == 0) continue;
    g.add(int(rows), int(d.K), byte_ptr(w, e * d.N * d.K), byte_ptr(x, r0 * d.K), byte_ptr_mut(out, r0 * d.N));
  }
  run_grouped_all(*this, {&g});
}

void CudaOps::grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor expert_offsets) {
  const char* op = "grouped_matmul_backward";
  const checks::GroupedDims d =
      checks::grouped_matmul_backward_args(op, dx, dw, dout, x, w, expert_offsets, kCuda);
  const std::vector<int32_t> o = host_offsets(*this, op, expert_offsets, d, x);
  if (d.R == 0 || d.K == 0) return;  // dx has no elements; dw gains nothing
  if (d.N == 0) {                    // dx = dout @ w over an empty inner dimension: zeros
    if (dx.defined()) GRPO_CUDA_CHECK(cudaMemsetAsync(dx.data, 0, dx.nbytes(), stream()));
    return;
  }
  // dx_e^T [K, n_e] = w_e^T @ dout_e^T: A = w_e (K x N), B = dout_e (N x n_e); assigned.
  GroupedGemm gx;
  gx.m = int(d.K);
  gx.lda = int(d.K);
  gx.ldb = int(d.N);
  gx.ldc = int(d.K);
  gx.in = x.dtype;
  gx.out = dx.defined() ? dx.dtype : x.dtype;
  gx.beta = 0.0f;
  // dw_e^T [K, N] += x_e^T @ dout_e: A = x_e (K x n_e), B = dout_e (N x n_e, transposed).
  GroupedGemm gw;
  gw.op_b = CUBLAS_OP_T;
  gw.m = int(d.K);
  gw.lda = int(d.K);
  gw.ldb = int(d.N);
  gw.ldc = int(d.K);
  gw.in = x.dtype;
  gw.out = dw.defined() ? dw.dtype : x.dtype;
  gw.beta = 1.0f;
  // bf16 inputs with an f32 gradient: one GEMM per expert (the grouped API has no bf16 -> f32
  // form), or, when asked for, converted chunks through the grouped API (cuda_ops.h), which
  // falls back to the former when cuBLAS takes neither compute type.
  const bool mixed = dw.defined() && gw.in == DType::bf16 && gw.out == DType::f32;
  const bool dw_done = mixed && expert_weight_grad == ExpertWeightGrad::grouped &&
                       grouped_weight_grad_f32(*this, dw, dout, x, o, d);
  for (int64_t e = 0; e < d.E; ++e) {
    const int64_t r0 = o[size_t(e)], rows = o[size_t(e + 1)] - r0;
    if (rows == 0) continue;  // no rows of dx to assign; dw[e] gains nothing
    const void* dout_e = byte_ptr(dout, r0 * d.N);
    if (dx.defined()) gx.add(int(rows), int(d.N), byte_ptr(w, e * d.N * d.K), dout_e, byte_ptr_mut(dx, r0 * d.K));
    if (dw.defined() && !dw_done)
      gw.add(int(d.N), int(rows), byte_ptr(x, r0 * d.K), dout_e, byte_ptr_mut(dw, e * d.N * d.K));
  }
  run_grouped_all(*this, {&gx, &gw});
  if (mixed && gw.size() > 0) expert_weight_grad_path = "per expert";
}

}  // namespace grpo
