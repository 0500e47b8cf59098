// Row-wise kernels (softmax, RMSNorm): each row of C elements is reduced by one warp when it
// is short (eight rows per 256-thread block) or by a whole block when it is long, and read and
// written in packs of N consecutive elements, one memory access each: N = kPack<T> (16 bytes,
// 4 f32 or 8 bf16) when C is a multiple of it and every pointer is aligned to its pack
// (packed_ok), else N = 1.
//
//   host:   const RowLayout L = row_layout(C);
//           kernel<T, L.per_block, N><<<grid_for(rows, L.rows_per_block), L.threads>>>(...)
//   device: const RowGroup<kBlock> g;                   // this thread's rows and lane
//           for (int64_t r = g.first; r < rows; r += g.stride) {
//             for (int64_t c = int64_t(g.lane) * N; c < C; c += int64_t(g.width) * N) {
//               float v[N];
//               load_pack(v, xr + c); ...               // or store_pack(yr + c, v)
//             }
//             s = row_sum<kBlock>(s, scratch);          // scratch: __shared__ float[32]
//           }
//
// NOTES: in block mode every thread of a block walks the same rows (a uniform trip count),
// which the block reductions' __syncthreads need; in warp mode warps walk rows independently.
// Element c of a row is always handled by the same thread, so a kernel that reads the row,
// reduces, then writes it may run in place.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/cuda_common.cuh"

namespace grpo::cuda {

// Rows up to this long are reduced by one warp, longer ones by a whole block.
inline constexpr int64_t kWarpRowMax = 1024;

struct RowLayout {
  bool per_block;      // false: one warp per row
  int threads;         // block size
  int rows_per_block;  // rows a block handles at a time
};

inline RowLayout row_layout(int64_t C) {
  if (C <= kWarpRowMax) return {false, 256, 256 / 32};
  // About eight elements per thread, 128 to 1024 threads.
  const int64_t t = std::clamp<int64_t>((C / 8 + 31) / 32 * 32, 128, 1024);
  return {true, int(t), 1};
}

template <bool kBlock>
struct RowGroup {
  int lane;        // position in the row group (the first column this thread handles)
  int width;       // threads per row (the column stride)
  int group;       // row group within the block (always 0 in block mode)
  int64_t first;   // first row of this thread
  int64_t stride;  // row stride (rows handled by the whole grid at a time)
  __device__ RowGroup() {
    const int groups = kBlock ? 1 : int(blockDim.x) / 32;
    lane = kBlock ? int(threadIdx.x) : int(threadIdx.x & 31);
    width = kBlock ? int(blockDim.x) : 32;
    group = kBlock ? 0 : int(threadIdx.x) / 32;
    first = int64_t(blockIdx.x) * groups + group;
    stride = int64_t(gridDim.x) * groups;
  }
};

// ---- packed access ---------------------------------------------------------------------------

// Elements of T per 16-byte access.
template <class T>
inline constexpr int kPack = int(16 / sizeof(T));

template <class T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

// Every tensor's data aligned to `bytes` (row starts then are too when C is a multiple of the pack).
template <class... Ts>
bool packed_ok(int64_t C, int64_t pack, size_t bytes, const Ts&... t) {
  return C % pack == 0 && ((reinterpret_cast<uintptr_t>(t.data) % bytes == 0) && ...);
}

template <int N, class T>
__device__ __forceinline__ void load_pack(float (&out)[N], const T* p) {
  const Pack<std::remove_const_t<T>, N> k = *reinterpret_cast<const Pack<std::remove_const_t<T>, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) out[i] = ld(k.v[i]);
}

template <int N, class T>
__device__ __forceinline__ void store_pack(T* p, const float (&in)[N]) {
  Pack<T, N> k;
#pragma unroll
  for (int i = 0; i < N; ++i) k.v[i] = from_float<T>(in[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = k;
}

// ---- row reductions --------------------------------------------------------------------------

template <bool kBlock>
__device__ __forceinline__ float row_sum(float v, float* scratch) {
  if constexpr (kBlock) return block_sum(v, scratch);
  else return warp_sum(v);
}

template <bool kBlock>
__device__ __forceinline__ float row_max(float v, float* scratch) {
  if constexpr (kBlock) return block_max(v, scratch);
  else return warp_max(v);
}

}  // namespace grpo::cuda
