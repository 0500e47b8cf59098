// matmul, embedding and grouped_matmul (forward and backward) against fp64 loops written
// here, gradients against central finite differences of those loops.
//
// Tolerances (f32 unit roundoff u = 2^-24 ~ 6e-8):
//   * forward: relative L2 error 1e-5, and per element 1e-6 * K absolute. A K-term f32 dot
//     product of values in [-1, 1] has sum|terms| ~ K/4 and a typical rounding error of
//     ~sqrt(K) * u * K/4 (about 8e-6 at K = 65); 1e-6 * K is >= 8x that for the K <= 65 here.
//   * gradients: relative L2 1e-4 and per element 1e-4 absolute against finite differences.
//     f is linear in each input, so central differences have no truncation error; with
//     h = 1e-3 and |L| ~ 10 the fp64 cancellation error is ~1e-11, and what remains is the
//     f32 rounding of sums of at most ~20 products (~1e-6).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

constexpr double kFwdRel = 1e-5;
constexpr double kGradRel = 1e-4;
constexpr double kGradAbs = 1e-4;
constexpr double kFdStep = 1e-3;

double fwd_abs_tol(int64_t K) { return 1e-6 * double(std::max<int64_t>(K, 1)); }

// One matmul configuration: op(a) [M, K] @ op(b) [K, N], optionally batched.
struct MatmulCase {
  int64_t M, N, K;
  bool ta, tb;
  int64_t batch = 0;  // 0: 2-D, else 3-D with this batch size
  int64_t nb() const { return batch ? batch : 1; }
  std::vector<int64_t> shape(int64_t rows, int64_t cols) const {
    return batch ? std::vector<int64_t>{batch, rows, cols} : std::vector<int64_t>{rows, cols};
  }
  std::vector<int64_t> a_shape() const { return ta ? shape(K, M) : shape(M, K); }
  std::vector<int64_t> b_shape() const { return tb ? shape(N, K) : shape(K, N); }
  std::vector<int64_t> out_shape() const { return shape(M, N); }
  std::string str() const {
    std::ostringstream os;
    os << "M=" << M << " N=" << N << " K=" << K << " trans_a=" << ta << " trans_b=" << tb << " batch=" << batch;
    return os.str();
  }
};

// fp64 reference: out[i, m, n] = sum_k op(a)[i, m, k] * op(b)[i, k, n] + bias[n] (bias may be empty).
std::vector<double> ref_matmul(const MatmulCase& c, const std::vector<double>& a, const std::vector<double>& b,
                               const std::vector<double>& bias) {
  const int64_t M = c.M, N = c.N, K = c.K;
  std::vector<double> out(size_t(c.nb() * M * N), 0.0);
  for (int64_t i = 0; i < c.nb(); ++i)
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        double s = bias.empty() ? 0.0 : bias[size_t(n)];
        for (int64_t k = 0; k < K; ++k) {
          const double av = a[size_t(i * M * K + (c.ta ? k * M + m : m * K + k))];
          const double bv = b[size_t(i * K * N + (c.tb ? n * K + k : k * N + n))];
          s += av * bv;
        }
        out[size_t(i * M * N + m * N + n)] = s;
      }
  return out;
}

struct MatmulData {
  HostF a, b, bias, dout;
  MatmulData(const MatmulCase& c, bool with_bias, uint64_t seed) : a(c.a_shape()), b(c.b_shape()), dout(c.out_shape()) {
    test::fill_uniform(a.v, seed);
    test::fill_uniform(b.v, seed + 1);
    test::fill_uniform(dout.v, seed + 2);
    if (with_bias) {
      bias = HostF({c.N});
      test::fill_uniform(bias.v, seed + 3);
    }
  }
};

// Gradients of L = sum(dout * matmul(a, b, bias)) by central differences of the fp64 reference.
struct MatmulGrads {
  std::vector<double> a, b, bias;
};
MatmulGrads fd_matmul_grads(const MatmulCase& c, const MatmulData& d) {
  const auto a = d.a.f64(), b = d.b.f64(), bias = d.bias.f64(), dout = d.dout.f64();
  MatmulGrads g;
  g.a = test::fd_gradient([&](const std::vector<double>& x) { return test::dot(dout, ref_matmul(c, x, b, bias)); }, a,
                          kFdStep);
  g.b = test::fd_gradient([&](const std::vector<double>& x) { return test::dot(dout, ref_matmul(c, a, x, bias)); }, b,
                          kFdStep);
  if (!bias.empty())
    g.bias = test::fd_gradient([&](const std::vector<double>& x) { return test::dot(dout, ref_matmul(c, a, b, x)); },
                               bias, kFdStep);
  return g;
}

