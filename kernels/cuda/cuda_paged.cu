// The paged KV cache on the GPU: kv_cache_write (scatter of the new tokens' k, v rows into
// cache slots) and attention_paged (new tokens against their cached context: the rollout
// engine's prefill chunks and decode steps). f32 or bf16 storage, f32 arithmetic.
//
// attention_paged. Decoding is memory-bound: every step reads each sequence's whole K/V
// context once per new token. A CTA takes one kv head and the query heads of its group
// (GQA), so each K/V element it loads serves all of them, plus (in prefill chunks) several
// consecutive new tokens of one sequence: up to kMaxRows "rows" (token, query head), one warp
// per 4 rows. It walks the context in chunks of kKeys keys, gathering each chunk's K and V
// rows through the block table into shared memory with 16-byte asynchronous copies (when D
// and the alignment allow) while the previous chunk is computed (double buffering). Per chunk
// each warp, for its 4 rows:
//   QK:  lane j computes the 4 scores against key j (Q rows are shared-memory broadcasts);
//   softmax: online (running max m and sum l per row), in the log2 domain (q pre-scaled by
//        scale * log2(e)), so the warp needs only a max-reduction per chunk;
//   PV:  lane c accumulates the 4 rows' outputs for head dims 4c..4c+3 (and 4c+128..) in
//        registers, rescaled by exp2(m_old - m_new) per chunk.
// Short batches with long contexts would leave most SMs idle, so the context is split over
// gridDim.z CTAs (flash-decoding): each writes unnormalised partial outputs with its m and l
// to workspace(), and a second kernel combines them.
//
// Index data (cu_seqlens_q, seq_lens_k, block_table, slot_mapping) lives on the device, so it
// is checked there: a check kernel raises bits of error_flag(), the compute kernels read the
// flag first and do nothing when it is set (so bad block ids are never dereferenced), and the
// op throws after them with throw_if_flagged. That check synchronises the host with the
// stream once per call; it is the price of reporting bad indices at the op that got them.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/checks_attention.h"
#include "kernels/checks_paged.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {
namespace {

using cuda::bf16;
using cuda::ld;
using cuda::st;

const checks::DTypes kDataTypes = {DType::f32, DType::bf16};

// ---- kv_cache_write ----------------------------------------------------------------------

// Raises the flag when a slot is past the cache (negative slots are skipped, not errors).
__global__ void kv_slot_check_kernel(const int32_t* __restrict__ slots, int64_t T, int64_t n_slots, int* flag) {
  for (int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; t < T; t += int64_t(gridDim.x) * blockDim.x)
    if (slots[t] >= n_slots) *flag = 1;
}

// Copies token t's row of `row_units` units (U: 16, 4 or 2 bytes) of k and v to its slot.
// One CTA per token (grid-stride); nothing is written when the check raised the flag, so a
// bad call leaves the cache as it was (as on the CPU, which checks every slot first).
template <class U>
__global__ void kv_write_kernel(U* __restrict__ k_cache, U* __restrict__ v_cache, const U* __restrict__ k,
                                const U* __restrict__ v, const int32_t* __restrict__ slots, int64_t T,
                                int64_t row_units, const int* flag) {
  if (*flag) return;
  for (int64_t t = blockIdx.x; t < T; t += gridDim.x) {
    const int32_t slot = slots[t];
    if (slot < 0) continue;  // padding / token not cached
    const U* ks = k + t * row_units;
    const U* vs = v + t * row_units;
    U* kd = k_cache + int64_t(slot) * row_units;
    U* vd = v_cache + int64_t(slot) * row_units;
    for (int64_t i = threadIdx.x; i < row_units; i += blockDim.x) {
      kd[i] = ks[i];
      vd[i] = vs[i];
    }
  }
}

template <class U>
void launch_kv_write(const Tensor& k_cache, const Tensor& v_cache, const Tensor& k, const Tensor& v,
                     const int32_t* slots, int64_t T, int64_t row_bytes, const int* flag, cudaStream_t stream) {
  const int64_t row_units = row_bytes / int64_t(sizeof(U));
  const int threads = row_units >= 256 ? 256 : row_units >= 128 ? 128 : 64;
  const unsigned blocks = unsigned(std::min<int64_t>(T, 65535LL * 16));
  kv_write_kernel<U><<<blocks, threads, 0, stream>>>(static_cast<U*>(k_cache.data), static_cast<U*>(v_cache.data),
                                                     static_cast<const U*>(k.data), static_cast<const U*>(v.data),
                                                     slots, T, row_units, flag);
  GRPO_LAUNCH_CHECK("kv_cache_write");
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// ---- attention_paged: index checks -------------------------------------------------------

// Flag bits (the op's message lists them).
constexpr int kBadCuSeqlens = 1;
constexpr int kBadContext = 2;
constexpr int kBadTableWidth = 4;
constexpr int kBadBlockId = 8;

// The CPU's checks of the index data, one thread per cu_seqlens_q entry / sequence
// (i <= B) and one per block_table entry (i < B * max_blocks). Every read is in bounds
// whatever the data holds.
__global__ void paged_check_kernel(const int32_t* __restrict__ cu, const int32_t* __restrict__ ctx,
                                   const int32_t* __restrict__ table, int64_t B, int64_t T, int64_t max_blocks,
                                   int64_t block_size, int64_t num_blocks, int* flag) {
  const int64_t n_items = B * max_blocks > B + 1 ? B * max_blocks : B + 1;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_items; i += int64_t(gridDim.x) * blockDim.x) {
    int bits = 0;
    if (i <= B) {
      const int32_t c = cu[i];
      if ((i == 0 && c != 0) || (i == B && c != T) || (i < B && cu[i + 1] < c)) bits |= kBadCuSeqlens;
      if (i < B) {
        const int64_t n_new = int64_t(cu[i + 1]) - c;
        if (ctx[i] < n_new) bits |= kBadContext;
        else if (n_new > 0 && (ctx[i] + block_size - 1) / block_size > max_blocks) bits |= kBadTableWidth;
      }
    }
    if (i < B * max_blocks) {
      const int64_t b = i / max_blocks, j = i - b * max_blocks;
      const int64_t n_new = int64_t(cu[b + 1]) - cu[b];
      const int64_t needed = (int64_t(ctx[b]) + block_size - 1) / block_size;  // entries read
      if (n_new > 0 && ctx[b] >= n_new && j < needed && (table[i] < 0 || table[i] >= num_blocks)) bits |= kBadBlockId;
    }
    if (bits) atomicOr(flag, bits);
  }
}

// ---- attention_paged: the attention kernel -------------------------------------------------

constexpr int kKeys = 32;         // keys per context chunk: one per lane in QK
constexpr int kRowsPerWarp = 4;   // (token, query head) rows per warp
constexpr int kMaxWarps = 4;
constexpr int kMaxRows = kRowsPerWarp * kMaxWarps;
constexpr int kMaxHeadDim = 256;  // two 4-wide columns per lane in PV
constexpr int kMaxSplits = 32;    // one per lane in the combine kernel
constexpr float kLog2e = 1.4426950408889634f;

struct PagedParams {
  void* out;                // [T, Hq, D]; written when num_splits == 1
  const void* q;            // [T, Hq, D]
  const void* k_cache;      // [num_blocks, block_size, Hkv, D]
  const void* v_cache;      // [num_blocks, block_size, Hkv, D]
  const int32_t* cu;        // [B + 1]
  const int32_t* ctx;       // [B]
  const int32_t* table;     // [B, max_blocks]
  float* part_o;            // [num_splits, T * Hq, D] unnormalised outputs; nullptr when num_splits == 1
  float* part_m;            // [num_splits, T * Hq] running max (log2 domain), -inf: split saw no key
  float* part_l;            // [num_splits, T * Hq] sum of exp2(score - m)
  const int* flag;          // set by paged_check_kernel: do nothing
  int T, B, Hq, Hkv, D, G;
  int block_size, max_blocks;
  int tokens_per_tile;      // new tokens per CTA (of one sequence; a tile crossing a boundary loops)
  int heads_per_chunk;      // query heads per CTA (G is split into num_head_chunks chunks)
  int num_head_chunks;
  int num_splits;           // gridDim.z: context splits
  int Dp;                   // D rounded up to 16 bytes of T (zero columns past D in shared memory)
  int Ds;                   // K/V tile row stride (elements): Dp, or Dp + 16 bytes, an odd number of 16 bytes
  float scale_log2;         // scale * log2(e)
};

// Shared memory: key offsets [2, kKeys] (i64), K and V tiles [2, kKeys, Ds] (T, double
// buffered), Q rows [kMaxRows, Dp] and P^T [kKeys, kMaxRows] (f32).
size_t paged_smem_bytes(int Dp, int Ds, size_t elem) {
  return 2 * kKeys * sizeof(int64_t) + 4 * kKeys * size_t(Ds) * elem +
         size_t(kMaxRows * Dp + kKeys * kMaxRows) * sizeof(float);
}

// Asynchronous 16-byte global -> shared copies (sm_80+), grouped per chunk.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all_but_one() { asm volatile("cp.async.wait_group 1;\n" ::); }

// Shared-memory tile reads as floats: 16 bytes (4 f32 or 8 bf16) and 4 elements.
__device__ __forceinline__ float bf16_lo(uint32_t w) { return __uint_as_float(w << 16); }
__device__ __forceinline__ float bf16_hi(uint32_t w) { return __uint_as_float(w & 0xffff0000u); }
__device__ __forceinline__ void load16(const float* p, float (&f)[4]) {
  const float4 v = *reinterpret_cast<const float4*>(p);
  f[0] = v.x, f[1] = v.y, f[2] = v.z, f[3] = v.w;
}
__device__ __forceinline__ void load16(const bf16* p, float (&f)[8]) {
  const uint4 v = *reinterpret_cast<const uint4*>(p);
  f[0] = bf16_lo(v.x), f[1] = bf16_hi(v.x), f[2] = bf16_lo(v.y), f[3] = bf16_hi(v.y);
  f[4] = bf16_lo(v.z), f[5] = bf16_hi(v.z), f[6] = bf16_lo(v.w), f[7] = bf16_hi(v.w);
}
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const bf16* p) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  return make_float4(bf16_lo(v.x), bf16_hi(v.x), bf16_lo(v.y), bf16_hi(v.y));
}

