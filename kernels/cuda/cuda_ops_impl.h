// The CUDA backend: every op of kernels/ops.h on one device and one stream. Included by the
// kernel files (*.cu) only; host code uses make_cuda_ops (cuda_ops.h).
//
// Dtypes. Floating "data" tensors (activations, weights, their gradients, the KV cache) may be
// f32 or bf16; all data tensors of one call share one dtype unless the op says otherwise.
// Arithmetic is always f32 (reductions that the CPU does in f64 are f32 or f64 here, and the
// tests state tolerances per dtype). Statistics stay f32 whatever the data dtype: rstd, lse,
// logprob, entropy, router scores and top-k weights, sum_squares. Indices are i32. Per-op
// exceptions:
//   * matmul / matmul_backward / grouped_matmul*: a and b share a dtype; out (and db, dbias)
//     may be f32 with bf16 inputs (f32 weight gradients from bf16 activations).
//   * rmsnorm: w may be f32 with bf16 x (norm weights stay f32).
//   * adamw: params, grads, m, v f32 (the master copy); params_bf16 the optional compute copy.
//   * sample: logits f32 or bf16; tokens i32, logprobs f32.
// Validation is the CPU backend's (same messages), with Device::cuda and the dtypes above.
// Checks that need the data itself (embedding ids, replayed expert ids, block-table entries)
// run on the device: the kernel raises a flag and the op throws after synchronising.
//
// Graphs. begin_capture() / end_capture() record the ops issued on the stream into a CUDA
// graph (stream capture, thread-local mode). While capturing, each error_flag() is a fresh slot
// of the graph's own flag array (zeroed at the start of every replay) and the check after the
// kernels is deferred: OpsGraph::replay() launches the graph, waits, reads the flags and runs
// the first raised check's report. synchronize(), allocator copies and growing the workspace
// throw while capturing (the stream must not wait, and captured kernels keep their pointers).
//
// Memory. allocator() is stream-ordered: host copies run on the Ops' stream and wait for it,
// so a copy_to_host sees every op issued before it. Scratch space comes from workspace(),
// one growing device buffer (valid until the next workspace() call of the same op).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "kernels/cuda/cuda_common.cuh"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/ops.h"

namespace grpo {

class CudaStreamAllocator final : public Allocator {
 public:
  explicit CudaStreamAllocator(cudaStream_t s) : stream_(s) {}
  Device device() const override { return Device::cuda; }
  void* allocate(size_t bytes) override;
  void deallocate(void* p, size_t bytes) noexcept override;
  void memset_zero(void* p, size_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, size_t bytes) override;
  void copy_from_host(void* dst, const void* host_src, size_t bytes) override;
  // Set by CudaOps while it captures a graph: copies would wait for the stream, so they throw.
  bool capturing = false;

 private:
  cudaStream_t stream_;
};

struct CudaCapture;

class CudaOps final : public Ops {
 public:
  // own_stream: destroy `stream` with the Ops.
  CudaOps(int device, cudaStream_t stream, bool own_stream);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  Device device() const override { return Device::cuda; }
  std::string name() const override;
  bool supports_storage(DType dt) const override { return dt == DType::f32 || dt == DType::bf16; }
  Allocator& allocator() override { return alloc_; }

  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  int device_index() const { return device_; }
  // The device's multiprocessor count (read once: no driver query per op, or while capturing).
  int sm_count() const { return sm_count_; }
  // Device scratch of at least `bytes` (256-byte aligned). Growing it waits for the stream.
  void* workspace(size_t bytes);
  uint64_t workspace_generation() const { return workspace_generation_; }
  size_t workspace_bytes() const { return workspace_bytes_; }
  // A zeroed device int that kernels set (to any nonzero code) when the data is invalid.
  // While capturing, a fresh slot of the graph's flags (too many checks in one graph throw).
  int* error_flag();
  // The check of the last error_flag(), after the kernels that may raise it: when it is set,
  // report(code) runs (it may read device memory) and throws the op's own message; should it
  // return, "<op>: <fallback> (code N)" is thrown. Outside a capture this synchronises here;
  // while capturing, it runs after each replay of the graph instead (report is kept until
  // then, so it must capture by value).
  void check_flag(const char* op, std::function<void(int code)> report, std::string fallback);
  // check_flag without a report: throws "<op>: <what> (code N)" when the flag is set.
  void throw_if_flagged(const char* op, const char* what);
  // Blocks until all work on the stream is done (also surfaces asynchronous kernel errors).
  // Throws while capturing.
  void synchronize(const char* op);

  // Graph capture (see Ops and the header comment).
  bool supports_graphs() const override { return true; }
  bool capturing() const override { return capture_ != nullptr; }
  void begin_capture() override;
  std::unique_ptr<OpsGraph> end_capture() override;
  void abort_capture() noexcept override;

  // grouped_matmul_backward's f32 expert weight gradients from bf16 inputs (cuda_ops.h).
  ExpertWeightGrad expert_weight_grad = ExpertWeightGrad::automatic;
  // The compute type cuBLAS's grouped GEMM accepted for them (-1: none, 0: not tried yet) and
  // the path the last one took (cuda_expert_weight_grad_path).
  int grouped_f32_compute = 0;
  const char* expert_weight_grad_path = "none yet";