std::vector<double> plus(const std::vector<float>& base, const std::vector<double>& add) {
  std::vector<double> r(base.begin(), base.end());
  for (size_t i = 0; i < r.size(); ++i) r[i] += add[i];
  return r;
}

// ---------------------------------------------------------------------------------------
// matmul forward

TEST(Matmul, ForwardMatchesFp64ForAllTransposesAndOddSizes) {
  auto ops = make_cpu_ops();
  const int64_t sizes[][3] = {{1, 1, 1}, {7, 33, 65}, {33, 1, 7}, {65, 7, 33}, {1, 65, 33}, {3, 4, 0}, {0, 5, 3}};
  uint64_t seed = 10;
  for (const auto& s : sizes)
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool with_bias : {false, true}) {
          const MatmulCase c{s[0], s[1], s[2], ta, tb};
          MatmulData d(c, with_bias, seed += 10);
          HostF out(c.out_shape());
          test::poison(out.v);
          ops->matmul(out, d.a, d.b, d.bias, ta, tb);
          const auto ref = ref_matmul(c, d.a.f64(), d.b.f64(), d.bias.f64());
          EXPECT_TRUE(test::close("matmul " + c.str() + " bias=" + std::to_string(with_bias), out.v, ref, kFwdRel,
                                  fwd_abs_tol(c.K)));
        }
}

TEST(Matmul, BatchedForwardWithBiasAndAccumulate) {
  auto ops = make_cpu_ops();
  uint64_t seed = 500;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (bool with_bias : {false, true}) {
        const MatmulCase c{7, 33, 65, ta, tb, 3};
        MatmulData d(c, with_bias, seed += 10);
        // Plain.
        HostF out(c.out_shape());
        test::poison(out.v);
        ops->matmul(out, d.a, d.b, d.bias, ta, tb);
        auto ref = ref_matmul(c, d.a.f64(), d.b.f64(), d.bias.f64());
        EXPECT_TRUE(test::close("batched matmul " + c.str(), out.v, ref, kFwdRel, fwd_abs_tol(c.K)));
        // Accumulate onto existing values: out = prev + a @ b (+ bias).
        HostF acc(c.out_shape());
        test::fill_uniform(acc.v, seed + 7);
        const auto expected = plus(acc.v, ref);
        ops->matmul(acc, d.a, d.b, d.bias, ta, tb, /*accumulate=*/true);
        EXPECT_TRUE(test::close("batched matmul accumulate " + c.str(), acc.v, expected, kFwdRel, fwd_abs_tol(c.K)));
      }
}

TEST(Matmul, TwoDimensionalAccumulateAddsToOutput) {
  auto ops = make_cpu_ops();
  const MatmulCase c{33, 7, 65, false, true};
  MatmulData d(c, true, 77);
  HostF out(c.out_shape());
  test::fill_uniform(out.v, 78);
  const auto expected = plus(out.v, ref_matmul(c, d.a.f64(), d.b.f64(), d.bias.f64()));
  ops->matmul(out, d.a, d.b, d.bias, c.ta, c.tb, true);
  EXPECT_TRUE(test::close("matmul accumulate", out.v, expected, kFwdRel, fwd_abs_tol(c.K)));
}

// ---------------------------------------------------------------------------------------
// matmul backward

std::vector<MatmulCase> backward_cases() {
  std::vector<MatmulCase> cases;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      cases.push_back({3, 5, 7, ta, tb});
      cases.push_back({1, 1, 1, ta, tb});
      cases.push_back({1, 7, 2, ta, tb});
      cases.push_back({4, 3, 5, ta, tb, 2});
      cases.push_back({2, 130, 3, ta, tb});  // dbias spans several column blocks
      cases.push_back({0, 3, 2, ta, tb});    // no rows: db and dbias gain nothing
      cases.push_back({2, 3, 0, ta, tb});    // K = 0: da and db are empty, dbias still sums dout
    }
  return cases;
}

