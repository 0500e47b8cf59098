// MoE routing and token movement on CUDA: the router (softmax or sigmoid scores, top-k,
// renormalisation, scaling, routing replay) and its backward, the stable alignment of
// (token, slot) pairs by expert, and the permute / unpermute gathers with their backwards.
// Semantics and messages are the CPU backend's (kernels/cpu/cpu_moe.cpp); x, xp, yp, out and
// their gradients may be f32 or bf16, router tensors are f32, indices i32.
//
// Design:
//   * router: one warp per token; the row's scores are computed as on the CPU (f32 exp, f64
//     softmax sum) and the top-k is K rounds of a warp argmax over (key desc, id asc), each
//     round taking the best pair strictly after the previous pick (no "taken" marks).
//   * align: a stable radix sort (CUB) of the pair indices by expert id gives the permuted
//     rows in (token, slot) order within each expert; expert_offsets are binary searches.
//   * permute_backward: the same sort keyed by token inverts src_token, so each token sums its
//     own rows in ascending row order: deterministic, no atomics, bitwise the CPU's f32 sum.
//   * index checks (replayed ids, align's ids, src_token, dest_row) run on the device before
//     the op's kernels, which do nothing once the flag is raised; the op then synchronises
//     and throws the CPU's message (see raise_if_flagged). That synchronisation is the cost of
//     validating device data, as the ops.h contract asks; in a captured graph the check runs
//     once after each replay instead (CudaOps::check_flag).
#include <cub/device/device_radix_sort.cuh>

#include <algorithm>
#include <climits>
#include <vector>

#include "kernels/checks_moe.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {
namespace {

using cuda::ld;
using cuda::st;

constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / 32;
// Added to the sum of the chosen scores before renormalising (as on the CPU).
constexpr double kNormEps = 1e-20;
constexpr unsigned kFull = 0xffffffffu;

// Flag codes (any nonzero value fails the op).
constexpr int kBadRange = 1;
constexpr int kDuplicate = 2;

DType data_dtype(const Tensor& t) { return t.dtype == DType::bf16 ? DType::bf16 : DType::f32; }

// Bits needed to hold every value in [0, n) (at least 1, for the radix sort).
int bits_for(int64_t n) {
  int b = 1;
  while (b < 31 && (int64_t(1) << b) < n) ++b;
  return b;
}

// Consecutive 256-byte aligned pieces of one workspace() buffer: sizes first, then base().
struct Carve {
  size_t bytes = 0;
  size_t take(size_t n) {
    const size_t at = bytes;
    bytes += (n + 255) & ~size_t(255);
    return at;
  }
};

std::vector<int32_t> to_host(CudaOps& ops, const Tensor& t) {
  std::vector<int32_t> h(size_t(t.numel()));
  ops.allocator().copy_to_host(h.data(), t.data, h.size() * sizeof(int32_t));
  return h;
}

// The check of the op's flag (CudaOps::check_flag: here, or after each replay of a graph).
// When it is raised, `recheck` runs the CPU's check on a host copy of the indices, so the error
// names the offending value as the CPU backend does; `what` is the fallback should it pass.
// recheck is kept for the replays of a graph: it captures by value.
template <class F>
void raise_if_flagged(CudaOps& ops, const char* op, const char* what, F recheck) {
  ops.check_flag(op, [recheck](int) { recheck(); }, what);
}

// ---- index checks ----------------------------------------------------------------------

// ids [T, K] in [0, E); with `unique`, no expert twice in a row (O(K) per id: K is small).
__global__ void check_ids_kernel(const int32_t* ids, int64_t n, int K, int E, bool unique, int* flag) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t e = ids[i];
    if (e < 0 || e >= E) {
      atomicOr(flag, kBadRange);
      continue;
    }
    if (unique) {
      const int k = int(i % K);
      const int32_t* row = ids + (i - k);
      for (int j = 0; j < k; ++j)
        if (row[j] == e) {
          atomicOr(flag, kDuplicate);
          break;
        }
    }
  }
}

// src [R] in [0, T).
__global__ void check_src_kernel(const int32_t* src, int64_t R, int64_t T, int* flag) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < R; i += int64_t(gridDim.x) * blockDim.x)
    if (src[i] < 0 || src[i] >= T) atomicOr(flag, kBadRange);
}

