// Incremental decoding with the paged KV cache against one full forward: several sequences of
// different lengths, prompts prefilled in one batched call (one of them in two chunks), then
// token by token with the batch shrinking as sequences finish.
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

double log_softmax_at(const float* row, int64_t V, int32_t target) {
  double m = -INFINITY;
  for (int64_t v = 0; v < V; ++v) m = std::max(m, double(row[v]));
  double s = 0;
  for (int64_t v = 0; v < V; ++v) s += std::exp(double(row[v]) - m);
  return double(row[target]) - m - std::log(s);
}

class ModelDecode : public ::testing::TestWithParam<std::string> {};

// Decode and the full forward differ only in summation order (paged vs varlen attention,
// one row vs many in the matmuls): measured differences are ~1e-6 nats. Tolerance 5e-5.
TEST_P(ModelDecode, TokenByTokenMatchesFullForward) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 64;
  limits.max_seqs = 8;
  limits.training = false;
  limits.max_decode_tokens = 32;
  limits.max_decode_seqs = 4;
  Model model(cfg, *ops, limits);
  randomize_weights(model, 31);
  const int64_t V = cfg.vocab_size;
  const std::vector<int> lengths = {11, 4, 17, 13};
  const std::vector<int> prompt = {5, 1, 9, 11};  // sequence 3 is prefilled in chunks of 6 and 5
  const RefInput in = make_batch(lengths, V, 77);
  const HostBatch hb(in);
  const int64_t T = int64_t(in.tokens.size()), S = int64_t(lengths.size());
  HostF full({T});
  ForwardOutputs fo;
  fo.logprob = full;
  model.forward(hb.batch(), ForwardOptions{}, fo);
  auto full_lp = [&](int64_t s, int64_t pos) { return double(full[size_t(in.cu_seqlens[size_t(s)] + pos)]); };
  auto token = [&](int64_t s, int64_t pos) { return in.tokens[size_t(in.cu_seqlens[size_t(s)] + pos)]; };

  KvCacheConfig kc;
  kc.num_blocks = 24;
  kc.block_size = 4;
  KvCache cache(*ops, cfg, kc);
  std::vector<int64_t> ids;
  for (int64_t s = 0; s < S; ++s) ids.push_back(cache.add_sequence());

  double worst = 0;
  int compared = 0;
  auto compare = [&](const HostF& logits, int64_t row, int64_t s, int64_t pos) {
    // logits of position pos predict token pos + 1 (the full forward's target there)
    if (pos + 1 >= lengths[size_t(s)]) return;
    const double got = log_softmax_at(logits.v.data() + row * V, V, token(s, pos + 1));
    worst = std::max(worst, std::fabs(got - full_lp(s, pos)));
    EXPECT_NEAR(got, full_lp(s, pos), 5e-5) << GetParam() << " sequence " << s << " position " << pos;
    ++compared;
  };

  // Chunk 1 of sequence 3 alone, then every prompt (the rest of sequence 3) in one call.
  {
    std::vector<int32_t> tok;
    for (int p = 0; p < 6; ++p) tok.push_back(token(3, p));
    HostI t({6});
    std::copy(tok.begin(), tok.end(), t.v.begin());
    HostF logits({1, V});
    const std::vector<int64_t> seq = {ids[3]}, n = {6};
    model.prefill(cache, seq, t, n, logits);
    compare(logits, 0, 3, 5);
    EXPECT_EQ(cache.length(ids[3]), 6);
  }
  std::vector<int64_t> pos(static_cast<size_t>(S));
  {
    std::vector<int32_t> tok;
    std::vector<int64_t> n;
    for (int64_t s = 0; s < S; ++s) {
      const int64_t from = s == 3 ? 6 : 0;
      for (int64_t p = from; p < prompt[size_t(s)]; ++p) tok.push_back(token(s, p));
      n.push_back(prompt[size_t(s)] - from);
      pos[size_t(s)] = prompt[size_t(s)];
    }
    HostI t({int64_t(tok.size())});
    std::copy(tok.begin(), tok.end(), t.v.begin());
    HostF logits({S, V});
    Host<int32_t> routing;
    if (cfg.is_moe()) {
      routing = Host<int32_t>({cfg.num_moe_layers(), int64_t(tok.size()), cfg.num_experts_per_tok});
    }
    model.prefill(cache, ids, t, n, logits, routing.t);
    for (int64_t s = 0; s < S; ++s) compare(logits, s, s, prompt[size_t(s)] - 1);
  }
  // Token by token; finished sequences leave the batch.
  for (;;) {
    std::vector<int64_t> active, which;
    std::vector<int32_t> tok;
    for (int64_t s = 0; s < S; ++s)
      if (pos[size_t(s)] < lengths[size_t(s)]) {
        active.push_back(ids[size_t(s)]);
        which.push_back(s);
        tok.push_back(token(s, pos[size_t(s)]));
      }
    if (active.empty()) break;
    const int64_t B = int64_t(active.size());
    HostI t({B});
    std::copy(tok.begin(), tok.end(), t.v.begin());
    HostF logits({B, V});
    model.decode_step(cache, active, t, logits);
    for (int64_t b = 0; b < B; ++b) {
      const int64_t s = which[size_t(b)];
      compare(logits, b, s, pos[size_t(s)]);
      ++pos[size_t(s)];
    }
  }
  for (int64_t s = 0; s < S; ++s) EXPECT_EQ(cache.length(ids[size_t(s)]), lengths[size_t(s)]);
  // Every position from each prompt's last on, plus the end of sequence 3's first chunk.
  int expected = 1;
  for (int64_t s = 0; s < S; ++s) expected += lengths[size_t(s)] - prompt[size_t(s)];
  EXPECT_EQ(compared, expected);
  std::printf("[model] %s decode vs full forward: %d log-probs, max diff %.3g\n", GetParam().c_str(), compared, worst);
  const int64_t used = kc.num_blocks - cache.free_blocks();
  EXPECT_EQ(used, (11 + 3) / 4 + (4 + 3) / 4 + (17 + 3) / 4 + (13 + 3) / 4);
  for (int64_t id : ids) cache.remove_sequence(id);
  EXPECT_EQ(cache.free_blocks(), kc.num_blocks);
}

