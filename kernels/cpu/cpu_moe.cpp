// MoE routing and token movement on the CPU: router (softmax or sigmoid scores, top-k,
// optional renormalisation and scaling, routing replay), the counting-sort alignment of
// (token, slot) pairs by expert, and the permute / unpermute gathers with their backwards.
// The grouped GEMM between permute and unpermute lives in cpu_matmul.cpp.
//
// Router semantics follow Hugging Face transformers:
//   softmax (Qwen2/3-MoE, Mixtral, OLMoE): s = softmax(logits) over all E experts, top-k by
//     s, w = s[chosen] (/ sum over the k chosen if normalize_topk) * scaling. Mixtral's
//     softmax over the top-k logits is the same as softmax-all then renormalise.
//   sigmoid (DeepSeek-V3): s = sigmoid(logits), top-k by s + selection_bias, w = the raw s of
//     the chosen experts (normalised likewise) * scaling.
// Group-limited routing (n_group / topk_group) is not supported.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/checks_moe.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {
namespace {

constexpr Device kCpu = Device::cpu;
// Added to the sum of the chosen scores before renormalising, as DeepSeek-V3 does, so rows
// whose chosen scores all underflow give 0 rather than NaN. Negligible for any other row.
constexpr double kNormEps = 1e-20;

// Selection key: NaN ranks below everything so the order stays total (the row's weights
// are NaN anyway and propagate).
inline float sel_key(float v) { return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v; }

}  // namespace

void CpuOps::moe_router(Tensor topk_weights, Tensor topk_ids, Tensor scores, Tensor logits, const RouterParams& p,
                        bool replay) {
  GRPO_CPU_RECORD(moe_router(topk_weights, topk_ids, scores, logits, p, replay));
  const int64_t E = checks::moe_router(topk_weights, topk_ids, scores, logits, p, kCpu);
  // Every id is checked before any output is written, so a bad id leaves outputs untouched.
  if (replay) checks::moe_ids("moe_router", topk_ids, topk_ids.ptr<int32_t>(), E, /*unique=*/true);

  const int64_t T = logits.shape[0], K = p.top_k;
  const float* lg = logits.ptr<float>();
  const float* bias = p.selection_bias.defined() ? p.selection_bias.ptr<float>() : nullptr;
  float* sc = scores.ptr<float>();
  float* w = topk_weights.ptr<float>();
  int32_t* ids = topk_ids.ptr<int32_t>();
  const bool softmax = p.score == RouterScore::softmax;
  const float scaling = p.scaling;
  const bool normalize = p.normalize_topk;

#pragma omp parallel if (T * E > 4096)
  {
    std::vector<int32_t> order(replay ? 0 : size_t(E));
    std::vector<float> key(replay ? 0 : size_t(E));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* l = lg + t * E;
      float* s = sc + t * E;
      if (softmax) {
        float m = -std::numeric_limits<float>::infinity();
        for (int64_t e = 0; e < E; ++e) m = std::max(m, l[e]);
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) {
          s[e] = std::exp(l[e] - m);
          sum += s[e];
        }
        const float inv = float(1.0 / sum);
        for (int64_t e = 0; e < E; ++e) s[e] *= inv;
      } else {
        for (int64_t e = 0; e < E; ++e) s[e] = 1.0f / (1.0f + std::exp(-l[e]));
      }

      int32_t* id = ids + t * K;
      if (!replay) {
        // Descending by score (+ bias), ties to the lower expert id: a strict total order,
        // so partial_sort's result is unique.
        for (int64_t e = 0; e < E; ++e) {
          order[e] = int32_t(e);
          key[e] = sel_key(bias ? s[e] + bias[e] : s[e]);
        }
        std::partial_sort(order.begin(), order.begin() + K, order.end(),
                          [&](int32_t a, int32_t b) { return key[a] > key[b] || (key[a] == key[b] && a < b); });
        for (int64_t k = 0; k < K; ++k) id[k] = order[k];
      }

      float* wr = w + t * K;
      float mult = scaling;
      if (normalize) {
        double sum = 0.0;
        for (int64_t k = 0; k < K; ++k) sum += s[id[k]];
        mult = float(double(scaling) / (sum + kNormEps));
      }
      for (int64_t k = 0; k < K; ++k) wr[k] = s[id[k]] * mult;
    }
  }
}