// dest [R] a permutation of [0, R): seen [R] starts zeroed and counts each row's writers.
__global__ void check_dest_kernel(const int32_t* dest, int64_t R, int* seen, int* flag) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < R; i += int64_t(gridDim.x) * blockDim.x) {
    const int32_t r = dest[i];
    if (r < 0 || r >= R) atomicOr(flag, kBadRange);
    else if (atomicAdd(seen + r, 1) != 0) atomicOr(flag, kDuplicate);
  }
}

// ---- router ------------------------------------------------------------------------------

struct RouterArgs {
  float* weights;        // [T, K]
  int32_t* ids;          // [T, K]: written, or read when replay
  float* scores;         // [T, E]
  const float* logits;   // [T, E]
  const float* bias;     // [E], may be nullptr
  int64_t T;
  int E, K;
  bool softmax, normalize, replay;
  float scaling;
  const int* flag;       // raised by the replay check: write nothing; may be nullptr
};

// Selection key: NaN ranks below everything (as on the CPU).
__device__ __forceinline__ float sel_key(float v) { return isnan(v) ? -INFINITY : v; }
// (key, id) comes first in the order: higher key, then lower id.
__device__ __forceinline__ bool before(float ka, int ia, float kb, int ib) { return ka > kb || (ka == kb && ia < ib); }

__global__ void router_kernel(RouterArgs a) {
  if (a.flag && *a.flag) return;
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t t = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32; t < a.T; t += nwarps) {
    const float* l = a.logits + t * a.E;
    float* s = a.scores + t * a.E;
    if (a.softmax) {
      float m = -INFINITY;
      for (int e = lane; e < a.E; e += 32) m = fmaxf(m, l[e]);
      m = cuda::warp_max(m);
      double sum = 0.0;
      for (int e = lane; e < a.E; e += 32) sum += expf(l[e] - m);
      sum = cuda::warp_sum(sum);
      const float inv = float(1.0 / sum);
      for (int e = lane; e < a.E; e += 32) s[e] = expf(l[e] - m) * inv;
    } else {
      for (int e = lane; e < a.E; e += 32) s[e] = 1.0f / (1.0f + expf(-l[e]));
    }

    int32_t* id = a.ids + t * a.K;
    float* w = a.weights + t * a.K;
    double chosen_sum = 0.0;  // sum of the chosen raw scores, in slot order (as on the CPU)
    if (a.replay) {
      __syncwarp();  // lanes read scores written by other lanes
      for (int k = 0; k < a.K; ++k) {
        const float sk = s[id[k]];
        chosen_sum += sk;
        if (lane == (k & 31)) w[k] = sk;
      }
    } else {
      // Round k takes the best (key, id) strictly after round k-1's pick: a strict total
      // order, so the picks are the CPU's partial_sort prefix. Each lane reads back only the
      // scores it wrote itself.
      float prev_key = INFINITY;
      int prev_id = -1;
      for (int k = 0; k < a.K; ++k) {
        float bk = -INFINITY, bs = 0.0f;
        int bi = INT_MAX;
        for (int e = lane; e < a.E; e += 32) {
          const float se = s[e];
          const float key = sel_key(a.bias ? se + a.bias[e] : se);
          if (before(prev_key, prev_id, key, e) && before(key, e, bk, bi)) {
            bk = key;
            bi = e;
            bs = se;
          }
        }
        for (int o = 16; o > 0; o >>= 1) {
          const float ok = __shfl_xor_sync(kFull, bk, o);
          const int oi = __shfl_xor_sync(kFull, bi, o);
          const float os = __shfl_xor_sync(kFull, bs, o);
          if (before(ok, oi, bk, bi)) {
            bk = ok;
            bi = oi;
            bs = os;
          }
        }
        prev_key = bk;
        prev_id = bi;
        chosen_sum += bs;
        if (lane == (k & 31)) {
          id[k] = bi;
          w[k] = bs;
        }
      }
    }
    const float mult = a.normalize ? float(double(a.scaling) / (chosen_sum + kNormEps)) : a.scaling;
    for (int k = lane; k < a.K; k += 32) w[k] *= mult;  // this lane wrote w[k] above
  }
}

