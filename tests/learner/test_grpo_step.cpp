// The GRPO learning step (learner/grpo_step.h) on tiny CPU models:
//  - first pass of mu = 1 with one mini-batch: ratio 1, so the gradient is the plain
//    advantage-weighted policy gradient, checked against a forward/backward the test packs
//    itself with hand-computed advantages and weights (dense, and MoE with routing replay);
//  - micro-batching: 1 vs 3 micro-batches give the same gradient (1e-5 relative);
//  - learning signal: groups sampled from the model itself (rollout::Engine), one answer
//    rewarded: a few steps raise its log-prob; with beta > 0 the KL stays below a bound;
//  - bad inputs: one-line errors naming the field, parameters untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "learner/grpo_step.h"
#include "learner/optimizer.h"
#include "rollout/engine.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

ModelLimits train_limits(bool decode = false) {
  ModelLimits l;
  l.max_tokens = 256;
  l.max_seqs = 32;
  if (decode) {
    const ModelLimits e = rollout::engine_model_limits(rollout::EngineConfig{.max_batch = 16, .kv_memory_bytes = 8 << 20,
                                                                             .max_prefill_tokens = 32});
    l.max_decode_tokens = e.max_decode_tokens;
    l.max_decode_seqs = e.max_decode_seqs;
  }
  return l;
}

std::unique_ptr<Model> make_model(Ops& ops, const std::string& arch, uint64_t seed, bool decode = false) {
  auto m = std::make_unique<Model>(test_config(arch), ops, train_limits(decode));
  randomize_weights(*m, seed);
  return m;
}

OptimizerConfig plain_optimizer(double lr) {
  OptimizerConfig c;
  c.schedule.lr = lr;
  c.max_grad_norm = 0.0;  // no clipping: grads() after the step is the raw accumulated gradient
  return c;
}

// Two groups with different prompts and completion lengths; rewards not all equal.
std::vector<GrpoCompletion> small_batch(int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> tok(0, int32_t(vocab) - 1);
  const std::vector<std::pair<int, int>> shapes = {{3, 4}, {3, 2}, {3, 5}, {5, 1}, {5, 3}, {5, 4}};
  const std::vector<double> rewards = {1.0, 0.0, 0.5, 0.0, 1.0, 1.0};
  std::vector<GrpoCompletion> b;
  for (size_t i = 0; i < shapes.size(); ++i) {
    GrpoCompletion c;
    c.group = i < 3 ? 7 : 3;
    c.prompt.resize(size_t(shapes[i].first));
    c.tokens.resize(size_t(shapes[i].second));
    for (auto& t : c.prompt) t = tok(rng);
    if (i != 0 && i != 3) c.prompt = b[i < 3 ? 0 : 3].prompt;  // one prompt per group
    for (auto& t : c.tokens) t = tok(rng);
    c.reward = rewards[i];
    c.rollout_logprob.assign(c.tokens.size(), -3.0f);
    b.push_back(std::move(c));
  }
  return b;
}

// Random routing records [P + C - 1, layers, K], K distinct experts per row.
void add_random_routing(std::vector<GrpoCompletion>& b, const ModelConfig& cfg, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const int64_t L = cfg.num_moe_layers(), K = cfg.num_experts_per_tok;
  for (auto& c : b) {
    const int64_t n = int64_t(c.prompt.size() + c.tokens.size()) - 1;
    for (int64_t r = 0; r < n * L; ++r) {
      std::vector<int32_t> e(size_t(cfg.num_experts));
      for (size_t i = 0; i < e.size(); ++i) e[i] = int32_t(i);
      std::shuffle(e.begin(), e.end(), rng);
      c.routing.insert(c.routing.end(), e.begin(), e.begin() + K);
    }
  }
}

