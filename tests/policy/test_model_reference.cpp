// The model against the independent fp64 reference (model_test_util.cpp): forward log-probs,
// entropy, aux loss and routing, and finite-difference gradients of every parameter kind,
// for the tiny config of each architecture.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "policy/params.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};

class ModelReference : public ::testing::TestWithParam<std::string> {};

// Forward: f32 model vs fp64 reference. The model computes in f32 with sums over at most
// V = 272 (LM head), C = 64 and a few dozen positions, from O(1) activations: each result
// carries a relative rounding error of a few 1e-7 times the (small) depth: measured
// differences are <= 4e-6 nats (printed as "[model] ..."). The tolerance 1e-4 leaves 25x
// headroom and stays far below the effect of a real bug (a wrong renormalisation, bias, norm
// or RoPE band changes log-probs by > 1e-2).
TEST_P(ModelReference, ForwardMatchesFp64) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, ModelLimits{.max_tokens = 64, .max_seqs = 8, .training = false});
  randomize_weights(model, 17);
  const RefInput in = make_batch({7, 12, 5}, cfg.vocab_size, 3);
  const HostBatch hb(in);
  const int64_t T = int64_t(in.tokens.size());
  for (double temperature : {1.0, 0.7}) {
    HostF lp({T}), ent({T});
    ForwardOutputs out;
    out.logprob = lp;
    out.entropy = ent;
    Host<int32_t> routing;
    const int64_t n_moe = cfg.num_moe_layers();
    if (n_moe > 0) {
      routing = Host<int32_t>({n_moe, T, cfg.num_experts_per_tok});
      out.routing = routing;
    }
    ForwardOptions opt;
    opt.entropy = true;
    opt.temperature = float(temperature);
    opt.aux_loss = true;
    model.forward(hb.batch(), opt, out);
    const RefOutput ref =
        ref_forward(cfg, ref_weights(model), in, RefOptions{.aux = true, .temperature = temperature});
    double worst_lp = 0, worst_ent = 0;
    for (int64_t t = 0; t < T; ++t) {
      worst_lp = std::max(worst_lp, std::fabs(lp[size_t(t)] - ref.logprob[size_t(t)]));
      worst_ent = std::max(worst_ent, std::fabs(ent[size_t(t)] - ref.entropy[size_t(t)]));
    }
    std::printf("[model] %s T=%.1f: max |logprob - fp64| = %.3g, max |entropy - fp64| = %.3g\n", GetParam().c_str(),
                temperature, worst_lp, worst_ent);
    EXPECT_LT(worst_lp, 1e-4) << GetParam() << " temperature " << temperature;
    EXPECT_LT(worst_ent, 1e-4) << GetParam() << " temperature " << temperature;
    if (n_moe > 0) {
      EXPECT_GT(ref.min_gap, 1e-5) << "router probabilities too close to compare routing";
      EXPECT_NEAR(out.aux_loss, ref.aux, 1e-5 * std::max(1.0, ref.aux));
      for (int64_t m = 0; m < n_moe; ++m)
        for (size_t i = 0; i < ref.routing[size_t(m)].size(); ++i)
          ASSERT_EQ(routing[size_t(m) * ref.routing[size_t(m)].size() + i], ref.routing[size_t(m)][i])
              << "MoE layer " << m << " slot " << i;
    } else {
      EXPECT_EQ(out.aux_loss, 0.0f);
    }
  }
}

