// The Ops interface: every compute operation the model, the rollout engine and the learner
// use, one virtual call per op, implemented by the CPU backend (kernels/cpu, the reference,
// always built) and the CUDA backend (kernels/cuda). Model code never branches on device.
//
// Conventions (every op):
//   * Argument order: outputs, inputs, weights, then sizes/parameters.
//   * Tensors are contiguous row-major views (core/tensor.h). Optional tensors are passed as
//     an undefined Tensor{}.
//   * Gradients: parameter gradients ACCUMULATE (+=); activation gradients are ASSIGNED (=).
//     Each backward says which of its outputs is which.
//   * Every op first validates dtype, device and shapes and throws grpo::Error naming the
//     op and the offending shapes (e.g. "matmul: a f32[3, 4] and b f32[5, 6]: inner
//     dimensions 4 and 5 differ").
//   * The CPU backend computes in f32 (activations f32, indices i32). Backends that support
//     bf16 storage say so in their own header.
//   * Outputs must not overlap inputs unless the op says it may alias (overlap is rejected).
//   * GEMM dimensions must fit in 32-bit ints (BLAS/cuBLAS interfaces).
//   * Token-level ops take T = number of tokens of a packed batch; sequences are delimited by
//     cu_seqlens [S + 1] (i32, cu_seqlens[0] = 0, non-decreasing, cu_seqlens[S] = T).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/tensor.h"

namespace grpo {

// ---------------------------------------------------------------------------------------
// Parameter structs

enum class RopeLayout : uint8_t {
  half,         // HF rotate_half / GPT-NeoX: pairs are (i, i + rot/2)   (Llama, Qwen, Mixtral)
  interleaved,  // GPT-J: pairs are (2i, 2i + 1)
};

// Rotary embedding tables, computed once on the host from the HF config fields
// (kernels/rope.h builds them): inv_freq for each of the rot_dim/2 pairs and the
// attention scaling (YaRN's mscale; 1 otherwise) that multiplies cos and sin.
struct RopeParams {
  int64_t head_dim = 0;   // D of the tensors rotated
  int64_t rot_dim = 0;    // leading dims rotated (== head_dim unless partial rotary); even
  RopeLayout layout = RopeLayout::half;
  float attention_scaling = 1.0f;
  Tensor inv_freq;        // f32 [rot_dim / 2], on the op's device
};

enum class RouterScore : uint8_t { softmax, sigmoid };

struct RouterParams {
  int64_t top_k = 1;
  RouterScore score = RouterScore::softmax;
  bool normalize_topk = false;   // renormalise the chosen weights to sum to 1
  float scaling = 1.0f;          // routed_scaling_factor, multiplies the final weights
  Tensor selection_bias;         // f32 [E] or undefined: added to scores for choosing only
                                 // (DeepSeek-V3 e_score_correction_bias); weights use raw scores
};

struct AdamWParams {
  float lr = 1e-3f;
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;  // decoupled: p -= lr * wd * p
  int64_t step = 1;           // 1-based step count for bias correction
};

// Per-row sampling parameters. Filters apply in this order on the temperature-scaled
// distribution: top_k, then top_p (on the renormalised top-k set), then min_p (relative to
// the most likely token). temperature == 0 means greedy (argmax, lowest id on ties).
struct SamplingParams {
  float temperature = 1.0f;
  int64_t top_k = 0;      // 0: off
  float top_p = 1.0f;     // in (0, 1]; 1: off
  float min_p = 0.0f;     // in [0, 1); 0: off
  uint64_t seed = 0;      // Philox key
  uint64_t stream = 0;    // Philox stream (e.g. request id * n + sample index)
  uint64_t offset = 0;    // Philox block offset (e.g. the generated-token index)
};

// A sequence of ops recorded by Ops::begin_capture / end_capture, replayed whole with the
// tensors it was recorded with: the same pointers, shapes and parameters (the data behind
// them may change between replays). It holds no reference to those tensors: whoever
// captures keeps them alive and in place for as long as the graph is replayed.
class OpsGraph {
 public:
  virtual ~OpsGraph() = default;
  // Runs the recorded ops in order and waits for them. The ops' checks of index data (ids in
  // range, block tables, expert offsets, slots) run with them: replay throws the error of the
  // first op whose check failed, with the message that op throws when called directly.
  virtual void replay() = 0;
  // False once memory the graph recorded has moved: the backend's scratch space grew for a
  // later, larger op. Capture again then; replaying a graph that is not valid throws.
  virtual bool valid() const { return true; }
};

// ---------------------------------------------------------------------------------------

class Ops {
 public:
  virtual ~Ops() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;
  // Allocates this backend's memory (parameters, activations, scratch).
  virtual Allocator& allocator() = 0;
  // Whether floating data tensors (activations, weights, the KV cache) may be stored as `dt`
  // (see the backend's header for the per-op dtype rules). Every backend stores f32; the CUDA
  // backend also bf16.
  virtual bool supports_storage(DType dt) const { return dt == DType::f32; }

