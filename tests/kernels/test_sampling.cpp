// Token sampling (Ops::sample) against fp64 references written here: the kept sets of the
// top-k / top-p / min-p filters, the exact inverse-CDF draw from the first Philox word,
// chi-square goodness of fit of the draw frequencies, and the returned log-probs.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include "core/rng.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

struct Draws {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

// Samples B = params.size() rows; `logits` holds the rows back to back.
Draws run(Ops& ops, const std::vector<float>& logits, int64_t V, const std::vector<SamplingParams>& params) {
  const int64_t B = int64_t(params.size());
  HostF l({B, V});
  l.v = logits;
  HostI tokens({B});
  HostF logprobs({B});
  std::fill(tokens.v.begin(), tokens.v.end(), -7);
  test::poison(logprobs.v);
  ops.sample(tokens, logprobs, l, params);
  return {tokens.v, logprobs.v};
}

// N copies of one row, draw i at Philox offset i.
Draws run_offsets(Ops& ops, const std::vector<float>& row, const SamplingParams& p, int n) {
  std::vector<float> logits;
  std::vector<SamplingParams> params;
  for (int i = 0; i < n; ++i) {
    logits.insert(logits.end(), row.begin(), row.end());
    params.push_back(p);
    params.back().offset = uint64_t(i);
  }
  return run(ops, logits, int64_t(row.size()), params);
}

// ---- fp64 reference ------------------------------------------------------------------------

// softmax(l / temperature) in f64.
std::vector<double> ref_softmax(const std::vector<float>& l, double temperature) {
  const double m = *std::max_element(l.begin(), l.end());
  std::vector<double> p(l.size());
  double z = 0;
  for (size_t j = 0; j < l.size(); ++j) z += p[j] = std::exp((l[j] - m) / temperature);
  for (double& x : p) x /= z;
  return p;
}
double ref_logprob(const std::vector<float>& l, double temperature, int32_t tok) {
  return std::log(ref_softmax(l, temperature)[size_t(tok)]);
}

// Token ids by descending logit, ties to the lower id.
std::vector<int32_t> ref_order(const std::vector<float>& l) {
  std::vector<int32_t> o(l.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](int32_t a, int32_t b) { return l[size_t(a)] > l[size_t(b)]; });
  return o;
}

// The kept tokens, in order, and their renormalised probabilities.
struct Kept {
  std::vector<int32_t> ids;
  std::vector<double> probs;
};
Kept ref_kept(const std::vector<float>& l, const SamplingParams& sp) {
  const std::vector<double> p = ref_softmax(l, sp.temperature);
  std::vector<int32_t> ids = ref_order(l);
  if (sp.top_k > 0 && sp.top_k < int64_t(ids.size())) ids.resize(size_t(sp.top_k));
  double mass = 0;
  for (int32_t j : ids) mass += p[size_t(j)];
  if (sp.top_p < 1.0f) {
    double c = 0;
    size_t n = 0;
    while (n < ids.size() && c / mass < sp.top_p) c += p[size_t(ids[n++])];
    ids.resize(std::max<size_t>(n, 1));
  }
  const double pmax = p[size_t(ids[0])];
  std::erase_if(ids, [&](int32_t j) { return p[size_t(j)] < sp.min_p * pmax; });
  Kept k{ids, {}};
  double kept_mass = 0;
  for (int32_t j : ids) kept_mass += p[size_t(j)];
  for (int32_t j : ids) k.probs.push_back(p[size_t(j)] / kept_mass);
  return k;
}

// A top_p halfway between the mass of the first n-1 and the first n tokens of the order, so
// that exactly n are kept with a wide margin against f32 rounding.
float top_p_keeping(const std::vector<float>& l, double temperature, size_t n) {
  const std::vector<double> p = ref_softmax(l, temperature);
  const std::vector<int32_t> o = ref_order(l);
  double before = 0;
  for (size_t i = 0; i + 1 < n; ++i) before += p[size_t(o[i])];
  return float(before + 0.5 * p[size_t(o[n - 1])]);
}