// Backward: for L = sum_t a_t logprob_t + sum_t b_t entropy_t + c * aux_loss, the model's
// gradient of each sampled parameter element against the central finite difference of the
// fp64 reference's L (step 1e-6: truncation ~1e-12, cancellation ~1e-16 * |L| / 1e-6 < 1e-8).
// Sampled per parameter kind: the element with the largest gradient plus 4 random ones.
// Tolerance: 1e-4 of the kind's largest sampled gradient plus 1e-4 relative. f32 backward
// errors measure ~1e-6 of the kind's scale (sums of a few hundred terms; printed as
// "[model] ... worst"), so 1e-4 leaves ~50x headroom; a wrong term is O(scale).
TEST_P(ModelReference, GradientsMatchFiniteDifferences) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, ModelLimits{.max_tokens = 64, .max_seqs = 8});
  randomize_weights(model, 23);
  const RefInput in = make_batch({6, 9, 4}, cfg.vocab_size, 5);
  const HostBatch hb(in);
  const int64_t T = int64_t(in.tokens.size());
  const bool moe = cfg.is_moe();
  const double aux_coef = moe ? 0.7 : 0.0;
  std::mt19937_64 rng(99);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  HostF a({T}), b({T});
  for (int64_t t = 0; t < T; ++t) {
    a[size_t(t)] = float(u(rng));
    b[size_t(t)] = float(0.5 * u(rng));
  }
  HostF lp({T}), ent({T});
  ForwardOutputs out;
  out.logprob = lp;
  out.entropy = ent;
  ForwardOptions opt;
  opt.with_grad = true;
  opt.entropy = true;
  opt.aux_loss = moe;
  model.forward(hb.batch(), opt, out);
  model.zero_grad();
  model.backward(a, b, float(aux_coef));

  RefWeights w = ref_weights(model);
  const RefOptions ropt{.aux = moe};
  const RefOutput base = ref_forward(cfg, w, in, ropt);
  if (moe) {
    ASSERT_GT(base.min_gap, 1e-4) << "routing too close to a tie for finite differences";
  }
  auto loss = [&](const RefOutput& r) {
    double L = aux_coef * r.aux;
    for (int64_t t = 0; t < T; ++t)
      L += double(a[size_t(t)]) * r.logprob[size_t(t)] + double(b[size_t(t)]) * r.entropy[size_t(t)];
    return L;
  };

  // Group the table by kind.
  std::map<std::string, std::vector<const ParamEntry*>> kinds;
  for (const ParamEntry& e : model.table().entries()) kinds[param_kind(e.name)].push_back(&e);
  const std::vector<float> grads = read_tensor(model.grads());
  const double h = 1e-6;
  int checked_kinds = 0;
  double worst = 0;  // largest |model - fd| / kind scale
  for (const auto& [kind, entries] : kinds) {
    // Candidates: (entry, index); the largest |grad| first, then random ones.
    std::vector<std::pair<const ParamEntry*, int64_t>> picks;
    const ParamEntry* best_e = entries[0];
    int64_t best_i = 0;
    float best = -1;
    int64_t total = 0;
    for (const ParamEntry* e : entries) {
      total += e->numel();
      for (int64_t i = 0; i < e->numel(); ++i)
        if (std::fabs(grads[size_t(e->offset + i)]) > best) {
          best = std::fabs(grads[size_t(e->offset + i)]);
          best_e = e;
          best_i = i;
        }
    }
    picks.emplace_back(best_e, best_i);
    std::uniform_int_distribution<int64_t> pick(0, total - 1);
    for (int r = 0; r < 4; ++r) {
      int64_t k = pick(rng);
      for (const ParamEntry* e : entries) {
        if (k < e->numel()) {
          picks.emplace_back(e, k);
          break;
        }
        k -= e->numel();
      }
    }
    std::vector<std::pair<double, double>> results;  // (model, finite difference)
    double scale = 0;
    for (const auto& [e, i] : picks) {
      double& x = w[e->name][size_t(i)];
      const double x0 = x;
      x = x0 + h;
      const RefOutput plus = ref_forward(cfg, w, in, ropt);
      x = x0 - h;
      const RefOutput minus = ref_forward(cfg, w, in, ropt);
      x = x0;
      ASSERT_EQ(plus.routing, base.routing) << e->name << "[" << i << "]: routing changed under the step";
      ASSERT_EQ(minus.routing, base.routing) << e->name << "[" << i << "]: routing changed under the step";
      const double fd = (loss(plus) - loss(minus)) / (2 * h);
      results.emplace_back(grads[size_t(e->offset + i)], fd);
      scale = std::max(scale, std::fabs(fd));
    }
    EXPECT_GT(scale, 0.0) << kind << ": every sampled gradient is zero";
    for (const auto& [g, fd] : results) worst = std::max(worst, std::fabs(g - fd) / scale);
    for (size_t j = 0; j < results.size(); ++j) {
      const auto [g, fd] = results[j];
      EXPECT_LE(std::fabs(g - fd), 1e-4 * scale + 1e-4 * std::fabs(fd))
          << GetParam() << " " << picks[j].first->name << "[" << picks[j].second << "]: model " << g << ", fd " << fd
          << " (kind scale " << scale << ")";
    }
    ++checked_kinds;
  }
  EXPECT_EQ(checked_kinds, int(kinds.size()));
  std::printf("[model] %s: %d parameter kinds, worst |grad - fd| / kind scale = %.3g\n", GetParam().c_str(),
              checked_kinds, worst);
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, ModelReference, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// The test configs together hold every parameter kind the architectures define.
TEST(ModelReferenceCoverage, EveryParameterKindIsChecked) {
  std::set<std::string> kinds;
  for (const std::string& arch : kArchs) {
    const ParamTable table(test_config(arch));
    for (const ParamEntry& e : table.entries()) kinds.insert(param_kind(e.name));
  }
  for (const char* k : {"model.embed_tokens.weight", "model.layers.*.input_layernorm.weight",
                        "model.layers.*.self_attn.q_proj.weight", "model.layers.*.self_attn.q_proj.bias",
                        "model.layers.*.self_attn.k_proj.bias", "model.layers.*.self_attn.v_proj.bias",
                        "model.layers.*.self_attn.o_proj.weight", "model.layers.*.self_attn.o_proj.bias",
                        "model.layers.*.self_attn.q_norm.weight", "model.layers.*.self_attn.k_norm.weight",
                        "model.layers.*.post_attention_layernorm.weight", "model.layers.*.mlp.gate_proj.weight",
                        "model.layers.*.mlp.up_proj.weight", "model.layers.*.mlp.down_proj.weight",
                        "model.layers.*.mlp.gate_proj.bias", "model.layers.*.mlp.down_proj.bias",
                        "model.layers.*.mlp.gate.weight", "model.layers.*.mlp.experts.*.gate_proj.weight",
                        "model.layers.*.mlp.experts.*.up_proj.weight", "model.layers.*.mlp.experts.*.down_proj.weight",
                        "model.layers.*.mlp.shared_expert.gate_proj.weight",
                        "model.layers.*.mlp.shared_expert.down_proj.weight",
                        "model.layers.*.mlp.shared_expert_gate.weight", "model.layers.*.block_sparse_moe.gate.weight",
                        "model.layers.*.block_sparse_moe.experts.*.w1.weight",
                        "model.layers.*.block_sparse_moe.experts.*.w2.weight",
                        "model.layers.*.block_sparse_moe.experts.*.w3.weight", "model.norm.weight", "lm_head.weight"})
    EXPECT_TRUE(kinds.count(k)) << k;
}

}  // namespace
}  // namespace grpo::test
