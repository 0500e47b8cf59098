// MoE router, alignment, permute and unpermute against fp64 references written here, their
// backwards against central finite differences of those references, and the whole routed
// layer (router -> align -> permute -> per-expert linear -> unpermute) against a dense fp64
// MoE.
//
// Tolerances: the ops compute in f32 (epsilon 1.2e-7). Each router score or weight goes
// through a handful of roundings (exp, sum, division, renormalisation, scaling), so 1e-6
// relative (~8 ulp) bounds it; gradients chain a few more products of such values: 1e-5.
// Gathers are exact; sums of at most K products of O(1) values are within 1e-6 absolute.
// The fp64 finite differences (step 1e-6) are accurate to ~1e-9, far below these.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

// ---- fp64 references --------------------------------------------------------------------

// A router configuration: (T, E, K, score, normalize_topk, scaling, selection_bias).
struct RouterCfg {
  int64_t T, E, K;
  RouterScore score;
  bool normalize;
  float scaling;
  std::vector<float> bias;  // [E] or empty

  RouterCfg(int64_t t, int64_t e, int64_t k, RouterScore sc = RouterScore::softmax, bool norm = false,
            float scale = 1.0f, std::vector<float> b = {})
      : T(t), E(e), K(k), score(sc), normalize(norm), scaling(scale), bias(std::move(b)) {}

  RouterParams params() const {
    RouterParams p;
    p.top_k = K;
    p.score = score;
    p.normalize_topk = normalize;
    p.scaling = scaling;
    if (!bias.empty()) p.selection_bias = Tensor(const_cast<float*>(bias.data()), DType::f32, {E});
    return p;
  }
  std::string str() const {
    return std::string(score == RouterScore::softmax ? "softmax" : "sigmoid") + (normalize ? " normalised" : "") +
           (bias.empty() ? "" : " biased") + " K=" + std::to_string(K) + " scaling=" + std::to_string(scaling);
  }
};

struct RouterRef {
  std::vector<double> scores;   // [T, E]
  std::vector<int32_t> ids;     // [T, K]
  std::vector<double> weights;  // [T, K]
  double min_gap = INFINITY;    // smallest margin between a chosen and the best unchosen key
};

// given: replay ids [T, K], or nullptr to choose by score + bias (ties to the lower id).
RouterRef ref_router(const std::vector<double>& logits, const RouterCfg& c, const std::vector<int32_t>* given) {
  const int64_t T = c.T, E = c.E, K = c.K;
  RouterRef r;
  r.scores.resize(size_t(T * E));
  r.ids.resize(size_t(T * K));
  r.weights.resize(size_t(T * K));
  for (int64_t t = 0; t < T; ++t) {
    const double* l = &logits[size_t(t * E)];
    double* s = &r.scores[size_t(t * E)];
    if (c.score == RouterScore::softmax) {
      double m = l[0], sum = 0;
      for (int64_t e = 1; e < E; ++e) m = std::max(m, l[e]);
      for (int64_t e = 0; e < E; ++e) sum += std::exp(l[e] - m);
      for (int64_t e = 0; e < E; ++e) s[e] = std::exp(l[e] - m) / sum;
    } else {
      for (int64_t e = 0; e < E; ++e) s[e] = 1.0 / (1.0 + std::exp(-l[e]));
    }
    int32_t* id = &r.ids[size_t(t * K)];
    if (given) {
      std::copy_n(&(*given)[size_t(t * K)], K, id);
    } else {
      std::vector<bool> taken(size_t(E), false);
      auto key = [&](int64_t e) { return s[e] + (c.bias.empty() ? 0.0 : double(c.bias[size_t(e)])); };
      for (int64_t k = 0; k < K; ++k) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; ++e)
          if (!taken[size_t(e)] && (best < 0 || key(e) > key(best))) best = e;
        taken[size_t(best)] = true;
        id[k] = int32_t(best);
      }
      for (int64_t e = 0; e < E; ++e)
        if (!taken[size_t(e)]) r.min_gap = std::min(r.min_gap, key(id[K - 1]) - key(e));
    }
    double sum = 0;
    for (int64_t k = 0; k < K; ++k) sum += s[id[k]];
    for (int64_t k = 0; k < K; ++k) r.weights[size_t(t * K + k)] = s[id[k]] * c.scaling / (c.normalize ? sum : 1.0);
  }
  return r;
}

