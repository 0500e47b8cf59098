// The GRPO objective (learner/objective.h): advantages, ratio and clipping, GSPO, truncated IS,
// KL estimators, aggregations, entropy bonus and overlong shaping against hand-computed values;
// edge cases (all-equal rewards, G = 1, empty and truncated completions, log-prob differences
// of 100); the gradient against central finite differences for every combination of options;
// config and input errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "learner/objective.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

const double kNaN = std::nan("");

// A packed batch built sequence by sequence. Prompt positions (mask 0) hold NaN everywhere, so
// any use of them shows up.
struct Batch {
  std::vector<int64_t> cu{0}, group;
  std::vector<uint8_t> mask, truncated;
  std::vector<double> reward, lp, old, rollout, ref, ent;

  // `lr`: logprob - old_logprob per completion token; old_logprob = -1 - 0.1 t; the rollout,
  // reference and entropy default to old_logprob, old_logprob and 0.5.
  void add(int64_t g, double r, const std::vector<double>& lr, int prompt = 2, bool trunc = false,
           const std::vector<double>& rollout_minus_old = {}, const std::vector<double>& ref_minus_lp = {},
           const std::vector<double>& entropy = {}) {
    for (int p = 0; p < prompt; ++p) push(0, kNaN, kNaN, kNaN, kNaN, kNaN);
    for (size_t t = 0; t < lr.size(); ++t) {
      double o = -1.0 - 0.1 * double(t);
      double l = o + lr[t];
      push(1, l, o, o + (rollout_minus_old.empty() ? 0.0 : rollout_minus_old[t]),
           ref_minus_lp.empty() ? o : l + ref_minus_lp[t], entropy.empty() ? 0.5 : entropy[t]);
    }
    cu.push_back(int64_t(lp.size()));
    group.push_back(g);
    reward.push_back(r);
    truncated.push_back(trunc ? 1 : 0);
  }
  void push(uint8_t m, double l, double o, double ro, double rf, double e) {
    mask.push_back(m);
    lp.push_back(l);
    old.push_back(o);
    rollout.push_back(ro);
    ref.push_back(rf);
    ent.push_back(e);
  }
  ObjectiveInputsT<double> inputs() const {
    ObjectiveInputsT<double> in;
    in.cu_seqlens = cu;
    in.mask = mask;
    in.group = group;
    in.reward = reward;
    in.truncated = truncated;
    in.logprob = lp;
    in.old_logprob = old;
    in.rollout_logprob = rollout;
    in.ref_logprob = ref;
    in.entropy = ent;
    return in;
  }
  // Positions of completion tokens.
  std::vector<size_t> completion_positions() const {
    std::vector<size_t> pos;
    for (size_t t = 0; t < mask.size(); ++t)
      if (mask[t]) pos.push_back(t);
    return pos;
  }
};

// The same batch with the model's float log-probs.
struct FloatBatch {
  const Batch& b;
  std::vector<float> lp, old, rollout, ref, ent;
  explicit FloatBatch(const Batch& batch)
      : b(batch),
        lp(b.lp.begin(), b.lp.end()),
        old(b.old.begin(), b.old.end()),
        rollout(b.rollout.begin(), b.rollout.end()),
        ref(b.ref.begin(), b.ref.end()),
        ent(b.ent.begin(), b.ent.end()) {}
  ObjectiveInputs inputs() const {
    ObjectiveInputs in;
    in.cu_seqlens = b.cu;
    in.mask = b.mask;
    in.group = b.group;
    in.reward = b.reward;
    in.truncated = b.truncated;
    in.logprob = lp;
    in.old_logprob = old;
    in.rollout_logprob = rollout;
    in.ref_logprob = ref;
    in.entropy = ent;
    return in;
  }
};

ObjectiveResultT<double> run(const ObjectiveOptions& o, const Batch& b, AggregationTotals totals = {}) {
  return grpo_objective(o, b.inputs(), totals);
}

ObjectiveOptions dr_grpo_options() {
  ObjectiveOptions o;
  o.advantage = AdvantageKind::dr_grpo;
  return o;
}

constexpr double kTol = 1e-12;

// ---- advantages ---------------------------------------------------------------------------

TEST(ObjectiveAdvantage, GrpoSampleAndPopulationStd) {
  // rewards 1 2 3 6: mean 3, deviations -2 -1 0 3, sum of squares 14.
  std::vector<int64_t> g{5, 5, 5, 5}, len{1, 1, 1, 1};
  std::vector<double> r{1, 2, 3, 6}, dev{-2, -1, 0, 3};
  ObjectiveOptions o;  // grpo, sample std, adv_eps 1e-6
  AdvantageResult a = compute_advantages(o, g, r, len);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(a.advantage[i], dev[i] / (std::sqrt(14.0 / 3.0) + 1e-6), kTol) << i;
  EXPECT_NEAR(a.advantage[3], 1.3887301496588271, 1e-6);  // 3 / sqrt(14/3)
  o.grpo_std_sample = false;
  a = compute_advantages(o, g, r, len);
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(a.advantage[i], dev[i] / (std::sqrt(14.0 / 4.0) + 1e-6), kTol) << i;
  EXPECT_EQ(a.num_groups, 1);
  EXPECT_EQ(a.zero_variance_groups, 0);
  EXPECT_NEAR(a.reward_mean, 3.0, kTol);
  EXPECT_NEAR(a.adv_mean, 0.0, kTol);
  EXPECT_NEAR(a.adv_min, -2.0 / (std::sqrt(3.5) + 1e-6), kTol);
  EXPECT_NEAR(a.adv_max, 3.0 / (std::sqrt(3.5) + 1e-6), kTol);
}

TEST(ObjectiveAdvantage, DrGrpoAndRloo) {
  std::vector<int64_t> g{5, 5, 5, 5}, len{1, 1, 1, 1};
  std::vector<double> r{1, 2, 3, 6};
  ObjectiveOptions o = dr_grpo_options();
  AdvantageResult a = compute_advantages(o, g, r, len);
  std::vector<double> dr{-2, -1, 0, 3};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(a.advantage[i], dr[i], kTol) << i;
  // RLOO: r_i minus the mean of the other three: 1 - 11/3, 2 - 10/3, 3 - 9/3, 6 - 6/3.
  o.advantage = AdvantageKind::rloo;
  a = compute_advantages(o, g, r, len);
  std::vector<double> rloo{-8.0 / 3, -4.0 / 3, 0, 4};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(a.advantage[i], rloo[i], kTol) << i;
}

