// Fused LM head (lm_head_logprob and its backward) against fp64 references written here:
// full [T, V] logits in double, central finite differences of L = sum(a*logprob + b*entropy),
// and the analytic fp64 gradient (itself checked against the finite differences).
//
// Sizes: V = 5003 is not a multiple of the kernel's vocabulary tile and spans two of them;
// T = 70 spans two token tiles; C = 37 is odd.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

constexpr int64_t kT = 70, kC = 37, kV = 5003;
constexpr float kInvTemp = 1.0f / 0.7f;

struct Problem {
  int64_t T, C, V;
  float inv_temp;
  HostF hidden, w;
  HostI targets;
  Problem(int64_t T_, int64_t C_, int64_t V_, float inv_temp_, uint64_t seed)
      : T(T_), C(C_), V(V_), inv_temp(inv_temp_), hidden({T_, C_}), w({V_, C_}), targets({T_}) {
    test::fill_normal(hidden.v, seed);
    // Logits with a spread of a few units: std ~ sqrt(C) * 0.5 * inv_temp.
    test::fill_normal(w.v, seed + 1, 0.5f);
    std::mt19937_64 rng(seed + 2);
    for (int64_t t = 0; t < T; ++t) targets[size_t(t)] = int32_t(rng() % uint64_t(V));
    // Targets on both sides of every vocabulary tile edge the kernel might use.
    const int32_t edges[] = {0, int32_t(V - 1), 4095, 4096, 4096, 2047, 2048};
    for (size_t i = 0; i < std::size(edges) && int64_t(i) < T; ++i)
      if (edges[i] < V) targets[i] = edges[i];
  }
};

// Gradient tolerance. The op's f32 logits are rounded to ~1e-6 of |z| (a C-term dot product,
// |z| up to ~10), which moves every recomputed p_j by ~1e-6 relative; each gradient element
// then sums V (dhidden) or T (dw) f32 products of O(1) terms that largely cancel, so an element
// carries ~1e-5 absolute error whatever its own size (measured: <= 1.7e-5 for dw accumulated
// twice, ~1e-6 relative L2). 1e-4 relative (L2 and per element) + 5e-5 absolute.
constexpr double kGradRel = 1e-4, kGradAbs = 5e-5;

// ---- fp64 reference ------------------------------------------------------------------------

// z[j] = inv_temp * sum_c h[t, c] * w[j, c]
void ref_logits_row(const std::vector<double>& h, const std::vector<double>& w, int64_t t, int64_t C, int64_t V,
                    double inv_temp, std::vector<double>& z) {
  z.assign(size_t(V), 0.0);
  for (int64_t j = 0; j < V; ++j) {
    double s = 0;
    for (int64_t c = 0; c < C; ++c) s += h[size_t(t * C + c)] * w[size_t(j * C + c)];
    z[size_t(j)] = s * inv_temp;
  }
}

struct RowStats {
  double lse, logprob, entropy;
};
RowStats ref_row_stats(const std::vector<double>& z, int32_t target) {
  const double m = *std::max_element(z.begin(), z.end());
  double s = 0;
  for (double x : z) s += std::exp(x - m);
  const double lse = m + std::log(s);
  double ent = 0;
  for (double x : z) {
    const double lp = x - lse;
    ent -= std::exp(lp) * lp;
  }
  return {lse, z[size_t(target)] - lse, ent};
}

struct RefForward {
  std::vector<double> logprob, entropy, lse;
};
RefForward ref_forward(const Problem& p) {
  const auto h = p.hidden.f64(), w = p.w.f64();
  RefForward r;
  std::vector<double> z;
  for (int64_t t = 0; t < p.T; ++t) {
    ref_logits_row(h, w, t, p.C, p.V, p.inv_temp, z);
    const RowStats s = ref_row_stats(z, p.targets[size_t(t)]);
    r.logprob.push_back(s.logprob);
    r.entropy.push_back(s.entropy);
    r.lse.push_back(s.lse);
  }
  return r;
}