struct RouterBackwardArgs {
  float* dlogits;        // [T, E]
  const float* dw;       // [T, K]
  const float* scores;   // [T, E]
  const int32_t* ids;    // [T, K]
  int64_t T;
  int E, K;
  bool softmax, normalize;
  double scaling;
  const int* flag;       // raised by the id check: write nothing
};

// One warp per token. w_k = scaling * r_k / S (S = sum_j r_j + eps) or scaling * r_k; dr_k is
// dL/dr_k, then through softmax or sigmoid to the logits (the CPU's formulas, in f64).
__global__ void router_backward_kernel(RouterBackwardArgs a) {
  if (*a.flag) return;
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t t = blockIdx.x * int64_t(kWarpsPerBlock) + threadIdx.x / 32; t < a.T; t += nwarps) {
    const float* s = a.scores + t * a.E;
    const int32_t* id = a.ids + t * a.K;
    const float* g = a.dw + t * a.K;
    float* d = a.dlogits + t * a.E;
    double S = 1.0, c = 0.0;
    if (a.normalize) {
      double sum = 0.0, gr = 0.0;
      for (int k = lane; k < a.K; k += 32) {
        const double sk = s[id[k]];
        sum += sk;
        gr += double(g[k]) * sk;
      }
      S = cuda::warp_sum(sum) + kNormEps;
      c = a.scaling * cuda::warp_sum(gr) / S;
    }
    auto dr = [&](int k) { return a.normalize ? (a.scaling * g[k] - c) / S : a.scaling * g[k]; };
    double dot = 0.0;
    if (a.softmax) {
      for (int k = lane; k < a.K; k += 32) dot += double(s[id[k]]) * dr(k);
      dot = cuda::warp_sum(dot);
    }
    for (int e = lane; e < a.E; e += 32) {
      int slot = -1;  // ids are distinct (checked): at most one slot names e
      for (int k = 0; k < a.K; ++k)
        if (id[k] == e) {
          slot = k;
          break;
        }
      const double se = s[e];
      if (a.softmax) d[e] = slot < 0 ? float(-se * dot) : float(se * (dr(slot) - dot));
      else d[e] = slot < 0 ? 0.0f : float(dr(slot) * se * (1.0 - se));
    }
  }
}

// ---- stable grouping by a small integer key ----------------------------------------------

__global__ void iota_kernel(int32_t* out, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    out[i] = int32_t(i);
}

// First index of sorted keys [n] whose key is >= v.
__device__ __forceinline__ int lower_bound(const uint32_t* keys, int n, uint32_t v) {
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = lo + (hi - lo) / 2;
    if (keys[mid] < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// The scratch of sort_by_key: sorted keys and the original index of each sorted item.
struct Sorted {
  uint32_t* keys;
  int32_t* index;
};

// Stable sort of the indices [0, n) by keys [n] (values in [0, 2^bits)), on the stream.
// The keys are assumed valid here; a flagged op discards the result.
Sorted sort_by_key(CudaOps& ops, const char* op, const int32_t* keys, int n, int bits) {
  size_t temp_bytes = 0;
  GRPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, static_cast<const uint32_t*>(nullptr),
                                                  static_cast<uint32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                  static_cast<int32_t*>(nullptr), n, 0, bits, ops.stream()));
  Carve c;
  const size_t k_out = c.take(size_t(n) * 4), v_in = c.take(size_t(n) * 4), v_out = c.take(size_t(n) * 4),
               temp = c.take(temp_bytes);
  char* base = static_cast<char*>(ops.workspace(c.bytes));
  Sorted s{reinterpret_cast<uint32_t*>(base + k_out), reinterpret_cast<int32_t*>(base + v_out)};
  int32_t* iota = reinterpret_cast<int32_t*>(base + v_in);
  iota_kernel<<<cuda::grid_for(n, kThreads), kThreads, 0, ops.stream()>>>(iota, n);
  GRPO_LAUNCH_CHECK(op);
  GRPO_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(base + temp, temp_bytes, reinterpret_cast<const uint32_t*>(keys),
                                                  s.keys, iota, s.index, n, 0, bits, ops.stream()));
  return s;
}