struct AlignRef {
  std::vector<int32_t> offsets, src, dest;
};
AlignRef ref_align(const std::vector<int32_t>& ids, int64_t T, int64_t K, int64_t E) {
  AlignRef a;
  a.dest.resize(size_t(T * K));
  a.offsets.push_back(0);
  for (int64_t e = 0; e < E; ++e) {
    for (int64_t i = 0; i < T * K; ++i) {
      if (ids[size_t(i)] != e) continue;
      a.dest[size_t(i)] = int32_t(a.src.size());
      a.src.push_back(int32_t(i / K));
    }
    a.offsets.push_back(int32_t(a.src.size()));
  }
  return a;
}

// out[t] = sum_k w[t, k] * yp[dest[t*K + k]]
std::vector<double> ref_unpermute(const std::vector<double>& yp, const std::vector<double>& w,
                                  const std::vector<int32_t>& dest, int64_t T, int64_t K, int64_t C) {
  std::vector<double> out(size_t(T * C), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < C; ++c)
        out[size_t(t * C + c)] += w[size_t(t * K + k)] * yp[size_t(dest[size_t(t * K + k)] * C + c)];
  return out;
}

std::vector<double> ref_permute(const std::vector<double>& x, const std::vector<int32_t>& src, int64_t C) {
  std::vector<double> xp(src.size() * size_t(C));
  for (size_t r = 0; r < src.size(); ++r)
    for (int64_t c = 0; c < C; ++c) xp[r * size_t(C) + size_t(c)] = x[size_t(src[r] * C + c)];
  return xp;
}

// ---- inputs -----------------------------------------------------------------------------

// Rows of distinct logits at least ~0.2 apart (a shuffled ladder plus small noise), so top-k
// choices are far from ties and stay fixed under finite-difference steps.
HostF gapped_logits(int64_t T, int64_t E, uint64_t seed) {
  HostF h({T, E});
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> noise(-0.025, 0.025);
  std::vector<int> rung(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(rung.begin(), rung.end(), 0);
    std::shuffle(rung.begin(), rung.end(), rng);
    for (int64_t e = 0; e < E; ++e) h[size_t(t * E + e)] = float(0.25 * (rung[size_t(e)] - E / 2.0) + noise(rng));
  }
  return h;
}

// T rows of K distinct experts drawn from `allowed`.
HostI random_ids(int64_t T, int64_t K, std::vector<int32_t> allowed, uint64_t seed) {
  HostI h({T, K});
  std::mt19937_64 rng(seed);
  for (int64_t t = 0; t < T; ++t) {
    std::shuffle(allowed.begin(), allowed.end(), rng);
    std::copy_n(allowed.begin(), K, &h[size_t(t * K)]);
  }
  return h;
}

// Overwrites a host tensor's elements in place (its Tensor keeps pointing at them).
template <class T>
void assign(test::Host<T>& h, const std::vector<T>& v) {
  ASSERT_EQ(h.size(), v.size());
  std::copy(v.begin(), v.end(), h.v.begin());
}

struct RouterRun {
  HostF w, scores;
  HostI ids;
  explicit RouterRun(const RouterCfg& c) : w({c.T, c.K}), scores({c.T, c.E}), ids({c.T, c.K}) {
    test::poison(w.v);
    test::poison(scores.v);
  }
};

void expect_router(const RouterRun& got, const RouterRef& ref, const std::string& what) {
  EXPECT_EQ(got.ids.v, ref.ids) << what;
  EXPECT_TRUE(test::close(what + " scores", got.scores.v, ref.scores, 1e-6, 1e-7));
  EXPECT_TRUE(test::close(what + " weights", got.w.v, ref.weights, 1e-6, 1e-7));
}

// ---- router -----------------------------------------------------------------------------

TEST(MoeRouter, SoftmaxMatchesFp64ReferenceWithAndWithoutRenormalisation) {
  auto ops = make_cpu_ops();
  for (int64_t K : {1, 3, 8}) {
    for (bool normalize : {false, true}) {
      RouterCfg c(13, 8, K, RouterScore::softmax, normalize, normalize ? 1.0f : 0.5f);
      HostF logits = gapped_logits(c.T, c.E, 10 + uint64_t(K));
      RouterRun out(c);
      ops->moe_router(out.w, out.ids, out.scores, logits, c.params());
      expect_router(out, ref_router(logits.f64(), c, nullptr), c.str());
    }
  }
}

