// Fused LM head on CUDA: log-prob of the target token and entropy of
// softmax(hidden @ w^T * inv_temp), forward and backward, without ever holding the [T, V] logits.
//
// The work runs over chunks of kTokenChunk tokens x kVocabChunk vocabulary rows. For each chunk
// a cuBLAS GEMM writes the scaled logits into an f32 tile in workspace() (f32 operands: f32
// compute, no TF32; bf16 operands: bf16 inputs, f32 accumulation and output), and a kernel
// consumes the tile:
//   forward:  fold the tile into each token's online softmax state (f32, in workspace):
//               M = running max,  S = sum_j exp(z_j - M),  A = sum_j exp(z_j - M) (z_j - M),
//             plus the target's logit; after the last vocabulary chunk lse = M + log S,
//             logprob = z_target - lse, entropy = log S - A / S (the CPU's formulas; A <= 0
//             and S >= 1, so nothing cancels).
//   backward: recompute the tile, turn it into dL/dz = dlogprob (1[j == target] - p_j)
//             - dentropy p_j (log p_j + H) with p_j = exp(z_j - lse), then
//             dhidden[chunk] (+)= inv_temp * dz @ w[chunk] and dw[chunk] += inv_temp * dz^T @ hidden[chunk].
// Token chunks are the outer loop, so the per-token state and the f32 dhidden accumulator only
// span one token chunk: the workspace is bounded by the chunk sizes and C, not by T or V.
//
// The chunk shape sets the GEMMs' arithmetic intensity: dw is read and written once per token
// chunk (K = kTokenChunk) and dhidden once per vocabulary chunk (K = kVocabChunk), so both
// are kept in the thousands; the logit tile (32 MB f32) is written and read once per chunk.
//
// Targets are checked on the device (the first chunk's kernel flags the lowest bad index),
// and the op synchronises once at its end to throw the CPU's message.
#include <algorithm>
#include <climits>

