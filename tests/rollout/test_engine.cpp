// The engine against one-at-a-time generation (tests/rollout/engine_test_util.cpp: plain
// Model::prefill / decode_step + Ops::sample, no engine code), on a dense and a MoE model:
// batching, chunked prefill, prefix sharing, preemption and arrival order must not change any
// request's tokens. Exact where the CPU allows it, else log-probs within kBatchTol (see the
// NOTES on batch invariance in engine_test_util.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "core/error.h"
#include "policy/kv_cache.h"
#include "rollout/engine.h"
#include "tests/policy/model_test_util.h"
#include "tests/rollout/engine_test_util.h"

namespace grpo::test {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen3_moe"};

class EngineGen : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ops = make_cpu_ops();
    model = make_test_model(*ops, GetParam(), 17);
  }
  std::vector<GroupResult> reference(const std::vector<Request>& rs, int64_t max_len = 1024) {
    std::vector<GroupResult> out;
    for (const Request& r : rs) out.push_back(reference_group(*model, r, max_len));
    return out;
  }
  void report(const char* what, const Diff& d) {
    std::printf("[engine] %s %s: %lld tokens, max |logprob diff| %.3g\n", GetParam().c_str(), what,
                (long long)d.tokens, d.max_logprob);
  }
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> model;
};

// Every call the same shape as the reference's: one sequence per call, whole prompts. Then
// the engine must reproduce it bit for bit, with and without prefix sharing.
TEST_P(EngineGen, BitExactWithOneSequenceAtATime) {
  const std::vector<Request> rs = mixed_requests(model->config().vocab_size);
  const std::vector<GroupResult> want = reference(rs);
  for (bool sharing : {true, false}) {
    const EngineConfig cfg = test_engine_config(1, 64, sharing);
    Engine engine(*model, cfg);
    const std::vector<GroupResult> got = engine.generate(rs);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      expect_same(got[i], want[i], 0.0, sharing ? "max_batch 1, sharing" : "max_batch 1, no sharing");
  }
}

// Batched: up to 8 sequences per decode step, prompts prefilled in chunks of at most 16 tokens
// over all sequences (the 30-token prompt takes two steps, shorter ones share a call).
TEST_P(EngineGen, BatchedMatchesOneAtATime) {
  const std::vector<Request> rs = mixed_requests(model->config().vocab_size, 16);
  const std::vector<GroupResult> want = reference(rs);
  for (bool sharing : {true, false}) {
    const EngineConfig cfg = test_engine_config(8, 16, sharing);
    Engine engine(*model, cfg);
    const std::vector<GroupResult> got = engine.generate(rs);
    Diff diff;
    for (size_t i = 0; i < got.size(); ++i) expect_same(got[i], want[i], kBatchTol, "batched", &diff);
    report(sharing ? "batched, sharing" : "batched, no sharing", diff);
    const rollout::EngineStats st = engine.stats();
    EXPECT_EQ(st.running, 0);
    EXPECT_EQ(st.waiting, 0);
    EXPECT_EQ(st.kv_blocks_used, 0);
    EXPECT_EQ(st.preemptions, 0);
    int64_t generated = 0, prompt_tokens = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      for (const Sample& s : got[i].samples) generated += int64_t(s.tokens.size());
      prompt_tokens += int64_t(rs[i].prompt.size()) * (sharing ? 1 : rs[i].sampling.n);
    }
    EXPECT_EQ(st.generated_tokens, generated);
    EXPECT_EQ(st.prefill_tokens, prompt_tokens);  // each prompt once per group with sharing
  }
}

