// Token sampling on CUDA: the CPU's draw (kernels/cpu/cpu_sampling.cpp spells it out) without
// sorting the vocabulary. One block per row.
//
// Every token j has a composite key  desc(logit_j) << idbits | j  whose ascending order is the
// candidate order (descending logit, ties to the lower id; NaN as -inf). Each filter and the
// draw asks for "the first token in that order at which a running total reaches a goal":
// top_k counts tokens, top_p and the draw add up probability mass. A radix select answers it
// with a few passes: each pass histograms the tokens that share the prefix found so far by the
// next 8 bits of the key (count and mass per bucket), and the bucket where the running total
// crosses the goal extends the prefix, until the bucket holds one token. The first pass also
// gives the totals the goal is relative to (top_p * mass, u * mass); once the tokens left fit
// in shared memory (kCandidates) they are gathered there, so a select typically reads the row
// twice, whatever top_k/top_p. A row costs ~3-6 reads in all, never a sort.
//
// Mass is summed in fixed point: w_j = floor(e_j * 2^S) as u64, with S chosen so that V
// weights cannot overflow (S = 63 - idbits; 45 bits for a 152k vocabulary). Integer atomics
// make every histogram, and so the draw, deterministic; the truncation (< V * 2^-S of a mass
// >= 1, since the top token has e = 1) is far below the f32 exp rounding the backends already
// differ by, so the CPU's f64 running sums pick the same token except at a CDF boundary.
// The log-prob uses an f64 sum of e, as on the CPU.
#include <cmath>
#include <cstdint>

#include "core/rng.h"
#include "kernels/checks_sampling.h"
#include "kernels/cuda/cuda_ops_impl.h"

namespace grpo {
namespace {

using cuda::ld;

constexpr int kThreads = 512;
constexpr int kBuckets = 256;  // 8-bit digits; the scan gives each of 32 lanes 8 buckets
constexpr unsigned kFull = 0xffffffffu;

// Order-reversing map of a logit to u32: larger logits give smaller values; NaN ranks as
// -inf and -0 as +0 (the CPU compares them equal, so ties go to the lower id).
__device__ __forceinline__ uint32_t desc_bits(float x) {
  if (isnan(x)) x = -INFINITY;
  if (x == 0.0f) x = 0.0f;
  const uint32_t u = __float_as_uint(x);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return ~ascending;
}

template <class T>
struct Row {
  const T* l;      // [V] logits
  int64_t V;
  int idbits;      // ids < 2^idbits
  int key_bits;    // 32 + idbits <= 63
  float m;         // max logit (NaN as -inf)
  float temp;      // > 0
  float scale;     // 2^S, S = 63 - idbits: V weights sum below 2^63

