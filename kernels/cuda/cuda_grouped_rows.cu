// grouped_matmul for few rows per expert (decoding), with the expert offsets read on the
// device: no copy to the host and no synchronisation, so the op can be captured in a graph.
// CudaOps::grouped_matmul (cuda_matmul.cu) takes this path for at most kDeviceGroupedMaxRows
// rows and always while capturing.
//
// Math (Ops::grouped_matmul): for each expert e, out[rows_e] = x[rows_e] @ w[e]^T with
// rows_e = [offsets[e], offsets[e + 1]); x [R, K], w [E, N, K] (HF [out, in]), out [R, N].
// x and w share f32 or bf16; out has their dtype or f32. Accumulation is f32.
//
// Two kernels on the op's stream, then the op's check:
//   1. check_offsets_kernel raises the flag when offsets[0] != 0, the offsets decrease, or
//      offsets[E] != R. CudaOps::check_flag then throws the CPU's message (its report copies
//      the offsets to the host and runs checks::expert_offsets), here or after a graph replay.
//   2. grouped_rows_kernel: grid (column tiles of N, experts). A block whose expert has no
//      rows leaves at once; otherwise it walks its expert's rows in chunks of kChunkRows, and
//      each warp, for each of its columns n, streams the weight row w[e, n, :] (contiguous in
//      K) once per chunk against the chunk's x rows: lanes along K, one f32 accumulator per
//      row, a warp reduction per row at the end. Loads are 16-byte vectors when K and the
//      base pointers allow it, scalars otherwise. The weights dominate the traffic: with at
//      most kChunkRows rows per expert each weight element is read once.
// NOTES: the compute kernel runs before the check's result is known, so it must stay in
// bounds whatever the offsets hold: each expert's range is clamped to [0, R] (a bad call's
// output is garbage, and the op throws).
#include <climits>
#include <cstdint>
#include <vector>

#include "kernels/checks_matmul.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo::cuda {

namespace {

constexpr int kThreads = 256;  // 8 warps
constexpr int kWarps = kThreads / 32;
constexpr int kTileCols = 32;  // output columns per block (kTileCols / kWarps per warp)
constexpr int kChunkRows = 8;  // x rows sharing one pass over the weight rows
constexpr int64_t kMaxGridY = 65535;

// Codes of the offsets check (OR-ed into the flag).
constexpr int kBadFirst = 1;    // offsets[0] != 0
constexpr int kDecreasing = 2;  // offsets[e + 1] < offsets[e]
constexpr int kBadLast = 4;     // offsets[E] != R

// Elements of T in one 16-byte vector.
template <class T>
constexpr int kVecOf = 16 / int(sizeof(T));

// 16 bytes at p (16-byte aligned) as floats.
__device__ __forceinline__ void load_vec(const float* p, float (&f)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  f[0] = v.x;
  f[1] = v.y;
  f[2] = v.z;
  f[3] = v.w;
}
// bf16 -> f32 is exact: the bf16 bits are the f32's high half (low element in the low half).
__device__ __forceinline__ void load_vec(const bf16* p, float (&f)[8]) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  const unsigned words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(words[i] << 16);
    f[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

// offsets [E + 1] against the CPU's rules; raises `flag` (never clears it).
__global__ void check_offsets_kernel(const int32_t* __restrict__ offsets, int64_t E, int64_t R, int* flag) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i <= E; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t o = offsets[i];
    if (i == 0 && o != 0) atomicOr(flag, kBadFirst);
    if (i < E && offsets[i + 1] < o) atomicOr(flag, kDecreasing);
    if (i == E && int64_t(o) != R) atomicOr(flag, kBadLast);
  }
}