// A group of 6 samples: prefix sharing gives the outputs of prefilling the prompt per sample,
// prefills the prompt once and holds fewer KV blocks at its peak.
TEST_P(EngineGen, PrefixSharingSameOutputsFewerBlocks) {
  Request r;
  r.id = 1;
  for (int i = 0; i < 21; ++i) r.prompt.push_back(int32_t((i * 37 + 5) % 256));
  r.sampling.n = 6;
  r.sampling.max_new_tokens = 10;
  r.sampling.seed = 99;
  std::map<bool, GroupResult> out;
  std::map<bool, int64_t> peak, saved, prefilled;
  for (bool sharing : {true, false}) {
    const EngineConfig cfg = test_engine_config(8, 256, sharing);
    Engine engine(*model, cfg);
    engine.submit(r, [&, sharing](GroupResult g) { out[sharing] = std::move(g); });
    peak[sharing] = 0;
    while (engine.step()) peak[sharing] = std::max(peak[sharing], engine.stats().kv_blocks_used);
    saved[sharing] = engine.stats().kv_blocks_saved_by_sharing;
    prefilled[sharing] = engine.stats().prefill_tokens;
  }
  Diff diff;
  expect_same(out[true], out[false], kBatchTol, "sharing vs not", &diff);
  expect_same(out[true], reference({r})[0], kBatchTol, "sharing vs reference", &diff);
  report("prefix sharing", diff);
  // 5 forks, each sharing the prompt's 5 full blocks (the 21st token's block is copied).
  EXPECT_EQ(saved[true], 5 * 5);
  EXPECT_EQ(saved[false], 0);
  EXPECT_EQ(prefilled[true], 21);
  EXPECT_EQ(prefilled[false], 6 * 21);
  EXPECT_LT(peak[true], peak[false]);
  std::printf("[engine] %s peak KV blocks: %lld with sharing, %lld without\n", GetParam().c_str(),
              (long long)peak[true], (long long)peak[false]);
}

// A KV budget far below what the batch needs: sequences are preempted and recomputed, every
// request still completes with the outputs of a large budget.
TEST_P(EngineGen, TinyKvBudgetPreemptsAndCompletesEverything) {
  std::vector<Request> rs = mixed_requests(model->config().vocab_size, 20);
  // Stops survive preemption: request 101 stops on a character its sample 0 produces at
  // token 8 or later (the decoded text is kept across recomputation), 103 on a token id.
  const Sample free0 = reference_sample(*model, rs[1], 0, 1024);
  size_t j = 8;
  while (j < free0.tokens.size() && !(free0.tokens[j] >= 'a' && free0.tokens[j] <= 'z')) ++j;
  ASSERT_LT(j, free0.tokens.size()) << "no lowercase letter in the completion: pick another seed";
  rs[1].sampling.stop_strings = {std::string(1, char(free0.tokens[j]))};
  rs[3].sampling.stop_token_ids = {reference_sample(*model, rs[3], 2, 1024).tokens[10]};
  const Tokenizer* tok = &byte_tokenizer();
  std::vector<GroupResult> want;
  for (const Request& r : rs) want.push_back(reference_group(*model, r, 1024, tok));
  EXPECT_EQ(want[1].samples[0].finish, FinishReason::stop);
  EXPECT_EQ(want[3].samples[2].finish, FinishReason::stop);
  for (bool sharing : {true, false}) {
    EngineConfig cfg = test_engine_config(8, 16, sharing);
    // 13 blocks = 52 token slots: the longest sample (30 + 20 tokens) fits alone, barely.
    KvCacheConfig one{1, cfg.block_size};
    cfg.kv_memory_bytes = int64_t(KvCache::bytes_needed(model->config(), one)) * 13;
    Engine engine(*model, cfg, tok);
    EXPECT_EQ(engine.stats().kv_blocks_total, 13);
    const std::vector<GroupResult> got = engine.generate(rs);
    Diff diff;
    for (size_t i = 0; i < got.size(); ++i) expect_same(got[i], want[i], kBatchTol, "tiny KV budget", &diff);
    const rollout::EngineStats st = engine.stats();
    EXPECT_GT(st.preemptions, 0);
    EXPECT_EQ(st.kv_blocks_used, 0);
    report(sharing ? "tiny KV, sharing" : "tiny KV, no sharing", diff);
    std::printf("[engine] %s %s: %lld preemptions, %lld prefill tokens\n", GetParam().c_str(),
                sharing ? "sharing" : "no sharing", (long long)st.preemptions, (long long)st.prefill_tokens);
  }
}

