// RMSNorm, SwiGLU and softmax against fp64 loops written here; every backward against central
// finite differences of the fp64 reference (L = sum(dout * f(x)) with random dout).
//
// Tolerances. Forward: each output is a few f32 roundings (relative 2^-24 = 6e-8 each) away
// from the exact value, reductions are f64, so 1e-6 relative leaves a wide margin. Backward:
// f32 products plus one cancellation (e.g. r w dy - k x in RMSNorm) on O(1) values, against
// finite differences with step 1e-6 whose own error is ~1e-9; 1e-5 relative + 1e-5 absolute.
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;

constexpr double kFwdTol = 1e-6;
constexpr double kBwdTol = 1e-5;

// ---- fp64 references ---------------------------------------------------------------------

std::vector<double> ref_rmsnorm(const std::vector<double>& x, const std::vector<double>& w, int64_t C, double eps,
                                std::vector<double>* rstd = nullptr) {
  const int64_t rows = int64_t(x.size()) / C;
  std::vector<double> y(x.size());
  if (rstd) rstd->assign(size_t(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0;
    for (int64_t c = 0; c < C; ++c) ss += x[r * C + c] * x[r * C + c];
    const double rs = 1.0 / std::sqrt(ss / double(C) + eps);
    if (rstd) (*rstd)[size_t(r)] = rs;
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = x[r * C + c] * rs * w[c];
  }
  return y;
}

double ref_silu(double g) { return g / (1.0 + std::exp(-g)); }

std::vector<double> ref_swiglu(const std::vector<double>& gate, const std::vector<double>& up) {
  std::vector<double> y(gate.size());
  for (size_t i = 0; i < y.size(); ++i) y[i] = ref_silu(gate[i]) * up[i];
  return y;
}

std::vector<double> ref_softmax(const std::vector<double>& x, int64_t C) {
  std::vector<double> y(x.size());
  for (size_t r = 0; r < x.size() / size_t(C); ++r) {
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < C; ++c) mx = std::max(mx, x[r * C + c]);
    for (int64_t c = 0; c < C; ++c) sum += std::exp(x[r * C + c] - mx);
    for (int64_t c = 0; c < C; ++c) y[r * C + c] = std::exp(x[r * C + c] - mx) / sum;
  }
  return y;
}

// Finite differences of L at a subset of coordinates (every `step`-th), for large inputs.
std::vector<double> fd_subset(const std::function<double(const std::vector<double>&)>& L, std::vector<double> x,
                              size_t step, double h = 1e-6) {
  std::vector<double> g;
  for (size_t i = 0; i < x.size(); i += step) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = L(x);
    x[i] = x0 - h;
    const double fm = L(x);
    x[i] = x0;
    g.push_back((fp - fm) / (2 * h));
  }
  return g;
}

std::vector<float> every(const std::vector<float>& v, size_t step) {
  std::vector<float> out;
  for (size_t i = 0; i < v.size(); i += step) out.push_back(v[i]);
  return out;
}

// ---- RMSNorm -----------------------------------------------------------------------------

TEST(RmsNorm, ForwardMatchesFp64OnOddSizes) {
  auto ops = make_cpu_ops();
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{7, 37}, {1, 1}, {3, 129}, {300, 97}}) {
    HostF x({rows, C}), w({C}), out({rows, C}), rstd({rows});
    test::fill_uniform(x.v, 1 + uint64_t(C), -2.0f, 2.0f);
    test::fill_uniform(w.v, 2 + uint64_t(C), 0.5f, 1.5f);
    test::poison(out.v);
    test::poison(rstd.v);
    const float eps = 1e-6f;
    ops->rmsnorm(out, rstd, x, w, eps);
    std::vector<double> ref_rstd;
    const auto ref = ref_rmsnorm(x.f64(), w.f64(), C, double(eps), &ref_rstd);
    const std::string tag = std::to_string(rows) + "x" + std::to_string(C);
    EXPECT_TRUE(test::close("rmsnorm out " + tag, out.v, ref, kFwdTol, kFwdTol));
    EXPECT_TRUE(test::close("rmsnorm rstd " + tag, rstd.v, ref_rstd, kFwdTol, kFwdTol));
  }
}

