#include "learner/optimizer.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <numbers>
#include <span>
#include <vector>

#include "core/error.h"
#include "kernels/ops.h"
#include "policy/model.h"

namespace grpo {

const char* lr_decay_name(LrDecay d) {
  switch (d) {
    case LrDecay::constant: return "constant";
    case LrDecay::linear: return "linear";
    case LrDecay::cosine: return "cosine";
  }
  return "?";
}

double lr_at(const LrSchedule& s, int64_t step) {
  if (s.warmup_steps > 0 && step <= s.warmup_steps)
    return s.lr * double(std::max<int64_t>(step, 0)) / double(s.warmup_steps);
  if (s.decay == LrDecay::constant) return s.lr;
  const double span = double(s.total_steps - s.warmup_steps);
  const double p = std::clamp(double(step - s.warmup_steps) / span, 0.0, 1.0);
  const double r = s.min_lr_ratio;
  const double shape = s.decay == LrDecay::linear ? 1.0 - p : 0.5 * (1.0 + std::cos(std::numbers::pi * p));
  return s.lr * (r + (1.0 - r) * shape);
}

void validate_optimizer_config(const OptimizerConfig& c, const std::string& path) {
  const LrSchedule& s = c.schedule;
  auto key = [&](const char* k) {
    std::string q = "\"";
    q += path.empty() ? std::string(k) : path + "." + k;
    return q += '"';
  };
  auto finite_nonneg = [&](double x, const char* k) {
    GRPO_CHECK(std::isfinite(x) && x >= 0.0, key(k) << " is " << x << ", expected a finite number >= 0");
  };
  finite_nonneg(s.lr, "lr");
  GRPO_CHECK(s.warmup_steps >= 0, key("warmup_steps") << " is " << s.warmup_steps << ", expected >= 0");
  GRPO_CHECK(s.total_steps >= 0, key("total_steps") << " is " << s.total_steps << ", expected >= 0");
  if (s.decay != LrDecay::constant)
    GRPO_CHECK(s.total_steps > s.warmup_steps, key("total_steps") << " is " << s.total_steps << ", expected more than "
                                                                  << key("warmup_steps") << " (" << s.warmup_steps
                                                                  << ") for the " << lr_decay_name(s.decay)
                                                                  << " schedule");
  GRPO_CHECK(s.min_lr_ratio >= 0.0 && s.min_lr_ratio <= 1.0,
             key("min_lr_ratio") << " is " << s.min_lr_ratio << ", expected a number in [0, 1]");
  GRPO_CHECK(c.beta1 >= 0.0 && c.beta1 < 1.0 && c.beta2 >= 0.0 && c.beta2 < 1.0,
             key("betas") << " are [" << c.beta1 << ", " << c.beta2 << "], expected each in [0, 1)");
  GRPO_CHECK(std::isfinite(c.eps) && c.eps > 0.0, key("eps") << " is " << c.eps << ", expected a number > 0");
  finite_nonneg(c.weight_decay, "weight_decay");
  finite_nonneg(c.max_grad_norm, "max_grad_norm");
}

OptimizerConfig parse_optimizer_config(ConfigNode& node) {
  OptimizerConfig c;
  LrSchedule& s = c.schedule;
  s.lr = node.get<double>("lr", s.lr);
  const std::string decay = node.get_choice("schedule", "constant", {"constant", "linear", "cosine"});
  s.decay = decay == "cosine" ? LrDecay::cosine : (decay == "linear" ? LrDecay::linear : LrDecay::constant);
  s.warmup_steps = node.get<int64_t>("warmup_steps", s.warmup_steps);
  s.total_steps = node.get<int64_t>("total_steps", s.total_steps);
  s.min_lr_ratio = node.get<double>("min_lr_ratio", s.min_lr_ratio);
  const std::vector<double> betas = node.get<std::vector<double>>("betas", {c.beta1, c.beta2});
  GRPO_CHECK(betas.size() == 2,
             "\"" << node.key_path("betas") << "\" has " << betas.size() << " values, expected 2 [beta1, beta2]");
  c.beta1 = betas[0];
  c.beta2 = betas[1];
  c.eps = node.get<double>("eps", c.eps);
  c.weight_decay = node.get<double>("weight_decay", c.weight_decay);
  c.decay_norms_and_biases = node.get<bool>("decay_norms_and_biases", c.decay_norms_and_biases);
  c.max_grad_norm = node.get<double>("max_grad_norm", c.max_grad_norm);
  // key_path("") is the node's own path (plus a trailing dot to drop).
  std::string path = node.key_path("");
  if (!path.empty()) path.pop_back();
  validate_optimizer_config(c, path);
  return c;
}

std::string optimizer_config_json(const OptimizerConfig& c) {
  const LrSchedule& s = c.schedule;
  nlohmann::json j = {{"lr", s.lr},
                      {"schedule", lr_decay_name(s.decay)},
                      {"warmup_steps", s.warmup_steps},
                      {"total_steps", s.total_steps},
                      {"min_lr_ratio", s.min_lr_ratio},
                      {"betas", {c.beta1, c.beta2}},
                      {"eps", c.eps},
                      {"weight_decay", c.weight_decay},
                      {"decay_norms_and_biases", c.decay_norms_and_biases},
                      {"max_grad_norm", c.max_grad_norm}};
  return j.dump();
}

Optimizer::Optimizer(Model& model, const OptimizerConfig& config)
    : model_(model), config_(config), size_(model.table().size()) {
  validate_optimizer_config(config_);
  GRPO_CHECK(model.grads().defined(), "optimizer: the model has no gradients (build it with ModelLimits::training)");
  m_ = Buffer(model.ops().allocator(), size_t(size_) * sizeof(float));
  v_ = Buffer(model.ops().allocator(), size_t(size_) * sizeof(float));
  m_.zero();
  v_.zero();
}

void Optimizer::set_step_count(int64_t step) {
  GRPO_CHECK(step >= 0, "optimizer: step count " << step << " is negative");
  step_ = step;
}

OptimizerStepMetrics Optimizer::step(float grad_scale) {
  GRPO_CHECK(std::isfinite(grad_scale) && grad_scale > 0.0f,
             "optimizer step: grad_scale is " << grad_scale << ", expected a finite number > 0");
  Ops& ops = model_.ops();
  const Tensor grads = model_.grads();
  if (grad_scale != 1.0f) ops.scale(grads, grad_scale);
  const float max_norm = float(config_.max_grad_norm);
  OptimizerStepMetrics out;
  out.grad_norm = clip_grad_norm(ops, std::span<const Tensor>(&grads, 1), max_norm);
  if (!std::isfinite(out.grad_norm)) {
    // One bad micro-batch must not poison the weights and moments; the caller sees it.
    out.skipped = true;
    return out;
  }
  out.clipped = max_norm > 0.0f && out.grad_norm > max_norm;
  const double lr = lr_at(config_.schedule, step_ + 1);
  out.lr = float(lr);

  AdamWParams p;
  p.lr = float(lr);
  p.beta1 = float(config_.beta1);
  p.beta2 = float(config_.beta2);
  p.eps = float(config_.eps);
  p.step = step_ + 1;
  const ParamTable& table = model_.table();
  const Tensor params = model_.params(), m = this->m(), v = this->v();
  // A bf16 model's compute copy is rounded from the updated master in the same pass.
  const Tensor copy = model_.dtype() == DType::f32 ? Tensor{} : model_.compute_params();
  auto apply = [&](ParamRange r, float wd) {
    if (r.count == 0) return;
    auto sub = [&](const Tensor& t) { return t.defined() ? t.rows(r.offset, r.offset + r.count) : Tensor{}; };
    p.weight_decay = wd;
    ops.adamw(sub(params), sub(grads), sub(m), sub(v), p, sub(copy));
  };
  const float wd = float(config_.weight_decay);
  apply(table.decay_range(), wd);
  apply(table.no_decay_range(), config_.decay_norms_and_biases ? wd : 0.0f);
  ++step_;
  return out;
}

}  // namespace grpo
