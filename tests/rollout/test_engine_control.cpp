// The engine's per-request controls and lifecycle, against the one-at-a-time reference: stop
// token ids, stop strings, max_new_tokens and the context limit, cancel, weight updates (both
// modes, a failing one), routing capture against Model::forward, and calls from other threads.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "core/error.h"
#include "policy/kv_cache.h"
#include "rollout/engine.h"
#include "tests/policy/model_test_util.h"
#include "tests/rollout/engine_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

Request simple_request(uint64_t id, int64_t n, int64_t max_new_tokens, uint64_t seed, int64_t prompt_len = 7) {
  Request r;
  r.id = id;
  for (int64_t i = 0; i < prompt_len; ++i) r.prompt.push_back(int32_t((i * 53 + int64_t(id) * 7 + 3) % 256));
  r.sampling.n = n;
  r.sampling.max_new_tokens = max_new_tokens;
  r.sampling.seed = seed;
  return r;
}

// A prefix of `want` (an aborted sample stops early).
void expect_prefix(const Sample& got, const Sample& want, const std::string& what) {
  ASSERT_LE(got.tokens.size(), want.tokens.size()) << what;
  for (size_t i = 0; i < got.tokens.size(); ++i) {
    EXPECT_EQ(got.tokens[i], want.tokens[i]) << what << " token " << i;
    EXPECT_NEAR(got.logprobs[i], want.logprobs[i], kBatchTol) << what << " token " << i;
  }
}

// ---- stops and lengths -------------------------------------------------------------------

TEST(EngineStops, StopTokenEndsTheSampleWithTheTokenIncluded) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 21);
  Request r = simple_request(1, 4, 16, 77);
  const Sample free_run = reference_sample(*model, r, 0, 1024);
  ASSERT_GE(free_run.tokens.size(), 5u);
  r.sampling.stop_token_ids = {free_run.tokens[4], 271};
  const GroupResult want = reference_group(*model, r, 1024);
  Engine engine(*model, test_engine_config(8, 64));
  const GroupResult got = engine.generate({r})[0];
  expect_same(got, want, kBatchTol, "stop token");
  // Sample 0 stops at the first occurrence of the token, which it includes.
  const Sample& s0 = got.samples[0];
  EXPECT_EQ(s0.finish, FinishReason::stop);
  EXPECT_EQ(s0.tokens.back(), free_run.tokens[4]);
  EXPECT_LE(s0.tokens.size(), 5u);
  EXPECT_EQ(std::count(s0.tokens.begin(), s0.tokens.end(), free_run.tokens[4]), 1);
}

// on_token sees each sample's tokens once, in order, also when a tiny KV budget preempts and
// recomputes samples.
TEST(EngineStream, OnTokenSeesEveryTokenOnceInOrder) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 23);
  Request r = simple_request(3, 4, 20, 9);
  std::map<int64_t, std::vector<int32_t>> seen;
  r.on_token = [&](int64_t sample, int32_t token) { seen[sample].push_back(token); };
  EngineConfig cfg = test_engine_config(4, 8);
  // 4 samples of 7 + 20 tokens need 4 x 7 blocks of 4; 12 blocks force preemption.
  cfg.kv_memory_bytes = int64_t(KvCache::bytes_needed(model->config(), KvCacheConfig{1, cfg.block_size})) * 12;
  Engine engine(*model, cfg);
  const GroupResult got = engine.generate({r})[0];
  EXPECT_GT(engine.stats().preemptions, 0) << "the KV budget should force preemption";
  ASSERT_EQ(seen.size(), got.samples.size());
  for (size_t i = 0; i < got.samples.size(); ++i) EXPECT_EQ(seen[int64_t(i)], got.samples[i].tokens) << "sample " << i;
}

