#include "policy/params.h"

#include "core/error.h"

namespace grpo {

namespace {

bool decays(ParamKind k) { return k != ParamKind::norm && k != ParamKind::bias; }

int64_t align_up(int64_t n, int64_t a) { return (n + a - 1) / a * a; }

}  // namespace

int64_t ParamEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string ParamTable::layer_prefix(int64_t layer) { return "model.layers." + std::to_string(layer) + "."; }

std::string ParamTable::expert_name(int64_t layer, int64_t expert, const char* proj) const {
  const std::string p = proj;
  if (arch_ == ModelArch::mixtral) {
    const char* w = p == "gate" ? "w1" : (p == "down" ? "w2" : "w3");
    return layer_prefix(layer) + "block_sparse_moe.experts." + std::to_string(expert) + "." + w + ".weight";
  }
  return layer_prefix(layer) + "mlp.experts." + std::to_string(expert) + "." + p + "_proj.weight";
}

std::string ParamTable::router_name(int64_t layer) const {
  return layer_prefix(layer) + (arch_ == ModelArch::mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight");
}

void ParamTable::add(std::string name, std::vector<int64_t> shape, ParamKind kind, int64_t layer) {
  ParamEntry e;
  e.name = std::move(name);
  e.shape = std::move(shape);
  e.kind = kind;
  e.layer = layer;
  GRPO_ASSERT(index_.count(e.name) == 0);
  index_[e.name] = entries_.size();
  entries_.push_back(std::move(e));
}

ParamTable::ParamTable(const ModelConfig& cfg) : arch_(cfg.arch) {
  const int64_t C = cfg.hidden_size, V = cfg.vocab_size, Q = cfg.q_dim(), KV = cfg.kv_dim();
  add("model.embed_tokens.weight", {V, C}, ParamKind::embedding, -1);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const std::string p = layer_prefix(l);
    add(p + "input_layernorm.weight", {C}, ParamKind::norm, l);
    add(p + "self_attn.q_proj.weight", {Q, C}, ParamKind::linear, l);
    add(p + "self_attn.k_proj.weight", {KV, C}, ParamKind::linear, l);
    add(p + "self_attn.v_proj.weight", {KV, C}, ParamKind::linear, l);
    if (cfg.qkv_bias) {
      add(p + "self_attn.q_proj.bias", {Q}, ParamKind::bias, l);
      add(p + "self_attn.k_proj.bias", {KV}, ParamKind::bias, l);
      add(p + "self_attn.v_proj.bias", {KV}, ParamKind::bias, l);
    }
    add(p + "self_attn.o_proj.weight", {C, Q}, ParamKind::linear, l);
    if (cfg.o_bias) add(p + "self_attn.o_proj.bias", {C}, ParamKind::bias, l);
    if (cfg.qk_norm == QkNorm::per_head) {
      add(p + "self_attn.q_norm.weight", {cfg.head_dim}, ParamKind::norm, l);
      add(p + "self_attn.k_norm.weight", {cfg.head_dim}, ParamKind::norm, l);
    } else if (cfg.qk_norm == QkNorm::full) {
      add(p + "self_attn.q_norm.weight", {Q}, ParamKind::norm, l);
      add(p + "self_attn.k_norm.weight", {KV}, ParamKind::norm, l);
    }
    add(p + "post_attention_layernorm.weight", {C}, ParamKind::norm, l);
    if (cfg.is_moe_layer(l)) {
      const int64_t E = cfg.num_experts, F = cfg.moe_intermediate_size;
      add(router_name(l), {E, C}, ParamKind::router, l);
      // Stacked: all gate projections, then all up, then all down (see the header).
      for (int64_t e = 0; e < E; ++e) add(expert_name(l, e, "gate"), {F, C}, ParamKind::expert, l);
      for (int64_t e = 0; e < E; ++e) add(expert_name(l, e, "up"), {F, C}, ParamKind::expert, l);
      for (int64_t e = 0; e < E; ++e) add(expert_name(l, e, "down"), {C, F}, ParamKind::expert, l);
      if (cfg.shared_expert_intermediate_size > 0) {
        const int64_t S = cfg.shared_expert_intermediate_size;
        add(p + "mlp.shared_expert.gate_proj.weight", {S, C}, ParamKind::linear, l);
        add(p + "mlp.shared_expert.up_proj.weight", {S, C}, ParamKind::linear, l);
        add(p + "mlp.shared_expert.down_proj.weight", {C, S}, ParamKind::linear, l);
        add(p + "mlp.shared_expert_gate.weight", {1, C}, ParamKind::linear, l);
      }
    } else {
      const int64_t F = cfg.intermediate_size;
      add(p + "mlp.gate_proj.weight", {F, C}, ParamKind::linear, l);
      add(p + "mlp.up_proj.weight", {F, C}, ParamKind::linear, l);
      add(p + "mlp.down_proj.weight", {C, F}, ParamKind::linear, l);
      if (cfg.mlp_bias) {
        add(p + "mlp.gate_proj.bias", {F}, ParamKind::bias, l);
        add(p + "mlp.up_proj.bias", {F}, ParamKind::bias, l);
        add(p + "mlp.down_proj.bias", {C}, ParamKind::bias, l);
      }
    }
  }
  add("model.norm.weight", {C}, ParamKind::norm, -1);
  if (!cfg.tie_word_embeddings) add("lm_head.weight", {V, C}, ParamKind::lm_head, -1);

  // Offsets: the decayed region first, then norms and biases. Within a region, table order;
  // the experts of one layer are consecutive entries, so their blocks are contiguous (a
  // stacked block gets no padding inside because [F, C] slices are placed back to back).
  int64_t off = 0;
  for (int pass = 0; pass < 2; ++pass) {
    const int64_t start = off;
    for (ParamEntry& e : entries_) {
      if (decays(e.kind) != (pass == 0)) continue;
      const bool continues_block = e.kind == ParamKind::expert && &e != &entries_.front() &&
                                   (&e - 1)->kind == ParamKind::expert && (&e - 1)->layer == e.layer;
      if (!continues_block) off = align_up(off, kAlign);
      e.offset = off;
      off += e.numel();
      numel_ += e.numel();
    }
    off = align_up(off, kAlign);
    (pass == 0 ? decay_ : no_decay_) = ParamRange{start, off - start};
  }
  size_ = off;
}

const ParamEntry& ParamTable::at(const std::string& name) const {
  auto it = index_.find(name);
  GRPO_CHECK(it != index_.end(), "parameter table: no tensor named \"" << name << "\"");
  return entries_[it->second];
}

const ParamEntry& ParamTable::expert_block(int64_t layer, const char* proj) const {
  return at(expert_name(layer, 0, proj));
}

std::vector<float> ParamTable::decay_mask() const {
  std::vector<float> m(size_t(size_), 0.0f);
  for (const ParamEntry& e : entries_)
    if (decays(e.kind))
      for (int64_t i = 0; i < e.numel(); ++i) m[size_t(e.offset + i)] = 1.0f;
  return m;
}

ModelParamCounts count_model_params(const ModelConfig& cfg) {
  const ParamTable table(cfg);
  ModelParamCounts c;
  for (const ParamEntry& e : table.entries()) {
    const int64_t n = e.numel();
    c.total += n;
    if (e.kind == ParamKind::embedding || e.kind == ParamKind::lm_head) c.embedding += n;
    if (e.kind == ParamKind::expert) c.experts += n;
  }
  const int64_t active_experts =
      cfg.num_experts > 0 ? c.experts / cfg.num_experts * cfg.num_experts_per_tok : 0;
  c.active_per_token = c.total - c.experts + active_experts;
  return c;
}

}  // namespace grpo
