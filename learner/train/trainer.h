// `grpo train`: the GRPO loop of DESIGN.md over rollout workers and a reward service.
//
//   TrainConfig c = parse_train_config(root);
//   Trainer trainer(c, {});
//   TrainSummary s = resume ? trainer.resume() : trainer.start();   // runs to the last step
//
// One step:
//   1. prompts_per_step prompts from the dataset (a Philox shuffle per epoch; the cursor is part
//      of the checkpoint), rendered with the prompt format and tokenized here;
//   2. generate: groups of group_size samples from the rollout backend (local children,
//      remote workers or the in-process engine; seed = mix(seed, step, round, prompt));
//   3. reward: every completion scored by the reward backend (retried with back-off; a
//      service that keeps failing stops the run with an error, never with zero rewards);
//   4. dynamic sampling (optional): groups whose rewards are all equal are dropped and more
//      prompts are drawn, up to max_rounds generation rounds; the batch is cut to
//      prompts_per_step groups;
//   5. learn: GrpoStep (learner/grpo_step.h) with the optimizer;
//   6. weight sync: the new weights go to every worker as version step + 1;
//   7. metrics.jsonl, TensorBoard scalars, samples.jsonl, the progress line; a checkpoint every
//      save_every steps and at the end.
//
// RUN_DIR: config.json (the effective config), metrics.jsonl, samples.jsonl, tb/ (TensorBoard
// event files), checkpoints/ (learner/checkpoint.h), logs/ (children's stderr), eval.jsonl
// (pass@k per eval), report.html (`grpo report`).
//
// metrics.jsonl: one object per step with "step" and: reward/mean, reward/std,
// reward/<component> (mean of each reward component), accuracy (reward >= correct_threshold),
// format_rate (the checker extracted an answer), response_length/mean, /max,
// /truncation_rate, loss, policy_loss, kl, entropy, clip_frac (/low, /high), approx_kl,
// grad_norm, lr, groups/total, groups/zero_variance, dynamic_sampling/rounds,
// dynamic_sampling/dropped_groups, tokens/generated, tokens/learned, time/generate_s,
// time/reward_s, time/learn_s, time/weight_sync_s, time/step_s, tokens_per_s/generate,
// tokens_per_s/learn, tokens_per_s/step, workers/retried_groups, workers/restarts, version,
// elapsed_s; eval steps add eval/pass@k (k = 1, 2, 4 ... n) and eval/mean_length. Step 0
// carries the eval of the starting model only.
//
// Faults: a local worker that dies is restarted between steps (its groups were already
// retried on the others by the pool) and gets the current weights before it serves; a remote
// worker that fails a weight update is dropped from the pool (it would serve stale weights).
// An error outside the learning phase saves a checkpoint of the last completed step (when it
// is newer than the last one saved) before it propagates. request_stop() (Ctrl-C) ends the
// run at the next phase boundary with an optional final checkpoint.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "learner/train/train_config.h"

namespace grpo::train {

struct TrainerOptions {
  bool quiet = false;            // no progress lines on stderr
  std::string executable;        // the `grpo` binary for local children ("" = this executable)
  bool save_checkpoints = true;  // false: no checkpoint at all (benchmarks)
};

struct TrainSummary {
  int64_t first_step = 0, last_step = 0;  // steps done by this call: (first_step, last_step]
  bool interrupted = false;
  double seconds = 0;
  double eval_before = -1, eval_after = -1;  // eval/pass@1; -1 when not measured
  double reward_first = 0, reward_last = 0;  // reward/mean over the first and the last (up to) 10 steps run
  std::string checkpoint;                    // the last checkpoint written ("" = none)
};

class Trainer {
 public:
  // Builds the policy (and the reference when beta > 0), the tokenizer, the datasets and the
  // backends (local children are started here). Makes the base model first when "model" is
  // absent and "base_sft" is set.
  Trainer(const TrainConfig& config, const TrainerOptions& options);
  ~Trainer();  // stops the children

  // A fresh run: refuses a run_dir that already has checkpoints.
  TrainSummary start();
  // Continues from the newest complete checkpoint in run_dir.
  TrainSummary resume();

  // From any thread or a signal-watching thread: stop at the next phase boundary.
  void request_stop();

  const TrainConfig& config() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

// Thrown when request_stop() ended the run (after the final checkpoint).
class TrainInterrupted : public Error {
 public:
  using Error::Error;
};

// Makes the base model of a config whose "model" directory does not exist, with `grpo sft` on
// config.base_sft (resuming that SFT run when it has checkpoints), then copies the newest
// checkpoint's model files to config.model. No-op when config.model exists.
void make_base_model(const TrainConfig& config, bool quiet);

}  // namespace grpo::train
