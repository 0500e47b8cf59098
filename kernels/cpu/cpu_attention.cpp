// Causal grouped-query attention on the CPU: packed variable-length sequences (learner
// forward and backward), the paged KV-cache write, and attention of new tokens against the
// paged cache (rollout prefill chunks and decode steps). f32 throughout, f32 accumulation.
//
// Varlen forward and backward work on blocks of kRows query rows of one head of one
// sequence. Each block's scores against the keys it can see go to a per-thread scratch of
// kRows x (longest sequence) floats: no [T, T] (or per-sequence [L, L]) matrix is ever formed.
// The products are register tiles (kRows rows x kW keys or head dims) written as plain loops
// the compiler vectorises; for the score tiles, k (and v in backward) are first transposed to
// [Hkv, D, T] so a tile reads kW consecutive keys.
//
// Backward (the FlashAttention-2 recurrence, P recomputed from the saved lse):
//   P_ij  = exp(scale * q_i.k_j - lse_i)              j <= i, same sequence
//   dP_ij = dO_i . v_j
//   dS_ij = P_ij * (dP_ij - D_i),   D_i = dO_i . O_i  (= sum_j P_ij dP_ij)
//   dq_i  = scale * sum_j dS_ij k_j
//   dk_j  = scale * sum_i dS_ij q_i   (over every query head of k's group)
//   dv_j  = sum_i P_ij dO_i           (likewise)
// Work items are (sequence, kv head): an item owns the dk/dv rows of its kv head in its
// sequence and the dq rows of the query heads of that group, so threads never write the
// same element (no atomics, no per-thread partial buffers, deterministic results).
//
// Paged attention (few new tokens against a long, scattered context) computes each query
// row alone with dot products straight from the cache blocks.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>

#include "core/error.h"
#include "kernels/checks_attention.h"
#include "kernels/checks_paged.h"
#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"

namespace grpo {
namespace {

constexpr Device kCpu = Device::cpu;

// Work (multiply-adds) below which a loop runs on the calling thread only.
constexpr int64_t kParallelWork = int64_t(1) << 16;

inline float dot(const float* __restrict a, const float* __restrict b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d) s += a[d] * b[d];
  return s;
}

// y += a * x
inline void axpy(float* __restrict y, float a, const float* __restrict x, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d) y[d] += a * x[d];
}

// Sizes of one attention call, validated (kernels/checks_attention.h).
using Dims = checks::AttentionDims;

// For every token of a packed batch, the sequence it belongs to.
std::vector<int32_t> token_sequences(const int32_t* cu, int64_t S, int64_t T) {
  std::vector<int32_t> seq(size_t(T), 0);
  for (int64_t s = 0; s < S; ++s)
    for (int32_t t = cu[s]; t < cu[s + 1]; ++t) seq[size_t(t)] = int32_t(s);
  return seq;
}

int64_t longest(const int32_t* cu, int64_t S) {
  int64_t m = 0;
  for (int64_t s = 0; s < S; ++s) m = std::max<int64_t>(m, cu[s + 1] - cu[s]);
  return m;
}

// exp(x) for x clamped to [-87, 88], within a few ulp of std::exp, in plain arithmetic so
// that loops over it vectorise (std::exp does not without -ffast-math). 2^k from the
// exponent bits times a degree-7 Taylor polynomial of exp(r), |r| <= ln(2)/2 (truncation
// error < 5e-9 relative, below f32 rounding).
inline float fast_exp(float x) {
  x = std::min(std::max(x, -87.0f), 88.0f);
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const float t = x * 1.44269504088896341f + kRound;
  const float kf = t - kRound;
  const int32_t k = std::bit_cast<int32_t>(t) - std::bit_cast<int32_t>(kRound);
  const float r = (x - kf * 0.693145751953125f) - kf * 1.42860682030941723e-6f;  // ln 2 = hi + lo
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  return p * std::bit_cast<float>((k + 127) << 23);
}

// One query row against keys 0..n-1: out = softmax(scale * q.K^T) V. Key j's k (and v) row
// starts at k + key_offset(j) (and v + key_offset(j)). s is scratch for n floats; n >= 1.
template <class KeyOffset>
void attend_row(float* __restrict out, const float* __restrict q, const float* k, const float* v, int64_t n,
                const KeyOffset& key_offset, int64_t D, float scale, float* __restrict s) {
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < n; ++j) {
    s[j] = scale * dot(q, k + key_offset(j), D);
    mx = std::max(mx, s[j]);
  }
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    s[j] = fast_exp(s[j] - mx);
    sum += s[j];
  }
  std::fill(out, out + D, 0.0f);
  for (int64_t j = 0; j < n; ++j) axpy(out, s[j], v + key_offset(j), D);
  const float inv = 1.0f / sum;