TEST(MoeRouter, SigmoidBiasChangesSelectionButNotWeightValues) {
  auto ops = make_cpu_ops();
  for (bool normalize : {false, true}) {
    RouterCfg c(11, 8, 3, RouterScore::sigmoid, normalize, 2.5f);
    HostF logits = gapped_logits(c.T, c.E, 20);
    RouterCfg unbiased = c;
    c.bias.resize(size_t(c.E));
    test::fill_uniform(c.bias, 21, -0.6f, 0.6f);
    RouterRun out(c), plain(unbiased);
    ops->moe_router(out.w, out.ids, out.scores, logits, c.params());
    ops->moe_router(plain.w, plain.ids, plain.scores, logits, unbiased.params());
    const RouterRef ref = ref_router(logits.f64(), c, nullptr);
    expect_router(out, ref, c.str());
    expect_router(plain, ref_router(logits.f64(), unbiased, nullptr), unbiased.str());
    int rows_changed = 0;
    for (int64_t t = 0; t < c.T; ++t) {
      const bool same =
          std::equal(&out.ids[size_t(t * c.K)], &out.ids[size_t(t * c.K + c.K)], &plain.ids[size_t(t * c.K)]);
      rows_changed += !same;
      // Where the bias did not change the choice, it did not change the weights either.
      for (int64_t k = 0; same && k < c.K; ++k) EXPECT_EQ(out.w[size_t(t * c.K + k)], plain.w[size_t(t * c.K + k)]);
      // Without renormalisation each weight is scaling * sigmoid(logit) of its expert: raw, unbiased.
      for (int64_t k = 0; !normalize && k < c.K; ++k) {
        const int32_t e = out.ids[size_t(t * c.K + k)];
        const double raw = 1.0 / (1.0 + std::exp(-double(logits[size_t(t * c.E + e)])));
        EXPECT_NEAR(out.w[size_t(t * c.K + k)], 2.5 * raw, 1e-6 * 2.5 * raw);
      }
    }
    EXPECT_GT(rows_changed, 0) << "the bias should reorder some rows";
    EXPECT_GT(ref.min_gap, 1e-3) << "selection keys too close for a stable comparison";
  }
}

TEST(MoeRouter, TiesGoToTheLowerExpertId) {
  auto ops = make_cpu_ops();
  RouterCfg c(3, 5, 2);
  HostF logits({3, 5});
  const float rows[3][5] = {{0.5f, 0.5f, 0.5f, 0.5f, 0.5f}, {1, 3, 3, 0, 3}, {2, -1, 2, 2, 5}};
  for (int t = 0; t < 3; ++t) std::copy_n(rows[t], 5, &logits[size_t(t * 5)]);
  RouterRun out(c);
  ops->moe_router(out.w, out.ids, out.scores, logits, c.params());
  EXPECT_EQ(out.ids.v, (std::vector<int32_t>{0, 1, 1, 2, 4, 0}));
  EXPECT_EQ(out.w[0], out.w[1]);
  EXPECT_EQ(out.w[2], out.w[3]);
  expect_router(out, ref_router(logits.f64(), c, nullptr), "softmax ties");

  // Equal scores and equal biases: the bias decides, then the lower id among the biased.
  RouterCfg s(1, 5, 2, RouterScore::sigmoid, false, 1.0f, {0, 0, 0.5f, 0, 0.5f});
  HostF flat({1, 5});
  RouterRun sout(s);
  ops->moe_router(sout.w, sout.ids, sout.scores, flat, s.params());
  EXPECT_EQ(sout.ids.v, (std::vector<int32_t>{2, 4}));
  EXPECT_EQ(sout.w.v, (std::vector<float>{0.5f, 0.5f}));  // sigmoid(0), unbiased
}

TEST(MoeRouter, ReplayOfTheChosenIdsReproducesTheWeights) {
  auto ops = make_cpu_ops();
  RouterCfg soft(9, 6, 2, RouterScore::softmax, true);
  RouterCfg sig = RouterCfg(9, 6, 2, RouterScore::sigmoid, true, 2.5f, {0.3f, -0.2f, 0.1f, 0.0f, -0.4f, 0.25f});
  for (const RouterCfg& c : {soft, sig}) {
    HostF logits = gapped_logits(c.T, c.E, 30);
    RouterRun first(c), replayed(c);
    ops->moe_router(first.w, first.ids, first.scores, logits, c.params());
    assign(replayed.ids, first.ids.v);
    ops->moe_router(replayed.w, replayed.ids, replayed.scores, logits, c.params(), /*replay=*/true);
    EXPECT_EQ(replayed.ids.v, first.ids.v) << c.str();
    EXPECT_EQ(replayed.w.v, first.w.v) << c.str();
    EXPECT_EQ(replayed.scores.v, first.scores.v) << c.str();
  }
}

