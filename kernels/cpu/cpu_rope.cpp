// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) { GRPO_THROW("rope: not implemented yet"); }
void CpuOps::rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) { GRPO_THROW("rope_backward: not implemented yet"); }
}
