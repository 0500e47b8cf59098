// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) { GRPO_THROW("matmul: not implemented yet"); }
void CpuOps::matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b, bool trans_a, bool trans_b, bool accumulate_da, bool accumulate_db) { GRPO_THROW("matmul_backward: not implemented yet"); }
void CpuOps::embedding(Tensor out, Tensor ids, Tensor table) { GRPO_THROW("embedding: not implemented yet"); }
void CpuOps::embedding_backward(Tensor dtable, Tensor dout, Tensor ids) { GRPO_THROW("embedding_backward: not implemented yet"); }
void CpuOps::grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) { GRPO_THROW("grouped_matmul: not implemented yet"); }
void CpuOps::grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor expert_offsets) { GRPO_THROW("grouped_matmul_backward: not implemented yet"); }
}
