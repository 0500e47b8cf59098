// The CUDA backend's public entry point. Plain C++ (no CUDA headers), so host code that picks
// a backend at run time includes only this.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "kernels/ops.h"

namespace grpo {

// A CUDA Ops on device `device`, issuing all work on `stream` (a cudaStream_t; nullptr: a
// non-blocking stream the Ops creates and owns). The caller's stream must outlive the Ops.
// Throws grpo::Error with one line when no GPU is usable.
std::unique_ptr<Ops> make_cuda_ops(int device = 0, void* stream = nullptr);

// The scratch space of a CUDA Ops (bytes; it grows when an op needs more), and growing it
// ahead of time to at least `bytes`: growth moves it, which invalidates the graphs captured
// before (OpsGraph::valid), so reserving the most a run needs first keeps them. Growing throws
// while a graph is being captured. `ops` must come from make_cuda_ops.
size_t cuda_scratch_bytes(Ops& ops);
void cuda_reserve_scratch(Ops& ops, size_t bytes);

// How grouped_matmul_backward computes f32 expert weight gradients from bf16 inputs (the MoE
// training case), which cuBLAS's grouped GEMM cannot take as they are (bf16 -> f32 is not
// among its types):
//   per_expert: one cublasGemmEx per non-empty expert (bf16 in on the tensor cores, f32
//     accumulation and result);
//   grouped: the rows of a chunk of experts (at most about 64 MiB of them) are converted to f32
//     (exactly: every bf16 is an f32) and one grouped GEMM per chunk multiplies them with
//     CUBLAS_COMPUTE_32F_FAST_16BF, else CUBLAS_COMPUTE_32F_FAST_TF32 (cuBLAS 13.0 takes only
//     the latter for grouped f32), else one GEMM per expert;
//   automatic (the default): per_expert. Measured with `grpo bench model --device cuda` (H200,
//     bench/RESULTS.md): at a training step's size (1024 rows per expert) the grouped path runs
//     at 0.28x to 0.40x the per-expert GEMMs (TF32 at half the bf16 rate, plus the conversion)
//     and a whole bf16 MoE training step at 0.64x; at 128 rows per expert it is 0.96x to 1.23x
//     on a 2 ms case. Its dw also differs more from the f32 reference (relative L2 1e-5
//     against 2e-6).
// `ops` must come from make_cuda_ops.
enum class ExpertWeightGrad { automatic, grouped, per_expert };
void cuda_set_expert_weight_grad(Ops& ops, ExpertWeightGrad mode);
// The path the last such gradient took: "grouped (bf16 tensor cores)", "grouped (tf32)",
// "per expert", or "none yet".
std::string cuda_expert_weight_grad_path(Ops& ops);

}  // namespace grpo
