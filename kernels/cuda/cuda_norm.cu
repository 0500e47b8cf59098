// RMSNorm (forward, backward, fused residual add) and RoPE (forward, backward) on CUDA.
// Data tensors f32 or bf16; RMSNorm weights x's dtype or f32; rstd f32. Row sums are f32,
// reduced by one warp or one block per row (cuda_rows.cuh); 1 / sqrt is taken in double.
#include <algorithm>
#include <climits>
#include <cmath>

#include "kernels/checks_norm.h"
#include "kernels/cuda/cuda_ops_impl.h"
#include "kernels/cuda/cuda_rows.cuh"

namespace grpo {

namespace {

using cuda::bf16;
using cuda::ld;
using cuda::st;

constexpr DType kDataTypes[] = {DType::f32, DType::bf16};
// Dynamic shared memory a kernel may use without opting in.
constexpr size_t kDefaultSmem = 48 * 1024;

// Calls f.template operator()<T, TW>() for the storage types of x and w: (f32, f32),
// (bf16, bf16) or (bf16, f32) (the checks allow no other pair).
template <class F>
void dispatch_norm(DType x, DType w, F&& f) {
  if (x == DType::f32) f.template operator()<float, float>();
  else if (w == DType::bf16) f.template operator()<bf16, bf16>();
  else f.template operator()<bf16, float>();
}

int device_attribute(cudaDeviceAttr attr, int device) {
  int v = 0;
  GRPO_CUDA_CHECK(cudaDeviceGetAttribute(&v, attr, device));
  return v;
}

// rstd = 1 / sqrt(mean(x^2) + eps), in double so the f32 result is correctly rounded (as the
// CPU's), which rsqrtf is not.
__device__ __forceinline__ float row_rstd(float sum_sq, int64_t C, float eps) {
  return float(1.0 / sqrt(double(sum_sq) / double(C) + double(eps)));
}

// ---- RMSNorm forward -------------------------------------------------------------------------
// Kernels take N, the elements per memory access (cuda_rows.cuh): kPack<T> or 1.

template <class T, class TW, bool kBlock, int N>
__global__ void rmsnorm_kernel(T* out, float* rstd, const T* x, const TW* w, int64_t rows, int64_t C, float eps) {
  __shared__ float scratch[32];
  const cuda::RowGroup<kBlock> g;
  for (int64_t r = g.first; r < rows; r += g.stride) {
    const T* xr = x + r * C;
    T* yr = out + r * C;  // may equal xr: see cuda_rows.cuh
    float ss = 0.0f;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N];
      cuda::load_pack(v, xr + c);
      for (int i = 0; i < N; ++i) ss += v[i] * v[i];
    }
    const float rs = row_rstd(cuda::row_sum<kBlock>(ss, scratch), C, eps);
    if (g.lane == 0) rstd[r] = rs;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N], wv[N];
      cuda::load_pack(v, xr + c);
      cuda::load_pack(wv, w + c);
      for (int i = 0; i < N; ++i) v[i] = (v[i] * rs) * wv[i];  // Hugging Face order: (x * rstd) * w
      cuda::store_pack(yr + c, v);
    }
  }
}