// Pair i = t*K + k went to row r: src_token[r] = t, dest_row[i] = r.
__global__ void align_rows_kernel(int32_t* src_token, int32_t* dest_row, const int32_t* index, int n, int K,
                                  const int* flag) {
  if (*flag) return;
  for (int r = blockIdx.x * blockDim.x + threadIdx.x; r < n; r += gridDim.x * blockDim.x) {
    const int32_t i = index[r];
    src_token[r] = i / K;
    dest_row[i] = r;
  }
}

// offsets[e] = first sorted row of expert e, e in [0, E]; offsets[E] = n.
__global__ void align_offsets_kernel(int32_t* offsets, const uint32_t* keys, int n, int E, const int* flag) {
  if (*flag) return;
  for (int e = blockIdx.x * blockDim.x + threadIdx.x; e <= E; e += gridDim.x * blockDim.x)
    offsets[e] = lower_bound(keys, n, uint32_t(e));
}

// ---- permute / unpermute -----------------------------------------------------------------

// dst row r = src row rows[r], copied in units U (16, 8, 4 or 2 bytes) of `units` per row.
template <class U>
__global__ void gather_rows_kernel(U* dst, const U* src, const int32_t* rows, int64_t R, int64_t units,
                                   const int* flag) {
  if (*flag) return;
  for (int64_t r = blockIdx.x; r < R; r += gridDim.x) {
    const U* from = src + int64_t(rows[r]) * units;
    U* to = dst + r * units;
    for (int64_t c = threadIdx.x; c < units; c += blockDim.x) to[c] = from[c];
  }
}

// dx[t] = sum of dxp rows sorted.index[lo, hi) where sorted.keys[lo, hi) == t, in ascending
// row order (the stable sort keeps it): the CPU's f32 sum, term for term.
template <class T>
__global__ void permute_backward_kernel(T* dx, const T* dxp, Sorted sorted, int R, int64_t Tn, int64_t C,
                                        const int* flag) {
  if (*flag) return;
  for (int64_t t = blockIdx.x; t < Tn; t += gridDim.x) {
    const int lo = lower_bound(sorted.keys, R, uint32_t(t)), hi = lower_bound(sorted.keys, R, uint32_t(t + 1));
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float acc = 0.0f;
      for (int j = lo; j < hi; ++j) acc += ld(dxp + int64_t(sorted.index[j]) * C + c);
      st(dx + t * C + c, acc);
    }
  }
}

// out[t] = sum_k w[t, k] * yp[dest[t*K + k]].
template <class T>
__global__ void unpermute_kernel(T* out, const T* yp, const int32_t* dest, const float* w, int64_t Tn, int K,
                                 int64_t C, const int* flag) {
  if (*flag) return;
  for (int64_t t = blockIdx.x; t < Tn; t += gridDim.x) {
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) acc += w[t * K + k] * ld(yp + int64_t(dest[t * K + k]) * C + c);
      st(out + t * C + c, acc);
    }
  }
}

// dyp[dest[t*K + k]] = w[t, k] * dout[t]; dw[t, k] = <dout[t], yp[dest[t*K + k]]> (f64, as on
// the CPU). One block per token; dest is a permutation, so no two blocks write one dyp row.
template <class T>
__global__ void unpermute_backward_kernel(T* dyp, float* dw, const T* dout, const T* yp, const int32_t* dest,
                                          const float* w, int64_t Tn, int K, int64_t C, const int* flag) {
  __shared__ double scratch[32];
  if (*flag) return;
  for (int64_t t = blockIdx.x; t < Tn; t += gridDim.x) {
    const T* g = dout + t * C;
    for (int k = 0; k < K; ++k) {
      const int64_t row = dest[t * K + k];
      const float wk = w[t * K + k];
      double dot = 0.0;
      for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const float gc = ld(g + c);
        st(dyp + row * C + c, wk * gc);
        dot += double(gc) * ld(yp + row * C + c);
      }
      dot = cuda::block_sum(dot, scratch);
      if (threadIdx.x == 0) dw[t * K + k] = float(dot);
    }
  }
}