TEST(EngineStops, StopStringEndsTheSample) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 22);
  const Tokenizer& tok = byte_tokenizer();
  Request r = simple_request(2, 3, 24, 5);
  const Sample free_run = reference_sample(*model, r, 0, 1024);
  // Two consecutive printable ASCII tokens of sample 0: a stop string spanning two tokens.
  auto printable = [](int32_t t) { return t >= 32 && t < 127; };
  size_t j = 2;
  while (j + 1 < free_run.tokens.size() && !(printable(free_run.tokens[j]) && printable(free_run.tokens[j + 1]))) ++j;
  ASSERT_LT(j + 1, free_run.tokens.size()) << "no two printable tokens in a row: pick another seed";
  const std::string stop = {char(free_run.tokens[j]), char(free_run.tokens[j + 1])};
  r.sampling.stop_strings = {"never appears \x01\x02", stop};
  const GroupResult want = reference_group(*model, r, 1024, &tok);
  Engine engine(*model, test_engine_config(4, 8), &tok);
  const GroupResult got = engine.generate({r})[0];
  expect_same(got, want, kBatchTol, "stop string \"" + stop + "\"");
  const Sample& s0 = got.samples[0];
  EXPECT_EQ(s0.finish, FinishReason::stop);
  EXPECT_LE(s0.tokens.size(), j + 2);
  std::vector<TokenId> valid;
  for (int32_t t : s0.tokens)
    if (tok.is_valid(t)) valid.push_back(t);
  const std::string text = tok.decode(valid, true);
  EXPECT_EQ(text.substr(text.size() - 2), stop);  // the completion ends with the stop string
}

TEST(EngineStops, MaxNewTokensAndContextLimitGiveLength) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 23);
  {
    const Request r = simple_request(3, 3, 5, 1);
    Engine engine(*model, test_engine_config(8, 64));
    const GroupResult got = engine.generate({r})[0];
    expect_same(got, reference_group(*model, r, 1024), kBatchTol, "max_new_tokens");
    for (const Sample& s : got.samples) {
      EXPECT_EQ(s.tokens.size(), 5u);
      EXPECT_EQ(s.finish, FinishReason::length);
    }
  }
  {
    const Request r = simple_request(4, 2, 50, 2, 9);
    EngineConfig cfg = test_engine_config(8, 64);
    cfg.max_model_len = 12;  // 9 prompt tokens + 3
    Engine engine(*model, cfg);
    const GroupResult got = engine.generate({r})[0];
    expect_same(got, reference_group(*model, r, 12), kBatchTol, "context limit");
    for (const Sample& s : got.samples) {
      EXPECT_EQ(s.tokens.size(), 3u);
      EXPECT_EQ(s.finish, FinishReason::length);
    }
  }
}

// ---- cancel ------------------------------------------------------------------------------

TEST(EngineCancel, CancelAbortsTheRequestOnly) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 24);
  const Request a = simple_request(10, 2, 40, 1), b = simple_request(11, 1, 10, 2);
  Engine engine(*model, test_engine_config(8, 64));
  std::map<uint64_t, GroupResult> got;
  auto keep = [&](GroupResult g) { got[g.id] = std::move(g); };
  engine.submit(a, keep);
  engine.submit(b, keep);
  for (int i = 0; i < 4; ++i) engine.step();
  engine.cancel(10);
  engine.cancel(12345);  // unknown: ignored
  engine.run_until_idle();
  ASSERT_EQ(got.size(), 2u);
  const GroupResult want_a = reference_group(*model, a, 1024);
  for (size_t i = 0; i < 2; ++i) {
    const Sample& s = got[10].samples[i];
    EXPECT_EQ(s.finish, FinishReason::abort);
    EXPECT_GT(s.tokens.size(), 0u);
    EXPECT_LT(s.tokens.size(), 40u);
    expect_prefix(s, want_a.samples[i], "cancelled sample " + std::to_string(i));
  }
  expect_same(got[11], reference_group(*model, b, 1024), kBatchTol, "the other request");
  EXPECT_EQ(engine.stats().kv_blocks_used, 0);
  engine.cancel(11);  // already delivered: nothing happens
  EXPECT_FALSE(engine.step());
}

TEST(EngineCancel, CancelBeforeTheFirstStepAndResubmission) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 25);
  const Request a = simple_request(20, 3, 10, 1);
  Engine engine(*model, test_engine_config(8, 64));
  std::vector<GroupResult> got;
  engine.submit(a, [&](GroupResult g) { got.push_back(std::move(g)); });
  engine.cancel(20);
  // A cancel applies to requests submitted before it: this one runs.
  engine.submit(a, [&](GroupResult g) { got.push_back(std::move(g)); });
  engine.run_until_idle();
  ASSERT_EQ(got.size(), 2u);
  for (const Sample& s : got[0].samples) {
    EXPECT_EQ(s.finish, FinishReason::abort);
    EXPECT_TRUE(s.tokens.empty());
    EXPECT_EQ(s.version, 0);
  }
  expect_same(got[1], reference_group(*model, a, 1024), kBatchTol, "resubmitted");
}