// The plain policy gradient of the token_mean GRPO loss at ratio 1, computed independently:
// pack (prompt + completion minus its last token), targets = next token, advantages
// (r - mean_g) / (sample std_g + 1e-6), dlogprob_t = -A_i / N at completion targets.
struct Direct {
  std::vector<float> grads;
  std::vector<int32_t> replay, routing_out;
};
Direct direct_policy_gradient(Model& model, const std::vector<GrpoCompletion>& b, bool replay) {
  const ModelConfig& cfg = model.config();
  std::vector<double> adv(b.size());
  for (size_t i = 0; i < b.size(); ++i) {
    double s = 0, ss = 0, n = 0;
    for (const auto& c : b) if (c.group == b[i].group) { s += c.reward; n += 1; }
    const double mean = s / n;
    for (const auto& c : b) if (c.group == b[i].group) ss += (c.reward - mean) * (c.reward - mean);
    adv[i] = (b[i].reward - mean) / (std::sqrt(ss / (n - 1)) + 1e-6);
  }
  RefInput in;
  in.cu_seqlens = {0};
  std::vector<float> dlp;
  double N = 0;
  for (const auto& c : b) N += double(c.tokens.size());
  for (size_t i = 0; i < b.size(); ++i) {
    std::vector<int32_t> all = b[i].prompt;
    all.insert(all.end(), b[i].tokens.begin(), b[i].tokens.end());
    for (size_t t = 0; t + 1 < all.size(); ++t) {
      in.tokens.push_back(all[t]);
      in.targets.push_back(all[t + 1]);
      in.positions.push_back(int32_t(t));
      dlp.push_back(t + 1 >= b[i].prompt.size() ? float(-adv[i] / N) : 0.0f);
    }
    in.cu_seqlens.push_back(int32_t(in.tokens.size()));
  }
  const int64_t T = int64_t(in.tokens.size());
  Direct d;
  HostBatch hb(in);
  HostF lp({T});
  ForwardOptions fo;
  fo.with_grad = true;
  fo.aux_loss = false;
  ForwardOutputs out;
  out.logprob = lp.t;
  Host<int32_t> rep, rout;
  if (cfg.is_moe()) {
    const int64_t L = cfg.num_moe_layers(), K = cfg.num_experts_per_tok;
    rout = Host<int32_t>({L, T, K});
    out.routing = rout.t;
    if (replay) {
      rep = Host<int32_t>({L, T, K});
      int64_t off = 0;
      for (const auto& c : b) {  // [n, L, K] -> [L, T, K]
        const int64_t n = int64_t(c.prompt.size() + c.tokens.size()) - 1;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t l = 0; l < L; ++l)
            for (int64_t k = 0; k < K; ++k) rep.v[size_t((l * T + off + j) * K + k)] = c.routing[size_t((j * L + l) * K + k)];
        off += n;
      }
      fo.replay_routing = rep.t;
    }
  }
  model.forward(hb.batch(), fo, out);
  model.zero_grad();
  model.backward(Tensor(dlp.data(), DType::f32, {T}), {}, 0.0f);
  d.grads = read_tensor(model.grads());
  d.replay = rep.v;
  d.routing_out = rout.v;
  return d;
}

double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float v : x) m = std::max(m, std::fabs(double(v)));
  return m;
}
double max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, std::fabs(double(x[i]) - double(y[i])));
  return m;
}

// ---- mu = 1, one mini-batch: the plain policy gradient -------------------------------------

void check_first_pass_is_policy_gradient(const std::string& arch, bool routing) {
  auto ops = make_cpu_ops();
  auto model = make_model(*ops, arch, 11);
  auto twin = make_model(*ops, arch, 11);
  auto batch = small_batch(model->config().vocab_size, 5);
  if (routing) add_random_routing(batch, model->config(), 9);
  Optimizer opt(*model, plain_optimizer(1e-4));
  GrpoStepOptions o;  // token_mean, grpo advantages, sample std, eps 1e-6
  GrpoStep step(*model, opt, o);
  const GrpoStepMetrics m = step.run(batch);

  EXPECT_EQ(m.optimizer_steps, 1);
  EXPECT_EQ(m.micro_batches, 1);
  EXPECT_EQ(m.sequences, 6);
  EXPECT_EQ(m.loss_tokens, 4 + 2 + 5 + 1 + 3 + 4);
  EXPECT_EQ(m.tokens, 6 + 4 + 7 + 5 + 7 + 8);
  EXPECT_NEAR(m.ratio_mean, 1.0, 1e-6);
  EXPECT_EQ(m.clip_frac_low, 0.0);
  EXPECT_EQ(m.clip_frac_high, 0.0);
  EXPECT_EQ(m.advantages.num_groups, 2);
  EXPECT_EQ(m.advantages.zero_variance_groups, 0);
  EXPECT_EQ(m.reference_s, 0.0);  // beta = 0: no reference pass
  EXPECT_NEAR(m.lr, 1e-4, 1e-10);  // f32

  const Direct d = direct_policy_gradient(*twin, batch, routing);
  const std::vector<float> g = read_tensor(model->grads());  // step() leaves the grads in place
  const double scale = max_abs(d.grads);
  ASSERT_GT(scale, 1e-6);
  EXPECT_LE(max_abs_diff(g, d.grads), 1e-5 * scale) << arch;
  if (routing) {
    // The direct forward routed every token to the recorded experts...
    EXPECT_EQ(d.routing_out, d.replay);
    // ...and routing by the router instead gives a different gradient, so the match above
    // shows the learner replayed the records.
    auto free_twin = make_model(*ops, arch, 11);
    const Direct f = direct_policy_gradient(*free_twin, batch, false);
    EXPECT_NE(f.routing_out, d.replay);
    EXPECT_GT(max_abs_diff(g, f.grads), 1e-3 * scale);
  }
}