#pragma omp simd
  for (int64_t d = 0; d < D; ++d) out[d] *= inv;
}

// ---- register tiles of the varlen kernels ------------------------------------------------

constexpr int64_t kRows = 4;  // query rows per block
constexpr int64_t kW = 16;    // keys or head dims per register tile

int64_t round_up(int64_t n, int64_t m) { return (n + m - 1) / m * m; }

// x [T, H, D] -> [H, D, ld] with ld >= T + kW and zero columns past T, so that a tile may read
// kW consecutive tokens starting anywhere before T.
std::vector<float> transpose_heads(const float* x, int64_t T, int64_t H, int64_t D, int64_t ld) {
  std::vector<float> xt(size_t(H * D * ld), 0.0f);
  float* p = xt.data();
  const int64_t n_tb = (T + kW - 1) / kW;
#pragma omp parallel for collapse(2) schedule(static) if (T * H * D > kParallelWork)
  for (int64_t h = 0; h < H; ++h)
    for (int64_t tb = 0; tb < n_tb; ++tb)
      for (int64_t e = 0; e < D; ++e)
        for (int64_t t = tb * kW; t < std::min(T, (tb + 1) * kW); ++t) p[(h * D + e) * ld + t] = x[(t * H + h) * D + e];
  return xt;
}

// Rows t0 .. t0+rows-1 of head h of x [T, H, D] into xb [kRows, D], zeros past `rows`.
void pack_rows(float* xb, const float* x, int64_t t0, int64_t rows, int64_t h, int64_t H, int64_t D) {
  for (int64_t a = 0; a < kRows; ++a) {
    if (a < rows) std::memcpy(xb + a * D, x + ((t0 + a) * H + h) * D, size_t(D) * sizeof(float));
    else std::fill_n(xb + a * D, D, 0.0f);
  }
}

// s[a][j] = xb[a] . yt[:, j] for a < kRows and j < round_up(n, kW) (s rows are ld_s apart).
// xb [kRows, D]; yt [D, ld]: column j is key j.
void tile_scores(float* __restrict s, int64_t ld_s, const float* __restrict xb, const float* __restrict yt,
                 int64_t ld, int64_t n, int64_t D) {
  for (int64_t j0 = 0; j0 < n; j0 += kW) {
    float acc[kRows][kW] = {};
    for (int64_t e = 0; e < D; ++e) {
      const float* y = yt + e * ld + j0;
      for (int64_t a = 0; a < kRows; ++a) {
        const float x = xb[a * D + e];
#pragma omp simd
        for (int64_t b = 0; b < kW; ++b) acc[a][b] += x * y[b];
      }
    }
    for (int64_t a = 0; a < kRows; ++a)
      for (int64_t b = 0; b < kW; ++b) s[a * ld_s + j0 + b] = acc[a][b];
  }
}

// ob[a] = sum_{j < n} w[a][j] * y_j for a < kRows, y_j = y + j * y_stride (D floats);
// ob [kRows, D], w rows ld_w apart.
void tile_weighted_sum(float* __restrict ob, const float* __restrict w, int64_t ld_w, const float* __restrict y,
                       int64_t y_stride, int64_t n, int64_t D) {
  int64_t e0 = 0;
  for (; e0 + kW <= D; e0 += kW) {
    float acc[kRows][kW] = {};
    for (int64_t j = 0; j < n; ++j) {
      const float* yj = y + j * y_stride + e0;
      for (int64_t a = 0; a < kRows; ++a) {
        const float wa = w[a * ld_w + j];
#pragma omp simd
        for (int64_t b = 0; b < kW; ++b) acc[a][b] += wa * yj[b];
      }
    }
    for (int64_t a = 0; a < kRows; ++a)
      for (int64_t b = 0; b < kW; ++b) ob[a * D + e0 + b] = acc[a][b];
  }
  if (e0 == D) return;
  // Head dimensions past the last full tile.
  for (int64_t a = 0; a < kRows; ++a) std::fill(ob + a * D + e0, ob + (a + 1) * D, 0.0f);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t a = 0; a < kRows; ++a) axpy(ob + a * D + e0, w[a * ld_w + j], y + j * y_stride + e0, D - e0);
}