unsigned blocks_for_rows(int64_t rows) { return unsigned(std::min<int64_t>(std::max<int64_t>(rows, 1), 65535LL * 8)); }

}  // namespace

// ---- ops -------------------------------------------------------------------------------------

void CudaOps::moe_router(Tensor topk_weights, Tensor topk_ids, Tensor scores, Tensor logits, const RouterParams& p,
                         bool replay) {
  const char* op = "moe_router";
  const int64_t E = checks::moe_router(topk_weights, topk_ids, scores, logits, p, Device::cuda);
  const int64_t T = logits.shape[0], K = p.top_k;
  GRPO_CHECK(E <= INT_MAX, op << ": scores " << scores.str() << " has more than " << INT_MAX << " experts");
  if (T == 0) return;
  int* flag = nullptr;
  if (replay) {
    flag = error_flag();
    check_ids_kernel<<<cuda::grid_for(T * K, kThreads), kThreads, 0, stream_>>>(topk_ids.ptr<int32_t>(), T * K,
                                                                                 int(K), int(E), true, flag);
    GRPO_LAUNCH_CHECK(op);
  }
  RouterArgs a{topk_weights.ptr<float>(),
               topk_ids.ptr<int32_t>(),
               scores.ptr<float>(),
               logits.ptr<float>(),
               p.selection_bias.defined() ? p.selection_bias.ptr<float>() : nullptr,
               T,
               int(E),
               int(K),
               p.score == RouterScore::softmax,
               p.normalize_topk,
               replay,
               p.scaling,
               flag};
  router_kernel<<<cuda::grid_for(T, kWarpsPerBlock), kThreads, 0, stream_>>>(a);
  GRPO_LAUNCH_CHECK(op);
  // Only replayed ids come from the caller; selected ones are valid by construction.
  if (replay)
    raise_if_flagged(*this, op, "topk_ids holds an expert outside [0, E) or twice in a row", [=, this] {
      checks::moe_ids(op, topk_ids, to_host(*this, topk_ids).data(), E, true);
    });
}

void CudaOps::moe_router_backward(Tensor dlogits, Tensor dtopk_weights, Tensor scores, Tensor topk_ids,
                                  const RouterParams& p) {
  const char* op = "moe_router_backward";
  const int64_t E = checks::moe_router_backward(dlogits, dtopk_weights, scores, topk_ids, p, Device::cuda);
  const int64_t T = scores.shape[0], K = p.top_k;
  GRPO_CHECK(E <= INT_MAX, op << ": scores " << scores.str() << " has more than " << INT_MAX << " experts");
  if (T == 0) return;
  int* flag = error_flag();
  check_ids_kernel<<<cuda::grid_for(T * K, kThreads), kThreads, 0, stream_>>>(topk_ids.ptr<int32_t>(), T * K, int(K),
                                                                               int(E), true, flag);
  GRPO_LAUNCH_CHECK(op);
  RouterBackwardArgs a{dlogits.ptr<float>(),
                       dtopk_weights.ptr<float>(),
                       scores.ptr<float>(),
                       topk_ids.ptr<int32_t>(),
                       T,
                       int(E),
                       int(K),
                       p.score == RouterScore::softmax,
                       p.normalize_topk,
                       double(p.scaling),
                       flag};
  router_backward_kernel<<<cuda::grid_for(T, kWarpsPerBlock), kThreads, 0, stream_>>>(a);
  GRPO_LAUNCH_CHECK(op);
  raise_if_flagged(*this, op, "topk_ids holds an expert outside [0, E) or twice in a row", [=, this] {
    checks::moe_ids(op, topk_ids, to_host(*this, topk_ids).data(), E, true);
  });
}

