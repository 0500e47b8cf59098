#include "service_test_util.h"

#include <unistd.h>

#include <filesystem>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "policy/model_config.h"
#include "tests/policy/model_test_util.h"

namespace grpo::rollout::test {

namespace fs = std::filesystem;

std::string tiny_model_dir(const std::string& name, uint64_t seed) {
  // Removed when the test program exits.
  static struct Written : std::map<std::pair<std::string, uint64_t>, std::string> {
    ~Written() {
      std::error_code ignored;
      for (const auto& [key, dir] : *this) fs::remove_all(dir, ignored);
    }
  } written;
  auto key = std::make_pair(name, seed);
  if (auto it = written.find(key); it != written.end()) return it->second;
  fs::path dir = fs::path(::testing::TempDir()) /
                 ("grpo_rollout_" + name + "_" + std::to_string(seed) + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  ModelConfig cfg = grpo::test::test_config("qwen3_moe");
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 1;
  limits.max_seqs = 1;
  limits.training = false;
  Model model(cfg, *ops, limits);
  grpo::test::randomize_weights(model, seed);
  model.save(dir.string());
  const fs::path tok = fs::path(GRPO_SOURCE_DIR) / "configs/tokenizers/byte_level";
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) fs::copy_file(tok / f, dir / f);
  written[key] = dir.string();
  return dir.string();
}

EngineConfig test_engine_config() {
  EngineConfig cfg;
  cfg.max_batch = 32;
  cfg.kv_memory_bytes = int64_t(32) << 20;
  return cfg;
}

std::unique_ptr<LocalEngine> load_engine(const std::string& dir, const EngineConfig& cfg) {
  auto local = std::make_unique<LocalEngine>();
  local->ops = make_cpu_ops();
  local->model = load_model(dir, *local->ops, engine_model_limits(cfg));
  local->tokenizer = std::make_unique<Tokenizer>(Tokenizer::from_dir(dir));
  local->engine = std::make_unique<Engine>(*local->model, cfg, local->tokenizer.get());
  return local;
}

Request engine_request(const PromptRequest& p, const Tokenizer& tok) {
  Request r;
  r.id = p.id;
  r.prompt = p.tokens.empty() ? tok.encode(p.text) : p.tokens;
  r.sampling = p.sampling;
  return r;
}

std::vector<GroupResult> reference_groups(LocalEngine& local, const std::vector<PromptRequest>& prompts) {
  std::vector<Request> requests;
  for (const PromptRequest& p : prompts) requests.push_back(engine_request(p, *local.tokenizer));
  return local.engine->generate(std::move(requests));
}

std::string completion_text(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<int32_t> known;
  for (int32_t id : ids)
    if (tok.is_valid(id)) known.push_back(id);
  return tok.decode(known, /*skip_special=*/true);
}

void expect_close_logprobs(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  // The CPU backend's row sums depend a little on how many rows a step holds (BLAS blocking), so
  // the same token can get a log-prob a few ulps apart in a different batch: allow 64 ulps.
  const double eps = std::numeric_limits<float>::epsilon();
  for (size_t k = 0; k < want.size(); ++k)
    ASSERT_NEAR(got[k], want[k], 64 * eps * std::max(1.0, std::abs(double(want[k])))) << "token " << k;
}

void expect_same_group(const GroupResult& want, const RemoteGroup& got, const Tokenizer& tok) {
  SCOPED_TRACE("group id " + std::to_string(want.id) + " from " + got.worker);
  EXPECT_EQ(got.result.id, want.id);
  ASSERT_EQ(got.result.samples.size(), want.samples.size());
  ASSERT_EQ(got.texts.size(), want.samples.size());
  for (size_t i = 0; i < want.samples.size(); ++i) {
    SCOPED_TRACE("sample " + std::to_string(i));
    const Sample& w = want.samples[i];
    const Sample& g = got.result.samples[i];
    EXPECT_EQ(g.tokens, w.tokens);
    expect_close_logprobs(g.logprobs, w.logprobs);
    EXPECT_EQ(g.finish, w.finish);
    EXPECT_EQ(g.version, w.version);
    EXPECT_EQ(g.routing, w.routing);
    EXPECT_EQ(got.texts[i], completion_text(tok, w.tokens));
  }
}

}  // namespace grpo::rollout::test
