// The learner's optimizer: the learning-rate schedule against hand-computed values, config
// parsing and its errors, and Optimizer::step against (a) ops.adamw applied by hand on a twin
// model (bit-identical) and (b) a naive fp64 AdamW loop written here (decay mask from the
// parameter names, clipping, bias correction).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/error.h"
#include "learner/optimizer.h"
#include "tests/policy/model_test_util.h"

namespace grpo::test {
namespace {

// ---- schedule ---------------------------------------------------------------------------

TEST(LrSchedule, WarmupThenConstant) {
  LrSchedule s;
  s.lr = 1e-3;
  s.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 0.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 2.5e-4);  // the first update is not wasted at lr 0
  EXPECT_DOUBLE_EQ(lr_at(s, 2), 5e-4);
  EXPECT_DOUBLE_EQ(lr_at(s, 4), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(s, 5), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(s, 1000000), 1e-3);
  s.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 1e-3);
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 1e-3);
}

TEST(LrSchedule, CosineWithMinRatio) {
  LrSchedule s;
  s.lr = 1.0;
  s.decay = LrDecay::cosine;
  s.warmup_steps = 10;
  s.total_steps = 110;
  s.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(lr_at(s, 5), 0.5);                 // warm-up
  EXPECT_DOUBLE_EQ(lr_at(s, 10), 1.0);                // peak
  EXPECT_NEAR(lr_at(s, 35), 0.8681980515339464, 1e-15);  // p = 1/4: 0.1 + 0.9 (1 + cos(pi/4)) / 2
  EXPECT_NEAR(lr_at(s, 60), 0.55, 1e-15);             // p = 1/2: halfway between 1 and 0.1
  EXPECT_NEAR(lr_at(s, 110), 0.1, 1e-15);             // end of the decay
  EXPECT_DOUBLE_EQ(lr_at(s, 111), lr_at(s, 110));     // beyond total_steps: stays at min
  EXPECT_NEAR(lr_at(s, 5000), 0.1, 1e-15);
  s.min_lr_ratio = 0.0;
  EXPECT_NEAR(lr_at(s, 60), 0.5, 1e-15);
  EXPECT_NEAR(lr_at(s, 110), 0.0, 1e-15);
  EXPECT_NEAR(lr_at(s, 200), 0.0, 1e-15);
}

TEST(LrSchedule, CosineWithoutWarmup) {
  LrSchedule s;
  s.lr = 2.0;
  s.decay = LrDecay::cosine;
  s.total_steps = 100;
  EXPECT_DOUBLE_EQ(lr_at(s, 0), 2.0);
  EXPECT_NEAR(lr_at(s, 1), 2.0 * 0.9997532801828658, 1e-14);  // (1 + cos(pi / 100)) / 2
  EXPECT_NEAR(lr_at(s, 50), 1.0, 1e-14);
}

TEST(LrSchedule, Linear) {
  LrSchedule s;
  s.lr = 2.0;
  s.decay = LrDecay::linear;
  s.warmup_steps = 2;
  s.total_steps = 12;
  s.min_lr_ratio = 0.5;
  EXPECT_DOUBLE_EQ(lr_at(s, 1), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 2), 2.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 7), 1.5);   // p = 1/2: 2 (0.5 + 0.5 * 0.5)
  EXPECT_DOUBLE_EQ(lr_at(s, 12), 1.0);
  EXPECT_DOUBLE_EQ(lr_at(s, 30), 1.0);
}

// ---- config -----------------------------------------------------------------------------

OptimizerConfig parse(const std::string& text) {
  ConfigNode root = ConfigNode::from_string(text, "run.json");
  OptimizerConfig c = parse_optimizer_config(root.child("optimizer"));
  root.finish();
  return c;
}