__device__ __forceinline__ float dot4(float4 a, float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}
__device__ __forceinline__ void axpy4(float4& y, float a, float4 x) {
  y.x = fmaf(a, x.x, y.x);
  y.y = fmaf(a, x.y, y.y);
  y.z = fmaf(a, x.z, y.z);
  y.w = fmaf(a, x.w, y.w);
}
__device__ __forceinline__ void scale4(float4& y, float a) { y.x *= a, y.y *= a, y.z *= a, y.w *= a; }

// Starts loading the K and V rows of `kn` keys (cache offsets offs) into the tiles kt, vt:
// 16-byte asynchronous copies when kVec (D a multiple of 16 bytes, aligned caches), else
// element by element. Commits one copy group (possibly empty) either way.
template <class T, bool kVec>
__device__ __forceinline__ void issue_chunk(const PagedParams& p, const int64_t* offs, int kn, T* kt, T* vt) {
  const T* kc = static_cast<const T*>(p.k_cache);
  const T* vc = static_cast<const T*>(p.v_cache);
  if constexpr (kVec) {
    constexpr int kVe = 16 / int(sizeof(T));
    const int nv = p.D / kVe, items = kn * nv;
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int key = i / nv, part = i - key * nv;
      const int64_t src = offs[key] + int64_t(part) * kVe;
      const int dst = key * p.Ds + part * kVe;
      cp_async16(kt + dst, kc + src);
      cp_async16(vt + dst, vc + src);
    }
  } else {
    const int items = kn * p.D;
    for (int i = threadIdx.x; i < items; i += blockDim.x) {
      const int key = i / p.D, d = i - key * p.D;
      kt[key * p.Ds + d] = kc[offs[key] + d];
      vt[key * p.Ds + d] = vc[offs[key] + d];
    }
  }
  cp_async_commit();
}