TEST(MoeRouter, ReplayWeighsTheGivenExperts) {
  auto ops = make_cpu_ops();
  RouterCfg soft(8, 8, 3);
  RouterCfg soft_norm(8, 8, 3, RouterScore::softmax, true);
  RouterCfg sig(8, 8, 3, RouterScore::sigmoid, true, 1.5f, {5, 5, 5, 5, 0, 0, 0, 0});
  for (const RouterCfg& c : {soft, soft_norm, sig}) {
    HostF logits = gapped_logits(c.T, c.E, 40);
    RouterRun out(c);
    // Experts (t + 3k) mod 8: distinct, mostly not the top-k, in no particular order.
    for (int64_t t = 0; t < c.T; ++t)
      for (int64_t k = 0; k < c.K; ++k) out.ids[size_t(t * c.K + k)] = int32_t((t + 3 * k) % c.E);
    const std::vector<int32_t> given = out.ids.v;
    ops->moe_router(out.w, out.ids, out.scores, logits, c.params(), /*replay=*/true);
    expect_router(out, ref_router(logits.f64(), c, &given), c.str() + " replay");
  }
}

TEST(MoeRouter, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  const int64_t T = 5, E = 7, K = 3;
  std::vector<RouterCfg> cfgs = {
      RouterCfg(T, E, K),
      RouterCfg(T, E, K, RouterScore::softmax, true, 1.5f),
      RouterCfg(T, E, K, RouterScore::sigmoid, false, 0.7f),
      RouterCfg(T, E, K, RouterScore::sigmoid, true, 2.5f, {0.2f, -0.3f, 0.05f, 0.4f, -0.1f, 0.0f, 0.3f}),
  };
  for (bool replay : {false, true}) {
    for (const RouterCfg& c : cfgs) {
      const std::string what = c.str() + (replay ? " replay" : "");
      HostF logits = gapped_logits(T, E, 50);
      HostF dw = test::random_f32({T, K}, 51);
      RouterRun out(c);
      std::vector<int32_t> given;
      if (replay) {
        for (int64_t t = 0; t < T; ++t)
          for (int64_t k = 0; k < K; ++k) given.push_back(int32_t((2 * t + 2 * k + 1) % E));
        assign(out.ids, given);
      }
      ops->moe_router(out.w, out.ids, out.scores, logits, c.params(), replay);
      const RouterRef ref = ref_router(logits.f64(), c, replay ? &given : nullptr);
      ASSERT_EQ(out.ids.v, ref.ids) << what;
      ASSERT_GT(ref.min_gap, 1e-3) << what << ": selection too close to a tie for finite differences";
      HostF dlogits({T, E});
      test::poison(dlogits.v);
      ops->moe_router_backward(dlogits, dw, out.scores, out.ids, c.params());
      // L(logits) = sum(dw * topk_weights(logits)); without replay the reference re-chooses
      // the experts at every step, which the gaps keep fixed.
      auto L = [&](const std::vector<double>& l) {
        return test::dot(dw.f64(), ref_router(l, c, replay ? &given : nullptr).weights);
      };
      EXPECT_TRUE(test::close(what + " dlogits", dlogits.v, test::fd_gradient(L, logits.f64()), 1e-5, 1e-6));
      if (c.score == RouterScore::sigmoid) {
        for (int64_t t = 0; t < T; ++t)
          for (int64_t e = 0; e < E; ++e)
            if (std::find(&out.ids[size_t(t * K)], &out.ids[size_t(t * K + K)], e) == &out.ids[size_t(t * K + K)]) {
              EXPECT_EQ(dlogits[size_t(t * E + e)], 0.0f) << what << ": unchosen expert " << e << " of token " << t;
            }
      }
    }
  }
}

// Large enough for the OpenMP paths (the tests above run serially): each row of a big
// batch must come out bit for bit as when that row is routed alone.
TEST(MoeRouter, LargeBatchEqualsRowByRowCalls) {
  auto ops = make_cpu_ops();
  const int64_t T = 600, E = 16, K = 4;
  for (const RouterCfg& c : {RouterCfg(T, E, K, RouterScore::softmax, true),
                             RouterCfg(T, E, K, RouterScore::sigmoid, true, 2.0f, std::vector<float>(E, 0.1f))}) {
    HostF logits = test::random_f32({T, E}, 55, -3.0f, 3.0f), dw = test::random_f32({T, K}, 56), dl({T, E});
    RouterRun all(c), row(RouterCfg(1, E, K));
    ops->moe_router(all.w, all.ids, all.scores, logits, c.params());
    ops->moe_router_backward(dl, dw, all.scores, all.ids, c.params());
    HostF dl_row({1, E});
    for (int64_t t = 0; t < T; ++t) {
      ops->moe_router(row.w, row.ids, row.scores, logits.t.rows(t, t + 1), c.params());
      ops->moe_router_backward(dl_row, dw.t.rows(t, t + 1), row.scores, row.ids, c.params());
      ASSERT_TRUE(std::equal(row.ids.v.begin(), row.ids.v.end(), &all.ids[size_t(t * K)])) << c.str() << " row " << t;
      ASSERT_TRUE(std::equal(row.w.v.begin(), row.w.v.end(), &all.w[size_t(t * K)])) << c.str() << " row " << t;
      ASSERT_TRUE(std::equal(dl_row.v.begin(), dl_row.v.end(), &dl[size_t(t * E)])) << c.str() << " row " << t;
    }
  }
}