TEST(ObjectiveAdvantage, InterleavedGroupsByIdNotPosition) {
  // Group 9 = {0, 1} (positions 0, 2); group 2 = {1, 1} (positions 1, 3): all equal.
  std::vector<int64_t> g{9, 2, 9, 2}, len{3, 3, 3, 3};
  std::vector<double> r{0, 1, 1, 1};
  ObjectiveOptions o;
  AdvantageResult a = compute_advantages(o, g, r, len);
  const double s = std::sqrt(0.5) + 1e-6;  // sample std of {0, 1}
  EXPECT_NEAR(a.advantage[0], -0.5 / s, kTol);
  EXPECT_NEAR(a.advantage[2], 0.5 / s, kTol);
  EXPECT_EQ(a.advantage[1], 0.0);
  EXPECT_EQ(a.advantage[3], 0.0);
  EXPECT_EQ(a.num_groups, 2);
  EXPECT_EQ(a.zero_variance_groups, 1);
  o.advantage = AdvantageKind::rloo;
  a = compute_advantages(o, g, r, len);
  EXPECT_NEAR(a.advantage[0], -1.0, kTol);
  EXPECT_NEAR(a.advantage[2], 1.0, kTol);
}

TEST(ObjectiveAdvantage, AllEqualAndSingletonGroupsGiveZeroAndAreCounted) {
  // Group 0: G = 1; group 1: three equal rewards; group 2: equal up to rounding (0.1 + 0.2 vs 0.3).
  std::vector<int64_t> g{0, 1, 1, 1, 2, 2}, len{4, 1, 2, 3, 1, 1};
  std::vector<double> r{0.7, 2, 2, 2, 0.1 + 0.2, 0.3};
  for (AdvantageKind kind : {AdvantageKind::grpo, AdvantageKind::dr_grpo, AdvantageKind::rloo}) {
    ObjectiveOptions o;
    o.advantage = kind;
    AdvantageResult a = compute_advantages(o, g, r, len);
    for (size_t i = 0; i < r.size(); ++i) EXPECT_EQ(a.advantage[i], 0.0) << name_of(kind) << " " << i;
    EXPECT_EQ(a.num_groups, 3) << name_of(kind);
    EXPECT_EQ(a.zero_variance_groups, 3) << name_of(kind);
    EXPECT_EQ(a.adv_std, 0.0);
  }
}

TEST(ObjectiveAdvantage, OverlongPenaltyFollowsDapo) {
  // L_max 10, L_cache 4: no penalty up to 6, then (6 - L) / 4 down to -1 at 10, -1 beyond.
  EXPECT_EQ(overlong_penalty(0, 10, 4), 0.0);
  EXPECT_EQ(overlong_penalty(6, 10, 4), 0.0);
  EXPECT_EQ(overlong_penalty(7, 10, 4), -0.25);
  EXPECT_EQ(overlong_penalty(8, 10, 4), -0.5);
  EXPECT_EQ(overlong_penalty(10, 10, 4), -1.0);
  EXPECT_EQ(overlong_penalty(11, 10, 4), -1.0);
  EXPECT_EQ(overlong_penalty(500, 10, 4), -1.0);
  EXPECT_EQ(overlong_penalty(5, 10, 10), -0.5);  // the window is the whole range
  EXPECT_EQ(overlong_penalty(9, 10, 0), 0.0);    // off

  // Shaping changes the rewards, hence the advantages: equal rewards, lengths 6 and 8.
  ObjectiveOptions o = dr_grpo_options();
  o.max_completion_tokens = 10;
  o.overlong_cache = 4;
  o.overlong_penalty_factor = 0.5;
  std::vector<int64_t> g{0, 0}, len{6, 8};
  std::vector<double> r{1, 1};
  AdvantageResult a = compute_advantages(o, g, r, len);
  EXPECT_NEAR(a.shaped_reward[0], 1.0, kTol);
  EXPECT_NEAR(a.shaped_reward[1], 0.75, kTol);
  EXPECT_NEAR(a.advantage[0], 0.125, kTol);
  EXPECT_NEAR(a.advantage[1], -0.125, kTol);
  EXPECT_EQ(a.zero_variance_groups, 0);
  EXPECT_NEAR(a.overlong_penalty_mean, -0.125, kTol);
  EXPECT_NEAR(a.reward_mean, 1.0, kTol);
}

// ---- KL estimators --------------------------------------------------------------------------

TEST(ObjectiveKl, EstimatorValues) {
  // logp -1, ref -2 (d = ref - logp = -1), and the mirror image (d = +1).
  EXPECT_NEAR(kl_value(KlEstimator::k1, -1, -2), 1.0, kTol);
  EXPECT_NEAR(kl_value(KlEstimator::k2, -1, -2), 0.5, kTol);
  EXPECT_NEAR(kl_value(KlEstimator::k3, -1, -2), std::exp(-1.0), kTol);  // e^-1 + 1 - 1
  EXPECT_NEAR(kl_value(KlEstimator::k1, -2, -1), -1.0, kTol);
  EXPECT_NEAR(kl_value(KlEstimator::k2, -2, -1), 0.5, kTol);
  EXPECT_NEAR(kl_value(KlEstimator::k3, -2, -1), std::exp(1.0) - 2.0, kTol);
  EXPECT_EQ(kl_value(KlEstimator::k3, -3, -3), 0.0);
  // Extreme differences: k1 and k2 exact, k3's exponent clamped at 20.
  EXPECT_EQ(kl_value(KlEstimator::k1, 0, -100), 100.0);
  EXPECT_EQ(kl_value(KlEstimator::k2, 0, -100), 5000.0);
  EXPECT_NEAR(kl_value(KlEstimator::k3, 0, -100), std::exp(-20.0) + 20 - 1, 1e-9);
  EXPECT_NEAR(kl_value(KlEstimator::k3, -100, 0), std::exp(20.0) - 21, 1e-3);
}