// The experts recorded while decoding are the ones the full forward chose.
TEST_P(ModelDecode, RecordsSameRoutingAsForward) {
  const ModelConfig cfg = test_config(GetParam());
  if (!cfg.is_moe()) GTEST_SKIP() << "dense model";
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, decoding_limits(32, 2, 16, 2));
  randomize_weights(model, 41);
  const RefInput in = make_batch({10}, cfg.vocab_size, 9);
  const HostBatch hb(in);
  const int64_t T = 10, K = cfg.num_experts_per_tok, M = cfg.num_moe_layers();
  HostF lp({T});
  Host<int32_t> fwd_routing({M, T, K});
  ForwardOutputs fo;
  fo.logprob = lp;
  fo.routing = fwd_routing;
  model.forward(hb.batch(), ForwardOptions{}, fo);

  KvCacheConfig kc;
  kc.num_blocks = 8;
  kc.block_size = 4;
  KvCache cache(*ops, cfg, kc);
  const std::vector<int64_t> id = {cache.add_sequence()};
  // 6 tokens prefilled, then 4 decode steps.
  HostI prompt({6});
  std::copy(in.tokens.begin(), in.tokens.begin() + 6, prompt.v.begin());
  HostF logits({1, cfg.vocab_size});
  Host<int32_t> r6({M, 6, K});
  const std::vector<int64_t> n6 = {6};
  model.prefill(cache, id, prompt, n6, logits, r6);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t i = 0; i < 6 * K; ++i) EXPECT_EQ(r6[size_t(m * 6 * K + i)], fwd_routing[size_t(m * T * K + i)]);
  for (int64_t p = 6; p < T; ++p) {
    HostI t({1});
    t[0] = in.tokens[size_t(p)];
    Host<int32_t> r1({M, 1, K});
    model.decode_step(cache, id, t, logits, r1);
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) EXPECT_EQ(r1[size_t(m * K + k)], fwd_routing[size_t((m * T + p) * K + k)]);
  }
}