// Tokens [t0, t1) of sequence b (all in one tile), query heads [h0, h0 + nh) of kv head g,
// context split `split`. Shared memory as in paged_attention_kernel.
template <class T, bool kVec>
__device__ void paged_segment(const PagedParams& p, int b, int t0, int t1, int g, int h0, int nh, int split,
                              int64_t* key_off, T* Kt, T* Vt, float* Qs, float* Pt) {
  constexpr int kVe = 16 / int(sizeof(T));  // elements per 16-byte tile read
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int D = p.D, Dp = p.Dp, Ds = p.Ds;
  const int seq_begin = p.cu[b], n_new = p.cu[b + 1] - seq_begin;
  const int first_pos = p.ctx[b] - n_new + (t0 - seq_begin);  // position of token t0
  const int nt = t1 - t0, rows = nt * nh;
  const int n_keys = first_pos + nt;  // the last token sees positions 0 .. first_pos + nt - 1
  int key_begin = 0, key_end = n_keys;
  if (p.num_splits > 1) {
    int len = (n_keys + p.num_splits - 1) / p.num_splits;
    len = (len + kKeys - 1) / kKeys * kKeys;
    key_begin = min(n_keys, split * len);
    key_end = min(n_keys, key_begin + len);
  }
  const int n_chunks = (key_end - key_begin + kKeys - 1) / kKeys;

  // Q rows, pre-scaled; zero rows past `rows` and zero columns past D keep every product finite.
  const T* q = static_cast<const T*>(p.q);
  const int R = (blockDim.x >> 5) * kRowsPerWarp;  // rows the warps read
  for (int i = tid; i < R * Dp; i += blockDim.x) {
    const int r = i / Dp, d = i - r * Dp;
    float x = 0.0f;
    if (r < rows && d < D) {
      const int64_t t = t0 + r / nh, h = h0 + r % nh;
      x = ld(q + (t * p.Hq + h) * D + d) * p.scale_log2;
    }
    Qs[i] = x;
  }

  // Where key `key` of this sequence lives (element offset of its head-g row in the caches).
  // key_off holds the offsets of two chunks: chunk c in buffer c % 2.
  const int32_t* table = p.table + int64_t(b) * p.max_blocks;
  const auto key_offset = [&](int key) {
    const int64_t slot = int64_t(table[key / p.block_size]) * p.block_size + key % p.block_size;
    return (slot * p.Hkv + g) * D;
  };
  for (int i = tid; i < 2 * kKeys && key_begin + i < key_end; i += blockDim.x)
    key_off[i] = key_offset(key_begin + i);  // chunks 0 and 1
  __syncthreads();
  if (n_chunks > 0) issue_chunk<T, kVec>(p, key_off, min(kKeys, key_end - key_begin), Kt, Vt);

  // This warp's rows: position (keys <= pos are visible) and validity.
  const int row0 = warp * kRowsPerWarp;
  const bool active = row0 < rows;
  int pos[kRowsPerWarp];
#pragma unroll
  for (int a = 0; a < kRowsPerWarp; ++a) pos[a] = row0 + a < rows ? first_pos + (row0 + a) / nh : n_keys - 1;
  float m[kRowsPerWarp], l[kRowsPerWarp];  // l: this lane's keys only, summed at the end
  float4 o[kRowsPerWarp][2];
#pragma unroll
  for (int a = 0; a < kRowsPerWarp; ++a) {
    m[a] = -INFINITY;
    l[a] = 0.0f;
    o[a][0] = o[a][1] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  }
  const int nq = Dp / 4;  // 4-wide columns
  const bool col0 = lane < nq, col1 = lane + 32 < nq;
  const float4* qrow = reinterpret_cast<const float4*>(Qs) + row0 * nq;  // this warp's Q rows

  for (int c = 0; c < n_chunks; ++c) {
    const int kb = key_begin + c * kKeys, kn = min(kKeys, key_end - kb);
    const int buf = c & 1;
    // Prefetch chunk c + 1 into the other tiles (its offsets were published by the last barrier).
    const int next = 1 - buf;
    if (c + 1 < n_chunks)
      issue_chunk<T, kVec>(p, key_off + next * kKeys, min(kKeys, key_end - kb - kKeys), Kt + next * kKeys * Ds,
                           Vt + next * kKeys * Ds);
    else
      cp_async_commit();  // an empty group keeps "all but the newest group" meaning chunk c
    cp_async_wait_all_but_one();
    __syncthreads();  // chunk c's tiles (every thread's copies) are visible
    // Chunk c + 2's offsets replace chunk c's: every thread issued chunk c's copies before
    // the barrier above, and chunk c + 2 is issued after the one below.
    if (tid < kKeys && kb + 2 * kKeys + tid < key_end) key_off[buf * kKeys + tid] = key_offset(kb + 2 * kKeys + tid);

    if (active) {
      const T* kt = Kt + buf * kKeys * Ds;
      const T* vt = Vt + buf * kKeys * Ds;
      // Scores of lane's key against the warp's 4 rows.
      float s[kRowsPerWarp] = {0.0f, 0.0f, 0.0f, 0.0f};
      const T* krow = kt + lane * Ds;
#pragma unroll 2
      for (int j = 0; j < Dp; j += kVe) {
        float kf[kVe];
        load16(krow + j, kf);
#pragma unroll
        for (int e = 0; e < kVe; e += 4) {
          const float4 k4 = make_float4(kf[e], kf[e + 1], kf[e + 2], kf[e + 3]);
#pragma unroll
          for (int a = 0; a < kRowsPerWarp; ++a) s[a] = dot4(qrow[a * nq + (j + e) / 4], k4, s[a]);
        }
      }
      // Online softmax; masked keys (past the chunk or after the row's position) score -inf.
      const int key = kb + lane;
      float alpha[kRowsPerWarp], pr[kRowsPerWarp];
#pragma unroll
      for (int a = 0; a < kRowsPerWarp; ++a) {
        const float x = lane < kn && key <= pos[a] ? s[a] : -INFINITY;
        const float m_new = fmaxf(m[a], cuda::warp_max(x));
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // no key seen yet: all weights 0
        pr[a] = exp2f(x - m_use);
        alpha[a] = exp2f(m[a] - m_use);
        l[a] = l[a] * alpha[a] + pr[a];
        m[a] = m_new;
      }
      // P^T [kKeys, kMaxRows]: this warp's 4 columns, read back only by this warp.
      reinterpret_cast<float4*>(Pt + lane * kMaxRows + row0)[0] = make_float4(pr[0], pr[1], pr[2], pr[3]);
      __syncwarp();
#pragma unroll
      for (int a = 0; a < kRowsPerWarp; ++a) scale4(o[a][0], alpha[a]), scale4(o[a][1], alpha[a]);
      for (int k = 0; k < kn; ++k) {
        const float4 pk = *reinterpret_cast<const float4*>(Pt + k * kMaxRows + row0);
        if (col0) {
          const float4 v = load4(vt + k * Ds + 4 * lane);
          axpy4(o[0][0], pk.x, v), axpy4(o[1][0], pk.y, v), axpy4(o[2][0], pk.z, v), axpy4(o[3][0], pk.w, v);
        }
        if (col1) {
          const float4 v = load4(vt + k * Ds + 4 * (lane + 32));
          axpy4(o[0][1], pk.x, v), axpy4(o[1][1], pk.y, v), axpy4(o[2][1], pk.z, v), axpy4(o[3][1], pk.w, v);
        }
      }
    }
    __syncthreads();  // chunk c + 2 is loaded into these tiles next
  }

  if (!active) return;
#pragma unroll
  for (int a = 0; a < kRowsPerWarp; ++a) {
    const float l_row = cuda::warp_sum(l[a]);
    const int r = row0 + a;
    if (r >= rows) continue;
    const int64_t row = int64_t(t0 + r / nh) * p.Hq + h0 + r % nh;  // (token, head)
    const float* v0 = &o[a][0].x;
    const float* v1 = &o[a][1].x;
    if (p.num_splits == 1) {
      // Every row sees key 0 (its position is >= 0), so l_row > 0.
      const float inv = 1.0f / l_row;
      T* out = static_cast<T*>(p.out) + row * D;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (4 * lane + e < D) st(out + 4 * lane + e, v0[e] * inv);
        if (4 * (lane + 32) + e < D) st(out + 4 * (lane + 32) + e, v1[e] * inv);
      }
    } else {
      const int64_t prow = int64_t(split) * p.T * p.Hq + row;
      float* po = p.part_o + prow * D;
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (4 * lane + e < D) po[4 * lane + e] = v0[e];
        if (4 * (lane + 32) + e < D) po[4 * (lane + 32) + e] = v1[e];
      }
      if (lane == 0) {
        p.part_m[prow] = m[a];
        p.part_l[prow] = l_row;
      }
    }
  }
}

