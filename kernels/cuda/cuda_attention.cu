// Causal grouped-query attention over packed variable-length sequences on the GPU, forward
// and backward, FlashAttention-2 style: tiles of queries and keys in shared memory, an online
// softmax, the log-sum-exp saved for the backward; no [T, T] (or [L, L]) matrix ever exists.
//
// Tiles without the host. A block owns a tile of B rows of one sequence. Sequence s owns the
// grid slots [cu[s] / B + s, cu[s+1] / B + s + 1): its ceil(len / B) tiles fit there because
// floor((a + len) / B) >= floor(a / B) + floor(len / B). A block binary-searches cu_seqlens for
// its slot and exits when the slot is past its sequence's last tile, so a grid of T / B + S
// slots covers every tile and cu_seqlens never goes to the host. (Its values are checked by a
// small kernel; the op synchronises once, at its end, to report a bad cu_seqlens.)
//
// Two sets of kernels, the same algorithm. kD is the head dimension rounded up to 64, 128 or
// 256 (any D from 1 to 256 works); rows and columns past the data are zero in shared memory,
// so they add nothing. Softmax statistics and accumulators are f32 in both.
//  * bf16, D <= 128: tensor cores (mma.sync m16n8k16, f32 accumulate), 4 warps of 16 rows;
//    P and dS are rounded to bf16 for their products, as in FlashAttention.
//  * f32 (held to 1e-5 against the CPU, which tensor cores' tf32 would miss) and bf16 with
//    D > 128: plain FMA tiles on f32 copies in shared memory. 256 threads form a 16 x 16
//    grid; a thread owns the elements (ty + 16 i, tx + 16 j) of each product tile, so a row's
//    16 threads are one half-warp and row reductions are 4 shuffles. Rows of kD + 1 floats
//    (odd) make reading a column free of bank conflicts.
//
// Backward (P recomputed from the saved lse, Delta_i = dO_i . O_i):
//   dS_ij = P_ij (dO_i . v_j - Delta_i),  dq_i = scale sum_j dS_ij k_j,
//   dk_j = scale sum_i dS_ij q_i,  dv_j = sum_i P_ij dO_i   (i over every head of k's group).
// Two kernels, no atomics, deterministic: one per key tile (dk, dv; loops over the group's
// query heads and the query tiles at or after it), one per query tile (dq; loops over keys).
#include "kernels/checks_attention.h"
#include "kernels/cuda/cuda_ops_impl.h"

#include <climits>
#include <string>
#include <type_traits>