  __device__ uint64_t key(float x, int64_t j) const { return (uint64_t(desc_bits(x)) << idbits) | uint64_t(j); }
  __device__ int32_t id(uint64_t key) const { return int32_t(key & ((uint64_t(1) << idbits) - 1)); }
  // The CPU's unnormalised probability: e = 1 for the top token, 0 for NaN.
  __device__ float e(float x) const { return isnan(x) ? 0.0f : expf((x - m) / temp); }
  __device__ uint64_t weight(float e) const { return e > 0.0f ? __float2ull_rz(e * scale) : 0ull; }
};

struct Pick {
  uint64_t key;  // the token's key
  bool found;
};

// Calls f(x, j, ok) for the row's tokens, warp-uniformly (every lane of a warp makes the same
// calls, so f may use warp intrinsics; ok is false on padding lanes). The body reads 16-byte
// vectors, kUnroll per lane in flight; warp 0 takes the unaligned head and the tail (fewer than
// 2 * 16 / sizeof(T) <= 16 tokens, one per lane).
constexpr int kUnroll = 4;
template <class T, class F>
__device__ __forceinline__ void for_each_logit(const T* l, int64_t V, F&& f) {
  constexpr int kVec = 16 / sizeof(T);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t misalign = int64_t(reinterpret_cast<uintptr_t>(l) & 15) / int64_t(sizeof(T));
  const int64_t head = misalign ? (V < kVec - misalign ? V : kVec - misalign) : 0;
  const int64_t nvec = (V - head) / kVec, tail = head + nvec * kVec;
  const uint4* vec = reinterpret_cast<const uint4*>(l + head);
  const int64_t stride = blockDim.x;
  for (int64_t base = int64_t(warp) * 32 + lane; base - lane < nvec; base += stride * kUnroll) {
    uint4 raw[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * stride;
      raw[u] = i < nvec ? __ldg(vec + i) : make_uint4(0, 0, 0, 0);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * stride;
      if (i - lane >= nvec) break;  // warp-uniform: the warp's first lane is past the end
      const T* xs = reinterpret_cast<const T*>(&raw[u]);
#pragma unroll
      for (int k = 0; k < kVec; ++k) f(ld(xs[k]), head + i * kVec + k, i < nvec);
    }
  }
  if (warp == 0) {
    const bool ok = lane < head + (V - tail);
    const int64_t j = lane < head ? lane : tail + (lane - head);
    f(ok ? ld(l + j) : 0.0f, j, ok);
  }
}

// What a select looks for, set from the totals of the tokens it ranges over (keys <= cut),
// which its first pass histograms anyway.
struct Goal {
  enum Kind { count_k, mass_p, draw } kind;
  uint64_t k;     // count_k: the count to reach (top_k)
  float p;        // mass_p: the fraction of the mass to reach (top_p)
  uint64_t u24;   // draw: u = u24 * 2^-24
  __device__ bool by_mass() const { return kind != count_k; }
  __device__ bool strict() const { return kind == draw; }
  // Non-strict goals are >= 1 and strict ones >= 0, so the crossing token always adds to the
  // total; 0 with a strict goal on an empty mass means "no token" (total 0 never exceeds 0).
  __device__ uint64_t value(uint64_t mass) const {
    if (kind == count_k) return k;
    if (kind == mass_p) {  // shortest prefix with mass >= p * mass
      const uint64_t g = __double2ull_ru(double(p) * double(mass));
      return g < 1 ? 1 : g;
    }
    // The first token whose running mass exceeds u * mass: target = floor(u24 * mass / 2^24),
    // exact in 128 bits.
    const uint64_t lo = u24 * mass, hi = __umul64hi(u24, mass);
    return (hi << 40) | (lo >> 24);
  }
  __device__ bool crosses(uint64_t total, uint64_t goal) const { return strict() ? total > goal : total >= goal; }
};

// Per-bucket histograms, kCopies of them (warp w adds to copy w % kCopies) to spread the
// shared-memory atomics. Mass is u64 kept as two u32 words: the low word's carry, detected
// from the value atomicAdd returns, goes into the high word, so every sum is exact.
constexpr int kCopies = 4;
// Once the tokens left in the race fit here, they are gathered into shared memory and the
// remaining passes read them there instead of the whole row.
constexpr int kCandidates = 1024;
struct SelectShared {
  unsigned cnt[kCopies][kBuckets];
  unsigned mass_lo[kCopies][kBuckets];
  unsigned mass_hi[kCopies][kBuckets];
  unsigned long long key[kBuckets];  // THE key of a bucket that holds one token
  unsigned long long cand_key[kCandidates], cand_w[kCandidates];
  unsigned n_cand;
  // Written by the scanning lane, read by all after a barrier.
  int state;  // 0: continue with prefix/bc/bm, 1: found (pick), 2: no crossing
  unsigned long long prefix, bc, bm, n_next;
  Pick pick;