// Arrival order and batch composition: requests submitted one by one between steps, in
// reverse order, with a smaller batch, give each request the outputs it gets in one batch.
TEST_P(EngineGen, ArrivalOrderDoesNotChangeOutputs) {
  const std::vector<Request> rs = mixed_requests(model->config().vocab_size, 14);
  EngineConfig cfg = test_engine_config(8, 16);
  Engine all_at_once(*model, cfg);
  const std::vector<GroupResult> base = all_at_once.generate(rs);

  cfg.max_batch = 3;
  cfg.max_prefill_tokens = 7;
  Engine trickle(*model, cfg);
  std::map<uint64_t, GroupResult> got;
  for (auto it = rs.rbegin(); it != rs.rend(); ++it) {
    trickle.submit(*it, [&](GroupResult g) { got[g.id] = std::move(g); });
    for (int i = 0; i < 3; ++i) trickle.step();
  }
  trickle.run_until_idle();
  Diff diff;
  ASSERT_EQ(got.size(), rs.size());
  for (const GroupResult& b : base) expect_same(got[b.id], b, kBatchTol, "trickled in reverse", &diff);
  report("arrival order", diff);
}

INSTANTIATE_TEST_SUITE_P(Archs, EngineGen, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// n samples at temperature 1 differ from each other, and the same seed reproduces them bit for
// bit (same engine configuration); another seed gives other tokens.
TEST(EngineSampling, SamplesDifferButReproduceWithTheSeed) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 3);
  Request r;
  r.id = 5;
  r.prompt = {10, 20, 30, 40, 50, 60, 70};
  r.sampling.n = 4;
  r.sampling.max_new_tokens = 12;
  r.sampling.seed = 1234;
  Engine engine(*model, test_engine_config(8, 64));
  const GroupResult a = engine.generate({r})[0];
  const GroupResult b = engine.generate({r})[0];
  expect_same(a, b, 0.0, "same seed");
  for (size_t i = 0; i < a.samples.size(); ++i)
    for (size_t j = i + 1; j < a.samples.size(); ++j)
      EXPECT_NE(a.samples[i].tokens, a.samples[j].tokens) << "samples " << i << " and " << j;
  r.sampling.seed = 1235;
  const GroupResult c = engine.generate({r})[0];
  EXPECT_NE(c.samples[0].tokens, a.samples[0].tokens);
}

// Greedy (temperature 0) picks the argmax of the logits at every step, batched.
TEST(EngineSampling, GreedyIsArgmax) {
  auto ops = make_cpu_ops();
  for (const std::string& arch : kArchs) {
    auto model = make_test_model(*ops, arch, 8);
    std::vector<Request> rs = mixed_requests(model->config().vocab_size, 16);
    for (auto& r : rs) {
      r.sampling.temperature = 0.0f;
      r.sampling.top_k = 3;  // filters do not apply to greedy rows
    }
    Engine engine(*model, test_engine_config(6, 16));
    const std::vector<GroupResult> got = engine.generate(rs);
    Diff diff;
    for (size_t i = 0; i < rs.size(); ++i)
      for (int64_t s = 0; s < rs[i].sampling.n; ++s)
        expect_same(got[i].samples[size_t(s)], reference_sample(*model, rs[i], s, 1024, nullptr, true), kBatchTol,
                    arch + " greedy", &diff);
    std::printf("[engine] %s greedy vs argmax: %lld tokens, max |logprob diff| %.3g\n", arch.c_str(),
                (long long)diff.tokens, diff.max_logprob);
  }
}

}  // namespace
}  // namespace grpo::test