void CpuOps::moe_router_backward(Tensor dlogits, Tensor dtopk_weights, Tensor scores, Tensor topk_ids,
                                 const RouterParams& p) {
  GRPO_CPU_RECORD(moe_router_backward(dlogits, dtopk_weights, scores, topk_ids, p));
  const int64_t E = checks::moe_router_backward(dlogits, dtopk_weights, scores, topk_ids, p, kCpu);
  checks::moe_ids("moe_router_backward", topk_ids, topk_ids.ptr<int32_t>(), E, /*unique=*/true);

  const int64_t T = scores.shape[0], K = p.top_k;
  const float* sc = scores.ptr<float>();
  const float* dw = dtopk_weights.ptr<float>();
  const int32_t* ids = topk_ids.ptr<int32_t>();
  float* dl = dlogits.ptr<float>();
  const bool softmax = p.score == RouterScore::softmax;
  const double scaling = p.scaling;
  const bool normalize = p.normalize_topk;

#pragma omp parallel if (T * E > 4096)
  {
    std::vector<double> dr(static_cast<size_t>(K));  // dL / d(chosen raw score), per slot
#pragma omp for schedule(static)
    for (int64_t t = 0; t < T; ++t) {
      const float* s = sc + t * E;
      const int32_t* id = ids + t * K;
      const float* g = dw + t * K;
      float* d = dl + t * E;
      // w_k = scaling * r_k / S with S = sum_j r_k + eps (or w_k = scaling * r_k):
      // dL/dr_j = (g_j - sum_k g_k r_k / S) / S with g = scaling * dw.
      if (normalize) {
        double S = kNormEps, gr = 0.0;
        for (int64_t k = 0; k < K; ++k) {
          S += s[id[k]];
          gr += double(g[k]) * s[id[k]];
        }
        const double c = scaling * gr / S;
        for (int64_t k = 0; k < K; ++k) dr[k] = (scaling * g[k] - c) / S;
      } else {
        for (int64_t k = 0; k < K; ++k) dr[k] = scaling * g[k];
      }
      if (softmax) {
        // dlogit_e = s_e * (ds_e - sum_j s_j ds_j); ds is dr on the chosen experts, 0 elsewhere.
        double dot = 0.0;
        for (int64_t k = 0; k < K; ++k) dot += double(s[id[k]]) * dr[k];
        for (int64_t e = 0; e < E; ++e) d[e] = float(-double(s[e]) * dot);
        for (int64_t k = 0; k < K; ++k) d[id[k]] = float(double(s[id[k]]) * (dr[k] - dot));
      } else {
        // sigmoid' = s (1 - s); only the chosen experts' scores reach the weights.
        for (int64_t e = 0; e < E; ++e) d[e] = 0.0f;
        for (int64_t k = 0; k < K; ++k) {
          const double se = s[id[k]];
          d[id[k]] = float(dr[k] * se * (1.0 - se));
        }
      }
    }
  }
}

void CpuOps::moe_align(Tensor expert_offsets, Tensor src_token, Tensor dest_row, Tensor topk_ids, int64_t num_experts) {
  GRPO_CPU_RECORD(moe_align(expert_offsets, src_token, dest_row, topk_ids, num_experts));
  checks::moe_align(expert_offsets, src_token, dest_row, topk_ids, num_experts, kCpu);
  const int64_t T = topk_ids.shape[0], K = topk_ids.shape[1], E = num_experts;
  checks::moe_ids("moe_align", topk_ids, topk_ids.ptr<int32_t>(), E, /*unique=*/false);

  // Counting sort, serial: O(T*K + E) integer work, negligible next to the expert GEMMs,
  // and trivially stable in (token, slot) order.
  const int32_t* ids = topk_ids.ptr<int32_t>();
  int32_t* off = expert_offsets.ptr<int32_t>();
  int32_t* src = src_token.ptr<int32_t>();
  int32_t* dst = dest_row.ptr<int32_t>();
  std::fill(off, off + E + 1, 0);
  for (int64_t i = 0; i < T * K; ++i) ++off[ids[i] + 1];
  for (int64_t e = 0; e < E; ++e) off[e + 1] += off[e];
  std::vector<int32_t> cursor(off, off + E);
  for (int64_t i = 0; i < T * K; ++i) {
    const int32_t row = cursor[ids[i]]++;
    dst[i] = row;
    src[row] = int32_t(i / K);
  }
}

void CpuOps::moe_permute(Tensor xp, Tensor x, Tensor src_token) {
  GRPO_CPU_RECORD(moe_permute(xp, x, src_token));
  checks::moe_permute(xp, x, src_token, DType::f32, kCpu);
  const int64_t T = x.shape[0], C = x.shape[1], R = src_token.shape[0];
  checks::moe_src_token("moe_permute", src_token, src_token.ptr<int32_t>(), T);

  const float* px = x.ptr<float>();
  const int32_t* src = src_token.ptr<int32_t>();
  float* pxp = xp.ptr<float>();
  if (C == 0) return;
#pragma omp parallel for schedule(static) if (R * C > (1 << 15))
  for (int64_t r = 0; r < R; ++r) std::memcpy(pxp + r * C, px + int64_t(src[r]) * C, size_t(C) * sizeof(float));
}

