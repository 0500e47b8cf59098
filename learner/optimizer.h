// The learner's optimizer: AdamW over the model's flat parameter buffer with a learning-rate
// schedule (linear warm-up, then constant, linear or cosine decay) and global grad-norm
// clipping.
//
//   OptimizerConfig oc = parse_optimizer_config(root.child("optimizer"));
//   Optimizer opt(model, oc);
//   model.zero_grad();
//   for (micro-batch of the mini-batch) { model.forward(...); model.backward(...); }
//   OptimizerStepMetrics s = opt.step();   // clip, AdamW, step_count() += 1
//
// Gradient accumulation is the caller's: Model::backward accumulates into grads(), and the
// loss the caller differentiates is normalised over the whole mini-batch (GRPO's aggregations
// divide by the mini-batch's token or sequence count), so the accumulated grads are already the
// mini-batch gradient. A caller whose per-micro-batch loss is a mean passes
// grad_scale = 1 / num_micro_batches to step(). step() does not zero the grads.
//
// Memory: the moments m and v are two f32 buffers of ParamTable::size() floats from the
// model's Ops allocator (so on the model's device), laid out like params(); AdamW is one call
// per range: the decayed range and the norms-and-biases range (policy/params.h), the latter
// with weight decay 0 unless decay_norms_and_biases.
#pragma once

#include <cstdint>
#include <string>

#include "core/buffer.h"
#include "core/config.h"
#include "core/tensor.h"

namespace grpo {

class Model;

enum class LrDecay : uint8_t {
  constant,  // lr after warm-up
  linear,    // lr -> min_lr_ratio * lr linearly over (warmup_steps, total_steps]
  cosine,    // lr -> min_lr_ratio * lr along half a cosine over (warmup_steps, total_steps]
};
const char* lr_decay_name(LrDecay d);

struct LrSchedule {
  double lr = 1e-6;            // peak learning rate
  int64_t warmup_steps = 0;    // linear warm-up from lr / warmup_steps to lr
  LrDecay decay = LrDecay::constant;
  int64_t total_steps = 0;     // end of the decay (linear/cosine; > warmup_steps)
  double min_lr_ratio = 0.0;   // final lr = min_lr_ratio * lr (linear/cosine), in [0, 1]
};

// The learning rate of 1-based optimizer step `step` (the same count AdamW's bias correction
// uses): lr * step / warmup_steps for step <= warmup_steps, then
//   constant: lr
//   linear:   lr * (r + (1 - r) * (1 - p))
//   cosine:   lr * (r + (1 - r) * (1 + cos(pi * p)) / 2)
// with r = min_lr_ratio, p = (step - warmup_steps) / (total_steps - warmup_steps) clamped to
// [0, 1], so steps past total_steps stay at r * lr. Pure: depends on nothing else.
// NOTES: transformers' schedulers index steps from 0, so with warm-up its first update gets
// lr 0; here update s gets the value transformers computes for its step s (which it uses for
// update s + 1), so no update is wasted and the decay ends on update total_steps.
double lr_at(const LrSchedule& s, int64_t step);

struct OptimizerConfig {
  LrSchedule schedule;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;            // decoupled (AdamW), times the step's lr
  bool decay_norms_and_biases = false;  // also decay RMSNorm weights and biases
  double max_grad_norm = 1.0;           // global L2 clipping threshold; 0 disables clipping
};

// Reads an "optimizer" object; every key is optional:
//   {"lr": 1e-6, "schedule": "constant" | "linear" | "cosine", "warmup_steps": 0,
//    "total_steps": 0, "min_lr_ratio": 0.0, "betas": [0.9, 0.999], "eps": 1e-8,
//    "weight_decay": 0.0, "decay_norms_and_biases": false, "max_grad_norm": 1.0}
// Values out of range are a grpo::Error naming the key path (e.g. "optimizer.warmup_steps").
// Does not call node.finish() (the caller finishes the whole config).
OptimizerConfig parse_optimizer_config(ConfigNode& node);
// Checks the ranges parse_optimizer_config checks; `path` prefixes the key names in messages.
void validate_optimizer_config(const OptimizerConfig& c, const std::string& path = "optimizer");
// The config as the JSON object parse_optimizer_config reads (for the effective run config).
std::string optimizer_config_json(const OptimizerConfig& c);

struct OptimizerStepMetrics {
  float grad_norm = 0.0f;  // global L2 norm after grad_scale, before clipping
  float lr = 0.0f;         // learning rate of this step (0 when skipped)
  bool clipped = false;    // grads were scaled down to max_grad_norm
  bool skipped = false;    // non-finite grad norm: nothing updated, step_count unchanged
};

class Optimizer {
 public:
  // The model must have been built with ModelLimits::training (it needs grads()).
  Optimizer(Model& model, const OptimizerConfig& config);

  // One update from model.grads(): scale by grad_scale (when != 1), clip to max_grad_norm,
  // AdamW at lr_at(schedule, step_count() + 1), then step_count() += 1. When the grad norm is
  // inf or NaN the update is skipped (parameters and moments untouched) and reported.
  OptimizerStepMetrics step(float grad_scale = 1.0f);

  // Updates taken so far (0 before the first).
  int64_t step_count() const { return step_; }
  // The learning rate the next step() will use.
  double next_lr() const { return lr_at(config_.schedule, step_ + 1); }
  const OptimizerConfig& config() const { return config_; }
  Model& model() const { return model_; }

  // First and second moments, f32 [table().size()] on the model's device (checkpointing).
  Tensor m() const { return m_.view(DType::f32, {size_}); }
  Tensor v() const { return v_.view(DType::f32, {size_}); }
  // For checkpoint restore: the moments are written through m() / v().
  void set_step_count(int64_t step);

 private:
  Model& model_;
  OptimizerConfig config_;
  int64_t size_ = 0;
  Buffer m_, v_;
  int64_t step_ = 0;
};

}  // namespace grpo