TEST(MoeRouter, RejectsBadInputs) {
  auto ops = make_cpu_ops();
  RouterCfg c(3, 4, 2);
  HostF logits = gapped_logits(3, 4, 60), scores({3, 4}), w({3, 2}), dlogits({3, 4});
  HostI ids({3, 2});
  RouterParams big = c.params();
  big.top_k = 5;
  HostF w5({3, 5});
  HostI ids5({3, 5});
  EXPECT_GRPO_ERROR(ops->moe_router(w5, ids5, scores, logits, big), "moe_router", "top_k is 5", "f32[3, 4]");
  HostF scores5({3, 5}), w3({3, 3}), bias5({5});
  EXPECT_GRPO_ERROR(ops->moe_router(w, ids, scores5, logits, c.params()), "moe_router", "f32[3, 4]", "f32[3, 5]");
  EXPECT_GRPO_ERROR(ops->moe_router(w3, ids, scores, logits, c.params()), "moe_router", "topk_weights", "f32[3, 3]");
  RouterParams bad_bias = c.params();
  bad_bias.selection_bias = bias5;
  EXPECT_GRPO_ERROR(ops->moe_router(w, ids, scores, logits, bad_bias), "moe_router", "selection_bias", "f32[5]");
  HostI int_logits({3, 4});
  EXPECT_GRPO_ERROR(ops->moe_router(w, ids, scores, int_logits, c.params()), "moe_router", "logits", "i32[3, 4]");

  // Replay ids are validated before anything is written.
  assign(ids, {0, 1, 2, 3, 1, 4});
  std::fill(w.v.begin(), w.v.end(), 7.0f);
  EXPECT_GRPO_ERROR(ops->moe_router(w, ids, scores, logits, c.params(), true), "moe_router", "expert 4", "i32[3, 2]",
                    "[0, 4)");
  EXPECT_EQ(w.v, std::vector<float>(6, 7.0f));
  assign(ids, {0, 1, 3, 3, 1, 2});
  EXPECT_GRPO_ERROR(ops->moe_router(w, ids, scores, logits, c.params(), true), "moe_router", "expert 3", "twice");

  assign(ids, {0, 1, 2, 3, 1, 2});
  HostF dw1({3, 1});
  EXPECT_GRPO_ERROR(ops->moe_router_backward(dlogits, dw1, scores, ids, c.params()), "moe_router_backward",
                    "f32[3, 1]");
  HostF dl5({3, 5});
  EXPECT_GRPO_ERROR(ops->moe_router_backward(dl5, w, scores, ids, c.params()), "moe_router_backward", "dlogits",
                    "f32[3, 5]");
  assign(ids, {0, 1, 2, 3, -1, 2});
  EXPECT_GRPO_ERROR(ops->moe_router_backward(dlogits, w, scores, ids, c.params()), "moe_router_backward", "expert -1");
}

// ---- align / permute / unpermute ---------------------------------------------------------

struct Case {
  int64_t T, K, E, C;
};
// Odd sizes, K = 1 and T = 1 included; experts 1 and E-1 get no tokens where K allows it.
const Case kCases[] = {{9, 2, 6, 7}, {1, 1, 4, 5}, {7, 1, 3, 3}, {1, 3, 3, 4}, {12, 3, 8, 1}};

HostI case_ids(const Case& c, uint64_t seed) {
  std::vector<int32_t> allowed;
  for (int32_t e = 0; e < c.E; ++e)
    if (c.E - 2 < c.K || (e != 1 && e != c.E - 1)) allowed.push_back(e);
  return random_ids(c.T, c.K, allowed, seed);
}

std::string case_str(const Case& c) {
  return "T=" + std::to_string(c.T) + " K=" + std::to_string(c.K) + " E=" + std::to_string(c.E) +
         " C=" + std::to_string(c.C);
}