// Grid: x = token tiles, y = kv head x head chunk, z = context split. Block: 32 to 128
// threads, one warp per 4 rows (warps past the tile's rows only load); shared memory is laid
// out for kMaxRows rows.
template <class T, bool kVec>
__global__ void __launch_bounds__(kMaxWarps * 32, 4) paged_attention_kernel(const PagedParams p) {
  if (*p.flag) return;  // bad index data: the op throws, nothing may be read through it
  extern __shared__ __align__(16) unsigned char smem[];
  int64_t* key_off = reinterpret_cast<int64_t*>(smem);  // [2, kKeys]
  T* Kt = reinterpret_cast<T*>(key_off + 2 * kKeys);     // [2, kKeys, Ds]
  T* Vt = Kt + 2 * kKeys * p.Ds;                         // [2, kKeys, Ds]
  float* Qs = reinterpret_cast<float*>(Vt + 2 * kKeys * p.Ds);  // [kMaxRows, Dp]
  float* Pt = Qs + kMaxRows * p.Dp;                             // [kKeys, kMaxRows]

  // Columns D .. Dp-1 of the tiles are never loaded: zero them once (Q's are zero too).
  if (p.Dp > p.D)
    for (int i = threadIdx.x; i < 4 * kKeys * (p.Dp - p.D); i += blockDim.x) {
      const int r = i / (p.Dp - p.D), d = p.D + i % (p.Dp - p.D);
      Kt[r * p.Ds + d] = T(0.0f);  // rows 2 * kKeys and on run into Vt: the same columns there
    }

  const int g = blockIdx.y / p.num_head_chunks, hc = blockIdx.y % p.num_head_chunks;
  const int h0 = g * p.G + hc * p.heads_per_chunk;
  const int nh = min(p.heads_per_chunk, p.G - hc * p.heads_per_chunk);
  const int tile_begin = blockIdx.x * p.tokens_per_tile;
  const int tile_end = min(p.T, tile_begin + p.tokens_per_tile);
  for (int t0 = tile_begin; t0 < tile_end;) {
    // The sequence of token t0: the last b with cu[b] <= t0 (empty sequences share its start).
    int lo = 0, hi = p.B - 1;
    while (lo < hi) {
      const int mid = (lo + hi + 1) >> 1;
      if (p.cu[mid] <= t0) lo = mid;
      else hi = mid - 1;
    }
    const int t1 = min(tile_end, p.cu[lo + 1]);
    paged_segment<T, kVec>(p, lo, t0, t1, g, h0, nh, blockIdx.z, key_off, Kt, Vt, Qs, Pt);
    t0 = t1;
    __syncthreads();  // the next segment rewrites Qs and key_off
  }
}

