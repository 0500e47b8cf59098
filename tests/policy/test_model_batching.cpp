// Packing, routing replay, activation recomputation, padding_idx and batch limits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "policy/kv_cache.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};
const std::vector<std::string> kMoeArchs = {"qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};

ModelLimits train_limits(int64_t max_tokens = 64, int64_t max_seqs = 8) {
  ModelLimits l;
  l.max_tokens = max_tokens;
  l.max_seqs = max_seqs;
  return l;
}

struct RunResult {
  std::vector<float> logprob, entropy, grads;
  std::vector<int32_t> routing;
  float aux = 0;
};

// forward (with grad, entropy) + backward of sum a_t logprob_t + sum b_t entropy_t (+ aux).
RunResult run(Model& model, const RefInput& in, uint64_t coef_seed, bool aux, const Tensor& replay = {}) {
  const ModelConfig& cfg = model.config();
  const HostBatch hb(in);
  const int64_t T = int64_t(in.tokens.size());
  HostF lp({T}), ent({T}), a({T}), b({T});
  fill_uniform(a.v, coef_seed);
  fill_uniform(b.v, coef_seed + 1, -0.5f, 0.5f);
  Host<int32_t> routing;
  ForwardOutputs out;
  out.logprob = lp;
  out.entropy = ent;
  if (cfg.is_moe()) {
    routing = Host<int32_t>({cfg.num_moe_layers(), T, cfg.num_experts_per_tok});
    out.routing = routing;
  }
  ForwardOptions opt;
  opt.with_grad = true;
  opt.entropy = true;
  opt.aux_loss = aux;
  opt.replay_routing = replay;
  model.forward(hb.batch(), opt, out);
  model.zero_grad();
  model.backward(a, b, aux ? 0.5f : 0.0f);
  return RunResult{lp.v, ent.v, read_tensor(model.grads()), routing.v, out.aux_loss};
}

double max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
  EXPECT_EQ(x.size(), y.size());
  double m = 0;
  for (size_t i = 0; i < std::min(x.size(), y.size()); ++i) m = std::max(m, std::fabs(double(x[i]) - double(y[i])));
  return m;
}

double max_abs(const std::vector<float>& x) {
  double m = 0;
  for (float v : x) m = std::max(m, std::fabs(double(v)));
  return m;
}

class ModelBatching : public ::testing::TestWithParam<std::string> {};

// A packed batch gives each sequence the log-probs, entropy and gradients it gets alone
// (gradients summed over the sequences). Only summation order differs: tolerance 1e-5 on
// log-probs and 1e-5 of the largest gradient.
TEST_P(ModelBatching, PackedEqualsEachSequenceAlone) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, train_limits());
  randomize_weights(model, 5);
  const std::vector<int> lengths = {7, 3, 12};
  const RefInput packed = make_batch(lengths, cfg.vocab_size, 21);
  const RunResult whole = run(model, packed, 8, false);
  std::vector<float> lp, ent, grads(whole.grads.size(), 0.0f);
  int64_t offset = 0;
  for (int n : lengths) {
    RefInput one;
    one.cu_seqlens = {0, n};
    for (int i = 0; i < n; ++i) {
      one.tokens.push_back(packed.tokens[size_t(offset + i)]);
      one.targets.push_back(packed.targets[size_t(offset + i)]);
      one.positions.push_back(packed.positions[size_t(offset + i)]);
    }
    // The same coefficients as the packed run: slice them by re-drawing the packed vectors.
    const RunResult r = [&] {
      const HostBatch hb(one);
      HostF a_all({int64_t(packed.tokens.size())}), b_all({int64_t(packed.tokens.size())});
      fill_uniform(a_all.v, 8);
      fill_uniform(b_all.v, 9, -0.5f, 0.5f);
      HostF l({n}), e({n}), a({n}), b({n});
      std::copy(a_all.v.begin() + offset, a_all.v.begin() + offset + n, a.v.begin());
      std::copy(b_all.v.begin() + offset, b_all.v.begin() + offset + n, b.v.begin());
      ForwardOutputs out;
      out.logprob = l;
      out.entropy = e;
      ForwardOptions opt;
      opt.with_grad = true;
      opt.entropy = true;
      opt.aux_loss = false;
      model.forward(hb.batch(), opt, out);
      model.zero_grad();
      model.backward(a, b, 0.0f);
      return RunResult{l.v, e.v, read_tensor(model.grads()), {}, 0};
    }();
    lp.insert(lp.end(), r.logprob.begin(), r.logprob.end());
    ent.insert(ent.end(), r.entropy.begin(), r.entropy.end());
    for (size_t i = 0; i < grads.size(); ++i) grads[i] += r.grads[i];
    offset += n;
  }
  EXPECT_LT(max_abs_diff(lp, whole.logprob), 1e-5);
  EXPECT_LT(max_abs_diff(ent, whole.entropy), 1e-5);
  EXPECT_LT(max_abs_diff(grads, whole.grads), 1e-5 * max_abs(whole.grads));
}

// Keeping only each layer's input and recomputing the layer in backward gives the same
// gradients (the same ops on the same inputs, routing replayed).
TEST_P(ModelBatching, RecomputeMatchesStoredActivations) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  Model stored(cfg, *ops, train_limits());
  ModelLimits lr = train_limits();
  lr.recompute = true;
  Model recomputed(cfg, *ops, lr);
  randomize_weights(stored, 6);
  randomize_weights(recomputed, 6);
  EXPECT_LT(recomputed.training_arena_bytes(), stored.training_arena_bytes());
  const RefInput in = make_batch({9, 14}, cfg.vocab_size, 4);
  const bool aux = cfg.is_moe();
  const RunResult a = run(stored, in, 3, aux), b = run(recomputed, in, 3, aux);
  EXPECT_EQ(a.logprob, b.logprob);
  EXPECT_EQ(a.aux, b.aux);
  EXPECT_LE(max_abs_diff(a.grads, b.grads), 1e-6 * max_abs(a.grads));
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, ModelBatching, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

