// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) { GRPO_THROW("rmsnorm: not implemented yet"); }
void CpuOps::rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) { GRPO_THROW("rmsnorm_backward: not implemented yet"); }
void CpuOps::swiglu(Tensor out, Tensor gate, Tensor up) { GRPO_THROW("swiglu: not implemented yet"); }
void CpuOps::swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) { GRPO_THROW("swiglu_backward: not implemented yet"); }
void CpuOps::softmax(Tensor out, Tensor x) { GRPO_THROW("softmax: not implemented yet"); }
void CpuOps::softmax_backward(Tensor dx, Tensor dout, Tensor out) { GRPO_THROW("softmax_backward: not implemented yet"); }
}