// out[row] = sum_s w_s O_s / sum_s w_s l_s, w_s = exp2(m_s - max m): one warp per (token, head).
template <class T>
__global__ void paged_combine_kernel(T* __restrict__ out, const float* __restrict__ part_o,
                                     const float* __restrict__ part_m, const float* __restrict__ part_l,
                                     int64_t rows, int D, int num_splits, const int* flag) {
  if (*flag) return;
  const int lane = threadIdx.x & 31;
  const int64_t row = blockIdx.x * int64_t(blockDim.x >> 5) + (threadIdx.x >> 5);
  if (row >= rows) return;  // whole warps
  const float m_s = lane < num_splits ? part_m[lane * rows + row] : -INFINITY;
  const float m = cuda::warp_max(m_s);
  const float w_s = m_s == -INFINITY ? 0.0f : exp2f(m_s - m);  // splits that saw no key weigh 0
  const float l = cuda::warp_sum(lane < num_splits ? w_s * part_l[lane * rows + row] : 0.0f);
  const float inv = l > 0.0f ? 1.0f / l : 0.0f;
  for (int d = lane; d < D; d += 32) {
    float acc = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float w = __shfl_sync(0xffffffffu, w_s, s);
      if (w != 0.0f) acc = fmaf(w, part_o[(s * rows + row) * D + d], acc);  // O_s unwritten when w == 0
    }
    st(out + row * D + d, acc * inv);
  }
}