namespace grpo {
namespace {

using cuda::bf16;
using cuda::ld;
using cuda::st;

constexpr int kThreads = 256;  // a 16 x 16 grid: tx = tid % 16, ty = tid / 16
constexpr int kMaxHeadDim = 256;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// FMA tile sizes (multiples of 16) per head-dimension bound kD, chosen so that the shared
// tiles stay under ~150 KB and the per-thread accumulators under ~64 registers.
template <int kD>
struct FmaTiles;
template <>
struct FmaTiles<64> {
  static constexpr int fwd_q = 64, fwd_k = 64;  // forward: query rows, keys per step
  static constexpr int dq_q = 64, dq_k = 64;    // dq: query rows, keys per step
  static constexpr int kv_k = 64, kv_q = 64;    // dk/dv: keys, query rows per step
};
template <>
struct FmaTiles<128> {
  static constexpr int fwd_q = 64, fwd_k = 64;
  static constexpr int dq_q = 64, dq_k = 32;
  static constexpr int kv_k = 64, kv_q = 32;
};
template <>
struct FmaTiles<256> {
  static constexpr int fwd_q = 64, fwd_k = 64;
  static constexpr int dq_q = 32, dq_k = 32;
  static constexpr int kv_k = 32, kv_q = 32;
};

// Shared-memory floats of each kernel (host and device agree through these).
template <int kD>
constexpr int fwd_smem_floats() {
  constexpr int Br = FmaTiles<kD>::fwd_q, Bc = FmaTiles<kD>::fwd_k;
  return (Br + Bc) * (kD + 1) + Br * (Bc + 1);
}
template <int kD>
constexpr int dq_smem_floats() {
  constexpr int Br = FmaTiles<kD>::dq_q, Bc = FmaTiles<kD>::dq_k;
  return (2 * Br + Bc) * (kD + 1) + Br * (Bc + 1) + 2 * Br;
}
template <int kD>
constexpr int dkdv_smem_floats() {
  constexpr int Bc = FmaTiles<kD>::kv_k, Br = FmaTiles<kD>::kv_q;
  return (2 * Bc + 2 * Br) * (kD + 1) + 2 * Br * (Bc + 1) + 2 * Br;
}

// Arguments of the kernels; a kernel reads only its own.
template <class T>
struct AttnParams {
  const T* q;           // [T, Hq, D]
  const T* k;           // [T, Hkv, D]
  const T* v;           // [T, Hkv, D]
  const int32_t* cu;    // [S + 1]
  int S, n_tokens, Hq, Hkv, D;  // sequences, tokens (T), heads, head dimension
  float scale;          // softmax scale
  float scale_log2;     // scale * log2(e): scores go through exp2
  bool vec;             // bf16 tensor-core kernels: rows load as 16-byte vectors
  T* out;               // forward: [T, Hq, D]
  float* lse;           // forward: [T, Hq]
  const T* dout;        // backward: [T, Hq, D]
  const float* lse_in;  // backward: [T, Hq]
  const float* delta;   // backward: [T, Hq], dO . O
  T* dq;                // [T, Hq, D]
  T* dk;                // [T, Hkv, D]
  T* dv;                // [T, Hkv, D]
};

// ---- device helpers ----------------------------------------------------------------------

// Reductions over the 16 threads of a row (a half-warp); every thread gets the result.
__device__ __forceinline__ float row_max(float v) {
  for (int o = 8; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float row_sum(float v) {
  for (int o = 8; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Product tiles: acc[i][j] += sum_{k < K} A(r, k) B(k, c), r = ty + 16 i, c = tx + 16 j.
// tile_abt: A(r, k) = a[r lda + k], B(k, c) = b[c ldb + k]   (A B^T; ldb odd)
// tile_ab:  A(r, k) = a[r lda + k], B(k, c) = b[k ldb + c]   (A B)
// tile_atb: A(r, k) = a[k lda + r], B(k, c) = b[k ldb + c]   (A^T B)
template <int TM, int TN>
__device__ __forceinline__ void tile_abt(float (&acc)[TM][TN], const float* a, int lda, const float* b, int ldb,
                                         int K) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int k = 0; k < K; ++k) {
    float av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) av[i] = a[(ty + 16 * i) * lda + k];
#pragma unroll
    for (int j = 0; j < TN; ++j) bv[j] = b[(tx + 16 * j) * ldb + k];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}
template <int TM, int TN, int K>
__device__ __forceinline__ void tile_ab(float (&acc)[TM][TN], const float* a, int lda, const float* b, int ldb) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int k = 0; k < K; ++k) {
    float av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) av[i] = a[(ty + 16 * i) * lda + k];
#pragma unroll
    for (int j = 0; j < TN; ++j) bv[j] = b[k * ldb + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}
template <int TM, int TN, int K>
__device__ __forceinline__ void tile_atb(float (&acc)[TM][TN], const float* a, int lda, const float* b, int ldb) {
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
#pragma unroll 4
  for (int k = 0; k < K; ++k) {
    float av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; ++i) av[i] = a[k * lda + ty + 16 * i];
#pragma unroll
    for (int j = 0; j < TN; ++j) bv[j] = b[k * ldb + tx + 16 * j];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// dst [R][kD + 1] = rows 0 .. rows-1 of src (row r at src + r * stride), columns 0 .. D-1, as
// f32; zeros elsewhere so padding rows and columns add nothing to the products.
template <int R, int kD, class T>
__device__ __forceinline__ void load_rows(float* dst, const T* src, int64_t stride, int rows, int D) {
  for (int idx = threadIdx.x; idx < R * kD; idx += kThreads) {
    const int r = idx / kD, c = idx % kD;
    dst[r * (kD + 1) + c] = r < rows && c < D ? ld(src + r * stride + c) : 0.0f;
  }
}

// Per-row statistics of a query tile whose row r is row0 + r * Hq of [T * Hq]: lse * log2(e)
// and Delta, zeros past `rows`.
__device__ __forceinline__ void load_row_stats(float* lse2, float* delta, const float* lse_in, const float* delta_in,
                                               int64_t row0, int Hq, int rows, int R) {
  for (int r = threadIdx.x; r < R; r += kThreads) {
    const bool ok = r < rows;
    lse2[r] = ok ? lse_in[row0 + int64_t(r) * Hq] * kLog2e : 0.0f;
    delta[r] = ok ? delta_in[row0 + int64_t(r) * Hq] : 0.0f;
  }
}

// One tile of rows of one sequence: rows row0 .. of the sequence at token `start`.
struct SeqTile {
  int start, len, row0;
};

// The tile of grid slot `slot` for tiles of B rows (see the top of the file); false when the
// slot is past its sequence's last tile. cu_seqlens values that break the rules (reported by
// the check kernel) never send a block outside [0, T).
__device__ __forceinline__ bool find_tile(const int32_t* cu, int S, int T, int B, int slot, SeqTile& t) {
  int lo = 0, hi = S - 1;  // the last sequence whose first slot is <= slot
  while (lo < hi) {
    const int mid = (lo + hi + 1) >> 1;
    if (cu[mid] / B + mid <= slot) lo = mid;
    else hi = mid - 1;
  }
  const int a = cu[lo], b = cu[lo + 1];
  if (a < 0 || b > T || b < a) return false;
  t.start = a;
  t.len = b - a;
  t.row0 = (slot - (a / B + lo)) * B;
  return t.row0 >= 0 && t.row0 < t.len;
}

// ---- kernels of both paths ----------------------------------------------------------------

// Sets *flag when cu_seqlens [n] does not start at 0, decreases or does not end at T.
__global__ void check_cu_seqlens_kernel(const int32_t* cu, int n, int T, int* flag) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int c = cu[i];
    if ((i == 0 && c != 0) || (i == n - 1 && c != T) || (i + 1 < n && cu[i + 1] < c)) *flag = 1;
  }
}

// Delta [rows] = rowsum(dout * out), one warp per row of D values.
template <class T>
__global__ void attention_delta_kernel(float* delta, const T* dout, const T* out, int64_t rows, int D) {
  const int lane = threadIdx.x & 31, warps_per_block = blockDim.x / 32;
  const int64_t stride = int64_t(gridDim.x) * warps_per_block;
  for (int64_t r = int64_t(blockIdx.x) * warps_per_block + threadIdx.x / 32; r < rows; r += stride) {
    float s = 0.0f;
    for (int d = lane; d < D; d += 32) s = fmaf(ld(dout + r * D + d), ld(out + r * D + d), s);
    s = cuda::warp_sum(s);
    if (lane == 0) delta[r] = s;
  }
}

// ---- FMA kernels (f32; bf16 with head dims past 128) --------------------------------------

// Grid (slots of fwd_q query rows, Hq). out = softmax(scale q k^T) v with the online softmax:
// per row a running max m and sum l (in log2 units), rescaling the accumulator when m grows.
template <class T, int kD>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(const AttnParams<T> p) {
  constexpr int Br = FmaTiles<kD>::fwd_q, Bc = FmaTiles<kD>::fwd_k;
  constexpr int TM = Br / 16, TN = Bc / 16, TD = kD / 16, LD = kD + 1, LP = Bc + 1;
  extern __shared__ float smem[];
  float* qs = smem;           // [Br][LD] the query tile
  float* kvs = qs + Br * LD;  // [Bc][LD] k, then v, of the current key tile
  float* ps = kvs + Bc * LD;  // [Br][LP] exp2(s - m) of the key tile
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Br, blockIdx.x, tile)) return;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int h = blockIdx.y, g = h / (p.Hq / p.Hkv), D = p.D, len = tile.len, i0 = tile.row0;
  const int rows = min(Br, len - i0);
  const int64_t kv_stride = int64_t(p.Hkv) * D;
  const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;  // row of (first query, head h) in [T * Hq]
  const T* kb = p.k + int64_t(tile.start) * kv_stride + int64_t(g) * D;  // key 0 of the sequence, head g
  const T* vb = p.v + int64_t(tile.start) * kv_stride + int64_t(g) * D;
  load_rows<Br, kD>(qs, p.q + q_row0 * D, int64_t(p.Hq) * D, rows, D);