TEST(ObjectiveKl, InLossValuesAndGradients) {
  // G = 1, so A = 0 and only the KL term moves: logp - ref = +1 then -1, beta 0.1, token_mean.
  Batch b;
  b.add(0, 1.0, {0.0, 0.0}, 1, false, {}, {-1.0, 1.0});
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o;
  o.beta = 0.1;
  o.kl_estimator = KlEstimator::k1;
  auto r = run(o, b);
  EXPECT_NEAR(r.loss, 0.0, kTol);  // (1 - 1) / 2
  EXPECT_NEAR(r.dlogprob[pos[0]], 0.05, kTol);
  EXPECT_NEAR(r.dlogprob[pos[1]], 0.05, kTol);
  o.kl_estimator = KlEstimator::k2;
  r = run(o, b);
  EXPECT_NEAR(r.metrics.kl, 0.5, kTol);
  EXPECT_NEAR(r.loss, 0.05, kTol);
  EXPECT_NEAR(r.dlogprob[pos[0]], 0.05, kTol);
  EXPECT_NEAR(r.dlogprob[pos[1]], -0.05, kTol);
  o.kl_estimator = KlEstimator::k3;
  r = run(o, b);
  const double kl = (std::exp(-1.0) + (std::exp(1.0) - 2.0)) / 2;
  EXPECT_NEAR(r.metrics.kl, kl, kTol);
  EXPECT_NEAR(r.loss, 0.1 * kl, kTol);
  EXPECT_NEAR(r.dlogprob[pos[0]], 0.1 * (1 - std::exp(-1.0)) / 2, kTol);  // d k3 / d logp = 1 - e^d
  EXPECT_NEAR(r.dlogprob[pos[1]], 0.1 * (1 - std::exp(1.0)) / 2, kTol);
}

TEST(ObjectiveKl, InRewardChangesAdvantagesNotGradient) {
  // Equal raw rewards; sequence 0's old policy is 1 nat above the reference (k1 = 1).
  Batch b;
  b.add(0, 1.0, {0.0}, 0);
  b.add(0, 1.0, {0.0}, 0);
  b.ref[0] = b.old[0] - 1.0;
  ObjectiveOptions o = dr_grpo_options();
  o.beta = 0.5;
  o.kl_estimator = KlEstimator::k1;
  o.kl_placement = KlPlacement::reward;
  auto r = run(o, b);
  EXPECT_NEAR(r.metrics.advantages.shaped_reward[0], 0.5, kTol);
  EXPECT_NEAR(r.metrics.advantages.advantage[0], -0.25, kTol);
  EXPECT_NEAR(r.metrics.advantages.advantage[1], 0.25, kTol);
  EXPECT_EQ(r.metrics.advantages.zero_variance_groups, 0);
  // Ratio 1: d loss / d logp = -A / N; no KL term in the gradient.
  EXPECT_NEAR(r.dlogprob[0], 0.125, kTol);
  EXPECT_NEAR(r.dlogprob[1], -0.125, kTol);
  EXPECT_NEAR(r.loss, 0.0, kTol);
  // The same KL in the loss: zero advantages, the KL gradient beta * 1 / N on token 0 only.
  o.kl_placement = KlPlacement::loss;
  r = run(o, b);
  EXPECT_EQ(r.metrics.advantages.zero_variance_groups, 1);
  EXPECT_NEAR(r.dlogprob[0], 0.25, kTol);
  EXPECT_NEAR(r.dlogprob[1], 0.25, kTol);  // k1's gradient is 1 wherever it is
  EXPECT_NEAR(r.loss, 0.5 * (1.0 + 0.0) / 2, kTol);
}

TEST(ObjectiveKl, BetaZeroNeedsNoReference) {
  Batch b;
  b.add(0, 1.0, {0.1, -0.2});
  b.add(0, 0.0, {0.3});
  std::fill(b.ref.begin(), b.ref.end(), kNaN);
  ObjectiveOptions o;
  auto in = b.inputs();
  in.ref_logprob = {};
  auto r = grpo_objective(o, in);
  EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_EQ(r.metrics.kl, 0.0);
  in.ref_logprob = b.ref;  // NaN, but unused
  auto r2 = grpo_objective(o, in);
  EXPECT_EQ(r.loss, r2.loss);
  o.beta = 0.1;
  in.ref_logprob = {};
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "ref_logprob has 0 entries", "beta > 0 needs it");
}

// ---- ratio, clipping, GSPO, TIS --------------------------------------------------------------

TEST(ObjectiveClip, TokenRatioClippedOnBothSides) {
  // A = +0.5 for sequence a, -0.5 for b (dr_grpo); token_mean over N = 8 tokens.
  Batch b;
  b.add(0, 1.0, {std::log(1.5), std::log(0.5), std::log(1.1), std::log(1.25)});
  b.add(0, 0.0, {std::log(0.5), std::log(1.5), std::log(0.9), std::log(0.75)});
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o = dr_grpo_options();
  o.clip_low = 0.2;
  o.clip_high = 0.28;
  auto r = run(o, b);
  // Per-token -min(q A, clip(q) A): a: 1.5 clipped at 1.28 (-0.64), 0.5 (-0.25), 1.1 (-0.55),
  // 1.25 (-0.625); b: 0.5 and 0.75 clipped at 0.8 (+0.4 each), 1.5 (+0.75), 0.9 (+0.45).
  EXPECT_NEAR(r.loss, (-0.64 - 0.25 - 0.55 - 0.625 + 0.4 + 0.75 + 0.45 + 0.4) / 8, kTol);
  // Unclipped tokens: d/dlogp (-q A) / N = -q A / N; clipped ones: 0.
  std::vector<double> want{0, -0.25 / 8, -0.55 / 8, -0.625 / 8, 0, 0.75 / 8, 0.45 / 8, 0};
  for (size_t k = 0; k < pos.size(); ++k) EXPECT_NEAR(r.dlogprob[pos[k]], want[k], kTol) << k;
  EXPECT_NEAR(r.metrics.clip_frac_low, 2.0 / 8, kTol);
  EXPECT_NEAR(r.metrics.clip_frac_high, 1.0 / 8, kTol);
  EXPECT_NEAR(r.metrics.ratio_mean, (1.5 + 0.5 + 1.1 + 1.25 + 0.5 + 1.5 + 0.9 + 0.75) / 8, kTol);
  // Symmetric 0.2 clips 1.25 as well.
  o.clip_high = 0.2;
  r = run(o, b);
  EXPECT_NEAR(r.metrics.clip_frac_high, 2.0 / 8, kTol);
  EXPECT_EQ(r.dlogprob[pos[3]], 0.0);
  EXPECT_NEAR(r.loss, (-0.6 - 0.25 - 0.55 - 0.6 + 0.4 + 0.75 + 0.45 + 0.4) / 8, kTol);
  // Prompt positions get no gradient.
  for (size_t t = 0; t < b.mask.size(); ++t) {
    if (!b.mask[t]) {
      EXPECT_EQ(r.dlogprob[t], 0.0) << t;
    }
  }
}

