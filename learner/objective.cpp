#include "learner/objective.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "core/config.h"
#include "core/error.h"

namespace grpo {

namespace {

bool finite(double x) { return std::isfinite(x); }

// Rewards within this relative distance count as equal: sums of float reward components that
// agree up to rounding must still make a zero-variance group.
bool all_equal(std::span<const double> r) {
  auto [lo, hi] = std::minmax_element(r.begin(), r.end());
  return *hi - *lo <= 1e-12 * std::max({1.0, std::abs(*lo), std::abs(*hi)});
}

template <class Real>
void check_size(std::span<const Real> v, size_t expected, const char* field, const char* what) {
  GRPO_CHECK(v.size() == expected, "objective inputs: " << field << " has " << v.size() << " entries, expected "
                                                        << expected << " (" << what << ")");
}

// d/dlogp of the KL estimator at one token.
double kl_grad(KlEstimator estimator, double logp, double ref, double max_log_ratio) {
  switch (estimator) {
    case KlEstimator::k1: return 1.0;
    case KlEstimator::k2: return logp - ref;
    case KlEstimator::k3: {
      double d = ref - logp;
      if (std::abs(d) > max_log_ratio) return 0.0;  // clamped: constant
      return 1.0 - std::exp(d);
    }
  }
  GRPO_THROW("internal error: unknown KL estimator");
}

// The clipped surrogate -min(q A, clip(q) A) for one ratio q: its value, whether the clipped
// branch is the active one (then the ratio gets no gradient), and on which side.
struct Surrogate {
  double value;
  bool clipped_low, clipped_high;
};
Surrogate surrogate(double q, double a, const ObjectiveOptions& o) {
  double lo = 1.0 - o.clip_low, hi = 1.0 + o.clip_high;
  Surrogate s{-q * a, false, false};
  if (a > 0 && q > hi) s = {-hi * a, false, true};
  if (a < 0 && q < lo) s = {-lo * a, true, false};
  return s;
}

template <class Real>
void check_finite(std::span<const Real> v, size_t t, size_t seq, const char* field) {
  GRPO_CHECK(finite(double(v[t])), "objective inputs: " << field << "[" << t << "] is " << double(v[t])
                                                        << " (sequence " << seq << ")");
}

}  // namespace

const char* name_of(AdvantageKind kind) {
  switch (kind) {
    case AdvantageKind::grpo: return "grpo";
    case AdvantageKind::dr_grpo: return "dr_grpo";
    case AdvantageKind::rloo: return "rloo";
  }
  return "?";
}
const char* name_of(RatioKind kind) { return kind == RatioKind::token ? "token" : "gspo"; }
const char* name_of(KlEstimator estimator) {
  switch (estimator) {
    case KlEstimator::k1: return "k1";
    case KlEstimator::k2: return "k2";
    case KlEstimator::k3: return "k3";
  }
  return "?";
}
const char* name_of(KlPlacement placement) { return placement == KlPlacement::loss ? "loss" : "reward"; }
const char* name_of(Aggregation aggregation) {
  switch (aggregation) {
    case Aggregation::seq_mean_token_mean: return "seq_mean_token_mean";
    case Aggregation::token_mean: return "token_mean";
    case Aggregation::seq_mean_token_sum_norm: return "seq_mean_token_sum_norm";
  }
  return "?";
}

void check_objective_options(const ObjectiveOptions& o, const std::string& prefix) {
  GRPO_CHECK(o.adv_eps >= 0 && finite(o.adv_eps), prefix << "adv_eps must be >= 0, got " << o.adv_eps);
  GRPO_CHECK(o.clip_low >= 0 && o.clip_low < 1, prefix << "clip_low must be in [0, 1), got " << o.clip_low);
  GRPO_CHECK(o.clip_high >= 0 && finite(o.clip_high), prefix << "clip_high must be >= 0, got " << o.clip_high);
  GRPO_CHECK(o.tis_cap >= 0 && finite(o.tis_cap), prefix << "tis_cap must be >= 0 (0: off), got " << o.tis_cap);
  GRPO_CHECK(o.beta >= 0 && finite(o.beta), prefix << "beta must be >= 0, got " << o.beta);
  GRPO_CHECK(finite(o.entropy_coef), prefix << "entropy_coef must be a finite number, got " << o.entropy_coef);
  GRPO_CHECK(o.max_completion_tokens >= 0,
             prefix << "max_completion_tokens must be >= 0, got " << o.max_completion_tokens);
  GRPO_CHECK(o.aggregation != Aggregation::seq_mean_token_sum_norm || o.max_completion_tokens > 0,
             prefix << "max_completion_tokens must be > 0 for aggregation seq_mean_token_sum_norm (its constant "
                       "normaliser)");
  GRPO_CHECK(o.overlong_cache >= 0, prefix << "overlong_cache must be >= 0 (0: off), got " << o.overlong_cache);
  GRPO_CHECK(o.overlong_cache == 0 || (o.max_completion_tokens > 0 && o.overlong_cache <= o.max_completion_tokens),
             prefix << "overlong_cache must be <= max_completion_tokens (> 0), got " << o.overlong_cache << " and "
                    << o.max_completion_tokens);
  GRPO_CHECK(o.overlong_penalty_factor >= 0 && finite(o.overlong_penalty_factor),
             prefix << "overlong_penalty_factor must be >= 0, got " << o.overlong_penalty_factor);
  GRPO_CHECK(o.max_log_ratio > 0 && o.max_log_ratio <= 50,
             prefix << "max_log_ratio must be in (0, 50], got " << o.max_log_ratio);
}

ObjectiveOptions parse_objective_options(ConfigNode& node) {
  ObjectiveOptions o;
  std::string adv = node.get_choice("advantage", name_of(o.advantage), {"grpo", "dr_grpo", "rloo"});
  o.advantage = adv == "grpo" ? AdvantageKind::grpo : adv == "dr_grpo" ? AdvantageKind::dr_grpo : AdvantageKind::rloo;
  o.grpo_std_sample = node.get_choice("grpo_std", "sample", {"sample", "population"}) == "sample";
  o.adv_eps = node.get<double>("adv_eps", o.adv_eps);
  o.ratio = node.get_choice("ratio", name_of(o.ratio), {"token", "gspo"}) == "token" ? RatioKind::token : RatioKind::gspo;
  o.clip_low = node.get<double>("clip_low", o.clip_low);
  o.clip_high = node.get<double>("clip_high", o.clip_high);
  o.tis_cap = node.get<double>("tis_cap", o.tis_cap);
  o.beta = node.get<double>("beta", o.beta);
  std::string est = node.get_choice("kl_estimator", name_of(o.kl_estimator), {"k1", "k2", "k3"});
  o.kl_estimator = est == "k1" ? KlEstimator::k1 : est == "k2" ? KlEstimator::k2 : KlEstimator::k3;
  o.kl_placement = node.get_choice("kl_placement", name_of(o.kl_placement), {"loss", "reward"}) == "loss"
                       ? KlPlacement::loss
                       : KlPlacement::reward;
  std::string agg = node.get_choice("aggregation", name_of(o.aggregation),
                                    {"seq_mean_token_mean", "token_mean", "seq_mean_token_sum_norm"});
  o.aggregation = agg == "seq_mean_token_mean" ? Aggregation::seq_mean_token_mean
                  : agg == "token_mean"        ? Aggregation::token_mean
                                               : Aggregation::seq_mean_token_sum_norm;
  o.max_completion_tokens = node.get<int64_t>("max_completion_tokens", o.max_completion_tokens);
  o.entropy_coef = node.get<double>("entropy_coef", o.entropy_coef);
  o.overlong_cache = node.get<int64_t>("overlong_cache", o.overlong_cache);
  o.overlong_penalty_factor = node.get<double>("overlong_penalty_factor", o.overlong_penalty_factor);
  o.overlong_filter = node.get<bool>("overlong_filter", o.overlong_filter);
  o.max_log_ratio = node.get<double>("max_log_ratio", o.max_log_ratio);
  check_objective_options(o, node.key_path(""));
  node.finish();
  return o;
}

double kl_value(KlEstimator estimator, double logp, double ref, double max_log_ratio) {
  switch (estimator) {
    case KlEstimator::k1: return logp - ref;
    case KlEstimator::k2: return 0.5 * (logp - ref) * (logp - ref);
    case KlEstimator::k3: {
      double d = std::clamp(ref - logp, -max_log_ratio, max_log_ratio);
      return std::exp(d) - d - 1.0;
    }
  }
  GRPO_THROW("internal error: unknown KL estimator");
}

// DAPO (Yu et al. 2025, arXiv:2503.14476, eq. 13, "Soft Overlong Punishment"):
//   R_length(y) = 0                                  |y| <= L_max - L_cache
//               = ((L_max - L_cache) - |y|) / L_cache   L_max - L_cache < |y| <= L_max
//               = -1                                 L_max < |y|
// added to the rule-based reward; the same three cases are written out in ms-swift's DAPO
// guide (docs/source_en/Instruction/GRPO/AdvancedResearch/DAPO.md, corrected in
// modelscope/ms-swift PR 5557). At |y| = L_max the middle case is already -1.
double overlong_penalty(int64_t length, int64_t max_tokens, int64_t cache) {
  if (cache <= 0) return 0.0;
  if (length <= max_tokens - cache) return 0.0;
  if (length <= max_tokens) return double(max_tokens - cache - length) / double(cache);
  return -1.0;
}

AdvantageResult compute_advantages(const ObjectiveOptions& o, std::span<const int64_t> group,
                                   std::span<const double> reward, std::span<const int64_t> length,
                                   std::span<const double> kl_sum) {
  const size_t S = group.size();
  check_size(reward, S, "reward", "one per sequence, like group");
  check_size(length, S, "length", "one per sequence, like group");
  if (!kl_sum.empty()) check_size(kl_sum, S, "kl_sum", "one per sequence, or empty");
  const bool kl_in_reward = o.beta > 0 && o.kl_placement == KlPlacement::reward;
  GRPO_CHECK(!kl_in_reward || !kl_sum.empty(), "objective inputs: kl_placement reward with beta > 0 needs kl_sum");

  AdvantageResult res;
  res.shaped_reward.resize(S);
  res.advantage.assign(S, 0.0);
  for (size_t i = 0; i < S; ++i) {
    GRPO_CHECK(finite(reward[i]), "objective inputs: reward[" << i << "] is " << reward[i]);
    GRPO_CHECK(length[i] >= 0, "objective inputs: length[" << i << "] is " << length[i]);
    double pen = o.overlong_penalty_factor * overlong_penalty(length[i], o.max_completion_tokens, o.overlong_cache);
    double r = reward[i] + pen;
    // The KL penalty enters as a constant: no gradient is taken through the reward.
    if (kl_in_reward) r -= o.beta * kl_sum[i];
    GRPO_CHECK(finite(r), "objective inputs: shaped reward of sequence " << i << " is " << r);
    res.shaped_reward[i] = r;
    res.reward_mean += reward[i];
    res.overlong_penalty_mean += pen;
  }

  // Members of each group, in order of appearance.
  std::unordered_map<int64_t, size_t> slot;
  std::vector<std::vector<size_t>> members;
  for (size_t i = 0; i < S; ++i) {
    auto [it, added] = slot.emplace(group[i], members.size());
    if (added) members.emplace_back();
    members[it->second].push_back(i);
  }
  res.num_groups = int64_t(members.size());

  std::vector<double> r;
  for (const auto& m : members) {
    r.clear();
    for (size_t i : m) r.push_back(res.shaped_reward[i]);
    const double G = double(r.size());
    if (r.size() == 1 || all_equal(r)) {
      ++res.zero_variance_groups;  // advantages stay 0
      continue;
    }
    double sum = 0;
    for (double x : r) sum += x;
    const double mean = sum / G;
    double ss = 0;
    for (double x : r) ss += (x - mean) * (x - mean);
    const double std = std::sqrt(ss / (o.grpo_std_sample ? G - 1 : G));
    for (size_t k = 0; k < m.size(); ++k) {
      double a = 0;
      switch (o.advantage) {
        case AdvantageKind::grpo: a = (r[k] - mean) / (std + o.adv_eps); break;
        case AdvantageKind::dr_grpo: a = r[k] - mean; break;
        case AdvantageKind::rloo: a = r[k] - (sum - r[k]) / (G - 1); break;
      }
      res.advantage[m[k]] = a;
    }
  }

  if (S > 0) {
    res.reward_mean /= double(S);
    res.overlong_penalty_mean /= double(S);
    double sum = 0, ss = 0;
    res.adv_min = res.adv_max = res.advantage[0];
    for (double a : res.advantage) {
      sum += a;
      res.adv_min = std::min(res.adv_min, a);
      res.adv_max = std::max(res.adv_max, a);
    }
    res.adv_mean = sum / double(S);
    for (double a : res.advantage) ss += (a - res.adv_mean) * (a - res.adv_mean);
    res.adv_std = std::sqrt(ss / double(S));
  }
  return res;
}

namespace {

// Sizes and boundaries of the inputs (values are checked where they are read).
template <class Real>
void check_inputs(const ObjectiveOptions& o, const ObjectiveInputsT<Real>& in) {
  GRPO_CHECK(!in.cu_seqlens.empty(), "objective inputs: cu_seqlens is empty (expected S + 1 entries, the first 0)");
  const size_t S = in.cu_seqlens.size() - 1;
  const size_t T = in.logprob.size();
  GRPO_CHECK(in.cu_seqlens[0] == 0, "objective inputs: cu_seqlens[0] is " << in.cu_seqlens[0] << ", expected 0");
  for (size_t i = 0; i < S; ++i)
    GRPO_CHECK(in.cu_seqlens[i + 1] >= in.cu_seqlens[i],
               "objective inputs: cu_seqlens decreases at " << i + 1 << " (" << in.cu_seqlens[i] << " then "
                                                            << in.cu_seqlens[i + 1] << ")");
  GRPO_CHECK(in.cu_seqlens[S] == int64_t(T), "objective inputs: cu_seqlens ends at " << in.cu_seqlens[S]
                                                 << " but logprob has " << T << " entries");
  if (!in.mask.empty()) check_size(in.mask, T, "mask", "one per token, or empty");
  check_size(in.old_logprob, T, "old_logprob", "one per token");
  if (o.tis_cap > 0) check_size(in.rollout_logprob, T, "rollout_logprob", "one per token: tis_cap > 0 needs it");
  if (o.beta > 0) check_size(in.ref_logprob, T, "ref_logprob", "one per token: beta > 0 needs it");
  if (o.entropy_coef != 0 || !in.entropy.empty())
    check_size(in.entropy, T, "entropy", "one per token: entropy_coef != 0 needs it");
  if (!in.truncated.empty()) check_size(in.truncated, S, "truncated", "one per sequence, or empty");
  if (!in.advantage.empty()) {
    check_size(in.advantage, S, "advantage", "one per sequence, or empty");
  } else {
    check_size(in.group, S, "group", "one per sequence");
    check_size(in.reward, S, "reward", "one per sequence");
  }
}

}  // namespace

template <class Real>
ObjectiveResultT<Real> grpo_objective(const ObjectiveOptions& o, const ObjectiveInputsT<Real>& in,
                                      AggregationTotals totals) {
  check_objective_options(o);
  check_inputs(o, in);
  const size_t S = in.cu_seqlens.size() - 1;
  const size_t T = in.logprob.size();
  const bool tis = o.tis_cap > 0;
  const bool use_ref = o.beta > 0;
  const bool kl_loss = use_ref && o.kl_placement == KlPlacement::loss;
  auto is_completion = [&](size_t t) { return in.mask.empty() || in.mask[t] != 0; };
  auto filtered = [&](size_t i) { return o.overlong_filter && !in.truncated.empty() && in.truncated[i] != 0; };

  // Completion lengths (for the overlong penalty), counted tokens, and value checks.
  std::vector<int64_t> length(S, 0), counted(S, 0);
  for (size_t i = 0; i < S; ++i) {
    for (int64_t t = in.cu_seqlens[i]; t < in.cu_seqlens[i + 1]; ++t) {
      if (!is_completion(size_t(t))) continue;
      ++length[i];
      check_finite(in.logprob, size_t(t), i, "logprob");
      check_finite(in.old_logprob, size_t(t), i, "old_logprob");
      if (tis) check_finite(in.rollout_logprob, size_t(t), i, "rollout_logprob");
      if (use_ref) check_finite(in.ref_logprob, size_t(t), i, "ref_logprob");
      if (!in.entropy.empty()) check_finite(in.entropy, size_t(t), i, "entropy");
    }
    if (!filtered(i)) counted[i] = length[i];
  }

  ObjectiveResultT<Real> res;
  ObjectiveMetrics& m = res.metrics;
  std::vector<double> adv;
  if (!in.advantage.empty()) {
    for (size_t i = 0; i < S; ++i)
      GRPO_CHECK(finite(in.advantage[i]), "objective inputs: advantage[" << i << "] is " << in.advantage[i]);
    adv.assign(in.advantage.begin(), in.advantage.end());
  } else {
    std::vector<double> kl_sum;
    if (use_ref && o.kl_placement == KlPlacement::reward) {
      // KL of the policy that sampled (the old one) against the reference: data, not a
      // function of the current log-probs, so it is the same over mu passes and mini-batches.
      kl_sum.assign(S, 0.0);
      for (size_t i = 0; i < S; ++i)
        for (int64_t t = in.cu_seqlens[i]; t < in.cu_seqlens[i + 1]; ++t)
          if (is_completion(size_t(t)))
            kl_sum[i] += kl_value(o.kl_estimator, in.old_logprob[t], in.ref_logprob[t], o.max_log_ratio);
    }
    m.advantages = compute_advantages(o, in.group, in.reward, length, kl_sum);
    adv = m.advantages.advantage;
  }

  for (size_t i = 0; i < S; ++i) {
    m.num_tokens += counted[i];
    m.num_seqs += counted[i] > 0 ? 1 : 0;
  }
  GRPO_CHECK(totals.seqs == 0 || totals.seqs >= m.num_seqs,
             "objective totals: seqs is " << totals.seqs << ", below this batch's " << m.num_seqs);
  GRPO_CHECK(totals.tokens == 0 || totals.tokens >= m.num_tokens,
             "objective totals: tokens is " << totals.tokens << ", below this batch's " << m.num_tokens);
  const double n_seqs = double(totals.seqs > 0 ? totals.seqs : m.num_seqs);
  const double n_tokens = double(totals.tokens > 0 ? totals.tokens : m.num_tokens);

  std::vector<double> grad(T, 0.0);  // d loss / d logprob, converted to Real at the end
  if (!in.entropy.empty()) res.dentropy.assign(T, Real(0));
  const double c_max = o.max_log_ratio;
  double clipped_low = 0, clipped_high = 0, ratio_sum = 0, approx_kl = 0, tis_sum = 0;

  for (size_t i = 0; i < S; ++i) {
    if (counted[i] == 0) continue;
    const int64_t begin = in.cu_seqlens[i], end = in.cu_seqlens[i + 1];
    const double a = adv[i];
    // The aggregation weight, the same for every counted token of this sequence.
    double c = 0;
    switch (o.aggregation) {
      case Aggregation::token_mean: c = 1.0 / n_tokens; break;
      case Aggregation::seq_mean_token_mean: c = 1.0 / (n_seqs * double(counted[i])); break;
      case Aggregation::seq_mean_token_sum_norm: c = 1.0 / (n_seqs * double(o.max_completion_tokens)); break;
    }
    // GSPO's sequence ratio s = exp(mean log-ratio over the counted tokens).
    double seq_lr = 0;
    if (o.ratio == RatioKind::gspo) {
      for (int64_t t = begin; t < end; ++t)
        if (is_completion(size_t(t))) seq_lr += double(in.logprob[t]) - double(in.old_logprob[t]);
      seq_lr /= double(counted[i]);
    }
    const bool seq_clamped = std::abs(seq_lr) > c_max;
    const double s = std::exp(std::clamp(seq_lr, -c_max, c_max));
    const Surrogate seq_pg = surrogate(s, a, o);
    double seq_weight = 0;  // sum_t c w_t over the sequence: d loss / d pg for GSPO

    for (int64_t t = begin; t < end; ++t) {
      if (!is_completion(size_t(t))) continue;
      const double lp = in.logprob[t], old = in.old_logprob[t];
      const double lr = lp - old;
      const bool tok_clamped = std::abs(lr) > c_max;
      const double q = std::exp(std::clamp(lr, -c_max, c_max));
      approx_kl += (q - 1.0) - std::clamp(lr, -c_max, c_max);
      // The TIS weight is a constant: it depends on old and rollout log-probs only.
      const double w =
          tis ? std::min(std::exp(std::clamp(old - double(in.rollout_logprob[t]), -c_max, c_max)), o.tis_cap) : 1.0;
      tis_sum += w;

      const double rho = o.ratio == RatioKind::token ? q : s;
      const Surrogate pg = o.ratio == RatioKind::token ? surrogate(q, a, o) : seq_pg;
      ratio_sum += rho;
      clipped_low += pg.clipped_low ? 1 : 0;
      clipped_high += pg.clipped_high ? 1 : 0;
      m.policy_loss += c * w * pg.value;

      double g = 0;  // d loss / d logprob_t
      if (o.ratio == RatioKind::token) {
        if (!pg.clipped_low && !pg.clipped_high && !tok_clamped) g = -c * w * a * q;
      } else {
        seq_weight += c * w;
      }
      if (use_ref) {
        const double ref = in.ref_logprob[t];
        const double kl = kl_value(o.kl_estimator, lp, ref, c_max);
        m.kl += c * kl;
        if (kl_loss) g += c * o.beta * kl_grad(o.kl_estimator, lp, ref, c_max);
      }
      if (!in.entropy.empty()) {
        m.entropy += c * double(in.entropy[t]);
        res.dentropy[t] = Real(-o.entropy_coef * c);
      }
      grad[t] = g;
    }

    // GSPO: the loss depends on logprob_t only through s; ds/dlogprob_t = s / counted.
    if (o.ratio == RatioKind::gspo && !seq_pg.clipped_low && !seq_pg.clipped_high && !seq_clamped) {
      const double g = seq_weight * (-a) * s / double(counted[i]);
      for (int64_t t = begin; t < end; ++t)
        if (is_completion(size_t(t))) grad[t] += g;
    }
  }

  res.dlogprob.assign(grad.begin(), grad.end());
  res.loss = m.loss = m.policy_loss + (kl_loss ? o.beta * m.kl : 0.0) - o.entropy_coef * m.entropy;
  if (m.num_tokens > 0) {
    const double n = double(m.num_tokens);
    m.clip_frac_low = clipped_low / n;
    m.clip_frac_high = clipped_high / n;
    m.ratio_mean = ratio_sum / n;
    m.approx_kl = approx_kl / n;
    m.tis_mean = tis_sum / n;
  }
  return res;
}

template ObjectiveResultT<float> grpo_objective(const ObjectiveOptions&, const ObjectiveInputsT<float>&,
                                                AggregationTotals);
template ObjectiveResultT<double> grpo_objective(const ObjectiveOptions&, const ObjectiveInputsT<double>&,
                                                 AggregationTotals);

}  // namespace grpo