  float m[TM], l[TM], acc[TM][TD];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int d = 0; d < TD; ++d) acc[i][d] = 0.0f;
  }
  const int n_keys = min(i0 + Br, len);  // the last row sees keys 0 .. i0 + Br - 1
  for (int j0 = 0; j0 < n_keys; j0 += Bc) {
    const int kn = min(Bc, len - j0);
    __syncthreads();  // the previous step's P V is done with kvs and ps
    load_rows<Bc, kD>(kvs, kb + j0 * kv_stride, kv_stride, kn, D);
    __syncthreads();
    float s[TM][TN] = {};
    tile_abt(s, qs, LD, kvs, LD, D);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int qi = i0 + ty + 16 * i;  // position in the sequence (>= len: padding row)
      float mx = m[i];
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int kj = j0 + tx + 16 * j;
        s[i][j] = kj <= qi && kj < len ? s[i][j] * p.scale_log2 : -INFINITY;
        mx = fmaxf(mx, s[i][j]);
      }
      // Finite: key 0 is visible to every row, padding rows included, so the first key tile
      // sets m; the correction of that tile is exp2(-inf) = 0.
      mx = row_max(mx);
      const float corr = exp2f(m[i] - mx);
      float rs = 0.0f;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const float pij = exp2f(s[i][j] - mx);
        ps[(ty + 16 * i) * LP + tx + 16 * j] = pij;
        rs += pij;
      }
      l[i] = l[i] * corr + row_sum(rs);
      m[i] = mx;
#pragma unroll
      for (int d = 0; d < TD; ++d) acc[i][d] *= corr;
    }
    __syncthreads();  // every thread is done with k; ps is complete
    load_rows<Bc, kD>(kvs, vb + j0 * kv_stride, kv_stride, kn, D);
    __syncthreads();
    tile_ab<TM, TD, Bc>(acc, ps, LP, kvs, LD);
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty + 16 * i;
    if (r >= rows) continue;
    const int64_t row = q_row0 + int64_t(r) * p.Hq;
    const float inv = 1.0f / l[i];
#pragma unroll
    for (int d = 0; d < TD; ++d)
      if (tx + 16 * d < D) st(p.out + row * D + tx + 16 * d, acc[i][d] * inv);
    if (tx == 0) p.lse[row] = (m[i] + log2f(l[i])) * kLn2;
  }
}

// Grid (slots of dq_q query rows, Hq): dq of one query tile, looping over its keys.
template <class T, int kD>
__global__ void __launch_bounds__(kThreads) attention_dq_kernel(const AttnParams<T> p) {
  constexpr int Br = FmaTiles<kD>::dq_q, Bc = FmaTiles<kD>::dq_k;
  constexpr int TM = Br / 16, TN = Bc / 16, TD = kD / 16, LD = kD + 1, LS = Bc + 1;
  extern __shared__ float smem[];
  float* qs = smem;            // [Br][LD] q
  float* dos = qs + Br * LD;   // [Br][LD] dout
  float* kvs = dos + Br * LD;  // [Bc][LD] v, then k, of the current key tile
  float* dss = kvs + Bc * LD;  // [Br][LS] dS
  float* lse2 = dss + Br * LS; // [Br] lse * log2(e)
  float* dlt = lse2 + Br;      // [Br] Delta
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Br, blockIdx.x, tile)) return;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int h = blockIdx.y, g = h / (p.Hq / p.Hkv), D = p.D, len = tile.len, i0 = tile.row0;
  const int rows = min(Br, len - i0);
  const int64_t kv_stride = int64_t(p.Hkv) * D, q_stride = int64_t(p.Hq) * D;
  const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;
  const T* kb = p.k + int64_t(tile.start) * kv_stride + int64_t(g) * D;
  const T* vb = p.v + int64_t(tile.start) * kv_stride + int64_t(g) * D;
  load_rows<Br, kD>(qs, p.q + q_row0 * D, q_stride, rows, D);
  load_rows<Br, kD>(dos, p.dout + q_row0 * D, q_stride, rows, D);
  load_row_stats(lse2, dlt, p.lse_in, p.delta, q_row0, p.Hq, rows, Br);

  float acc[TM][TD] = {};
  const int n_keys = min(i0 + Br, len);
  for (int j0 = 0; j0 < n_keys; j0 += Bc) {
    const int kn = min(Bc, len - j0);
    __syncthreads();  // the previous step's dS k is done with kvs and dss
    load_rows<Bc, kD>(kvs, vb + j0 * kv_stride, kv_stride, kn, D);
    __syncthreads();
    float dp[TM][TN] = {};
    tile_abt(dp, dos, LD, kvs, LD, D);
    __syncthreads();  // every thread is done with v
    load_rows<Bc, kD>(kvs, kb + j0 * kv_stride, kv_stride, kn, D);
    __syncthreads();
    float s[TM][TN] = {};
    tile_abt(s, qs, LD, kvs, LD, D);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int r = ty + 16 * i;
#pragma unroll
      for (int j = 0; j < TN; ++j) {
        const int kj = j0 + tx + 16 * j;
        const bool visible = r < rows && kj <= i0 + r && kj < len;
        const float pij = visible ? exp2f(s[i][j] * p.scale_log2 - lse2[r]) : 0.0f;
        dss[r * LS + tx + 16 * j] = pij * (dp[i][j] - dlt[r]);
      }
    }
    __syncthreads();
    tile_ab<TM, TD, Bc>(acc, dss, LS, kvs, LD);
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int r = ty + 16 * i;
    if (r >= rows) continue;
    T* dst = p.dq + (q_row0 + int64_t(r) * p.Hq) * D;
#pragma unroll
    for (int d = 0; d < TD; ++d)
      if (tx + 16 * d < D) st(dst + tx + 16 * d, p.scale * acc[i][d]);
  }
}