// ---- weight updates ----------------------------------------------------------------------

TEST(EngineWeights, UpdateChangesOutputsAndVersion) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 26);
  const Request r = simple_request(30, 2, 12, 9);
  Engine engine(*model, test_engine_config(8, 64));
  const GroupResult before = engine.generate({r})[0];
  EXPECT_EQ(before.samples[0].version, 0);
  std::vector<std::string> applied;
  engine.request_weight_update(
      1, false, [](Model& m) { perturb_weights(m, 1001); }, [&](const std::string& e) { applied.push_back(e); });
  EXPECT_EQ(engine.version(), 0);  // applied by the engine loop
  const GroupResult after = engine.generate({r})[0];
  ASSERT_EQ(applied.size(), 1u);
  EXPECT_EQ(applied[0], "");
  EXPECT_EQ(engine.version(), 1);
  EXPECT_EQ(engine.stats().version, 1);
  EXPECT_NE(after.samples[0].tokens, before.samples[0].tokens);
  GroupResult want = reference_group(*model, r, 1024);  // the model now holds the new weights
  for (Sample& s : want.samples) s.version = 1;
  expect_same(after, want, kBatchTol, "after the update");
}

// abort_in_flight: the started group is aborted on the old version; a group waiting for a
// batch slot (not started) and one submitted later run on the new version.
TEST(EngineWeights, AbortModeAbortsInFlightSamples) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 27);
  const Request a = simple_request(40, 2, 40, 1), c = simple_request(41, 1, 8, 2), b = simple_request(42, 2, 8, 3);
  const GroupResult old_a = reference_group(*model, a, 1024);
  Engine engine(*model, test_engine_config(2, 64));
  std::map<uint64_t, GroupResult> got;
  auto keep = [&](GroupResult g) { got[g.id] = std::move(g); };
  engine.submit(a, keep);
  for (int i = 0; i < 4; ++i) engine.step();
  engine.submit(c, keep);  // both slots are a's: c waits
  engine.step();
  EXPECT_EQ(engine.stats().waiting, 1);
  std::string error = "not called";
  engine.request_weight_update(
      2, true, [](Model& m) { perturb_weights(m, 2002); }, [&](const std::string& e) { error = e; });
  engine.submit(b, keep);
  engine.run_until_idle();
  EXPECT_EQ(error, "");
  ASSERT_EQ(got.size(), 3u);
  for (size_t i = 0; i < 2; ++i) {
    const Sample& s = got[40].samples[i];
    EXPECT_EQ(s.finish, FinishReason::abort);
    EXPECT_EQ(s.version, 0);
    EXPECT_GT(s.tokens.size(), 0u);
    expect_prefix(s, old_a.samples[i], "aborted sample " + std::to_string(i));
  }
  for (const Request* r : {&c, &b}) {
    GroupResult want = reference_group(*model, *r, 1024);
    for (Sample& s : want.samples) s.version = 2;
    expect_same(got[r->id], want, kBatchTol, "on the new version");
  }
}

// Without abort_in_flight: the started group finishes on the old version, the waiting one is
// not admitted until the update, then runs on the new version.
TEST(EngineWeights, DrainModeFinishesInFlightSamplesOnTheOldVersion) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 28);
  const Request a = simple_request(50, 2, 12, 1), c = simple_request(51, 1, 8, 2);
  GroupResult old_a = reference_group(*model, a, 1024);
  Engine engine(*model, test_engine_config(8, 64));  // slots for c: only the drain holds it back
  std::vector<std::string> events;
  std::map<uint64_t, GroupResult> got;
  auto keep = [&](GroupResult g) {
    events.push_back("delivered " + std::to_string(g.id));
    got[g.id] = std::move(g);
  };
  engine.submit(a, keep);
  for (int i = 0; i < 3; ++i) engine.step();
  engine.submit(c, keep);
  engine.request_weight_update(
      3, false, [](Model& m) { perturb_weights(m, 3003); },
      [&](const std::string& e) { events.push_back("applied" + e); });
  engine.run_until_idle();
  EXPECT_EQ(events, (std::vector<std::string>{"delivered 50", "applied", "delivered 51"}));
  expect_same(got[50], old_a, kBatchTol, "drained on the old version");
  GroupResult want_c = reference_group(*model, c, 1024);
  for (Sample& s : want_c.samples) s.version = 3;
  expect_same(got[51], want_c, kBatchTol, "after the drain");
  EXPECT_EQ(engine.version(), 3);
}

