// Shared pieces of the rollout service tests: a tiny MoE model folder written with the policy
// API, an in-process engine over it (the reference the service must agree with), and
// comparisons of a group received over gRPC with the engine's.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "policy/model.h"
#include "policy/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/service/client.h"

namespace grpo::rollout::test {

// A fresh folder holding a tiny qwen3_moe model (one dense and one MoE layer, 8 experts,
// top-2, vocabulary 272, context 1024) with random weights drawn from `seed`, and the
// byte-level tokenizer. Written once per (name, seed) and process.
std::string tiny_model_dir(const std::string& name, uint64_t seed);

// The engine config the tests serve with.
EngineConfig test_engine_config();

// A model, tokenizer and engine of their own, loaded from a folder.
struct LocalEngine {
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Engine> engine;
};
std::unique_ptr<LocalEngine> load_engine(const std::string& dir, const EngineConfig& cfg = test_engine_config());

// The engine request of a prompt request (text tokenized with `tok`).
Request engine_request(const PromptRequest& p, const Tokenizer& tok);
// Generates the prompts in process, one group per prompt, in prompt order.
std::vector<GroupResult> reference_groups(LocalEngine& local, const std::vector<PromptRequest>& prompts);

// Log-probs of the same tokens computed in batches of other sizes: equal to a few ulps.
void expect_close_logprobs(const std::vector<float>& got, const std::vector<float>& want);

// Same id, and every sample the same: tokens, finish, version and routing exactly, logprobs to
// a few ulps; texts are the tokenizer's decoding of the tokens.
void expect_same_group(const GroupResult& want, const RemoteGroup& got, const Tokenizer& tok);

// The text the service returns for a completion (special tokens and unknown ids left out).
std::string completion_text(const Tokenizer& tok, const std::vector<int32_t>& ids);

}  // namespace grpo::rollout::test