template <class T, bool kVec>
void launch_paged(const PagedParams& p, dim3 grid, int threads, size_t smem, cudaStream_t stream) {
  const auto kernel = paged_attention_kernel<T, kVec>;
  // Raised once per size (not on every call, and so not while a graph captures the decode step
  // that an op-by-op step of the same shapes ran first). NOTES: one process, one device (the
  // attribute is the device context's; a second GPU in the process would need its own).
  static std::atomic<size_t> allowed{48 * 1024};
  if (smem > allowed.load()) {
    GRPO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    allowed.store(smem);
  }
  kernel<<<grid, threads, smem, stream>>>(p);
  GRPO_LAUNCH_CHECK("attention_paged");
}

}  // namespace

void CudaOps::kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) {
  const char* op = "kv_cache_write";
  const checks::KvCacheWriteDims d =
      checks::kv_cache_write_args(k_cache, v_cache, k, v, slot_mapping, Device::cuda, kDataTypes);
  if (d.T == 0) return;
  int* flag = error_flag();
  const int32_t* slots = static_cast<const int32_t*>(slot_mapping.data);
  kv_slot_check_kernel<<<cuda::grid_for(d.T, 256), 256, 0, stream()>>>(slots, d.T, d.num_blocks * d.block_size, flag);
  GRPO_LAUNCH_CHECK(op);
  // A row is a plain copy: move it in the widest units that its size and the pointers allow.
  const int64_t row_bytes = d.Hkv * d.D * int64_t(dtype_size(k.dtype));
  const auto fits = [&](size_t unit) {
    return row_bytes % int64_t(unit) == 0 && aligned(k_cache.data, unit) && aligned(v_cache.data, unit) &&
           aligned(k.data, unit) && aligned(v.data, unit);
  };
  if (fits(16)) launch_kv_write<uint4>(k_cache, v_cache, k, v, slots, d.T, row_bytes, flag, stream());
  else if (fits(4)) launch_kv_write<uint32_t>(k_cache, v_cache, k, v, slots, d.T, row_bytes, flag, stream());
  else launch_kv_write<uint16_t>(k_cache, v_cache, k, v, slots, d.T, row_bytes, flag, stream());
  const std::string what = "slot_mapping " + slot_mapping.str() + " holds a slot " +
                           checks::kv_cache_slot_range_text(k_cache);
  throw_if_flagged(op, what.c_str());
}