TEST(RmsNorm, PerHeadNormOverLastDimension) {
  // Qwen3 q/k norm: x [T, H, D] with w [D]; rstd may be [T * H] or [T, H].
  auto ops = make_cpu_ops();
  const int64_t T = 5, H = 3, D = 16;
  HostF x({T, H, D}), w({D}), out({T, H, D}), rstd({T, H});
  test::fill_normal(x.v, 11);
  test::fill_uniform(w.v, 12, 0.5f, 1.5f);
  test::poison(out.v);
  ops->rmsnorm(out, rstd, x, w, 1e-6f);
  std::vector<double> ref_rstd;
  const auto ref = ref_rmsnorm(x.f64(), w.f64(), D, 1e-6, &ref_rstd);
  EXPECT_TRUE(test::close("per-head rmsnorm", out.v, ref, kFwdTol, kFwdTol));
  EXPECT_TRUE(test::close("per-head rstd", rstd.v, ref_rstd, kFwdTol, kFwdTol));
}

TEST(RmsNorm, BackwardMatchesFiniteDifferencesAndAccumulatesDw) {
  auto ops = make_cpu_ops();
  for (auto shape : {std::vector<int64_t>{5, 37}, std::vector<int64_t>{3, 2, 17}}) {
    const int64_t C = shape.back();
    HostF x(shape), dout(shape), dx(shape), out(shape), w({C}), dw({C});
    const int64_t rows = int64_t(x.size()) / C;
    HostF rstd({rows});
    test::fill_uniform(x.v, 21, -2.0f, 2.0f);
    test::fill_uniform(w.v, 22, 0.5f, 1.5f);
    test::fill_uniform(dout.v, 23);
    test::fill_uniform(dw.v, 24);  // dw accumulates onto these
    const std::vector<float> dw0 = dw.v;
    test::poison(dx.v);  // dx is assigned
    const double eps = 1e-5;
    ops->rmsnorm(out, rstd, x, w, float(eps));
    ops->rmsnorm_backward(dx, dw, dout, x, w, rstd);

    const auto dy = dout.f64();
    const auto xs = x.f64(), ws = w.f64();
    auto gx = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_rmsnorm(v, ws, C, eps)); }, xs);
    auto gw = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_rmsnorm(xs, v, C, eps)); }, ws);
    for (size_t i = 0; i < gw.size(); ++i) gw[i] += dw0[i];
    EXPECT_TRUE(test::close("rmsnorm dx", dx.v, gx, kBwdTol, kBwdTol));
    EXPECT_TRUE(test::close("rmsnorm dw (accumulated)", dw.v, gw, kBwdTol, kBwdTol));
  }
}

TEST(RmsNorm, BackwardParallelReductionOnLargeInput) {
  // Enough rows for the threaded path: dw is reduced across threads; checked in full against
  // finite differences, dx at every 37th element.
  auto ops = make_cpu_ops();
  const int64_t rows = 301, C = 129;
  HostF x({rows, C}), dout({rows, C}), dx({rows, C}), out({rows, C}), w({C}), dw({C}), rstd({rows});
  test::fill_uniform(x.v, 31, -2.0f, 2.0f);
  test::fill_uniform(w.v, 32, 0.5f, 1.5f);
  test::fill_uniform(dout.v, 33);
  ops->rmsnorm(out, rstd, x, w, 1e-6f);
  ops->rmsnorm_backward(dx, dw, dout, x, w, rstd);
  const auto dy = dout.f64(), xs = x.f64(), ws = w.f64();
  auto gw = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_rmsnorm(xs, v, C, 1e-6)); }, ws);
  auto gx = fd_subset([&](const std::vector<double>& v) { return test::dot(dy, ref_rmsnorm(v, ws, C, 1e-6)); }, xs, 37);
  // dw sums 301 rows: a sum of O(10) magnitude, same relative tolerance.
  EXPECT_TRUE(test::close("rmsnorm dw (threaded)", dw.v, gw, kBwdTol, kBwdTol * 10));
  EXPECT_TRUE(test::close("rmsnorm dx (threaded, sampled)", every(dx.v, 37), gx, kBwdTol, kBwdTol));
}