  __device__ uint64_t count(int d) const {
    uint64_t c = 0;
    for (int i = 0; i < kCopies; ++i) c += cnt[i][d];
    return c;
  }
  __device__ uint64_t mass(int d) const {
    uint64_t m = 0;
    for (int i = 0; i < kCopies; ++i) m += (uint64_t(mass_hi[i][d]) << 32) + mass_lo[i][d];
    return m;
  }
};

// The first token in candidate order, among keys <= cut, at which the running total (count
// or mass, see Goal) crosses the goal. Called by the whole block. With z, the first pass
// (which sees every token when cut is all ones) also adds each thread's e to *z.
template <class T>
__device__ Pick select_first(const Row<T>& r, uint64_t cut, const Goal g, SelectShared& sh, double* z) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, copy = warp % kCopies;
  uint64_t prefix = 0, bc = 0, bm = 0;  // key bits fixed so far; count and mass before them
  uint64_t goal = 0;                    // set by warp 0 in the first pass
  enum { kRow, kRowGather, kGathered } source = kRow;
  unsigned n_cand = 0;
  for (int hi = r.key_bits; hi > 0; hi -= 8) {
    const int lo = hi > 8 ? hi - 8 : 0;
    const uint64_t dmask = (uint64_t(1) << (hi - lo)) - 1;
    for (int d = threadIdx.x; d < kBuckets * kCopies; d += blockDim.x) {
      (&sh.cnt[0][0])[d] = 0;
      (&sh.mass_lo[0][0])[d] = 0;
      (&sh.mass_hi[0][0])[d] = 0;
    }
    __syncthreads();
    // Histogram into this warp's copy. Early digits are mostly the exponent, so a thread's
    // tokens often share a bucket: a run of them is added up in registers, one flush each.
    int run_d = -1;
    unsigned run_n = 0;
    uint64_t run_m = 0, run_key = 0;
    auto flush = [&] {
      if (run_n == 0) return;
      atomicAdd(&sh.cnt[copy][run_d], run_n);
      const unsigned m_lo = unsigned(run_m), old = atomicAdd(&sh.mass_lo[copy][run_d], m_lo);
      atomicAdd(&sh.mass_hi[copy][run_d], unsigned(run_m >> 32) + (old + m_lo < old ? 1u : 0u));
      if (run_n == 1) atomicExch(&sh.key[run_d], (unsigned long long)run_key);  // read only if the bucket holds one
    };
    auto add = [&](uint64_t key, uint64_t w, bool ok) {
      if (!ok) return;
      const int d = int((key >> lo) & dmask);
      if (d != run_d) {
        flush();
        run_d = d;
        run_n = 0;
        run_m = 0;
      }
      ++run_n;
      run_m += w;
      run_key = key;
    };
    if (source == kGathered) {
      for (unsigned base = warp * 32; base < n_cand; base += blockDim.x) {
        const unsigned i = base + lane;
        const uint64_t key = i < n_cand ? sh.cand_key[i] : 0;
        add(key, i < n_cand ? sh.cand_w[i] : 0, i < n_cand && (key >> hi) == (prefix >> hi));
      }
    } else {
      const bool gather = source == kRowGather;
      double* zp = hi == r.key_bits ? z : nullptr;
      for_each_logit(r.l, r.V, [&](float x, int64_t j, bool ok) {
        const uint64_t key = r.key(x, j);
        ok = ok && key <= cut && (key >> hi) == (prefix >> hi);
        uint64_t w = 0;
        if (ok) {
          const float e = r.e(x);
          if (zp) *zp += e;
          w = r.weight(e);
          if (gather) {  // the scan counted these tokens: they fit
            const unsigned slot = atomicAdd(&sh.n_cand, 1u);
            sh.cand_key[slot] = key;
            sh.cand_w[slot] = w;
          }
        }
        add(key, w, ok);
      });
    }
    flush();
    __syncthreads();
    // Warp 0 finds the crossing bucket: a scan over lanes of 8 buckets each, then the first
    // lane whose end crosses walks its own buckets (totals only grow along the order).
    if (warp == 0) {
      uint64_t lc = 0, lm = 0;
      for (int i = 0; i < 8; ++i) {
        lc += sh.count(lane * 8 + i);
        lm += sh.mass(lane * 8 + i);
      }
      unsigned long long sc = lc, sm = lm;
      for (int o = 1; o < 32; o <<= 1) {
        const unsigned long long a = __shfl_up_sync(kFull, sc, o), b = __shfl_up_sync(kFull, sm, o);
        if (lane >= o) {
          sc += a;
          sm += b;
        }
      }
      if (hi == r.key_bits) goal = g.value(__shfl_sync(kFull, sm, 31));  // the first pass saw every token
      const uint64_t end = g.by_mass() ? bm + sm : bc + sc;
      const unsigned ballot = __ballot_sync(kFull, g.crosses(end, goal));
      if (ballot == 0) {
        if (lane == 0) sh.state = 2;
      } else if (lane == __ffs(ballot) - 1) {
        uint64_t c0 = bc + sc - lc, m0 = bm + sm - lm;
        int d = lane * 8;
        for (int i = 0; i < 8; ++i, ++d) {
          const uint64_t nc = c0 + sh.count(d), nm = m0 + sh.mass(d);
          if (g.crosses(g.by_mass() ? nm : nc, goal)) break;
          c0 = nc;
          m0 = nm;
        }
        // The crossing bucket holds >= 1 token; one token (always so at the last digit,
        // keys being unique) is the answer.
        const uint64_t n = sh.count(d);
        if (n == 1 || lo == 0) {
          sh.state = 1;
          sh.pick = Pick{sh.key[d], true};
        } else {
          sh.state = 0;
          sh.prefix = prefix | (uint64_t(d) << lo);
          sh.bc = c0;
          sh.bm = m0;
          sh.n_next = n;
          // A gathering pass comes next: reset its slot counter now (no one reads it before
          // the next barrier, and all have read the last value behind the previous one).
          if (source == kRow && n <= kCandidates) sh.n_cand = 0;
        }
      }
    }
    __syncthreads();
    // Everyone reads the verdict before the next pass (or select) can overwrite it: the
    // scanning lane writes again only after two more barriers.
    const int state = sh.state;
    if (state == 1) return sh.pick;
    if (state == 2) return Pick{0, false};
    prefix = sh.prefix;
    bc = sh.bc;
    bm = sh.bm;
    if (source == kRowGather) {
      source = kGathered;
      n_cand = sh.n_cand;
    } else if (source == kRow && sh.n_next <= kCandidates) {
      source = kRowGather;
    }
  }
  return Pick{0, false};  // not reached: the last digit always ends the search
}

// Block reductions with a fixed tree (deterministic); every thread gets the result.
template <class V, class Op>
__device__ V block_reduce(V v, Op op, V* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(kFull, v, o));
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  V r = scratch[0];
  for (int w = 1; w < nwarps; ++w) r = op(r, scratch[w]);
  return r;
}
struct Sum {
  template <class V>
  __device__ V operator()(V a, V b) const { return a + b; }
};
struct Min {
  template <class V>
  __device__ V operator()(V a, V b) const { return a < b ? a : b; }
};
struct Max {
  template <class V>
  __device__ V operator()(V a, V b) const { return a > b ? a : b; }
};