// Grid (slots of kv_k keys, Hkv): dk and dv of one key tile, looping over the query heads of
// its group and the query tiles that can see it.
template <class T, int kD>
__global__ void __launch_bounds__(kThreads) attention_dkdv_kernel(const AttnParams<T> p) {
  constexpr int Bc = FmaTiles<kD>::kv_k, Br = FmaTiles<kD>::kv_q;
  constexpr int TK = Bc / 16, TD = kD / 16, TM = Br / 16, TN = Bc / 16, LD = kD + 1, LS = Bc + 1;
  extern __shared__ float smem[];
  float* ks = smem;             // [Bc][LD] k
  float* vs = ks + Bc * LD;     // [Bc][LD] v
  float* qs = vs + Bc * LD;     // [Br][LD] q of the current query tile
  float* dos = qs + Br * LD;    // [Br][LD] dout of the current query tile
  float* ps = dos + Br * LD;    // [Br][LS] P
  float* dss = ps + Br * LS;    // [Br][LS] dS
  float* lse2 = dss + Br * LS;  // [Br] lse * log2(e)
  float* dlt = lse2 + Br;       // [Br] Delta
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Bc, blockIdx.x, tile)) return;
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int g = blockIdx.y, G = p.Hq / p.Hkv, D = p.D, len = tile.len, j0 = tile.row0;
  const int kn = min(Bc, len - j0);
  const int64_t kv_stride = int64_t(p.Hkv) * D, q_stride = int64_t(p.Hq) * D;
  const int64_t kv_row0 = int64_t(tile.start + j0) * p.Hkv + g;  // row of (first key, head g) in [T * Hkv]
  load_rows<Bc, kD>(ks, p.k + kv_row0 * D, kv_stride, kn, D);
  load_rows<Bc, kD>(vs, p.v + kv_row0 * D, kv_stride, kn, D);

  float dk[TK][TD] = {}, dv[TK][TD] = {};
  for (int h = g * G; h < (g + 1) * G; ++h) {
    for (int i0 = j0 / Br * Br; i0 < len; i0 += Br) {  // query tiles holding rows >= j0
      const int rows = min(Br, len - i0);
      const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;
      __syncthreads();  // the previous step is done with qs, dos, ps, dss and the row stats
      load_rows<Br, kD>(qs, p.q + q_row0 * D, q_stride, rows, D);
      load_rows<Br, kD>(dos, p.dout + q_row0 * D, q_stride, rows, D);
      load_row_stats(lse2, dlt, p.lse_in, p.delta, q_row0, p.Hq, rows, Br);
      __syncthreads();
      float s[TM][TN] = {}, dp[TM][TN] = {};
      tile_abt(s, qs, LD, ks, LD, D);
      tile_abt(dp, dos, LD, vs, LD, D);
#pragma unroll
      for (int i = 0; i < TM; ++i) {
        const int r = ty + 16 * i;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
          const int c = tx + 16 * j;
          const bool visible = r < rows && c < kn && j0 + c <= i0 + r;
          const float pij = visible ? exp2f(s[i][j] * p.scale_log2 - lse2[r]) : 0.0f;
          ps[r * LS + c] = pij;
          dss[r * LS + c] = pij * (dp[i][j] - dlt[r]);
        }
      }
      __syncthreads();
      tile_atb<TK, TD, Br>(dv, ps, LS, dos, LD);
      tile_atb<TK, TD, Br>(dk, dss, LS, qs, LD);
    }
  }
#pragma unroll
  for (int i = 0; i < TK; ++i) {
    const int c = ty + 16 * i;
    if (c >= kn) continue;
    const int64_t row = (kv_row0 + int64_t(c) * p.Hkv) * D;
#pragma unroll
    for (int d = 0; d < TD; ++d) {
      if (tx + 16 * d >= D) continue;
      st(p.dk + row + tx + 16 * d, p.scale * dk[i][d]);
      st(p.dv + row + tx + 16 * d, dv[i][d]);
    }
  }
}

// ---- bf16 tensor-core kernels (head dims up to 128) ----------------------------------------
//
// mma.sync m16n8k16 (bf16 in, f32 accumulate), 4 warps of 16 rows each. Fragment layouts
// (PTX ISA, g = lane / 4, t = lane % 4): A 16x16 row-major: a0 (g, 2t..2t+1), a1 (g+8, 2t..),
// a2 (g, 2t+8..), a3 (g+8, 2t+8..); B 16x8: b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g); C 16x8:
// c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..). Two C tiles side by side are, rounded to bf16, the A
// fragment of the next product, so P and dS never leave registers. Shared tiles are bf16 rows
// of kD + 8 elements (a row is 16 bytes more than a multiple of 128: the 32-bit fragment
// loads and ldmatrix rows fall in distinct banks).
constexpr int kMmaThreads = 128;

template <int kD>
struct MmaTiles {
  static constexpr int fwd_q = 64, fwd_k = 64;  // forward: query rows (16 per warp), keys per step
  static constexpr int dq_q = 64, dq_k = 64;    // dq: query rows (16 per warp), keys per step
  static constexpr int kv_k = 64, kv_q = 32;    // dk/dv: keys (16 per warp), query rows per step
  static constexpr int ld = kD + 8;             // bf16 elements per shared row
};
template <int kD>
constexpr int fwd_mma_smem_bytes() {
  using M = MmaTiles<kD>;
  return (M::fwd_q + 2 * M::fwd_k) * M::ld * 2;
}
template <int kD>
constexpr int dq_mma_smem_bytes() {
  using M = MmaTiles<kD>;
  return (2 * M::dq_q + 2 * M::dq_k) * M::ld * 2;
}
template <int kD>
constexpr int dkdv_mma_smem_bytes() {
  using M = MmaTiles<kD>;
  return (2 * M::kv_k + 2 * M::kv_q) * M::ld * 2 + 2 * M::kv_q * 4;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x (low half) = lo
  return *reinterpret_cast<const uint32_t*>(&v);
}
__device__ __forceinline__ uint32_t lds32(const bf16* p) { return *reinterpret_cast<const uint32_t*>(p); }

