// RoPE forward/backward against fp64 loops written here, and the rotary tables (default,
// linear, llama3, yarn) against fp64 evaluations of Hugging Face's formulas written here.
//
// Tolerances.
//  * Op: the contract fixes the angle as the f32 product float(pos) * inv_freq (Hugging Face's
//    inv_freq @ position_ids); the reference rounds it the same way, then works in fp64. What
//    is left is f32 rounding of cos/sin and of a c - b s: a few 2^-24 (6e-8) relative on O(1)
//    values, so 1e-6.
//  * Tables: Hugging Face evaluates base ** (2i / dim) in f32. The exponent rounded to f32
//    moves the result by up to 2^-24 * ln(theta) relatively, pow and the reciprocal by 2^-24
//    each, so default tables get rel 2^-24 * (ln(theta) + 3). Linear adds one division.
//    Yarn is a convex blend of two such values (a few roundings more): 2^-24 * (ln(theta) + 6).
//    Llama3's smooth band amplifies the relative error of inv_freq by up to
//    1 + (1 - 1/factor) * high / (high - low) / min((1 - s) / factor + s) <= 1 + 7/8 * 4/3 * 8
//    ~ 10.3 for factor 8, low 1, high 4; 16x the default bound covers it.
#include <cmath>
#include <cstdint>
#include <numbers>
#include <vector>

#include "kernels/ops.h"
#include "kernels/rope.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

constexpr double kU = 1.0 / (1 << 24);  // f32 unit roundoff 2^-24
constexpr double kOpTol = 1e-6;

// ---- op reference --------------------------------------------------------------------------

struct Case {
  int64_t T = 5, H = 3, D = 16, rot = 16;
  RopeLayout layout = RopeLayout::half;
  float scaling = 1.0f;
};

// y = scaling * R(pos) x (transpose: scaling * R^T x), fp64 except for the f32 angle.
std::vector<double> ref_rope(const std::vector<double>& x, const std::vector<int32_t>& pos,
                             const std::vector<float>& inv, const Case& c, bool transpose = false) {
  std::vector<double> y = x;
  const int64_t half = c.rot / 2;
  for (int64_t t = 0; t < c.T; ++t)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const float angle = float(pos[size_t(t)]) * inv[size_t(i)];
        const double cs = std::cos(double(angle)) * c.scaling;
        const double sn = std::sin(double(angle)) * c.scaling * (transpose ? -1.0 : 1.0);
        const int64_t j1 = c.layout == RopeLayout::half ? i : 2 * i;
        const int64_t j2 = c.layout == RopeLayout::half ? i + half : 2 * i + 1;
        const size_t base = size_t((t * c.H + h) * c.D);
        const double a = x[base + size_t(j1)], b = x[base + size_t(j2)];
        y[base + size_t(j1)] = a * cs - b * sn;
        y[base + size_t(j2)] = b * cs + a * sn;
      }
  return y;
}

// Owns the inv_freq storage behind a RopeParams.
struct Params {
  HostF inv;
  RopeParams p;
  Params(const Case& c, double theta = 10000) : inv({c.rot / 2}) {
    for (int64_t i = 0; i < c.rot / 2; ++i) inv[size_t(i)] = float(std::pow(theta, -2.0 * double(i) / double(c.rot)));
    p.head_dim = c.D;
    p.rot_dim = c.rot;
    p.layout = c.layout;
    p.attention_scaling = c.scaling;
    p.inv_freq = inv;
  }
};

HostI positions(const std::vector<int32_t>& v) {
  HostI h({int64_t(v.size())});
  h.v = v;
  h.t = Tensor(h.v.data(), DType::i32, {int64_t(v.size())});
  return h;
}

std::vector<Case> op_cases() {
  std::vector<Case> cases;
  for (RopeLayout layout : {RopeLayout::half, RopeLayout::interleaved}) {
    cases.push_back({5, 3, 16, 16, layout, 1.0f});
    cases.push_back({5, 2, 20, 8, layout, 1.0f});    // partial rotary: 12 dims copied
    cases.push_back({5, 3, 18, 18, layout, 1.25f});  // odd pair count, yarn-like scaling
  }
  return cases;
}

std::string name(const Case& c) {
  return std::string(c.layout == RopeLayout::half ? "half" : "interleaved") + " D=" + std::to_string(c.D) +
         " rot=" + std::to_string(c.rot) + " scaling=" + std::to_string(c.scaling);
}

