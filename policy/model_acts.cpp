// Weight views over the flat parameter (or gradient) buffer, and the activation tables: what
// one layer's forward keeps for its backward, and the backward's shared scratch.
#include "core/error.h"
#include "policy/model_impl.h"

namespace grpo::model_detail {

Tensor ActAlloc::alloc(DType dtype, std::initializer_list<int64_t> shape) {
  if (arena_) return arena_->alloc(dtype, shape);
  Tensor t(nullptr, dtype, shape);
  bytes_ = (bytes_ + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment + t.nbytes();
  return t;
}

namespace {

// Where the 1-D tensors (norm weights, biases) are viewed: the f32 master when given.
struct Flats {
  Tensor matrices, vectors;
};

Tensor view_named(const ParamTable& table, const Flats& f, const std::string& name) {
  const ParamEntry& e = table.at(name);
  const Tensor flat = e.shape.size() == 1 ? f.vectors : f.matrices;
  const Tensor t = flat.rows(e.offset, e.offset + e.numel());
  GRPO_ASSERT(e.shape.size() == 1 || e.shape.size() == 2);
  return e.shape.size() == 1 ? t.view({e.shape[0]}) : t.view({e.shape[0], e.shape[1]});
}

Tensor view_optional(const ParamTable& table, const Flats& flat, const std::string& name) {
  return table.has(name) ? view_named(table, flat, name) : Tensor{};
}

// A stacked expert block [E, rows, cols] starting at expert 0's entry.
Tensor view_experts(const ParamTable& table, const Flats& f, int64_t layer, const char* proj, int64_t E) {
  const ParamEntry& e0 = table.expert_block(layer, proj);
  const ParamEntry& last = table.at(table.expert_name(layer, E - 1, proj));
  GRPO_ASSERT(last.offset == e0.offset + (E - 1) * e0.numel());
  return f.matrices.rows(e0.offset, e0.offset + E * e0.numel()).view({E, e0.shape[0], e0.shape[1]});
}

Linear linear_named(const ParamTable& table, const Flats& flat, const std::string& prefix) {
  return Linear{view_named(table, flat, prefix + ".weight"), view_optional(table, flat, prefix + ".bias")};
}

}  // namespace

Weights bind_weights(const ModelConfig& cfg, const ParamTable& table, Tensor matrices, Tensor vectors) {
  GRPO_CHECK(matrices.defined() && (matrices.dtype == DType::f32 || matrices.dtype == DType::bf16) &&
                 matrices.ndim == 1 && matrices.shape[0] == table.size(),
             "model: flat parameter buffer is " << matrices.str() << ", expected f32 or bf16[" << table.size()
                                                << "]");
  if (!vectors.defined()) vectors = matrices;
  GRPO_CHECK(vectors.dtype == DType::f32 && vectors.ndim == 1 && vectors.shape[0] == table.size(),
             "model: flat f32 parameter buffer is " << vectors.str() << ", expected f32[" << table.size() << "]");
  const Flats flat{matrices, vectors};
  Weights w;
  w.embed = view_named(table, flat, "model.embed_tokens.weight");
  w.norm = view_named(table, flat, "model.norm.weight");
  w.lm_head = cfg.tie_word_embeddings ? w.embed : view_named(table, flat, "lm_head.weight");
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = ParamTable::layer_prefix(l);
    LayerWeights lw;
    lw.ln1 = view_named(table, flat, p + "input_layernorm.weight");
    lw.ln2 = view_named(table, flat, p + "post_attention_layernorm.weight");
    lw.attn.q = linear_named(table, flat, p + "self_attn.q_proj");
    lw.attn.k = linear_named(table, flat, p + "self_attn.k_proj");
    lw.attn.v = linear_named(table, flat, p + "self_attn.v_proj");
    lw.attn.o = linear_named(table, flat, p + "self_attn.o_proj");
    lw.attn.q_norm = view_optional(table, flat, p + "self_attn.q_norm.weight");
    lw.attn.k_norm = view_optional(table, flat, p + "self_attn.k_norm.weight");
    lw.moe = cfg.is_moe_layer(l);
    if (lw.moe) {
      const int64_t E = cfg.num_experts;
      MoeWeights& m = lw.experts;
      m.router = view_named(table, flat, table.router_name(l));
      m.gate = view_experts(table, flat, l, "gate", E);
      m.up = view_experts(table, flat, l, "up", E);
      m.down = view_experts(table, flat, l, "down", E);
      m.has_shared = cfg.shared_expert_intermediate_size > 0;
      if (m.has_shared) {
        m.shared.gate = linear_named(table, flat, p + "mlp.shared_expert.gate_proj");
        m.shared.up = linear_named(table, flat, p + "mlp.shared_expert.up_proj");
        m.shared.down = linear_named(table, flat, p + "mlp.shared_expert.down_proj");
        m.shared_gate = view_named(table, flat, p + "mlp.shared_expert_gate.weight");
      }
    } else {
      lw.mlp.gate = linear_named(table, flat, p + "mlp.gate_proj");
      lw.mlp.up = linear_named(table, flat, p + "mlp.up_proj");
      lw.mlp.down = linear_named(table, flat, p + "mlp.down_proj");
    }
    w.layers.push_back(std::move(lw));
  }
  return w;
}

namespace {

MlpActs alloc_mlp(ActAlloc& a, int64_t N, int64_t F) { return MlpActs{a.act({N, F}), a.act({N, F}), a.act({N, F})}; }

}  // namespace

LayerActs alloc_layer_acts(ActAlloc& a, const ModelConfig& cfg, int64_t T, bool dense, bool moe, bool lse) {
  const int64_t C = cfg.hidden_size, Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  LayerActs l;
  l.mid = a.act({T, C});
  AttnActs& at = l.attn;
  at.ln = a.act({T, C});
  at.ln_rstd = a.f32({T});
  if (cfg.qk_norm != QkNorm::none) {
    at.q_raw = a.act({T, Hq * D});
    at.k_raw = a.act({T, Hkv * D});
    const bool per_head = cfg.qk_norm == QkNorm::per_head;
    at.q_rstd = a.f32({per_head ? T * Hq : T});
    at.k_rstd = a.f32({per_head ? T * Hkv : T});
  }
  at.q = a.act({T, Hq, D});
  at.k = a.act({T, Hkv, D});
  at.v = a.act({T, Hkv, D});
  at.out = a.act({T, Hq, D});
  if (lse) at.lse = a.f32({T, Hq});
  FfnActs& f = l.ffn;
  f.ln = a.act({T, C});
  f.ln_rstd = a.f32({T});
  if (dense) f.mlp = alloc_mlp(a, T, cfg.intermediate_size);
  if (moe) {
    const int64_t E = cfg.num_experts, K = cfg.num_experts_per_tok;
    MoeActs& m = f.moe;
    m.logits = a.f32({T, E});
    m.scores = a.f32({T, E});
    m.topk_w = a.f32({T, K});
    m.topk_ids = a.i32({T, K});
    m.offsets = a.i32({E + 1});
    m.src = a.i32({T * K});
    m.dest = a.i32({T * K});
    m.xp = a.act({T * K, C});
    m.yp = a.act({T * K, C});
    m.e = alloc_mlp(a, T * K, cfg.moe_intermediate_size);
    if (cfg.shared_expert_intermediate_size > 0) {
      m.s = alloc_mlp(a, T, cfg.shared_expert_intermediate_size);
      m.s_out = a.act({T, C});
      m.s_gated = a.act({T, C});
      m.sg_logit = a.f32({T, 1});
      m.sg_score = a.f32({T, 1});
      m.sg_w = a.f32({T, 1});
      m.sg_id = a.i32({T, 1});
      m.sg_off = a.i32({2});
      m.sg_src = a.i32({T});
      m.sg_dest = a.i32({T});
    }
  }
  return l;
}

GradScratch alloc_grad_scratch(ActAlloc& a, const ModelConfig& cfg, int64_t T) {
  const int64_t C = cfg.hidden_size, Hq = cfg.num_attention_heads, Hkv = cfg.num_key_value_heads, D = cfg.head_dim;
  bool any_dense = false, any_moe = false;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) (cfg.is_moe_layer(l) ? any_moe : any_dense) = true;
  GradScratch s;
  s.dres = a.act({T, C});
  s.dtmp = a.act({T, C});
  s.dln = a.act({T, C});
  s.dq = a.act({T, Hq, D});
  s.dk = a.act({T, Hkv, D});
  s.dv = a.act({T, Hkv, D});
  s.dout = a.act({T, Hq, D});
  if (cfg.pad_token_id) s.pad_save = a.f32({1, C});
  if (any_dense) s.dmlp = alloc_mlp(a, T, cfg.intermediate_size);
  if (any_moe) {
    const int64_t E = cfg.num_experts, K = cfg.num_experts_per_tok;
    s.de = alloc_mlp(a, T * K, cfg.moe_intermediate_size);
    s.dxp = a.act({T * K, C});
    s.dxp2 = a.act({T * K, C});
    s.dyp = a.act({T * K, C});
    s.dlogits = a.f32({T, E});
    s.daux_scores = a.f32({T, E});
    s.daux_logits = a.f32({T, E});
    s.dtopk_w = a.f32({T, K});
    s.dlogits_act = a.act_dtype() == DType::f32 ? s.dlogits : a.act({T, E});
    if (cfg.shared_expert_intermediate_size > 0) {
      s.ds = alloc_mlp(a, T, cfg.shared_expert_intermediate_size);
      s.ds_out = a.act({T, C});
      s.dsg_logit = a.f32({T, 1});
      s.dsg_w = a.f32({T, 1});
      s.dsg_logit_act = a.act_dtype() == DType::f32 ? s.dsg_logit : a.act({T, 1});
    }
  }
  return s;
}

}  // namespace grpo::model_detail