template <class T>
__global__ __launch_bounds__(kThreads) void sample_kernel(int32_t* tokens, float* logprobs, const T* logits, int64_t V,
                                                          int idbits, const SamplingParams* params) {
  __shared__ SelectShared sh;
  __shared__ unsigned long long red_u[32];
  __shared__ double red_d[32];
  const int64_t b = blockIdx.x;
  const SamplingParams p = params[b];
  Row<T> r{logits + b * V, V, idbits, 32 + idbits, 0.0f, p.temperature, exp2f(float(63 - idbits))};

  // The first token of the order: the greedy token, and the max logit.
  uint64_t kmin = ~0ull;
  for_each_logit(r.l, V, [&](float x, int64_t j, bool ok) {
    const uint64_t k = r.key(x, j);
    if (ok && k < kmin) kmin = k;
  });
  kmin = block_reduce<unsigned long long>(kmin, Min{}, red_u);
  const int32_t first = r.id(kmin);
  const float l_first = ld(r.l + first);

  if (p.temperature == 0.0f) {  // greedy: log-prob under softmax(logits)
    double z = 0.0;
    for_each_logit(r.l, V, [&](float x, int64_t, bool ok) { z += ok ? expf(x - l_first) : 0.0f; });
    z = block_reduce(z, Sum{}, red_d);
    if (threadIdx.x == 0) {
      tokens[b] = first;
      logprobs[b] = float(-log(z));
    }
    return;
  }
  r.m = isnan(l_first) ? -INFINITY : l_first;

  // The kept set is always the prefix of keys <= cut. The row's first full pass after this
  // point also sums e for the log-prob (z, per thread, reduced at the end).
  double z = 0.0;
  double* z_pending = &z;
  uint64_t cut = ~0ull;
  if (p.top_k > 0 && p.top_k < V) {
    const Pick k = select_first(r, cut, Goal{Goal::count_k, uint64_t(p.top_k), 0.0f, 0}, sh, z_pending);
    z_pending = nullptr;
    cut = k.key;  // always found: the row has more than top_k tokens
  }
  if (p.top_p < 1.0f) {
    const Pick k = select_first(r, cut, Goal{Goal::mass_p, 0, p.top_p, 0}, sh, z_pending);
    z_pending = nullptr;
    cut = k.found ? k.key : kmin;  // not found: a row without mass (all NaN or -inf)
  }
  if (p.min_p > 0.0f) {  // tokens with e >= min_p: a prefix, since e falls along the order
    uint64_t last = 0;
    for_each_logit(r.l, V, [&](float x, int64_t j, bool ok) {
      if (!ok) return;
      const float e = r.e(x);
      if (z_pending) *z_pending += e;
      const uint64_t k = r.key(x, j);
      if (k <= cut && k > last && e >= p.min_p) last = k;
    });
    z_pending = nullptr;
    cut = block_reduce<unsigned long long>(last, Max{}, red_u);  // 0 (none): keys are never 0
  }

  // The draw: the first kept token whose running mass exceeds u * (kept mass).
  const uint64_t u24 = philox_block(p.seed, p.stream, p.offset)[0] >> 8;
  const Pick k = select_first(r, cut, Goal{Goal::draw, 0, 0.0f, u24}, sh, z_pending);
  const int32_t token = k.found ? r.id(k.key) : first;  // not found: no kept mass
  z = block_reduce(z, Sum{}, red_d);
  if (threadIdx.x == 0) {
    tokens[b] = token;
    logprobs[b] = float((double(ld(r.l + token)) - double(r.m)) / double(r.temp) - log(z));
  }
}

}  // namespace