  // ---- graphs ----------------------------------------------------------------------------
  // Between begin_capture() and end_capture() the ops called on this Ops from the capturing
  // thread are recorded into a graph instead of running (no other thread may use the Ops
  // meanwhile). Nothing may be read back to the host while capturing: an op or allocator
  // call that would wait for the device throws. The scratch an op uses must already have
  // been grown by an earlier call of the same shapes (run the sequence once before capturing
  // it). CUDA: a CUDA graph, one launch for the whole sequence; argument checks (dtypes,
  // shapes) run at capture, checks of index data at each replay. CPU: the calls are kept
  // and run in order at each replay, every check with them: no faster, but it runs the same
  // code path, so the CPU tests cover what the CUDA backend captures.
  virtual bool supports_graphs() const { return false; }
  virtual bool capturing() const { return false; }
  // Throws when the backend has no graphs or a capture is already open.
  virtual void begin_capture();
  // The recorded graph; throws (and leaves capture mode) when the capture failed.
  virtual std::unique_ptr<OpsGraph> end_capture();
  // Leaves capture mode, dropping what was recorded (after an error); no-op when not capturing.
  virtual void abort_capture() noexcept {}

  // ---- elementwise helpers -------------------------------------------------------------
  // out = a + b (same shapes; out may alias a or b)
  virtual void add(Tensor out, Tensor a, Tensor b) = 0;
  // x *= s
  virtual void scale(Tensor x, float s) = 0;
  virtual void zero(Tensor x) = 0;
  virtual void copy(Tensor dst, Tensor src) = 0;

  // ---- matmul --------------------------------------------------------------------------
  // out = op(a) @ op(b) (+ bias) (+ out if accumulate), op(x) = x^T when trans_x.
  // 2-D: a [M, K] (or [K, M] if trans_a), b [K, N] (or [N, K] if trans_b), out [M, N].
  // 3-D: the same per batch index; a, b and out all have the leading batch dimension B (b is
  // not broadcast: flatten activations to 2-D to multiply by one weight).
  // bias [N] or undefined. Linear layers use trans_b = true with HF weights [out, in].
  virtual void matmul(Tensor out, Tensor a, Tensor b, Tensor bias, bool trans_a, bool trans_b,
                      bool accumulate = false) = 0;
  // Gradients of matmul. Any of da, db, dbias may be undefined (not needed).
  // da is ASSIGNED unless accumulate_da; db and dbias ACCUMULATE unless !accumulate_db
  // (the usual case is a = activation, b = weight).
  virtual void matmul_backward(Tensor da, Tensor db, Tensor dbias, Tensor dout, Tensor a, Tensor b,
                               bool trans_a, bool trans_b, bool accumulate_da = false,
                               bool accumulate_db = true) = 0;

