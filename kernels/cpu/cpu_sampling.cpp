// Token sampling: greedy, or temperature sampling with top-k, top-p and min-p filters, one
// row of logits per sequence, rows in parallel.
//
// The draw, exactly (the CUDA backend reproduces it):
//   1. m = max_j logits[j]; e_j = exp((logits[j] - m) / temperature) in f32, so the most
//      likely token has e = 1 exactly; p_j = e_j / sum e.
//   2. Candidate order: descending logit, ties by LOWER token id. Dividing by a positive
//      temperature keeps this order, so it is the descending-probability order, taken from
//      the raw logits so that rounding in exp cannot reorder tokens.
//   3. top_k > 0 (and < V): the candidates are the first top_k tokens of that order.
//   4. top_p < 1: keep the shortest prefix whose mass (f64 running sum of e in candidate
//      order) reaches top_p * (mass of the candidates); at least one token.
//   5. min_p > 0: drop tokens with e_j < min_p (i.e. p_j < min_p * p_max, since e_max = 1).
//      The kept tokens of steps 3-5 are always a prefix of the order.
//   6. u = uniform_from_u32(philox_block(seed, stream, offset)[0]); target = u * K, where K
//      is the f64 sum of e over the kept tokens. Walking the kept prefix in order with an f64
//      running sum c, the token is the first with target < c (a token with e == 0 is never
//      drawn; if rounding leaves target >= c at the end, the last kept token with e > 0).
//   7. logprob = (logits[tok] - m) / temperature - log(sum_j e_j) in f64: the unfiltered
//      temperature-scaled softmax.
// temperature == 0: the first maximum (lowest id on ties), logprob under softmax(logits).
// Steps 2-6 fix WHICH token a given u selects; a backend whose exp rounds differently can
// only disagree when u * K lies within that rounding (~1e-7 relative) of a CDF boundary.
//
// Sorting is lazy: the order is only materialised as far as the filters and the draw walk
// (nth_element then sort on a growing prefix), so a peaked distribution or a small top_k
// costs O(V), not O(V log V).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "core/rng.h"
#include "kernels/checks_sampling.h"
#include "kernels/cpu/cpu_ops.h"

namespace grpo {
namespace {

// Candidate order: descending logit, ties to the lower id. NaN logits sort last (a strict
// weak order even on bad input).
struct Descending {
  const float* logits;
  static float key(float x) { return std::isnan(x) ? -INFINITY : x; }
  bool operator()(int32_t a, int32_t b) const {
    const float x = key(logits[a]), y = key(logits[b]);
    return x > y || (x == y && a < b);
  }
};

// idx[0, n) with a sorted prefix idx[0, sorted): every element of the prefix comes before
// every element after it in the order.
class LazyOrder {
 public:
  LazyOrder(int32_t* idx, int64_t n, Descending cmp) : idx_(idx), n_(n), cmp_(cmp) {}

  // Extends the sorted prefix to at least k elements (k <= n), growing geometrically.
  void ensure(int64_t k) {
    if (k <= sorted_) return;
    const int64_t want = std::min(n_, std::max({k, 2 * sorted_, int64_t(64)}));
    if (want < n_) std::nth_element(idx_ + sorted_, idx_ + want, idx_ + n_, cmp_);
    std::sort(idx_ + sorted_, idx_ + want, cmp_);
    sorted_ = want;
  }
  // The i-th token of the order (sorting on demand).
  int32_t at(int64_t i) {
    ensure(i + 1);
    return idx_[i];
  }
  // Restricts the candidates to the first k of the order.
  void truncate(int64_t k) {
    ensure(k);
    n_ = k;
    sorted_ = std::min(sorted_, k);
  }
  int64_t size() const { return n_; }
  const int32_t* data() const { return idx_; }