TEST(ObjectiveClip, GspoSequenceRatio) {
  // a: log-ratios 0.1, 0.3 -> s = e^0.2 = 1.2214 (A = +0.5); b: -0.4 -> s = e^-0.4 = 0.670
  // (A = -0.5), below 1 - 0.2: clipped, the surrogate is -0.8 * -0.5 = 0.4.
  Batch b;
  b.add(0, 1.0, {0.1, 0.3});
  b.add(0, 0.0, {-0.4});
  const std::vector<size_t> pos = b.completion_positions();
  const double s = std::exp(0.2);
  ObjectiveOptions o = dr_grpo_options();
  o.ratio = RatioKind::gspo;
  o.clip_high = 0.28;
  o.aggregation = Aggregation::seq_mean_token_mean;
  auto r = run(o, b);
  EXPECT_NEAR(r.loss, (-0.5 * s + 0.4) / 2, kTol);
  // d/dlogp_t of (1/2) (-0.5 s): s depends on each of its 2 tokens as ds = s / 2.
  EXPECT_NEAR(r.dlogprob[pos[0]], -0.125 * s, kTol);
  EXPECT_NEAR(r.dlogprob[pos[1]], -0.125 * s, kTol);
  EXPECT_EQ(r.dlogprob[pos[2]], 0.0);
  EXPECT_NEAR(r.metrics.clip_frac_low, 1.0 / 3, kTol);
  EXPECT_NEAR(r.metrics.ratio_mean, (2 * s + std::exp(-0.4)) / 3, kTol);
  // token_mean: (2 (-0.5 s) + 0.4) / 3; each token of a gets (2/3) (-0.5) (s/2).
  o.aggregation = Aggregation::token_mean;
  r = run(o, b);
  EXPECT_NEAR(r.loss, (-s + 0.4) / 3, kTol);
  EXPECT_NEAR(r.dlogprob[pos[0]], -s / 6, kTol);
  // clip_high 0.2: s = 1.2214 > 1.2 clips the whole sequence.
  o.clip_high = 0.2;
  r = run(o, b);
  EXPECT_NEAR(r.loss, (2 * -0.6 + 0.4) / 3, kTol);
  EXPECT_EQ(r.dlogprob[pos[0]], 0.0);
  EXPECT_EQ(r.dlogprob[pos[1]], 0.0);
  EXPECT_NEAR(r.metrics.clip_frac_high, 2.0 / 3, kTol);
}

TEST(ObjectiveClip, TruncatedImportanceSamplingWeights) {
  // Ratio 1; weights min(exp(old - rollout), 2): 1.5, 3 -> 2, 0.5. token_mean over 3 tokens.
  Batch b;
  b.add(0, 1.0, {0.0, 0.0}, 2, false, {-std::log(1.5), -std::log(3.0)});
  b.add(0, 0.0, {0.0}, 2, false, {std::log(2.0)});
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o = dr_grpo_options();
  o.tis_cap = 2.0;
  auto r = run(o, b);
  EXPECT_NEAR(r.loss, (-0.5 * 1.5 - 0.5 * 2 + 0.5 * 0.5) / 3, kTol);
  EXPECT_NEAR(r.dlogprob[pos[0]], -0.5 * 1.5 / 3, kTol);
  EXPECT_NEAR(r.dlogprob[pos[1]], -0.5 * 2.0 / 3, kTol);
  EXPECT_NEAR(r.dlogprob[pos[2]], 0.5 * 0.5 / 3, kTol);
  EXPECT_NEAR(r.metrics.tis_mean, 4.0 / 3, kTol);
  // Off: the rollout log-probs are not needed.
  o.tis_cap = 0;
  auto in = b.inputs();
  in.rollout_logprob = {};
  auto off = grpo_objective(o, in);
  EXPECT_NEAR(off.loss, (-0.5 * 2 + 0.5) / 3, kTol);
  EXPECT_EQ(off.metrics.tis_mean, 1.0);
}

// ---- aggregation, entropy, empty and truncated completions ------------------------------------

TEST(ObjectiveAggregation, HandComputedWithEmptyCompletion) {
  // Ratio 1, so each token's surrogate is -A: sequence 0 (1 token, A = +0.5), sequence 1
  // (3 tokens, A = -0.5), and an empty completion alone in group 1 (contributes nothing).
  Batch b;
  b.add(0, 1.0, {0.0});
  b.add(0, 0.0, {0.0, 0.0, 0.0});
  b.add(1, 5.0, {});
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o = dr_grpo_options();
  struct Case {
    Aggregation agg;
    double loss, g0, g1;
  };
  const Case cases[] = {
      {Aggregation::token_mean, (-0.5 + 1.5) / 4, -0.5 / 4, 0.5 / 4},
      {Aggregation::seq_mean_token_mean, (-0.5 / 1 + 1.5 / 3) / 2, -0.5 / 2, 0.5 / 6},
      {Aggregation::seq_mean_token_sum_norm, (-0.5 / 4 + 1.5 / 4) / 2, -0.5 / 8, 0.5 / 8},
  };
  o.max_completion_tokens = 4;
  for (const Case& c : cases) {
    o.aggregation = c.agg;
    auto r = run(o, b);
    EXPECT_NEAR(r.loss, c.loss, kTol) << name_of(c.agg);
    EXPECT_NEAR(r.dlogprob[pos[0]], c.g0, kTol) << name_of(c.agg);
    for (size_t k = 1; k < 4; ++k) EXPECT_NEAR(r.dlogprob[pos[k]], c.g1, kTol) << name_of(c.agg);
    EXPECT_EQ(r.metrics.num_seqs, 2);
    EXPECT_EQ(r.metrics.num_tokens, 4);
    EXPECT_EQ(r.metrics.advantages.zero_variance_groups, 1);
    for (double g : r.dlogprob) EXPECT_TRUE(std::isfinite(g));
  }
  // Only empty completions: nothing to divide by, loss 0.
  Batch e;
  e.add(0, 1.0, {});
  e.add(0, 0.0, {}, 0);
  for (const Case& c : cases) {
    o.aggregation = c.agg;
    auto r = run(o, e);
    EXPECT_EQ(r.loss, 0.0);
    EXPECT_EQ(r.metrics.num_tokens, 0);
    for (double g : r.dlogprob) EXPECT_EQ(g, 0.0);
  }
  // No sequences at all.
  Batch none;
  auto r = run(o, none);
  EXPECT_EQ(r.loss, 0.0);
  EXPECT_TRUE(r.dlogprob.empty());
}