class ModelRouting : public ::testing::TestWithParam<std::string> {};

// Replaying the recorded routing reproduces the forward and backward exactly; replaying other
// experts changes the outputs and still gives gradients of the replayed computation
// (checked against the fp64 reference with the same replayed experts).
TEST_P(ModelRouting, ReplayReproducesAndOtherRoutingChanges) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, train_limits());
  randomize_weights(model, 12);
  const RefInput in = make_batch({8, 11}, cfg.vocab_size, 6);
  const RunResult first = run(model, in, 1, true);
  const int64_t T = int64_t(in.tokens.size()), K = cfg.num_experts_per_tok, M = cfg.num_moe_layers();
  Host<int32_t> replay({M, T, K});
  replay.v = first.routing;
  replay.t.data = replay.v.data();
  const RunResult again = run(model, in, 1, true, replay);
  EXPECT_EQ(again.logprob, first.logprob);
  EXPECT_EQ(again.routing, first.routing);
  EXPECT_EQ(again.grads, first.grads);
  EXPECT_EQ(again.aux, first.aux);

  // Other experts: shift every id by one (still distinct within a row).
  for (int32_t& e : replay.v) e = int32_t((e + 1) % cfg.num_experts);
  const RunResult other = run(model, in, 1, true, replay);
  EXPECT_EQ(other.routing, replay.v);
  EXPECT_GT(max_abs_diff(other.logprob, first.logprob), 1e-3);
  std::vector<std::vector<int32_t>> per_layer(static_cast<size_t>(M));
  for (int64_t m = 0; m < M; ++m)
    per_layer[size_t(m)].assign(replay.v.begin() + m * T * K, replay.v.begin() + (m + 1) * T * K);
  RefOptions ro;
  ro.replay = &per_layer;
  const RefOutput ref = ref_forward(cfg, ref_weights(model), in, ro);
  for (int64_t t = 0; t < T; ++t) EXPECT_NEAR(other.logprob[size_t(t)], ref.logprob[size_t(t)], 1e-4);
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, ModelRouting, ::testing::ValuesIn(kMoeArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// nn.Embedding(padding_idx = pad_token_id): lookups of the pad token add no gradient to its
// row (untied model), while other rows do.
TEST(ModelEmbedding, PadRowGetsNoLookupGradient) {
  ModelConfig cfg = test_config("mixtral");
  cfg.pad_token_id = 256;
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, train_limits());
  model.init_weights(3);
  const std::vector<float> e = read_tensor(model.param("model.embed_tokens.weight"));
  for (int64_t c = 0; c < cfg.hidden_size; ++c) EXPECT_EQ(e[size_t(256 * cfg.hidden_size + c)], 0.0f);
  RefInput in = make_batch({6}, cfg.vocab_size, 2);
  in.tokens[1] = in.tokens[4] = 256;
  run(model, in, 5, false);
  const std::vector<float> g = read_tensor(model.grad("model.embed_tokens.weight"));
  double pad = 0, other = 0;
  for (int64_t c = 0; c < cfg.hidden_size; ++c) {
    pad = std::max(pad, std::fabs(double(g[size_t(256 * cfg.hidden_size + c)])));
    other = std::max(other, std::fabs(double(g[size_t(in.tokens[0] * cfg.hidden_size + c)])));
  }
  EXPECT_EQ(pad, 0.0);
  EXPECT_GT(other, 0.0);
}

TEST(ModelLimitsCheck, LargerBatchIsAnErrorNamingTheLimit) {
  const ModelConfig cfg = model_preset("qwen3_moe", "tiny");
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, train_limits(16, 2));
  const RefInput in = make_batch({10, 10}, cfg.vocab_size, 1);
  const HostBatch hb(in);
  HostF lp({20});
  ForwardOutputs out;
  out.logprob = lp;
  try {
    model.forward(hb.batch(), ForwardOptions{}, out);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_tokens = 16"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model.backward(lp, Tensor{}, 0.0f), Error);  // no forward with grad yet
}

// bf16 storage needs a backend that stores bf16: on the CPU backend the model and the KV cache
// say so in one line (and a dtype that no model stores is refused anywhere).
TEST(ModelLimitsCheck, Bf16OnTheCpuBackendIsAClearError) {
  const ModelConfig cfg = model_preset("qwen3_moe", "tiny");
  auto ops = make_cpu_ops();
  ModelLimits limits = train_limits(16, 2);
  limits.dtype = DType::bf16;
  EXPECT_GRPO_ERROR(Model(cfg, *ops, limits), "dtype bf16 needs a backend that stores it", "cpu backend");
  limits.dtype = DType::i32;
  EXPECT_GRPO_ERROR(Model(cfg, *ops, limits), "ModelLimits::dtype is i32, expected f32 or bf16");
  KvCacheConfig kc;
  kc.num_blocks = 2;
  kc.dtype = DType::bf16;
  EXPECT_GRPO_ERROR(KvCache(*ops, cfg, kc), "kv cache: the cpu backend does not store bf16");
  kc.dtype = DType::f16;
  EXPECT_GRPO_ERROR(KvCache(*ops, cfg, kc), "kv cache: dtype is f16, expected f32 or bf16");
  // f32 (the default) works, and the compute copy is the master itself.
  Model model(cfg, *ops, train_limits(16, 2));
  EXPECT_EQ(model.dtype(), DType::f32);
  EXPECT_EQ(model.compute_params().data, model.params().data);
}

}  // namespace
}  // namespace grpo::test