TEST(OptimizerConfig, ParsesEveryKey) {
  const OptimizerConfig c = parse(R"({"optimizer": {"lr": 3e-4, "schedule": "cosine", "warmup_steps": 5,
      "total_steps": 50, "min_lr_ratio": 0.2, "betas": [0.8, 0.95], "eps": 1e-6, "weight_decay": 0.1,
      "decay_norms_and_biases": true, "max_grad_norm": 0.5}})");
  EXPECT_DOUBLE_EQ(c.schedule.lr, 3e-4);
  EXPECT_EQ(c.schedule.decay, LrDecay::cosine);
  EXPECT_EQ(c.schedule.warmup_steps, 5);
  EXPECT_EQ(c.schedule.total_steps, 50);
  EXPECT_DOUBLE_EQ(c.schedule.min_lr_ratio, 0.2);
  EXPECT_DOUBLE_EQ(c.beta1, 0.8);
  EXPECT_DOUBLE_EQ(c.beta2, 0.95);
  EXPECT_DOUBLE_EQ(c.eps, 1e-6);
  EXPECT_DOUBLE_EQ(c.weight_decay, 0.1);
  EXPECT_TRUE(c.decay_norms_and_biases);
  EXPECT_DOUBLE_EQ(c.max_grad_norm, 0.5);
  // The effective-config JSON reads back to the same values.
  const OptimizerConfig back = parse(R"({"optimizer": )" + optimizer_config_json(c) + "}");
  EXPECT_EQ(optimizer_config_json(back), optimizer_config_json(c));
  // Defaults.
  const OptimizerConfig d = parse(R"({"optimizer": {}})");
  EXPECT_EQ(d.schedule.decay, LrDecay::constant);
  EXPECT_DOUBLE_EQ(d.max_grad_norm, 1.0);
  EXPECT_FALSE(d.decay_norms_and_biases);
}

TEST(OptimizerConfig, ErrorsNameTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"lr": -1})", "optimizer.lr"},
      {R"({"lr": "big"})", "optimizer.lr"},
      {R"({"warmup_steps": -2})", "optimizer.warmup_steps"},
      {R"({"total_steps": -1})", "optimizer.total_steps"},
      {R"({"schedule": "cosin"})", "optimizer.schedule"},
      {R"({"schedule": "cosine", "warmup_steps": 10, "total_steps": 10})", "optimizer.total_steps"},
      {R"({"schedule": "linear"})", "optimizer.total_steps"},
      {R"({"min_lr_ratio": 1.5})", "optimizer.min_lr_ratio"},
      {R"({"betas": [0.9]})", "optimizer.betas"},
      {R"({"betas": [0.9, 1.0]})", "optimizer.betas"},
      {R"({"eps": 0})", "optimizer.eps"},
      {R"({"weight_decay": -0.1})", "optimizer.weight_decay"},
      {R"({"max_grad_norm": -1})", "optimizer.max_grad_norm"},
      {R"({"decay_norms_and_biases": 1})", "optimizer.decay_norms_and_biases"},
      {R"({"lerning_rate": 1})", "optimizer.lerning_rate"},
  };
  for (const auto& [body, field] : cases) {
    try {
      parse(R"({"optimizer": )" + body + "}");
      ADD_FAILURE() << body << ": accepted";
    } catch (const Error& e) {
      EXPECT_NE(e.message().find(field), std::string::npos) << body << ": " << e.message();
    }
  }
}

// ---- the step ---------------------------------------------------------------------------

ModelLimits train_limits() {
  ModelLimits l;
  l.max_tokens = 16;
  l.max_seqs = 2;
  return l;
}

// Random gradients in every parameter (padding stays zero), norm about `scale`.
void fill_grads(Model& model, uint64_t seed, double scale) {
  model.zero_grad();
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, scale / std::sqrt(double(model.table().numel())));
  float* g = static_cast<float*>(model.grads().data);
  for (const ParamEntry& e : model.table().entries())
    for (int64_t i = 0; i < e.numel(); ++i) g[e.offset + i] = float(normal(rng));
}

// Decayed or not, from the Hugging Face name alone (independent of ParamTable's kinds).
bool name_decays(const std::string& name) {
  const bool bias = name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0;
  return !bias && name.find("norm") == std::string::npos;
}

struct Fp64Adam {
  std::vector<double> p, m, v, mask;
};

