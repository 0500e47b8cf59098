// Elementwise helpers (add, scale, zero, copy), SwiGLU and softmax on CUDA. Data tensors are
// f32 or bf16 (one dtype per call; copy also converts between the two), arithmetic is f32.
// Elementwise kernels are grid-stride loops with int64 indices; softmax reduces each row
// with one warp or one block (cuda_rows.cuh).
#include "kernels/checks_norm.h"
#include "kernels/cuda/cuda_ops_impl.h"
#include "kernels/cuda/cuda_rows.cuh"

namespace grpo {

namespace {

using cuda::bf16;
using cuda::ld;
using cuda::st;

constexpr DType kDataTypes[] = {DType::f32, DType::bf16};
constexpr int kThreads = 256;

// for (i over [0, n) in grid-stride steps)
#define GRID_STRIDE(i, n) \
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += int64_t(gridDim.x) * blockDim.x)

template <class T>
__global__ void add_kernel(T* out, const T* a, const T* b, int64_t n) {
  GRID_STRIDE(i, n) st(out + i, ld(a + i) + ld(b + i));
}

template <class T>
__global__ void scale_kernel(T* x, float s, int64_t n) {
  GRID_STRIDE(i, n) st(x + i, ld(x + i) * s);
}

template <class To, class From>
__global__ void convert_kernel(To* dst, const From* src, int64_t n) {
  GRID_STRIDE(i, n) st(dst + i, ld(src + i));
}

__device__ __forceinline__ float sigmoid(float g) { return 1.0f / (1.0f + expf(-g)); }

template <class T>
__global__ void swiglu_kernel(T* out, const T* gate, const T* up, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = ld(gate + i);
    st(out + i, (g * sigmoid(g)) * ld(up + i));
  }
}

// silu'(g) = s (1 + g (1 - s)) with s = sigmoid(g). Every input is read before either output
// is written, so outputs may alias inputs element for element.
template <class T>
__global__ void swiglu_backward_kernel(T* dgate, T* dup, const T* dout, const T* gate, const T* up, int64_t n) {
  GRID_STRIDE(i, n) {
    const float g = ld(gate + i), u = ld(up + i), dy = ld(dout + i);
    const float s = sigmoid(g);
    st(dup + i, dy * g * s);
    st(dgate + i, dy * u * s * (1.0f + g * (1.0f - s)));
  }
}

// ---- softmax: one warp or one block per row (cuda_rows.cuh) --------------------------------

// N: elements per memory access (cuda_rows.cuh), kPack<T> or 1.
template <class T, bool kBlock, int N>
__global__ void softmax_kernel(T* out, const T* x, int64_t rows, int64_t C) {
  __shared__ float scratch[32];
  const cuda::RowGroup<kBlock> g;
  for (int64_t r = g.first; r < rows; r += g.stride) {
    const T* xr = x + r * C;
    T* yr = out + r * C;  // may equal xr: see cuda_rows.cuh
    float mx = -INFINITY;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N];
      cuda::load_pack(v, xr + c);
      for (int i = 0; i < N; ++i) mx = fmaxf(mx, v[i]);
    }
    mx = cuda::row_max<kBlock>(mx, scratch);
    float sum = 0.0f;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N];
      cuda::load_pack(v, xr + c);
      for (int i = 0; i < N; ++i) sum += expf(v[i] - mx);
    }
    const float inv = 1.0f / cuda::row_sum<kBlock>(sum, scratch);
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float v[N];
      cuda::load_pack(v, xr + c);
      for (int i = 0; i < N; ++i) v[i] = expf(v[i] - mx) * inv;
      cuda::store_pack(yr + c, v);
    }
  }
}

// dx = out * (dout - sum(dout * out)) per row.
template <class T, bool kBlock, int N>
__global__ void softmax_backward_kernel(T* dx, const T* dout, const T* out, int64_t rows, int64_t C) {
  __shared__ float scratch[32];
  const cuda::RowGroup<kBlock> g;
  for (int64_t r = g.first; r < rows; r += g.stride) {
    const T* yr = out + r * C;
    const T* dyr = dout + r * C;
    T* dxr = dx + r * C;  // may equal dyr
    float dot = 0.0f;
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float y[N], dy[N];
      cuda::load_pack(y, yr + c);
      cuda::load_pack(dy, dyr + c);
      for (int i = 0; i < N; ++i) dot += dy[i] * y[i];
    }
    dot = cuda::row_sum<kBlock>(dot, scratch);
    for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
      float y[N], dy[N];
      cuda::load_pack(y, yr + c);
      cuda::load_pack(dy, dyr + c);
      for (int i = 0; i < N; ++i) dy[i] = y[i] * (dy[i] - dot);
      cuda::store_pack(dxr + c, dy);
    }
  }
}

bool overlap(const Tensor& a, const Tensor& b) {
  const auto* pa = static_cast<const char*>(a.data);
  const auto* pb = static_cast<const char*>(b.data);
  return pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

}  // namespace

void CudaOps::add(Tensor out, Tensor a, Tensor b) {
  checks::add(out, a, b, Device::cuda, kDataTypes);
  const int64_t n = a.numel();
  if (n == 0) return;
  GRPO_DISPATCH_FLOAT(a.dtype, "add", T, {
    add_kernel<T><<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(cuda::dptr<T>(out), cuda::dptr<T>(a),
                                                                         cuda::dptr<T>(b), n);
  });
  GRPO_LAUNCH_CHECK("add");
}

