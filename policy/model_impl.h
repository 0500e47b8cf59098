// Internals of Model (policy/model.h), shared by model.cpp and the block files:
// model_attention.cpp (the attention block: replaceable, e.g. by MLA, behind
// attention_forward / attention_backward), model_ffn.cpp (dense SwiGLU MLP and routed
// experts), model_io.cpp (safetensors), model_init.cpp (initialisation).
// Not part of the public interface.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <vector>

#include "core/buffer.h"
#include "kernels/ops.h"
#include "policy/model.h"

namespace grpo::model_detail {

// Activation tensors come from an Arena, or are only measured (to size the arena once).
// act(): data tensors (hidden states, projections, their gradients) in the model's activation
// dtype; f32(): statistics and anything that stays f32 whatever the model's dtype.
class ActAlloc {
 public:
  // arena nullptr: measure only (data = nullptr)
  explicit ActAlloc(Arena* arena, DType act = DType::f32) : arena_(arena), act_(act) {}
  Tensor act(std::initializer_list<int64_t> shape) { return alloc(act_, shape); }
  Tensor f32(std::initializer_list<int64_t> shape) { return alloc(DType::f32, shape); }
  Tensor i32(std::initializer_list<int64_t> shape) { return alloc(DType::i32, shape); }
  DType act_dtype() const { return act_; }
  size_t bytes() const { return bytes_; }

