// Every request and configuration the engine refuses: a one-line grpo::Error naming the field,
// and nothing queued or lost (the engine keeps serving the good requests).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

#include "core/error.h"
#include "policy/kv_cache.h"
#include "rollout/engine.h"
#include "tests/policy/model_test_util.h"
#include "tests/rollout/engine_test_util.h"

namespace grpo::test {
namespace {

// Runs f, expects a grpo::Error whose one-line message contains `needle`.
void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing \"" << needle << "\"";
  } catch (const Error& e) {
    const std::string msg = e.message();
    EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

Request good_request() {
  Request r;
  r.id = 7;
  r.prompt = {1, 2, 3, 4, 5};
  r.sampling.n = 2;
  r.sampling.max_new_tokens = 6;
  return r;
}

TEST(EngineValidate, EveryBadRequestIsRefusedNamingTheField) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "qwen3_moe", 40);
  EngineConfig cfg = test_engine_config(8, 64);
  cfg.max_model_len = 32;
  // 6 blocks of 4 tokens: 24 token slots.
  cfg.kv_memory_bytes = int64_t(KvCache::bytes_needed(model->config(), KvCacheConfig{1, 4})) * 6;
  Engine engine(*model, cfg);
  Engine with_tokenizer(*model, cfg, &byte_tokenizer());
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();

  struct Case {
    std::string needle;
    std::function<void(Request&)> edit;
    bool tokenizer = false;
  };
  const std::vector<Case> cases = {
      {"request 7: prompt is empty", [](Request& r) { r.prompt.clear(); }},
      {"prompt[1] = 272 is not a token id", [](Request& r) { r.prompt[1] = 272; }},
      {"prompt[0] = -1 is not a token id", [](Request& r) { r.prompt[0] = -1; }},
      {"prompt has 32 tokens, more than the context of 32 (max_model_len)",
       [](Request& r) { r.prompt.assign(32, 1); }},
      {"sampling.n is 0", [](Request& r) { r.sampling.n = 0; }},
      {"sampling.n is -3", [](Request& r) { r.sampling.n = -3; }},
      {"sampling.n is 100000", [](Request& r) { r.sampling.n = 100000; }},
      {"sampling.temperature is -0.5", [](Request& r) { r.sampling.temperature = -0.5f; }},
      {"sampling.temperature is nan", [nan](Request& r) { r.sampling.temperature = nan; }},
      {"sampling.temperature is inf", [inf](Request& r) { r.sampling.temperature = inf; }},
      {"sampling.top_k is -1", [](Request& r) { r.sampling.top_k = -1; }},
      {"sampling.top_p is 0, expected in (0, 1]", [](Request& r) { r.sampling.top_p = 0.0f; }},
      {"sampling.top_p is 1.5", [](Request& r) { r.sampling.top_p = 1.5f; }},
      {"sampling.top_p is nan", [nan](Request& r) { r.sampling.top_p = nan; }},
      {"sampling.min_p is 1, expected in [0, 1)", [](Request& r) { r.sampling.min_p = 1.0f; }},
      {"sampling.min_p is -0.1", [](Request& r) { r.sampling.min_p = -0.1f; }},
      {"sampling.max_new_tokens is 0", [](Request& r) { r.sampling.max_new_tokens = 0; }},
      {"sampling.stop_token_ids[1] = 300 is not a token id",
       [](Request& r) { r.sampling.stop_token_ids = {256, 300}; }},
      {"sampling.stop_strings needs a tokenizer", [](Request& r) { r.sampling.stop_strings = {"\n"}; }},
      {"sampling.stop_strings[1] is empty", [](Request& r) { r.sampling.stop_strings = {"x", ""}; }, true},
      // 5 prompt tokens + 20 new = 25 > 24 slots (capped by max_model_len 32, still too long).
      {"needs 7 KV blocks but kv_memory_bytes holds 6 (sampling.max_new_tokens",
       [](Request& r) { r.sampling.max_new_tokens = 20; }},
  };
  std::vector<GroupResult> delivered;
  for (const Case& c : cases) {
    Request r = good_request();
    c.edit(r);
    Engine& e = c.tokenizer ? with_tokenizer : engine;
    expect_error([&] { e.validate(r); }, c.needle);
    expect_error([&] { e.submit(r, [&](GroupResult g) { delivered.push_back(std::move(g)); }); }, c.needle);
  }
  // Nothing was queued; the engines still serve.
  EXPECT_FALSE(engine.step());
  EXPECT_FALSE(with_tokenizer.step());
  EXPECT_TRUE(delivered.empty());
  EXPECT_EQ(engine.stats().waiting, 0);
  engine.validate(good_request());
  Request fits = good_request();
  fits.sampling.max_new_tokens = 19;  // 24 tokens: exactly the cache
  engine.validate(fits);
  const GroupResult g = engine.generate({fits})[0];
  EXPECT_EQ(g.samples.size(), 2u);
  EXPECT_EQ(g.samples[0].tokens.size(), 19u);
}

// generate() validates every request before submitting any.
TEST(EngineValidate, GenerateIsAllOrNothing) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 41);
  Engine engine(*model, test_engine_config(8, 64));
  Request bad = good_request();
  bad.id = 8;
  bad.sampling.top_p = 2.0f;
  expect_error([&] { engine.generate({good_request(), bad}); }, "request 8: sampling.top_p is 2");
  EXPECT_FALSE(engine.step());  // the good request was not queued either
  EXPECT_EQ(engine.generate({good_request()}).size(), 1u);
}

TEST(EngineValidate, BadConfigurationsAreRefused) {
  auto ops = make_cpu_ops();
  auto model = make_test_model(*ops, "llama", 42);
  auto with = [&](const std::function<void(EngineConfig&)>& edit) {
    EngineConfig cfg = test_engine_config(8, 64);
    edit(cfg);
    return [&model, cfg] { Engine e(*model, cfg); };
  };
  expect_error(with([](EngineConfig& c) { c.max_batch = 0; }), "engine: max_batch is 0");
  expect_error(with([](EngineConfig& c) { c.block_size = 0; }), "engine: block_size is 0");
  expect_error(with([](EngineConfig& c) { c.max_prefill_tokens = 0; }), "engine: max_prefill_tokens is 0");
  expect_error(with([](EngineConfig& c) { c.kv_memory_bytes = 100; }), "engine: kv_memory_bytes is 100");
  expect_error(with([](EngineConfig& c) { c.max_model_len = 5000; }), "engine: max_model_len is 5000");
  expect_error(with([](EngineConfig& c) { c.max_model_len = -1; }), "engine: max_model_len is -1");
  // The test model decodes at most 256 tokens / 64 sequences per call.
  expect_error(with([](EngineConfig& c) { c.max_prefill_tokens = 512; }), "engine_model_limits");
  expect_error(with([](EngineConfig& c) { c.max_batch = 65; }), "max_decode_seqs 64");
  Engine engine(*model, test_engine_config(8, 64));
  expect_error([&] { engine.request_weight_update(3, false, nullptr); }, "without an apply function");
  EXPECT_EQ(engine.version(), 0);
  EXPECT_FALSE(engine.step());
  // engine_model_limits sizes a model that the engine accepts.
  ModelLimits limits = rollout::engine_model_limits(test_engine_config(8, 64));
  EXPECT_EQ(limits.max_decode_tokens, 64);
  EXPECT_EQ(limits.max_decode_seqs, 8);
  EXPECT_FALSE(limits.training);
  Model exact(model->config(), *ops, limits);
  Engine fits(exact, test_engine_config(8, 64));
}

}  // namespace
}  // namespace grpo::test