void CudaOps::sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) {
  const char* op = "sample";
  checks::sample(tokens, logprobs, logits, params, logits.dtype == DType::bf16 ? DType::bf16 : DType::f32,
                 Device::cuda);
  const int64_t B = logits.shape[0], V = logits.shape[1];
  if (B == 0) return;
  int idbits = 0;
  while (idbits < 31 && (int64_t(1) << idbits) < V) ++idbits;  // ids in [0, 2^idbits)

  // The parameters travel with the call. From pageable memory (the usual std::vector) the
  // copy returns once the data is staged, so the caller may reuse its buffer at once.
  auto* dev_params = static_cast<SamplingParams*>(workspace(size_t(B) * sizeof(SamplingParams)));
  GRPO_CUDA_CHECK(cudaMemcpyAsync(dev_params, params.data(), size_t(B) * sizeof(SamplingParams),
                                  cudaMemcpyHostToDevice, stream_));
  GRPO_DISPATCH_FLOAT(logits.dtype, op, T, {
    sample_kernel<T><<<unsigned(B), kThreads, 0, stream_>>>(tokens.ptr<int32_t>(), logprobs.ptr<float>(),
                                                            cuda::dptr<const T>(logits), V, idbits, dev_params);
  });
  GRPO_LAUNCH_CHECK(op);
}

}  // namespace grpo
