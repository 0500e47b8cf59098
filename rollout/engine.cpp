// The engine's public side: configuration checks, request validation, submission from any
// thread, weight-update requests and stats. The scheduler itself is in engine_step.cpp.
#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "rollout/engine_impl.h"

namespace grpo::rollout {

namespace {

// Samples per request: far above any group size GRPO uses, low enough that a typo does not
// allocate millions of sequences.
constexpr int64_t kMaxSamples = 65536;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::stop:
      return "stop";
    case FinishReason::length:
      return "length";
    case FinishReason::abort:
      return "abort";
  }
  return "unknown";
}

ModelLimits engine_model_limits(const EngineConfig& cfg) {
  ModelLimits l;
  l.max_tokens = 1;  // no training or scoring batch: the training arena stays minimal
  l.max_seqs = 1;
  l.training = false;
  // A prefill call holds at most max_prefill_tokens tokens of at most max_batch sequences
  // (every prefilling sequence holds a batch slot); a decode call max_batch tokens.
  l.max_decode_tokens = std::max(cfg.max_batch, cfg.max_prefill_tokens);
  l.max_decode_seqs = cfg.max_batch;
  return l;
}

Engine::Impl::Impl(Model& m, const EngineConfig& c, const Tokenizer* t)
    : model(m), ops(m.ops()), cfg(c), tokenizer(t) {
  const ModelConfig& mc = m.config();
  GRPO_CHECK(c.max_batch >= 1 && c.max_batch <= (int64_t(1) << 20),
             "engine: max_batch is " << c.max_batch << ", expected 1 to 2^20");
  GRPO_CHECK(c.block_size >= 1 && c.block_size <= 4096,
             "engine: block_size is " << c.block_size << ", expected 1 to 4096");
  GRPO_CHECK(c.max_prefill_tokens >= 1 && c.max_prefill_tokens <= (int64_t(1) << 24),
             "engine: max_prefill_tokens is " << c.max_prefill_tokens << ", expected 1 to 2^24");
  GRPO_CHECK(c.max_model_len >= 0 && c.max_model_len <= mc.max_position_embeddings,
             "engine: max_model_len is " << c.max_model_len << ", expected 0 (the model's) to max_position_embeddings "
                                         << mc.max_position_embeddings);
  const ModelLimits need = engine_model_limits(c);
  const ModelLimits& have = m.limits();
  GRPO_CHECK(have.max_decode_tokens >= need.max_decode_tokens && have.max_decode_seqs >= need.max_decode_seqs,
             "engine: the model was built with ModelLimits max_decode_tokens "
                 << have.max_decode_tokens << " and max_decode_seqs " << have.max_decode_seqs
                 << ", the engine needs " << need.max_decode_tokens << " and " << need.max_decode_seqs
                 << " (engine_model_limits)");
  max_len = c.max_model_len > 0 ? c.max_model_len : mc.max_position_embeddings;
  vocab = mc.vocab_size;
  num_moe = mc.num_moe_layers();
  top_k = num_moe > 0 ? mc.num_experts_per_tok : 0;
  KvCacheConfig one;
  one.num_blocks = 1;
  one.block_size = c.block_size;
  one.dtype = m.dtype();  // K and V are stored like the model's activations
  const int64_t block_bytes = int64_t(KvCache::bytes_needed(mc, one));
  GRPO_CHECK(c.kv_memory_bytes >= block_bytes, "engine: kv_memory_bytes is " << c.kv_memory_bytes
                                                   << ", less than one KV block (" << block_bytes << " bytes of "
                                                   << c.block_size << " tokens)");
  KvCacheConfig kc;
  kc.block_size = c.block_size;
  kc.dtype = m.dtype();
  // KvCache's limits: 2^30 blocks, slot ids in i32.
  kc.num_blocks =
      std::min({c.kv_memory_bytes / block_bytes, int64_t(1) << 30, ((int64_t(1) << 31) - 1) / c.block_size});
  cache = std::make_unique<KvCache>(ops, mc, kc);
  loop_stats.kv_blocks_total = kc.num_blocks;
  stats = loop_stats;
}

Engine::Engine(Model& model, const EngineConfig& cfg, const Tokenizer* tokenizer)
    : impl_(std::make_unique<Impl>(model, cfg, tokenizer)) {}

Engine::~Engine() = default;

