// Argument checks of Ops::sample, shared by the CPU and CUDA backends (same messages): logits
// [B, V] of dtype `logits_dtype` on `dev`, tokens i32 [B], logprobs f32 [B], one
// SamplingParams per row with valid filter values.
#pragma once

#include <span>

#include "core/tensor.h"
#include "kernels/ops.h"

namespace grpo::checks {

void sample(const Tensor& tokens, const Tensor& logprobs, const Tensor& logits, std::span<const SamplingParams> params,
            DType logits_dtype, Device dev);

}  // namespace grpo::checks