#include "kernels/checks_lm_head.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {
namespace {

using cuda::bf16;

constexpr int64_t kTokenChunk = 2048;
constexpr int64_t kVocabChunk = 4096;
constexpr int kFoldThreads = 256;  // one block per token row of a tile
constexpr int kGradThreads = 256;
constexpr int kStoreThreads = 256;

size_t align256(size_t bytes) { return (bytes + 255) & ~size_t(255); }

// Element `i` of a typed buffer seen as raw bytes (element size `elt`), in 64-bit arithmetic.
void* at(void* base, int64_t i, size_t elt) { return static_cast<char*>(base) + i * int64_t(elt); }

// c (m x n, column-major) = alpha * op(a) @ op(b) + beta * c, with f32 scalars and f32
// compute (CUBLAS_COMPUTE_32F: no TF32 for f32 operands). a and b share the type `ab`.
void gemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int64_t m, int64_t n, int64_t k, float alpha,
          const void* a, int64_t lda, const void* b, int64_t ldb, cudaDataType_t ab, float beta, void* c, int64_t ldc,
          cudaDataType_t ct) {
  GRPO_CUBLAS_CHECK(cublasGemmEx(h, ta, tb, int(m), int(n), int(k), &alpha, a, ab, int(lda), b, ab, int(ldb), &beta,
                                 c, ct, int(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// Online softmax state of a set of logits: max m, s = sum exp(z - m), a = sum exp(z - m) (z - m).
// The empty set is {-inf, 0, 0}.
struct SoftmaxState {
  float m, s, a;
};

__device__ __forceinline__ SoftmaxState merge(SoftmaxState x, SoftmaxState y) {
  // An empty side would turn (-inf) * 0 into NaN below.
  if (y.s == 0.0f) return x;
  if (x.s == 0.0f) return y;
  const float m = fmaxf(x.m, y.m);
  const float dx = x.m - m, dy = y.m - m;  // <= 0, one of them 0
  const float rx = expf(dx), ry = expf(dy);
  return {m, rx * x.s + ry * y.s, rx * (x.a + dx * x.s) + ry * (y.a + dy * y.s)};
}

// Adds one logit: one exp per element, and a rescale only when the max rises.
__device__ __forceinline__ void push(SoftmaxState& st, float z) {
  if (z <= st.m) {
    const float d = z - st.m, e = expf(d);
    st.s += e;
    st.a += e * d;
  } else if (st.s == 0.0f) {
    st = {z, 1.0f, 0.0f};
  } else {
    const float d = st.m - z, r = expf(d);
    st.a = r * (st.a + d * st.s);
    st.s = r * st.s + 1.0f;
    st.m = z;
  }
}

__device__ __forceinline__ SoftmaxState warp_merge(SoftmaxState st) {
  for (int o = 16; o > 0; o >>= 1) {
    const SoftmaxState y{__shfl_xor_sync(0xffffffffu, st.m, o), __shfl_xor_sync(0xffffffffu, st.s, o),
                         __shfl_xor_sync(0xffffffffu, st.a, o)};
    st = merge(st, y);
  }
  return st;
}

// The block's merged state, valid in thread 0 (blockDim.x a multiple of 32).
__device__ __forceinline__ SoftmaxState block_merge(SoftmaxState st) {
  __shared__ SoftmaxState part[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  st = warp_merge(st);
  if (lane == 0) part[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = lane < nwarps ? part[lane] : SoftmaxState{-INFINITY, 0.0f, 0.0f};
    st = warp_merge(st);
  }
  return st;
}

// Flags token t when its target is outside [0, V). The code is INT_MAX - t, so atomicMax keeps
// the lowest bad index, the one the CPU's scan reports.
__device__ __forceinline__ void check_target(int32_t target, int64_t V, int64_t t, int* flag) {
  if (target < 0 || target >= V) atomicMax(flag, int(INT_MAX - min(t, int64_t(INT_MAX - 1))));
}

struct FoldParams {
  const float* tile;       // [nt, nv] (row stride nv): this chunk's scaled logits
  const int32_t* targets;  // [nt]
  float4* stats;           // [nt] running {M, S, A, target logit}; unused when first && last
  float* logprob;          // [nt], written on the last vocabulary chunk
  float* entropy;          // [nt], may be nullptr
  float* lse;              // [nt]
  int64_t t0;              // first token of the chunk (for the error code)
  int64_t v0, nv, V;       // vocabulary chunk [v0, v0 + nv) of V
  bool first, last;        // first / last vocabulary chunk
  int* flag;               // set for an out-of-range target (checked on the first chunk)
};

// One block per token row: fold the row's nv logits into the token's running state.
__global__ void lm_head_fold_kernel(FoldParams p) {
  const int i = blockIdx.x;
  const float* row = p.tile + int64_t(i) * p.nv;
  SoftmaxState st{-INFINITY, 0.0f, 0.0f};
  const int bd = blockDim.x;
  int64_t j = threadIdx.x;
  // Four independent loads in flight per thread before the dependent updates.
  for (; j + 3 * bd < p.nv; j += 4 * bd) {
    const float z0 = row[j], z1 = row[j + bd], z2 = row[j + 2 * bd], z3 = row[j + 3 * bd];
    push(st, z0);
    push(st, z1);
    push(st, z2);
    push(st, z3);
  }
  for (; j < p.nv; j += bd) push(st, row[j]);
  st = block_merge(st);
  if (threadIdx.x != 0) return;

  const int32_t target = p.targets[i];
  const int64_t local = int64_t(target) - p.v0;
  const bool here = local >= 0 && local < p.nv;
  float4 run;
  if (p.first) {
    check_target(target, p.V, p.t0 + i, p.flag);
    run = make_float4(st.m, st.s, st.a, here ? row[local] : 0.0f);
  } else {
    run = p.stats[i];
    const SoftmaxState r = merge({run.x, run.y, run.z}, st);
    run = make_float4(r.m, r.s, r.a, here ? row[local] : run.w);
  }
  if (p.last) {
    const float log_s = logf(run.y), l = run.x + log_s;
    p.lse[i] = l;
    p.logprob[i] = run.w - l;
    if (p.entropy) p.entropy[i] = log_s - run.z / run.y;
  } else {
    p.stats[i] = run;
  }
}

template <class OutT>
struct GradParams {
  const float* tile;        // [nt, nv] scaled logits of this chunk
  OutT* dz;                 // [nt, nv] dL/dz; the tile itself when OutT is float
  const int32_t* targets;   // [nt]
  const float* lse;         // [nt]
  const float* dlogprob;    // [nt]
  const float* dentropy;    // [nt], may be nullptr
  const float* entropy;     // [nt], nullptr when dentropy is
  int64_t t0, v0, nv, V;
  bool first;               // first vocabulary chunk: check the targets
  int* flag;
};

// Grid (column blocks, nt): dz = dlogprob (1[j == target] - p) - dentropy p (log p + H), the
// CPU's expressions (the dentropy == 0 branch included, so both round alike).
template <class OutT>
__global__ void lm_head_grad_kernel(GradParams<OutT> p) {
  const int i = blockIdx.y;
  const float l = p.lse[i], g = p.dlogprob[i];
  const float ge = p.dentropy ? p.dentropy[i] : 0.0f;
  const float H = p.dentropy ? p.entropy[i] : 0.0f;
  const int32_t target = p.targets[i];
  if (p.first && blockIdx.x == 0 && threadIdx.x == 0) check_target(target, p.V, p.t0 + i, p.flag);
  const int64_t local = int64_t(target) - p.v0;
  const float* z = p.tile + int64_t(i) * p.nv;
  OutT* out = p.dz + int64_t(i) * p.nv;
  for (int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; j < p.nv; j += int64_t(gridDim.x) * blockDim.x) {
    const float logp = z[j] - l;
    const float pj = expf(logp);
    float d = ge != 0.0f ? -pj * (g + ge * (logp + H)) : -g * pj;
    if (j == local) d += g;
    cuda::st(out + j, d);
  }
}

// out[k] = bf16(in[k]) for k < n: the f32 dhidden accumulator into a bf16 dhidden.
__global__ void lm_head_store_kernel(bf16* out, const float* in, int64_t n) {
  for (int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; k < n; k += int64_t(gridDim.x) * blockDim.x)
    cuda::st(out + k, in[k]);
}

// Throws the CPU's message for the lowest out-of-range target flagged by the kernels. The
// synchronisation is what the check costs: the values live on the device, and the op must
// throw before returning.
void throw_if_bad_target(CudaOps& ops, const char* op, const Tensor& targets, const Tensor& w) {
  cuda::check_bad_index(ops, op, targets, "targets holds an id outside the vocabulary",
                        [op, w](int64_t t, int32_t value) { checks::lm_head_bad_target(op, t, value, w); });
}

}  // namespace

void CudaOps::lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w, Tensor targets,
                              float inv_temperature) {
  const char* op = "lm_head_logprob";
  const checks::LmHeadShape s =
      checks::lm_head_inputs(op, Device::cuda, {DType::f32, DType::bf16}, hidden, w, targets, inv_temperature);
  checks::lm_head_outputs(op, Device::cuda, s, logprob, entropy, lse);
  const int64_t T = s.T, C = s.C, V = s.V;
  if (T == 0) return;

  // Workspace: stats float4 [tc] | logit tile f32 [tc, vc].
  const int64_t tc = std::min(T, kTokenChunk), vc = std::min(V, kVocabChunk);
  const size_t stats_bytes = align256(size_t(tc) * sizeof(float4));
  char* ws = static_cast<char*>(workspace(stats_bytes + size_t(tc * vc) * sizeof(float)));
  float4* stats = reinterpret_cast<float4*>(ws);
  float* tile = reinterpret_cast<float*>(ws + stats_bytes);
  int* flag = error_flag();

  const cudaDataType_t dt = cuda::cuda_dtype(s.dtype);
  const size_t elt = dtype_size(s.dtype);
  float* lp = static_cast<float*>(logprob.data);
  float* ent = entropy.defined() ? static_cast<float*>(entropy.data) : nullptr;
  float* ls = static_cast<float*>(lse.data);
  const int32_t* tg = static_cast<const int32_t*>(targets.data);

  for (int64_t t0 = 0; t0 < T; t0 += tc) {
    const int64_t nt = std::min(tc, T - t0);
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
      const int64_t nv = std::min(vc, V - v0);
      // tile [nt, nv] row-major = its column-major transpose [nv, nt]: w[chunk] @ hidden[chunk]^T.
      gemm(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, nv, nt, C, inv_temperature, at(w.data, v0 * C, elt), C,
           at(hidden.data, t0 * C, elt), C, dt, 0.0f, tile, nv, CUDA_R_32F);
      FoldParams p{tile, tg + t0, stats, lp + t0, ent ? ent + t0 : nullptr, ls + t0, t0, v0, nv, V,
                   v0 == 0, v0 + nv == V, flag};
      lm_head_fold_kernel<<<unsigned(nt), kFoldThreads, 0, stream()>>>(p);
      GRPO_LAUNCH_CHECK(op);
    }
  }
  throw_if_bad_target(*this, op, targets, w);
}

void CudaOps::lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy, Tensor hidden,
                                       Tensor w, Tensor targets, Tensor lse, Tensor entropy, float inv_temperature) {
  const char* op = "lm_head_logprob_backward";
  const checks::LmHeadShape s =
      checks::lm_head_inputs(op, Device::cuda, {DType::f32, DType::bf16}, hidden, w, targets, inv_temperature);
  checks::lm_head_backward_args(op, Device::cuda, s, dhidden, dw, dlogprob, dentropy, lse, entropy);
  const int64_t T = s.T, C = s.C, V = s.V;
  if ((!dhidden.defined() && !dw.defined()) || T == 0) return;

  // bf16 operands: dz is rounded to bf16 for the two gradient GEMMs (cuBLAS takes one type for
  // both operands), which accumulate in f32; a bf16 dhidden is accumulated over the vocabulary
  // chunks in an f32 buffer and rounded once per token chunk.
  const bool is_bf16 = s.dtype == DType::bf16;
  const bool dh_scratch = dhidden.defined() && is_bf16;
  const int64_t tc = std::min(T, kTokenChunk), vc = std::min(V, kVocabChunk);
  // Workspace: logit tile f32 [tc, vc] | dz bf16 [tc, vc] (bf16 only) | dhidden f32 [tc, C] (bf16 dhidden only).
  const size_t tile_bytes = align256(size_t(tc * vc) * sizeof(float));
  const size_t dz_bytes = is_bf16 ? align256(size_t(tc * vc) * sizeof(bf16)) : 0;
  const size_t dh_bytes = dh_scratch ? size_t(tc * C) * sizeof(float) : 0;
  char* ws = static_cast<char*>(workspace(tile_bytes + dz_bytes + dh_bytes));
  float* tile = reinterpret_cast<float*>(ws);
  bf16* dz16 = is_bf16 ? reinterpret_cast<bf16*>(ws + tile_bytes) : nullptr;
  float* dh_acc = dh_scratch ? reinterpret_cast<float*>(ws + tile_bytes + dz_bytes) : nullptr;
  int* flag = error_flag();

  const cudaDataType_t dt = cuda::cuda_dtype(s.dtype);
  const size_t elt = dtype_size(s.dtype);
  const cudaDataType_t dw_t = dw.defined() ? cuda::cuda_dtype(dw.dtype) : CUDA_R_32F;
  const size_t dw_elt = dw.defined() ? dtype_size(dw.dtype) : 0;
  const int32_t* tg = static_cast<const int32_t*>(targets.data);
  const float* g_lp = static_cast<const float*>(dlogprob.data);
  const float* g_ent = dentropy.defined() ? static_cast<const float*>(dentropy.data) : nullptr;
  const float* ent = g_ent ? static_cast<const float*>(entropy.data) : nullptr;
  const float* ls = static_cast<const float*>(lse.data);
  const void* dz = is_bf16 ? static_cast<const void*>(dz16) : tile;

  for (int64_t t0 = 0; t0 < T; t0 += tc) {
    const int64_t nt = std::min(tc, T - t0);
    // dhidden rows of this chunk, f32: the output itself, or the accumulator for a bf16 output.
    float* dh = dhidden.defined() ? (dh_scratch ? dh_acc : static_cast<float*>(dhidden.data) + t0 * C) : nullptr;
    const void* h_chunk = at(hidden.data, t0 * C, elt);
    for (int64_t v0 = 0; v0 < V; v0 += vc) {
      const int64_t nv = std::min(vc, V - v0);
      const void* w_chunk = at(w.data, v0 * C, elt);
      gemm(cublas(), CUBLAS_OP_T, CUBLAS_OP_N, nv, nt, C, inv_temperature, w_chunk, C, h_chunk, C, dt, 0.0f, tile, nv,
           CUDA_R_32F);
      const dim3 grid(unsigned((nv + kGradThreads - 1) / kGradThreads), unsigned(nt));
      if (is_bf16) {
        GradParams<bf16> p{tile, dz16, tg + t0, ls + t0, g_lp + t0, g_ent ? g_ent + t0 : nullptr,
                           ent ? ent + t0 : nullptr, t0, v0, nv, V, v0 == 0, flag};
        lm_head_grad_kernel<bf16><<<grid, kGradThreads, 0, stream()>>>(p);
      } else {
        GradParams<float> p{tile, tile, tg + t0, ls + t0, g_lp + t0, g_ent ? g_ent + t0 : nullptr,
                            ent ? ent + t0 : nullptr, t0, v0, nv, V, v0 == 0, flag};
        lm_head_grad_kernel<float><<<grid, kGradThreads, 0, stream()>>>(p);
      }
      GRPO_LAUNCH_CHECK(op);
      // dz [nt, nv] row-major is column-major [nv, nt] with ld nv.
      // dhidden[chunk]^T [C, nt] (+)= inv_temp * w[chunk]^T [C, nv] @ dz^T [nv, nt]; the first
      // vocabulary chunk assigns (beta 0: the poisoned output is never read).
      if (dh)
        gemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_N, C, nt, nv, inv_temperature, w_chunk, C, dz, nv, dt,
             v0 == 0 ? 0.0f : 1.0f, dh, C, CUDA_R_32F);
      // dw[chunk]^T [C, nv] += inv_temp * hidden[chunk]^T [C, nt] @ dz [nt, nv].
      if (dw.defined())
        gemm(cublas(), CUBLAS_OP_N, CUBLAS_OP_T, C, nv, nt, inv_temperature, h_chunk, C, dz, nv, dt, 1.0f,
             at(dw.data, v0 * C, dw_elt), C, dw_t);
    }
    if (dh_scratch) {
      const int64_t n = nt * C;
      lm_head_store_kernel<<<cuda::grid_for(n, kStoreThreads), kStoreThreads, 0, stream()>>>(
          static_cast<bf16*>(dhidden.data) + t0 * C, dh_acc, n);
      GRPO_LAUNCH_CHECK(op);
    }
  }
  throw_if_bad_target(*this, op, targets, w);
}

}  // namespace grpo
