// Shared helpers of the engine tests: tiny models, an independent one-at-a-time reference
// generator (plain Model::prefill / decode_step + Ops::sample, no engine code), and sample
// comparisons.
//
// NOTES: batch invariance on the CPU. OpenBLAS's sgemm (0.3.21 here) does not give a row the
// same bits whatever the other rows: a row computed by its one-row tail kernel (M = 1, the
// last row of an odd M, or of an odd per-thread share of M) differs in the last bits from one
// computed in a wider micro-kernel. So only a run whose every call has the reference's shape
// (max_batch 1, whole prompts) is bit-exact, and that is tested exactly; runs that batch are
// held to identical tokens and finish reasons and to log-probs within kBatchTol (measured:
// at most 3.4e-6 over these tests), and print the largest difference they see.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "policy/model.h"
#include "policy/tokenizer.h"
#include "rollout/engine.h"

namespace grpo::test {

using rollout::Engine;
using rollout::EngineConfig;
using rollout::FinishReason;
using rollout::GroupResult;
using rollout::Request;
using rollout::Sample;
using rollout::SamplingOptions;

inline constexpr double kBatchTol = 1e-5;

// A tiny model of `arch` (tests/policy test_config) with random weights; its decode limits
// cover every engine config of these tests (max_batch <= 64, max_prefill_tokens <= 256) and
// the reference's whole-prompt prefill; max_tokens sizes Model::forward (routing checks).
std::unique_ptr<Model> make_test_model(Ops& ops, const std::string& arch, uint64_t seed, int64_t max_tokens = 1);

// An engine config for the tiny models: blocks of 4 tokens, 16 MiB of KV memory.
EngineConfig test_engine_config(int64_t max_batch, int64_t max_prefill_tokens, bool prefix_sharing = true);

// The byte-level test tokenizer (configs/tokenizers/byte_level): ids 0-255 are the bytes.
const Tokenizer& byte_tokenizer();

// Sample `sample` of request r generated alone: the prompt prefilled in one call, then one
// decode_step per token, each drawn by Ops::sample with Philox (seed, stream = sample, offset
// = token index). Stops as the engine documents: stop token ids, stop strings on the decoded
// completion (decoded whole after every token), max_new_tokens, the context max_len.
// greedy_argmax: draw the argmax on the host instead (logprob: log-softmax in f64).
Sample reference_sample(Model& model, const Request& r, int64_t sample, int64_t max_len,
                        const Tokenizer* tokenizer = nullptr, bool greedy_argmax = false);
GroupResult reference_group(Model& model, const Request& r, int64_t max_len, const Tokenizer* tokenizer = nullptr);

// Largest |logprob difference| seen by expect_same (printed by the tests).
struct Diff {
  double max_logprob = 0;
  int64_t tokens = 0;
};

// Tokens, finish reasons and version equal; log-probs within `tol` (0: bit for bit).
void expect_same(const Sample& got, const Sample& want, double tol, const std::string& what, Diff* diff = nullptr);
void expect_same(const GroupResult& got, const GroupResult& want, double tol, const std::string& what,
                 Diff* diff = nullptr);

// A mix of requests: prompt lengths 1 to 30, n 1 to 4, greedy and filtered sampling.
std::vector<Request> mixed_requests(int64_t vocab, int64_t max_new_tokens = 12);

// Writes new random weights into the model (a "weight update").
void perturb_weights(Model& model, uint64_t seed);

}  // namespace grpo::test