TEST(Matmul, BackwardMatchesFiniteDifferencesForEveryInput) {
  auto ops = make_cpu_ops();
  uint64_t seed = 1000;
  for (const MatmulCase& c : backward_cases())
    for (bool with_bias : {false, true}) {
      MatmulData d(c, with_bias, seed += 10);
      const MatmulGrads g = fd_matmul_grads(c, d);
      // Default flags: da assigned (poisoned first), db and dbias accumulate onto random values.
      HostF da(c.a_shape()), db(c.b_shape()), dbias;
      test::poison(da.v);
      test::fill_uniform(db.v, seed + 5);
      const auto db_expected = plus(db.v, g.b);
      std::vector<double> dbias_expected;
      if (with_bias) {
        dbias = HostF({c.N});
        test::fill_uniform(dbias.v, seed + 6);
        dbias_expected = plus(dbias.v, g.bias);
      }
      ops->matmul_backward(da, db, dbias, d.dout, d.a, d.b, c.ta, c.tb);
      const std::string what = c.str() + " bias=" + std::to_string(with_bias);
      EXPECT_TRUE(test::close("da " + what, da.v, g.a, kGradRel, kGradAbs));
      EXPECT_TRUE(test::close("db " + what, db.v, db_expected, kGradRel, kGradAbs));
      if (with_bias) {
        EXPECT_TRUE(test::close("dbias " + what, dbias.v, dbias_expected, kGradRel, kGradAbs));
      }
    }
}

TEST(Matmul, BackwardAccumulateFlagsSwitchBetweenAssignAndAccumulate) {
  auto ops = make_cpu_ops();
  uint64_t seed = 2000;
  for (const MatmulCase& c : backward_cases()) {
    MatmulData d(c, true, seed += 10);
    const MatmulGrads g = fd_matmul_grads(c, d);
    // accumulate_da = true: da += grad. accumulate_db = false: db, dbias assigned.
    HostF da(c.a_shape()), db(c.b_shape()), dbias({c.N});
    std::fill(da.v.begin(), da.v.end(), 0.75f);
    test::poison(db.v);
    test::poison(dbias.v);
    const auto da_expected = plus(da.v, g.a);
    ops->matmul_backward(da, db, dbias, d.dout, d.a, d.b, c.ta, c.tb, /*accumulate_da=*/true,
                         /*accumulate_db=*/false);
    EXPECT_TRUE(test::close("da accumulated " + c.str(), da.v, da_expected, kGradRel, kGradAbs));
    EXPECT_TRUE(test::close("db assigned " + c.str(), db.v, g.b, kGradRel, kGradAbs));
    EXPECT_TRUE(test::close("dbias assigned " + c.str(), dbias.v, g.bias, kGradRel, kGradAbs));
  }
}

TEST(Matmul, BackwardSkipsUndefinedGradients) {
  auto ops = make_cpu_ops();
  const MatmulCase c{5, 7, 3, false, true, 2};
  MatmulData d(c, true, 3000);
  const MatmulGrads g = fd_matmul_grads(c, d);
  // Only dbias requested (accumulates onto -2).
  HostF dbias({c.N});
  std::fill(dbias.v.begin(), dbias.v.end(), -2.0f);
  ops->matmul_backward({}, {}, dbias, d.dout, d.a, d.b, c.ta, c.tb);
  EXPECT_TRUE(
      test::close("dbias only", dbias.v, plus(std::vector<float>(size_t(c.N), -2.0f), g.bias), kGradRel, kGradAbs));
  // Only da requested.
  HostF da(c.a_shape());
  test::poison(da.v);
  ops->matmul_backward(da, {}, {}, d.dout, d.a, d.b, c.ta, c.tb);
  EXPECT_TRUE(test::close("da only", da.v, g.a, kGradRel, kGradAbs));
}