TEST(GrpoStep, FirstPassIsPolicyGradientDense) { check_first_pass_is_policy_gradient("llama", false); }
TEST(GrpoStep, FirstPassIsPolicyGradientMoeNoReplay) { check_first_pass_is_policy_gradient("qwen3_moe", false); }
TEST(GrpoStep, RoutingReplayUsesRecordedExperts) { check_first_pass_is_policy_gradient("qwen3_moe", true); }

// ---- micro-batching --------------------------------------------------------------------------

void check_micro_batching(Aggregation agg, bool overlong_filter) {
  auto ops = make_cpu_ops();
  auto a = make_model(*ops, "llama", 21);
  auto b = make_model(*ops, "llama", 21);
  auto batch = small_batch(a->config().vocab_size, 8);
  batch[2].truncated = true;
  batch[4].truncated = true;
  GrpoStepOptions o;
  o.objective.aggregation = agg;
  o.objective.max_completion_tokens = 6;
  o.objective.overlong_filter = overlong_filter;
  o.objective.entropy_coef = 0.01;
  Optimizer oa(*a, plain_optimizer(1e-3)), ob(*b, plain_optimizer(1e-3));
  GrpoStep one(*a, oa, o);
  o.micro_batch_tokens = 17;  // packed lengths 6 4 7 | 5 7 | 8 -> three micro-batches
  GrpoStep three(*b, ob, o);
  const GrpoStepMetrics ma = one.run(batch), mb = three.run(batch);
  EXPECT_EQ(ma.micro_batches, 1);
  EXPECT_EQ(mb.micro_batches, 3);
  EXPECT_EQ(ma.optimizer_steps, 1);
  EXPECT_EQ(mb.optimizer_steps, 1);
  const std::vector<float> ga = read_tensor(a->grads()), gb = read_tensor(b->grads());
  const double scale = max_abs(ga);
  ASSERT_GT(scale, 1e-6);
  EXPECT_LE(max_abs_diff(ga, gb), 1e-5 * scale);
  EXPECT_NEAR(ma.loss, mb.loss, 1e-5 * std::fabs(ma.loss) + 1e-9);
  EXPECT_NEAR(ma.entropy, mb.entropy, 1e-5 * std::fabs(ma.entropy));
  // (Not the parameters: AdamW's first step is ~lr * sign(g), so a gradient entry near 0
  // may flip sign between summation orders.)
}

TEST(GrpoStep, MicroBatchingTokenMean) { check_micro_batching(Aggregation::token_mean, false); }
TEST(GrpoStep, MicroBatchingSeqMeanWithOverlongFilter) { check_micro_batching(Aggregation::seq_mean_token_mean, true); }
TEST(GrpoStep, MicroBatchingSeqSumNorm) { check_micro_batching(Aggregation::seq_mean_token_sum_norm, false); }

// ---- learning signal ---------------------------------------------------------------------------