void CudaOps::attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q,
                              Tensor seq_lens_k, Tensor block_table, float scale) {
  const char* op = "attention_paged";
  const checks::PagedAttentionDims d = checks::attention_paged_args(
      out, q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_table, Device::cuda, kDataTypes);
  GRPO_CHECK(d.D <= kMaxHeadDim, op << ": q " << q.str() << " has head dimension " << d.D << ", over the "
                                    << kMaxHeadDim << " the CUDA kernel supports");
  GRPO_CHECK(d.T * d.Hq * d.D < (int64_t(1) << 31) && d.B * d.max_blocks < (int64_t(1) << 31),
             op << ": q " << q.str() << " or block_table " << block_table.str() << " is too large");
  const int32_t* cu = static_cast<const int32_t*>(cu_seqlens_q.data);
  const int32_t* ctx = static_cast<const int32_t*>(seq_lens_k.data);
  const int32_t* table = static_cast<const int32_t*>(block_table.data);

  int* flag = error_flag();
  paged_check_kernel<<<cuda::grid_for(std::max(d.B + 1, d.B * d.max_blocks), 256), 256, 0, stream()>>>(
      cu, ctx, table, d.B, d.T, d.max_blocks, d.block_size, d.num_blocks, flag);
  GRPO_LAUNCH_CHECK(op);

  if (d.T > 0) {
    PagedParams p{};
    p.out = out.data, p.q = q.data, p.k_cache = k_cache.data, p.v_cache = v_cache.data;
    p.cu = cu, p.ctx = ctx, p.table = table, p.flag = flag;
    p.T = int(d.T), p.B = int(d.B), p.Hq = int(d.Hq), p.Hkv = int(d.Hkv), p.D = int(d.D), p.G = int(d.group());
    p.block_size = int(d.block_size), p.max_blocks = int(d.max_blocks);
    // Rows per CTA: the group's heads (in chunks of at most kMaxRows, of equal size) times,
    // when some sequence brings several new tokens (T > B), as many of its tokens as fit.
    p.num_head_chunks = (p.G + kMaxRows - 1) / kMaxRows;
    p.heads_per_chunk = (p.G + p.num_head_chunks - 1) / p.num_head_chunks;
    p.tokens_per_tile = d.T > d.B ? std::max(1, kMaxRows / p.heads_per_chunk) : 1;
    // Always 4 warps, even when fewer have rows: the idle ones still issue the tile copies,
    // which is what bounds decoding (measured on an H100: 4 warps beat one warp per 4 rows for
    // groups of 1 to 8 heads).
    const int threads = kMaxWarps * 32;
    const int64_t tiles = (d.T + p.tokens_per_tile - 1) / p.tokens_per_tile;
    // Context splits: enough CTAs for a few per SM, at least 4 chunks of keys per split
    // (the longest context is at most max_blocks * block_size keys).
    const int sms = sm_count();
    const int64_t ctas = tiles * d.Hkv * p.num_head_chunks, target = 4 * int64_t(sms);
    const int64_t max_keys = d.max_blocks * d.block_size;
    int64_t splits = std::min<int64_t>((target + ctas - 1) / ctas, (max_keys + 4 * kKeys - 1) / (4 * kKeys));
    p.num_splits = int(std::clamp<int64_t>(splits, 1, kMaxSplits));
    // Tile rows are read 16 bytes a lane (kVe elements); an odd number of 16-byte units per
    // row keeps the 8 lanes of each shared-memory phase on distinct banks.
    const size_t elem = dtype_size(q.dtype);
    const int kVe = 16 / int(elem);
    p.Dp = (p.D + kVe - 1) / kVe * kVe;
    p.Ds = (p.Dp / kVe) % 2 == 1 ? p.Dp : p.Dp + kVe;
    p.scale_log2 = scale * kLog2e;
    const int64_t rows = d.T * d.Hq;
    if (p.num_splits > 1) {
      // One workspace() call per op: [splits, rows, D] outputs, then m and l.
      const int64_t n = p.num_splits * rows;
      float* ws = static_cast<float*>(workspace(size_t(n * (d.D + 2)) * sizeof(float)));
      p.part_o = ws, p.part_m = ws + n * d.D, p.part_l = p.part_m + n;
    }
    const dim3 grid(unsigned(tiles), unsigned(d.Hkv * p.num_head_chunks), unsigned(p.num_splits));
    const size_t smem = paged_smem_bytes(p.Dp, p.Ds, elem);
    const bool vec_ok = d.D % kVe == 0 && aligned(k_cache.data, 16) && aligned(v_cache.data, 16);
    GRPO_DISPATCH_FLOAT(q.dtype, op, T, {
      if (vec_ok) launch_paged<T, true>(p, grid, threads, smem, stream());
      else launch_paged<T, false>(p, grid, threads, smem, stream());
      if (p.num_splits > 1) {
        constexpr int kRowsPerCta = 4;  // one warp per row
        paged_combine_kernel<T><<<unsigned((rows + kRowsPerCta - 1) / kRowsPerCta), kRowsPerCta * 32, 0, stream()>>>(
            static_cast<T*>(out.data), p.part_o, p.part_m, p.part_l, rows, p.D, p.num_splits, flag);
        GRPO_LAUNCH_CHECK(op);
      }
    });
  }

  using namespace checks;
  const std::string what = "bad index data; code bits: 1 = " + cu_seqlens_rule("cu_seqlens_q", cu_seqlens_q, d.T) +
                           ", 2 = " + paged_context_text() + ", 4 = " + paged_table_width_text(k_cache, block_table) +
                           ", 8 = " + paged_block_id_text(k_cache);
  throw_if_flagged(op, what.c_str());
}

}  // namespace grpo
