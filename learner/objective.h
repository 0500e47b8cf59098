// The GRPO objective on host data: group advantages, the clipped importance-weighted surrogate
// (per token, or per sequence as in GSPO), truncated importance sampling, KL to a reference
// policy, loss aggregation, entropy bonus and DAPO's overlong shaping. It returns the loss and
// its derivative with respect to each token's log-prob (and entropy): exactly the dlogprob /
// dentropy that Model::backward takes.
//
//   ObjectiveOptions opt = parse_objective_options(root.child("objective"));
//   ObjectiveInputs in{.cu_seqlens = cu, .mask = completion, .group = group, .reward = reward,
//                      .logprob = lp, .old_logprob = old_lp};
//   ObjectiveResult r = grpo_objective(opt, in);
//   model.backward(Tensor(r.dlogprob.data(), DType::f32, {T}), {}, 0.0f);
//
// Gradient accumulation over mini-batches: compute the advantages of the whole batch once
// (compute_advantages), pass each mini-batch's slice in ObjectiveInputs::advantage and the
// whole batch's counts in AggregationTotals; the mini-batch losses and gradients then sum to
// the whole batch's.
//
// The math, per completion i (a group g of G completions of one prompt) and completion token t:
//   advantage   grpo:    A_i = (r_i - mean_g) / (std_g + adv_eps)   std_g: sample std (n - 1,
//                        torch.std's default as in TRL and verl) or population std (grpo_std)
//               dr_grpo: A_i = r_i - mean_g
//               rloo:    A_i = r_i - mean of the other G - 1 rewards of the group (G = 1: 0)
//               A group whose rewards are all equal (or G = 1) gets A = 0 and is counted in
//               zero_variance_groups (DAPO's dynamic sampling drops such groups).
//   reward      r_i = reward_i + overlong_penalty_factor * overlong_penalty(L_i)
//                     [- beta * sum_t kl_t(old_logprob, ref_logprob)   when kl_placement = reward:
//                      a constant computed from the old policy, so the KL's gradient is NOT
//                      taken through the reward; it acts only through the advantages]
//   ratio       token: rho_t = exp(clamp(logp_t - old_t, +-max_log_ratio))
//               gspo:  rho_t = s_i = exp(clamp(mean_t(logp_t - old_t), +-max_log_ratio))
//   surrogate   pg_t = -min(rho_t A_i, clip(rho_t, 1 - clip_low, 1 + clip_high) A_i)
//   tis         w_t = min(exp(clamp(old_t - rollout_t, +-max_log_ratio)), tis_cap), a constant
//               (per token in both modes; under gspo the gradient is the exact one of this loss,
//               every token's weight reaching all tokens of its sequence through s_i)
//   per token   l_t = w_t pg_t + beta kl_t(logp_t, ref_t) [kl in loss] - entropy_coef H_t
//   loss        L = sum_t c_t l_t, the aggregation weight c_t being
//               token_mean:              1 / N            (N: counted tokens of the batch)
//               seq_mean_token_mean:     1 / (S L_i)      (S: sequences with >= 1 counted token)
//               seq_mean_token_sum_norm: 1 / (S max_completion_tokens)   (Dr. GRPO)
//   KL          k1 = logp - ref;  k2 = 0.5 (logp - ref)^2;  k3 = exp(d) - d - 1, d = ref - logp
//
// Numerics (NOTES): every exponent (the token and sequence log-ratios, the TIS log-ratio and
// k3's d) is clamped to [-max_log_ratio, max_log_ratio] (default 20: exp(20) ~ 4.9e8) before
// exp, so log-prob differences of any size give finite values; where a clamp is active the
// clamped quantity is constant, so its gradient is 0. k1 and k2 need no clamp. Sums run in
// double whatever the input type. Completions with no counted token contribute nothing and are
// not counted in S; an empty batch gives loss 0 and zero gradients.
//
// Which tokens count: mask_t = 1 (completion tokens; prompt positions are 0), and with
// overlong_filter, not a truncated completion (DAPO's overlong filtering: the loss ignores
// completions cut at the length limit; their rewards still enter their group's baseline).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace grpo {

class ConfigNode;

enum class AdvantageKind { grpo, dr_grpo, rloo };
enum class RatioKind { token, gspo };
enum class KlEstimator { k1, k2, k3 };
enum class KlPlacement { loss, reward };
enum class Aggregation { seq_mean_token_mean, token_mean, seq_mean_token_sum_norm };

// Config keys are the field names; enums are given by the names above (e.g. "dr_grpo").
struct ObjectiveOptions {
  AdvantageKind advantage = AdvantageKind::grpo;
  bool grpo_std_sample = true;        // "grpo_std": "sample" (n - 1) or "population" (n)
  double adv_eps = 1e-6;              // grpo: (r - mean) / (std + adv_eps); >= 0
  RatioKind ratio = RatioKind::token;
  double clip_low = 0.2;              // ratio lower bound 1 - clip_low; in [0, 1)
  double clip_high = 0.2;             // ratio upper bound 1 + clip_high; >= 0 (DAPO: 0.28)
  double tis_cap = 0.0;               // truncated IS cap C; 0 = off (needs rollout_logprob)
  double beta = 0.0;                  // KL coefficient; 0 = no KL, no reference log-probs
  KlEstimator kl_estimator = KlEstimator::k3;
  KlPlacement kl_placement = KlPlacement::loss;
  Aggregation aggregation = Aggregation::token_mean;
  int64_t max_completion_tokens = 0;  // L_max: seq_mean_token_sum_norm's constant, overlong's limit
  double entropy_coef = 0.0;          // loss -= entropy_coef * aggregated entropy (needs entropy)
  int64_t overlong_cache = 0;         // DAPO L_cache; 0 = no overlong shaping
  double overlong_penalty_factor = 1.0;
  bool overlong_filter = false;       // truncated completions contribute no loss
  double max_log_ratio = 20.0;        // the exponent clamp; in (0, 50]
};

