// AdamW, sum of squares, global grad-norm clipping and the elementwise helpers, against
// fp64 loops written here.
#include <algorithm>
#include <bit>
#include <cmath>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;

TEST(Optimizer, AdamWMatchesFp64ReferenceOverSeveralSteps) {
  auto ops = make_cpu_ops();
  const int64_t n = 1031;  // odd size
  HostF w({n}), g({n}), m({n}), v({n});
  test::fill_uniform(w.v, 1);
  std::vector<double> rw = w.f64(), rm(n, 0.0), rv(n, 0.0);
  AdamWParams p;
  p.lr = 3e-3f;
  p.beta1 = 0.9f;
  p.beta2 = 0.95f;
  p.eps = 1e-8f;
  p.weight_decay = 0.1f;
  for (int step = 1; step <= 5; ++step) {
    test::fill_normal(g.v, 100 + step);
    p.step = step;
    ops->adamw(w, g, m, v, p);
    for (int64_t i = 0; i < n; ++i) {
      double gi = g[i];
      rm[i] = 0.9 * rm[i] + 0.1 * gi;
      rv[i] = 0.95 * rv[i] + 0.05 * gi * gi;
      double mhat = rm[i] / (1 - std::pow(0.9, step));
      double vhat = rv[i] / (1 - std::pow(0.95, step));
      rw[i] = rw[i] * (1 - 3e-3 * 0.1) - 3e-3 * mhat / (std::sqrt(vhat) + 1e-8);
    }
  }
  EXPECT_TRUE(test::close("adamw weights", w.v, rw, 1e-6, 1e-6));
  EXPECT_TRUE(test::close("adamw m", m.v, rm, 1e-6, 1e-7));
  EXPECT_TRUE(test::close("adamw v", v.v, rv, 1e-6, 1e-7));
}

TEST(Optimizer, AdamWWritesTheBf16ComputeCopyRoundedToNearestEven) {
  auto ops = make_cpu_ops();
  const int64_t n = 517;
  HostF w({n}), g({n}), m({n}), v({n});
  test::fill_uniform(w.v, 11, -3.0f, 3.0f);
  test::fill_normal(g.v, 12);
  test::Host<uint16_t> w16({n});
  std::fill(w16.v.begin(), w16.v.end(), uint16_t(0x7fc1));  // poison: a NaN pattern
  AdamWParams p;
  p.lr = 1e-2f;
  ops->adamw(w, g, m, v, p, w16);
  for (int64_t i = 0; i < n; ++i) {
    // bf16 keeps the top 16 bits; RNE: the nearer of the two neighbours, ties to even.
    const uint32_t bits = std::bit_cast<uint32_t>(w[i]);
    const uint32_t lo = bits & 0xffff0000u, hi = lo + 0x10000u;
    const double dlo = std::abs(double(w[i]) - double(std::bit_cast<float>(lo)));
    const double dhi = std::abs(double(std::bit_cast<float>(hi)) - double(w[i]));
    uint16_t want = uint16_t(lo >> 16);
    if (dhi < dlo || (dhi == dlo && (want & 1))) want = uint16_t(hi >> 16);
    ASSERT_EQ(w16[i], want) << "element " << i << " weight " << w[i];
  }
  test::Host<uint16_t> short16({n - 1});
  EXPECT_GRPO_ERROR(ops->adamw(w, g, m, v, p, short16), "adamw", "params_bf16");
}

TEST(Norm, AddRmsnormEqualsAddThenRmsnorm) {
  auto ops = make_cpu_ops();
  const int64_t T = 9, C = 33;
  HostF x = test::random_f32({T, C}, 21), r = test::random_f32({T, C}, 22), w = test::random_f32({C}, 23);
  HostF sum({T, C}), out({T, C}), rstd({T});
  test::poison(sum.v);
  test::poison(out.v);
  ops->add_rmsnorm(sum, out, rstd, x, r, w, 1e-6f);
  for (int64_t t = 0; t < T; ++t) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) {
      const double s = double(x[t * C + c]) + r[t * C + c];
      EXPECT_NEAR(sum[t * C + c], s, 1e-6);
      ss += s * s;
    }
    const double rs = 1.0 / std::sqrt(ss / C + 1e-6);
    EXPECT_NEAR(rstd[t], rs, 1e-5 * rs);
    for (int64_t c = 0; c < C; ++c)
      EXPECT_NEAR(out[t * C + c], (double(x[t * C + c]) + r[t * C + c]) * rs * w[c], 1e-5);
  }
}

TEST(Optimizer, AdamWRejectsMismatchedBuffersAndBadHyperparameters) {
  auto ops = make_cpu_ops();
  HostF w({8}), g({7}), m({8}), v({8});
  EXPECT_GRPO_ERROR(ops->adamw(w, g, m, v, AdamWParams{}), "adamw", "grads", "f32[7]", "f32[8]");
  HostF g8({8});
  AdamWParams bad;
  bad.step = 0;
  EXPECT_GRPO_ERROR(ops->adamw(w, g8, m, v, bad), "adamw", "step");
}

TEST(Optimizer, ClipGradNormScalesAllBuffersByTheGlobalNorm) {
  auto ops = make_cpu_ops();
  HostF a({37}), b({5, 3});
  test::fill_normal(a.v, 7);
  test::fill_normal(b.v, 8);
  double sq = 0;
  for (float x : a.v) sq += double(x) * x;
  for (float x : b.v) sq += double(x) * x;
  const double norm = std::sqrt(sq);
  std::vector<double> ra = a.f64(), rb = b.f64();
  const float max_norm = float(norm / 3);
  Tensor grads[] = {a, b};
  float got = clip_grad_norm(*ops, grads, max_norm);
  EXPECT_NEAR(got, norm, 1e-5 * norm);
  const double s = max_norm / (norm + 1e-6);
  for (auto& x : ra) x *= s;
  for (auto& x : rb) x *= s;
  EXPECT_TRUE(test::close("clipped a", a.v, ra, 1e-6, 1e-7));
  EXPECT_TRUE(test::close("clipped b", b.v, rb, 1e-6, 1e-7));
  // Below the threshold nothing changes.
  std::vector<float> before = a.v;
  clip_grad_norm(*ops, grads, 1e9f);
  EXPECT_EQ(a.v, before);
}

TEST(Elementwise, AddScaleCopyZero) {
  auto ops = make_cpu_ops();
  HostF a = test::random_f32({3, 5}, 1), b = test::random_f32({3, 5}, 2), out({3, 5});
  test::poison(out.v);
  ops->add(out, a, b);
  std::vector<double> ref(15);
  for (int i = 0; i < 15; ++i) ref[i] = double(a[i]) + b[i];
  EXPECT_TRUE(test::close("add", out.v, ref, 1e-7, 1e-7));
  ops->scale(out, -2.0f);
  for (auto& x : ref) x *= -2.0;
  EXPECT_TRUE(test::close("scale", out.v, ref, 1e-7, 1e-7));
  HostF c({15});
  ops->copy(c, out);
  EXPECT_EQ(c.v, out.v);
  ops->zero(c);
  for (float x : c.v) EXPECT_EQ(x, 0.0f);
  HostF wrong({4, 5});
  EXPECT_GRPO_ERROR(ops->add(out, a, wrong), "add", "f32[3, 5]", "f32[4, 5]");
}

}  // namespace
}  // namespace grpo