void CudaOps::moe_align(Tensor expert_offsets, Tensor src_token, Tensor dest_row, Tensor topk_ids,
                        int64_t num_experts) {
  const char* op = "moe_align";
  checks::moe_align(expert_offsets, src_token, dest_row, topk_ids, num_experts, Device::cuda);
  const int64_t K = topk_ids.shape[1], E = num_experts;
  const int n = int(topk_ids.numel());  // <= INT32_MAX (checked)
  int32_t* offsets = expert_offsets.ptr<int32_t>();
  if (n == 0) {
    GRPO_CUDA_CHECK(cudaMemsetAsync(offsets, 0, size_t(E + 1) * sizeof(int32_t), stream_));
    return;
  }
  int* flag = error_flag();
  const int32_t* ids = topk_ids.ptr<int32_t>();
  check_ids_kernel<<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(ids, n, int(K), int(E), false, flag);
  GRPO_LAUNCH_CHECK(op);
  const Sorted s = sort_by_key(*this, op, ids, n, bits_for(E));
  align_rows_kernel<<<cuda::grid_for(n, kThreads), kThreads, 0, stream_>>>(src_token.ptr<int32_t>(),
                                                                           dest_row.ptr<int32_t>(), s.index, n,
                                                                           int(K), flag);
  GRPO_LAUNCH_CHECK(op);
  align_offsets_kernel<<<cuda::grid_for(E + 1, kThreads), kThreads, 0, stream_>>>(offsets, s.keys, n, int(E), flag);
  GRPO_LAUNCH_CHECK(op);
  raise_if_flagged(*this, op, "topk_ids holds an expert outside [0, num_experts)", [=, this] {
    checks::moe_ids(op, topk_ids, to_host(*this, topk_ids).data(), E, false);
  });
}

void CudaOps::moe_permute(Tensor xp, Tensor x, Tensor src_token) {
  const char* op = "moe_permute";
  checks::moe_permute(xp, x, src_token, data_dtype(x), Device::cuda);
  const int64_t T = x.shape[0], C = x.shape[1], R = src_token.shape[0];
  if (R == 0) return;
  int* flag = error_flag();
  const int32_t* src = src_token.ptr<int32_t>();
  check_src_kernel<<<cuda::grid_for(R, kThreads), kThreads, 0, stream_>>>(src, R, T, flag);
  GRPO_LAUNCH_CHECK(op);
  if (C > 0) {
    // A row is a plain byte copy: move it in the widest unit its size and alignment allow.
    const int64_t row_bytes = C * int64_t(dtype_size(x.dtype));
    const uintptr_t align = reinterpret_cast<uintptr_t>(x.data) | reinterpret_cast<uintptr_t>(xp.data);
    int unit = 16;
    while (unit > 2 && (row_bytes % unit != 0 || align % unit != 0)) unit /= 2;
    auto gather = [&](auto unit_type) {
      using U = decltype(unit_type);
      gather_rows_kernel<U><<<blocks_for_rows(R), kThreads, 0, stream_>>>(
          static_cast<U*>(xp.data), static_cast<const U*>(x.data), src, R, row_bytes / unit, flag);
    };
    switch (unit) {
      case 16: gather(uint4{}); break;
      case 8: gather(uint2{}); break;
      case 4: gather(uint32_t{}); break;
      default: gather(uint16_t{}); break;
    }
    GRPO_LAUNCH_CHECK(op);
  }
  raise_if_flagged(*this, op, "src_token holds a token outside [0, T)", [=, this] {
    checks::moe_src_token(op, src_token, to_host(*this, src_token).data(), T);
  });
}

void CudaOps::moe_permute_backward(Tensor dx, Tensor dxp, Tensor src_token) {
  const char* op = "moe_permute_backward";
  checks::moe_permute_backward(dx, dxp, src_token, data_dtype(dx), Device::cuda);
  const int64_t T = dx.shape[0], C = dx.shape[1], R = src_token.shape[0];
  GRPO_CHECK(R <= INT_MAX && T < INT_MAX,
             op << ": src_token " << src_token.str() << " and dx " << dx.str() << " exceed the i32 row range");
  int* flag = error_flag();
  const int32_t* src = src_token.ptr<int32_t>();
  Sorted s{nullptr, nullptr};  // R == 0: every token sums no rows
  if (R > 0) {
    check_src_kernel<<<cuda::grid_for(R, kThreads), kThreads, 0, stream_>>>(src, R, T, flag);
    GRPO_LAUNCH_CHECK(op);
    s = sort_by_key(*this, op, src, int(R), bits_for(T));
  }
  if (T > 0 && C > 0) {
    GRPO_DISPATCH_FLOAT(dx.dtype, op, D, {
      permute_backward_kernel<D><<<blocks_for_rows(T), kThreads, 0, stream_>>>(
          cuda::dptr<D>(dx), cuda::dptr<const D>(dxp), s, int(R), T, C, flag);
    });
    GRPO_LAUNCH_CHECK(op);
  }
  if (R > 0)
    raise_if_flagged(*this, op, "src_token holds a token outside [0, T)", [=, this] {
      checks::moe_src_token(op, src_token, to_host(*this, src_token).data(), T);
    });
}

