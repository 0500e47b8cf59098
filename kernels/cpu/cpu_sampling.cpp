// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) { GRPO_THROW("sample: not implemented yet"); }
}