// sum = x + residual (stored, then normalised as stored: a bf16 sum is rounded first, exactly
// what add followed by rmsnorm computes). sum may alias x or residual: element c is read and
// written by one thread. out is written from the stored sum after the row's reduction.
template <class T, class TW, bool kBlock, int N>
__global__ void add_rmsnorm_kernel(T* sum, T* out, float* rstd, const T* x, const T* residual, const TW* w,
                                   int64_t rows, int64_t C, float eps) {
  __shared__ float scratch[32];
  const cuda::RowGroup<kBlock> g;
  for (int64_t r = g.first; r < rows; r += g.stride) {
    const T* xr = x + r * C;
    const T* rr = residual + r * C;
    T* sr = sum + r * C;
    T* yr = out + r * C;
    float ss = 0.0f;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float a[N], b[N];
      cuda::load_pack(a, xr + c);
      cuda::load_pack(b, rr + c);
      for (int i = 0; i < N; ++i) {
        a[i] = ld(cuda::from_float<T>(a[i] + b[i]));  // the value sum will hold
        ss += a[i] * a[i];
      }
      cuda::store_pack(sr + c, a);
    }
    const float rs = row_rstd(cuda::row_sum<kBlock>(ss, scratch), C, eps);
    if (g.lane == 0) rstd[r] = rs;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N], wv[N];
      cuda::load_pack(v, sr + c);
      cuda::load_pack(wv, w + c);
      for (int i = 0; i < N; ++i) v[i] = (v[i] * rs) * wv[i];
      cuda::store_pack(yr + c, v);
    }
  }
}

// ---- RMSNorm backward ------------------------------------------------------------------------
// y = x r w with r = (mean(x^2) + eps)^(-1/2):
//   dx_j = r w_j dy_j - r^3 x_j / C * sum_k w_k dy_k x_k,   dw_j += sum_rows dy_j x_j r.
//
// NOTES: dw is reduced without atomics, in a fixed order. Each row group (warp or block) keeps
// a private row of C f32 sums in shared memory, column c owned by one thread; at the end a
// block adds its groups' rows in group order into dw_partial[blockIdx.x], and
// dw_reduce_kernel adds the blocks' rows in block order (in double) to dw. The grid size
// depends only on the shapes and the device, so results repeat bit for bit. dx may alias
// dout: each element is read (dot product, dw) before its owner thread writes dx.

// acc[0, N) += v, in 16-byte pieces where N allows (dynamic shared memory is 16-byte aligned).
template <int N>
__device__ __forceinline__ void add_to_shared(float* acc, const float (&v)[N]) {
  constexpr int M = N % 4 == 0 ? 4 : 1;
  for (int j = 0; j < N; j += M) {
    auto* p = reinterpret_cast<cuda::Pack<float, M>*>(acc + j);
    cuda::Pack<float, M> a = *p;
    for (int i = 0; i < M; ++i) a.v[i] += v[j + i];
    *p = a;
  }
}

template <class T, class TW, bool kBlock, int N>
__global__ void rmsnorm_backward_kernel(T* dx, float* dw_partial, const T* dout, const T* x, const TW* w,
                                        const float* rstd, int64_t rows, int64_t C) {
  extern __shared__ float4 acc_storage[];  // [row groups of the block][C] floats
  __shared__ float scratch[32];
  float* acc = reinterpret_cast<float*>(acc_storage);
  const cuda::RowGroup<kBlock> g;
  float* my = acc + int64_t(g.group) * C;
  for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N)
    for (int i = 0; i < N; ++i) my[c + i] = 0.0f;
  for (int64_t r = g.first; r < rows; r += g.stride) {
    const T* xr = x + r * C;
    const T* dyr = dout + r * C;
    T* dxr = dx + r * C;
    const float rs = rstd[r];
    float dot = 0.0f;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float dy[N], xv[N], wv[N], part[N];
      cuda::load_pack(dy, dyr + c);
      cuda::load_pack(xv, xr + c);
      cuda::load_pack(wv, w + c);
      for (int i = 0; i < N; ++i) {
        dot += dy[i] * wv[i] * xv[i];
        part[i] = dy[i] * xv[i] * rs;
      }
      add_to_shared(my + c, part);
    }
    dot = cuda::row_sum<kBlock>(dot, scratch);
    const float k = rs * rs * rs * dot / float(C);
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float dy[N], xv[N], wv[N];
      cuda::load_pack(dy, dyr + c);
      cuda::load_pack(xv, xr + c);
      cuda::load_pack(wv, w + c);
      for (int i = 0; i < N; ++i) dy[i] = rs * (dy[i] * wv[i]) - k * xv[i];
      cuda::store_pack(dxr + c, dy);
    }
  }
  __syncthreads();
  const int groups = kBlock ? 1 : int(blockDim.x) / 32;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float s = 0.0f;
    for (int i = 0; i < groups; ++i) s += acc[int64_t(i) * C + c];
    dw_partial[int64_t(blockIdx.x) * C + c] = s;
  }
}

