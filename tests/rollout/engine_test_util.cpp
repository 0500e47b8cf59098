#include "tests/rollout/engine_test_util.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "policy/kv_cache.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {

std::unique_ptr<Model> make_test_model(Ops& ops, const std::string& arch, uint64_t seed, int64_t max_tokens) {
  ModelLimits limits;
  limits.training = false;
  limits.max_tokens = std::max<int64_t>(1, max_tokens);
  limits.max_seqs = 4;
  limits.max_decode_tokens = 256;
  limits.max_decode_seqs = 64;
  auto model = std::make_unique<Model>(test_config(arch), ops, limits);
  randomize_weights(*model, seed);
  return model;
}

EngineConfig test_engine_config(int64_t max_batch, int64_t max_prefill_tokens, bool prefix_sharing) {
  EngineConfig cfg;
  cfg.max_batch = max_batch;
  cfg.max_prefill_tokens = max_prefill_tokens;
  cfg.prefix_sharing = prefix_sharing;
  cfg.block_size = 4;
  cfg.kv_memory_bytes = int64_t(16) << 20;
  return cfg;
}

const Tokenizer& byte_tokenizer() {
  static const Tokenizer tok = Tokenizer::from_dir(std::string(GRPO_SOURCE_DIR) + "/configs/tokenizers/byte_level");
  return tok;
}

Sample reference_sample(Model& model, const Request& r, int64_t sample, int64_t max_len, const Tokenizer* tokenizer,
                        bool greedy_argmax) {
  Ops& ops = model.ops();
  const ModelConfig& cfg = model.config();
  const int64_t V = cfg.vocab_size, P = int64_t(r.prompt.size());
  const SamplingOptions& o = r.sampling;
  KvCache cache(ops, cfg, KvCacheConfig{(max_len + 15) / 16 + 1, 16});
  const std::vector<int64_t> id = {cache.add_sequence()};
  HostI prompt({P});
  std::copy(r.prompt.begin(), r.prompt.end(), prompt.v.begin());
  HostF logits({1, V});
  const std::vector<int64_t> n = {P};
  model.prefill(cache, id, prompt, n, logits);
  Sample out;
  for (;;) {
    int32_t token;
    float logprob;
    if (greedy_argmax) {
      token = int32_t(std::max_element(logits.v.begin(), logits.v.end()) - logits.v.begin());  // first maximum
      double m = -INFINITY, s = 0;
      for (float x : logits.v) m = std::max(m, double(x));
      for (float x : logits.v) s += std::exp(double(x) - m);
      logprob = float(double(logits[size_t(token)]) - m - std::log(s));
    } else {
      SamplingParams p;
      p.temperature = o.temperature;
      p.top_k = o.top_k;
      p.top_p = o.top_p;
      p.min_p = o.min_p;
      p.seed = o.seed;
      p.stream = uint64_t(sample);
      p.offset = uint64_t(out.tokens.size());
      HostI t({1});
      HostF lp({1});
      ops.sample(t, lp, logits, {&p, 1});
      token = t[0];
      logprob = lp[0];
    }
    out.tokens.push_back(token);
    out.logprobs.push_back(logprob);
    if (std::find(o.stop_token_ids.begin(), o.stop_token_ids.end(), token) != o.stop_token_ids.end()) {
      out.finish = FinishReason::stop;
      break;
    }
    if (!o.stop_strings.empty()) {
      std::vector<TokenId> valid;
      for (int32_t t : out.tokens)
        if (tokenizer->is_valid(t)) valid.push_back(t);
      const std::string text = tokenizer->decode(valid, /*skip_special=*/true);
      if (std::any_of(o.stop_strings.begin(), o.stop_strings.end(),
                      [&](const std::string& s) { return text.find(s) != std::string::npos; })) {
        out.finish = FinishReason::stop;
        break;
      }
    }
    if (int64_t(out.tokens.size()) >= o.max_new_tokens || P + int64_t(out.tokens.size()) >= max_len) {
      out.finish = FinishReason::length;
      break;
    }
    HostI t({1});
    t[0] = token;
    model.decode_step(cache, id, t, logits);
  }
  return out;
}