  // ---- embedding -------------------------------------------------------------------------
  // out [T, C] = table[ids[t]]; ids i32 [T], table [V, C]. An id outside [0, V) throws.
  virtual void embedding(Tensor out, Tensor ids, Tensor table) = 0;
  // dtable [V, C] += scatter of dout [T, C] by ids (parameter grad: accumulates); ids are
  // checked as in the forward.
  virtual void embedding_backward(Tensor dtable, Tensor dout, Tensor ids) = 0;

  // ---- RMSNorm ---------------------------------------------------------------------------
  // Over the last dimension C: out = x / sqrt(mean(x^2) + eps) * w. x, out [..., C], w [C],
  // rstd f32 [rows] saved for backward (rows = numel / C). Per-head norms (Qwen3 q/k norm)
  // pass x as [T, H, D] with w [D] (rstd may then be [T, H]: any shape with `rows` elements).
  // out may alias x.
  virtual void rmsnorm(Tensor out, Tensor rstd, Tensor x, Tensor w, float eps) = 0;
  // dx ASSIGNED (may alias dout), dw ACCUMULATES.
  virtual void rmsnorm_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w, Tensor rstd) = 0;
  // Residual add fused with RMSNorm: sum = x + residual, then out = rmsnorm(sum) as above.
  // sum may alias x or residual; out must not alias sum. The backward is rmsnorm_backward on
  // sum, plus the residual path's gradient (the caller adds it). The default runs add and
  // rmsnorm; backends fuse it (one pass over the row instead of three).
  virtual void add_rmsnorm(Tensor sum, Tensor out, Tensor rstd, Tensor x, Tensor residual, Tensor w, float eps) {
    add(sum, x, residual);
    rmsnorm(out, rstd, sum, w, eps);
  }

  // ---- RoPE ------------------------------------------------------------------------------
  // x, out [T, H, D]; positions i32 [T]. out may alias x (in place). Dimensions past rot_dim
  // are copied unchanged.
  virtual void rope(Tensor out, Tensor x, Tensor positions, const RopeParams& p) = 0;
  // dx ASSIGNED = attention_scaling * R^T dout (the transpose of the forward map; the inverse
  // only when attention_scaling == 1); dx may alias dout.
  virtual void rope_backward(Tensor dx, Tensor dout, Tensor positions, const RopeParams& p) = 0;