// c += a b for one 16x8x16 tile.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A fragment of the 16x16 block at (r0, k0) of row-major m.
__device__ __forceinline__ void frag_a(uint32_t (&a)[4], const bf16* m, int ld, int r0, int k0) {
  const int lane = threadIdx.x & 31;
  const bf16* p = m + (r0 + (lane >> 2)) * ld + k0 + 2 * (lane & 3);
  a[0] = lds32(p);
  a[1] = lds32(p + 8 * ld);
  a[2] = lds32(p + 8);
  a[3] = lds32(p + 8 * ld + 8);
}
// B fragment of the 16x8 block at (k0, n0) of B(k, n) = m[n][k] (rows of m are columns of B).
__device__ __forceinline__ void frag_b_nk(uint32_t& b0, uint32_t& b1, const bf16* m, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  const bf16* p = m + (n0 + (lane >> 2)) * ld + k0 + 2 * (lane & 3);
  b0 = lds32(p);
  b1 = lds32(p + 8);
}
// B fragments of the two 16x8 blocks at (k0, n0) and (k0, n0 + 8) of B(k, n) = m[k][n]
// (rows of m are rows of B): ldmatrix.trans of four 8x8 blocks, lanes 0-15 addressing rows
// k0 .. k0+15 at column n0 and lanes 16-31 the same rows at column n0 + 8.
__device__ __forceinline__ void frag_b_kn_x2(uint32_t (&b)[4], const bf16* m, int ld, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  const bf16* p = m + (k0 + (lane & 15)) * ld + n0 + (lane >> 4) * 8;
  const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
               : "r"(addr)
               : "memory");
}
// The A fragment (rows of c, 16 columns) made of C tiles c[n] and c[n + 1], rounded to bf16.
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack_bf16(c0[0], c0[1]);
  a[1] = pack_bf16(c0[2], c0[3]);
  a[2] = pack_bf16(c1[0], c1[1]);
  a[3] = pack_bf16(c1[2], c1[3]);
}

// dst [R][kD + 8] = rows 0 .. rows-1 of src (row r at src + r * stride), columns < D; zeros
// elsewhere. vec: 16-byte loads (D % 8 == 0 and every row 16-byte aligned).
template <int R, int kD>
__device__ __forceinline__ void load_rows_bf16(bf16* dst, const bf16* src, int64_t stride, int rows, int D,
                                               bool vec) {
  constexpr int LDH = kD + 8;
  if (vec) {
    constexpr int C = kD / 8;
    for (int idx = threadIdx.x; idx < R * C; idx += kMmaThreads) {
      const int r = idx / C, c = idx % C * 8;
      uint4 x = make_uint4(0, 0, 0, 0);
      if (r < rows && c < D) x = *reinterpret_cast<const uint4*>(src + r * stride + c);
      *reinterpret_cast<uint4*>(dst + r * LDH + c) = x;
    }
  } else {
    for (int idx = threadIdx.x; idx < R * kD; idx += kMmaThreads) {
      const int r = idx / kD, c = idx % kD;
      dst[r * LDH + c] = r < rows && c < D ? src[r * stride + c] : __float2bfloat16_rn(0.0f);
    }
  }
}

// The forward of attention_forward_kernel on tensor cores. A thread holds rows g and g + 8 of
// its warp's 16: their running max m and (partial, summed over the 4 threads of a row at the
// end) sum l.
template <int kD>
__global__ void __launch_bounds__(kMmaThreads) attention_forward_mma_kernel(const AttnParams<bf16> p) {
  using M = MmaTiles<kD>;
  constexpr int Br = M::fwd_q, Bc = M::fwd_k, LDH = M::ld, NB = Bc / 8, ND = kD / 8, KD = kD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);  // [Br][LDH]
  bf16* ks = qs + Br * LDH;                       // [Bc][LDH]
  bf16* vs = ks + Bc * LDH;                       // [Bc][LDH]
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Br, blockIdx.x, tile)) return;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int h = blockIdx.y, grp = h / (p.Hq / p.Hkv), D = p.D, len = tile.len, i0 = tile.row0;
  const int rows = min(Br, len - i0), kd_steps = (D + 15) / 16;
  const int64_t kv_stride = int64_t(p.Hkv) * D;
  const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;
  const bf16* kb = p.k + int64_t(tile.start) * kv_stride + int64_t(grp) * D;
  const bf16* vb = p.v + int64_t(tile.start) * kv_stride + int64_t(grp) * D;
  load_rows_bf16<Br, kD>(qs, p.q + q_row0 * D, int64_t(p.Hq) * D, rows, D, p.vec);

  const int qi0 = i0 + w * 16 + g;  // this thread's rows: positions qi0 and qi0 + 8
  float o[ND][4] = {}, m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int n_keys = min(i0 + Br, len);
  for (int j0 = 0; j0 < n_keys; j0 += Bc) {
    const int kn = min(Bc, len - j0);
    __syncthreads();  // every warp is done with the previous ks, vs
    load_rows_bf16<Bc, kD>(ks, kb + j0 * kv_stride, kv_stride, kn, D, p.vec);
    load_rows_bf16<Bc, kD>(vs, vb + j0 * kv_stride, kv_stride, kn, D, p.vec);
    __syncthreads();
    float s[NB][4] = {};
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      if (kk >= kd_steps) break;  // columns past D are zero
      uint32_t a[4];
      frag_a(a, qs, LDH, w * 16, kk * 16);
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        uint32_t b0, b1;
        frag_b_nk(b0, b1, ks, LDH, kk * 16, nb * 8);
        mma_bf16(s[nb], a, b0, b1);
      }
    }
    float mx[2] = {m[0], m[1]};
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int kj = j0 + nb * 8 + 2 * t + (e & 1), qi = qi0 + 8 * (e >> 1);
        s[nb][e] = kj <= qi && kj < len ? s[nb][e] * p.scale_log2 : -INFINITY;
        mx[e >> 1] = fmaxf(mx[e >> 1], s[nb][e]);
      }
    float corr[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
      mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
      corr[r] = exp2f(m[r] - mx[r]);  // finite mx: key 0 is visible to every row
      m[r] = mx[r];
      l[r] *= corr[r];
    }
#pragma unroll
    for (int nd = 0; nd < ND; ++nd)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[nd][e] *= corr[e >> 1];
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[nb][e] = exp2f(s[nb][e] - m[e >> 1]);
        l[e >> 1] += s[nb][e];
      }
