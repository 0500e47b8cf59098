// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w, Tensor targets, float inv_temperature) { GRPO_THROW("lm_head_logprob: not implemented yet"); }
void CpuOps::lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy, Tensor hidden, Tensor w, Tensor targets, Tensor lse, Tensor entropy, float inv_temperature) { GRPO_THROW("lm_head_logprob_backward: not implemented yet"); }
}