// Analytic fp64 gradient of L = sum_t a[t] logprob[t] + b[t] entropy[t].
void ref_backward(const Problem& p, const std::vector<double>& a, const std::vector<double>& b,
                  std::vector<double>& dh, std::vector<double>& dw) {
  const auto h = p.hidden.f64(), w = p.w.f64();
  dh.assign(size_t(p.T * p.C), 0.0);
  dw.assign(size_t(p.V * p.C), 0.0);
  std::vector<double> z;
  for (int64_t t = 0; t < p.T; ++t) {
    ref_logits_row(h, w, t, p.C, p.V, p.inv_temp, z);
    const RowStats s = ref_row_stats(z, p.targets[size_t(t)]);
    for (int64_t j = 0; j < p.V; ++j) {
      const double lp = z[size_t(j)] - s.lse, pj = std::exp(lp);
      double g = -a[size_t(t)] * pj - b[size_t(t)] * pj * (lp + s.entropy);
      if (j == p.targets[size_t(t)]) g += a[size_t(t)];
      g *= p.inv_temp;
      for (int64_t c = 0; c < p.C; ++c) {
        dh[size_t(t * p.C + c)] += g * w[size_t(j * p.C + c)];
        dw[size_t(j * p.C + c)] += g * h[size_t(t * p.C + c)];
      }
    }
  }
}

// Central finite differences of L at selected coordinates. A hidden coordinate only moves
// its own token's term; a w coordinate (j, c) moves logit j of every token.
struct FdCheck {
  const Problem& p;
  std::vector<double> h, w, a, b;
  double step = 1e-5;

  double token_loss(const std::vector<double>& z, int64_t t) const {
    const RowStats s = ref_row_stats(z, p.targets[size_t(t)]);
    return a[size_t(t)] * s.logprob + b[size_t(t)] * s.entropy;
  }
  double d_hidden(int64_t t, int64_t c) {
    std::vector<double> z;
    double& x = h[size_t(t * p.C + c)];
    const double x0 = x;
    x = x0 + step;
    ref_logits_row(h, w, t, p.C, p.V, p.inv_temp, z);
    const double lp = token_loss(z, t);
    x = x0 - step;
    ref_logits_row(h, w, t, p.C, p.V, p.inv_temp, z);
    const double lm = token_loss(z, t);
    x = x0;
    return (lp - lm) / (2 * step);
  }
  double d_w(int64_t j, int64_t c, const std::vector<std::vector<double>>& logits) {
    double diff = 0;
    for (int64_t t = 0; t < p.T; ++t) {
      std::vector<double> z = logits[size_t(t)];
      double losses[2];
      for (int s = 0; s < 2; ++s) {
        double zj = 0;
        for (int64_t k = 0; k < p.C; ++k) {
          double wk = w[size_t(j * p.C + k)] + (k == c ? (s == 0 ? step : -step) : 0.0);
          zj += h[size_t(t * p.C + k)] * wk;
        }
        z[size_t(j)] = zj * p.inv_temp;
        losses[s] = token_loss(z, t);
      }
      diff += losses[0] - losses[1];
    }
    return diff / (2 * step);
  }
};

// Compares the op's gradients with finite differences at sampled coordinates: every feature
// of tokens on token-tile edges and of vocabulary rows on vocabulary-tile edges, plus random
// coordinates.
void expect_matches_fd(const Problem& p, const std::vector<double>& a, const std::vector<double>& b,
                       const HostF& dh, const HostF& dw, int n_random) {
  FdCheck fd{p, p.hidden.f64(), p.w.f64(), a, b};
  std::vector<std::vector<double>> logits(size_t(p.T));
  for (int64_t t = 0; t < p.T; ++t) ref_logits_row(fd.h, fd.w, t, p.C, p.V, p.inv_temp, logits[size_t(t)]);
  std::mt19937_64 rng(99);
  std::vector<std::pair<int64_t, int64_t>> hc, wc;
  for (int64_t t : {int64_t(0), int64_t(63), int64_t(64), p.T - 1})
    for (int64_t c = 0; c < p.C; ++c) hc.push_back({std::min(t, p.T - 1), c});
  for (int64_t j : {int64_t(0), int64_t(4096), p.V - 1})
    for (int64_t c = 0; c < p.C; ++c) wc.push_back({std::min(j, p.V - 1), c});
  for (int i = 0; i < n_random; ++i) {
    hc.push_back({int64_t(rng() % uint64_t(p.T)), int64_t(rng() % uint64_t(p.C))});
    wc.push_back({int64_t(rng() % uint64_t(p.V)), int64_t(rng() % uint64_t(p.C))});
  }
  // Tolerance (kGradRel, kGradAbs): the fp64 finite differences are accurate to ~1e-9.
  std::vector<float> got;
  std::vector<double> want;
  for (auto [t, c] : hc) {
    got.push_back(dh[size_t(t * p.C + c)]);
    want.push_back(fd.d_hidden(t, c));
  }
  EXPECT_TRUE(test::close("dhidden vs finite differences", got, want, kGradRel, kGradAbs));
  got.clear();
  want.clear();
  for (auto [j, c] : wc) {
    got.push_back(dw[size_t(j * p.C + c)]);
    want.push_back(fd.d_w(j, c, logits));
  }
  EXPECT_TRUE(test::close("dw vs finite differences", got, want, kGradRel, kGradAbs));
}