// Pearson chi-square of observed counts against probabilities over the listed ids; a draw
// outside them makes it infinite.
double chi_square(const std::vector<int32_t>& tokens, const std::vector<int32_t>& ids,
                  const std::vector<double>& probs) {
  std::vector<double> count(ids.size(), 0.0);
  for (int32_t t : tokens) {
    auto it = std::find(ids.begin(), ids.end(), t);
    if (it == ids.end()) return INFINITY;
    count[size_t(it - ids.begin())] += 1;
  }
  double chi2 = 0;
  const double n = double(tokens.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const double expected = n * probs[i];
    chi2 += (count[i] - expected) * (count[i] - expected) / expected;
  }
  return chi2;
}

std::vector<float> random_row(int64_t V, uint64_t seed, float stddev) {
  std::vector<float> l(static_cast<size_t>(V));
  test::fill_normal(l, seed, stddev);
  return l;
}

SamplingParams params_of(float temperature, int64_t top_k, float top_p, float min_p, uint64_t seed,
                         uint64_t stream = 0, uint64_t offset = 0) {
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  p.stream = stream;
  p.offset = offset;
  return p;
}

// ---- tests ---------------------------------------------------------------------------------

TEST(Sampling, SameSeedGivesSameDrawsWhateverTheBatch) {
  auto ops = make_cpu_ops();
  const int64_t V = 1000, B = 8;
  std::vector<float> logits;
  std::vector<SamplingParams> params;
  for (int64_t b = 0; b < B; ++b) {
    const auto row = random_row(V, 100 + uint64_t(b), 2.0f);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  params.push_back(params_of(1.0f, 0, 1.0f, 0.0f, 11, 0, 0));
  params.push_back(params_of(0.7f, 50, 1.0f, 0.0f, 11, 1, 3));
  params.push_back(params_of(1.3f, 0, 0.9f, 0.0f, 12, 2, 5));
  params.push_back(params_of(1.0f, 0, 1.0f, 0.05f, 13, 3, 9));
  params.push_back(params_of(0.0f, 0, 1.0f, 0.0f, 14, 4, 1));
  params.push_back(params_of(0.9f, 20, 0.8f, 0.02f, 15, 5, 2));
  params.push_back(params_of(2.0f, 1, 1.0f, 0.0f, 16, 6, 7));
  params.push_back(params_of(1.0f, 0, 1.0f, 0.0f, 17, 7, 1u << 20));
  const Draws a = run(*ops, logits, V, params);
  const Draws b = run(*ops, logits, V, params);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(a.logprobs, b.logprobs);
  // Each row alone, and the batch in reverse order, give the same token and log-prob.
  std::vector<float> rev_logits;
  std::vector<SamplingParams> rev_params;
  for (int64_t r = B - 1; r >= 0; --r) {
    rev_logits.insert(rev_logits.end(), logits.begin() + r * V, logits.begin() + (r + 1) * V);
    rev_params.push_back(params[size_t(r)]);
  }
  const Draws rev = run(*ops, rev_logits, V, rev_params);
  for (int64_t r = 0; r < B; ++r) {
    const std::vector<float> row(logits.begin() + r * V, logits.begin() + (r + 1) * V);
    const Draws alone = run(*ops, row, V, {params[size_t(r)]});
    EXPECT_EQ(alone.tokens[0], a.tokens[size_t(r)]) << "row " << r;
    EXPECT_EQ(alone.logprobs[0], a.logprobs[size_t(r)]) << "row " << r;
    EXPECT_EQ(rev.tokens[size_t(B - 1 - r)], a.tokens[size_t(r)]) << "row " << r;
  }
}

TEST(Sampling, DifferentStreamsSeedsAndOffsetsGiveDifferentDraws) {
  auto ops = make_cpu_ops();
  const std::vector<float> flat(1000, 0.0f);  // uniform over 1000 tokens
  const int n = 64;
  const Draws s1 = run_offsets(*ops, flat, params_of(1.0f, 0, 1.0f, 0.0f, 5, 1), n);
  const Draws s2 = run_offsets(*ops, flat, params_of(1.0f, 0, 1.0f, 0.0f, 5, 2), n);
  const Draws k2 = run_offsets(*ops, flat, params_of(1.0f, 0, 1.0f, 0.0f, 6, 1), n);
  // Independent uniform draws over 1000 tokens agree at a position with probability 1e-3:
  // expected 0.064 coincidences in 64 positions, so 4 or more fail by chance with p < 1e-6.
  int same_stream = 0, same_seed = 0;
  for (int i = 0; i < n; ++i) {
    same_stream += s1.tokens[size_t(i)] == s2.tokens[size_t(i)];
    same_seed += s1.tokens[size_t(i)] == k2.tokens[size_t(i)];
  }
  EXPECT_LT(same_stream, 4);
  EXPECT_LT(same_seed, 4);
  // Along the offsets of one stream the draws vary too.
  EXPECT_GT(std::set<int32_t>(s1.tokens.begin(), s1.tokens.end()).size(), size_t(50));
}

TEST(Sampling, DrawIsInverseCdfOfFirstPhiloxWordInDescendingOrder) {
  auto ops = make_cpu_ops();
  // Ids 1 and 4 tie: the order is 2, 1, 4, 0, 5, 3 (descending logit, ties to the lower id),
  // which a backend reproducing the draw must walk in exactly this order.
  const std::vector<float> l = {0.1f, 1.0f, 2.0f, -1.0f, 1.0f, -0.5f};
  const SamplingParams p = params_of(0.9f, 0, 1.0f, 0.0f, 0x1234abcd5678ull, 42);
  const int n = 2000;
  const Draws d = run_offsets(*ops, l, p, n);
  const std::vector<double> prob = ref_softmax(l, p.temperature);
  const std::vector<int32_t> order = {2, 1, 4, 0, 5, 3};
  ASSERT_EQ(ref_order(l), order);
  int checked = 0;
  for (int i = 0; i < n; ++i) {
    const double u = uniform_from_u32(philox_block(p.seed, p.stream, uint64_t(i))[0]);
    double c = 0, margin = 1;
    int32_t want = -1;
    for (int32_t j : order) {
      margin = std::min(margin, std::fabs(u - (c + prob[size_t(j)])));
      c += prob[size_t(j)];
      if (want < 0 && u < c) want = j;
    }
    // f32 probabilities put the CDF boundaries within ~1e-6 of the fp64 ones.
    if (margin < 1e-5) continue;
    ++checked;
    EXPECT_EQ(d.tokens[size_t(i)], want) << "offset " << i << ", u = " << u;
  }
  EXPECT_GT(checked, n * 9 / 10);
}

TEST(Sampling, GreedyPicksTheFirstMaximumWithSoftmaxLogprob) {
  auto ops = make_cpu_ops();
  std::vector<float> l = random_row(300, 3, 1.0f);
  l[7] = 5.0f;
  l[123] = 5.0f;  // a tie: the lower id wins
  std::vector<SamplingParams> params;
  std::vector<float> logits;
  for (uint64_t s = 0; s < 6; ++s) {
    // Seeds and filters do not matter for greedy rows.
    params.push_back(params_of(0.0f, int64_t(s), s % 2 ? 0.5f : 1.0f, s % 3 ? 0.1f : 0.0f, s, s, s));
    logits.insert(logits.end(), l.begin(), l.end());
  }
  const Draws d = run(*ops, logits, 300, params);
  const double want = ref_logprob(l, 1.0, 7);
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_EQ(d.tokens[i], 7);
    // f32 exp terms summed in f64: ~1e-7 relative in the normaliser.
    EXPECT_NEAR(d.logprobs[i], want, 1e-6);
  }
}