// Unsorted, repeated, zero and large positions.
const std::vector<int32_t> kPos = {3, 0, 131071, 3, 1000};

TEST(Rope, ForwardMatchesFp64BothLayoutsAndPartialRotary) {
  auto ops = make_cpu_ops();
  for (const Case& c : op_cases()) {
    Params prm(c);
    HostF x({c.T, c.H, c.D}), out({c.T, c.H, c.D});
    test::fill_uniform(x.v, 1);
    test::poison(out.v);
    HostI pos = positions(kPos);
    ops->rope(out, x, pos, prm.p);
    EXPECT_TRUE(test::close("rope " + name(c), out.v, ref_rope(x.f64(), kPos, prm.inv.v, c), kOpTol, kOpTol));
    // Dimensions past rot_dim are copied bit for bit.
    for (size_t r = 0; r < size_t(c.T * c.H); ++r)
      for (int64_t d = c.rot; d < c.D; ++d) ASSERT_EQ(out[r * size_t(c.D) + size_t(d)], x[r * size_t(c.D) + size_t(d)]);
  }
}

TEST(Rope, HalfLayoutRotatesPairsIAndIPlusHalf) {
  // One token at position 1 with inv_freq = {pi/2, 0}: pair 0 turns by 90 degrees, pair 1 not.
  auto ops = make_cpu_ops();
  Case c{1, 1, 4, 4, RopeLayout::half, 1.0f};
  Params prm(c);
  prm.inv.v = {float(std::numbers::pi / 2), 0.0f};
  HostF x({1, 1, 4}), out({1, 1, 4});
  x.v = {1.0f, 2.0f, 3.0f, 4.0f};  // pairs (x0, x2) and (x1, x3)
  HostI pos = positions({1});
  ops->rope(out, x, pos, prm.p);
  EXPECT_NEAR(out[0], -3.0f, 1e-6f);  // a c - b s with (a, b) = (1, 3)
  EXPECT_NEAR(out[2], 1.0f, 1e-6f);   // b c + a s
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[3], 4.0f);
  c.layout = RopeLayout::interleaved;  // pairs (x0, x1) and (x2, x3)
  Params prm2(c);
  prm2.inv.v = {float(std::numbers::pi / 2), 0.0f};
  ops->rope(out, x, pos, prm2.p);
  EXPECT_NEAR(out[0], -2.0f, 1e-6f);
  EXPECT_NEAR(out[1], 1.0f, 1e-6f);
  EXPECT_EQ(out[2], 3.0f);
  EXPECT_EQ(out[3], 4.0f);
}

TEST(Rope, BackwardMatchesFiniteDifferences) {
  auto ops = make_cpu_ops();
  for (const Case& c : op_cases()) {
    Params prm(c);
    HostF x({c.T, c.H, c.D}), dout({c.T, c.H, c.D}), dx({c.T, c.H, c.D});
    test::fill_uniform(x.v, 2);
    test::fill_uniform(dout.v, 3);
    test::poison(dx.v);
    HostI pos = positions(kPos);
    ops->rope_backward(dx, dout, pos, prm.p);
    const auto dy = dout.f64();
    auto g = test::fd_gradient([&](const std::vector<double>& v) { return test::dot(dy, ref_rope(v, kPos, prm.inv.v, c)); },
                               x.f64());
    // The rotation is linear, so finite differences are exact up to fp64 cancellation (~1e-10).
    EXPECT_TRUE(test::close("rope dx " + name(c), dx.v, g, kOpTol, kOpTol));
  }
}

TEST(Rope, BackwardOfForwardIsScaledIdentity) {
  // scaling * R^T (scaling * R x) = scaling^2 x.
  auto ops = make_cpu_ops();
  for (const Case& c : op_cases()) {
    Params prm(c);
    HostF x({c.T, c.H, c.D}), y({c.T, c.H, c.D}), back({c.T, c.H, c.D});
    test::fill_uniform(x.v, 4);
    HostI pos = positions(kPos);
    ops->rope(y, x, pos, prm.p);
    ops->rope_backward(back, y, pos, prm.p);
    std::vector<double> ref = x.f64();
    for (int64_t r = 0; r < c.T * c.H; ++r)
      for (int64_t d = 0; d < c.rot; ++d) ref[size_t(r * c.D + d)] *= double(c.scaling) * double(c.scaling);
    EXPECT_TRUE(test::close("rope_backward(rope(x)) " + name(c), back.v, ref, kOpTol, kOpTol));
  }
}