GroupResult reference_group(Model& model, const Request& r, int64_t max_len, const Tokenizer* tokenizer) {
  GroupResult g;
  g.id = r.id;
  for (int64_t i = 0; i < r.sampling.n; ++i) g.samples.push_back(reference_sample(model, r, i, max_len, tokenizer));
  return g;
}

void expect_same(const Sample& got, const Sample& want, double tol, const std::string& what, Diff* diff) {
  EXPECT_EQ(got.tokens, want.tokens) << what;
  EXPECT_EQ(rollout::finish_reason_name(got.finish), std::string(rollout::finish_reason_name(want.finish))) << what;
  EXPECT_EQ(got.version, want.version) << what;
  ASSERT_EQ(got.logprobs.size(), got.tokens.size()) << what;
  // Up to the first differing token (included): past it the contexts differ.
  size_t n = std::min(got.tokens.size(), want.tokens.size());
  for (size_t i = 0; i < n; ++i)
    if (got.tokens[i] != want.tokens[i]) n = i + 1;
  for (size_t i = 0; i < n; ++i) {
    const double d = std::fabs(double(got.logprobs[i]) - double(want.logprobs[i]));
    if (diff) {
      diff->max_logprob = std::max(diff->max_logprob, d);
      ++diff->tokens;
    }
    if (tol == 0) {
      EXPECT_EQ(std::memcmp(&got.logprobs[i], &want.logprobs[i], sizeof(float)), 0)
          << what << " token " << i << ": logprob " << got.logprobs[i] << " vs " << want.logprobs[i];
    } else {
      EXPECT_NEAR(got.logprobs[i], want.logprobs[i], tol) << what << " token " << i;
    }
  }
}

void expect_same(const GroupResult& got, const GroupResult& want, double tol, const std::string& what, Diff* diff) {
  EXPECT_EQ(got.id, want.id) << what;
  ASSERT_EQ(got.samples.size(), want.samples.size()) << what;
  for (size_t i = 0; i < got.samples.size(); ++i)
    expect_same(got.samples[i], want.samples[i], tol, what + " request " + std::to_string(got.id) + " sample " +
                                                          std::to_string(i), diff);
}

std::vector<Request> mixed_requests(int64_t vocab, int64_t max_new_tokens) {
  std::mt19937_64 rng(2024);
  auto prompt = [&](int64_t len) {
    std::vector<int32_t> p(static_cast<size_t>(len));
    for (auto& t : p) t = int32_t(rng() % uint64_t(vocab));
    return p;
  };
  std::vector<Request> rs(5);
  rs[0].id = 100;
  rs[0].prompt = prompt(5);
  rs[0].sampling.seed = 11;
  rs[1].id = 101;
  rs[1].prompt = prompt(17);
  rs[1].sampling.n = 3;
  rs[1].sampling.temperature = 0.8f;
  rs[1].sampling.top_k = 40;
  rs[1].sampling.seed = 12;
  rs[2].id = 102;
  rs[2].prompt = prompt(9);
  rs[2].sampling.n = 2;
  rs[2].sampling.temperature = 0.0f;  // greedy: both samples equal
  rs[2].sampling.seed = 13;
  rs[3].id = 103;
  rs[3].prompt = prompt(30);
  rs[3].sampling.n = 4;
  rs[3].sampling.top_p = 0.9f;
  rs[3].sampling.min_p = 0.02f;
  rs[3].sampling.seed = 14;
  rs[4].id = 104;
  rs[4].prompt = prompt(1);
  rs[4].sampling.n = 2;
  rs[4].sampling.temperature = 1.2f;
  rs[4].sampling.top_k = 5;
  rs[4].sampling.seed = 15;
  for (auto& r : rs) r.sampling.max_new_tokens = max_new_tokens;
  return rs;
}

void perturb_weights(Model& model, uint64_t seed) { randomize_weights(model, seed); }

}  // namespace grpo::test