 private:
  int32_t* idx_;
  int64_t n_;
  int64_t sorted_ = 0;
  Descending cmp_;
};

// Per-thread scratch: candidate ids and the unnormalised probabilities e_j.
struct RowScratch {
  std::vector<int32_t> idx;
  std::vector<float> e;
};

void sample_greedy(const float* l, int64_t V, int32_t* token, float* logprob) {
  int64_t best = 0;
  for (int64_t j = 1; j < V; ++j)
    if (Descending::key(l[j]) > Descending::key(l[best])) best = j;
  const float m = l[best];
  double z = 0.0;
  for (int64_t j = 0; j < V; ++j) z += std::exp(l[j] - m);
  *token = int32_t(best);
  *logprob = float(-std::log(z));
}

void sample_row(const float* l, int64_t V, const SamplingParams& p, RowScratch& s, int32_t* token,
                float* logprob) {
  if (p.temperature == 0.0f) {
    sample_greedy(l, V, token, logprob);
    return;
  }
  const float temp = p.temperature;
  float m = Descending::key(l[0]);
  for (int64_t j = 1; j < V; ++j) m = std::max(m, Descending::key(l[j]));
  s.e.resize(size_t(V));
  float* e = s.e.data();
  double z = 0.0;
  for (int64_t j = 0; j < V; ++j) {
    e[j] = std::isnan(l[j]) ? 0.0f : std::exp((l[j] - m) / temp);
    z += e[j];
  }
  s.idx.resize(size_t(V));
  std::iota(s.idx.begin(), s.idx.end(), 0);
  LazyOrder order(s.idx.data(), V, Descending{l});

  // top_k: the candidates become the first top_k of the order.
  double mass = z;
  if (p.top_k > 0 && p.top_k < V) {
    order.truncate(p.top_k);
    mass = 0.0;
    for (int64_t i = 0; i < p.top_k; ++i) mass += e[order.at(i)];
  }
  int64_t keep = order.size();
  double kept_mass = mass;
  // top_p: shortest prefix whose mass reaches top_p of the candidates' mass.
  const bool top_p_on = p.top_p < 1.0f;
  if (top_p_on) {
    const double goal = double(p.top_p) * mass;
    double c = 0.0;
    int64_t i = 0;
    while (i < keep) {
      c += e[order.at(i)];
      ++i;
      if (c >= goal) break;
    }
    keep = i;
    kept_mass = c;
  }
  // min_p: e_j >= min_p, a prefix of the order (e is non-increasing along it).
  if (p.min_p > 0.0f) {
    const float thr = p.min_p;
    if (top_p_on) {  // the prefix is already sorted: cut it where e first drops below thr
      int64_t i = 0;
      double c = 0.0;
      while (i < keep && e[order.at(i)] >= thr) c += e[order.at(i++)];
      keep = i;
      kept_mass = c;
    } else {  // count and sum without sorting
      int64_t n = 0;
      double c = 0.0;
      const int32_t* idx = order.data();
      for (int64_t i = 0; i < keep; ++i)
        if (e[idx[i]] >= thr) {
          ++n;
          c += e[idx[i]];
        }
      keep = n;
      kept_mass = c;
    }
  }

  // Inverse CDF over the kept prefix in order.
  const float u = uniform_from_u32(philox_block(p.seed, p.stream, p.offset)[0]);
  const double target = double(u) * kept_mass;
  double c = 0.0;
  int32_t chosen = -1, last_positive = order.at(0);
  for (int64_t i = 0; i < keep; ++i) {
    const int32_t j = order.at(i);
    if (e[j] > 0.0f) last_positive = j;
    c += e[j];
    if (target < c) {
      chosen = j;
      break;
    }
  }
  if (chosen < 0) chosen = last_positive;
  *token = chosen;
  *logprob = float((double(l[chosen]) - double(m)) / double(temp) - std::log(z));
}

}  // namespace

void CpuOps::sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) {
  GRPO_CPU_RECORD_SAMPLE(tokens, logprobs, logits, params);
  checks::sample(tokens, logprobs, logits, params, DType::f32, Device::cpu);
  const int64_t B = logits.shape[0], V = logits.shape[1];
  if (B == 0) return;

  const float* l = logits.ptr<float>();
  int32_t* tok = tokens.ptr<int32_t>();
  float* lp = logprobs.ptr<float>();
#pragma omp parallel if (B > 1)
  {
    RowScratch scratch;
#pragma omp for schedule(dynamic, 1)
    for (int64_t b = 0; b < B; ++b) sample_row(l + b * V, V, params[size_t(b)], scratch, tok + b, lp + b);
  }
}

}  // namespace grpo