// One AdamW step in double over the table's parameters (the textbook formulas).
double fp64_step(Fp64Adam& s, const Model& model, const std::vector<double>& grad, const OptimizerConfig& c,
                 double lr, int64_t t, float grad_scale) {
  const ParamTable& table = model.table();
  std::vector<double> g(grad.size());
  double sq = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    g[i] = grad[i] * grad_scale;
    sq += g[i] * g[i];
  }
  const double norm = std::sqrt(sq);
  const double clip = (c.max_grad_norm > 0 && norm > c.max_grad_norm) ? c.max_grad_norm / (norm + 1e-6) : 1.0;
  for (const ParamEntry& e : table.entries())
    for (int64_t i = e.offset; i < e.offset + e.numel(); ++i) {
      const double gi = g[size_t(i)] * clip;
      double& m = s.m[size_t(i)];
      double& v = s.v[size_t(i)];
      m = c.beta1 * m + (1 - c.beta1) * gi;
      v = c.beta2 * v + (1 - c.beta2) * gi * gi;
      const double mhat = m / (1 - std::pow(c.beta1, double(t)));
      const double vhat = v / (1 - std::pow(c.beta2, double(t)));
      double& p = s.p[size_t(i)];
      p = p - lr * c.weight_decay * s.mask[size_t(i)] * p - lr * mhat / (std::sqrt(vhat) + c.eps);
    }
  return norm;
}

class OptimizerStep : public ::testing::TestWithParam<bool> {};  // decay_norms_and_biases