// out [R, N] = per expert x[rows_e] [n_e, K] @ w[e]^T [K, N]. Grid (column tiles, experts);
// blockIdx.y strides over the experts when E exceeds the grid's limit. kVector: K is a multiple
// of kVecOf<Ti> and x, w are 16-byte aligned (so is every row start).
template <class Ti, class To, bool kVector>
__global__ void grouped_rows_kernel(To* __restrict__ out, const Ti* __restrict__ x, const Ti* __restrict__ w,
                                    const int32_t* __restrict__ offsets, int64_t E, int64_t R, int64_t N, int64_t K) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t n0 = int64_t(blockIdx.x) * kTileCols;
  const int64_t n_end = n0 + kTileCols < N ? n0 + kTileCols : N;
  for (int64_t e = blockIdx.y; e < E; e += gridDim.y) {
    // Clamped: bad offsets (flagged by the check kernel) must not send us out of bounds.
    const int64_t r0 = min(max(int64_t(offsets[e]), int64_t(0)), R);
    const int64_t r1 = min(max(int64_t(offsets[e + 1]), r0), R);
    if (r0 == r1) continue;  // no rows: nothing to write
    const Ti* we = w + e * N * K;
    for (int64_t c = r0; c < r1; c += kChunkRows) {
      const int rows = int(min(int64_t(kChunkRows), r1 - c));  // warp-uniform
      const Ti* xc = x + c * K;
      for (int64_t n = n0 + warp; n < n_end; n += kWarps) {
        const Ti* wn = we + n * K;
        float acc[kChunkRows];
#pragma unroll
        for (int r = 0; r < kChunkRows; ++r) acc[r] = 0.0f;
        if constexpr (kVector) {
          constexpr int V = kVecOf<Ti>;
          for (int64_t k = int64_t(lane) * V; k < K; k += 32 * V) {
            float wv[V];
            load_vec(wn + k, wv);
#pragma unroll
            for (int r = 0; r < kChunkRows; ++r) {
              if (r < rows) {
                float xv[V];
                load_vec(xc + r * K + k, xv);
#pragma unroll
                for (int i = 0; i < V; ++i) acc[r] = fmaf(wv[i], xv[i], acc[r]);
              }
            }
          }
        } else {
          for (int64_t k = lane; k < K; k += 32) {
            const float wk = ld(wn + k);
#pragma unroll
            for (int r = 0; r < kChunkRows; ++r)
              if (r < rows) acc[r] = fmaf(wk, ld(xc + r * K + k), acc[r]);
          }
        }
        // Every lane gets each row's sum; lane r stores row c + r.
        float mine = 0.0f;
#pragma unroll
        for (int r = 0; r < kChunkRows; ++r) {
          if (r < rows) {
            const float s = warp_sum(acc[r]);
            if (lane == r) mine = s;
          }
        }
        if (lane < rows) st(out + (c + lane) * N + n, mine);
      }
    }
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

template <class Ti, class To>
void launch_rows(CudaOps& ops, const char* op, const Tensor& out, const Tensor& x, const Tensor& w,
                 const int32_t* offsets, int64_t E, int64_t R, int64_t N, int64_t K) {
  const int64_t tiles = (N + kTileCols - 1) / kTileCols;
  GRPO_CHECK(tiles <= INT_MAX, op << ": " << N << " output columns are too many for one grid");
  const dim3 grid(unsigned(tiles), unsigned(E < kMaxGridY ? E : kMaxGridY));
  const bool vector = K % kVecOf<Ti> == 0 && aligned16(x.data) && aligned16(w.data);
  if (vector)
    grouped_rows_kernel<Ti, To, true><<<grid, kThreads, 0, ops.stream()>>>(dptr<To>(out), dptr<const Ti>(x),
                                                                           dptr<const Ti>(w), offsets, E, R, N, K);
  else
    grouped_rows_kernel<Ti, To, false><<<grid, kThreads, 0, ops.stream()>>>(dptr<To>(out), dptr<const Ti>(x),
                                                                            dptr<const Ti>(w), offsets, E, R, N, K);
  GRPO_LAUNCH_CHECK(op);
}

}  // namespace

void grouped_matmul_device(CudaOps& ops, const char* op, Tensor out, Tensor x, Tensor w, Tensor expert_offsets,
                           int64_t E, int64_t R, int64_t N, int64_t K) {
  const int32_t* offsets = dptr<const int32_t>(expert_offsets);
  int* flag = ops.error_flag();
  check_offsets_kernel<<<grid_for(E + 1, kThreads), kThreads, 0, ops.stream()>>>(offsets, E, R, flag);
  GRPO_LAUNCH_CHECK(op);
  // R == 0 or N == 0: nothing to write. E == 0 with R > 0 is flagged (offsets[0] != R).
  // K == 0 runs the kernel: its sums over an empty K are the zeros out must hold.
  if (E > 0 && R > 0 && N > 0) {
    GRPO_DISPATCH_FLOAT(out.dtype, op, To, GRPO_DISPATCH_FLOAT(x.dtype, op, Ti, {
      launch_rows<Ti, To>(ops, op, out, x, w, offsets, E, R, N, K);
    }));
  }
  // Kept until after a graph's replays: everything by value (the tensors are views).
  CudaOps* o = &ops;
  ops.check_flag(
      op,
      [o, op, expert_offsets, x, E, R](int) {
        std::vector<int32_t> host(size_t(E + 1));
        o->allocator().copy_to_host(host.data(), expert_offsets.data, host.size() * sizeof(int32_t));
        checks::expert_offsets(op, host.data(), E, R, x);
      },
      "expert_offsets are not valid: the code ORs 1 (offsets[0] != 0), 2 (they decrease) and 4 (the last "
      "offset is not the rows of x)");
}

}  // namespace grpo::cuda
