// Argument checks of the fused LM head (lm_head_logprob and its backward), shared by the
// backends so both reject the same calls with the same words. Each backend passes its
// device and the dtypes it accepts for hidden and w (the CPU: f32; CUDA: f32 or bf16).
#pragma once

#include <cstdint>
#include <initializer_list>

#include "core/tensor.h"

namespace grpo::checks {

struct LmHeadShape {
  int64_t T = 0, C = 0, V = 0;
  DType dtype = DType::f32;  // of hidden and w
};

// hidden [T, C] of one of `dtypes`, w [V, C] of hidden's dtype, targets i32 [T], all on `dev`;
// 1 <= C <= INT_MAX, 1 <= V <= INT32_MAX; inv_temperature finite and > 0. On the CPU every
// target is also checked to lie in [0, V); other devices check their targets on the device
// and report with lm_head_bad_target.
LmHeadShape lm_head_inputs(const char* op, Device dev, std::initializer_list<DType> dtypes, const Tensor& hidden,
                           const Tensor& w, const Tensor& targets, float inv_temperature);

// Forward outputs: logprob and lse f32 [T]; entropy f32 [T] or undefined.
void lm_head_outputs(const char* op, Device dev, const LmHeadShape& s, const Tensor& logprob, const Tensor& entropy,
                     const Tensor& lse);

// Backward arguments: dlogprob and lse f32 [T]; dentropy f32 [T] or undefined, and when given,
// entropy f32 [T]; dhidden [T, C] of hidden's dtype and dw [V, C] of w's dtype or f32 (f32
// gradients of bf16 weights), either undefined.
void lm_head_backward_args(const char* op, Device dev, const LmHeadShape& s, const Tensor& dhidden, const Tensor& dw,
                           const Tensor& dlogprob, const Tensor& dentropy, const Tensor& lse, const Tensor& entropy);

// Throws "<op>: targets[t] = value is outside the vocabulary [0, V) of w <w>".
[[noreturn]] void lm_head_bad_target(const char* op, int64_t t, int32_t value, const Tensor& w);

}  // namespace grpo::checks