TEST_P(OptimizerStep, MatchesAdamWByHandAndFp64Loop) {
  const bool decay_all = GetParam();
  const ModelConfig cfg = test_config("llama");  // has attention and MLP biases
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, train_limits()), twin(cfg, *ops, train_limits());
  randomize_weights(model, 7);
  randomize_weights(twin, 7);

  OptimizerConfig c;
  c.schedule.lr = 1e-2;
  c.schedule.decay = LrDecay::cosine;
  c.schedule.warmup_steps = 2;
  c.schedule.total_steps = 10;
  c.schedule.min_lr_ratio = 0.1;
  c.beta1 = 0.9;
  c.beta2 = 0.95;
  c.eps = 1e-8;
  c.weight_decay = 0.1;
  c.decay_norms_and_biases = decay_all;
  c.max_grad_norm = 1.0;
  Optimizer opt(model, c);

  // Twin: ops.adamw by hand, one call per range, over moment buffers of our own.
  const ParamTable& table = model.table();
  const int64_t N = table.size();
  std::vector<float> tm(size_t(N), 0.0f), tv(size_t(N), 0.0f);
  const Tensor twin_m(tm.data(), DType::f32, {N}), twin_v(tv.data(), DType::f32, {N});

  Fp64Adam ref;
  const std::vector<float> p0 = read_tensor(model.params());
  ref.p.assign(p0.begin(), p0.end());
  ref.m.assign(size_t(N), 0.0);
  ref.v.assign(size_t(N), 0.0);
  ref.mask.assign(size_t(N), 0.0);
  for (const ParamEntry& e : table.entries())
    for (int64_t i = 0; i < e.numel(); ++i)
      ref.mask[size_t(e.offset + i)] = decay_all || name_decays(e.name) ? 1.0 : 0.0;

  // lr by hand: warm-up 1/2, 2/2, then cosine at p = 1/8 (0.1 + 0.9 (1 + cos(pi/8)) / 2).
  const double lrs[] = {0.5e-2, 1e-2, 1e-2 * 0.965745789630079};
  const double norms[] = {3.0, 0.4, 2.0};  // clipped, not clipped, clipped after grad_scale 0.75
  const float scales[] = {1.0f, 1.0f, 0.75f};
  for (int t = 1; t <= 3; ++t) {
    fill_grads(model, 100 + t, norms[t - 1]);
    std::memcpy(twin.grads().data, model.grads().data, model.grads().nbytes());
    const std::vector<float> gf = read_tensor(model.grads());
    const std::vector<double> g(gf.begin(), gf.end());

    const OptimizerStepMetrics s = opt.step(scales[t - 1]);
    const double ref_norm = fp64_step(ref, model, g, c, lrs[t - 1], t, scales[t - 1]);

    // by hand
    const Tensor tg = twin.grads();
    if (scales[t - 1] != 1.0f) ops->scale(tg, scales[t - 1]);
    clip_grad_norm(*ops, std::span<const Tensor>(&tg, 1), 1.0f);
    AdamWParams ap;
    ap.lr = float(lrs[t - 1]);
    ap.beta1 = 0.9f;
    ap.beta2 = 0.95f;
    ap.eps = 1e-8f;
    ap.step = t;
    for (const bool decayed : {true, false}) {
      const ParamRange r = decayed ? table.decay_range() : table.no_decay_range();
      ap.weight_decay = decayed || decay_all ? 0.1f : 0.0f;
      auto sub = [&](const Tensor& x) { return x.rows(r.offset, r.offset + r.count); };
      ops->adamw(sub(twin.params()), sub(tg), sub(twin_m), sub(twin_v), ap);
    }

    EXPECT_EQ(opt.step_count(), t);
    EXPECT_FALSE(s.skipped);
    EXPECT_NEAR(s.lr, lrs[t - 1], 1e-9);
    EXPECT_NEAR(s.grad_norm, ref_norm, 1e-5 * ref_norm);
    EXPECT_NEAR(ref_norm, norms[t - 1] * scales[t - 1], 0.1 * norms[t - 1]);  // the grads are what we meant
    EXPECT_EQ(s.clipped, ref_norm > 1.0);
    EXPECT_EQ(std::memcmp(model.params().data, twin.params().data, model.params().nbytes()), 0) << "step " << t;
    EXPECT_EQ(std::memcmp(opt.m().data, tm.data(), tm.size() * sizeof(float)), 0) << "step " << t;
    EXPECT_EQ(std::memcmp(opt.v().data, tv.data(), tv.size() * sizeof(float)), 0) << "step " << t;

    const std::vector<float> p = read_tensor(model.params());
    double worst = 0;
    for (size_t i = 0; i < p.size(); ++i)
      worst = std::max(worst, std::abs(double(p[i]) - ref.p[i]) / (1e-6 * (std::abs(ref.p[i]) + 1e-2)));
    // f32 storage rounds each step by half an ulp of |p| (6e-8 |p|) plus the update's own
    // rounding (a few ulps of lr); three steps stay well inside 1e-6 (|p| + lr).
    std::printf("[optimizer] step %d: worst |p - p_fp64| / 1e-6 (|p| + 0.01) = %.3g\n", t, worst);
    EXPECT_LT(worst, 1.0) << "step " << t << ": params differ from the fp64 loop beyond 1e-6 (|p| + lr)";
  }
  // The weight decay really is off for norms and biases (unless asked): a bias with zero grad
  // history would otherwise shrink. Checked on the fp64 reference's mask vs the table's ranges.
  for (const ParamEntry& e : table.entries()) {
    const ParamRange r = table.no_decay_range();
    const bool in_no_decay = e.offset >= r.offset && e.offset < r.offset + r.count;
    EXPECT_EQ(in_no_decay, !name_decays(e.name)) << e.name;
  }
}

INSTANTIATE_TEST_SUITE_P(DecayNormsAndBiases, OptimizerStep, ::testing::Bool());

// ---- clipping metrics and bad steps --------------------------------------------------------

struct TinyRun {
  std::unique_ptr<Ops> ops = make_cpu_ops();
  Model model{test_config("qwen3_moe"), *ops, train_limits()};
  TinyRun() { randomize_weights(model, 3); }
  float* g() { return static_cast<float*>(model.grads().data); }
  double grad_norm() {
    double s = 0;
    for (float x : read_tensor(model.grads())) s += double(x) * double(x);
    return std::sqrt(s);
  }
};

