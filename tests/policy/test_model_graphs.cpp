// Decoding through graphs (ModelLimits::decode_graphs) against the op-by-op decode_step, on the
// CPU backend, whose graphs replay the recorded calls: the same code path the CUDA backend
// captures, so these tests catch a graph that reads stale tokens, metadata or routing, padding
// rows that write the cache, and bucket changes (batch size, block-table width) that reuse the
// wrong graph.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "policy/kv_cache.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};

ModelLimits graph_limits(DecodeGraphs mode) {
  ModelLimits limits = decoding_limits(8, 1, 64, 6);
  limits.decode_graphs = mode;
  return limits;
}

// One model and its cache, fed the same calls as its twin.
struct Decoder {
  std::unique_ptr<Model> model;
  std::unique_ptr<KvCache> cache;
  std::vector<int64_t> ids;
  Decoder(const ModelConfig& cfg, Ops& ops, DecodeGraphs mode, int64_t S) {
    model = std::make_unique<Model>(cfg, ops, graph_limits(mode));
    randomize_weights(*model, 31);
    KvCacheConfig kc;
    kc.num_blocks = 64;
    kc.block_size = 4;
    cache = std::make_unique<KvCache>(ops, cfg, kc);
    for (int64_t s = 0; s < S; ++s) ids.push_back(cache->add_sequence());
  }
};

// Every slot of the blocks no sequence holds is still zero (the pool starts zeroed).
void expect_free_blocks_untouched(const KvCache& cache, const std::set<int32_t>& held) {
  for (int64_t l = 0; l < cache.num_layers(); ++l)
    for (const Tensor& t : {cache.k(l), cache.v(l)}) {
      const int64_t per_block = t.numel() / cache.num_blocks();
      const float* p = static_cast<const float*>(t.data);
      for (int64_t b = 0; b < cache.num_blocks(); ++b) {
        if (held.count(int32_t(b))) continue;
        for (int64_t i = 0; i < per_block; ++i)
          ASSERT_EQ(p[b * per_block + i], 0.0f) << "layer " << l << " block " << b << " was written";
      }
    }
}

class ModelGraphs : public ::testing::TestWithParam<std::string> {};

// Five sequences prefilled, then decoded token by token (teacher-forced, the tokens change
// every step) while they finish one after another: batches of 5, 4, 3, 2, 1 rows (padded to
// 8, 4, 4, 2, 1) and block tables growing from 2 to 8 blocks wide. The graph model's logits
// and recorded experts equal the op-by-op model's.
TEST_P(ModelGraphs, DecodingMatchesOpByOp) {
  const ModelConfig cfg = test_config(GetParam());
  auto ops = make_cpu_ops();
  const std::vector<int> prompt = {3, 5, 2, 7, 4}, lengths = {9, 14, 20, 26, 31};
  const int64_t S = int64_t(prompt.size()), V = cfg.vocab_size, M = cfg.num_moe_layers();
  const int64_t K = cfg.num_experts_per_tok;
  const RefInput in = make_batch(lengths, V, 91);
  auto token = [&](int64_t s, int64_t pos) { return in.tokens[size_t(in.cu_seqlens[size_t(s)] + pos)]; };

  Decoder eager(cfg, *ops, DecodeGraphs::off, S), graphed(cfg, *ops, DecodeGraphs::on, S);
  {
    std::vector<int32_t> tok;
    std::vector<int64_t> n;
    for (int64_t s = 0; s < S; ++s) {
      for (int p = 0; p < prompt[size_t(s)]; ++p) tok.push_back(token(s, p));
      n.push_back(prompt[size_t(s)]);
    }
    HostI t({int64_t(tok.size())});
    std::copy(tok.begin(), tok.end(), t.v.begin());
    HostF logits({S, V});
    eager.model->prefill(*eager.cache, eager.ids, t, n, logits);
    graphed.model->prefill(*graphed.cache, graphed.ids, t, n, logits);
  }
  std::vector<int64_t> pos(prompt.begin(), prompt.end());
  double worst = 0;
  int64_t steps = 0, routing_rows = 0;
  for (;;) {
    std::vector<int64_t> which;
    std::vector<int32_t> tok;
    for (int64_t s = 0; s < S; ++s)
      if (pos[size_t(s)] < lengths[size_t(s)]) {
        which.push_back(s);
        tok.push_back(token(s, pos[size_t(s)]));
      }
    if (which.empty()) break;
    const int64_t B = int64_t(which.size());
    HostI t({B});
    std::copy(tok.begin(), tok.end(), t.v.begin());
    std::vector<int64_t> eager_ids, graph_ids;
    for (int64_t s : which) {
      eager_ids.push_back(eager.ids[size_t(s)]);
      graph_ids.push_back(graphed.ids[size_t(s)]);
    }
    HostF want({B, V}), got({B, V});
    Host<int32_t> want_routing, got_routing;
    if (M > 0) {
      want_routing = Host<int32_t>({M, B, K});
      got_routing = Host<int32_t>({M, B, K});
      std::fill(got_routing.v.begin(), got_routing.v.end(), -7);
    }
    std::fill(got.v.begin(), got.v.end(), NAN);
    eager.model->decode_step(*eager.cache, eager_ids, t, want, want_routing.t);
    graphed.model->decode_step(*graphed.cache, graph_ids, t, got, got_routing.t);
    for (size_t i = 0; i < want.v.size(); ++i) {
      ASSERT_TRUE(std::isfinite(got.v[i])) << "step " << steps << " logit " << i;
      worst = std::max(worst, double(std::fabs(got.v[i] - want.v[i])));
    }
    if (M > 0) {
      EXPECT_EQ(got_routing.v, want_routing.v) << "step " << steps;
      routing_rows += B;
    }
    for (int64_t s : which) ++pos[size_t(s)];
    ++steps;
  }
  EXPECT_LT(worst, 1e-5) << GetParam();
  std::printf("[graphs] %s: %lld decode steps, max |logit diff| %.3g vs op by op\n", GetParam().c_str(),
              static_cast<long long>(steps), worst);
  for (int64_t s = 0; s < S; ++s) EXPECT_EQ(graphed.cache->length(graphed.ids[size_t(s)]), lengths[size_t(s)]);

  const DecodeGraphStats g = graphed.model->decode_graph_stats(), e = eager.model->decode_graph_stats();
  EXPECT_EQ(e.graphs, 0);
  EXPECT_EQ(e.replays, 0);
  EXPECT_EQ(g.failed, 0);
  EXPECT_EQ(g.replays + g.eager_steps, steps);
  EXPECT_EQ(g.eager_steps, g.graphs);  // each shape's first step runs op by op and captures
  EXPECT_GT(g.replays, steps / 2);
  EXPECT_GE(g.graphs, 4);  // several batch buckets and block-table widths

  // Padding rows wrote no cache slot.
  std::set<int32_t> held;
  for (int64_t id : graphed.ids)
    for (int32_t b : graphed.cache->blocks(id)) held.insert(b);
  expect_free_blocks_untouched(*graphed.cache, held);
}

