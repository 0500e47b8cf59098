// Argument checks of the MoE routing ops (kernels/ops.h), shared by the CPU and CUDA backends
// so that both reject a bad call with the same message.
//
// The shape checks take the backend's device and the dtype of the op's data tensors (x, xp,
// yp, out and their gradients: f32 on the CPU, f32 or bf16 on CUDA); router logits, scores
// and weights are always f32, indices i32.
//
// The index checks (expert ids, src_token, dest_row) read host memory. The CPU backend runs
// them on its tensors before writing anything; the CUDA backend checks on the device and,
// once a kernel has flagged a bad value, runs them on a host copy so that the error names the
// offending value exactly as the CPU does.
#pragma once

#include <cstdint>

#include "core/tensor.h"
#include "kernels/ops.h"

namespace grpo::checks {

// moe_router: returns E. Checks logits, scores [T, E], topk_ids and topk_weights [T, top_k],
// top_k in [1, E], a finite scaling and selection_bias [E] when given.
int64_t moe_router(const Tensor& topk_weights, const Tensor& topk_ids, const Tensor& scores, const Tensor& logits,
                   const RouterParams& p, Device dev);
// moe_router_backward: returns E.
int64_t moe_router_backward(const Tensor& dlogits, const Tensor& dtopk_weights, const Tensor& scores,
                            const Tensor& topk_ids, const RouterParams& p, Device dev);
// moe_align: num_experts, K <= E, T * K within i32, output shapes.
void moe_align(const Tensor& expert_offsets, const Tensor& src_token, const Tensor& dest_row, const Tensor& topk_ids,
               int64_t num_experts, Device dev);
void moe_permute(const Tensor& xp, const Tensor& x, const Tensor& src_token, DType data, Device dev);
void moe_permute_backward(const Tensor& dx, const Tensor& dxp, const Tensor& src_token, DType data, Device dev);
void moe_unpermute(const Tensor& out, const Tensor& yp, const Tensor& dest_row, const Tensor& topk_weights, DType data,
                   Device dev);
void moe_unpermute_backward(const Tensor& dyp, const Tensor& dtopk_weights, const Tensor& dout, const Tensor& yp,
                            const Tensor& dest_row, const Tensor& topk_weights, DType data, Device dev);

// Index checks on host values `host` of the tensor `t` (named in the messages).
// Every id of ids [T, K] lies in [0, E); with `unique`, no row names an expert twice.
void moe_ids(const char* op, const Tensor& ids, const int32_t* host, int64_t E, bool unique);
// dest_row [R] is a permutation of [0, R).
void moe_dest_row(const char* op, const Tensor& dest_row, const int32_t* host);
// src_token [R] holds tokens in [0, T).
void moe_src_token(const char* op, const Tensor& src_token, const int32_t* host, int64_t T);

}  // namespace grpo::checks