// ---- tests ---------------------------------------------------------------------------------

TEST(LmHead, ForwardMatchesFp64FullLogits) {
  auto ops = make_cpu_ops();
  Problem p(kT, kC, kV, kInvTemp, 1);
  HostF logprob({kT}), entropy({kT}), lse({kT});
  test::poison(logprob.v);
  test::poison(entropy.v);
  test::poison(lse.v);
  ops->lm_head_logprob(logprob, entropy, lse, p.hidden, p.w, p.targets, p.inv_temp);
  const RefForward r = ref_forward(p);
  // f32 logits: each is a 37-term dot product of O(1) products with |z| up to ~15, rounded
  // to a few ulp of the partial sums (ulp(8) ~ 1e-6): <~ 1e-5 absolute, which lse, logprob and
  // entropy inherit (measured max 4.2e-6). 2e-5 absolute, 1e-6 relative L2 (measured 4e-7).
  EXPECT_TRUE(test::close("logprob", logprob.v, r.logprob, 1e-6, 2e-5));
  EXPECT_TRUE(test::close("entropy", entropy.v, r.entropy, 1e-6, 2e-5));
  EXPECT_TRUE(test::close("lse", lse.v, r.lse, 1e-6, 2e-5));

  // Entropy is optional and leaves logprob and lse unchanged.
  HostF logprob2({kT}), lse2({kT});
  ops->lm_head_logprob(logprob2, Tensor{}, lse2, p.hidden, p.w, p.targets, p.inv_temp);
  EXPECT_EQ(logprob2.v, logprob.v);
  EXPECT_EQ(lse2.v, lse.v);
}

TEST(LmHead, ForwardIsStableForLargeLogitsInEitherVocabularyTile) {
  auto ops = make_cpu_ops();
  Problem p(kT, kC, kV, 2.0f, 2);
  // Give half of the tokens a huge logit in the first vocabulary tile, the other half in
  // the second one (the running max must then rescale the first tile's sums), far beyond
  // exp's f32 range without the max shift.
  for (int64_t c = 0; c < kC; ++c) {
    p.w[size_t(17 * kC + c)] = 60.0f * p.hidden[size_t(0 * kC + c)] / float(kC);
    p.w[size_t(4999 * kC + c)] = 60.0f * p.hidden[size_t(1 * kC + c)] / float(kC);
  }
  // Even tokens point along hidden row 0, odd ones along row 1, at slowly growing scales.
  for (int64_t t = 0; t < kT; ++t)
    for (int64_t c = 0; c < kC; ++c)
      p.hidden[size_t(t * kC + c)] = p.hidden[size_t((t % 2) * kC + c)] * (1.0f + 0.01f * float(t));
  HostF logprob({kT}), entropy({kT}), lse({kT});
  ops->lm_head_logprob(logprob, entropy, lse, p.hidden, p.w, p.targets, p.inv_temp);
  const RefForward r = ref_forward(p);
  // The dominant logits are ~100-500 here; f32 rounds them to ~3e-5 absolute, which shifts
  // lse and logprob by as much. 2e-4 absolute, 1e-6 relative L2 (of values ~1e2..1e3).
  EXPECT_TRUE(test::close("logprob (large logits)", logprob.v, r.logprob, 1e-6, 2e-4));
  EXPECT_TRUE(test::close("lse (large logits)", lse.v, r.lse, 1e-6, 2e-4));
  // Entropies are tiny (one logit dominates); absolute tolerance only matters.
  EXPECT_TRUE(test::close("entropy (large logits)", entropy.v, r.entropy, 1e-3, 2e-5));
}