TEST(RmsNorm, RejectsBadShapes) {
  auto ops = make_cpu_ops();
  HostF x({3, 8}), out({3, 8}), w({8}), w7({7}), rstd({3}), rstd4({4}), out2({3, 9});
  test::fill_uniform(x.v, 1);
  EXPECT_GRPO_ERROR(ops->rmsnorm(out, rstd, x, w7, 1e-6f), "rmsnorm", "w", "f32[7]", "[8]");
  EXPECT_GRPO_ERROR(ops->rmsnorm(out, rstd4, x, w, 1e-6f), "rmsnorm", "rstd", "f32[4]", "[3]");
  EXPECT_GRPO_ERROR(ops->rmsnorm(out2, rstd, x, w, 1e-6f), "rmsnorm", "out", "f32[3, 9]", "f32[3, 8]");
  EXPECT_GRPO_ERROR(ops->rmsnorm(out, rstd, x, w, -1.0f), "rmsnorm", "eps");
  test::HostI xi({3, 8});
  EXPECT_GRPO_ERROR(ops->rmsnorm(out, rstd, xi, w, 1e-6f), "rmsnorm", "x", "i32[3, 8]");
  HostF dx({3, 8}), dy({3, 8}), dw7({7});
  EXPECT_GRPO_ERROR(ops->rmsnorm_backward(dx, dw7, dy, x, w, rstd), "rmsnorm_backward", "dw", "f32[7]", "f32[8]");
  EXPECT_GRPO_ERROR(ops->rmsnorm_backward(dx, w, out2, x, w, rstd), "rmsnorm_backward", "dout", "f32[3, 9]");
  EXPECT_GRPO_ERROR(ops->rmsnorm_backward(dx, w, dy, x, w, rstd4), "rmsnorm_backward", "rstd", "f32[4]");
}

// ---- SwiGLU ------------------------------------------------------------------------------

TEST(SwiGlu, ForwardMatchesFp64IncludingSaturatedGates) {
  auto ops = make_cpu_ops();
  const int64_t N = 5, F = 33;
  HostF gate({N, F}), up({N, F}), out({N, F});
  test::fill_uniform(gate.v, 41, -6.0f, 6.0f);
  test::fill_uniform(up.v, 42, -2.0f, 2.0f);
  // Saturated sigmoid on both sides: exp(-g) overflows f32 for g = -100 and -1000.
  gate[0] = -100.0f;
  gate[1] = 100.0f;
  gate[2] = -1000.0f;
  gate[3] = 30.0f;
  test::poison(out.v);
  ops->swiglu(out, gate, up);
  EXPECT_TRUE(test::close("swiglu", out.v, ref_swiglu(gate.f64(), up.f64()), kFwdTol, kFwdTol));
}

TEST(SwiGlu, BackwardMatchesFiniteDifferencesAndAssigns) {
  auto ops = make_cpu_ops();
  const int64_t N = 4, F = 19;
  HostF gate({N, F}), up({N, F}), dout({N, F}), dgate({N, F}), dup({N, F});
  test::fill_uniform(gate.v, 51, -5.0f, 5.0f);
  test::fill_uniform(up.v, 52, -2.0f, 2.0f);
  test::fill_uniform(dout.v, 53);
  test::poison(dgate.v);
  test::poison(dup.v);
  ops->swiglu_backward(dgate, dup, dout, gate, up);
  const auto dy = dout.f64(), g = gate.f64(), u = up.f64();
  auto gg = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_swiglu(v, u)); }, g);
  auto gu = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_swiglu(g, v)); }, u);
  EXPECT_TRUE(test::close("swiglu dgate", dgate.v, gg, kBwdTol, kBwdTol));
  EXPECT_TRUE(test::close("swiglu dup", dup.v, gu, kBwdTol, kBwdTol));

  // Assigned, not accumulated: a second call gives the same values.
  const std::vector<float> dg1 = dgate.v, du1 = dup.v;
  ops->swiglu_backward(dgate, dup, dout, gate, up);
  EXPECT_EQ(dgate.v, dg1);
  EXPECT_EQ(dup.v, du1);

  // Saturated gates give finite gradients.
  HostF g2({4}), u2({4}), d2({4}), dg2({4}), du2({4});
  g2.v = {-1000.0f, -100.0f, 100.0f, 1000.0f};
  u2.v = {1.0f, 1.0f, 1.0f, 1.0f};
  d2.v = {1.0f, 1.0f, 1.0f, 1.0f};
  ops->swiglu_backward(dg2, du2, d2, g2, u2);
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(std::isfinite(dg2[i]) && std::isfinite(du2[i])) << "gate " << g2[i];
  EXPECT_NEAR(dg2[3], 1.0f, 1e-6f);
  EXPECT_NEAR(dg2[0], 0.0f, 1e-6f);
}