TEST(Sampling, TopKNeverReturnsTokensOutsideTheTopK) {
  auto ops = make_cpu_ops();
  std::vector<float> l = random_row(200, 4, 1.0f);
  const std::vector<int32_t> o = ref_order(l);
  // Make the 5th and 6th largest tie: with top_k = 5 only the lower id of the two is kept.
  const int32_t lo = std::min(o[4], o[5]), hi = std::max(o[4], o[5]);
  l[size_t(lo)] = l[size_t(hi)] = l[size_t(o[4])];
  const std::set<int32_t> top(o.begin(), o.begin() + 4);
  const Draws d = run_offsets(*ops, l, params_of(3.0f, 5, 1.0f, 0.0f, 77, 3), 4000);
  std::set<int32_t> seen;
  for (int32_t t : d.tokens) {
    EXPECT_TRUE(top.count(t) || t == lo) << "token " << t << " is outside the top 5";
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), size_t(5));  // temperature 3 flattens: every kept token shows up
  EXPECT_FALSE(seen.count(hi));
}

TEST(Sampling, TopPNeverReturnsTokensOutsideTheNucleus) {
  auto ops = make_cpu_ops();
  const std::vector<float> l = random_row(100, 5, 2.0f);
  const float temp = 0.8f;
  for (size_t n : {size_t(1), size_t(3), size_t(10)}) {
    const float top_p = top_p_keeping(l, temp, n);
    const Kept k = ref_kept(l, params_of(temp, 0, top_p, 0.0f, 0));
    ASSERT_EQ(k.ids.size(), n);
    const std::set<int32_t> nucleus(k.ids.begin(), k.ids.end());
    // Many seeds (one draw each) rather than many offsets of one seed.
    std::vector<float> logits;
    std::vector<SamplingParams> params;
    for (uint64_t s = 0; s < 3000; ++s) {
      logits.insert(logits.end(), l.begin(), l.end());
      params.push_back(params_of(temp, 0, top_p, 0.0f, 1000 + s, s % 7));
    }
    const Draws d = run(*ops, logits, 100, params);
    std::set<int32_t> seen;
    for (int32_t t : d.tokens) {
      EXPECT_TRUE(nucleus.count(t)) << "top_p " << top_p << ": token " << t << " is outside the nucleus";
      seen.insert(t);
    }
    EXPECT_EQ(seen.size(), std::min(n, nucleus.size())) << "top_p " << top_p;
  }
}