// Decoding with replayed experts computes what the training forward computes with the same
// replay: other experts than the router's (every id shifted by one, still distinct in a row),
// prefill of 6 tokens then 4 decode steps, each position's log-prob of its target from the
// decode logits against the forward's. A bad replay is an error that reserves nothing.
TEST_P(ModelDecode, ReplayedRoutingMatchesReplayedForward) {
  const ModelConfig cfg = test_config(GetParam());
  if (!cfg.is_moe()) GTEST_SKIP() << "dense model";
  auto ops = make_cpu_ops();
  Model model(cfg, *ops, decoding_limits(32, 2, 16, 2));
  randomize_weights(model, 43);
  const RefInput in = make_batch({10}, cfg.vocab_size, 12);
  const HostBatch hb(in);
  const int64_t T = 10, K = cfg.num_experts_per_tok, M = cfg.num_moe_layers(), V = cfg.vocab_size;
  HostF own_lp({T});
  Host<int32_t> routing({M, T, K});
  ForwardOutputs fo;
  fo.logprob = own_lp;
  fo.routing = routing;
  model.forward(hb.batch(), ForwardOptions{}, fo);
  Host<int32_t> shifted({M, T, K});
  for (size_t i = 0; i < shifted.v.size(); ++i) shifted[i] = int32_t((routing[i] + 1) % cfg.num_experts);
  HostF lp({T});
  fo.logprob = lp;
  fo.routing = Tensor{};
  ForwardOptions fopt;
  fopt.replay_routing = shifted;
  model.forward(hb.batch(), fopt, fo);

  // The replay rows of tokens [t0, t0 + n) for every MoE layer.
  auto replay_rows = [&](int64_t t0, int64_t n) {
    Host<int32_t> r({M, n, K});
    for (int64_t m = 0; m < M; ++m)
      for (int64_t i = 0; i < n * K; ++i) r[size_t(m * n * K + i)] = shifted[size_t((m * T + t0) * K + i)];
    return r;
  };
  auto logprob_of = [&](const HostF& logits, int32_t target) { return log_softmax_at(logits.v.data(), V, target); };
  KvCacheConfig kc;
  kc.num_blocks = 8;
  kc.block_size = 4;
  KvCache cache(*ops, cfg, kc);
  const std::vector<int64_t> id = {cache.add_sequence()};
  HostI prompt({6});
  std::copy(in.tokens.begin(), in.tokens.begin() + 6, prompt.v.begin());
  HostF logits({1, V});
  const std::vector<int64_t> n6 = {6};
  // A replay of the wrong shape: an error, nothing reserved or cached.
  const Host<int32_t> wrong = replay_rows(0, 5);
  EXPECT_GRPO_ERROR(model.prefill(cache, id, prompt, n6, logits, Tensor{}, wrong), "model decoding: replay is",
                    "expected i32[");
  EXPECT_EQ(cache.length(id[0]), 0);
  EXPECT_EQ(cache.free_blocks(), kc.num_blocks);
  Host<int32_t> used({M, 6, K});
  model.prefill(cache, id, prompt, n6, logits, used, replay_rows(0, 6));
  EXPECT_EQ(used.v, replay_rows(0, 6).v) << "the recorded experts are the replayed ones";
  double worst = std::fabs(logprob_of(logits, in.targets[5]) - lp[5]);
  double moved = std::fabs(double(lp[5]) - double(own_lp[5]));
  for (int64_t p = 6; p < T; ++p) {
    HostI t({1});
    t[0] = in.tokens[size_t(p)];
    model.decode_step(cache, id, t, logits, Tensor{}, replay_rows(p, 1));
    worst = std::max(worst, std::fabs(logprob_of(logits, in.targets[size_t(p)]) - lp[size_t(p)]));
    moved = std::max(moved, std::fabs(double(lp[size_t(p)]) - double(own_lp[size_t(p)])));
  }
  EXPECT_LT(worst, 1e-4) << "decode with replay vs forward with replay";
  EXPECT_GT(moved, 1e-3) << "the shifted experts changed nothing: the test would not see a replay ignored";
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, ModelDecode, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

TEST(ModelKvCache, ExhaustedPoolIsAnErrorAndTakesNothing) {
  const ModelConfig cfg = model_preset("qwen3", "tiny");
  auto ops = make_cpu_ops();
  KvCacheConfig kc;
  kc.num_blocks = 3;
  kc.block_size = 4;
  KvCache cache(*ops, cfg, kc);
  const int64_t a = cache.add_sequence();
  cache.reserve(a, 9);  // 3 blocks
  EXPECT_EQ(cache.free_blocks(), 0);
  const int64_t b = cache.add_sequence();
  try {
    cache.reserve(b, 1);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs 1 more blocks"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(cache.blocks(b).empty());
  cache.remove_sequence(a);
  EXPECT_EQ(cache.free_blocks(), 3);
  EXPECT_THROW(cache.length(a), Error);
  EXPECT_THROW(cache.advance(b, 1), Error);  // nothing reserved
}

// Rolling a sequence back and decoding the same tokens again gives the same logits, and the
// blocks past the kept length return to the pool.
TEST(ModelKvCache, TruncateAndRedecode) {
  const ModelConfig cfg = test_config("qwen2_moe");
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 16;
  limits.max_seqs = 1;
  limits.training = false;
  limits.max_decode_tokens = 16;
  limits.max_decode_seqs = 1;
  Model model(cfg, *ops, limits);
  randomize_weights(model, 8);
  KvCacheConfig kc;
  kc.num_blocks = 8;
  kc.block_size = 4;
  KvCache cache(*ops, cfg, kc);
  const std::vector<int64_t> id = {cache.add_sequence()};
  const RefInput in = make_batch({13}, cfg.vocab_size, 4);
  HostI prompt({9});
  std::copy(in.tokens.begin(), in.tokens.begin() + 9, prompt.v.begin());
  const int64_t V = cfg.vocab_size;
  HostF logits({1, V});
  const std::vector<int64_t> n9 = {9};
  model.prefill(cache, id, prompt, n9, logits);
  auto decode_rest = [&] {
    std::vector<float> all;
    for (int p = 9; p < 13; ++p) {
      HostI t({1});
      t[0] = in.tokens[size_t(p)];
      model.decode_step(cache, id, t, logits);
      all.insert(all.end(), logits.v.begin(), logits.v.end());
    }
    return all;
  };
  const std::vector<float> first = decode_rest();
  EXPECT_EQ(cache.length(id[0]), 13);
  EXPECT_EQ(cache.free_blocks(), 4);
  cache.truncate(id[0], 9);
  EXPECT_EQ(cache.length(id[0]), 9);
  EXPECT_EQ(cache.free_blocks(), 5);
  EXPECT_EQ(decode_rest(), first);
  // Blocks reserved ahead of the positions a call covers (4 blocks held, 3 needed) are not
  // part of that call's block table (they once overflowed it).
  cache.truncate(id[0], 9);
  cache.reserve(id[0], 7);
  EXPECT_EQ(decode_rest(), first);
  EXPECT_THROW(cache.truncate(id[0], 14), Error);
}

TEST(ModelKvCache, DecodeLimitsAreErrors) {
  const ModelConfig cfg = model_preset("llama", "tiny");
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 16;
  limits.max_seqs = 2;
  limits.training = false;
  limits.max_decode_tokens = 4;
  limits.max_decode_seqs = 2;
  Model model(cfg, *ops, limits);
  KvCacheConfig kc;
  kc.num_blocks = 8;
  KvCache cache(*ops, cfg, kc);
  const std::vector<int64_t> id = {cache.add_sequence()};
  HostI t({5});
  HostF logits({1, cfg.vocab_size});
  const std::vector<int64_t> n = {5};
  try {
    model.prefill(cache, id, t, n, logits);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_decode_tokens = 4"), std::string::npos) << e.what();
  }
  ModelLimits no_decode = limits;
  no_decode.max_decode_tokens = no_decode.max_decode_seqs = 0;
  Model scorer(cfg, *ops, no_decode);
  HostI one({1});
  EXPECT_THROW(scorer.decode_step(cache, id, one, logits), Error);
}

}  // namespace
}  // namespace grpo::test