void CudaOps::scale(Tensor x, float s) {
  checks::scale(x, Device::cuda, kDataTypes);
  const int64_t n = x.numel();
  if (n == 0) return;
  GRPO_DISPATCH_FLOAT(x.dtype, "scale", T, {
    scale_kernel<T><<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(cuda::dptr<T>(x), s, n);
  });
  GRPO_LAUNCH_CHECK("scale");
}

void CudaOps::zero(Tensor x) {
  checks::zero(x, Device::cuda);
  if (x.nbytes()) GRPO_CUDA_CHECK(cudaMemsetAsync(x.data, 0, x.nbytes(), stream_));
}

void CudaOps::copy(Tensor dst, Tensor src) {
  checks::copy(dst, src, Device::cuda, /*convert_float=*/true);
  const int64_t n = src.numel();
  if (n == 0 || (dst.data == src.data && dst.dtype == src.dtype)) return;
  // cudaMemcpy and the conversion kernel have no memmove semantics.
  GRPO_CHECK(!overlap(dst, src), "copy: dst " << dst.str() << " overlaps src " << src.str()
                                              << " (only a copy onto itself is allowed)");
  if (dst.dtype == src.dtype) {
    GRPO_CUDA_CHECK(cudaMemcpyAsync(dst.data, src.data, src.nbytes(), cudaMemcpyDeviceToDevice, stream_));
    return;
  }
  const unsigned grid = cuda::grid_for(n, kThreads);
  if (dst.dtype == DType::bf16)
    convert_kernel<<<grid, kThreads, 0, stream_>>>(cuda::dptr<bf16>(dst), cuda::dptr<float>(src), n);
  else
    convert_kernel<<<grid, kThreads, 0, stream_>>>(cuda::dptr<float>(dst), cuda::dptr<bf16>(src), n);
  GRPO_LAUNCH_CHECK("copy");
}

void CudaOps::swiglu(Tensor out, Tensor gate, Tensor up) {
  checks::swiglu(out, gate, up, Device::cuda, kDataTypes);
  const int64_t n = gate.numel();
  if (n == 0) return;
  GRPO_DISPATCH_FLOAT(gate.dtype, "swiglu", T, {
    swiglu_kernel<T><<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(
        cuda::dptr<T>(out), cuda::dptr<T>(gate), cuda::dptr<T>(up), n);
  });
  GRPO_LAUNCH_CHECK("swiglu");
}

void CudaOps::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) {
  checks::swiglu_backward(dgate, dup, dout, gate, up, Device::cuda, kDataTypes);
  const int64_t n = gate.numel();
  if (n == 0) return;
  GRPO_DISPATCH_FLOAT(gate.dtype, "swiglu_backward", T, {
    swiglu_backward_kernel<T><<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(
        cuda::dptr<T>(dgate), cuda::dptr<T>(dup), cuda::dptr<T>(dout), cuda::dptr<T>(gate), cuda::dptr<T>(up), n);
  });
  GRPO_LAUNCH_CHECK("swiglu_backward");
}

void CudaOps::softmax(Tensor out, Tensor x) {
  checks::softmax(out, x, Device::cuda, kDataTypes);
  if (x.numel() == 0) return;
  const int64_t C = x.size(-1), rows = x.numel() / C;
  const cuda::RowLayout L = cuda::row_layout(C);
  const unsigned grid = cuda::grid_for(rows, L.rows_per_block);
  GRPO_DISPATCH_FLOAT(x.dtype, "softmax", T, {
    constexpr int P = cuda::kPack<T>;
    const bool packed = cuda::packed_ok(C, P, P * sizeof(T), out, x);
    const auto kernel = L.per_block ? (packed ? softmax_kernel<T, true, P> : softmax_kernel<T, true, 1>)
                                    : (packed ? softmax_kernel<T, false, P> : softmax_kernel<T, false, 1>);
    kernel<<<grid, L.threads, 0, stream_>>>(cuda::dptr<T>(out), cuda::dptr<T>(x), rows, C);
  });
  GRPO_LAUNCH_CHECK("softmax");
}

void CudaOps::softmax_backward(Tensor dx, Tensor dout, Tensor out) {
  checks::softmax_backward(dx, dout, out, Device::cuda, kDataTypes);
  if (out.numel() == 0) return;
  const int64_t C = out.size(-1), rows = out.numel() / C;
  const cuda::RowLayout L = cuda::row_layout(C);
  const unsigned grid = cuda::grid_for(rows, L.rows_per_block);
  GRPO_DISPATCH_FLOAT(out.dtype, "softmax_backward", T, {
    constexpr int P = cuda::kPack<T>;
    const bool packed = cuda::packed_ok(C, P, P * sizeof(T), dx, dout, out);
    const auto kernel = L.per_block
                            ? (packed ? softmax_backward_kernel<T, true, P> : softmax_backward_kernel<T, true, 1>)
                            : (packed ? softmax_backward_kernel<T, false, P> : softmax_backward_kernel<T, false, 1>);
    kernel<<<grid, L.threads, 0, stream_>>>(cuda::dptr<T>(dx), cuda::dptr<T>(dout), cuda::dptr<T>(out), rows, C);
  });
  GRPO_LAUNCH_CHECK("softmax_backward");
}

}  // namespace grpo