void CudaOps::moe_unpermute(Tensor out, Tensor yp, Tensor dest_row, Tensor topk_weights) {
  const char* op = "moe_unpermute";
  checks::moe_unpermute(out, yp, dest_row, topk_weights, data_dtype(out), Device::cuda);
  const int64_t T = out.shape[0], C = out.shape[1], K = topk_weights.shape[1], R = T * K;
  GRPO_CHECK(K <= INT_MAX, op << ": topk_weights " << topk_weights.str() << " has too many slots");
  int* flag = error_flag();
  const int32_t* dest = dest_row.ptr<int32_t>();
  if (R > 0) {
    int* seen = static_cast<int*>(workspace(size_t(R) * sizeof(int)));
    GRPO_CUDA_CHECK(cudaMemsetAsync(seen, 0, size_t(R) * sizeof(int), stream_));
    check_dest_kernel<<<cuda::grid_for(R, kThreads), kThreads, 0, stream_>>>(dest, R, seen, flag);
    GRPO_LAUNCH_CHECK(op);
  }
  if (T > 0 && C > 0) {  // K == 0 writes zeros
    GRPO_DISPATCH_FLOAT(out.dtype, op, D, {
      unpermute_kernel<D><<<blocks_for_rows(T), kThreads, 0, stream_>>>(
          cuda::dptr<D>(out), cuda::dptr<const D>(yp), dest, topk_weights.ptr<float>(), T, int(K), C, flag);
    });
    GRPO_LAUNCH_CHECK(op);
  }
  if (R > 0)
    raise_if_flagged(*this, op, "dest_row is not a permutation of [0, T*K)", [=, this] {
      checks::moe_dest_row(op, dest_row, to_host(*this, dest_row).data());
    });
}

void CudaOps::moe_unpermute_backward(Tensor dyp, Tensor dtopk_weights, Tensor dout, Tensor yp, Tensor dest_row,
                                     Tensor topk_weights) {
  const char* op = "moe_unpermute_backward";
  checks::moe_unpermute_backward(dyp, dtopk_weights, dout, yp, dest_row, topk_weights, data_dtype(dout),
                                 Device::cuda);
  const int64_t T = dout.shape[0], C = dout.shape[1], K = topk_weights.shape[1], R = T * K;
  GRPO_CHECK(K <= INT_MAX, op << ": topk_weights " << topk_weights.str() << " has too many slots");
  if (R == 0) return;
  int* flag = error_flag();
  const int32_t* dest = dest_row.ptr<int32_t>();
  int* seen = static_cast<int*>(workspace(size_t(R) * sizeof(int)));
  GRPO_CUDA_CHECK(cudaMemsetAsync(seen, 0, size_t(R) * sizeof(int), stream_));
  check_dest_kernel<<<cuda::grid_for(R, kThreads), kThreads, 0, stream_>>>(dest, R, seen, flag);
  GRPO_LAUNCH_CHECK(op);
  // C == 0 still writes dtopk_weights (= 0): the kernel runs with an empty inner loop.
  GRPO_DISPATCH_FLOAT(dout.dtype, op, D, {
    unpermute_backward_kernel<D><<<blocks_for_rows(T), kThreads, 0, stream_>>>(
        cuda::dptr<D>(dyp), dtopk_weights.ptr<float>(), cuda::dptr<const D>(dout), cuda::dptr<const D>(yp), dest,
        topk_weights.ptr<float>(), T, int(K), C, flag);
  });
  GRPO_LAUNCH_CHECK(op);
  raise_if_flagged(*this, op, "dest_row is not a permutation of [0, T*K)", [=, this] {
    checks::moe_dest_row(op, dest_row, to_host(*this, dest_row).data());
  });
}

}  // namespace grpo