// y_j += sum_a w[a][j] * xb[a] for j < n, y_j = y + j * y_stride (D floats); xb [kRows, D].
void tile_accumulate_t(float* y, int64_t y_stride, const float* __restrict w, int64_t ld_w,
                       const float* __restrict xb, int64_t n, int64_t D) {
  static_assert(kRows == 4, "tile_accumulate_t is written out for 4 rows");
  const float *x0 = xb, *x1 = xb + D, *x2 = xb + 2 * D, *x3 = xb + 3 * D;
  for (int64_t j = 0; j < n; ++j) {
    float* __restrict r = y + j * y_stride;
    const float w0 = w[j], w1 = w[ld_w + j], w2 = w[2 * ld_w + j], w3 = w[3 * ld_w + j];
#pragma omp simd
    for (int64_t e = 0; e < D; ++e) r[e] += w0 * x0[e] + w1 * x1[e] + w2 * x2[e] + w3 * x3[e];
  }
}

// Rows i0 .. i0+kRows-1 (fewer at the end) of sequence seq.
struct RowBlock {
  int32_t seq;
  int32_t i0;
};

// Every row block of every sequence, the most expensive (latest rows) first.
std::vector<RowBlock> row_blocks(const int32_t* cu, int64_t S) {
  std::vector<RowBlock> blocks;
  for (int64_t s = 0; s < S; ++s)
    for (int32_t i0 = 0; i0 < cu[s + 1] - cu[s]; i0 += int32_t(kRows)) blocks.push_back({int32_t(s), i0});
  std::stable_sort(blocks.begin(), blocks.end(), [](const RowBlock& a, const RowBlock& b) { return a.i0 > b.i0; });
  return blocks;
}

}  // namespace

void CpuOps::attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, float scale) {
  GRPO_CPU_RECORD(attention(out, lse, q, k, v, cu_seqlens, scale));
  const Dims d = checks::attention("attention", out, lse, q, k, v, cu_seqlens, DType::f32, kCpu);
  const int64_t S = cu_seqlens.shape[0] - 1;
  const int32_t* cu = cu_seqlens.ptr<int32_t>();
  const int64_t T = d.T, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = d.group();
  if (T == 0) return;
  const int64_t max_len = longest(cu, S), ls = round_up(max_len, kW), ld = T + kW;
  const std::vector<RowBlock> blocks = row_blocks(cu, S);
  const std::vector<float> kt = transpose_heads(k.ptr<float>(), T, Hkv, D, ld);

  const float* pq = q.ptr<float>();
  const float* pv = v.ptr<float>();
  float* po = out.ptr<float>();
  float* pl = lse.ptr<float>();
  const int64_t kv_stride = Hkv * D;
  // Items: (head, block), blocks innermost so that consecutive items share the head's keys.
  const int64_t n_blocks = int64_t(blocks.size()), n_items = n_blocks * Hq;
#pragma omp parallel if (T * Hq * max_len * D > kParallelWork)
  {
    std::vector<float> sb(size_t(kRows * ls)), qb(size_t(kRows * D)), ob(size_t(kRows * D));
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const RowBlock blk = blocks[size_t(it % n_blocks)];
      const int64_t h = it / n_blocks, g = h / G;
      const int64_t start = cu[blk.seq], i0 = blk.i0;
      const int64_t rows = std::min<int64_t>(kRows, cu[blk.seq + 1] - start - i0), n = i0 + rows;
      pack_rows(qb.data(), pq, start + i0, rows, h, Hq, D);
      tile_scores(sb.data(), ls, qb.data(), kt.data() + g * D * ld + start, ld, n, D);
      float inv_sum[kRows];
      for (int64_t a = 0; a < kRows; ++a) {
        float* sa = sb.data() + a * ls;
        const int64_t visible = a < rows ? i0 + a + 1 : 0;  // keys 0 .. i0 + a
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < visible; ++j) mx = std::max(mx, sa[j] *= scale);
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t j = 0; j < visible; ++j) {
          sa[j] = fast_exp(sa[j] - mx);
          sum += sa[j];
        }
        std::fill(sa + visible, sa + n, 0.0f);
        if (a < rows) {
          pl[(start + i0 + a) * Hq + h] = mx + std::log(sum);
          inv_sum[a] = 1.0f / sum;
        }
      }
      tile_weighted_sum(ob.data(), sb.data(), ls, pv + start * kv_stride + g * D, kv_stride, n, D);
      for (int64_t a = 0; a < rows; ++a) {
        float* dst = po + ((start + i0 + a) * Hq + h) * D;
        for (int64_t e = 0; e < D; ++e) dst[e] = ob[size_t(a * D + e)] * inv_sum[a];
      }
    }
  }
}