template <class TW>
__global__ void dw_reduce_kernel(TW* dw, const float* partial, int blocks, int64_t C) {
  for (int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; c < C; c += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int b = 0; b < blocks; ++b) s += partial[int64_t(b) * C + c];
    st(dw + c, ld(dw + c) + float(s));
  }
}

template <class T, class TW, bool kBlock, int N>
void rmsnorm_backward_launch(CudaOps& ops, const cuda::RowLayout& L, Tensor dx, Tensor dw, Tensor dout, Tensor x,
                             Tensor w, Tensor rstd, int64_t rows, int64_t C) {
  const auto kernel = rmsnorm_backward_kernel<T, TW, kBlock, N>;
  const size_t smem = size_t(L.rows_per_block) * size_t(C) * sizeof(float);
  if (smem > kDefaultSmem) {
    const int most = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, ops.device_index());
    GRPO_CHECK(smem <= size_t(most), "rmsnorm_backward: rows of " << C << " elements need " << smem
                                         << " bytes of shared memory; the device has " << most);
    GRPO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  }
  // As many blocks as fit on the device at once (each adds one partial dw row), no more than
  // there are rows for.
  int per_sm = 0;
  GRPO_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, L.threads, smem));
  const int sms = device_attribute(cudaDevAttrMultiProcessorCount, ops.device_index());
  const int64_t fit = int64_t(std::max(per_sm, 1)) * sms;
  const int grid = int(std::clamp<int64_t>((rows + L.rows_per_block - 1) / L.rows_per_block, 1, fit));
  auto* partial = static_cast<float*>(ops.workspace(size_t(grid) * size_t(C) * sizeof(float)));
  kernel<<<grid, L.threads, smem, ops.stream()>>>(cuda::dptr<T>(dx), partial, cuda::dptr<T>(dout), cuda::dptr<T>(x),
                                                  cuda::dptr<TW>(w), cuda::dptr<float>(rstd), rows, C);
  GRPO_LAUNCH_CHECK("rmsnorm_backward");
  dw_reduce_kernel<TW><<<cuda::grid_for(C, 256), 256, 0, ops.stream()>>>(cuda::dptr<TW>(dw), partial, grid, C);
  GRPO_LAUNCH_CHECK("rmsnorm_backward");
}

// ---- RoPE ------------------------------------------------------------------------------------
// Per token t and pair i: angle = float(positions[t]) * inv_freq[i] (one f32 product),
// c = cos(angle) * scaling, s = sin(angle) * scaling * sin_sign, (a, b) -> (a c - b s, b c + a s);
// sin_sign = -1 applies the transpose (the backward). cos and sin are evaluated in double and
// rounded, as on the CPU.

struct RopeArgs {
  int64_t T;
  int H, D, half;     // half = rot_dim / 2 pairs per head
  bool interleaved;   // pairs (2i, 2i + 1), else (i, i + half)
  bool copy_tail;     // out != in and rot_dim < D: copy dimensions [rot_dim, D)
  float scaling, sin_sign;
};