struct Aligned {
  HostI offsets, src, dest;
  Aligned(Ops& ops, const HostI& ids, int64_t E) : offsets({E + 1}), src({ids.t.numel()}), dest({ids.t.numel()}) {
    ops.moe_align(offsets, src, dest, ids, E);
  }
};

TEST(MoeAlign, GroupsPairsByExpertStablyIncludingEmptyExperts) {
  auto ops = make_cpu_ops();
  for (const Case& c : kCases) {
    HostI ids = case_ids(c, 70 + uint64_t(c.T));
    Aligned a(*ops, ids, c.E);
    const AlignRef ref = ref_align(ids.v, c.T, c.K, c.E);
    EXPECT_EQ(a.offsets.v, ref.offsets) << case_str(c);
    EXPECT_EQ(a.src.v, ref.src) << case_str(c);
    EXPECT_EQ(a.dest.v, ref.dest) << case_str(c);
    if (c.E - 2 >= c.K) {
      EXPECT_EQ(a.offsets[2], a.offsets[1]) << case_str(c) << ": expert 1 should be empty";
    }
    for (int64_t i = 0; i < c.T * c.K; ++i) EXPECT_EQ(a.src[size_t(a.dest[size_t(i)])], i / c.K) << case_str(c);
  }
}

TEST(MoeAlign, RejectsBadInputs) {
  auto ops = make_cpu_ops();
  HostI ids({2, 2}), off({4}), src({4}), dest({4}), off3({3});
  assign(ids, {0, 2, 1, -1});
  EXPECT_GRPO_ERROR(ops->moe_align(off, src, dest, ids, 3), "moe_align", "expert -1", "i32[2, 2]", "[0, 3)");
  assign(ids, {0, 2, 1, 0});
  EXPECT_GRPO_ERROR(ops->moe_align(off, src, dest, ids, 0), "moe_align", "num_experts is 0");
  EXPECT_GRPO_ERROR(ops->moe_align(off3, src, dest, ids, 3), "moe_align", "expert_offsets", "i32[3]", "[4]");
  HostI ids3({1, 3});
  EXPECT_GRPO_ERROR(ops->moe_align(off3, off3, off3, ids3, 2), "moe_align", "K = 3", "E = 2");
  HostF fids({2, 2});
  EXPECT_GRPO_ERROR(ops->moe_align(off, src, dest, fids, 3), "moe_align", "topk_ids", "f32[2, 2]");
}

TEST(MoePermute, GatherAndBackwardMatchReferenceAndFiniteDifferences) {
  auto ops = make_cpu_ops();
  for (const Case& c : kCases) {
    const std::string what = case_str(c);
    HostI ids = case_ids(c, 80 + uint64_t(c.T));
    Aligned a(*ops, ids, c.E);
    HostF x = test::random_f32({c.T, c.C}, 81), xp({c.T * c.K, c.C});
    test::poison(xp.v);
    ops->moe_permute(xp, x, a.src);
    EXPECT_TRUE(test::close(what + " xp", xp.v, ref_permute(x.f64(), a.src.v, c.C), 0.0, 0.0));  // exact gather

    HostF dxp = test::random_f32({c.T * c.K, c.C}, 82), dx({c.T, c.C});
    test::poison(dx.v);
    ops->moe_permute_backward(dx, dxp, a.src);
    auto L = [&](const std::vector<double>& xv) { return test::dot(dxp.f64(), ref_permute(xv, a.src.v, c.C)); };
    EXPECT_TRUE(test::close(what + " dx", dx.v, test::fd_gradient(L, x.f64()), 1e-6, 1e-6));
  }
  // A token no row comes from gets dx = 0 (assigned, not left alone).
  HostF x = test::random_f32({3, 2}, 83), dxp = test::random_f32({4, 2}, 84), dx({3, 2});
  HostI src({4});
  assign(src, {2, 0, 2, 2});
  test::poison(dx.v);
  ops->moe_permute_backward(dx, dxp, src);
  std::vector<double> ref = {dxp[2], dxp[3], 0, 0, double(dxp[0]) + dxp[4] + dxp[6], double(dxp[1]) + dxp[5] + dxp[7]};
  EXPECT_TRUE(test::close("dx with an unused token", dx.v, ref, 1e-6, 1e-6));
}

