// Shared by the CUDA kernel files: checked CUDA/cuBLAS calls, launch checks, f32/bf16
// load/store, dtype dispatch and grid sizing. Device code only sees float arithmetic: every
// kernel loads its storage type (f32 or bf16) into float, accumulates in float (or double
// where a reduction must match the CPU reference), and stores back with round-to-nearest-even.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "core/error.h"
#include "core/tensor.h"

#define GRPO_CUDA_CHECK(call)                                                                      \
  do {                                                                                             \
    cudaError_t grpo_cuda_err_ = (call);                                                           \
    GRPO_CHECK(grpo_cuda_err_ == cudaSuccess, "CUDA call " #call " failed: " << cudaGetErrorString(grpo_cuda_err_)); \
  } while (0)

#define GRPO_CUBLAS_CHECK(call)                                                                    \
  do {                                                                                             \
    cublasStatus_t grpo_cublas_st_ = (call);                                                       \
    GRPO_CHECK(grpo_cublas_st_ == CUBLAS_STATUS_SUCCESS,                                           \
               "cuBLAS call " #call " failed: " << cublasGetStatusName(grpo_cublas_st_) << " ("    \
                                                << cublasGetStatusString(grpo_cublas_st_) << ")");  \
  } while (0)

// After every kernel launch: a bad configuration (grid, shared memory) is reported here, at
// the op that caused it, with the op's name.
#define GRPO_LAUNCH_CHECK(op)                                                                      \
  do {                                                                                             \
    cudaError_t grpo_launch_err_ = cudaGetLastError();                                             \
    GRPO_CHECK(grpo_launch_err_ == cudaSuccess, op << ": kernel launch failed: " << cudaGetErrorString(grpo_launch_err_)); \
  } while (0)

namespace grpo::cuda {

using bf16 = __nv_bfloat16;

// Storage <-> float. bf16 stores round to nearest even (as core/dtype.h on the host).
__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const bf16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float ld(float x) { return x; }
__device__ __forceinline__ float ld(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void st(float* p, float x) { *p = x; }
__device__ __forceinline__ void st(bf16* p, float x) { *p = __float2bfloat16_rn(x); }
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) { return __float2bfloat16_rn(x); }

// Typed device pointer of a tensor whose dtype was checked (f32 -> float, bf16 -> bf16).
template <class T>
T* dptr(const Tensor& t) {
  return static_cast<T*>(t.data);
}

// Runs `body` with `T` bound to float or bf16 according to `dtype`; any other dtype is an error
// naming the op. Usage:  GRPO_DISPATCH_FLOAT(x.dtype, "rmsnorm", T, { kernel<T><<<...>>>(...); });
#define GRPO_DISPATCH_FLOAT(dtype, op, T, ...)                                                     \
  do {                                                                                             \
    switch (dtype) {                                                                               \
      case ::grpo::DType::f32: {                                                                   \
        using T = float;                                                                           \
        __VA_ARGS__;                                                                               \
        break;                                                                                     \
      }                                                                                            \
      case ::grpo::DType::bf16: {                                                                  \
        using T = ::grpo::cuda::bf16;                                                              \
        __VA_ARGS__;                                                                               \
        break;                                                                                     \
      }                                                                                            \
      default:                                                                                     \
        GRPO_THROW(op << ": dtype " << ::grpo::dtype_name(dtype) << " is not supported (f32 or bf16)"); \
    }                                                                                              \
  } while (0)

// Blocks of `threads` covering n items, capped (kernels use grid-stride loops).
inline unsigned grid_for(int64_t n, int threads, int64_t max_blocks = 65535LL * 8) {
  int64_t b = (n + threads - 1) / threads;
  if (b < 1) b = 1;
  if (b > max_blocks) b = max_blocks;
  return unsigned(b);
}

// cuBLAS data type of a float storage dtype.
inline cudaDataType_t cuda_dtype(DType t) {
  switch (t) {
    case DType::f32: return CUDA_R_32F;
    case DType::bf16: return CUDA_R_16BF;
    case DType::f16: return CUDA_R_16F;
    default: GRPO_THROW("cuBLAS: dtype " << dtype_name(t) << " has no cuBLAS type here");
  }
}

// Warp and block reductions (blockDim.x a multiple of 32, at most 1024).
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over the block; every thread gets the result. `scratch` holds >= 32 values of T.
template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T r = lane < nwarps ? scratch[lane] : T(0);
  return warp_sum(r);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float r = lane < nwarps ? scratch[lane] : -INFINITY;
  return warp_max(r);
}

}  // namespace grpo::cuda