// One block per token (grid-stride over tokens): the token's cos/sin table is computed once
// into shared memory, then the block rotates the pairs of all heads. Each pair is read and
// written by one thread, so out may alias in. A negative position sets *bad_position to
// 1 + the token index (the first that wins).
template <class T>
__global__ void rope_kernel(T* out, const T* in, const int32_t* positions, const float* inv_freq, RopeArgs a,
                            int* bad_position) {
  extern __shared__ float table[];  // cos [half], then sin [half]
  float* cos_t = table;
  float* sin_t = table + a.half;
  const int pair_stride = a.interleaved ? 2 : 1, partner = a.interleaved ? 1 : a.half;
  const int tail = a.copy_tail ? a.D - 2 * a.half : 0;
  for (int64_t t = blockIdx.x; t < a.T; t += gridDim.x) {
    const int32_t pos = positions[t];
    if (pos < 0 && threadIdx.x == 0) atomicCAS(bad_position, 0, t < INT_MAX ? int(t + 1) : INT_MAX);
    __syncthreads();  // the previous token's table is no longer read
    for (int i = threadIdx.x; i < a.half; i += blockDim.x) {
      const float angle = float(pos) * inv_freq[i];
      double s, c;
      sincos(double(angle), &s, &c);
      cos_t[i] = float(c) * a.scaling;
      sin_t[i] = float(s) * a.scaling * a.sin_sign;
    }
    __syncthreads();
    const int64_t token = t * a.H * a.D;
    for (int k = threadIdx.x; k < a.H * a.half; k += blockDim.x) {
      const int h = k / a.half, i = k - h * a.half;
      const int64_t j = token + int64_t(h) * a.D + i * pair_stride;
      const float x0 = ld(in + j), x1 = ld(in + j + partner), c = cos_t[i], s = sin_t[i];
      st(out + j, x0 * c - x1 * s);
      st(out + j + partner, x1 * c + x0 * s);
    }
    for (int k = threadIdx.x; k < a.H * tail; k += blockDim.x) {
      const int h = k / tail;
      const int64_t j = token + int64_t(h) * a.D + 2 * a.half + (k - h * tail);
      out[j] = in[j];
    }
  }
}

void rope_launch(CudaOps& ops, const char* op, Tensor out, Tensor in, Tensor positions, const RopeParams& p,
                 bool transpose) {
  const int64_t tokens = in.shape[0], H = in.shape[1], D = in.shape[2];
  if (in.numel() == 0) return;
  GRPO_CHECK(H * D <= INT_MAX, op << ": " << in.str() << " has more than 2^31 elements per token");
  const size_t smem = size_t(p.rot_dim) * sizeof(float);
  GRPO_CHECK(smem <= kDefaultSmem, op << ": rot_dim " << p.rot_dim << " is too large (at most "
                                      << kDefaultSmem / sizeof(float) << ")");
  RopeArgs a;
  a.T = tokens;
  a.H = int(H);
  a.D = int(D);
  a.half = int(p.rot_dim / 2);
  a.interleaved = p.layout == RopeLayout::interleaved;
  a.copy_tail = out.data != in.data && p.rot_dim < D;
  a.scaling = p.attention_scaling;
  a.sin_sign = transpose ? -1.0f : 1.0f;
  const int threads = int(std::clamp<int64_t>((H * a.half + 31) / 32 * 32, 32, 256));
  int* flag = ops.error_flag();
  GRPO_DISPATCH_FLOAT(in.dtype, op, T, {
    rope_kernel<T><<<cuda::grid_for(tokens, 1), threads, smem, ops.stream()>>>(
        cuda::dptr<T>(out), cuda::dptr<T>(in), cuda::dptr<int32_t>(positions), cuda::dptr<float>(p.inv_freq), a,
        flag);
  });
  GRPO_LAUNCH_CHECK(op);
  // Synchronises: a negative position is an error on every backend (the CPU names it).
  ops.throw_if_flagged(op, "positions[code - 1] is negative, expected >= 0");
}

}  // namespace