  // cuda_elementwise.cu
  void add(Tensor out, Tensor a, Tensor b) override;
  void scale(Tensor x, float s) override;
  void zero(Tensor x) override;
  void copy(Tensor dst, Tensor src) override;
  void swiglu(Tensor out, Tensor gate, Tensor up) override;
  void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) override;
  void softmax(Tensor out, Tensor x) override;
  void softmax_backward(Tensor dx, Tensor dout, Tensor out) override;

  // cuda_norm.cu
  void rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) override;
  void add_rmsnorm(Tensor sum, Tensor out, Tensor rstd, Tensor x, Tensor residual, Tensor w, float eps) override;
  void rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) override;
  void rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) override;

  // cuda_optimizer.cu
  void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, const AdamWParams& p, Tensor params_bf16) override;
  void sum_squares(Tensor out, Tensor x) override;

  // cuda_matmul.cu
  void matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) override;
  void matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b, bool trans_a,
                       bool trans_b, bool accumulate_da, bool accumulate_db) override;
  void grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) override;
  void grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor expert_offsets) override;
  void embedding(Tensor out, Tensor ids, Tensor table) override;
  void embedding_backward(Tensor dtable, Tensor dout, Tensor ids) override;

  // cuda_attention.cu
  void attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, float scale) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                          Tensor lse, Tensor cu_seqlens, float scale) override;

  // cuda_paged.cu
  void kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) override;
  void attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q,
                       Tensor seq_lens_k, Tensor block_table, float scale) override;

  // cuda_moe.cu
  void moe_router(Tensor topk_weights, Tensor topk_ids, Tensor scores, Tensor logits, const RouterParams& p,
                  bool replay) override;
  void moe_router_backward(Tensor dlogits, Tensor dtopk_weights, Tensor scores, Tensor topk_ids,
                           const RouterParams& p) override;
  void moe_align(Tensor expert_offsets, Tensor src_token, Tensor dest_row, Tensor topk_ids,
                 int64_t num_experts) override;
  void moe_permute(Tensor xp, Tensor x, Tensor src_token) override;
  void moe_permute_backward(Tensor dx, Tensor dxp, Tensor src_token) override;
  void moe_unpermute(Tensor out, Tensor yp, Tensor dest_row, Tensor topk_weights) override;
  void moe_unpermute_backward(Tensor dyp, Tensor dtopk_weights, Tensor dout, Tensor yp, Tensor dest_row,
                              Tensor topk_weights) override;

  // cuda_lm_head.cu
  void lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w, Tensor targets,
                       float inv_temperature) override;
  void lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy, Tensor hidden,
                                Tensor w, Tensor targets, Tensor lse, Tensor entropy, float inv_temperature) override;

  // cuda_sampling.cu
  void sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) override;

 private:
  int device_ = 0;
  int sm_count_ = 1;
  cudaStream_t stream_ = nullptr;
  bool own_stream_ = false;
  cublasHandle_t cublas_ = nullptr;
  CudaStreamAllocator alloc_;
  void* workspace_ = nullptr;
  size_t workspace_bytes_ = 0;
  int* flag_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::unique_ptr<CudaCapture> capture_;  // set between begin_capture and end/abort_capture
  uint64_t workspace_generation_ = 0;       // counts reallocations of workspace_ (graphs record it)
};

namespace cuda {

// check_flag for the kernels that flag INT_MAX - t for the first bad entry t of the i32 tensor
// `ids`: the report reads ids[t] back and calls throw_bad(t, value), which throws the CPU's
// message. Everything is kept by value (it may run after a graph replay).
template <class F>
void check_bad_index(CudaOps& ops, const char* op, const Tensor& ids, const char* fallback, F throw_bad) {
  CudaOps* o = &ops;
  ops.check_flag(
      op,
      [o, ids, throw_bad](int code) {
        const int64_t t = int64_t(INT_MAX) - code;
        int32_t value = 0;
        o->allocator().copy_to_host(&value, static_cast<const int32_t*>(ids.data) + t, sizeof(value));
        throw_bad(t, value);
      },
      fallback);
}

// grouped_matmul reading the expert offsets on the device (no copy to the host, so it can be
// captured in a graph): validates the offsets with a device check (the CPU's messages) and
// computes each expert's rows with a kernel made for few rows per expert (decoding).
// CudaOps::grouped_matmul takes it for at most kDeviceGroupedMaxRows rows, and always while
// capturing; larger batches go to cuBLAS's grouped GEMM. kernels/cuda/cuda_grouped_rows.cu.
constexpr int64_t kDeviceGroupedMaxRows = 512;
void grouped_matmul_device(CudaOps& ops, const char* op, Tensor out, Tensor x, Tensor w, Tensor expert_offsets,
                           int64_t E, int64_t R, int64_t N, int64_t K);

}  // namespace cuda

}  // namespace grpo