TEST(MoePermute, RejectsBadInputs) {
  auto ops = make_cpu_ops();
  HostF x({3, 2}), xp({4, 2}), xp3({4, 3}), dxp5({5, 2});
  HostI src({4});
  assign(src, {0, 1, 3, 2});
  EXPECT_GRPO_ERROR(ops->moe_permute(xp, x, src), "moe_permute", "token 3", "i32[4]", "[0, 3)");
  assign(src, {0, 1, 1, 2});
  EXPECT_GRPO_ERROR(ops->moe_permute(xp3, x, src), "moe_permute", "xp", "f32[4, 3]", "[4, 2]");
  EXPECT_GRPO_ERROR(ops->moe_permute_backward(x, dxp5, src), "moe_permute_backward", "dxp", "f32[5, 2]");
  assign(src, {0, -2, 1, 2});
  EXPECT_GRPO_ERROR(ops->moe_permute_backward(x, xp, src), "moe_permute_backward", "token -2");
}

TEST(MoeUnpermute, ForwardAndBackwardMatchReferenceAndFiniteDifferences) {
  auto ops = make_cpu_ops();
  for (const Case& c : kCases) {
    const std::string what = case_str(c);
    const int64_t R = c.T * c.K;
    HostI ids = case_ids(c, 90 + uint64_t(c.T));
    Aligned a(*ops, ids, c.E);
    HostF yp = test::random_f32({R, c.C}, 91), w = test::random_f32({c.T, c.K}, 92, 0.0f, 1.0f), out({c.T, c.C});
    test::poison(out.v);
    ops->moe_unpermute(out, yp, a.dest, w);
    EXPECT_TRUE(
        test::close(what + " out", out.v, ref_unpermute(yp.f64(), w.f64(), a.dest.v, c.T, c.K, c.C), 1e-6, 1e-6));

    HostF dout = test::random_f32({c.T, c.C}, 93), dyp({R, c.C}), dw({c.T, c.K});
    test::poison(dyp.v);
    test::poison(dw.v);
    ops->moe_unpermute_backward(dyp, dw, dout, yp, a.dest, w);
    auto Lyp = [&](const std::vector<double>& y) {
      return test::dot(dout.f64(), ref_unpermute(y, w.f64(), a.dest.v, c.T, c.K, c.C));
    };
    auto Lw = [&](const std::vector<double>& wv) {
      return test::dot(dout.f64(), ref_unpermute(yp.f64(), wv, a.dest.v, c.T, c.K, c.C));
    };
    EXPECT_TRUE(test::close(what + " dyp", dyp.v, test::fd_gradient(Lyp, yp.f64()), 1e-6, 1e-6));
    EXPECT_TRUE(test::close(what + " dtopk_weights", dw.v, test::fd_gradient(Lw, w.f64()), 1e-6, 1e-6));
  }
}

TEST(MoeUnpermute, FullChainEqualsDenseFp64Moe) {
  auto ops = make_cpu_ops();
  const int64_t T = 11, C = 6, N = 5, E = 5, K = 2;
  RouterCfg rc(T, E, K, RouterScore::softmax, true);
  HostF logits = gapped_logits(T, E, 100);
  for (int64_t t = 0; t < T; ++t) logits[size_t(t * E + E - 1)] -= 10.0f;         // expert E-1 gets no tokens
  HostF x = test::random_f32({T, C}, 101), W = test::random_f32({E, N, C}, 102);  // HF [out, in] per expert

  RouterRun r(rc);
  ops->moe_router(r.w, r.ids, r.scores, logits, rc.params());
  Aligned a(*ops, r.ids, E);
  EXPECT_EQ(a.offsets[E], a.offsets[E - 1]);
  HostF xp({T * K, C}), yp({T * K, N}), out({T, N});
  ops->moe_permute(xp, x, a.src);
  for (int64_t e = 0; e < E; ++e)  // per-expert linear, naively: yp[row] = W[e] @ xp[row]
    for (int64_t row = a.offsets[size_t(e)]; row < a.offsets[size_t(e + 1)]; ++row)
      for (int64_t n = 0; n < N; ++n) {
        double acc = 0;
        for (int64_t i = 0; i < C; ++i) acc += double(W[size_t((e * N + n) * C + i)]) * xp[size_t(row * C + i)];
        yp[size_t(row * N + n)] = float(acc);
      }
  test::poison(out.v);
  ops->moe_unpermute(out, yp, a.dest, r.w);

  // Dense fp64 MoE: out[t] = sum_e gate[t, e] * W[e] @ x[t], gate = routing weight or 0.
  const RouterRef ref = ref_router(logits.f64(), rc, nullptr);
  std::vector<double> dense(size_t(T * N), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e) {
      double gate = 0;
      for (int64_t k = 0; k < K; ++k)
        if (ref.ids[size_t(t * K + k)] == e) gate = ref.weights[size_t(t * K + k)];
      for (int64_t n = 0; n < N; ++n)
        for (int64_t i = 0; i < C; ++i)
          dense[size_t(t * N + n)] += gate * double(W[size_t((e * N + n) * C + i)]) * x[size_t(t * C + i)];
    }
  // f32 weights (1e-6) times f32-rounded expert outputs of C = 6 products: 1e-5 relative.
  EXPECT_TRUE(test::close("moe layer", out.v, dense, 1e-5, 1e-6));
}