void CudaOps::rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) {
  const int64_t C = checks::rmsnorm(out, rstd, x, w, eps, Device::cuda, kDataTypes);
  const int64_t rows = x.numel() / C;
  if (rows == 0) return;
  const cuda::RowLayout L = cuda::row_layout(C);
  const unsigned grid = cuda::grid_for(rows, L.rows_per_block);
  dispatch_norm(x.dtype, w.dtype, [&]<class T, class TW>() {
    constexpr int P = cuda::kPack<T>;
    const bool packed = cuda::packed_ok(C, P, P * sizeof(T), out, x) && cuda::packed_ok(C, P, P * sizeof(TW), w);
    const auto kernel = L.per_block ? (packed ? rmsnorm_kernel<T, TW, true, P> : rmsnorm_kernel<T, TW, true, 1>)
                                    : (packed ? rmsnorm_kernel<T, TW, false, P> : rmsnorm_kernel<T, TW, false, 1>);
    kernel<<<grid, L.threads, 0, stream_>>>(cuda::dptr<T>(out), cuda::dptr<float>(rstd), cuda::dptr<T>(x),
                                            cuda::dptr<TW>(w), rows, C, eps);
  });
  GRPO_LAUNCH_CHECK("rmsnorm");
}

void CudaOps::add_rmsnorm(Tensor sum, Tensor out, Tensor rstd, Tensor x, Tensor residual, Tensor w, float eps) {
  const int64_t C = checks::add_rmsnorm(sum, out, rstd, x, residual, w, eps, Device::cuda, kDataTypes);
  const int64_t rows = x.numel() / C;
  if (rows == 0) return;
  const cuda::RowLayout L = cuda::row_layout(C);
  const unsigned grid = cuda::grid_for(rows, L.rows_per_block);
  dispatch_norm(x.dtype, w.dtype, [&]<class T, class TW>() {
    constexpr int P = cuda::kPack<T>;
    const bool packed = cuda::packed_ok(C, P, P * sizeof(T), sum, out, x, residual) &&
                        cuda::packed_ok(C, P, P * sizeof(TW), w);
    const auto kernel = L.per_block
                            ? (packed ? add_rmsnorm_kernel<T, TW, true, P> : add_rmsnorm_kernel<T, TW, true, 1>)
                            : (packed ? add_rmsnorm_kernel<T, TW, false, P> : add_rmsnorm_kernel<T, TW, false, 1>);
    kernel<<<grid, L.threads, 0, stream_>>>(cuda::dptr<T>(sum), cuda::dptr<T>(out), cuda::dptr<float>(rstd),
                                            cuda::dptr<T>(x), cuda::dptr<T>(residual), cuda::dptr<TW>(w), rows, C,
                                            eps);
  });
  GRPO_LAUNCH_CHECK("add_rmsnorm");
}

void CudaOps::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) {
  const int64_t C = checks::rmsnorm_backward(dx, dw, dout, x, w, rstd, Device::cuda, kDataTypes);
  const int64_t rows = x.numel() / C;
  if (rows == 0) return;
  const cuda::RowLayout L = cuda::row_layout(C);
  dispatch_norm(x.dtype, w.dtype, [&]<class T, class TW>() {
    constexpr int P = cuda::kPack<T>;
    const bool packed = cuda::packed_ok(C, P, P * sizeof(T), dx, dout, x) && cuda::packed_ok(C, P, P * sizeof(TW), w);
    const auto launch = L.per_block ? (packed ? rmsnorm_backward_launch<T, TW, true, P>
                                              : rmsnorm_backward_launch<T, TW, true, 1>)
                                    : (packed ? rmsnorm_backward_launch<T, TW, false, P>
                                              : rmsnorm_backward_launch<T, TW, false, 1>);
    launch(*this, L, dx, dw, dout, x, w, rstd, rows, C);
  });
}

void CudaOps::rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) {
  checks::rope("rope", "out", out, "x", x, positions, p, Device::cuda, kDataTypes);
  rope_launch(*this, "rope", out, x, positions, p, /*transpose=*/false);
}

void CudaOps::rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) {
  checks::rope("rope_backward", "dx", dx, "dout", dout, positions, p, Device::cuda, kDataTypes);
  rope_launch(*this, "rope_backward", dx, dout, positions, p, /*transpose=*/true);
}

}  // namespace grpo