void CpuOps::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v,
                                Tensor out, Tensor lse, Tensor cu_seqlens, float scale) {
  GRPO_CPU_RECORD(attention_backward(dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens, scale));
  const Dims d = checks::attention_backward("attention_backward", dq, dk, dv, dout, q, k, v, out, lse, cu_seqlens,
                                            DType::f32, kCpu);
  const int64_t S = cu_seqlens.shape[0] - 1;
  const int32_t* cu = cu_seqlens.ptr<int32_t>();
  const int64_t T = d.T, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = d.group();
  if (T == 0) return;
  const int64_t max_len = longest(cu, S), ls = round_up(max_len, kW), ld = T + kW;

  const float* pq = q.ptr<float>();
  const float* pk = k.ptr<float>();
  const float* po = out.ptr<float>();
  const float* pdo = dout.ptr<float>();
  const float* pl = lse.ptr<float>();
  float* pdq = dq.ptr<float>();
  float* pdk = dk.ptr<float>();
  float* pdv = dv.ptr<float>();
  const std::vector<float> kt = transpose_heads(pk, T, Hkv, D, ld);
  const std::vector<float> vt = transpose_heads(v.ptr<float>(), T, Hkv, D, ld);

  // D_i = dO_i . O_i for every (token, query head).
  std::vector<float> delta(size_t(T * Hq));
#pragma omp parallel for schedule(static) if (T * Hq * D > kParallelWork)
  for (int64_t r = 0; r < T * Hq; ++r) delta[size_t(r)] = dot(pdo + r * D, po + r * D, D);

  // Items (sequence, kv head), longest sequences first so the dynamic schedule balances.
  std::vector<int64_t> items;
  for (int64_t s = 0; s < S; ++s)
    if (cu[s + 1] > cu[s])
      for (int64_t g = 0; g < Hkv; ++g) items.push_back(s * Hkv + g);
  std::stable_sort(items.begin(), items.end(), [&](int64_t a, int64_t b) {
    return cu[a / Hkv + 1] - cu[a / Hkv] > cu[b / Hkv + 1] - cu[b / Hkv];
  });
  const int64_t n_items = int64_t(items.size());
  const int64_t kv_stride = Hkv * D;

#pragma omp parallel if (n_items > 1 && T * Hq * max_len * D > kParallelWork)
  {
    std::vector<float> pb(size_t(kRows * ls)), dsb(size_t(kRows * ls));
    std::vector<float> qb(size_t(kRows * D)), dob(size_t(kRows * D)), dqb(size_t(kRows * D));
#pragma omp for schedule(dynamic, 1)
    for (int64_t it = 0; it < n_items; ++it) {
      const int64_t s = items[size_t(it)] / Hkv, g = items[size_t(it)] % Hkv;
      const int64_t start = cu[s], len = cu[s + 1] - cu[s];
      const int64_t kv0 = start * kv_stride + g * D;  // k/v row of (token start, head g)
      for (int64_t j = 0; j < len; ++j) {
        std::fill_n(pdk + kv0 + j * kv_stride, D, 0.0f);
        std::fill_n(pdv + kv0 + j * kv_stride, D, 0.0f);
      }
      for (int64_t h = g * G; h < (g + 1) * G; ++h) {
        for (int64_t i0 = 0; i0 < len; i0 += kRows) {
          const int64_t rows = std::min(kRows, len - i0), n = i0 + rows;
          pack_rows(qb.data(), pq, start + i0, rows, h, Hq, D);
          pack_rows(dob.data(), pdo, start + i0, rows, h, Hq, D);
          tile_scores(pb.data(), ls, qb.data(), kt.data() + g * D * ld + start, ld, n, D);
          tile_scores(dsb.data(), ls, dob.data(), vt.data() + g * D * ld + start, ld, n, D);
          for (int64_t a = 0; a < kRows; ++a) {
            float* pa = pb.data() + a * ls;   // scores -> P
            float* da = dsb.data() + a * ls;  // dP -> dS
            const int64_t visible = a < rows ? i0 + a + 1 : 0;
            const int64_t r = (start + i0 + a) * Hq + h;
            const float lse_a = a < rows ? pl[r] : 0.0f, delta_a = a < rows ? delta[size_t(r)] : 0.0f;
#pragma omp simd
            for (int64_t j = 0; j < visible; ++j) {
              pa[j] = fast_exp(scale * pa[j] - lse_a);
              da[j] = pa[j] * (da[j] - delta_a);
            }
            std::fill(pa + visible, pa + n, 0.0f);
            std::fill(da + visible, da + n, 0.0f);
          }
          tile_weighted_sum(dqb.data(), dsb.data(), ls, pk + kv0, kv_stride, n, D);
          for (int64_t a = 0; a < rows; ++a) {
            float* dst = pdq + ((start + i0 + a) * Hq + h) * D;
            for (int64_t e = 0; e < D; ++e) dst[e] = scale * dqb[size_t(a * D + e)];
          }
          for (float& x : qb) x *= scale;  // dk_j += scale * dS_ij q_i
          tile_accumulate_t(pdk + kv0, kv_stride, dsb.data(), ls, qb.data(), n, D);
          tile_accumulate_t(pdv + kv0, kv_stride, pb.data(), ls, dob.data(), n, D);
        }
      }
    }
  }
}