void Engine::validate(const Request& r) const {
  const Impl& m = *impl_;
  const SamplingOptions& s = r.sampling;
  const int64_t P = int64_t(r.prompt.size());
  GRPO_CHECK(P >= 1, "request " << r.id << ": prompt is empty");
  for (int64_t i = 0; i < P; ++i)
    GRPO_CHECK(r.prompt[size_t(i)] >= 0 && r.prompt[size_t(i)] < m.vocab,
               "request " << r.id << ": prompt[" << i << "] = " << r.prompt[size_t(i)]
                          << " is not a token id (vocabulary of " << m.vocab << ")");
  GRPO_CHECK(P < m.max_len, "request " << r.id << ": prompt has " << P << " tokens, more than the context of "
                                       << m.max_len << " (max_model_len) minus one generated token");
  GRPO_CHECK(s.n >= 1 && s.n <= kMaxSamples, "request " << r.id << ": sampling.n is " << s.n << ", expected 1 to "
                                                        << kMaxSamples);
  GRPO_CHECK(std::isfinite(s.temperature) && s.temperature >= 0.0f,
             "request " << r.id << ": sampling.temperature is " << s.temperature << ", expected finite and >= 0");
  GRPO_CHECK(s.top_k >= 0, "request " << r.id << ": sampling.top_k is " << s.top_k << ", expected >= 0 (0: off)");
  GRPO_CHECK(s.top_p > 0.0f && s.top_p <= 1.0f,
             "request " << r.id << ": sampling.top_p is " << s.top_p << ", expected in (0, 1]");
  GRPO_CHECK(s.min_p >= 0.0f && s.min_p < 1.0f,
             "request " << r.id << ": sampling.min_p is " << s.min_p << ", expected in [0, 1)");
  GRPO_CHECK(s.max_new_tokens >= 1,
             "request " << r.id << ": sampling.max_new_tokens is " << s.max_new_tokens << ", expected >= 1");
  for (size_t i = 0; i < s.stop_token_ids.size(); ++i)
    GRPO_CHECK(s.stop_token_ids[i] >= 0 && s.stop_token_ids[i] < m.vocab,
               "request " << r.id << ": sampling.stop_token_ids[" << i << "] = " << s.stop_token_ids[i]
                          << " is not a token id (vocabulary of " << m.vocab << ")");
  GRPO_CHECK(s.stop_strings.empty() || m.tokenizer,
             "request " << r.id << ": sampling.stop_strings needs a tokenizer and the engine has none");
  for (size_t i = 0; i < s.stop_strings.size(); ++i)
    GRPO_CHECK(!s.stop_strings[i].empty(), "request " << r.id << ": sampling.stop_strings[" << i << "] is empty");
  // Preemption lets one sample run alone, so a request is servable when one sample of full
  // length fits in the whole cache.
  const int64_t longest = std::min(P + s.max_new_tokens, m.max_len);
  const int64_t blocks = ceil_div(longest, m.cache->block_size());
  GRPO_CHECK(blocks <= m.cache->num_blocks(),
             "request " << r.id << ": one sample of " << P << " prompt + " << longest - P << " new tokens needs "
                        << blocks << " KV blocks but kv_memory_bytes holds " << m.cache->num_blocks()
                        << " (sampling.max_new_tokens too large for the KV memory)");
}

void Engine::submit(Request r, std::function<void(GroupResult)> done) {
  validate(r);
  auto g = std::make_unique<Group>();
  g->req = std::move(r);
  g->done = std::move(done);
  g->unfinished = g->req.sampling.n;
  for (int64_t i = 0; i < g->req.sampling.n; ++i) {
    auto s = std::make_unique<Seq>();
    s->group = g.get();
    s->sample = i;
    if (!g->req.sampling.stop_strings.empty()) s->text_stream.emplace(*impl_->tokenizer, /*skip_special=*/true);
    g->samples.push_back(std::move(s));
  }
  std::lock_guard<std::mutex> lock(impl_->mu);
  g->submitted = impl_->submissions++;
  impl_->incoming.push_back(std::move(g));
}

void Engine::cancel(uint64_t id) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->cancels.push_back({id, impl_->submissions});
}

bool Engine::step() { return impl_->step(); }

void Engine::run_until_idle() {
  while (impl_->step()) {
  }
}

std::vector<GroupResult> Engine::generate(std::vector<Request> requests) {
  for (const Request& r : requests) validate(r);  // all or nothing
  std::vector<GroupResult> out(requests.size());
  std::vector<char> got(requests.size(), 0);
  for (size_t i = 0; i < requests.size(); ++i)
    submit(std::move(requests[i]), [&out, &got, i](GroupResult r) {
      out[i] = std::move(r);
      got[i] = 1;
    });
  run_until_idle();
  GRPO_ASSERT(std::all_of(got.begin(), got.end(), [](char c) { return c != 0; }));
  return out;
}

void Engine::request_weight_update(int64_t version, bool abort_in_flight, std::function<void(Model&)> apply,
                                   std::function<void(const std::string& error)> applied) {
  GRPO_CHECK(apply, "engine: request_weight_update for version " << version << " without an apply function");
  WeightUpdate u;
  u.version = version;
  u.abort_in_flight = abort_in_flight;
  u.apply = std::move(apply);
  u.applied = std::move(applied);
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->updates.push_back(std::move(u));
}

int64_t Engine::version() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->version;
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->stats;
}

const EngineConfig& Engine::config() const { return impl_->cfg; }

Model& Engine::model() { return impl_->model; }

}  // namespace grpo::rollout