TEST(LmHead, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  Problem p(kT, kC, kV, kInvTemp, 3);
  HostF logprob({kT}), entropy({kT}), lse({kT});
  ops->lm_head_logprob(logprob, entropy, lse, p.hidden, p.w, p.targets, p.inv_temp);
  HostF da = test::random_f32({kT}, 10), db = test::random_f32({kT}, 11);
  HostF dh({kT, kC}), dw({kV, kC});
  test::poison(dh.v);  // assigned: every element must be written
  ops->lm_head_logprob_backward(dh, dw, da, db, p.hidden, p.w, p.targets, lse, entropy, p.inv_temp);
  expect_matches_fd(p, da.f64(), db.f64(), dh, dw, 40);

  // Every element against the analytic fp64 gradient (checked by the differences above).
  std::vector<double> rdh, rdw;
  ref_backward(p, da.f64(), db.f64(), rdh, rdw);
  EXPECT_TRUE(test::close("dhidden (all)", dh.v, rdh, kGradRel, kGradAbs));
  EXPECT_TRUE(test::close("dw (all)", dw.v, rdw, kGradRel, kGradAbs));
}

TEST(LmHead, BackwardWithoutEntropyGradientMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  Problem p(kT, kC, kV, kInvTemp, 4);
  HostF logprob({kT}), lse({kT});
  ops->lm_head_logprob(logprob, Tensor{}, lse, p.hidden, p.w, p.targets, p.inv_temp);
  HostF da = test::random_f32({kT}, 12);
  HostF dh({kT, kC}), dw({kV, kC});
  test::poison(dh.v);
  // dentropy undefined (zero) and no entropy needed.
  ops->lm_head_logprob_backward(dh, dw, da, Tensor{}, p.hidden, p.w, p.targets, lse, Tensor{}, p.inv_temp);
  const std::vector<double> zero_b(size_t(kT), 0.0);
  expect_matches_fd(p, da.f64(), zero_b, dh, dw, 20);
}

TEST(LmHead, BackwardAccumulatesDwAssignsDhiddenAndSkipsUndefinedOutputs) {
  auto ops = make_cpu_ops();
  Problem p(kT, kC, kV, kInvTemp, 5);
  HostF logprob({kT}), entropy({kT}), lse({kT});
  ops->lm_head_logprob(logprob, entropy, lse, p.hidden, p.w, p.targets, p.inv_temp);
  HostF da = test::random_f32({kT}, 13), db = test::random_f32({kT}, 14);
  std::vector<double> rdh, rdw;
  ref_backward(p, da.f64(), db.f64(), rdh, rdw);

  // dw starts from earlier gradients: the result is start + gradient, twice over after two calls.
  HostF dw = test::random_f32({kV, kC}, 15), dh = test::random_f32({kT, kC}, 16);
  const std::vector<double> start = dw.f64();
  ops->lm_head_logprob_backward(dh, dw, da, db, p.hidden, p.w, p.targets, lse, entropy, p.inv_temp);
  ops->lm_head_logprob_backward(dh, dw, da, db, p.hidden, p.w, p.targets, lse, entropy, p.inv_temp);
  std::vector<double> want = start;
  for (size_t i = 0; i < want.size(); ++i) want[i] += 2 * rdw[i];
  // Tolerance as in the gradient tests (the O(1) start values add only ~1e-7 of rounding).
  EXPECT_TRUE(test::close("dw accumulated twice", dw.v, want, kGradRel, kGradAbs));
  // dhidden is assigned: the random start and the first call do not add up.
  EXPECT_TRUE(test::close("dhidden assigned", dh.v, rdh, kGradRel, kGradAbs));

  // Either output may be undefined; the other is unchanged by its absence.
  HostF dh_only({kT, kC}), dw_only({kV, kC});
  ops->lm_head_logprob_backward(dh_only, Tensor{}, da, db, p.hidden, p.w, p.targets, lse, entropy, p.inv_temp);
  ops->lm_head_logprob_backward(Tensor{}, dw_only, da, db, p.hidden, p.w, p.targets, lse, entropy, p.inv_temp);
  EXPECT_EQ(dh_only.v, dh.v);
  EXPECT_TRUE(test::close("dw alone", dw_only.v, rdw, kGradRel, kGradAbs));
}