TEST(Matmul, RejectsBadShapesAndDtypes) {
  auto ops = make_cpu_ops();
  HostF a({3, 4}), b({5, 6}), out({3, 6});
  EXPECT_GRPO_ERROR(ops->matmul(out, a, b, {}, false, false), "matmul", "a f32[3, 4]", "b f32[5, 6]",
                    "inner dimensions 4 and 5 differ");
  HostF b46({4, 6}), out_bad({3, 5}), bias_bad({5});
  EXPECT_GRPO_ERROR(ops->matmul(out_bad, a, b46, {}, false, false), "matmul", "out", "f32[3, 5]", "[3, 6]");
  EXPECT_GRPO_ERROR(ops->matmul(out, a, b46, bias_bad, false, false), "matmul", "bias", "f32[5]", "[6]");
  HostI ai({3, 4});
  EXPECT_GRPO_ERROR(ops->matmul(out, ai, b46, {}, false, false), "matmul", "a", "i32[3, 4]", "f32");
  HostF b3({2, 4, 6});
  EXPECT_GRPO_ERROR(ops->matmul(out, a, b3, {}, false, false), "matmul", "f32[3, 4]", "f32[2, 4, 6]");
  HostF a3({3, 3, 4}), o3({2, 3, 6});
  EXPECT_GRPO_ERROR(ops->matmul(o3, a3, b3, {}, false, false), "matmul", "batch sizes 3 and 2 differ");
  HostF a1({12});
  EXPECT_GRPO_ERROR(ops->matmul(out, a1, b46, {}, false, false), "matmul", "f32[12]", "2 or 3 dimensions");
  // trans_b = true reads b as [N, K]: b [4, 6] gives K = 6 against a's 4.
  EXPECT_GRPO_ERROR(ops->matmul(out, a, b46, {}, false, true), "matmul", "inner dimensions 4 and 6 differ");
  // Backward.
  HostF dout({3, 6}), da_bad({4, 3}), db({4, 6}), dout_bad({3, 7});
  EXPECT_GRPO_ERROR(ops->matmul_backward(da_bad, db, {}, dout, a, b46, false, false), "matmul_backward", "da",
                    "f32[4, 3]", "f32[3, 4]");
  EXPECT_GRPO_ERROR(ops->matmul_backward({}, db, {}, dout_bad, a, b46, false, false), "matmul_backward", "dout",
                    "f32[3, 7]", "[3, 6]");
  EXPECT_GRPO_ERROR(ops->matmul_backward({}, db, bias_bad, dout, a, b46, false, false), "matmul_backward", "dbias",
                    "f32[5]");
  // An output aliasing an input.
  EXPECT_GRPO_ERROR(ops->matmul(a.t.view({3, 4}), a, HostF({4, 4}), {}, false, false), "matmul", "overlaps");
}

// ---------------------------------------------------------------------------------------
// embedding

TEST(Embedding, ForwardGathersRowsAndBackwardAccumulatesRepeatedIds) {
  auto ops = make_cpu_ops();
  // Large enough for the parallel paths; ids only in [0, 40) so rows 40..49 receive nothing.
  const int64_t V = 50, C = 65, T = 1537;
  HostF table = test::random_f32({V, C}, 1);
  HostI ids({T});
  std::mt19937_64 rng(2);
  for (auto& id : ids.v) id = int32_t(rng() % 40);
  HostF out({T, C});
  test::poison(out.v);
  ops->embedding(out, ids, table);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) ASSERT_EQ(out[size_t(t * C + c)], table[size_t(ids[size_t(t)] * C + c)]);

  HostF dout = test::random_f32({T, C}, 3), dtable = test::random_f32({V, C}, 4);
  std::vector<double> ref = dtable.f64();
  for (int64_t t = 0; t < T; ++t)
    for (int64_t c = 0; c < C; ++c) ref[size_t(ids[size_t(t)] * C + c)] += dout[size_t(t * C + c)];
  ops->embedding_backward(dtable, dout, ids);
  // ~40 f32 additions per element: rounding ~sqrt(40) * u * 40 ~ 2e-5 at worst.
  EXPECT_TRUE(test::close("embedding_backward", dtable.v, ref, 1e-5, 1e-4));
}