#pragma unroll
    for (int kk = 0; kk < Bc / 16; ++kk) {
      uint32_t a[4];
      c_to_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int nd = 0; nd < ND; nd += 2) {
        uint32_t b[4];
        frag_b_kn_x2(b, vs, LDH, kk * 16, nd * 8);
        mma_bf16(o[nd], a, b[0], b[1]);
        mma_bf16(o[nd + 1], a, b[2], b[3]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 1);
    l[r] += __shfl_xor_sync(0xffffffffu, l[r], 2);
    const int local = w * 16 + g + 8 * r;
    if (local >= rows) continue;
    const int64_t row = q_row0 + int64_t(local) * p.Hq;
    const float inv = 1.0f / l[r];
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      const int c = nd * 8 + 2 * t;
      if (c < D) st(p.out + row * D + c, o[nd][2 * r] * inv);
      if (c + 1 < D) st(p.out + row * D + c + 1, o[nd][2 * r + 1] * inv);
    }
    if (t == 0) p.lse[row] = (m[r] + log2f(l[r])) * kLn2;
  }
}

// attention_dq_kernel on tensor cores: dS stays in registers and is the A operand of dS k.
template <int kD>
__global__ void __launch_bounds__(kMmaThreads) attention_dq_mma_kernel(const AttnParams<bf16> p) {
  using M = MmaTiles<kD>;
  constexpr int Br = M::dq_q, Bc = M::dq_k, LDH = M::ld, NB = Bc / 8, ND = kD / 8, KD = kD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* qs = reinterpret_cast<bf16*>(smem_raw);  // [Br][LDH]
  bf16* dos = qs + Br * LDH;                      // [Br][LDH]
  bf16* ks = dos + Br * LDH;                      // [Bc][LDH]
  bf16* vs = ks + Bc * LDH;                       // [Bc][LDH]
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Br, blockIdx.x, tile)) return;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int h = blockIdx.y, grp = h / (p.Hq / p.Hkv), D = p.D, len = tile.len, i0 = tile.row0;
  const int rows = min(Br, len - i0), kd_steps = (D + 15) / 16;
  const int64_t kv_stride = int64_t(p.Hkv) * D, q_stride = int64_t(p.Hq) * D;
  const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;
  const bf16* kb = p.k + int64_t(tile.start) * kv_stride + int64_t(grp) * D;
  const bf16* vb = p.v + int64_t(tile.start) * kv_stride + int64_t(grp) * D;
  load_rows_bf16<Br, kD>(qs, p.q + q_row0 * D, q_stride, rows, D, p.vec);
  load_rows_bf16<Br, kD>(dos, p.dout + q_row0 * D, q_stride, rows, D, p.vec);
  const int qi0 = i0 + w * 16 + g;
  bool valid[2];
  float lse2[2], dl[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int local = w * 16 + g + 8 * r;
    valid[r] = local < rows;
    const int64_t row = q_row0 + int64_t(local) * p.Hq;
    lse2[r] = valid[r] ? p.lse_in[row] * kLog2e : 0.0f;
    dl[r] = valid[r] ? p.delta[row] : 0.0f;
  }

  float acc[ND][4] = {};
  const int n_keys = min(i0 + Br, len);
  for (int j0 = 0; j0 < n_keys; j0 += Bc) {
    const int kn = min(Bc, len - j0);
    __syncthreads();
    load_rows_bf16<Bc, kD>(ks, kb + j0 * kv_stride, kv_stride, kn, D, p.vec);
    load_rows_bf16<Bc, kD>(vs, vb + j0 * kv_stride, kv_stride, kn, D, p.vec);
    __syncthreads();
    float s[NB][4] = {}, dp[NB][4] = {};
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
      if (kk >= kd_steps) break;
      uint32_t aq[4], ado[4];
      frag_a(aq, qs, LDH, w * 16, kk * 16);
      frag_a(ado, dos, LDH, w * 16, kk * 16);
#pragma unroll
      for (int nb = 0; nb < NB; ++nb) {
        uint32_t b0, b1;
        frag_b_nk(b0, b1, ks, LDH, kk * 16, nb * 8);
        mma_bf16(s[nb], aq, b0, b1);
        frag_b_nk(b0, b1, vs, LDH, kk * 16, nb * 8);
        mma_bf16(dp[nb], ado, b0, b1);
      }
    }
#pragma unroll
    for (int nb = 0; nb < NB; ++nb)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = e >> 1, kj = j0 + nb * 8 + 2 * t + (e & 1);
        const bool visible = valid[r] && kj <= qi0 + 8 * r && kj < len;
        const float pe = visible ? exp2f(s[nb][e] * p.scale_log2 - lse2[r]) : 0.0f;
        s[nb][e] = pe * (dp[nb][e] - dl[r]);  // dS
      }
#pragma unroll
    for (int kk = 0; kk < Bc / 16; ++kk) {
      uint32_t a[4];
      c_to_a(a, s[2 * kk], s[2 * kk + 1]);
#pragma unroll
      for (int nd = 0; nd < ND; nd += 2) {
        uint32_t b[4];
        frag_b_kn_x2(b, ks, LDH, kk * 16, nd * 8);
        mma_bf16(acc[nd], a, b[0], b[1]);
        mma_bf16(acc[nd + 1], a, b[2], b[3]);
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    if (!valid[r]) continue;
    bf16* dst = p.dq + (q_row0 + int64_t(w * 16 + g + 8 * r) * p.Hq) * D;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      const int c = nd * 8 + 2 * t;
      if (c < D) st(dst + c, p.scale * acc[nd][2 * r]);
      if (c + 1 < D) st(dst + c + 1, p.scale * acc[nd][2 * r + 1]);
    }
  }
}