void CpuOps::kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) {
  GRPO_CPU_RECORD(kv_cache_write(k_cache, v_cache, k, v, slot_mapping));
  const checks::KvCacheWriteDims d = checks::kv_cache_write_args(k_cache, v_cache, k, v, slot_mapping, kCpu, {DType::f32});
  const int32_t* slots = slot_mapping.ptr<int32_t>();
  checks::kv_cache_write_data(k_cache, slots, d.T);
  const int64_t T = d.T, Hkv = d.Hkv, D = d.D;
  const float* pk = k.ptr<float>();
  const float* pv = v.ptr<float>();
  float* kc = k_cache.ptr<float>();
  float* vc = v_cache.ptr<float>();
  const int64_t row = Hkv * D;
#pragma omp parallel for schedule(static) if (T * row > kParallelWork)
  for (int64_t t = 0; t < T; ++t) {
    const int64_t slot = slots[t];
    if (slot < 0) continue;  // padding / token not cached
    std::memcpy(kc + slot * row, pk + t * row, size_t(row) * sizeof(float));
    std::memcpy(vc + slot * row, pv + t * row, size_t(row) * sizeof(float));
  }
}

void CpuOps::attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q,
                             Tensor seq_lens_k, Tensor block_table, float scale) {
  GRPO_CPU_RECORD(attention_paged(out, q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_table, scale));
  const checks::PagedAttentionDims d =
      checks::attention_paged_args(out, q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_table, kCpu, {DType::f32});
  const int64_t B = d.B, max_blocks = d.max_blocks, block_size = d.block_size;
  const int32_t* cu = cu_seqlens_q.ptr<int32_t>();
  const int32_t* ctx = seq_lens_k.ptr<int32_t>();
  const int32_t* table = block_table.ptr<int32_t>();
  const int64_t max_ctx = checks::attention_paged_data(d, cu, ctx, table, k_cache, block_table);
  const std::vector<int32_t> seq_of = token_sequences(cu, B, d.T);

  const float* pq = q.ptr<float>();
  const float* kc = k_cache.ptr<float>();
  const float* vc = v_cache.ptr<float>();
  float* po = out.ptr<float>();
  const int64_t T = d.T, Hq = d.Hq, Hkv = d.Hkv, D = d.D, G = d.group();
  const int64_t rows = T * Hq;
#pragma omp parallel if (rows * max_ctx * D > kParallelWork)
  {
    std::vector<float> scores(static_cast<size_t>(std::max<int64_t>(max_ctx, 1)));
#pragma omp for schedule(dynamic, 4)
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t h = r / T, t = r % T;
      const int64_t b = seq_of[size_t(t)];
      const int32_t* blocks = table + b * max_blocks;
      // Key j lives in block blocks[j / block_size] at offset j % block_size.
      const auto key_offset = [=](int64_t j) {
        return (int64_t(blocks[j / block_size]) * block_size + j % block_size) * Hkv * D;
      };
      const int64_t pos = ctx[b] - (cu[b + 1] - cu[b]) + (t - cu[b]);
      const int64_t qi = (t * Hq + h) * D;
      attend_row(po + qi, pq + qi, kc + (h / G) * D, vc + (h / G) * D, pos + 1, key_offset, D, scale,
                 scores.data());
    }
  }
}

}  // namespace grpo