TEST(Embedding, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  const int64_t V = 7, C = 5, T = 11;
  HostF table = test::random_f32({V, C}, 10), dout = test::random_f32({T, C}, 11);
  HostI ids({T});
  const int32_t id_values[T] = {3, 0, 6, 3, 3, 1, 0, 6, 2, 3, 1};  // repeats; id 4 and 5 unused
  std::copy(id_values, id_values + T, ids.v.begin());
  const auto d = dout.f64();
  auto loss = [&](const std::vector<double>& tab) {
    double s = 0;
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < C; ++c) s += d[size_t(t * C + c)] * tab[size_t(ids[size_t(t)] * C + c)];
    return s;
  };
  const auto g = test::fd_gradient(loss, table.f64(), kFdStep);
  HostF dtable({V, C});
  std::fill(dtable.v.begin(), dtable.v.end(), 0.5f);  // accumulates onto 0.5
  ops->embedding_backward(dtable, dout, ids);
  EXPECT_TRUE(
      test::close("embedding dtable", dtable.v, plus(std::vector<float>(g.size(), 0.5f), g), kGradRel, kGradAbs));
}

TEST(Embedding, RejectsOutOfRangeIdsAndBadShapes) {
  auto ops = make_cpu_ops();
  HostF table = test::random_f32({9, 4}, 1), out({3, 4});
  HostI ids({3});
  auto set_ids = [&](std::initializer_list<int32_t> v) { std::copy(v.begin(), v.end(), ids.v.begin()); };
  set_ids({1, 2, 9});
  EXPECT_GRPO_ERROR(ops->embedding(out, ids, table), "embedding", "ids[2] = 9", "[0, 9)", "f32[9, 4]");
  set_ids({-1, 2, 3});
  EXPECT_GRPO_ERROR(ops->embedding(out, ids, table), "embedding", "ids[0] = -1", "[0, 9)");
  HostF dout({3, 4});
  EXPECT_GRPO_ERROR(ops->embedding_backward(table, dout, ids), "embedding_backward", "ids[0] = -1", "[0, 9)");
  set_ids({0, 1, 2});
  HostF out_bad({3, 5});
  EXPECT_GRPO_ERROR(ops->embedding(out_bad, ids, table), "embedding", "out", "f32[3, 5]", "[3, 4]");
  HostF ids_f({3});
  EXPECT_GRPO_ERROR(ops->embedding(out, ids_f, table), "embedding", "ids", "f32[3]", "i32");
  HostF dout_bad({2, 4});
  EXPECT_GRPO_ERROR(ops->embedding_backward(table, dout_bad, ids), "embedding_backward", "dout", "f32[2, 4]", "[3, 4]");
}

// ---------------------------------------------------------------------------------------
// grouped matmul

HostI make_offsets(const std::vector<int32_t>& counts) {
  HostI o({int64_t(counts.size()) + 1});
  for (size_t e = 0; e < counts.size(); ++e) o[e + 1] = o[e] + counts[e];
  return o;
}

// out[r] = x[r] @ w[e(r)]^T with e(r) the expert whose rows contain r.
std::vector<double> ref_grouped(const HostI& offsets, int64_t N, int64_t K, const std::vector<double>& x,
                                const std::vector<double>& w) {
  const int64_t E = int64_t(offsets.size()) - 1, R = offsets[size_t(E)];
  std::vector<double> out(size_t(R * N), 0.0);
  for (int64_t e = 0; e < E; ++e)
    for (int64_t r = offsets[size_t(e)]; r < offsets[size_t(e + 1)]; ++r)
      for (int64_t n = 0; n < N; ++n) {
        double s = 0;
        for (int64_t k = 0; k < K; ++k) s += x[size_t(r * K + k)] * w[size_t((e * N + n) * K + k)];
        out[size_t(r * N + n)] = s;
      }
  return out;
}

TEST(GroupedMatmul, ForwardMatchesPerExpertReferenceWithEmptyExperts) {
  auto ops = make_cpu_ops();
  const int64_t N = 9, K = 65;
  // Experts 0, 2 and 5 get no rows (first, middle and last).
  for (const auto& counts :
       {std::vector<int32_t>{0, 7, 0, 1, 33, 0}, std::vector<int32_t>{65}, std::vector<int32_t>{0, 0, 0}}) {
    HostI offsets = make_offsets(counts);
    const int64_t E = int64_t(counts.size()), R = offsets[counts.size()];
    HostF x = test::random_f32({R, K}, uint64_t(1 + E)), w = test::random_f32({E, N, K}, uint64_t(2 + E));
    HostF out({R, N});
    test::poison(out.v);
    ops->grouped_matmul(out, x, w, offsets);
    EXPECT_TRUE(test::close("grouped_matmul E=" + std::to_string(E), out.v,
                            ref_grouped(offsets, N, K, x.f64(), w.f64()), kFwdRel, fwd_abs_tol(K)));
  }
}