double answer_logprob(Model& model, const std::vector<int32_t>& prompt, const std::vector<int32_t>& answer) {
  RefInput in;
  std::vector<int32_t> all = prompt;
  all.insert(all.end(), answer.begin(), answer.end());
  for (size_t t = 0; t + 1 < all.size(); ++t) {
    in.tokens.push_back(all[t]);
    in.targets.push_back(all[t + 1]);
    in.positions.push_back(int32_t(t));
  }
  in.cu_seqlens = {0, int32_t(in.tokens.size())};
  HostBatch hb(in);
  HostF lp({int64_t(in.tokens.size())});
  ForwardOutputs out;
  out.logprob = lp.t;
  model.forward(hb.batch(), ForwardOptions{}, out);
  double s = 0;
  for (size_t t = prompt.size() - 1; t < lp.v.size(); ++t) s += lp.v[t];
  return s;
}

struct Training {
  double before = 0, after = 0;
  std::vector<double> reward, kl;
};

// Prompt {5, 17, 42}; groups of 16 two-token completions sampled by the engine (top_k 4);
// reward 1 for exactly the answer (the first completion of an exploratory round), else 0.
Training train(const std::string& arch, double beta, int steps, double lr = 3e-3) {
  auto ops = make_cpu_ops();
  auto policy = make_model(*ops, arch, 31, true);
  auto reference = make_model(*ops, arch, 31);
  rollout::Engine engine(*policy, rollout::EngineConfig{.max_batch = 16, .kv_memory_bytes = 8 << 20,
                                                        .max_prefill_tokens = 32});
  const std::vector<int32_t> prompt = {5, 17, 42};
  auto sample = [&](uint64_t seed) {
    rollout::Request r;
    r.prompt = prompt;
    r.sampling.n = 16;
    r.sampling.max_new_tokens = 2;
    r.sampling.top_k = 4;
    r.sampling.seed = seed;
    r.sampling.return_routing = policy->config().is_moe();
    return engine.generate({r})[0].samples;
  };
  const std::vector<int32_t> answer = sample(1000)[0].tokens;
  EXPECT_EQ(answer.size(), 2u);

  OptimizerConfig oc = plain_optimizer(lr);
  oc.max_grad_norm = 1.0;
  Optimizer opt(*policy, oc);
  GrpoStepOptions o;
  o.mu = 2;
  o.num_mini_batches = 2;
  o.micro_batch_tokens = 40;
  o.objective.beta = beta;
  GrpoStep step(*policy, opt, o, reference.get());

  Training tr;
  tr.before = answer_logprob(*policy, prompt, answer);
  for (int s = 0; s < steps; ++s) {
    std::vector<GrpoCompletion> batch;
    double mean = 0;
    for (auto& smp : sample(uint64_t(s + 1))) {
      GrpoCompletion c;
      c.prompt = prompt;
      c.tokens = smp.tokens;
      c.rollout_logprob = smp.logprobs;
      c.reward = smp.tokens == answer ? 1.0 : 0.0;
      c.routing = smp.routing;
      mean += c.reward / 16;
      batch.push_back(std::move(c));
    }
    const GrpoStepMetrics m = step.run(batch);
    EXPECT_EQ(m.optimizer_steps, 4);
    tr.reward.push_back(mean);
    tr.kl.push_back(m.kl);
  }
  tr.after = answer_logprob(*policy, prompt, answer);
  return tr;
}

TEST(GrpoStep, LearningSignalRaisesRewardedAnswer) {
  for (const std::string arch : {"llama", "qwen3_moe"}) {
    const Training t = train(arch, 0.0, 5);
    std::printf("%s: log p(answer) %.3f -> %.3f, rewards", arch.c_str(), t.before, t.after);
    for (double r : t.reward) std::printf(" %.3f", r);
    std::printf("\n");
    EXPECT_GT(t.after, t.before + 1.0) << arch;
    EXPECT_GT(t.reward.back(), t.reward.front()) << arch;
    for (double kl : t.kl) EXPECT_EQ(kl, 0.0);  // beta = 0: no KL computed
  }
}

