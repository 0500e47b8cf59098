// The attention block: grouped-query attention with optional q/k bias and q/k RMSNorm
// (per head for Qwen3, over the whole projection for OLMoE), RoPE, causal varlen attention
// for packed batches or paged attention against the KV cache when decoding, and o_proj.
// A different attention kind (DeepSeek MLA) replaces this file's two entry points.
#include "core/error.h"
#include "policy/model_impl.h"

namespace grpo::model_detail {

namespace {

// y = x @ W^T (+ b)
void linear(Ops& ops, Tensor y, Tensor x, const Linear& l) { ops.matmul(y, x, l.w, l.b, false, true); }

// dx (= or += when accumulate) and dW, db (+=) of y = x @ W^T + b.
void linear_backward(Ops& ops, Tensor dx, const Linear& g, Tensor dy, Tensor x, const Linear& w, bool accumulate) {
  ops.matmul_backward(dx, g.w, g.b, dy, x, w.w, false, true, accumulate, true);
}

// Views of a projection [T, H*D] as heads.
Tensor heads(Tensor t, int64_t H, int64_t D) { return t.view({t.shape[0], H, D}); }
Tensor flat(Tensor t) { return t.view({t.shape[0], t.shape[1] * t.shape[2]}); }

}  // namespace

void attention_forward(const BlockCtx& c, const AttnWeights& w, AttnActs& a, const AttnCall& call, Tensor out) {
  Ops& ops = c.ops;
  const ModelConfig& cfg = c.cfg;
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  const float eps = float(cfg.rms_norm_eps);
  if (cfg.qk_norm == QkNorm::none) {
    linear(ops, flat(a.q), a.ln, w.q);
    linear(ops, flat(a.k), a.ln, w.k);
  } else {
    linear(ops, a.q_raw, a.ln, w.q);
    linear(ops, a.k_raw, a.ln, w.k);
    if (cfg.qk_norm == QkNorm::per_head) {
      ops.rmsnorm(a.q, a.q_rstd, heads(a.q_raw, Hq, D), w.q_norm, eps);
      ops.rmsnorm(a.k, a.k_rstd, heads(a.k_raw, Hkv, D), w.k_norm, eps);
    } else {
      ops.rmsnorm(flat(a.q), a.q_rstd, a.q_raw, w.q_norm, eps);
      ops.rmsnorm(flat(a.k), a.k_rstd, a.k_raw, w.k_norm, eps);
    }
  }
  linear(ops, flat(a.v), a.ln, w.v);
  ops.rope(a.q, a.q, call.positions, c.rope);
  ops.rope(a.k, a.k, call.positions, c.rope);
  if (call.k_cache.defined()) {
    ops.kv_cache_write(call.k_cache, call.v_cache, a.k, a.v, call.slot_mapping);
    ops.attention_paged(a.out, a.q, call.k_cache, call.v_cache, call.cu_q, call.seq_lens_k, call.block_table,
                        c.attn_scale);
  } else {
    ops.attention(a.out, a.lse, a.q, a.k, a.v, call.cu_seqlens, c.attn_scale);
  }
  linear(ops, out, flat(a.out), w.o);
}

void attention_backward(const BlockCtx& c, const AttnWeights& w, const AttnWeights& g, const AttnActs& a,
                        const AttnCall& call, Tensor dout, Tensor dln, GradScratch& s) {
  Ops& ops = c.ops;
  const ModelConfig& cfg = c.cfg;
  const int64_t T = a.ln.shape[0];
  const int64_t Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  GRPO_CHECK(!call.k_cache.defined(), "model backward: paged (decoding) attention has no backward");
  Tensor dq = s.dq.rows(0, T), dk = s.dk.rows(0, T), dv = s.dv.rows(0, T), datt = s.dout.rows(0, T);
  linear_backward(ops, flat(datt), g.o, dout, flat(a.out), w.o, false);
  ops.attention_backward(dq, dk, dv, datt, a.q, a.k, a.v, a.out, a.lse, call.cu_seqlens, c.attn_scale);
  ops.rope_backward(dq, dq, call.positions, c.rope);
  ops.rope_backward(dk, dk, call.positions, c.rope);
  if (cfg.qk_norm == QkNorm::per_head) {
    ops.rmsnorm_backward(dq, g.q_norm, dq, heads(a.q_raw, Hq, D), w.q_norm, a.q_rstd);
    ops.rmsnorm_backward(dk, g.k_norm, dk, heads(a.k_raw, Hkv, D), w.k_norm, a.k_rstd);
  } else if (cfg.qk_norm == QkNorm::full) {
    ops.rmsnorm_backward(flat(dq), g.q_norm, flat(dq), a.q_raw, w.q_norm, a.q_rstd);
    ops.rmsnorm_backward(flat(dk), g.k_norm, flat(dk), a.k_raw, w.k_norm, a.k_rstd);
  }
  linear_backward(ops, dln, g.q, flat(dq), a.ln, w.q, false);
  linear_backward(ops, dln, g.k, flat(dk), a.ln, w.k, true);
  linear_backward(ops, dln, g.v, flat(dv), a.ln, w.v, true);
}

}  // namespace grpo::model_detail