TEST(GroupedMatmul, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  const int64_t N = 5, K = 7;
  HostI offsets = make_offsets({2, 0, 3, 0, 1});
  const int64_t E = 5, R = 6;
  HostF x = test::random_f32({R, K}, 20), w = test::random_f32({E, N, K}, 21), dout = test::random_f32({R, N}, 22);
  const auto xd = x.f64(), wd = w.f64(), dd = dout.f64();
  const auto gx = test::fd_gradient(
      [&](const std::vector<double>& v) { return test::dot(dd, ref_grouped(offsets, N, K, v, wd)); }, xd, kFdStep);
  const auto gw = test::fd_gradient(
      [&](const std::vector<double>& v) { return test::dot(dd, ref_grouped(offsets, N, K, xd, v)); }, wd, kFdStep);
  // dx assigned (poisoned first); dw accumulates onto random values (empty experts keep them).
  HostF dx({R, K}), dw = test::random_f32({E, N, K}, 23);
  test::poison(dx.v);
  const auto dw_expected = plus(dw.v, gw);
  ops->grouped_matmul_backward(dx, dw, dout, x, w, offsets);
  EXPECT_TRUE(test::close("grouped dx", dx.v, gx, kGradRel, kGradAbs));
  EXPECT_TRUE(test::close("grouped dw", dw.v, dw_expected, kGradRel, kGradAbs));
  // Either gradient may be undefined.
  HostF dx2({R, K});
  test::poison(dx2.v);
  ops->grouped_matmul_backward(dx2, {}, dout, x, w, offsets);
  EXPECT_TRUE(test::close("grouped dx only", dx2.v, gx, kGradRel, kGradAbs));
  HostF dw2({E, N, K});
  ops->grouped_matmul_backward({}, dw2, dout, x, w, offsets);
  EXPECT_TRUE(test::close("grouped dw only", dw2.v, gw, kGradRel, kGradAbs));
}

TEST(GroupedMatmul, RejectsBadOffsetsAndShapes) {
  auto ops = make_cpu_ops();
  const int64_t E = 3, R = 5, N = 4, K = 6;
  HostF x({R, K}), w({E, N, K}), out({R, N});
  HostI offsets({E + 1});
  auto set_offsets = [&](std::initializer_list<int32_t> v) { std::copy(v.begin(), v.end(), offsets.v.begin()); };
  set_offsets({1, 2, 3, 5});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w, offsets), "grouped_matmul", "expert_offsets[0] = 1");
  set_offsets({0, 3, 2, 5});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w, offsets), "grouped_matmul", "decrease at expert 1");
  set_offsets({0, 2, 3, 4});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w, offsets), "grouped_matmul", "expert_offsets[3] = 4", "expected 5",
                    "f32[5, 6]");
  HostI short_offsets({E});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w, short_offsets), "grouped_matmul", "expert_offsets", "i32[3]", "[4]");
  HostF offsets_f({E + 1});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w, offsets_f), "grouped_matmul", "expert_offsets", "f32[4]", "i32");
  set_offsets({0, 2, 2, 5});
  HostF w_bad({E, N, K + 1});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out, x, w_bad, offsets), "grouped_matmul", "f32[5, 6]", "f32[3, 4, 7]",
                    "inner dimensions 6 and 7 differ");
  HostF out_bad({R, N + 1});
  EXPECT_GRPO_ERROR(ops->grouped_matmul(out_bad, x, w, offsets), "grouped_matmul", "out", "f32[5, 5]", "[5, 4]");
  HostF dw_bad({E + 1, N, K}), dout({R, N});
  EXPECT_GRPO_ERROR(ops->grouped_matmul_backward({}, dw_bad, dout, x, w, offsets), "grouped_matmul_backward", "dw",
                    "f32[4, 4, 6]", "f32[3, 4, 6]");
  set_offsets({0, 2, 6, 5});
  HostF dw({E, N, K});
  EXPECT_GRPO_ERROR(ops->grouped_matmul_backward({}, dw, dout, x, w, offsets), "grouped_matmul_backward",
                    "expert_offsets");
}

}  // namespace
}  // namespace grpo