// attention_dkdv_kernel on tensor cores. A warp owns 16 keys and computes S^T = k q^T and
// dP^T = v dO^T directly, so P^T and dS^T are in registers as the A operands of
// dv += P^T dO and dk += dS^T q.
template <int kD>
__global__ void __launch_bounds__(kMmaThreads) attention_dkdv_mma_kernel(const AttnParams<bf16> p) {
  using M = MmaTiles<kD>;
  constexpr int Bc = M::kv_k, Br = M::kv_q, LDH = M::ld, NQ = Br / 8, ND = kD / 8, KD = kD / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16* ks = reinterpret_cast<bf16*>(smem_raw);            // [Bc][LDH]
  bf16* vs = ks + Bc * LDH;                                 // [Bc][LDH]
  bf16* qs = vs + Bc * LDH;                                 // [Br][LDH]
  bf16* dos = qs + Br * LDH;                                // [Br][LDH]
  float* lse2 = reinterpret_cast<float*>(dos + Br * LDH);   // [Br] lse * log2(e)
  float* dlt = lse2 + Br;                                   // [Br] Delta
  SeqTile tile;
  if (!find_tile(p.cu, p.S, p.n_tokens, Bc, blockIdx.x, tile)) return;
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, g = lane >> 2, t = lane & 3;
  const int grp = blockIdx.y, G = p.Hq / p.Hkv, D = p.D, len = tile.len, j0 = tile.row0;
  const int kn = min(Bc, len - j0), kd_steps = (D + 15) / 16;
  const int64_t kv_stride = int64_t(p.Hkv) * D, q_stride = int64_t(p.Hq) * D;
  const int64_t kv_row0 = int64_t(tile.start + j0) * p.Hkv + grp;
  load_rows_bf16<Bc, kD>(ks, p.k + kv_row0 * D, kv_stride, kn, D, p.vec);
  load_rows_bf16<Bc, kD>(vs, p.v + kv_row0 * D, kv_stride, kn, D, p.vec);
  const int kj0 = j0 + w * 16 + g;  // this thread's keys: kj0 and kj0 + 8

  float dk[ND][4] = {}, dv[ND][4] = {};
  for (int h = grp * G; h < (grp + 1) * G; ++h) {
    for (int i0 = j0 / Br * Br; i0 < len; i0 += Br) {
      const int rows = min(Br, len - i0);
      const int64_t q_row0 = int64_t(tile.start + i0) * p.Hq + h;
      __syncthreads();  // every warp is done with the previous qs, dos and row stats
      load_rows_bf16<Br, kD>(qs, p.q + q_row0 * D, q_stride, rows, D, p.vec);
      load_rows_bf16<Br, kD>(dos, p.dout + q_row0 * D, q_stride, rows, D, p.vec);
      load_row_stats(lse2, dlt, p.lse_in, p.delta, q_row0, p.Hq, rows, Br);
      __syncthreads();
      float s[NQ][4] = {}, dp[NQ][4] = {};
#pragma unroll
      for (int kk = 0; kk < KD; ++kk) {
        if (kk >= kd_steps) break;
        uint32_t ak[4], av[4];
        frag_a(ak, ks, LDH, w * 16, kk * 16);
        frag_a(av, vs, LDH, w * 16, kk * 16);
#pragma unroll
        for (int nq = 0; nq < NQ; ++nq) {
          uint32_t b0, b1;
          frag_b_nk(b0, b1, qs, LDH, kk * 16, nq * 8);
          mma_bf16(s[nq], ak, b0, b1);
          frag_b_nk(b0, b1, dos, LDH, kk * 16, nq * 8);
          mma_bf16(dp[nq], av, b0, b1);
        }
      }
#pragma unroll
      for (int nq = 0; nq < NQ; ++nq)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int ql = nq * 8 + 2 * t + (e & 1), kj = kj0 + 8 * (e >> 1);
          const bool visible = ql < rows && kj < len && kj <= i0 + ql;
          const float pe = visible ? exp2f(s[nq][e] * p.scale_log2 - lse2[ql]) : 0.0f;
          s[nq][e] = pe;                         // P^T
          dp[nq][e] = pe * (dp[nq][e] - dlt[ql]);  // dS^T
        }
#pragma unroll
      for (int kk = 0; kk < Br / 16; ++kk) {
        uint32_t ap[4], ads[4];
        c_to_a(ap, s[2 * kk], s[2 * kk + 1]);
        c_to_a(ads, dp[2 * kk], dp[2 * kk + 1]);
#pragma unroll
        for (int nd = 0; nd < ND; nd += 2) {
          uint32_t b[4];
          frag_b_kn_x2(b, dos, LDH, kk * 16, nd * 8);
          mma_bf16(dv[nd], ap, b[0], b[1]);
          mma_bf16(dv[nd + 1], ap, b[2], b[3]);
          frag_b_kn_x2(b, qs, LDH, kk * 16, nd * 8);
          mma_bf16(dk[nd], ads, b[0], b[1]);
          mma_bf16(dk[nd + 1], ads, b[2], b[3]);
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int kl = w * 16 + g + 8 * r;
    if (kl >= kn) continue;
    const int64_t row = (kv_row0 + int64_t(kl) * p.Hkv) * D;
#pragma unroll
    for (int nd = 0; nd < ND; ++nd) {
      const int c = nd * 8 + 2 * t;
      if (c < D) {
        st(p.dk + row + c, p.scale * dk[nd][2 * r]);
        st(p.dv + row + c, dv[nd][2 * r]);
      }
      if (c + 1 < D) {
        st(p.dk + row + c + 1, p.scale * dk[nd][2 * r + 1]);
        st(p.dv + row + c + 1, dv[nd][2 * r + 1]);
      }
    }
  }
}

// ---- host side ---------------------------------------------------------------------------

// The data dtype of a call: q's when it is bf16, else f32 (so a bad dtype reads "expected f32").
DType data_dtype(const Tensor& q) { return q.dtype == DType::bf16 ? DType::bf16 : DType::f32; }

// Limits of this implementation beyond the shared checks.
void check_supported(const char* op, const checks::AttentionDims& d) {
  GRPO_CHECK(d.D <= kMaxHeadDim, op << ": head dimension " << d.D << " is not supported on cuda (1 to "
                                    << kMaxHeadDim << ")");
  GRPO_CHECK(d.T <= INT_MAX, op << ": " << d.T << " tokens do not fit the i32 cu_seqlens");
  GRPO_CHECK(d.Hq <= 65535, op << ": " << d.Hq << " query heads exceed the 65535 supported on cuda");
}

// Runs f(std::integral_constant<int, kD>) for the smallest kD in {64, 128, 256} >= D.
template <class F>
void dispatch_head_dim(int64_t D, F&& f) {
  if (D <= 64) f(std::integral_constant<int, 64>{});
  else if (D <= 128) f(std::integral_constant<int, 128>{});
  else f(std::integral_constant<int, 256>{});
}

// bf16 with head dims up to 128 runs on tensor cores; f32 (held to 1e-5 against the CPU) and
// head dims past 128 (whose per-warp accumulators would not fit in registers) on FMA tiles.
template <class T, int kD>
constexpr bool kUseMma = std::is_same_v<T, bf16> && kD <= 128;

template <class T>
void launch(void (*kernel)(AttnParams<T>), dim3 grid, int threads, int smem_bytes, cudaStream_t stream,
            const AttnParams<T>& p, const char* op) {
  GRPO_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes));
  kernel<<<grid, threads, smem_bytes, stream>>>(p);
  GRPO_LAUNCH_CHECK(op);
}