TEST(SwiGlu, RejectsMismatchedShapes) {
  auto ops = make_cpu_ops();
  HostF g({2, 8}), u({2, 8}), out({2, 8}), u9({2, 9});
  EXPECT_GRPO_ERROR(ops->swiglu(out, g, u9), "swiglu", "up", "f32[2, 9]", "f32[2, 8]");
  EXPECT_GRPO_ERROR(ops->swiglu(u9, g, u), "swiglu", "out", "f32[2, 9]");
  EXPECT_GRPO_ERROR(ops->swiglu_backward(out, u9, u, g, u), "swiglu_backward", "dup", "f32[2, 9]");
}

// ---- softmax -----------------------------------------------------------------------------

TEST(Softmax, ForwardMatchesFp64AndIsShiftInvariant) {
  auto ops = make_cpu_ops();
  const int64_t rows = 6, C = 37;
  HostF x({rows, C}), out({rows, C});
  test::fill_uniform(x.v, 61, -5.0f, 5.0f);
  // A row far from zero: exp would overflow without the max subtraction.
  for (int64_t c = 0; c < C; ++c) x[size_t(C + c)] += 1000.0f;
  x[2 * C] = -INFINITY;  // a masked entry gives exactly 0
  test::poison(out.v);
  ops->softmax(out, x);
  EXPECT_TRUE(test::close("softmax", out.v, ref_softmax(x.f64(), C), kFwdTol, kFwdTol));
  EXPECT_EQ(out[size_t(2 * C)], 0.0f);

  // In place equals out of place, bit for bit.
  HostF y = x;
  y.t = Tensor(y.v.data(), DType::f32, {rows, C});
  ops->softmax(y, y);
  EXPECT_EQ(y.v, out.v);
}

TEST(Softmax, BackwardMatchesFiniteDifferencesAndMayAliasDout) {
  auto ops = make_cpu_ops();
  for (auto shape : {std::vector<int64_t>{4, 23}, std::vector<int64_t>{2, 3, 5}, std::vector<int64_t>{1, 1}}) {
    const int64_t C = shape.back();
    HostF x(shape), out(shape), dout(shape), dx(shape);
    test::fill_uniform(x.v, 71, -3.0f, 3.0f);
    test::fill_uniform(dout.v, 72);
    test::poison(dx.v);
    ops->softmax(out, x);
    ops->softmax_backward(dx, dout, out);
    const auto dy = dout.f64();
    auto gx = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_softmax(v, C)); }, x.f64());
    EXPECT_TRUE(test::close("softmax dx", dx.v, gx, kBwdTol, kBwdTol));
    // dx aliasing dout gives the same values.
    ops->softmax_backward(dout, dout, out);
    EXPECT_EQ(dout.v, dx.v);
  }
}

TEST(Softmax, RejectsMismatchedShapes) {
  auto ops = make_cpu_ops();
  HostF x({3, 5}), out({3, 6}), dx({3, 5});
  EXPECT_GRPO_ERROR(ops->softmax(out, x), "softmax", "out", "f32[3, 6]", "f32[3, 5]");
  EXPECT_GRPO_ERROR(ops->softmax_backward(dx, out, x), "softmax_backward", "dout", "f32[3, 6]", "f32[3, 5]");
  test::HostI xi({3, 5});
  EXPECT_GRPO_ERROR(ops->softmax(dx, xi), "softmax", "x", "i32[3, 5]");
}

}  // namespace
}  // namespace grpo