// Reads the options from a config node (keys as the field names above) and checks them;
// unknown keys are errors. Messages name the key path: "objective.clip_low must be ...".
ObjectiveOptions parse_objective_options(ConfigNode& node);
// Throws grpo::Error naming the first bad field (`prefix` is prepended to its name).
void check_objective_options(const ObjectiveOptions& options, const std::string& prefix = "");

// One batch, packed like Model's PackedBatch: S sequences over T positions. Per-token arrays
// are [T]; `Real` is float (the model's outputs) or double (tests); math runs in double.
template <class Real>
struct ObjectiveInputsT {
  std::span<const int64_t> cu_seqlens;      // [S + 1]: sequence i is positions [cu[i], cu[i+1])
  std::span<const uint8_t> mask;            // [T]: 1 for completion tokens; empty = all 1
  std::span<const int64_t> group;           // [S]: group (prompt) id; any values, any order
  std::span<const double> reward;           // [S]
  std::span<const uint8_t> truncated;       // [S] or empty: completion hit the length limit
  std::span<const double> advantage;        // [S] or empty: precomputed (then group/reward unused)
  std::span<const Real> logprob;            // [T]: current policy (the learner's forward)
  std::span<const Real> old_logprob;        // [T]: old policy (recomputed at the step's start)
  std::span<const Real> rollout_logprob;    // [T] or empty: sampling log-probs (when tis_cap > 0)
  std::span<const Real> ref_logprob;        // [T] or empty: reference policy (when beta > 0)
  std::span<const Real> entropy;            // [T] or empty: per-token entropy (when entropy_coef != 0)
};
using ObjectiveInputs = ObjectiveInputsT<float>;

// The normalisers of the aggregation; 0 = this call's own counts.
struct AggregationTotals {
  int64_t seqs = 0;    // S: sequences with at least one counted token
  int64_t tokens = 0;  // N: counted tokens
};

struct AdvantageResult {
  std::vector<double> advantage;       // [S]
  std::vector<double> shaped_reward;   // [S]: reward + overlong penalty - KL (kl_placement reward)
  int64_t num_groups = 0;
  int64_t zero_variance_groups = 0;    // all rewards equal, or G = 1
  double reward_mean = 0, overlong_penalty_mean = 0;
  double adv_mean = 0, adv_std = 0, adv_min = 0, adv_max = 0;  // std: population, over sequences
};

// Advantages for S completions: group [S], reward [S], length [S] (completion tokens, for the
// overlong penalty), kl_sum [S] or empty (needed when kl_placement = reward and beta > 0: the
// sum over the completion of kl_value(old_logprob, ref_logprob), the sampling policy's KL as
// verl computes it; a constant, so no gradient flows through the reward).
AdvantageResult compute_advantages(const ObjectiveOptions& options, std::span<const int64_t> group,
                                   std::span<const double> reward, std::span<const int64_t> length,
                                   std::span<const double> kl_sum = {});

struct ObjectiveMetrics {
  double loss = 0;
  double policy_loss = 0;      // sum_t c_t w_t pg_t
  double kl = 0;               // sum_t c_t kl_t(logp, ref) (aggregated like the loss; 0 without ref)
  double entropy = 0;          // sum_t c_t H_t (0 without entropy); loss -= entropy_coef * entropy
  double clip_frac_low = 0;    // counted tokens with A < 0 and ratio < 1 - clip_low (no gradient)
  double clip_frac_high = 0;   // counted tokens with A > 0 and ratio > 1 + clip_high (no gradient)
  double ratio_mean = 0;       // mean over counted tokens of rho_t (token or sequence ratio)
  double approx_kl = 0;        // mean over counted tokens of (q - 1) - log q, q = pi / pi_old
  double tis_mean = 0;         // mean TIS weight (1 when off)
  int64_t num_seqs = 0;        // sequences with at least one counted token
  int64_t num_tokens = 0;      // counted tokens
  AdvantageResult advantages;  // empty vectors when the inputs carried advantages
};

template <class Real>
struct ObjectiveResultT {
  double loss = 0;
  std::vector<Real> dlogprob;  // [T]: d loss / d logprob_t (0 at uncounted positions)
  std::vector<Real> dentropy;  // [T] when inputs.entropy was given, else empty
  ObjectiveMetrics metrics;
};
using ObjectiveResult = ObjectiveResultT<float>;

// The loss and its gradients for one batch. Every input is checked (sizes, cu_seqlens,
// finite values at counted tokens, required optional arrays); errors name the field.
template <class Real>
ObjectiveResultT<Real> grpo_objective(const ObjectiveOptions& options, const ObjectiveInputsT<Real>& inputs,
                                      AggregationTotals totals = {});

// The KL estimator's value for one token (the exponent of k3 clamped to +-max_log_ratio).
double kl_value(KlEstimator estimator, double logprob, double ref_logprob, double max_log_ratio = 20.0);
// DAPO's soft overlong penalty for a completion of `length` tokens: 0 up to max - cache,
// then (max - cache - length) / cache down to -1 at max, and -1 beyond.
double overlong_penalty(int64_t length, int64_t max_completion_tokens, int64_t cache);

const char* name_of(AdvantageKind kind);
const char* name_of(RatioKind kind);
const char* name_of(KlEstimator estimator);
const char* name_of(KlPlacement placement);
const char* name_of(Aggregation aggregation);

}  // namespace grpo
