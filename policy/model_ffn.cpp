// The FFN block: a dense SwiGLU MLP, or routed experts (softmax router, top-k, optional
// renormalisation; tokens permuted by expert, grouped GEMMs, unpermuted with the gate
// weights) plus qwen2_moe's shared expert.
//
// NOTES: the shared expert's gate, sigmoid(x @ shared_expert_gate^T) * shared_expert(x), is
// computed with the MoE ops themselves: a one-expert router with sigmoid scores and top-1
// gives w[t] = sigmoid(logit[t]) (its backward is the sigmoid's), and moe_unpermute with the
// identity permutation (moe_align of all-zero ids over one expert) scales each row by w[t]
// (its backward gives the row gradient and d w[t] = <dout[t], y[t]>). No extra op kinds.
#include "core/error.h"
#include "policy/model_impl.h"

namespace grpo::model_detail {

namespace {

void linear(Ops& ops, Tensor y, Tensor x, const Linear& l) { ops.matmul(y, x, l.w, l.b, false, true); }

void linear_backward(Ops& ops, Tensor dx, const Linear& g, Tensor dy, Tensor x, const Linear& w, bool accumulate) {
  ops.matmul_backward(dx, g.w, g.b, dy, x, w.w, false, true, accumulate, true);
}

void mlp_forward(Ops& ops, const MlpWeights& w, const MlpActs& a, Tensor x, Tensor out) {
  linear(ops, a.gate, x, w.gate);
  linear(ops, a.up, x, w.up);
  ops.swiglu(a.h, a.gate, a.up);
  linear(ops, out, a.h, w.down);
}

// dx ASSIGNED (or accumulated when accumulate_dx), parameter grads accumulate.
void mlp_backward(Ops& ops, const MlpWeights& w, const MlpWeights& g, const MlpActs& a, Tensor x, Tensor dout,
                  Tensor dx, const MlpActs& d, bool accumulate_dx) {
  linear_backward(ops, d.h, g.down, dout, a.h, w.down, false);
  ops.swiglu_backward(d.gate, d.up, d.h, a.gate, a.up);
  linear_backward(ops, dx, g.gate, d.gate, x, w.gate, accumulate_dx);
  linear_backward(ops, dx, g.up, d.up, x, w.up, true);
}

RouterParams routed_params(const ModelConfig& cfg) {
  RouterParams p;
  p.top_k = cfg.num_experts_per_tok;
  p.score = RouterScore::softmax;
  p.normalize_topk = cfg.norm_topk_prob;
  return p;
}

RouterParams shared_gate_params() {
  RouterParams p;
  p.top_k = 1;
  p.score = RouterScore::sigmoid;
  p.normalize_topk = false;
  return p;
}

void moe_forward(const BlockCtx& c, const MoeWeights& w, const MoeActs& a, Tensor x, const RouteCall& route,
                 Tensor out) {
  Ops& ops = c.ops;
  const RouterParams rp = routed_params(c.cfg);
  ops.matmul(a.logits, x, w.router, Tensor{}, false, true);
  if (route.replay_ids.defined()) {
    ops.copy(a.topk_ids, route.replay_ids);
    ops.moe_router(a.topk_w, a.topk_ids, a.scores, a.logits, rp, true);
  } else {
    ops.moe_router(a.topk_w, a.topk_ids, a.scores, a.logits, rp, false);
  }
  if (route.record_ids.defined()) ops.copy(route.record_ids, a.topk_ids);
  ops.moe_align(a.offsets, a.src, a.dest, a.topk_ids, c.cfg.num_experts);
  ops.moe_permute(a.xp, x, a.src);
  ops.grouped_matmul(a.e.gate, a.xp, w.gate, a.offsets);
  ops.grouped_matmul(a.e.up, a.xp, w.up, a.offsets);
  ops.swiglu(a.e.h, a.e.gate, a.e.up);
  ops.grouped_matmul(a.yp, a.e.h, w.down, a.offsets);
  ops.moe_unpermute(out, a.yp, a.dest, a.topk_w);
  if (w.has_shared) {
    mlp_forward(ops, w.shared, a.s, x, a.s_out);
    ops.matmul(a.sg_logit, x, w.shared_gate, Tensor{}, false, true);
    ops.moe_router(a.sg_w, a.sg_id, a.sg_score, a.sg_logit, shared_gate_params(), false);
    ops.moe_align(a.sg_off, a.sg_src, a.sg_dest, a.sg_id, 1);
    ops.moe_unpermute(a.s_gated, a.s_out, a.sg_dest, a.sg_w);
    ops.add(out, out, a.s_gated);
  }
}

void moe_backward(const BlockCtx& c, const MoeWeights& w, const MoeWeights& g, const MoeActs& a, Tensor x,
                  Tensor dout, Tensor dln, GradScratch& s, Tensor aux_c, Tensor ones) {
  Ops& ops = c.ops;
  const RouterParams rp = routed_params(c.cfg);
  ops.moe_unpermute_backward(s.dyp, s.dtopk_w, dout, a.yp, a.dest, a.topk_w);
  ops.grouped_matmul_backward(s.de.h, g.down, s.dyp, a.e.h, w.down, a.offsets);
  ops.swiglu_backward(s.de.gate, s.de.up, s.de.h, a.e.gate, a.e.up);
  ops.grouped_matmul_backward(s.dxp, g.gate, s.de.gate, a.xp, w.gate, a.offsets);
  ops.grouped_matmul_backward(s.dxp2, g.up, s.de.up, a.xp, w.up, a.offsets);
  ops.add(s.dxp, s.dxp, s.dxp2);
  ops.moe_permute_backward(dln, s.dxp, a.src);
  ops.moe_router_backward(s.dlogits, s.dtopk_w, a.scores, a.topk_ids, rp);
  if (aux_c.defined()) {
    // The load-balancing loss depends on the scores through their per-expert mean: the same
    // d/d scores[t, e] = aux_c[e] for every token. Broadcast it with a rank-1 product.
    const int64_t T = x.shape[0];
    ops.matmul(s.daux_scores, ones.rows(0, T).view({T, 1}), aux_c, Tensor{}, false, false);
    ops.softmax_backward(s.daux_logits, s.daux_scores, a.scores);
    ops.add(s.dlogits, s.dlogits, s.daux_logits);
  }
  if (s.dlogits_act.data != s.dlogits.data) ops.copy(s.dlogits_act, s.dlogits);  // bf16 model: the dout dtype
  ops.matmul_backward(dln, g.router, Tensor{}, s.dlogits_act, x, w.router, false, true, true, true);
  if (w.has_shared) {
    ops.moe_unpermute_backward(s.ds_out, s.dsg_w, dout, a.s_out, a.sg_dest, a.sg_w);
    ops.moe_router_backward(s.dsg_logit, s.dsg_w, a.sg_score, a.sg_id, shared_gate_params());
    if (s.dsg_logit_act.data != s.dsg_logit.data) ops.copy(s.dsg_logit_act, s.dsg_logit);
    ops.matmul_backward(dln, g.shared_gate, Tensor{}, s.dsg_logit_act, x, w.shared_gate, false, true, true, true);
    mlp_backward(ops, w.shared, g.shared, a.s, x, s.ds_out, dln, s.ds, true);
  }
}

}  // namespace

void ffn_forward(const BlockCtx& c, const LayerWeights& w, FfnActs& a, const RouteCall& route, Tensor out) {
  if (w.moe) {
    moe_forward(c, w.experts, a.moe, a.ln, route, out);
  } else {
    mlp_forward(c.ops, w.mlp, a.mlp, a.ln, out);
  }
}

void ffn_backward(const BlockCtx& c, const LayerWeights& w, const LayerWeights& g, const FfnActs& a, Tensor dout,
                  Tensor dln, GradScratch& s, Tensor aux_c, Tensor ones) {
  if (w.moe) {
    moe_backward(c, w.experts, g.experts, a.moe, a.ln, dout, dln, s, aux_c, ones);
  } else {
    mlp_backward(c.ops, w.mlp, g.mlp, a.mlp, a.ln, dout, dln, s.dmlp, false);
  }
}

}  // namespace grpo::model_detail