TEST(ObjectiveAggregation, EntropyBonus) {
  // A = 0 (G = 1 groups); entropies 1 | 2 3; seq_mean_token_mean: (1 + 2.5) / 2 = 1.75.
  Batch b;
  b.add(0, 1.0, {0.0}, 1, false, {}, {}, {1.0});
  b.add(1, 0.0, {0.0, 0.0}, 1, false, {}, {}, {2.0, 3.0});
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o;
  o.aggregation = Aggregation::seq_mean_token_mean;
  o.entropy_coef = 0.1;
  auto r = run(o, b);
  EXPECT_NEAR(r.metrics.entropy, 1.75, kTol);
  EXPECT_NEAR(r.loss, -0.175, kTol);
  ASSERT_EQ(r.dentropy.size(), b.mask.size());
  EXPECT_NEAR(r.dentropy[pos[0]], -0.1 / 2, kTol);
  EXPECT_NEAR(r.dentropy[pos[1]], -0.1 / 4, kTol);
  EXPECT_NEAR(r.dentropy[pos[2]], -0.1 / 4, kTol);
  EXPECT_EQ(r.dentropy[0], 0.0);  // a prompt position
  // A bonus needs the entropies.
  auto in = b.inputs();
  in.entropy = {};
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "entropy has 0 entries", "entropy_coef");
  o.entropy_coef = 0;
  EXPECT_TRUE(grpo_objective(o, in).dentropy.empty());
}

TEST(ObjectiveAggregation, TruncatedCompletionsAndOverlongFilter) {
  // Sequence 0 (2 tokens, reward 1) was cut at the limit; sequence 1 (1 token, reward 0).
  Batch b;
  b.add(0, 1.0, {0.0, 0.0}, 1, true);
  b.add(0, 0.0, {0.0}, 1, false);
  const std::vector<size_t> pos = b.completion_positions();
  ObjectiveOptions o = dr_grpo_options();
  auto r = run(o, b);
  EXPECT_NEAR(r.loss, (-0.5 * 2 + 0.5) / 3, kTol);
  EXPECT_EQ(r.metrics.num_tokens, 3);
  // Filtered: sequence 0 gives no loss, but stays in its group's baseline (A_1 still -0.5).
  o.overlong_filter = true;
  r = run(o, b);
  EXPECT_NEAR(r.metrics.advantages.advantage[1], -0.5, kTol);
  EXPECT_NEAR(r.loss, 0.5, kTol);
  EXPECT_EQ(r.dlogprob[pos[0]], 0.0);
  EXPECT_EQ(r.dlogprob[pos[1]], 0.0);
  EXPECT_NEAR(r.dlogprob[pos[2]], 0.5, kTol);
  EXPECT_EQ(r.metrics.num_seqs, 1);
  EXPECT_EQ(r.metrics.num_tokens, 1);
  // Overlong shaping reads the completion lengths (2 and 1) from the mask: L_max 2, L_cache 1
  // penalises the 2-token completion by -1: shaped rewards 0 and 0, a zero-variance group.
  o.overlong_filter = false;
  o.max_completion_tokens = 2;
  o.overlong_cache = 1;
  r = run(o, b);
  EXPECT_NEAR(r.metrics.advantages.shaped_reward[0], 0.0, kTol);
  EXPECT_EQ(r.metrics.advantages.zero_variance_groups, 1);
  EXPECT_EQ(r.loss, 0.0);
}

TEST(ObjectiveAggregation, MiniBatchesSumToTheWholeBatch) {
  // Advantages over the whole batch, then two mini-batches with the whole batch's totals.
  Batch all, first, second;
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> u(-0.3, 0.3);
  for (int i = 0; i < 6; ++i) {
    std::vector<double> lr(size_t(1 + i % 3));
    for (double& x : lr) x = u(rng);
    double reward = double((i * 7) % 4);
    all.add(i / 3, reward, lr, 1);
    (i % 2 ? second : first).add(i / 3, reward, lr, 1);
  }
  for (Aggregation agg : {Aggregation::token_mean, Aggregation::seq_mean_token_mean,
                          Aggregation::seq_mean_token_sum_norm}) {
    ObjectiveOptions o;
    o.aggregation = agg;
    o.max_completion_tokens = 5;
    o.ratio = RatioKind::gspo;
    auto whole = run(o, all);
    AggregationTotals totals{whole.metrics.num_seqs, whole.metrics.num_tokens};
    std::vector<double> adv1, adv2;
    for (int i = 0; i < 6; ++i) (i % 2 ? adv2 : adv1).push_back(whole.metrics.advantages.advantage[size_t(i)]);
    auto in1 = first.inputs(), in2 = second.inputs();
    in1.advantage = adv1;
    in2.advantage = adv2;
    auto r1 = grpo_objective(o, in1, totals), r2 = grpo_objective(o, in2, totals);
    EXPECT_NEAR(r1.loss + r2.loss, whole.loss, kTol) << name_of(agg);
    // Sequence i of the whole batch is sequence i / 2 of its mini-batch.
    for (int i = 0; i < 6; ++i) {
      const auto& part = i % 2 ? second : first;
      const auto& pr = i % 2 ? r2 : r1;
      const int64_t k = i / 2;
      ASSERT_EQ(all.cu[size_t(i) + 1] - all.cu[size_t(i)], part.cu[size_t(k) + 1] - part.cu[size_t(k)]);
      for (int64_t t = 0; t < all.cu[size_t(i) + 1] - all.cu[size_t(i)]; ++t)
        EXPECT_NEAR(pr.dlogprob[size_t(part.cu[size_t(k)] + t)], whole.dlogprob[size_t(all.cu[size_t(i)] + t)], kTol)
            << name_of(agg) << " sequence " << i << " token " << t;
    }
  }
}

// ---- numerics ---------------------------------------------------------------------------------