TEST(Rope, InPlaceEqualsOutOfPlace) {
  auto ops = make_cpu_ops();
  for (const Case& c : op_cases()) {
    Params prm(c);
    HostF x({c.T, c.H, c.D}), out({c.T, c.H, c.D}), dx({c.T, c.H, c.D});
    test::fill_uniform(x.v, 5);
    HostI pos = positions(kPos);
    ops->rope(out, x, pos, prm.p);
    ops->rope_backward(dx, x, pos, prm.p);
    HostF inplace({c.T, c.H, c.D});
    inplace.v = x.v;
    ops->rope(inplace, inplace, pos, prm.p);
    EXPECT_EQ(inplace.v, out.v) << name(c);
    inplace.v = x.v;
    ops->rope_backward(inplace, inplace, pos, prm.p);
    EXPECT_EQ(inplace.v, dx.v) << name(c);
  }
}

TEST(Rope, ManyTokensTakeTheThreadedPath) {
  auto ops = make_cpu_ops();
  Case c{257, 4, 32, 32, RopeLayout::half, 1.0f};
  Params prm(c, 1e6);
  std::vector<int32_t> pv(size_t(c.T));
  for (size_t t = 0; t < pv.size(); ++t) pv[t] = int32_t((t * 7919) % 40000);
  HostF x({c.T, c.H, c.D}), out({c.T, c.H, c.D});
  test::fill_uniform(x.v, 6);
  HostI pos = positions(pv);
  ops->rope(out, x, pos, prm.p);
  EXPECT_TRUE(test::close("rope threaded", out.v, ref_rope(x.f64(), pv, prm.inv.v, c), kOpTol, kOpTol));
}

TEST(Rope, RejectsBadInputs) {
  auto ops = make_cpu_ops();
  Case c;
  Params prm(c);
  HostF x({5, 3, 16}), out({5, 3, 16});
  HostI pos = positions({0, 1, 2, 3, 4});
  HostI pos4 = positions({0, 1, 2, 3});
  EXPECT_GRPO_ERROR(ops->rope(out, x, pos4, prm.p), "rope", "positions", "i32[4]", "[5]");
  HostI neg = positions({0, 1, -1, 3, 4});
  EXPECT_GRPO_ERROR(ops->rope(out, x, neg, prm.p), "rope", "positions[2]", "-1");
  HostF posf({5});
  EXPECT_GRPO_ERROR(ops->rope(out, x, posf, prm.p), "rope", "positions", "dtype i32");
  HostF inv3({3});
  RopeParams bad = prm.p;
  bad.inv_freq = inv3;
  EXPECT_GRPO_ERROR(ops->rope(out, x, pos, bad), "rope", "inv_freq", "f32[3]", "[8]");
  bad = prm.p;
  bad.head_dim = 12;
  EXPECT_GRPO_ERROR(ops->rope(out, x, pos, bad), "rope", "f32[5, 3, 16]", "head_dim is 12");
  bad = prm.p;
  bad.rot_dim = 7;
  EXPECT_GRPO_ERROR(ops->rope(out, x, pos, bad), "rope", "rot_dim is 7");
  bad.rot_dim = 18;
  EXPECT_GRPO_ERROR(ops->rope(out, x, pos, bad), "rope", "rot_dim is 18");
  HostF out2({5, 3, 8}), x2d({5, 48});
  EXPECT_GRPO_ERROR(ops->rope(out2, x, pos, prm.p), "rope", "out", "f32[5, 3, 8]", "f32[5, 3, 16]");
  EXPECT_GRPO_ERROR(ops->rope(x2d, x2d, pos, prm.p), "rope", "x", "f32[5, 48]", "3 dimensions");
  EXPECT_GRPO_ERROR(ops->rope_backward(out, x, pos4, prm.p), "rope_backward", "positions", "i32[4]");
  // A partial overlap (shifted by one token) is refused; exact aliasing is fine.
  HostF big({6, 3, 16});
  Tensor shifted(big.data() + 48, DType::f32, {5, 3, 16});
  Tensor first(big.data(), DType::f32, {5, 3, 16});
  EXPECT_GRPO_ERROR(ops->rope(shifted, first, pos, prm.p), "rope", "overlaps");
}

