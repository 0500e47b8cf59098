#include <cmath>

#include "core/dtype.h"

#include "kernels/cpu/cpu_ops.h"
#include "kernels/op_checks.h"

namespace grpo {

void CpuOps::adamw(Tensor params, Tensor grads, Tensor m, Tensor v, const AdamWParams& p, Tensor params_bf16) {
  checks::tensor("adamw", "params", params, DType::f32, Device::cpu);
  checks::same("adamw", "params", params, "grads", grads);
  checks::same("adamw", "params", params, "m", m);
  checks::same("adamw", "params", params, "v", v);
  if (params_bf16.defined()) {
    checks::shape("adamw", "params_bf16", params_bf16, DType::bf16, Device::cpu, {params.numel()});
    GRPO_CHECK(params.ndim == 1, "adamw: params is " << params.str() << ", expected a flat buffer with params_bf16");
  }
  GRPO_CHECK(p.step >= 1, "adamw: step is " << p.step << ", expected >= 1 (bias correction is 1-based)");
  GRPO_CHECK(p.beta1 >= 0.0f && p.beta1 < 1.0f && p.beta2 >= 0.0f && p.beta2 < 1.0f,
             "adamw: betas (" << p.beta1 << ", " << p.beta2 << ") must lie in [0, 1)");
  GRPO_CHECK(p.eps > 0.0f, "adamw: eps is " << p.eps << ", expected > 0");
  // Bias corrections in double: beta^step underflows gracefully and stays exact for small steps.
  const double bc1 = 1.0 - std::pow(double(p.beta1), double(p.step));
  const double bc2 = 1.0 - std::pow(double(p.beta2), double(p.step));
  const float step_size = float(double(p.lr) / bc1);
  const float inv_sqrt_bc2 = float(1.0 / std::sqrt(bc2));
  const float decay = 1.0f - p.lr * p.weight_decay;
  const float b1 = p.beta1, b2 = p.beta2, eps = p.eps;
  float* w = params.ptr<float>();
  const float* g = grads.ptr<float>();
  float* pm = m.ptr<float>();
  float* pv = v.ptr<float>();
  uint16_t* w16 = params_bf16.defined() ? params_bf16.ptr<uint16_t>() : nullptr;
  const int64_t n = params.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i];
    const float mi = b1 * pm[i] + (1.0f - b1) * gi;
    const float vi = b2 * pv[i] + (1.0f - b2) * gi * gi;
    pm[i] = mi;
    pv[i] = vi;
    // decoupled weight decay (Loshchilov & Hutter), applied to the pre-update weight
    w[i] = w[i] * decay - step_size * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    if (w16) w16[i] = f32_to_bf16(w[i]);
  }
}

void CpuOps::sum_squares(Tensor out, Tensor x) {
  checks::shape("sum_squares", "out", out, DType::f32, Device::cpu, {1});
  checks::tensor("sum_squares", "x", x, DType::f32, Device::cpu);
  const float* p = x.ptr<float>();
  const int64_t n = x.numel();
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n > (1 << 15))
  for (int64_t i = 0; i < n; ++i) total += double(p[i]) * double(p[i]);
  out.ptr<float>()[0] += float(total);
}

std::unique_ptr<Ops> make_cpu_ops() { return std::make_unique<CpuOps>(); }

}  // namespace grpo