  // ---- attention -------------------------------------------------------------------------
  // Causal grouped-query attention over packed sequences.
  // q [T, Hq, D], k and v [T, Hkv, D] (Hq a multiple of Hkv), cu_seqlens i32 [S + 1].
  // out [T, Hq, D]; lse f32 [T, Hq] (log-sum-exp of the scaled scores, saved for backward).
  virtual void attention(Tensor out, Tensor lse, Tensor q, Tensor k, Tensor v, Tensor cu_seqlens,
                         float scale) = 0;
  // dq, dk, dv ASSIGNED.
  virtual void attention_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dout, Tensor q, Tensor k,
                                  Tensor v, Tensor out, Tensor lse, Tensor cu_seqlens, float scale) = 0;

  // Paged KV cache: k_cache and v_cache [num_blocks, block_size, Hkv, D].
  // Writes the new tokens' k, v [T, Hkv, D] into cache slots slot_mapping i32 [T]
  // (slot = block * block_size + offset; a negative slot skips the token). Slots must be
  // distinct: two tokens writing one slot leave either value.
  virtual void kv_cache_write(Tensor k_cache, Tensor v_cache, Tensor k, Tensor v, Tensor slot_mapping) = 0;
  // Attention of new tokens against the cache (prefill chunks and decoding alike).
  // q [T, Hq, D] holds the new tokens of B sequences, cu_seqlens_q i32 [B + 1];
  // seq_lens_k i32 [B] is each sequence's context length INCLUDING its new tokens, whose
  // k/v must already be written; block_table i32 [B, max_blocks]. New token j of sequence b
  // sits at position seq_lens_k[b] - n_b + j and attends causally to positions <= its own.
  // Only the block-table entries covering positions < seq_lens_k[b] are read (and checked
  // against num_blocks); the rest of a row may hold anything (e.g. -1 padding).
  virtual void attention_paged(Tensor out, Tensor q, Tensor k_cache, Tensor v_cache, Tensor cu_seqlens_q,
                               Tensor seq_lens_k, Tensor block_table, float scale) = 0;

  // ---- activations -----------------------------------------------------------------------
  // out = silu(gate) * up; gate, up, out of one shape (e.g. [N, F]).
  virtual void swiglu(Tensor out, Tensor gate, Tensor up) = 0;
  // dgate, dup ASSIGNED.
  virtual void swiglu_backward(Tensor dgate, Tensor dup, Tensor dout, Tensor gate, Tensor up) = 0;
  // Softmax over the last dimension; out may alias x.
  virtual void softmax(Tensor out, Tensor x) = 0;
  // dx ASSIGNED; dx may alias dout.
  virtual void softmax_backward(Tensor dx, Tensor dout, Tensor out) = 0;

  // ---- MoE -------------------------------------------------------------------------------
  // logits [T, E] -> scores [T, E] (softmax or sigmoid, saved for backward), topk_ids i32
  // [T, K] (highest score + bias first; ties to the lower expert id) and topk_weights f32
  // [T, K]. With replay = true, topk_ids is an INPUT (routing replay) and only the weights
  // are computed for the given experts (ids in [0, E), no duplicates within a row).
  // Renormalisation divides by (sum + 1e-20), so all-underflowing rows give 0, not NaN.
  virtual void moe_router(Tensor topk_weights, Tensor topk_ids, Tensor scores, Tensor logits,
                          const RouterParams& p, bool replay = false) = 0;
  // dlogits [T, E] ASSIGNED from dtopk_weights [T, K]; p.selection_bias gets no gradient
  // and is not read.
  virtual void moe_router_backward(Tensor dlogits, Tensor dtopk_weights, Tensor scores, Tensor topk_ids,
                                   const RouterParams& p) = 0;
  // Groups the T*K (token, slot) pairs by expert, stable in (token, slot) order:
  // expert_offsets i32 [E + 1] (rows of expert e are [offsets[e], offsets[e+1])),
  // src_token i32 [T*K] (token each permuted row comes from) and
  // dest_row i32 [T*K] (permuted row of pair t*K + k; a permutation of [0, T*K)). K <= E.
  virtual void moe_align(Tensor expert_offsets, Tensor src_token, Tensor dest_row, Tensor topk_ids,
                         int64_t num_experts) = 0;
  // xp [T*K, C] = x [T, C] gathered by src_token.
  virtual void moe_permute(Tensor xp, Tensor x, Tensor src_token) = 0;
  // dx [T, C] ASSIGNED = sum of dxp rows that came from each token.
  virtual void moe_permute_backward(Tensor dx, Tensor dxp, Tensor src_token) = 0;
  // out [T, C] = sum_k topk_weights[t, k] * yp[dest_row[t*K + k]]; yp has exactly T*K rows
  // and dest_row must be a permutation of [0, T*K).
  virtual void moe_unpermute(Tensor out, Tensor yp, Tensor dest_row, Tensor topk_weights) = 0;
  // dyp [T*K, C] ASSIGNED; dtopk_weights [T, K] ASSIGNED.
  virtual void moe_unpermute_backward(Tensor dyp, Tensor dtopk_weights, Tensor dout, Tensor yp,
                                      Tensor dest_row, Tensor topk_weights) = 0;
  // Grouped GEMM over experts: for each e, out[rows_e] = x[rows_e] @ w[e]^T
  // (rows_e = [offsets[e], offsets[e+1])). x [R, K], w [E, N, K] (HF [out, in] per expert),
  // out [R, N], expert_offsets i32 [E + 1] with offsets[E] == R.
  virtual void grouped_matmul(Tensor out, Tensor x, Tensor w, Tensor expert_offsets) = 0;
  // dx ASSIGNED, dw ACCUMULATES; either may be undefined.
  virtual void grouped_matmul_backward(Tensor dx, Tensor dw, Tensor dout, Tensor x, Tensor w,
                                       Tensor expert_offsets) = 0;

  // ---- fused LM head ---------------------------------------------------------------------
  // For each token t: logits = (hidden[t] @ w^T) * inv_temperature over the vocabulary,
  // logprob[t] = log softmax(logits)[targets[t]], entropy[t] = -sum p log p.
  // hidden [T, C], w [V, C], targets i32 [T]; logprob, entropy, lse f32 [T] (entropy may be
  // undefined). inv_temperature must be finite and > 0. Computed in tiles of tokens x vocab:
  // [T, V] is never held whole.
  virtual void lm_head_logprob(Tensor logprob, Tensor entropy, Tensor lse, Tensor hidden, Tensor w,
                               Tensor targets, float inv_temperature) = 0;
  // dhidden [T, C] ASSIGNED, dw [V, C] ACCUMULATES (either may be undefined), from
  // dlogprob [T] (required) and dentropy [T] (undefined: zero). entropy must be the forward's output
  // when dentropy is given.
  virtual void lm_head_logprob_backward(Tensor dhidden, Tensor dw, Tensor dlogprob, Tensor dentropy,
                                        Tensor hidden, Tensor w, Tensor targets, Tensor lse, Tensor entropy,
                                        float inv_temperature) = 0;

  // ---- sampling --------------------------------------------------------------------------
  // logits [B, V] -> tokens i32 [B] and logprobs f32 [B]: the log-prob of the chosen token
  // under the temperature-scaled, unfiltered distribution softmax(logits / temperature)
  // (what the learner recomputes); for greedy rows, under softmax(logits).
  // params has B entries. The uniform for row b is u = uniform_from_u32(first word of
  // philox_block(seed, stream, offset)), so draws do not depend on batch composition.
  // The draw (every backend reproduces it): order tokens by descending logit, ties to the
  // lower id; the kept set is a prefix of that order (top_k, then top_p, then min_p, never
  // empty); return the first kept token whose cumulative renormalised probability exceeds u.
  // Greedy rows ignore the filters. Backends agree up to exp rounding at a CDF boundary
  // (kernels/cpu/cpu_sampling.cpp spells out the arithmetic).
  virtual void sample(Tensor tokens, Tensor logprobs, Tensor logits, std::span<const SamplingParams> params) = 0;

  // ---- optimizer -------------------------------------------------------------------------
  // One AdamW step over flat f32 buffers of equal length: params (the f32 master copy),
  // grads, m, v. params_bf16 (bf16, same length, or undefined) receives the updated weights
  // rounded to bf16 (round to nearest even) in the same pass: the compute copy.
  virtual void adamw(Tensor params, Tensor grads, Tensor m, Tensor v, const AdamWParams& p,
                     Tensor params_bf16 = {}) = 0;
  // out f32 [1] += sum of x^2 (accumulated in f64 on CPU). Call per buffer, then sqrt.
  virtual void sum_squares(Tensor out, Tensor x) = 0;
};

// The CPU backend (always available).
std::unique_ptr<Ops> make_cpu_ops();

// Global grad-norm clipping over several flat gradient buffers: returns the norm before
// clipping and scales every buffer by max_norm / norm when norm > max_norm (max_norm <= 0:
// no clipping). Works on any backend through sum_squares and scale.
float clip_grad_norm(Ops& ops, std::span<const Tensor> grads, float max_norm);

}  // namespace grpo
