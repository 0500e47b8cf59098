// PENDING scaffolding: replaced wholesale by the implementation.
#include "core/error.h"
#include "kernels/cpu/cpu_ops.h"
namespace grpo {
void CpuOps::attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, float scale) { GRPO_THROW("attention: not implemented yet"); }
void CpuOps::attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, Tensor cu_seqlens, float scale) { GRPO_THROW("attention_backward: not implemented yet"); }
void CpuOps::kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) { GRPO_THROW("kv_cache_write: not implemented yet"); }
void CpuOps::attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q, Tensor seq_lens_k, Tensor block_table, float scale) { GRPO_THROW("attention_paged: not implemented yet"); }
}
