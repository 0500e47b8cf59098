// Evaluation of a policy on a dataset (issue #7, `grpo eval`): n samples per problem from the
// in-process rollout engine, each scored by its checker from the reward registry.
//
//   std::vector<EvalProblem> data = load_eval_data("test.jsonl", "");
//   EvalResult r = run_eval(engine, tok, format, data, registry, {.n = 8, .temperature = 0.6});
//
// Metrics (k in {1, 2, 4, ...} up to n):
//   pass@k  the unbiased estimator of Chen et al. 2021 (Codex), per problem with c of its n
//           samples correct: 1 - C(n - c, k) / C(n, k), averaged over problems. pass@1 is the
//           mean fraction of correct samples.
//   maj@k   majority vote over the first k samples of each problem: the answer is the
//           checker's `extracted` text (ScoreResult::extracted); samples with an empty one do
//           not vote; the answer with most votes wins, a tie goes to the answer seen first
//           (lowest sample index); the problem counts as solved when that first sample with
//           the winning answer is correct. No votes at all: not solved. Averaged over problems.
//   mean_length  completion tokens per sample (a stop token included), over all samples.
// A sample is correct when its reward >= EvalOptions::correct_threshold (1 by default: the
// built-in checkers give 1 or 0).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "policy/prompt_format.h"
#include "policy/tokenizer.h"
#include "rewards/registry.h"
#include "rollout/engine.h"

namespace grpo {

struct EvalProblem {
  std::string id;         // the record's "id" (as text), else its 0-based index
  std::string prompt;     // task text, rendered with the prompt format at eval time
  std::string reference;  // the checker's reference (an object reference kept as JSON text)
  std::string checker;    // "" when the record names none
};

// JSONL as written by write_dataset_jsonl, or any JSONL of objects with "prompt" and
// "reference" (string or any JSON value) and optionally "checker" (string) and "id" (number or
// string); other keys are ignored, blank lines skipped. Errors name FILE:LINE.
std::vector<EvalProblem> read_eval_jsonl(const std::string& path);
// The same with other field names (a training config's "prompt_key", ...).
struct EvalFieldNames {
  std::string prompt = "prompt", reference = "reference", checker = "checker";
};
std::vector<EvalProblem> read_eval_jsonl(const std::string& path, const EvalFieldNames& fields);

// `spec` is a JSONL path, or a built-in dataset: "arithmetic:LEVEL:COUNT" or
// "countdown:COUNT" (items 0 .. COUNT-1 of seed 0, learner/datasets.h), or a dataset spec
// object as JSON text ('{"name": "arithmetic", "seed": 1, "first_index": 100000, ...}').
std::vector<EvalProblem> load_eval_data(const std::string& spec);

struct EvalOptions {
  int64_t n = 1;                // samples per problem, >= 1
  float temperature = 1.0f;     // 0: greedy
  int64_t max_tokens = 256;     // new tokens per sample
  float top_p = 1.0f;
  uint64_t seed = 0;            // problem i samples under key mix(seed, i), so problems differ
  std::string checker;          // overrides every record's checker when not empty
  double correct_threshold = 1.0;
  bool keep_text = true;        // keep each completion's text in the result
};

struct EvalSample {
  int64_t tokens = 0;
  double reward = 0;
  bool correct = false;
  std::string extracted, reason, finish, text;
};

struct EvalProblemResult {
  std::string id, checker;
  int64_t num_correct = 0;
  std::vector<EvalSample> samples;  // n, in sample-index order
};

struct EvalResult {
  int64_t n = 0;
  std::vector<int64_t> ks;                   // 1, 2, 4, ... <= n
  std::vector<double> pass_at_k, maj_at_k;   // [ks.size()]
  double mean_length = 0;
  std::vector<EvalProblemResult> problems;
};

// splitmix64 of (seed, index): a different Philox key for every problem (or step) of one seed.
uint64_t mix_seed(uint64_t seed, uint64_t index);

// The text a checker scores: the ids decoded without special tokens (and without ids the
// tokenizer lacks).
std::string completion_text(const Tokenizer& tokenizer, const std::vector<int32_t>& ids);

// Unbiased pass@k for one problem: 1 - C(n - c, k) / C(n, k), as the product
// 1 - prod_{i = n-c+1}^{n} (1 - k / i) (no large binomials). Throws unless 1 <= k <= n and
// 0 <= c <= n.
double pass_at_k(int64_t n, int64_t c, int64_t k);

// The majority answer among `answers` (empty strings do not vote; ties: the answer whose first
// occurrence comes first). Returns its first index, or -1 when nobody voted.
int64_t majority_index(const std::vector<std::string>& answers);

// maj@k of one problem over its first k samples (see the top of this file).
bool majority_correct(const std::vector<EvalSample>& samples, int64_t k);

// 1, 2, 4, ... up to n.
std::vector<int64_t> eval_ks(int64_t n);

// Aggregates per-problem results (pass@k, maj@k, mean length) into `r` (r.problems set).
void summarize_eval(EvalResult& r, int64_t n);

// Checkers are created (empty options) and validated before any generation, so an unknown
// checker or a problem without one fails at once. Completions are decoded without special
// tokens (and without ids the tokenizer lacks) before scoring.
EvalResult run_eval(rollout::Engine& engine, const Tokenizer& tokenizer, const PromptFormat& format,
                    const std::vector<EvalProblem>& problems, const rewards::CheckerRegistry& registry,
                    const EvalOptions& options);

// {"n", "problems", "samples", "ks", "pass@k": {"1": ..}, "maj@k": {..}, "mean_length",
//  "per_problem": [{"id", "checker", "num_correct", "samples": [{"tokens", "reward", "correct",
//  "extracted", "reason", "finish", "text"}]}]} as text (two-space indent).
std::string eval_result_json(const EvalResult& r);
// The terminal table: one row per metric, one column per k.
std::string eval_result_table(const EvalResult& r);

}  // namespace grpo