void CpuOps::moe_permute_backward(Tensor dx, Tensor dxp, Tensor src_token) {
  GRPO_CPU_RECORD(moe_permute_backward(dx, dxp, src_token));
  checks::moe_permute_backward(dx, dxp, src_token, DType::f32, kCpu);
  const int64_t T = dx.shape[0], C = dx.shape[1], R = src_token.shape[0];
  checks::moe_src_token("moe_permute_backward", src_token, src_token.ptr<int32_t>(), T);

  // Invert src_token into per-token row lists (CSR, rows ascending), then each token sums
  // its own rows: no two threads write the same dx row, and the sum order is fixed.
  const int32_t* src = src_token.ptr<int32_t>();
  std::vector<int64_t> start(size_t(T) + 1, 0);
  for (int64_t r = 0; r < R; ++r) ++start[src[r] + 1];
  for (int64_t t = 0; t < T; ++t) start[t + 1] += start[t];
  std::vector<int64_t> rows(static_cast<size_t>(R)), cursor(start.begin(), start.end() - 1);
  for (int64_t r = 0; r < R; ++r) rows[cursor[src[r]]++] = r;

  const float* g = dxp.ptr<float>();
  float* d = dx.ptr<float>();
#pragma omp parallel for schedule(static) if ((T + R) * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    float* dt = d + t * C;
    std::fill(dt, dt + C, 0.0f);
    for (int64_t j = start[t]; j < start[t + 1]; ++j) {
      const float* gr = g + rows[j] * C;
      for (int64_t c = 0; c < C; ++c) dt[c] += gr[c];
    }
  }
}

void CpuOps::moe_unpermute(Tensor out, Tensor yp, Tensor dest_row, Tensor topk_weights) {
  GRPO_CPU_RECORD(moe_unpermute(out, yp, dest_row, topk_weights));
  checks::moe_unpermute(out, yp, dest_row, topk_weights, DType::f32, kCpu);
  checks::moe_dest_row("moe_unpermute", dest_row, dest_row.ptr<int32_t>());
  const int64_t T = out.shape[0], C = out.shape[1], K = topk_weights.shape[1];
  const float* y = yp.ptr<float>();
  const float* w = topk_weights.ptr<float>();
  const int32_t* dst = dest_row.ptr<int32_t>();
  float* o = out.ptr<float>();
#pragma omp parallel for schedule(static) if (T * K * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    float* ot = o + t * C;
    std::fill(ot, ot + C, 0.0f);
    for (int64_t k = 0; k < K; ++k) {
      const float wk = w[t * K + k];
      const float* yr = y + int64_t(dst[t * K + k]) * C;
      for (int64_t c = 0; c < C; ++c) ot[c] += wk * yr[c];
    }
  }
}

void CpuOps::moe_unpermute_backward(Tensor dyp, Tensor dtopk_weights, Tensor dout, Tensor yp, Tensor dest_row,
                                    Tensor topk_weights) {
  GRPO_CPU_RECORD(moe_unpermute_backward(dyp, dtopk_weights, dout, yp, dest_row, topk_weights));
  checks::moe_unpermute_backward(dyp, dtopk_weights, dout, yp, dest_row, topk_weights, DType::f32, kCpu);
  checks::moe_dest_row("moe_unpermute_backward", dest_row, dest_row.ptr<int32_t>());
  const int64_t T = dout.shape[0], C = dout.shape[1], K = topk_weights.shape[1];
  const float* g = dout.ptr<float>();
  const float* y = yp.ptr<float>();
  const float* w = topk_weights.ptr<float>();
  const int32_t* dst = dest_row.ptr<int32_t>();
  float* dy = dyp.ptr<float>();
  float* dw = dtopk_weights.ptr<float>();
  // dest_row is a permutation, so each dyp row belongs to exactly one (t, k): no races.
#pragma omp parallel for schedule(static) if (T * K * C > (1 << 15))
  for (int64_t t = 0; t < T; ++t) {
    const float* gt = g + t * C;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t row = dst[t * K + k];
      const float wk = w[t * K + k];
      const float* yr = y + row * C;
      float* dyr = dy + row * C;
      double dot = 0.0;
      for (int64_t c = 0; c < C; ++c) {
        dyr[c] = wk * gt[c];
        dot += double(gt[c]) * yr[c];
      }
      dw[t * K + k] = float(dot);
    }
  }
}

}  // namespace grpo