TEST(Sampling, MinPNeverReturnsTokensBelowTheThreshold) {
  auto ops = make_cpu_ops();
  // Probability ratios to the most likely token, none within 1% of the threshold 0.1.
  const std::vector<double> ratio = {0.3, 1.0, 0.05, 0.12, 0.02, 0.5, 0.08, 0.2, 0.001, 0.15};
  std::vector<float> l;
  for (double r : ratio) l.push_back(float(std::log(r)));
  const Draws d = run_offsets(*ops, l, params_of(1.0f, 0, 1.0f, 0.1f, 8, 1), 5000);
  std::set<int32_t> seen;
  for (int32_t t : d.tokens) {
    EXPECT_GE(ratio[size_t(t)], 0.1) << "token " << t << " is below min_p";
    seen.insert(t);
  }
  EXPECT_EQ(seen.size(), size_t(6));
  // min_p is relative to the most likely token at the given temperature: at temperature 2 the
  // ratios become sqrt(ratio), so 0.02 (-> 0.141) passes and 0.001 (-> 0.032) does not.
  const Draws d2 = run_offsets(*ops, l, params_of(2.0f, 0, 1.0f, 0.1f, 8, 2), 5000);
  for (int32_t t : d2.tokens) EXPECT_GE(std::sqrt(ratio[size_t(t)]), 0.1) << "token " << t;
}

// Pearson chi-square with df = kept - 1 at significance 0.001; critical values from the
// chi-square quantile table: df 4 -> 18.467, df 5 -> 20.515, df 9 -> 27.877. A correct
// sampler fails each check with probability 0.001; the draws are fixed (offsets 0..N-1 of a
// fixed seed), so the test is deterministic.
constexpr int kChiDraws = 20000;