TEST(LmHead, SmallVocabularyAndSingleTokenMatchReference) {
  auto ops = make_cpu_ops();
  const std::vector<std::pair<int64_t, int64_t>> sizes = {{1, 1}, {1, 7}, {3, 2}, {65, 4097}};
  for (auto [T, V] : sizes) {
    Problem p(T, 5, V, 1.0f, 20 + uint64_t(V));
    HostF logprob({T}), entropy({T}), lse({T});
    ops->lm_head_logprob(logprob, entropy, lse, p.hidden, p.w, p.targets, p.inv_temp);
    const RefForward r = ref_forward(p);
    const std::string what = "T=" + std::to_string(T) + " V=" + std::to_string(V);
    // 5-term dot products of smaller logits: the main test's bounds hold with room (measured
    // max 5e-7).
    EXPECT_TRUE(test::close("logprob " + what, logprob.v, r.logprob, 1e-6, 2e-5));
    EXPECT_TRUE(test::close("entropy " + what, entropy.v, r.entropy, 1e-6, 2e-5));
  }
}

TEST(LmHead, RejectsBadTargetsAndShapes) {
  auto ops = make_cpu_ops();
  const int64_t T = 4, C = 3, V = 5;
  HostF hidden = test::random_f32({T, C}, 1), w = test::random_f32({V, C}, 2);
  HostF logprob({T}), entropy({T}), lse({T});
  HostI targets({T});
  targets.v = {0, 1, 5, 2};
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets, 1.0f), "lm_head_logprob",
                    "targets[2] = 5", "[0, 5)");
  targets.v = {0, -1, 2, 2};
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets, 1.0f), "targets[1] = -1");
  HostF dh({T, C}), dw({V, C}), dlp({T}), dent({T});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob_backward(dh, dw, dlp, dent, hidden, w, targets, lse, entropy, 1.0f),
                    "lm_head_logprob_backward", "targets[1] = -1");
  targets.v = {0, 1, 2, 4};

  HostF w_bad = test::random_f32({V, C + 1}, 3);
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w_bad, targets, 1.0f), "lm_head_logprob",
                    "w", "f32[5, 4]", "[*, 3]");
  HostF targets_f({T});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets_f, 1.0f), "targets", "i32");
  HostI targets_short({T - 1});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets_short, 1.0f), "targets",
                    "i32[3]", "[4]");
  HostF short_out({T - 1});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(short_out, entropy, lse, hidden, w, targets, 1.0f), "logprob", "f32[3]");
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, short_out, lse, hidden, w, targets, 1.0f), "entropy", "f32[3]");
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets, 0.0f), "inv_temperature");
  EXPECT_GRPO_ERROR(ops->lm_head_logprob(logprob, entropy, lse, hidden, w, targets, NAN), "inv_temperature");

  EXPECT_GRPO_ERROR(ops->lm_head_logprob_backward(dh, dw, dlp, dent, hidden, w, targets, lse, Tensor{}, 1.0f),
                    "lm_head_logprob_backward", "dentropy", "entropy is undefined");
  HostF dw_bad({V + 1, C});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob_backward(dh, dw_bad, dlp, dent, hidden, w, targets, lse, entropy, 1.0f),
                    "dw", "f32[6, 3]", "[5, 3]");
  HostF dh_bad({T, C + 1});
  EXPECT_GRPO_ERROR(ops->lm_head_logprob_backward(dh_bad, dw, dlp, dent, hidden, w, targets, lse, entropy, 1.0f),
                    "dhidden", "f32[4, 4]");
  EXPECT_GRPO_ERROR(ops->lm_head_logprob_backward(dh, dw, Tensor{}, dent, hidden, w, targets, lse, entropy, 1.0f),
                    "dlogprob", "undefined");
}

}  // namespace
}  // namespace grpo