TEST(ObjectiveNumerics, ExtremeLogProbDifferencesStayFinite) {
  // Log-ratio, rollout gap and reference gap of +-100 on every token.
  Batch b;
  b.add(0, 1.0, {100.0, -100.0, 0.0}, 1, false, {100.0, -100.0, 100.0}, {-100.0, 100.0, -100.0});
  b.add(0, 0.0, {-100.0, 100.0}, 1, false, {-100.0, 100.0}, {100.0, -100.0});
  b.add(1, 0.5, {100.0}, 1, false, {100.0}, {100.0});
  const std::vector<size_t> pos = b.completion_positions();
  for (RatioKind ratio : {RatioKind::token, RatioKind::gspo})
    for (KlEstimator est : {KlEstimator::k1, KlEstimator::k2, KlEstimator::k3})
      for (Aggregation agg : {Aggregation::token_mean, Aggregation::seq_mean_token_mean,
                              Aggregation::seq_mean_token_sum_norm}) {
        ObjectiveOptions o;
        o.ratio = ratio;
        o.kl_estimator = est;
        o.aggregation = agg;
        o.max_completion_tokens = 8;
        o.beta = 0.04;
        o.tis_cap = 2.0;
        o.entropy_coef = 0.01;
        const std::string what = std::string(name_of(ratio)) + " " + name_of(est) + " " + name_of(agg);
        auto r = run(o, b);
        EXPECT_TRUE(std::isfinite(r.loss)) << what;
        for (size_t t : pos) EXPECT_TRUE(std::isfinite(r.dlogprob[t])) << what << " " << t;
        EXPECT_LE(r.metrics.ratio_mean, std::exp(20.0) * (1 + 1e-12)) << what;
        EXPECT_TRUE(std::isfinite(r.metrics.approx_kl) && std::isfinite(r.metrics.kl)) << what;
        EXPECT_LE(r.metrics.tis_mean, 2.0) << what;
        // The same batch in float (the model's type) is finite too.
        FloatBatch f(b);
        auto rf32 = grpo_objective(o, f.inputs());
        EXPECT_TRUE(std::isfinite(rf32.loss)) << what;
        for (size_t t : pos) EXPECT_TRUE(std::isfinite(rf32.dlogprob[t])) << what << " " << t;
      }
  // Token ratio: a clamped log-ratio gets no policy gradient (beta 0).
  ObjectiveOptions o = dr_grpo_options();
  auto r = run(o, b);
  EXPECT_EQ(r.dlogprob[pos[0]], 0.0);  // +100, A > 0: clipped anyway
  EXPECT_EQ(r.dlogprob[pos[1]], 0.0);  // -100, A > 0: unclipped, but clamped
  EXPECT_EQ(r.dlogprob[pos[4]], 0.0);  // +100, A < 0: unclipped, but clamped
  EXPECT_NEAR(r.dlogprob[pos[2]], -0.5 / 6, kTol);  // the ordinary token (ratio 1)
}

TEST(ObjectiveNumerics, FloatInputsMatchDouble) {
  Batch b;
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> u(-0.5, 0.5);
  for (int i = 0; i < 8; ++i) {
    std::vector<double> lr(size_t(2 + i % 5)), ro(lr.size()), rf(lr.size()), en(lr.size());
    for (size_t t = 0; t < lr.size(); ++t) {
      lr[t] = u(rng);
      ro[t] = u(rng);
      rf[t] = u(rng);
      en[t] = 1 + u(rng);
    }
    b.add(i / 4, double(i % 3), lr, 1, false, ro, rf, en);
  }
  // Round the double batch to float first so both see the same inputs.
  for (auto* v : {&b.lp, &b.old, &b.rollout, &b.ref, &b.ent})
    for (double& x : *v) x = double(float(x));
  ObjectiveOptions o;
  o.beta = 0.05;
  o.tis_cap = 1.3;
  o.entropy_coef = 0.01;
  auto rd = run(o, b);
  FloatBatch f(b);
  auto rf32 = grpo_objective(o, f.inputs());
  EXPECT_EQ(rf32.loss, rd.loss);  // the math runs in double either way
  for (size_t t : b.completion_positions()) EXPECT_EQ(rf32.dlogprob[t], float(rd.dlogprob[t])) << t;
}

// ---- gradient against finite differences ------------------------------------------------------

// A random batch: a group of 4 with distinct rewards, a group of 3 with equal rewards, a
// singleton, and a group of 3 with an empty and a truncated completion; log-ratios in
// [-0.6, 0.6] (so both clip sides are hit), two tokens at +-3 (beyond the clamp of the
// gradient test, max_log_ratio 2: with the default 20 those tokens' e^20-sized terms would
// swamp the loss's double precision).
Batch random_batch(uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> lr(-0.6, 0.6), gap(-0.5, 0.5), refgap(-1.0, 1.0), ent(0.0, 2.0);
  std::uniform_int_distribution<int> len(1, 7), prompt(0, 2);
  Batch b;
  auto add = [&](int64_t g, double r, int n, bool trunc = false) {
    const size_t len_n = static_cast<size_t>(n);
    std::vector<double> l(len_n), ro(len_n), rf(len_n), en(len_n);
    for (int t = 0; t < n; ++t) {
      l[size_t(t)] = lr(rng);
      ro[size_t(t)] = gap(rng);
      rf[size_t(t)] = refgap(rng);
      en[size_t(t)] = ent(rng);
    }
    b.add(g, r, l, prompt(rng), trunc, ro, rf, en);
  };
  std::uniform_real_distribution<double> reward(0.0, 1.0);
  for (int i = 0; i < 4; ++i) add(0, reward(rng), len(rng));
  for (int i = 0; i < 3; ++i) add(1, 1.0, len(rng));
  add(2, 0.3, len(rng));
  add(3, 1.0, 0);
  add(3, 0.0, len(rng), true);
  add(3, 0.5, len(rng));
  const std::vector<size_t> pos = b.completion_positions();
  b.lp[pos[1]] = b.old[pos[1]] + 3.0;
  b.lp[pos[pos.size() - 1]] = b.old[pos[pos.size() - 1]] - 3.0;
  return b;
}

// True when some ratio sits within `margin` of a clip boundary or of the log-ratio clamp,
// where the loss has a kink that finite differences would straddle.
bool near_kink(const Batch& b, const ObjectiveOptions& o, double margin) {
  const double lo = 1 - o.clip_low, hi = 1 + o.clip_high;
  auto near = [&](double q) {
    return std::abs(q - lo) < margin || std::abs(q - hi) < margin ||
           std::abs(std::abs(std::log(q)) - o.max_log_ratio) < margin;
  };
  for (size_t i = 0; i + 1 < b.cu.size(); ++i) {
    double sum = 0;
    int n = 0;
    for (int64_t t = b.cu[i]; t < b.cu[i + 1]; ++t) {
      if (!b.mask[size_t(t)]) continue;
      const double d = b.lp[size_t(t)] - b.old[size_t(t)];
      if (near(std::exp(d))) return true;
      sum += d;
      ++n;
    }
    if (n > 0 && near(std::exp(sum / n))) return true;
  }
  return false;
}