bool aligned16(const Tensor& t) { return (reinterpret_cast<uintptr_t>(t.data) & 15) == 0; }

// Grid slots for tiles of B rows (see the top of the file).
unsigned slots(const checks::AttentionDims& d, int64_t S, int B) { return unsigned(d.T / B + S); }

template <class T>
AttnParams<T> make_params(const checks::AttentionDims& d, int64_t S, const Tensor& q, const Tensor& k,
                          const Tensor& v, const Tensor& cu, float scale) {
  AttnParams<T> p{};
  p.q = cuda::dptr<const T>(q);
  p.k = cuda::dptr<const T>(k);
  p.v = cuda::dptr<const T>(v);
  p.cu = cuda::dptr<const int32_t>(cu);
  p.S = int(S);
  p.n_tokens = int(d.T);
  p.Hq = int(d.Hq);
  p.Hkv = int(d.Hkv);
  p.D = int(d.D);
  p.scale = scale;
  p.scale_log2 = scale * kLog2e;
  return p;
}

// Launches the cu_seqlens check; the op calls throw_if_flagged after its kernels.
void check_cu_values(CudaOps& ops, const Tensor& cu, int64_t T, const char* op) {
  const int n = int(cu.shape[0]);
  check_cu_seqlens_kernel<<<cuda::grid_for(n, 256, 64), 256, 0, ops.stream()>>>(cuda::dptr<const int32_t>(cu), n,
                                                                                 int(T), ops.error_flag());
  GRPO_LAUNCH_CHECK(op);
}

}  // namespace

void CudaOps::attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, float scale) {
  const char* op = "attention";
  const checks::AttentionDims d =
      checks::attention(op, out, lse, q, k, v, cu_seqlens, data_dtype(q), Device::cuda);
  check_supported(op, d);
  const int64_t S = cu_seqlens.shape[0] - 1;
  check_cu_values(*this, cu_seqlens, d.T, op);
  if (d.T > 0 && S > 0) {
    GRPO_DISPATCH_FLOAT(q.dtype, op, T, {
      AttnParams<T> p = make_params<T>(d, S, q, k, v, cu_seqlens, scale);
      p.out = cuda::dptr<T>(out);
      p.lse = cuda::dptr<float>(lse);
      p.vec = d.D % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v);
      dispatch_head_dim(d.D, [&](auto kd) {
        constexpr int kD = decltype(kd)::value;
        if constexpr (kUseMma<T, kD>) {
          launch<T>(attention_forward_mma_kernel<kD>, dim3(slots(d, S, MmaTiles<kD>::fwd_q), unsigned(d.Hq)),
                    kMmaThreads, fwd_mma_smem_bytes<kD>(), stream(), p, op);
        } else {
          launch<T>(attention_forward_kernel<T, kD>, dim3(slots(d, S, FmaTiles<kD>::fwd_q), unsigned(d.Hq)), kThreads,
                    fwd_smem_floats<kD>() * 4, stream(), p, op);
        }
      });
    });
  }
  // The one synchronisation: cu_seqlens values live on the device.
  throw_if_flagged(op, checks::cu_seqlens_rule("cu_seqlens", cu_seqlens, d.T).c_str());
}

void CudaOps::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                 Tensor out, Tensor lse, Tensor cu_seqlens, float scale) {
  const char* op = "attention_backward";
  const checks::AttentionDims d = checks::attention_backward(op, dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens,
                                                             data_dtype(q), Device::cuda);
  check_supported(op, d);
  const int64_t S = cu_seqlens.shape[0] - 1;
  check_cu_values(*this, cu_seqlens, d.T, op);
  if (d.T > 0 && S > 0) {
    const int64_t rows = d.T * d.Hq;
    float* delta = static_cast<float*>(workspace(size_t(rows) * sizeof(float)));
    GRPO_DISPATCH_FLOAT(q.dtype, op, T, {
      attention_delta_kernel<T><<<cuda::grid_for(rows, 8), 256, 0, stream()>>>(
          delta, cuda::dptr<const T>(dout), cuda::dptr<const T>(out), rows, int(d.D));
      GRPO_LAUNCH_CHECK(op);
      AttnParams<T> p = make_params<T>(d, S, q, k, v, cu_seqlens, scale);
      p.dout = cuda::dptr<const T>(dout);
      p.lse_in = cuda::dptr<const float>(lse);
      p.delta = delta;
      p.dq = cuda::dptr<T>(dq);
      p.dk = cuda::dptr<T>(dk);
      p.dv = cuda::dptr<T>(dv);
      p.vec = d.D % 8 == 0 && aligned16(q) && aligned16(k) && aligned16(v) && aligned16(dout);
      dispatch_head_dim(d.D, [&](auto kd) {
        constexpr int kD = decltype(kd)::value;
        if constexpr (kUseMma<T, kD>) {
          using M = MmaTiles<kD>;
          launch<T>(attention_dkdv_mma_kernel<kD>, dim3(slots(d, S, M::kv_k), unsigned(d.Hkv)), kMmaThreads,
                    dkdv_mma_smem_bytes<kD>(), stream(), p, op);
          launch<T>(attention_dq_mma_kernel<kD>, dim3(slots(d, S, M::dq_q), unsigned(d.Hq)), kMmaThreads,
                    dq_mma_smem_bytes<kD>(), stream(), p, op);
        } else {
          launch<T>(attention_dkdv_kernel<T, kD>, dim3(slots(d, S, FmaTiles<kD>::kv_k), unsigned(d.Hkv)), kThreads,
                    dkdv_smem_floats<kD>() * 4, stream(), p, op);
          launch<T>(attention_dq_kernel<T, kD>, dim3(slots(d, S, FmaTiles<kD>::dq_q), unsigned(d.Hq)), kThreads,
                    dq_smem_floats<kD>() * 4, stream(), p, op);
        }
      });
    });
  }
  throw_if_flagged(op, checks::cu_seqlens_rule("cu_seqlens", cu_seqlens, d.T).c_str());
}

}  // namespace grpo