// An `apply` that throws (before writing, as the contract asks) leaves the old weights and
// version serving and reports the error.
TEST(EngineWeights, FailedApplyKeepsTheOldWeightsAndVersion) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 29);
  const Request r = simple_request(60, 2, 10, 4);
  Engine engine(*model, test_engine_config(8, 64));
  const GroupResult before = engine.generate({r})[0];
  std::vector<std::string> errors;
  engine.request_weight_update(
      9, false, [](Model&) { GRPO_THROW("weight update: tensor model.norm.weight has shape [3], expected [64]"); },
      [&](const std::string& e) { errors.push_back(e); });
  engine.request_weight_update(
      10, true, [](Model&) { throw std::runtime_error("stream cut"); },
      [&](const std::string& e) { errors.push_back(e); });
  const GroupResult after = engine.generate({r})[0];
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0], "weight update: tensor model.norm.weight has shape [3], expected [64]");
  EXPECT_EQ(errors[1], "stream cut");
  EXPECT_EQ(engine.version(), 0);
  expect_same(after, before, 0.0, "after failed updates");  // same weights, same batch shape
}

// ---- routing capture ---------------------------------------------------------------------

// The experts recorded for every token fed (prompt, then every generated token but the last)
// are the ones Model::forward chooses on prompt + completion, through chunked prefill, forks
// and recomputation after preemption.
TEST(EngineRouting, RecordsEqualForwardRouting) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 30, 128);
  const ModelConfig& mc = model->config();
  const int64_t M = mc.num_moe_layers(), K = mc.num_experts_per_tok;
  std::vector<Request> rs = {simple_request(70, 3, 14, 1, 13), simple_request(71, 2, 10, 2, 6),
                             simple_request(72, 1, 6, 3, 5)};
  rs[0].sampling.return_routing = rs[1].sampling.return_routing = true;
  for (bool sharing : {true, false}) {
    EngineConfig cfg = test_engine_config(4, 8, sharing);
    cfg.kv_memory_bytes = int64_t(KvCache::bytes_needed(mc, KvCacheConfig{1, 4})) * 9;  // forces preemption
    Engine engine(*model, cfg);
    const std::vector<GroupResult> got = engine.generate(rs);
    EXPECT_GT(engine.stats().preemptions, 0);
    EXPECT_TRUE(got[2].samples[0].routing.empty());  // not asked for
    int64_t compared = 0, differing = 0;
    for (size_t g = 0; g < 2; ++g)
      for (const Sample& s : got[g].samples) {
        std::vector<int32_t> fed = rs[g].prompt;
        fed.insert(fed.end(), s.tokens.begin(), s.tokens.end() - 1);
        const int64_t T = int64_t(fed.size());
        ASSERT_EQ(int64_t(s.routing.size()), T * M * K);
        RefInput in;
        in.tokens = fed;
        in.targets.assign(fed.begin() + 1, fed.end());
        in.targets.push_back(0);
        for (int64_t t = 0; t < T; ++t) in.positions.push_back(int32_t(t));
        in.cu_seqlens = {0, int32_t(T)};
        const HostBatch hb(in);
        HostF lp({T});
        Host<int32_t> routing({M, T, K});
        ForwardOutputs fo;
        fo.logprob = lp;
        fo.routing = routing;
        model->forward(hb.batch(), ForwardOptions{}, fo);
        for (int64_t t = 0; t < T; ++t)
          for (int64_t m = 0; m < M; ++m)
            for (int64_t k = 0; k < K; ++k) {
              ++compared;
              differing += s.routing[size_t((t * M + m) * K + k)] != routing[size_t((m * T + t) * K + k)];
            }
      }
    EXPECT_EQ(differing, 0) << "of " << compared << " expert ids";
    EXPECT_GT(compared, 0);
  }
}

TEST(EngineRouting, DenseModelRecordsNothing) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 31);
  Request r = simple_request(80, 2, 5, 1);
  r.sampling.return_routing = true;
  Engine engine(*model, test_engine_config(8, 64));
  const GroupResult g = engine.generate({r})[0];
  ASSERT_EQ(g.samples.size(), 2u);
  for (const Sample& s : g.samples) EXPECT_TRUE(s.routing.empty());
}

