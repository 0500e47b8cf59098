// Fused LM head: log-prob of the target token and entropy of softmax(hidden @ w^T * inv_temp),
// forward and backward, without ever holding the [T, V] logits.
//
// The logits are produced one tile of kTokenTile tokens x kVocabTile vocabulary entries at a
// time by sgemm into a scratch tile. The vocabulary loop is the outer one, so every tile of w
// is read once per pass (w is usually the largest operand) and, in the backward, the rows of
// dw it feeds stay hot across the token tiles.
//
// Forward keeps, for every token, an online softmax state over the vocabulary tiles seen so
// far, relative to the running max M:
//   S = sum_j exp(z_j - M),   A = sum_j exp(z_j - M) * (z_j - M)
// so that lse = M + log S and entropy = -sum p log p = log S - A / S, with no cancellation
// between large numbers. When a tile raises the max from M to M', the old state rescales by
// r = exp(M - M'):  S <- r S,  A <- r (A + (M - M') S).
//
// Backward recomputes each logit tile from the saved lse (p_j = exp(z_j - lse)) and turns it
// into dz_j = dlogprob (1[j == target] - p_j) - dentropy p_j (log p_j + H) in place; the chain
// into the raw logits (z = inv_temp * raw) is the sgemm alpha.
//
// NOTES: sgemm is never called inside an OpenMP region (OpenBLAS runs its own threads); only
// the elementwise tile loops are OpenMP-parallel, over the tile's tokens.
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "kernels/checks_lm_head.h"

namespace grpo {
namespace {

constexpr int64_t kTokenTile = 64;
constexpr int64_t kVocabTile = 4096;
// Below this many tile elements the OpenMP fork costs more than it saves.
constexpr int64_t kParallelTileElems = 8192;

// tile [nt, nv] (row stride nv) = alpha * hidden[t0 : t0+nt] @ w[v0 : v0+nv]^T
void logits_tile(float* tile, const float* hidden, const float* w, int64_t t0, int64_t nt, int64_t v0, int64_t nv,
                 int64_t C, float alpha) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(nt), int(nv), int(C), alpha, hidden + t0 * C, int(C),
              w + v0 * C, int(C), 0.0f, tile, int(nv));
}

}  // namespace

void CpuOps::lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w, Tensor targets,
                             float inv_temperature) {
  GRPO_CPU_RECORD(lm_head_logprob(logprob, entropy, lse, hidden, w, targets, inv_temperature));
  const char* op = "lm_head_logprob";
  const checks::LmHeadShape s =
      checks::lm_head_inputs(op, Device::cpu, {DType::f32}, hidden, w, targets, inv_temperature);
  checks::lm_head_outputs(op, Device::cpu, s, logprob, entropy, lse);
  const int64_t T = s.T, C = s.C, V = s.V;
  if (T == 0) return;

  const float* h = hidden.ptr<float>();
  const float* wp = w.ptr<float>();
  const int32_t* tg = targets.ptr<int32_t>();

  // Online softmax state per token (double: it sums up to V rescaled tile sums).
  std::vector<double> run_max(size_t(T), -std::numeric_limits<double>::infinity());
  std::vector<double> run_sum(size_t(T), 0.0);   // S
  std::vector<double> run_dsum(size_t(T), 0.0);  // A
  std::vector<float> target_logit(size_t(T), 0.0f);
  std::vector<float> tile(size_t(std::min(T, kTokenTile) * std::min(V, kVocabTile)));

  for (int64_t v0 = 0; v0 < V; v0 += kVocabTile) {
    const int64_t nv = std::min(kVocabTile, V - v0);
    for (int64_t t0 = 0; t0 < T; t0 += kTokenTile) {
      const int64_t nt = std::min(kTokenTile, T - t0);
      logits_tile(tile.data(), h, wp, t0, nt, v0, nv, C, inv_temperature);
#pragma omp parallel for schedule(static) if (nt * nv >= kParallelTileElems)
      for (int64_t i = 0; i < nt; ++i) {
        const float* z = tile.data() + i * nv;
        const int64_t t = t0 + i;
        float mx = z[0];
        for (int64_t j = 1; j < nv; ++j) mx = std::max(mx, z[j]);
        double ts = 0.0, td = 0.0;  // this tile's S and A relative to its own max
        for (int64_t j = 0; j < nv; ++j) {
          const float d = z[j] - mx;
          const float e = std::exp(d);
          ts += e;
          td += double(e) * d;
        }
        const int64_t local = int64_t(tg[t]) - v0;
        if (local >= 0 && local < nv) target_logit[size_t(t)] = z[local];
        // Merge (mx, ts, td) into the running (M, S, A), rescaling whichever has the lower max.
        const double M = run_max[size_t(t)];
        if (run_sum[size_t(t)] == 0.0) {
          run_max[size_t(t)] = mx;
          run_sum[size_t(t)] = ts;
          run_dsum[size_t(t)] = td;
        } else if (mx > M) {
          const double shift = M - mx, r = std::exp(shift);
          run_dsum[size_t(t)] = r * (run_dsum[size_t(t)] + shift * run_sum[size_t(t)]) + td;
          run_sum[size_t(t)] = r * run_sum[size_t(t)] + ts;
          run_max[size_t(t)] = mx;
        } else {
          const double shift = double(mx) - M, r = std::exp(shift);
          run_dsum[size_t(t)] += r * (td + shift * ts);
          run_sum[size_t(t)] += r * ts;
        }
      }
    }
  }

  float* lp = logprob.ptr<float>();
  float* ls = lse.ptr<float>();
  float* ent = entropy.defined() ? entropy.ptr<float>() : nullptr;
  for (int64_t t = 0; t < T; ++t) {
    const double S = run_sum[size_t(t)];
    const double log_s = std::log(S);
    const double l = run_max[size_t(t)] + log_s;
    ls[t] = float(l);
    lp[t] = float(double(target_logit[size_t(t)]) - l);
    if (ent) ent[t] = float(log_s - run_dsum[size_t(t)] / S);
  }
}