// Sizes past the OpenMP thresholds, against the fp64 references (the analytic gradients the
// finite-difference tests above confirm).
TEST(MoeUnpermute, LargeBatchMatchesReference) {
  auto ops = make_cpu_ops();
  const int64_t T = 1500, K = 2, E = 8, C = 24, R = T * K;
  HostI ids = random_ids(T, K, {0, 1, 2, 3, 4, 5, 6, 7}, 110);
  Aligned a(*ops, ids, E);
  EXPECT_EQ(a.offsets.v, ref_align(ids.v, T, K, E).offsets);
  HostF x = test::random_f32({T, C}, 111), xp({R, C}), dx({T, C}), out({T, C}), dyp({R, C}), dw({T, K});
  HostF w = test::random_f32({T, K}, 112), dout = test::random_f32({T, C}, 113);
  ops->moe_permute(xp, x, a.src);
  EXPECT_TRUE(test::close("xp", xp.v, ref_permute(x.f64(), a.src.v, C), 0.0, 0.0));
  // xp stands in for both the expert output and its gradient.
  ops->moe_permute_backward(dx, xp, a.src);
  std::vector<double> ref_dx(size_t(T * C), 0.0);
  for (int64_t r = 0; r < R; ++r)
    for (int64_t i = 0; i < C; ++i) ref_dx[size_t(a.src[size_t(r)] * C + i)] += xp[size_t(r * C + i)];
  EXPECT_TRUE(test::close("dx", dx.v, ref_dx, 1e-6, 1e-6));
  ops->moe_unpermute(out, xp, a.dest, w);
  EXPECT_TRUE(test::close("out", out.v, ref_unpermute(xp.f64(), w.f64(), a.dest.v, T, K, C), 1e-6, 1e-6));
  ops->moe_unpermute_backward(dyp, dw, dout, xp, a.dest, w);
  std::vector<double> ref_dyp(size_t(R * C)), ref_dw(size_t(T * K), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < C; ++i) {
        const int64_t row = a.dest[size_t(t * K + k)];
        ref_dyp[size_t(row * C + i)] = double(w[size_t(t * K + k)]) * dout[size_t(t * C + i)];
        ref_dw[size_t(t * K + k)] += double(dout[size_t(t * C + i)]) * xp[size_t(row * C + i)];
      }
  EXPECT_TRUE(test::close("dyp", dyp.v, ref_dyp, 1e-6, 1e-7));
  EXPECT_TRUE(test::close("dtopk_weights", dw.v, ref_dw, 1e-6, 1e-6));
}

TEST(MoeUnpermute, RejectsBadInputs) {
  auto ops = make_cpu_ops();
  HostF out({2, 3}), yp({4, 3}), yp5({5, 3}), w({2, 2}), w3({3, 2}), dw({2, 2}), dyp2({4, 2});
  HostI dest({4});
  assign(dest, {0, 2, 2, 3});
  EXPECT_GRPO_ERROR(ops->moe_unpermute(out, yp, dest, w), "moe_unpermute", "row 2 twice", "i32[4]");
  assign(dest, {0, 2, 1, 4});
  EXPECT_GRPO_ERROR(ops->moe_unpermute(out, yp, dest, w), "moe_unpermute", "row 4", "[0, 4)");
  assign(dest, {0, 2, 1, 3});
  EXPECT_GRPO_ERROR(ops->moe_unpermute(out, yp5, dest, w), "moe_unpermute", "yp", "f32[5, 3]", "[4, 3]");
  EXPECT_GRPO_ERROR(ops->moe_unpermute(out, yp, dest, w3), "moe_unpermute", "topk_weights", "f32[3, 2]", "f32[2, 3]");
  EXPECT_GRPO_ERROR(ops->moe_unpermute_backward(dyp2, dw, out, yp, dest, w), "moe_unpermute_backward", "dyp",
                    "f32[4, 2]");
}

}  // namespace
}  // namespace grpo