// ---- threads -----------------------------------------------------------------------------

// submit, cancel, stats and request_weight_update from other threads while the loop runs.
TEST(EngineThreads, CallsFromOtherThreadsWhileTheLoopRuns) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 32);
  std::vector<Request> rs;
  for (int t = 0; t < 3; ++t)
    for (Request r : mixed_requests(model->config().vocab_size, 8)) {
      r.id += uint64_t(t) * 1000;
      rs.push_back(r);
    }
  Engine reference_engine(*model, test_engine_config(8, 16));
  const std::vector<GroupResult> want = reference_engine.generate(rs);

  Engine engine(*model, test_engine_config(8, 16));
  std::mutex mu;
  std::map<uint64_t, GroupResult> got;
  std::atomic<bool> stop{false};
  std::thread loop([&] {
    while (!stop) {
      if (!engine.step()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t)
    clients.emplace_back([&, t] {
      for (size_t i = 0; i < 5; ++i) {
        engine.submit(rs[size_t(t) * 5 + i], [&](GroupResult g) {
          std::lock_guard<std::mutex> lock(mu);
          got[g.id] = std::move(g);
        });
        engine.cancel(999999);
        (void)engine.stats();
      }
    });
  for (auto& c : clients) c.join();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (got.size() == rs.size()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  loop.join();
  for (const GroupResult& w : want) expect_same(got[w.id], w, kBatchTol, "from threads");
  const rollout::EngineStats st = engine.stats();
  EXPECT_EQ(st.running + st.waiting + st.kv_blocks_used, 0);
  EXPECT_GT(st.steps, 0);
}

// The engine's decode steps through graphs (on the CPU backend: replayed calls) give the
// completions, log-probs and recorded experts of op-by-op decoding, through batches that grow
// and shrink, preemption and prefix forks.
TEST(EngineGraphs, SameCompletionsAndRoutingAsOpByOp) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 31, 128);
  const ModelConfig& mc = model->config();
  std::vector<Request> rs = mixed_requests(mc.vocab_size, 14);
  for (Request& r : rs) r.sampling.return_routing = true;
  EngineConfig cfg = test_engine_config(8, 16);
  cfg.kv_memory_bytes = int64_t(KvCache::bytes_needed(mc, KvCacheConfig{1, 4})) * 24;  // forces preemption
  auto run = [&](DecodeGraphs mode) {
    model->set_decode_graphs(mode);
    Engine engine(*model, cfg);
    std::vector<GroupResult> out = engine.generate(rs);
    const rollout::EngineStats st = engine.stats();
    EXPECT_GT(st.preemptions, 0);
    const DecodeGraphStats g = model->decode_graph_stats();
    EXPECT_EQ(st.decode_graph_replays, g.replays);
    EXPECT_EQ(st.decode_steps_op_by_op, g.eager_steps);
    return out;
  };
  const std::vector<GroupResult> want = run(DecodeGraphs::off);
  const DecodeGraphStats before = model->decode_graph_stats();
  const std::vector<GroupResult> got = run(DecodeGraphs::on);
  const DecodeGraphStats after = model->decode_graph_stats();
  EXPECT_GT(after.replays - before.replays, after.eager_steps - before.eager_steps);
  EXPECT_GT(after.graphs, before.graphs);
  EXPECT_EQ(after.failed, 0);
  Diff diff;
  ASSERT_EQ(got.size(), want.size());
  for (size_t g = 0; g < got.size(); ++g) {
    expect_same(got[g], want[g], kBatchTol, "group " + std::to_string(g), &diff);
    for (size_t i = 0; i < got[g].samples.size() && i < want[g].samples.size(); ++i)
      EXPECT_EQ(got[g].samples[i].routing, want[g].samples[i].routing) << "group " << g << " sample " << i;
  }
  std::printf("[engine graphs] %lld tokens, %lld replays, %lld graphs, max |logprob diff| %.3g\n",
              static_cast<long long>(diff.tokens), static_cast<long long>(after.replays - before.replays),
              static_cast<long long>(after.graphs - before.graphs), diff.max_logprob);
}

}  // namespace
}  // namespace grpo::test