TEST(ObjectiveGradient, MatchesFiniteDifferencesForEveryCombination) {
  struct Kl {
    double beta;
    KlEstimator est;
    KlPlacement place;
    const char* name;
  };
  const Kl kls[] = {{0.0, KlEstimator::k3, KlPlacement::loss, "none"},
                    {0.07, KlEstimator::k1, KlPlacement::loss, "k1 loss"},
                    {0.07, KlEstimator::k2, KlPlacement::loss, "k2 loss"},
                    {0.07, KlEstimator::k3, KlPlacement::loss, "k3 loss"},
                    {0.07, KlEstimator::k3, KlPlacement::reward, "k3 reward"}};
  int combos = 0, clip_low_seen = 0, clip_high_seen = 0, nonzero_total = 0, tokens_total = 0;
  uint64_t seed = 100;
  for (AdvantageKind adv : {AdvantageKind::grpo, AdvantageKind::dr_grpo, AdvantageKind::rloo})
    for (Aggregation agg : {Aggregation::seq_mean_token_mean, Aggregation::token_mean,
                            Aggregation::seq_mean_token_sum_norm})
      for (RatioKind ratio : {RatioKind::token, RatioKind::gspo})
        for (const Kl& kl : kls)
          for (bool tis : {false, true}) {
            ObjectiveOptions o;
            o.advantage = adv;
            o.aggregation = agg;
            o.ratio = ratio;
            o.beta = kl.beta;
            o.kl_estimator = kl.est;
            o.kl_placement = kl.place;
            o.tis_cap = tis ? 1.2 : 0.0;
            o.clip_low = 0.2;
            o.clip_high = 0.28;
            o.max_completion_tokens = 9;
            o.entropy_coef = 0.03;
            o.max_log_ratio = 2.0;
            Batch b = random_batch(++seed);
            while (near_kink(b, o, 1e-4)) b = random_batch(++seed);
            const std::string what = std::string(name_of(adv)) + " " + name_of(agg) + " " + name_of(ratio) +
                                     " kl " + kl.name + (tis ? " tis" : "") + " seed " + std::to_string(seed);
            auto r = run(o, b);
            ASSERT_TRUE(std::isfinite(r.loss)) << what;
            const std::vector<size_t> pos = b.completion_positions();

            // Loss as a function of the completion tokens' log-probs (and then entropies).
            std::vector<double> x0;
            for (size_t t : pos) x0.push_back(b.lp[t]);
            auto loss_lp = [&](const std::vector<double>& x) {
              Batch c = b;
              for (size_t k = 0; k < pos.size(); ++k) c.lp[pos[k]] = x[k];
              return run(o, c).loss;
            };
            std::vector<double> fd = test::fd_gradient(loss_lp, x0);
            int nonzero = 0;
            for (size_t k = 0; k < pos.size(); ++k) {
              const double g = r.dlogprob[pos[k]];
              EXPECT_NEAR(g, fd[k], 1e-7 + 1e-6 * std::abs(fd[k])) << what << " token " << pos[k];
              nonzero += std::abs(g) > 1e-4 ? 1 : 0;
            }
            EXPECT_GE(nonzero, 3) << what;  // the check has something to check
            nonzero_total += nonzero;
            tokens_total += int(pos.size());

            std::vector<double> e0;
            for (size_t t : pos) e0.push_back(b.ent[t]);
            auto loss_ent = [&](const std::vector<double>& x) {
              Batch c = b;
              for (size_t k = 0; k < pos.size(); ++k) c.ent[pos[k]] = x[k];
              return run(o, c).loss;
            };
            std::vector<double> fde = test::fd_gradient(loss_ent, e0);
            for (size_t k = 0; k < pos.size(); ++k)
              EXPECT_NEAR(r.dentropy[pos[k]], fde[k], 1e-8) << what << " entropy token " << pos[k];
            for (size_t t = 0; t < b.mask.size(); ++t) {
              if (!b.mask[t]) {
                EXPECT_EQ(r.dlogprob[t], 0.0) << what << " prompt position " << t;
              }
            }

            // The loss is the sum of its reported parts.
            const double kl_term = o.kl_placement == KlPlacement::loss ? o.beta * r.metrics.kl : 0.0;
            EXPECT_NEAR(r.loss, r.metrics.policy_loss + kl_term - o.entropy_coef * r.metrics.entropy, 1e-12) << what;
            clip_low_seen += r.metrics.clip_frac_low > 0;
            clip_high_seen += r.metrics.clip_frac_high > 0;
            ++combos;
          }
  EXPECT_EQ(combos, 3 * 3 * 2 * 5 * 2);
  EXPECT_GE(nonzero_total, tokens_total / 3);
  EXPECT_GE(clip_low_seen, combos / 2);
  EXPECT_GE(clip_high_seen, combos / 2);
}

// ---- options and inputs -------------------------------------------------------------------------

TEST(ObjectiveOptions, ParsesEveryKey) {
  ConfigNode root = ConfigNode::from_string(R"({"objective": {
      "advantage": "rloo", "grpo_std": "population", "adv_eps": 1e-4, "ratio": "gspo",
      "clip_low": 0.1, "clip_high": 0.28, "tis_cap": 2, "beta": 0.04, "kl_estimator": "k2",
      "kl_placement": "reward", "aggregation": "seq_mean_token_sum_norm", "max_completion_tokens": 1024,
      "entropy_coef": 0.001, "overlong_cache": 256, "overlong_penalty_factor": 0.5,
      "overlong_filter": true, "max_log_ratio": 10}})",
                                            "run.json");
  ObjectiveOptions o = parse_objective_options(root.child("objective"));
  EXPECT_EQ(o.advantage, AdvantageKind::rloo);
  EXPECT_FALSE(o.grpo_std_sample);
  EXPECT_EQ(o.adv_eps, 1e-4);
  EXPECT_EQ(o.ratio, RatioKind::gspo);
  EXPECT_EQ(o.clip_low, 0.1);
  EXPECT_EQ(o.clip_high, 0.28);
  EXPECT_EQ(o.tis_cap, 2.0);
  EXPECT_EQ(o.beta, 0.04);
  EXPECT_EQ(o.kl_estimator, KlEstimator::k2);
  EXPECT_EQ(o.kl_placement, KlPlacement::reward);
  EXPECT_EQ(o.aggregation, Aggregation::seq_mean_token_sum_norm);
  EXPECT_EQ(o.max_completion_tokens, 1024);
  EXPECT_EQ(o.entropy_coef, 0.001);
  EXPECT_EQ(o.overlong_cache, 256);
  EXPECT_EQ(o.overlong_penalty_factor, 0.5);
  EXPECT_TRUE(o.overlong_filter);
  EXPECT_EQ(o.max_log_ratio, 10.0);
  EXPECT_NO_THROW(root.finish());

  ConfigNode empty = ConfigNode::from_string("{}", "run.json");
  ObjectiveOptions d = parse_objective_options(empty);
  EXPECT_EQ(d.advantage, AdvantageKind::grpo);
  EXPECT_EQ(d.aggregation, Aggregation::token_mean);
  EXPECT_EQ(d.beta, 0.0);
}