// ---- tables --------------------------------------------------------------------------------

// theta^(-2i / dim) in fp64.
std::vector<double> ref_default(double theta, int64_t dim) {
  std::vector<double> inv(size_t(dim / 2));
  for (int64_t i = 0; i < dim / 2; ++i) inv[size_t(i)] = std::pow(theta, -2.0 * double(i) / double(dim));
  return inv;
}

double default_tol(double theta) { return kU * (std::log(theta) + 3.0); }

TEST(Rope, DefaultTablesMatchFp64) {
  struct C { double theta; int64_t head_dim; double partial; int64_t rot; };
  for (const C& c : {C{10000, 128, 1.0, 128}, C{1000000, 128, 1.0, 128}, C{10000, 96, 1.0, 96},
                     C{10000, 80, 0.4, 32}, C{10000000, 256, 0.25, 64}}) {
    RopeConfig cfg;
    cfg.theta = c.theta;
    cfg.head_dim = c.head_dim;
    cfg.partial_rotary_factor = c.partial;
    RopeTables t = rope_tables(cfg);
    EXPECT_EQ(t.rot_dim, c.rot);
    EXPECT_EQ(t.attention_scaling, 1.0f);
    EXPECT_TRUE(test::close("default inv_freq theta=" + std::to_string(c.theta) + " dim=" + std::to_string(c.rot),
                            t.inv_freq, ref_default(c.theta, c.rot), default_tol(c.theta), 0.0));
  }
}

TEST(Rope, LinearTablesDivideByFactor) {
  RopeConfig cfg;
  cfg.head_dim = 64;
  cfg.scaling.type = "linear";
  cfg.scaling.factor = 4;
  RopeTables t = rope_tables(cfg);
  auto ref = ref_default(10000, 64);
  for (double& v : ref) v /= 4;
  EXPECT_TRUE(test::close("linear inv_freq", t.inv_freq, ref, default_tol(10000) + kU, 0.0));
  EXPECT_EQ(t.attention_scaling, 1.0f);
}

TEST(Rope, Llama3TablesMatchFp64) {
  // Llama 3.1: rope_theta 500000, factor 8, low_freq_factor 1, high_freq_factor 4,
  // original_max_position_embeddings 8192, head_dim 128.
  RopeConfig cfg;
  cfg.theta = 500000;
  cfg.head_dim = 128;
  cfg.max_position_embeddings = 131072;
  cfg.scaling.type = "llama3";
  cfg.scaling.factor = 8;
  cfg.scaling.low_freq_factor = 1;
  cfg.scaling.high_freq_factor = 4;
  cfg.scaling.original_max_position_embeddings = 8192;
  RopeTables t = rope_tables(cfg);
  ASSERT_EQ(t.inv_freq.size(), 64u);
  EXPECT_EQ(t.attention_scaling, 1.0f);
  const std::vector<double> base = ref_default(500000, 128);
  std::vector<double> ref(base.size());
  int n_high = 0, n_low = 0, n_mid = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / base[i];
    if (wavelen < 8192.0 / 4) {
      ref[i] = base[i];
      ++n_high;
    } else if (wavelen > 8192.0 / 1) {
      ref[i] = base[i] / 8;
      ++n_low;
    } else {
      const double smooth = (8192.0 / wavelen - 1) / (4 - 1);
      ref[i] = (1 - smooth) * base[i] / 8 + smooth * base[i];
      ++n_mid;
    }
  }
  // All three bands are exercised by this config.
  EXPECT_GT(n_high, 0);
  EXPECT_GT(n_low, 0);
  EXPECT_GT(n_mid, 0);
  EXPECT_TRUE(test::close("llama3 inv_freq", t.inv_freq, ref, 16 * default_tol(500000), 0.0));
  // High-frequency pairs are the default table, low-frequency ones it divided by 8 (exact in f32).
  RopeConfig plain = cfg;
  plain.scaling = RopeScaling{};
  const RopeTables d = rope_tables(plain);
  EXPECT_EQ(t.inv_freq[0], d.inv_freq[0]);
  EXPECT_EQ(t.inv_freq[63], d.inv_freq[63] / 8);
}