TEST(OptimizerClip, ReportsNormBeforeClippingAndClipsToMax) {
  TinyRun r;
  OptimizerConfig c;
  c.schedule.lr = 1e-3;
  c.max_grad_norm = 1.0;
  Optimizer opt(r.model, c);
  r.model.zero_grad();
  r.g()[0] = 3.0f;
  r.g()[r.model.table().no_decay_range().offset] = 4.0f;  // one in the no-decay range
  OptimizerStepMetrics s = opt.step();
  EXPECT_FLOAT_EQ(s.grad_norm, 5.0f);
  EXPECT_TRUE(s.clipped);
  EXPECT_NEAR(r.grad_norm(), 1.0, 1e-6);
  EXPECT_NEAR(r.g()[0], 0.6, 1e-6);

  // Below the threshold: reported, not touched.
  r.model.zero_grad();
  r.g()[5] = 0.3f;
  r.g()[6] = 0.4f;
  s = opt.step();
  EXPECT_FLOAT_EQ(s.grad_norm, 0.5f);
  EXPECT_FALSE(s.clipped);
  EXPECT_EQ(r.g()[5], 0.3f);
  EXPECT_EQ(r.g()[6], 0.4f);

  // grad_scale applies before the norm (gradient accumulation by a mean).
  r.model.zero_grad();
  r.g()[0] = 6.0f;
  r.g()[1] = 8.0f;
  s = opt.step(0.25f);
  EXPECT_FLOAT_EQ(s.grad_norm, 2.5f);
  EXPECT_TRUE(s.clipped);
  EXPECT_NEAR(r.grad_norm(), 1.0, 1e-6);
  EXPECT_EQ(opt.step_count(), 3);
}

TEST(OptimizerClip, ZeroMaxNormDisablesClipping) {
  TinyRun r;
  OptimizerConfig c;
  c.max_grad_norm = 0.0;
  Optimizer opt(r.model, c);
  r.model.zero_grad();
  r.g()[0] = 30.0f;
  r.g()[1] = 40.0f;
  const OptimizerStepMetrics s = opt.step();
  EXPECT_FLOAT_EQ(s.grad_norm, 50.0f);
  EXPECT_FALSE(s.clipped);
  EXPECT_EQ(r.g()[0], 30.0f);
}

TEST(OptimizerClip, NonFiniteGradsSkipTheStep) {
  TinyRun r;
  OptimizerConfig c;
  c.schedule.lr = 1e-2;
  c.schedule.warmup_steps = 10;
  Optimizer opt(r.model, c);
  const std::vector<float> before = read_tensor(r.model.params());
  for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    fill_grads(r.model, 1, 1.0);
    r.g()[17] = bad;
    const OptimizerStepMetrics s = opt.step();
    EXPECT_TRUE(s.skipped);
    EXPECT_FALSE(std::isfinite(s.grad_norm));
    EXPECT_EQ(opt.step_count(), 0);
    EXPECT_EQ(read_tensor(r.model.params()), before);
    for (float x : read_tensor(opt.m())) ASSERT_EQ(x, 0.0f);
    for (float x : read_tensor(opt.v())) ASSERT_EQ(x, 0.0f);
  }
  // The next good step is step 1 of the schedule.
  fill_grads(r.model, 2, 1.0);
  const OptimizerStepMetrics s = opt.step();
  EXPECT_FALSE(s.skipped);
  EXPECT_NEAR(s.lr, 1e-3, 1e-9);
  EXPECT_EQ(opt.step_count(), 1);
  EXPECT_NE(read_tensor(r.model.params()), before);
}

TEST(OptimizerErrors, BadInputs) {
  TinyRun r;
  Optimizer opt(r.model, OptimizerConfig{});
  for (const float bad : {0.0f, -1.0f, std::numeric_limits<float>::quiet_NaN()})
    EXPECT_THROW(opt.step(bad), Error);
  EXPECT_THROW(opt.set_step_count(-1), Error);

  OptimizerConfig c;
  c.schedule.decay = LrDecay::cosine;  // total_steps 0
  try {
    Optimizer bad(r.model, c);
    ADD_FAILURE() << "cosine without total_steps accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("total_steps"), std::string::npos) << e.message();
  }

  ModelLimits inference = train_limits();
  inference.training = false;
  Model frozen(test_config("qwen3_moe"), *r.ops, inference);
  try {
    Optimizer bad(frozen, OptimizerConfig{});
    ADD_FAILURE() << "a model without gradients accepted";
  } catch (const Error& e) {
    EXPECT_NE(e.message().find("training"), std::string::npos) << e.message();
  }
}

}  // namespace
}  // namespace grpo::test
