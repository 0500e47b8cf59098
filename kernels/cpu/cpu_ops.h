// The CPU backend: the reference implementation every other backend is tested against, and
// the engine of toy-scale runs. f32 activations, i32 indices; matmuls through OpenBLAS
// sgemm; other loops parallelised over rows with OpenMP. One .cpp per op family.
//
// Graphs (Ops::begin_capture): while the capturing thread records, each op keeps the call (its
// arguments by value) instead of running it; a replay runs the kept calls in order, checks
// included. Every op opens with GRPO_CPU_RECORD(its own call).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "kernels/ops.h"

// In a CpuOps method: while this thread captures, keep the call and return.
#define GRPO_CPU_RECORD(call)                    \
  do {                                           \
    if (recording_here()) {                      \
      record([=, this] { this->call; });         \
      return;                                    \
    }                                            \
  } while (0)
// sample's params are a span: the recorded call keeps a copy.
#define GRPO_CPU_RECORD_SAMPLE(tokens, logprobs, logits, params)                            \
  do {                                                                                    \
    if (recording_here()) {                                                               \
      std::vector<SamplingParams> kept(params.begin(), params.end());                     \
      record([=, this] { this->sample(tokens, logprobs, logits, kept); });                \
      return;                                                                             \
    }                                                                                     \
  } while (0)

namespace grpo {

class CpuOps final : public Ops {
 public:
  Device device() const override { return Device::cpu; }
  std::string name() const override { return "cpu"; }
  Allocator& allocator() override { return cpu_allocator(); }

  bool supports_graphs() const override { return true; }
  bool capturing() const override { return capturing_.load(); }
  void begin_capture() override;
  std::unique_ptr<OpsGraph> end_capture() override;
  void abort_capture() noexcept override;

  // cpu_elementwise.cpp
  void add(Tensor out, Tensor a, Tensor b) override;
  void scale(Tensor x, float s) override;
  void zero(Tensor x) override;
  void copy(Tensor dst, Tensor src) override;

  // cpu_matmul.cpp
  void matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b, bool accumulate) override;
  void matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b, bool trans_a,
                       bool trans_b, bool accumulate_da, bool accumulate_db) override;
  void embedding(Tensor out, Tensor ids, Tensor table) override;
  void embedding_backward(Tensor dtable, Tensor dout, Tensor ids) override;
  void grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) override;
  void grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor expert_offsets) override;

  // cpu_norm.cpp
  void rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) override;
  void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) override;
  void swiglu(Tensor out, Tensor gate, Tensor up) override;
  void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) override;
  void softmax(Tensor out, Tensor x) override;
  void softmax_backward(Tensor dx, Tensor dout, Tensor out) override;

  // cpu_rope.cpp
  void rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) override;
  void rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) override;

  // cpu_attention.cpp
  void attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens, float scale) override;
  void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k, Tensor v, Tensor out,
                          Tensor lse, Tensor cu_seqlens, float scale) override;
  void kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) override;
  void attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q,
                       Tensor seq_lens_k, Tensor block_table, float scale) override;

  // cpu_moe.cpp
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

  // cpu_lm_head.cpp
  void lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w, Tensor targets,
                       float inv_temperature) override;
  void lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy, Tensor hidden,
                                Tensor w, Tensor targets, Tensor lse, Tensor entropy, float inv_temperature) override;

  // cpu_sampling.cpp
  void sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) override;

  // cpu_optimizer.cpp
  void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, const AdamWParams& p, Tensor params_bf16) override;
  void sum_squares(Tensor out, Tensor x) override;

 private:
  bool recording_here() const {
    return capturing_.load(std::memory_order_relaxed) && std::this_thread::get_id() == capture_thread_;
  }
  void record(std::function<void()> call) { recorded_.push_back(std::move(call)); }

  std::atomic<bool> capturing_{false};
  std::thread::id capture_thread_;
  std::vector<std::function<void()>> recorded_;
};

}  // namespace grpo