 private:
  Tensor alloc(DType dtype, std::initializer_list<int64_t> shape);
  Arena* arena_;
  DType act_;
  size_t bytes_ = 0;
};

// ---- weights (views into a flat buffer: parameters or, same layout, gradients) -----------

struct Linear {
  Tensor w;  // [out, in] (HF layout; matmul with trans_b)
  Tensor b;  // [out] or undefined
};

struct AttnWeights {
  Linear q, k, v, o;  // q [Hq*D, C], k/v [Hkv*D, C], o [C, Hq*D]
  Tensor q_norm;      // per_head [D] / full [Hq*D] / undefined
  Tensor k_norm;      // per_head [D] / full [Hkv*D] / undefined
};

struct MlpWeights {
  Linear gate, up;  // [F, C]
  Linear down;      // [C, F]
};

struct MoeWeights {
  Tensor router;             // [E, C]
  Tensor gate, up;           // [E, Fe, C] stacked experts
  Tensor down;               // [E, C, Fe]
  bool has_shared = false;   // qwen2_moe
  MlpWeights shared;         // [S, C], [S, C], [C, S]
  Tensor shared_gate;        // [1, C]
};

struct LayerWeights {
  Tensor ln1, ln2;  // input_layernorm, post_attention_layernorm [C]
  AttnWeights attn;
  bool moe = false;
  MlpWeights mlp;   // dense layers
  MoeWeights experts;  // MoE layers
};

struct Weights {
  Tensor embed;    // [V, C]
  std::vector<LayerWeights> layers;
  Tensor norm;     // [C]
  Tensor lm_head;  // [V, C] (the embed view when tied)
};

// Views of every weight in `flat` (f32 or bf16, laid out by the table). When `vectors` is given
// (f32, same layout), the 1-D tensors (norm weights and biases) are viewed there instead: a
// bf16 model reads them from the f32 master.
Weights bind_weights(const ModelConfig& cfg, const ParamTable& table, Tensor flat, Tensor vectors = {});

// ---- activations -----------------------------------------------------------------------

struct AttnActs {
  Tensor ln, ln_rstd;    // input_layernorm output [T, C], rstd [T]
  Tensor q_raw, k_raw;   // projections before q/k norm [T, Hq*D], [T, Hkv*D] (qk norm only)
  Tensor q_rstd, k_rstd; // q/k norm rstd (per_head: [T*Hq], [T*Hkv]; full: [T], [T])
  Tensor q, k, v;        // [T, Hq, D], [T, Hkv, D], [T, Hkv, D]; q and k after norm and RoPE
  Tensor out;            // attention output [T, Hq, D]
  Tensor lse;            // [T, Hq] (varlen attention only)
};

struct MlpActs {
  Tensor gate, up, h;  // [N, F]: gate_proj, up_proj outputs and silu(gate) * up
};

struct MoeActs {
  Tensor logits, scores;    // router logits and softmax scores [T, E]
  Tensor topk_w, topk_ids;  // [T, K] f32, i32
  Tensor offsets;           // i32 [E + 1]
  Tensor src, dest;         // i32 [T*K]
  Tensor xp, yp;            // permuted inputs and expert outputs [T*K, C]
  MlpActs e;                // expert intermediates [T*K, Fe]
  // shared expert (qwen2_moe): out = sigmoid(shared_gate x) * mlp(x), computed as a one-expert
  // sigmoid router with top-1 and an unpermute by the identity (see model_ffn.cpp).
  MlpActs s;                // [T, S]
  Tensor s_out;             // shared_expert(x) [T, C]
  Tensor s_gated;           // sigmoid(gate) * s_out [T, C]
  Tensor sg_logit, sg_score, sg_w;  // [T, 1]
  Tensor sg_id;             // i32 [T, 1] (always 0)
  Tensor sg_off, sg_src, sg_dest;   // i32 [2], [T], [T] (identity)
};

struct FfnActs {
  Tensor ln, ln_rstd;  // post_attention_layernorm output [T, C], rstd [T]
  MlpActs mlp;         // dense [T, F]
  MoeActs moe;
};

struct LayerActs {
  Tensor mid;  // residual after attention [T, C]
  AttnActs attn;
  FfnActs ffn;
};

// Activations of one layer for T tokens. dense/moe: allocate the dense MLP and/or the MoE
// parts; lse: varlen attention (training and scoring) rather than paged decoding.
LayerActs alloc_layer_acts(ActAlloc& a, const ModelConfig& cfg, int64_t T, bool dense, bool moe, bool lse);

// Backward scratch, shared by every layer.
struct GradScratch {
  Tensor dres, dtmp, dln;  // [T, C]
  Tensor dq, dk, dv, dout; // [T, Hq, D], [T, Hkv, D] x2, [T, Hq, D]
  MlpActs dmlp;            // [T, F] (dense)
  MlpActs de;              // [T*K, Fe]
  Tensor dxp, dxp2, dyp;   // [T*K, C]
  Tensor dlogits, daux_scores, daux_logits;  // [T, E]
  Tensor dtopk_w;          // [T, K]
  MlpActs ds;              // [T, S]
  Tensor ds_out;           // [T, C]
  Tensor dsg_logit, dsg_w; // [T, 1]
  // The router gradients in the activation dtype, for the router's matmul_backward (whose
  // dout has the input's dtype); the f32 tensors themselves when the model is f32.
  Tensor dlogits_act, dsg_logit_act;  // [T, E], [T, 1]
  Tensor pad_save;         // f32 [1, C]: the embedding gradient's padding row, kept across the scatter
};

GradScratch alloc_grad_scratch(ActAlloc& a, const ModelConfig& cfg, int64_t T);

// ---- blocks ------------------------------------------------------------------------------

struct BlockCtx {
  Ops& ops;
  const ModelConfig& cfg;
  const RopeParams& rope;
  float attn_scale;  // 1 / sqrt(head_dim)
};

// What attention needs besides the layer's tensors.
struct AttnCall {
  Tensor positions;   // i32 [T]
  Tensor cu_seqlens;  // i32 [S + 1] (varlen: training and scoring)
  // Paged decoding (when k_cache is defined): the layer's cache and the batch's metadata.
  Tensor k_cache, v_cache;  // [num_blocks, block_size, Hkv, D]
  Tensor slot_mapping;      // i32 [T]
  Tensor cu_q;              // i32 [B + 1]
  Tensor seq_lens_k;        // i32 [B]
  Tensor block_table;       // i32 [B, max_blocks]
};

// out [T, C] = o_proj(attention(...)) from a.ln (already normalised); fills a.
void attention_forward(const BlockCtx& c, const AttnWeights& w, AttnActs& a, const AttnCall& call, Tensor out);
// From dout [T, C] (grad of the o_proj output): parameter grads ACCUMULATE into g, dln [T, C]
// (grad of a.ln) is ASSIGNED. Uses s.dq, s.dk, s.dv, s.dout.
void attention_backward(const BlockCtx& c, const AttnWeights& w, const AttnWeights& g, const AttnActs& a,
                        const AttnCall& call, Tensor dout, Tensor dln, GradScratch& s);

// Routing of one MoE layer: replay (ids given) and where to record the experts used.
struct RouteCall {
  Tensor replay_ids;  // i32 [T, K] or undefined (use the router's top-k)
  Tensor record_ids;  // i32 [T, K] or undefined
};

// out [T, C] = ffn(a.ln): dense SwiGLU MLP or routed experts (+ shared expert).
void ffn_forward(const BlockCtx& c, const LayerWeights& w, FfnActs& a, const RouteCall& route, Tensor out);
// From dout [T, C]: parameter grads ACCUMULATE into g, dln [T, C] ASSIGNED.
// aux_c f32 [1, E] or undefined: d(loss)/d(scores[t, e]) of the load-balancing loss (the same
// for every token), added to the router gradient.
void ffn_backward(const BlockCtx& c, const LayerWeights& w, const LayerWeights& g, const FfnActs& a, Tensor dout,
                  Tensor dln, GradScratch& s, Tensor aux_c, Tensor ones);

// ---- the model's state -------------------------------------------------------------------

// What a forward keeps for backward (tensors in the training arena).
struct ForwardState {
  bool valid = false;       // a forward ran and its tensors are intact
  bool with_grad = false;
  bool store_all = false;   // every layer's activations kept (else one work set: recompute)
  bool entropy = false;
  bool aux = false;         // the load-balancing loss was computed
  float inv_temperature = 1.0f;
  int64_t T = 0, S = 0;
  Tensor tokens, targets, positions, cu_seqlens;  // copies of the batch
  std::vector<Tensor> res;      // residual stream: layer l reads res[l], writes res[l + 1]
                                // (L + 1 of them with grad, 2 used alternately without)
  std::vector<LayerActs> acts;  // L (store_all) or 1 (work set)
  Tensor proj;                  // [T, C] block output before the residual add
  Tensor routing;               // i32 [num_moe_layers, T, K] experts used (MoE models)
  Tensor psum;                  // f32 [1, E]: sum over tokens of one layer's router scores
  Tensor hn, rstd_final;        // final norm output [T, C] and rstd [T]
  Tensor lse, logprob, entropy_t;  // [T]
  std::vector<double> expert_rows;  // [E]: (token, slot) pairs routed to each expert, all MoE layers
  double aux_rows = 0;          // N = num_moe_layers * T
  size_t mark = 0;              // arena position after the forward's tensors

