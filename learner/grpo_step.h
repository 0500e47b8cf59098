// One in-process GRPO learning step over a batch of sampled groups (issue #7):
//
//   GrpoStep step(policy, optimizer, options, reference /* null when beta = 0 */);
//   GrpoStepMetrics m = step.run(completions);
//
// What run() does, in order:
//  1. Packs every completion as one sequence: inputs (prompt + completion)[0, P + C - 1),
//     targets the next token, so the loss positions P - 1 ... P + C - 2 predict the C
//     completion tokens. The completion's last token is never fed to the model (nothing is
//     predicted from it), so every input token has a row in the rollout's routing record and
//     no token routes freely. Completions with no tokens (aborted) enter the advantages (their
//     reward is part of their group's baseline) but are not packed.
//  2. Splits the completions, in order, into num_mini_batches mini-batches of near-equal
//     counts, and each mini-batch into micro-batches greedily by micro_batch_tokens (and the
//     model's max_tokens / max_seqs). The plan is the same for every pass.
//  3. Old log-probs: a no-grad forward of every micro-batch with the pre-update weights, so
//     rollout/learner numeric differences do not bias the ratio (the rollout's log-probs only
//     enter the truncated-IS weight, when tis_cap > 0).
//  4. Reference log-probs: a no-grad forward of the frozen reference model, only when beta > 0.
//  5. Advantages once over the whole batch (compute_advantages; with kl_placement = reward the
//     sequence KL sum of old vs reference log-probs is subtracted from the reward).
//  6. mu passes; per mini-batch: zero_grad, per micro-batch forward (with grad) +
//     grpo_objective (given the advantages and the mini-batch's AggregationTotals, so the
//     micro-batch gradients sum to the mini-batch's) + backward; then one optimizer step.
//
// Routing replay: when the completions carry routing records (rollout Sample::routing,
// [P + C - 1, num_moe_layers, K] row-major) and replay_routing is on, every forward of the step
// (old, reference, training) routes each token to its recorded experts: the replay tensor is
// the record transposed to [num_moe_layers, T, K] over the packed micro-batch. Either every
// packed completion carries a record or none does.
#pragma once

#include <cstdint>
#include <vector>

#include "learner/objective.h"

namespace grpo {

class Model;
class Optimizer;

struct GrpoCompletion {
  std::vector<int32_t> prompt;          // at least one token
  std::vector<int32_t> tokens;          // the completion (may be empty: then not trained on)
  std::vector<float> rollout_logprob;   // [tokens] sampling log-probs; may be empty unless tis_cap > 0
  double reward = 0;
  int64_t group = 0;                    // prompt id: the advantage baseline is per group
  bool truncated = false;               // hit the length limit (overlong_filter drops its loss)
  std::vector<int32_t> routing;         // empty or [P + C - 1, num_moe_layers, K]
};

struct GrpoStepOptions {
  ObjectiveOptions objective;
  int64_t mu = 1;                     // optimisation passes over the batch
  int64_t num_mini_batches = 1;       // optimizer steps per pass
  int64_t micro_batch_tokens = 4096;  // token budget of one forward/backward (capped by the model's)
  float temperature = 1.0f;           // log-probs of softmax(logits / temperature): the sampling one
  bool replay_routing = true;         // use the completions' routing records when present
  // Load-balancing loss coefficient (0: not computed). Each micro-batch's aux loss is a mean
  // over its own tokens; their gradients are scaled by 1 / (micro-batches of the mini-batch).
  double aux_loss_coef = 0.0;
  // Compute each token's entropy for GrpoStepMetrics::entropy even without an entropy bonus
  // (then the metric is the mean over the completion tokens, without a gradient).
  bool measure_entropy = true;
};

// Throws grpo::Error naming the first bad field.
void check_grpo_step_options(const GrpoStepOptions& options);

struct GrpoStepMetrics {
  // Means over the optimizer steps of the step (each a mini-batch's value); entropy without an
  // entropy bonus (measure_entropy): the mean over every completion token of the step's passes.
  double loss = 0, policy_loss = 0, kl = 0, entropy = 0, grad_norm = 0;
  double clip_frac_low = 0, clip_frac_high = 0, ratio_mean = 0, approx_kl = 0;  // token-weighted
  double lr = 0;                       // the last optimizer step's
  int64_t optimizer_steps = 0, skipped_steps = 0, clipped_steps = 0;
  int64_t sequences = 0;               // packed completions
  int64_t tokens = 0;                  // packed input tokens (one pass)
  int64_t loss_tokens = 0;             // counted completion tokens (one pass)
  int64_t micro_batches = 0;           // per pass
  AdvantageResult advantages;          // includes num_groups and zero_variance_groups
  double old_logprob_s = 0, reference_s = 0, forward_backward_s = 0, optimizer_s = 0;
};

class GrpoStep {
 public:
  // policy must be built with ModelLimits::training; reference (same vocabulary) is needed
  // only when objective.beta > 0 and is otherwise ignored. The objects must outlive this one.
  GrpoStep(Model& policy, Optimizer& optimizer, const GrpoStepOptions& options, Model* reference = nullptr);

  // Validates the whole batch first (nothing is updated on a bad input), then runs the step.
  GrpoStepMetrics run(const std::vector<GrpoCompletion>& batch);

  const GrpoStepOptions& options() const { return options_; }

 private:
  Model& policy_;
  Optimizer& optimizer_;
  GrpoStepOptions options_;
  Model* reference_;
};

}  // namespace grpo
