// AdamW and the sum of squares (global grad-norm clipping) on CUDA.
//   * adamw: f32 master params, grads, m, v; the optional bf16 compute copy is written in the
//     same pass (round to nearest even). One grid-stride pass over flat memory.
//   * sum_squares: x f32 or bf16, out f32 [1] += sum x^2 accumulated in double, by a two-pass
//     reduction in a fixed order (no atomics): the result repeats bit for bit.
#include <cmath>

#include "kernels/checks_norm.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {

namespace {

using cuda::bf16;
using cuda::ld;

constexpr DType kDataTypes[] = {DType::f32, DType::bf16};
constexpr int kThreads = 256;
// Blocks of the first sum_squares pass (the second pass is one block over their partials).
constexpr int64_t kSumBlocks = 1024;

// Per-step scalars, computed on the host exactly as the CPU backend computes them.
struct AdamWStep {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
  float decay;         // 1 - lr * weight_decay
};

// NOTES: the update is spelled with _rn intrinsics so nvcc does not contract it into FMAs:
// each operation rounds as the CPU's f32 expression does (the CPU build may still contract,
// -march=native, so the two agree to an ulp or so, not always bit for bit).
__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, bf16* w16, AdamWStep s, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = __fadd_rn(__fmul_rn(s.beta1, m[i]), __fmul_rn(s.one_minus_beta1, gi));
    const float vi = __fadd_rn(__fmul_rn(s.beta2, v[i]), __fmul_rn(__fmul_rn(s.one_minus_beta2, gi), gi));
    m[i] = mi;
    v[i] = vi;
    // decoupled weight decay (Loshchilov & Hutter), applied to the pre-update weight
    const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), s.inv_sqrt_bc2), s.eps);
    const float wi = __fsub_rn(__fmul_rn(w[i], s.decay), __fdiv_rn(__fmul_rn(s.step_size, mi), denom));
    w[i] = wi;
    if (w16) w16[i] = __float2bfloat16_rn(wi);
  }
}

// Pass 1: block b writes the double sum of x^2 over its grid-stride share to partial[b].
template <class T>
__global__ void sum_squares_partial_kernel(double* partial, const T* x, int64_t n) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const double v = ld(x + i);
    acc += v * v;
  }
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// Pass 2 (one block): out[0] += the sum of the partials.
__global__ void sum_squares_finish_kernel(float* out, const double* partial, int blocks) {
  __shared__ double scratch[32];
  double acc = 0.0;
  for (int b = threadIdx.x; b < blocks; b += blockDim.x) acc += partial[b];
  acc = cuda::block_sum(acc, scratch);
  if (threadIdx.x == 0) out[0] += float(acc);
}

}  // namespace

void CudaOps::adamw(Tensor params, Tensor grads, Tensor m, Tensor v, const AdamWParams& p, Tensor params_bf16) {
  checks::adamw(params, grads, m, v, p, params_bf16, Device::cuda);
  const int64_t n = params.numel();
  if (n == 0) return;
  // Bias corrections in double: beta^step underflows gracefully and stays exact for small steps.
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  AdamWStep s;
  s.beta1 = p.beta1;
  s.one_minus_beta1 = 1.0f - p.beta1;
  s.beta2 = p.beta2;
  s.one_minus_beta2 = 1.0f - p.beta2;
  s.eps = p.eps;
  s.step_size = float(double(p.lr) / bc1);
  s.inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  s.decay = 1.0f - p.lr * p.weight_decay;
  bf16* w16 = params_bf16.defined() ? cuda::dptr<bf16>(params_bf16) : nullptr;
  adamw_kernel<<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(
      cuda::dptr<float>(params), cuda::dptr<float>(grads), cuda::dptr<float>(m), cuda::dptr<float>(v), w16, s, n);
  GRPO_LAUNCH_CHECK("adamw");
}

void CudaOps::sum_squares(Tensor out, Tensor x) {
  checks::sum_squares(out, x, Device::cuda, kDataTypes);
  const int64_t n = x.numel();
  if (n == 0) return;
  // The block count depends on n only, so the summation order is the same on every device.
  const int blocks = int(cuda::grid_for(n, kThreads, kSumBlocks));
  auto* partial = static_cast<double*>(workspace(size_t(blocks) * sizeof(double)));
  GRPO_DISPATCH_FLOAT(x.dtype, "sum_squares", T, {
    sum_squares_partial_kernel<T><<<blocks, kThreads, 0, stream_>>>(partial, cuda::dptr<T>(x), n);
  });
  GRPO_LAUNCH_CHECK("sum_squares");
  sum_squares_finish_kernel<<<1, 1024, 0, stream_>>>(cuda::dptr<float>(out), partial, blocks);
  GRPO_LAUNCH_CHECK("sum_squares");
}

}  // namespace grpo