TEST(Sampling, PlainFrequenciesMatchProbabilities) {
  auto ops = make_cpu_ops();
  const std::vector<float> l = {0.5f, -1.0f, 1.2f, 0.0f, -0.3f, 0.9f, -2.0f, 0.2f, 1.0f, -0.7f};
  const SamplingParams p = params_of(0.7f, 0, 1.0f, 0.0f, 2024, 9);
  const Kept k = ref_kept(l, p);
  ASSERT_EQ(k.ids.size(), size_t(10));
  for (double q : k.probs) ASSERT_GT(q * kChiDraws, 50.0);  // expected counts large enough
  const Draws d = run_offsets(*ops, l, p, kChiDraws);
  EXPECT_LT(chi_square(d.tokens, k.ids, k.probs), 27.877);  // df 9, p = 0.001
}

TEST(Sampling, TopPFrequenciesMatchRenormalisedProbabilities) {
  auto ops = make_cpu_ops();
  const std::vector<float> l = {0.3f, 1.5f, -0.2f, 0.9f, 2.0f, -1.0f, 0.6f, 1.1f, -0.5f, 0.0f, 1.3f, -2.0f};
  const float temp = 1.3f;
  SamplingParams p = params_of(temp, 0, top_p_keeping(l, temp, 5), 0.0f, 31337, 4);
  const Kept k = ref_kept(l, p);
  ASSERT_EQ(k.ids.size(), size_t(5));
  const Draws d = run_offsets(*ops, l, p, kChiDraws);
  EXPECT_LT(chi_square(d.tokens, k.ids, k.probs), 18.467);  // df 4, p = 0.001

  // top_k 8, then top_p on the RENORMALISED top-8 set keeping 6 of them (on the full
  // distribution the same top_p would keep more).
  const std::vector<int32_t> o = ref_order(l);
  std::vector<float> top8 = l;
  for (size_t i = 8; i < o.size(); ++i) top8[size_t(o[i])] = -1e30f;
  p.top_k = 8;
  p.top_p = top_p_keeping(top8, temp, 6);
  const Kept k2 = ref_kept(l, p);
  ASSERT_EQ(k2.ids.size(), size_t(6));
  ASSERT_GT(ref_kept(l, params_of(temp, 0, p.top_p, 0.0f, 0)).ids.size(), size_t(6));
  const Draws d2 = run_offsets(*ops, l, p, kChiDraws);
  EXPECT_LT(chi_square(d2.tokens, k2.ids, k2.probs), 20.515);  // df 5, p = 0.001

  // All three filters: top_k 8, top_p keeping 7 of those, then min_p (relative to the most
  // likely token) dropping the 7th: 6 kept.
  p.top_p = top_p_keeping(top8, temp, 7);
  const std::vector<double> prob = ref_softmax(l, temp);
  const double r5 = prob[size_t(o[5])] / prob[size_t(o[0])], r6 = prob[size_t(o[6])] / prob[size_t(o[0])];
  p.min_p = float(0.5 * (r5 + r6));  // between the 6th and 7th token's ratios
  const Kept k3 = ref_kept(l, p);
  ASSERT_EQ(k3.ids.size(), size_t(6));
  const Draws d3 = run_offsets(*ops, l, p, kChiDraws);
  EXPECT_LT(chi_square(d3.tokens, k3.ids, k3.probs), 20.515);  // df 5, p = 0.001
}

