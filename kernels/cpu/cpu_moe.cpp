// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::moe_router(Tensor topk_weights, Tensor topk_ids, Tensor scores, Tensor logits, const RouterParams& p, bool replay) { GRPO_THROW("moe_router: not implemented yet"); }
void CpuOps::moe_router_backward(Tensor dlogits, Tensor dtopk_weights, Tensor scores, Tensor topk_ids, const RouterParams& p) { GRPO_THROW("moe_router_backward: not implemented yet"); }
void CpuOps::moe_align(Tensor expert_offsets, Tensor src_token, Tensor dest_row, Tensor topk_ids, int64_t num_experts) { GRPO_THROW("moe_align: not implemented yet"); }
void CpuOps::moe_permute(Tensor xp, Tensor x, Tensor src_token) { GRPO_THROW("moe_permute: not implemented yet"); }
void CpuOps::moe_permute_backward(Tensor dx, Tensor dxp, Tensor src_token) { GRPO_THROW("moe_permute_backward: not implemented yet"); }
void CpuOps::moe_unpermute(Tensor out, Tensor yp, Tensor dest_row, Tensor topk_weights) { GRPO_THROW("moe_unpermute: not implemented yet"); }
void CpuOps::moe_unpermute_backward(Tensor dyp, Tensor dtopk_weights, Tensor dout, Tensor yp, Tensor dest_row, Tensor topk_weights) { GRPO_THROW("moe_unpermute_backward: not implemented yet"); }
}