TEST(ObjectiveOptions, BadValuesAreOneLineErrorsNamingTheField) {
  struct Case {
    const char* json;
    std::vector<const char*> fragments;
  };
  const Case cases[] = {
      {R"({"clip_lo": 0.2})", {"unknown key \"objective.clip_lo\"", "did you mean \"clip_low\""}},
      {R"({"clip_low": -0.1})", {"objective.clip_low must be in [0, 1), got -0.1"}},
      {R"({"clip_low": 1.0})", {"objective.clip_low must be in [0, 1)"}},
      {R"({"clip_high": -1})", {"objective.clip_high must be >= 0"}},
      {R"({"clip_high": "big"})", {"\"objective.clip_high\" must be a number"}},
      {R"({"advantage": "grpoo"})", {"\"objective.advantage\" is \"grpoo\"", "grpo, dr_grpo, rloo"}},
      {R"({"aggregation": "mean"})", {"\"objective.aggregation\" is \"mean\"", "seq_mean_token_mean"}},
      {R"({"kl_estimator": "k4"})", {"\"objective.kl_estimator\" is \"k4\"", "k1, k2, k3"}},
      {R"({"kl_placement": "both"})", {"\"objective.kl_placement\""}},
      {R"({"ratio": "sequence"})", {"\"objective.ratio\"", "token, gspo"}},
      {R"({"grpo_std": "biased"})", {"\"objective.grpo_std\""}},
      {R"({"beta": -0.1})", {"objective.beta must be >= 0"}},
      {R"({"tis_cap": -2})", {"objective.tis_cap must be >= 0"}},
      {R"({"adv_eps": -1e-6})", {"objective.adv_eps must be >= 0"}},
      {R"({"aggregation": "seq_mean_token_sum_norm"})",
       {"objective.max_completion_tokens must be > 0 for aggregation seq_mean_token_sum_norm"}},
      {R"({"overlong_cache": 64})", {"objective.overlong_cache must be <= max_completion_tokens"}},
      {R"({"overlong_cache": 64, "max_completion_tokens": 32})", {"objective.overlong_cache"}},
      {R"({"overlong_cache": -1})", {"objective.overlong_cache must be >= 0"}},
      {R"({"max_completion_tokens": -5})", {"objective.max_completion_tokens must be >= 0"}},
      {R"({"overlong_penalty_factor": -1})", {"objective.overlong_penalty_factor must be >= 0"}},
      {R"({"max_log_ratio": 0})", {"objective.max_log_ratio must be in (0, 50]"}},
      {R"({"max_log_ratio": 100})", {"objective.max_log_ratio must be in (0, 50]"}},
      {R"({"overlong_filter": 1})", {"\"objective.overlong_filter\" must be a boolean"}},
  };
  for (const Case& c : cases) {
    ConfigNode root = ConfigNode::from_string(std::string(R"({"objective": )") + c.json + "}", "run.json");
    try {
      parse_objective_options(root.child("objective"));
      ADD_FAILURE() << c.json << ": no error";
    } catch (const Error& e) {
      const std::string msg = e.message();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
      for (const char* f : c.fragments) EXPECT_NE(msg.find(f), std::string::npos) << c.json << " -> " << msg;
    }
  }
  // Options built in code are checked by the objective too.
  ObjectiveOptions o;
  o.clip_low = 2;
  Batch b;
  b.add(0, 1.0, {0.0});
  EXPECT_GRPO_ERROR(run(o, b), "clip_low must be in [0, 1)");
}

TEST(ObjectiveInputs, BadInputsNameTheField) {
  Batch b;
  b.add(0, 1.0, {0.1, 0.2});
  b.add(0, 0.0, {0.3});
  ObjectiveOptions o;
  auto in = b.inputs();
  std::vector<double> short_old(b.old.begin(), b.old.end() - 1);
  in.old_logprob = short_old;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "old_logprob has 6 entries, expected 7");
  in = b.inputs();
  std::vector<int64_t> bad_cu{0, 5, 4};
  in.cu_seqlens = bad_cu;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "cu_seqlens decreases at 2");
  std::vector<int64_t> short_cu{0, 3, 6};
  in.cu_seqlens = short_cu;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "cu_seqlens ends at 6 but logprob has 7 entries");
  in = b.inputs();
  in.cu_seqlens = {};
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "cu_seqlens is empty");
  in = b.inputs();
  std::vector<double> one_reward{1.0};
  in.reward = one_reward;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "reward has 1 entries, expected 2");
  in = b.inputs();
  std::vector<double> nan_reward{1.0, kNaN};
  in.reward = nan_reward;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "reward[1] is nan");
  in = b.inputs();
  std::vector<double> lp = b.lp;
  lp[3] = std::numeric_limits<double>::infinity();
  in.logprob = lp;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "logprob[3] is inf (sequence 0)");
  in = b.inputs();
  o.tis_cap = 2;
  in.rollout_logprob = {};
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "rollout_logprob has 0 entries", "tis_cap > 0 needs it");
  o.tis_cap = 0;
  in = b.inputs();
  std::vector<double> adv{0.5};
  in.advantage = adv;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "advantage has 1 entries, expected 2");
  in = b.inputs();
  std::vector<uint8_t> trunc{1};
  in.truncated = trunc;
  EXPECT_GRPO_ERROR(grpo_objective(o, in), "truncated has 1 entries, expected 2");
  in = b.inputs();
  EXPECT_GRPO_ERROR(grpo_objective(o, in, AggregationTotals{1, 0}), "totals: seqs is 1, below this batch's 2");
  EXPECT_GRPO_ERROR(grpo_objective(o, in, AggregationTotals{0, 2}), "totals: tokens is 2, below this batch's 3");
  // With precomputed advantages, group and reward are not needed.
  in = b.inputs();
  std::vector<double> adv2{0.5, -0.5};
  in.advantage = adv2;
  in.group = {};
  in.reward = {};
  // Ratios e^0.1, e^0.2 (A > 0; above 1.2: clipped) and e^0.3 (A < 0: unclipped).
  EXPECT_NEAR(grpo_objective(o, in).loss, (-0.5 * std::exp(0.1) - 0.5 * 1.2 + 0.5 * std::exp(0.3)) / 3, kTol);
}

}  // namespace
}  // namespace grpo