TEST(Sampling, LogprobIsTheUnfilteredTemperatureLogSoftmax) {
  auto ops = make_cpu_ops();
  const int64_t V = 3001;
  std::vector<float> logits;
  std::vector<SamplingParams> params;
  std::vector<std::vector<float>> rows;
  const float temps[] = {1.0f, 0.6f, 1.7f, 0.0f};
  for (int b = 0; b < 16; ++b) {
    rows.push_back(random_row(V, 500 + uint64_t(b), 3.0f));
    logits.insert(logits.end(), rows.back().begin(), rows.back().end());
    params.push_back(params_of(temps[b % 4], b % 3 ? 0 : 40, b % 2 ? 0.7f : 1.0f, b % 5 ? 0.0f : 0.01f,
                               9, uint64_t(b)));
  }
  const Draws d = run(*ops, logits, V, params);
  for (int b = 0; b < 16; ++b) {
    const double t = params[size_t(b)].temperature == 0.0f ? 1.0 : params[size_t(b)].temperature;
    const double want = ref_logprob(rows[size_t(b)], t, d.tokens[size_t(b)]);
    // f32 exp terms (1 ulp each) summed in f64 give log Z to ~1e-7; (l - m) / T rounds to
    // ~1e-7 relative of values up to ~40: 1e-5 absolute.
    EXPECT_NEAR(d.logprobs[size_t(b)], want, 1e-5) << "row " << b;
    // The token itself comes from the filtered set (greedy: the maximum).
    if (params[size_t(b)].temperature == 0.0f) {
      EXPECT_EQ(d.tokens[size_t(b)], ref_order(rows[size_t(b)])[0]) << "row " << b;
    } else {
      const Kept k = ref_kept(rows[size_t(b)], params[size_t(b)]);
      EXPECT_NE(std::find(k.ids.begin(), k.ids.end(), d.tokens[size_t(b)]), k.ids.end()) << "row " << b;
    }
  }
}

TEST(Sampling, SmallVocabulariesAndOversizedTopK) {
  auto ops = make_cpu_ops();
  const Draws one = run(*ops, {3.0f}, 1, {params_of(1.0f, 0, 0.5f, 0.5f, 1)});
  EXPECT_EQ(one.tokens[0], 0);
  EXPECT_NEAR(one.logprobs[0], 0.0f, 1e-7);
  // top_k >= V keeps everything; tiny top_p keeps only the most likely token.
  const std::vector<float> l = {0.0f, 1.0f, 0.5f};
  const Draws all = run_offsets(*ops, l, params_of(1.0f, 10, 1.0f, 0.0f, 2), 300);
  EXPECT_EQ(std::set<int32_t>(all.tokens.begin(), all.tokens.end()).size(), size_t(3));
  const Draws top = run_offsets(*ops, l, params_of(1.0f, 0, 1e-6f, 0.0f, 2), 300);
  for (int32_t t : top.tokens) EXPECT_EQ(t, 1);
}

TEST(Sampling, RejectsBadParamsAndShapes) {
  auto ops = make_cpu_ops();
  const int64_t B = 2, V = 5;
  HostF logits = test::random_f32({B, V}, 1), logprobs({B});
  HostI tokens({B});
  std::vector<SamplingParams> p(2);
  ops->sample(tokens, logprobs, logits, p);  // defaults are valid
  auto bad = [&](auto set) {
    std::vector<SamplingParams> q(2);
    set(q[1]);
    return q;
  };
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.temperature = -0.5f; })),
                    "sample", "params[1].temperature");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.temperature = NAN; })),
                    "params[1].temperature");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.top_k = -1; })),
                    "params[1].top_k");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.top_p = 0.0f; })),
                    "params[1].top_p", "(0, 1]");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.top_p = 1.5f; })),
                    "params[1].top_p");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.min_p = 1.0f; })),
                    "params[1].min_p", "[0, 1)");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.min_p = -0.1f; })),
                    "params[1].min_p");
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, logits, std::vector<SamplingParams>(3)), "sample", "params has 3",
                    "f32[2, 5]");
  HostF empty({B, 0});
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs, empty, p), "sample", "f32[2, 0]");
  HostF tokens_f({B});
  EXPECT_GRPO_ERROR(ops->sample(tokens_f, logprobs, logits, p), "tokens", "i32");
  HostF logprobs_short({B - 1});
  EXPECT_GRPO_ERROR(ops->sample(tokens, logprobs_short, logits, p), "logprobs", "f32[1]", "[2]");
}

}  // namespace
}  // namespace grpo