void CpuOps::lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy, Tensor hidden,
                                      Tensor w, Tensor targets, Tensor lse, Tensor entropy, float inv_temperature) {
  GRPO_CPU_RECORD(lm_head_logprob_backward(dhidden, dw, dlogprob, dentropy, hidden, w, targets, lse, entropy, inv_temperature));
  const char* op = "lm_head_logprob_backward";
  const checks::LmHeadShape s =
      checks::lm_head_inputs(op, Device::cpu, {DType::f32}, hidden, w, targets, inv_temperature);
  checks::lm_head_backward_args(op, Device::cpu, s, dhidden, dw, dlogprob, dentropy, lse, entropy);
  const int64_t T = s.T, C = s.C, V = s.V;
  if (!dhidden.defined() && !dw.defined()) return;

  const float* h = hidden.ptr<float>();
  const float* wp = w.ptr<float>();
  const int32_t* tg = targets.ptr<int32_t>();
  const float* g_lp = dlogprob.ptr<float>();
  const float* g_ent = dentropy.defined() ? dentropy.ptr<float>() : nullptr;
  const float* ent = g_ent ? entropy.ptr<float>() : nullptr;
  const float* ls = lse.ptr<float>();
  float* dh = dhidden.defined() ? dhidden.ptr<float>() : nullptr;
  float* dwp = dw.defined() ? dw.ptr<float>() : nullptr;

  // dhidden is assigned: zero it once, then every vocabulary tile adds its share.
  if (dh) std::fill(dh, dh + T * C, 0.0f);
  if (T == 0) return;
  std::vector<float> tile(size_t(std::min(T, kTokenTile) * std::min(V, kVocabTile)));

  for (int64_t v0 = 0; v0 < V; v0 += kVocabTile) {
    const int64_t nv = std::min(kVocabTile, V - v0);
    for (int64_t t0 = 0; t0 < T; t0 += kTokenTile) {
      const int64_t nt = std::min(kTokenTile, T - t0);
      logits_tile(tile.data(), h, wp, t0, nt, v0, nv, C, inv_temperature);
      // The tile becomes dL/dz (z = the temperature-scaled logits) in place.
#pragma omp parallel for schedule(static) if (nt * nv >= kParallelTileElems)
      for (int64_t i = 0; i < nt; ++i) {
        float* z = tile.data() + i * nv;
        const int64_t t = t0 + i;
        const float l = ls[t], g = g_lp[t];
        const float ge = g_ent ? g_ent[t] : 0.0f;
        const float H = ent ? ent[t] : 0.0f;
        if (ge != 0.0f) {
          for (int64_t j = 0; j < nv; ++j) {
            const float logp = z[j] - l;
            const float p = std::exp(logp);
            z[j] = -p * (g + ge * (logp + H));
          }
        } else {
          for (int64_t j = 0; j < nv; ++j) z[j] = -g * std::exp(z[j] - l);
        }
        const int64_t local = int64_t(tg[t]) - v0;
        if (local >= 0 && local < nv) z[local] += g;
      }
      // dhidden[t0 : t0+nt] += inv_temp * dz @ w[v0 : v0+nv]
      if (dh)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(nt), int(C), int(nv), inv_temperature, tile.data(),
                    int(nv), wp + v0 * C, int(C), 1.0f, dh + t0 * C, int(C));
      // dw[v0 : v0+nv] += inv_temp * dz^T @ hidden[t0 : t0+nt]
      if (dwp)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nv), int(C), int(nt), inv_temperature, tile.data(),
                    int(nv), h + t0 * C, int(C), 1.0f, dwp + v0 * C, int(C));
    }
  }
}

}  // namespace grpo