  Tensor residual(int64_t l) const { return res[with_grad ? size_t(l) : size_t(l % 2)]; }
};

// The forward's tensors for T tokens and S sequences (sizing when `a` only measures).
void alloc_forward_state(ActAlloc& a, const ModelConfig& cfg, int64_t T, int64_t S, bool with_grad, bool store_all,
                         ForwardState& s);

// Activations of one decoding call: T new tokens of B sequences (model_decode.cpp).
struct DecodeState {
  LayerActs acts;            // one work set, reused by every layer
  Tensor x0, x1, proj;       // residual ping-pong and block output [T, C]
  Tensor last_hidden, hn;    // each sequence's last token [B, C], after the final norm [B, C]
  Tensor rstd;               // [B]
};
DecodeState alloc_decode_state(ActAlloc& a, const ModelConfig& cfg, int64_t T, int64_t B);

}  // namespace grpo::model_detail

namespace grpo {

struct Model::Impl {
  Impl(const ModelConfig& c, Ops& o, const ModelLimits& lim);

  ModelConfig cfg;
  ModelLimits limits;
  Ops& ops;
  ParamTable table;
  Buffer params_buf, grads_buf, compute_buf;
  Tensor params, grads;        // f32 [table.size()]
  Tensor compute;              // the weights the forward reads: params (f32) or a bf16 copy
  DType act_dtype = DType::f32;
  model_detail::Weights w, g;  // views of compute (1-D ones of params) and grads (g empty unless training)
  Buffer rope_buf;
  RopeParams rope;
  float attn_scale = 1.0f;
  Buffer ones_buf;             // f32 ones [max(max_tokens, max_decode_tokens)]
  Tensor ones;
  Buffer aux_buf;              // f32 [1, E]: the aux-loss score gradient of backward
  std::vector<int64_t> moe_ordinal;  // per layer: index among MoE layers, or -1
  int64_t num_moe = 0;
  bool any_dense = false, any_moe = false;
  std::unique_ptr<Arena> train_arena, decode_arena;
  Buffer meta_buf;             // decoding metadata (positions, slots, block tables), grown on demand
  model_detail::ForwardState st;

  // Decoding graphs (model_decode.cpp): one per padded batch, block-table width and cache.
  struct GraphKey {
    int64_t rows = 0, width = 0;
    bool routing = false;
    const void* cache = nullptr;  // the cache's storage and geometry: its tensors' addresses
    int64_t num_blocks = 0, block_size = 0;
    auto operator<=>(const GraphKey&) const = default;
  };
  struct DecodeGraph {
    Buffer meta;       // i32 metadata at fixed addresses (model_decode.cpp: MetaLayout)
    Buffer tokens;     // i32 [rows]; padding rows stay 0
    Buffer routing;    // i32 [num_moe, rows, K] when the key records routing
    Tensor hn;         // [rows, C]: the final norm's output, read by the LM head after a replay
    std::unique_ptr<OpsGraph> graph;  // null until captured
    bool failed = false;              // the capture failed: this shape runs op by op
  };
  std::map<GraphKey, std::unique_ptr<DecodeGraph>> decode_graphs;
  DecodeGraphStats graph_stats;
  bool graphs_on = false;  // limits.decode_graphs resolved against the backend
  void set_decode_graphs(DecodeGraphs mode);

  model_detail::BlockCtx ctx() { return {ops, cfg, rope, attn_scale}; }
  // One decoder layer: y = x + attn(ln1(x)); out = y + ffn(ln2(y)). proj is [T, C] scratch.
  void layer_forward(int64_t l, model_detail::LayerActs& a, Tensor x, Tensor out, Tensor proj,
                     const model_detail::AttnCall& call, const model_detail::RouteCall& route);
  // New tokens of a decoding call (model_decode.cpp).
  // decode: a decode_step call (one token per sequence), which may run as a graph.
  void extend(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, std::span<const int64_t> num_tokens,
              Tensor logits, Tensor routing, Tensor replay, bool decode);
  // decode_step through a graph; false when this shape runs op by op (its capture failed).
  bool decode_graphed(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, Tensor logits, Tensor routing);
  // The layers, the last-token gather and the final norm over a call's device metadata; the
  // final norm's output [B, C] is returned (decode arena).
  Tensor run_decode_layers(KvCache& cache, Tensor tokens, const model_detail::AttnCall& meta, Tensor last,
                           int64_t T, int64_t B, Tensor routing, Tensor replay);
};

}  // namespace grpo