struct YarnRef {
  std::vector<double> inv;
  double attention;
};

// Hugging Face's yarn in fp64: correction range from beta_fast/beta_slow rotations over the
// original context, linear ramp between, blend of interpolated and extrapolated frequencies.
YarnRef ref_yarn(double theta, int64_t dim, double factor, int64_t original, double beta_fast, double beta_slow,
                 bool truncate, double mscale, double mscale_all_dim) {
  auto correction_dim = [&](double rot) {
    return double(dim) * std::log(double(original) / (rot * 2 * std::numbers::pi)) / (2 * std::log(theta));
  };
  double low = correction_dim(beta_fast), high = correction_dim(beta_slow);
  if (truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, double(dim - 1));
  if (low == high) high += 0.001;
  const std::vector<double> extra = ref_default(theta, dim);
  YarnRef r;
  for (size_t i = 0; i < extra.size(); ++i) {
    const double ramp = std::clamp((double(i) - low) / (high - low), 0.0, 1.0);
    // weight of the extrapolated (unscaled) frequency is 1 - ramp
    r.inv.push_back(extra[i] / factor * ramp + extra[i] * (1 - ramp));
  }
  auto get_mscale = [&](double m) { return factor <= 1 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
  r.attention = (mscale != 0 && mscale_all_dim != 0) ? get_mscale(mscale) / get_mscale(mscale_all_dim) : get_mscale(1);
  return r;
}

double yarn_tol(double theta) { return kU * (std::log(theta) + 6.0); }

TEST(Rope, YarnTablesMatchFp64) {
  // factor 4 over an original 4096 context, beta_fast 32, beta_slow 1, theta 10000, head_dim 128:
  // correction range [20, 46] of the 64 pairs, attention factor 0.1 ln 4 + 1.
  RopeConfig cfg;
  cfg.head_dim = 128;
  cfg.max_position_embeddings = 16384;
  cfg.scaling.type = "yarn";
  cfg.scaling.factor = 4;
  cfg.scaling.original_max_position_embeddings = 4096;
  RopeTables t = rope_tables(cfg);
  YarnRef r = ref_yarn(10000, 128, 4, 4096, 32, 1, true, 0, 0);
  EXPECT_TRUE(test::close("yarn inv_freq", t.inv_freq, r.inv, yarn_tol(10000), 0.0));
  EXPECT_NEAR(t.attention_scaling, 0.1 * std::log(4.0) + 1.0, 1e-7);
  EXPECT_FLOAT_EQ(t.attention_scaling, float(r.attention));

  // factor 0 derives max_position_embeddings / original = 4: the same tables.
  cfg.scaling.factor = 0;
  RopeTables derived = rope_tables(cfg);
  EXPECT_EQ(derived.inv_freq, t.inv_freq);
  EXPECT_EQ(derived.attention_scaling, t.attention_scaling);

  // An explicit attention_factor wins over the derived one.
  cfg.scaling.attention_factor = 0.75;
  EXPECT_EQ(rope_tables(cfg).attention_scaling, 0.75f);
}

TEST(Rope, YarnDeepSeekV3MscaleTables) {
  // DeepSeek-V3: qk_rope_head_dim 64, theta 10000, factor 40, mscale 1, mscale_all_dim 1,
  // original 4096 (max_position_embeddings 163840): attention factor mscale/mscale_all_dim = 1.
  RopeConfig cfg;
  cfg.head_dim = 64;
  cfg.max_position_embeddings = 163840;
  cfg.layout = RopeLayout::interleaved;
  cfg.scaling.type = "yarn";
  cfg.scaling.factor = 40;
  cfg.scaling.mscale = 1;
  cfg.scaling.mscale_all_dim = 1;
  cfg.scaling.original_max_position_embeddings = 4096;
  cfg.scaling.beta_fast = 32;
  cfg.scaling.beta_slow = 1;
  RopeTables t = rope_tables(cfg);
  YarnRef r = ref_yarn(10000, 64, 40, 4096, 32, 1, true, 1, 1);
  EXPECT_TRUE(test::close("deepseek yarn inv_freq", t.inv_freq, r.inv, yarn_tol(10000), 0.0));
  EXPECT_EQ(t.attention_scaling, 1.0f);
  // Unequal mscales: (0.1 * 1 * ln 40 + 1) / (0.1 * 0.5 * ln 40 + 1).
  cfg.scaling.mscale_all_dim = 0.5;
  const double expect = (0.1 * std::log(40.0) + 1) / (0.05 * std::log(40.0) + 1);
  EXPECT_FLOAT_EQ(rope_tables(cfg).attention_scaling, float(expect));
  // Only one mscale set: the plain 0.1 ln(factor) + 1.
  cfg.scaling.mscale_all_dim = 0;
  EXPECT_FLOAT_EQ(rope_tables(cfg).attention_scaling, float(0.1 * std::log(40.0) + 1));
}

TEST(Rope, YarnWithoutTruncation) {
  // gpt-oss style: theta 150000, factor 32, original 4096, head_dim 64, truncate false.
  RopeConfig cfg;
  cfg.theta = 150000;
  cfg.head_dim = 64;
  cfg.max_position_embeddings = 131072;
  cfg.scaling.type = "yarn";
  cfg.scaling.factor = 32;
  cfg.scaling.original_max_position_embeddings = 4096;
  cfg.scaling.truncate = false;
  RopeTables t = rope_tables(cfg);
  YarnRef r = ref_yarn(150000, 64, 32, 4096, 32, 1, false, 0, 0);
  EXPECT_TRUE(test::close("yarn (no truncate) inv_freq", t.inv_freq, r.inv, yarn_tol(150000), 0.0));
  cfg.scaling.truncate = true;
  EXPECT_NE(rope_tables(cfg).inv_freq, t.inv_freq);
}

TEST(Rope, RopeParamsFromTables) {
  RopeConfig cfg;
  cfg.head_dim = 80;
  cfg.partial_rotary_factor = 0.5;
  cfg.layout = RopeLayout::interleaved;
  RopeTables t = rope_tables(cfg);
  HostF inv({20});
  inv.v = t.inv_freq;
  RopeParams p = rope_params(cfg, t, inv);
  EXPECT_EQ(p.head_dim, 80);
  EXPECT_EQ(p.rot_dim, 40);
  EXPECT_EQ(p.layout, RopeLayout::interleaved);
  EXPECT_EQ(p.attention_scaling, 1.0f);
  EXPECT_EQ(p.inv_freq.data, inv.data());
  HostF wrong({21});
  EXPECT_GRPO_ERROR(rope_params(cfg, t, wrong), "rope_params", "inv_freq", "f32[21]", "[20]");
}

TEST(Rope, TablesRejectBadConfigs) {
  auto with = [](auto edit) {
    RopeConfig cfg;
    cfg.head_dim = 64;
    cfg.max_position_embeddings = 8192;
    edit(cfg);
    return cfg;
  };
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) { c.scaling.type = "dynamic"; })), "rope_scaling.type",
                    "dynamic");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) { c.theta = 1; })), "rope_theta");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) { c.head_dim = 0; })), "head_dim");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) { c.partial_rotary_factor = 1.5; })),
                    "partial_rotary_factor");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) {
                      c.head_dim = 10;
                      c.partial_rotary_factor = 0.5;
                    })),
                    "rotary dimension", "= 5", "even");
  for (const char* type : {"linear", "llama3", "yarn"})
    EXPECT_GRPO_ERROR(rope_tables(with([&](RopeConfig& c) {
                        c.scaling.type = type;
                        c.scaling.factor = 0.5;
                      })),
                      "rope_scaling.factor", "0.5", type);
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) {
                      c.scaling.type = "llama3";
                      c.scaling.factor = 8;
                      c.scaling.high_freq_factor = 1;
                    })),
                    "rope_scaling.high_freq_factor", "low_freq_factor");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) {
                      c.scaling.type = "llama3";
                      c.scaling.factor = 8;
                      c.max_position_embeddings = 0;
                    })),
                    "original_max_position_embeddings");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) {
                      c.scaling.type = "yarn";
                      c.scaling.factor = 4;
                      c.scaling.beta_fast = 0.5;
                    })),
                    "rope_scaling.beta_fast");
  EXPECT_GRPO_ERROR(rope_tables(with([](RopeConfig& c) {
                      c.scaling.type = "yarn";
                      c.scaling.factor = 4;
                      c.scaling.attention_factor = -1;
                    })),
                    "rope_scaling.attention_factor");
}

}  // namespace
}  // namespace grpo