// beta 0.5 vs a nearly unregularised run (beta 1e-4, same samples seeds and lr): the reward
// still rises, the k3 KL on the sampled tokens stays below 3 at every step (the first step's
// estimate is the largest: the initial policy's unrewarded samples are pushed down), and its
// mean over the steps is well below the unregularised run's.
TEST(GrpoStep, KlToReferenceStaysBounded) {
  const Training t = train("llama", 0.5, 8, 1e-3);
  const Training free = train("llama", 1e-4, 8, 1e-3);
  std::printf("beta 0.5: log p(answer) %.3f -> %.3f, rewards", t.before, t.after);
  for (double r : t.reward) std::printf(" %.3f", r);
  std::printf(", kl");
  for (double k : t.kl) std::printf(" %.4f", k);
  std::printf("\nbeta 1e-4: kl");
  for (double k : free.kl) std::printf(" %.4f", k);
  std::printf("\n");
  EXPECT_GT(t.after, t.before + 1.0);
  EXPECT_GT(t.reward.back(), t.reward.front());
  for (double kl : t.kl) {
    EXPECT_GE(kl, 0.0);  // k3 >= 0
    EXPECT_LT(kl, 3.0);
  }
  EXPECT_GT(t.kl.back(), 0.0);  // the policy did move away from the reference
  auto mean = [](const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / double(v.size());
  };
  EXPECT_LT(mean(t.kl), 0.6 * mean(free.kl));
}

// ---- bad inputs --------------------------------------------------------------------------------

TEST(GrpoStep, BadInputsAreClearErrorsAndChangeNothing) {
  auto ops = make_cpu_ops();
  auto model = make_model(*ops, "qwen3_moe", 41);
  Optimizer opt(*model, plain_optimizer(1e-3));
  const std::vector<float> before = read_tensor(model->params());
  auto expect_error = [&](std::vector<GrpoCompletion> b, const GrpoStepOptions& o, const std::string& needle) {
    try {
      GrpoStep step(*model, opt, o);
      step.run(b);
      ADD_FAILURE() << "no error, expected one containing: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
    EXPECT_EQ(read_tensor(model->params()), before);
    EXPECT_EQ(opt.step_count(), 0);
  };
  const auto good = small_batch(model->config().vocab_size, 3);
  GrpoStepOptions o;
  auto b = good;
  b[1].tokens[0] = 9999;
  expect_error(b, o, "completion 1: token 9999");
  b = good;
  b[2].prompt.clear();
  expect_error(b, o, "completion 2: prompt is empty");
  b = good;
  b[0].rollout_logprob.pop_back();
  expect_error(b, o, "completion 0: rollout_logprob has 3 entries");
  b = good;
  b[3].reward = NAN;
  expect_error(b, o, "completion 3: reward");
  b = good;
  add_random_routing(b, model->config(), 1);
  b[4].routing.pop_back();
  expect_error(b, o, "completion 4: routing has");
  b = good;
  add_random_routing(b, model->config(), 1);
  b[5].routing.clear();
  expect_error(b, o, "5 of 6 completions carry routing");
  b = good;
  add_random_routing(b, model->config(), 1);
  b[0].routing[0] = 99;
  expect_error(b, o, "routing expert 99");
  auto with = [](auto edit) {
    GrpoStepOptions x;
    edit(x);
    return x;
  };
  expect_error(good, with([](GrpoStepOptions& x) { x.num_mini_batches = 7; }), "num_mini_batches is 7");
  expect_error(good, with([](GrpoStepOptions& x) { x.micro_batch_tokens = 6; }), "completion 2: 7 packed tokens exceed");
  expect_error(good, with([](GrpoStepOptions& x) { x.mu = 0; }), "grpo_step.mu is 0");
  GrpoStepOptions kl;
  kl.objective.beta = 0.1;
  expect_error(good, kl, "needs a reference model");
  GrpoStepOptions tis;
  tis.objective.tis_cap = 2.0;
  b = good;
  b[1].rollout_logprob.clear();
  expect_error(b, tis, "completion 1: rollout_logprob is empty");
}

// A batch whose completions are all empty trains on nothing; advantages are still reported.
TEST(GrpoStep, EmptyCompletionsAreNotTrainedOn) {
  auto ops = make_cpu_ops();
  auto model = make_model(*ops, "llama", 51);
  Optimizer opt(*model, plain_optimizer(1e-3));
  GrpoStep step(*model, opt, GrpoStepOptions{});
  std::vector<GrpoCompletion> b(2);
  b[0].prompt = b[1].prompt = {1, 2};
  b[0].reward = 1;
  const GrpoStepMetrics m = step.run(b);
  EXPECT_EQ(m.optimizer_steps, 0);
  EXPECT_EQ(m.sequences, 0);
  EXPECT_EQ(m.advantages.num_groups, 1);
  EXPECT_EQ(opt.step_count(), 0);
}

}  // namespace
}  // namespace grpo::test
