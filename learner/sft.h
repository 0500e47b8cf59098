// Supervised fine-tuning (`grpo sft CONFIG`, issue #7): next-token loss on the completion
// tokens of {prompt, completion} pairs, packed several to a batch without padding, with the
// learner's AdamW, schedule and checkpoints. How a base model is warmed up and how a teacher's
// reasoning traces are distilled into a small model.
//
// Config (strict keys; relative paths are relative to the working directory):
//   {"model": "DIR"                       an HF model directory (tokenizer files in it), or
//    "init": {"arch": "qwen3", "preset": "tiny", "seed": 0, "tokenizer": "DIR"},
//    "data": "train.jsonl" | {"name": "arithmetic", "count": 2000, ...}   (datasets.h spec;
//                                           completions are always generated),
//    "eval": {"data": <as data>, "every": 50},          held-out loss (optional)
//    "exclude": <as data>,      optional: drop training examples whose prompt appears here
//                               (keeps a later evaluation set unseen, e.g. `grpo train`'s eval.data)
//    "prompt": {"format": "raw", "template": "...", "system": "", "generation_prefix": ""},
//    "max_seq_len": 512,        longer examples are cut (the completion's end is lost)
//    "tokens_per_batch": 4096, "max_seqs_per_batch": 64,
//    "epochs": 1, "steps": 0,   steps > 0 wins over epochs (the data cycles)
//    "optimizer": {...},        optimizer.h (linear/cosine need total_steps)
//    "seed": 0, "run_dir": "runs/sft", "save_every": 0, "keep_last": 0, "device": "auto",
//    "dtype": "auto"}           model storage: auto (bf16 on CUDA, f32 on the CPU), f32 or bf16
//
// An example is  encode(format.render(prompt)) + encode(completion) + [eos]; position t
// predicts token t + 1, and only positions whose target is a completion token (or the eos)
// carry loss: loss = mean over those targets of -log p. A batch is the next examples of the
// epoch's order (a Philox shuffle of (seed, epoch)) while they fit tokens_per_batch; one
// batch is one optimizer step. The data cursor (epoch, index) and the seed are the trainer
// state, so a resume continues exactly.
//
// RUN_DIR: config.json (the effective config), metrics.jsonl (one object per step: step,
// epoch, loss, lr, grad_norm, tokens, loss_tokens, seqs and eval_loss on eval steps; no wall
// times, so a resumed run's file equals a straight run's), checkpoints/ (checkpoint.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "learner/optimizer.h"
#include "policy/prompt_format.h"

namespace grpo {

class ConfigNode;
class Model;
class Ops;
class Tokenizer;

struct SftData {
  std::string path;      // a JSONL file of {prompt, completion}, or
  std::string spec_json; // a built-in dataset spec (JSON object) when path is ""
};

struct SftConfig {
  std::string model_dir;                          // "" when init
  std::string init_arch, init_preset, init_tokenizer;
  uint64_t init_seed = 0;
  SftData data;
  SftData eval_data;                              // both "" when no eval
  SftData exclude;                                // training examples whose prompt is in here are dropped
  int64_t eval_every = 0;
  PromptFormatOptions prompt;
  int64_t max_seq_len = 512;
  int64_t tokens_per_batch = 4096;
  int64_t max_seqs_per_batch = 64;
  int64_t epochs = 1;
  int64_t steps = 0;
  OptimizerConfig optimizer;
  uint64_t seed = 0;
  std::string run_dir = "runs/sft";
  int64_t save_every = 0;
  int64_t keep_last = 0;
  std::string device = "auto";
  std::string dtype = "auto";                     // auto | f32 | bf16 (kernels/backend.h resolve_dtype)
};

// Reads and checks the whole config (finishes the node: unknown keys are errors).
SftConfig parse_sft_config(ConfigNode& root);
// The effective config as JSON that parse_sft_config reads back.
std::string sft_config_json(const SftConfig& c);

// One tokenized example: tokens = prompt ++ completion ++ eos, cut to max_seq_len.
struct SftExample {
  std::vector<int32_t> tokens;
  int64_t prompt_len = 0;  // tokens before the completion
};
SftExample make_sft_example(const Tokenizer& tok, const PromptFormat& format, const std::string& prompt,
                            const std::string& completion, int64_t max_seq_len);

// A packed batch on the host, with the loss weights.
struct SftBatch {
  std::vector<int32_t> tokens, targets, positions, cu_seqlens;
  std::vector<float> dlogprob;  // d(loss)/d(logprob[t]): -1/loss_tokens on completion targets, else 0
  int64_t loss_tokens = 0;
};
SftBatch pack_sft_batch(const std::vector<const SftExample*>& examples);

// Forward (and with_grad: backward, accumulating into grads()) of one batch; returns the mean
// negative log-likelihood of the completion targets (0 when there are none).
double sft_batch_loss(Model& model, const SftBatch& batch, bool with_grad);

struct SftStepMetrics {
  int64_t step = 0, epoch = 0;
  double loss = 0, lr = 0, grad_norm = 0;
  int64_t tokens = 0, loss_tokens = 0, seqs = 0;
  bool has_eval = false;
  double eval_loss = 0;
};

class SftTrainer {
 public:
  // Builds the model (loaded or initialised) and reads the data. Progress lines go to stderr
  // unless quiet.
  explicit SftTrainer(const SftConfig& config, bool quiet = false);
  ~SftTrainer();

  // Starts a fresh run: refuses a run_dir that already has checkpoints.
  void start();
  // Continues from the newest complete checkpoint in run_dir (metrics after it are dropped).
  void resume();
  // Trains until total_steps() (or stop_after more steps, when > 0), saving every save_every
  // steps and at the stop. Returns the last step's metrics.
  SftStepMetrics train(int64_t stop_after = 0);

  // Mean loss over the eval examples (every completion token counts once).
  double eval_loss();
  int64_t step() const { return step_; }
  int64_t total_steps() const { return total_steps_; }
  Model& model();
  const SftConfig& config() const { return config_; }

 private:
  struct Impl;
  SftConfig config_;
  bool quiet_;
  int64_t step_ = 0, total_steps_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace grpo