INSTANTIATE_TEST_SUITE_P(Archs, ModelGraphs, ::testing::ValuesIn(kArchs),
                         [](const auto& info) { return info.param; });

// A bad token in a replayed step: the embedding's error, no sequence advanced, and the next
// good step (the same graph) decodes as the op-by-op model does.
TEST(ModelGraphsErrors, BadTokenInAReplayIsTheEmbeddingsErrorAndAdvancesNothing) {
  const ModelConfig cfg = test_config("qwen3_moe");
  auto ops = make_cpu_ops();
  Decoder eager(cfg, *ops, DecodeGraphs::off, 2), graphed(cfg, *ops, DecodeGraphs::on, 2);
  const int64_t V = cfg.vocab_size;
  HostI prompt({2});
  prompt[0] = 3;
  prompt[1] = 4;
  HostF got({2, V}), want({2, V});
  const std::vector<int64_t> n = {1, 1};
  eager.model->prefill(*eager.cache, eager.ids, prompt, n, want);
  graphed.model->prefill(*graphed.cache, graphed.ids, prompt, n, got);
  HostI t({2});
  t[0] = 5;
  t[1] = 7;
  graphed.model->decode_step(*graphed.cache, graphed.ids, t, got);  // runs op by op and captures
  eager.model->decode_step(*eager.cache, eager.ids, t, want);
  ASSERT_EQ(graphed.model->decode_graph_stats().graphs, 1);

  // Lengths 2 -> 3 stay within one block of 4: the same graph replays.
  t[1] = int32_t(V + 3);
  const std::string bad = "= " + std::to_string(V + 3), range = "outside [0, " + std::to_string(V) + ")";
  EXPECT_GRPO_ERROR(graphed.model->decode_step(*graphed.cache, graphed.ids, t, got), "embedding", "ids[1]",
                    bad.c_str(), range.c_str());
  EXPECT_EQ(graphed.cache->length(graphed.ids[0]), 2);
  EXPECT_EQ(graphed.cache->length(graphed.ids[1]), 2);

  t[1] = 9;
  graphed.model->decode_step(*graphed.cache, graphed.ids, t, got);
  eager.model->decode_step(*eager.cache, eager.ids, t, want);
  const DecodeGraphStats s = graphed.model->decode_graph_stats();
  EXPECT_EQ(s.graphs, 1);
  EXPECT_EQ(s.eager_steps, 1);
  EXPECT_EQ(s.replays, 1);  // the failed replay does not count
  for (size_t i = 0; i < want.v.size(); ++i) EXPECT_NEAR(got.v[i], want.v[i], 1e-5) << i;
}

// Graphs are off by default on the CPU (they only replay the calls there) and on when asked.
TEST(ModelGraphsErrors, AutomaticIsOffOnTheCpu) {
  const ModelConfig cfg = test_config("llama");
  auto ops = make_cpu_ops();
  Decoder d(cfg, *ops, DecodeGraphs::automatic, 1);
  HostI t({1});
  t[0] = 4;
  HostF logits({1, cfg.vocab_size});
  const std::vector<int64_t> one = {1};
  d.model->prefill(*d.cache, d.ids, t, one, logits);
  d.model->decode_step(*d.cache, d.ids, t, logits);
  d.model->decode_step(*d.cache, d.ids, t, logits);
  const DecodeGraphStats s = d.model->decode_graph_stats();
  EXPECT_EQ(s.graphs, 0);
  EXPECT_EQ(s.replays, 0);
  EXPECT_EQ(s.eager_steps, 2);
}

}  // namespace
}  // namespace grpo::test
