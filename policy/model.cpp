// Model: construction (parameters, gradients, arenas sized once), the training/scoring
// forward over packed sequences, the load-balancing loss, and the backward that mirrors the
// forward. Decoding is in model_decode.cpp, checkpoint IO in model_io.cpp.
#include "policy/model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "kernels/rope.h"
#include "policy/model_impl.h"

namespace grpo {

using namespace model_detail;

namespace {

void check_tensor(const char* what, const Tensor& t, DType dtype, Device dev, std::initializer_list<int64_t> shape) {
  bool ok = t.defined() && t.dtype == dtype && t.device == dev && t.ndim == int(shape.size());
  int i = 0;
  for (int64_t d : shape) ok = ok && t.shape[size_t(i++)] == d;
  if (!ok) {
    std::string want = std::string(dtype_name(dtype)) + "[";
    i = 0;
    for (int64_t d : shape) want += (i++ ? ", " : "") + std::to_string(d);
    GRPO_THROW("model: " << what << " is " << t.str() << " on " << device_name(t.device) << ", expected " << want
                         << "] on " << device_name(dev));
  }
}

}  // namespace

namespace {

const ModelConfig& validated(const ModelConfig& c) {
  c.validate();
  return c;
}

}  // namespace

// Members are initialised in declaration order: the config is validated before the table.
Model::Impl::Impl(const ModelConfig& c, Ops& o, const ModelLimits& lim)
    : cfg(validated(c)), limits(lim), ops(o), table(cfg) {  GRPO_CHECK(limits.max_tokens >= 1 && limits.max_seqs >= 1,
             "model: ModelLimits max_tokens " << limits.max_tokens << " and max_seqs " << limits.max_seqs
                                              << " must be >= 1");
  GRPO_CHECK(limits.max_decode_tokens >= 0 && limits.max_decode_seqs >= 0 &&
                 (limits.max_decode_tokens == 0) == (limits.max_decode_seqs == 0),
             "model: ModelLimits max_decode_tokens " << limits.max_decode_tokens << " and max_decode_seqs "
                                                     << limits.max_decode_seqs << " must both be 0 or both > 0");
  GRPO_CHECK(limits.max_decode_seqs <= limits.max_decode_tokens,
             "model: ModelLimits max_decode_seqs " << limits.max_decode_seqs << " exceeds max_decode_tokens "
                                                   << limits.max_decode_tokens);
  GRPO_CHECK(limits.dtype == DType::f32 || limits.dtype == DType::bf16,
             "model: ModelLimits::dtype is " << dtype_name(limits.dtype) << ", expected f32 or bf16");
  GRPO_CHECK(ops.supports_storage(limits.dtype),
             "model: dtype " << dtype_name(limits.dtype) << " needs a backend that stores it (the "
                             << ops.name() << " backend computes in f32); use dtype f32 or the CUDA backend");
  act_dtype = limits.dtype;
  Allocator& alloc = ops.allocator();
  const size_t pbytes = size_t(table.size()) * sizeof(float);
  params_buf = Buffer(alloc, pbytes);
  params_buf.zero();
  params = params_buf.view(DType::f32, {table.size()});
  compute = params;
  if (act_dtype != DType::f32) {
    compute_buf = Buffer(alloc, size_t(table.size()) * dtype_size(act_dtype));
    compute_buf.zero();
    compute = compute_buf.view(act_dtype, {table.size()});
  }
  w = bind_weights(cfg, table, compute, params);
  if (limits.training) {
    grads_buf = Buffer(alloc, pbytes);
    grads_buf.zero();
    grads = grads_buf.view(DType::f32, {table.size()});
    g = bind_weights(cfg, table, grads);
  }

  const RopeTables tables = rope_tables(cfg.rope);
  rope_buf = Buffer(alloc, tables.inv_freq.size() * sizeof(float));
  alloc.copy_from_host(rope_buf.data(), tables.inv_freq.data(), tables.inv_freq.size() * sizeof(float));
  rope = rope_params(cfg.rope, tables, rope_buf.view(DType::f32, {int64_t(tables.inv_freq.size())}));
  attn_scale = float(1.0 / std::sqrt(double(cfg.head_dim)));

  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    const bool moe = cfg.is_moe_layer(l);
    moe_ordinal.push_back(moe ? num_moe++ : -1);
    (moe ? any_moe : any_dense) = true;
  }

  const int64_t n_ones = std::max(limits.max_tokens, limits.max_decode_tokens);
  std::vector<float> host_ones(size_t(n_ones), 1.0f);
  ones_buf = Buffer(alloc, host_ones.size() * sizeof(float));
  alloc.copy_from_host(ones_buf.data(), host_ones.data(), host_ones.size() * sizeof(float));
  ones = ones_buf.view(DType::f32, {n_ones});
  if (any_moe) aux_buf = Buffer(alloc, size_t(cfg.num_experts) * sizeof(float));

  train_arena = std::make_unique<Arena>(alloc, Model::training_arena_bytes(cfg, limits));
  if (limits.max_decode_tokens > 0) {
    ActAlloc measure(nullptr, act_dtype);
    alloc_decode_state(measure, cfg, limits.max_decode_tokens, limits.max_decode_seqs);
    decode_arena = std::make_unique<Arena>(alloc, measure.bytes() + 2 * Arena::kAlignment);
    set_decode_graphs(limits.decode_graphs);
  }
}

void Model::Impl::set_decode_graphs(DecodeGraphs mode) {
  GRPO_CHECK(mode != DecodeGraphs::on || ops.supports_graphs(),
             "model: decode graphs are on but the " << ops.name() << " backend has no graphs");
  limits.decode_graphs = mode;
  graphs_on = mode == DecodeGraphs::on ||
              (mode == DecodeGraphs::automatic && ops.device() == Device::cuda && ops.supports_graphs());
}

namespace model_detail {

void alloc_forward_state(ActAlloc& a, const ModelConfig& cfg, int64_t T, int64_t S, bool with_grad, bool store_all,
                         ForwardState& s) {
  const int64_t C = cfg.hidden_size, L = cfg.num_hidden_layers;
  bool any_dense = false, any_moe = false;
  int64_t num_moe = 0;
  for (int64_t l = 0; l < L; ++l) {
    const bool moe = cfg.is_moe_layer(l);
    (moe ? any_moe : any_dense) = true;
    num_moe += moe ? 1 : 0;
  }
  s.tokens = a.i32({T});
  s.targets = a.i32({T});
  s.positions = a.i32({T});
  s.cu_seqlens = a.i32({S + 1});
  s.res.clear();
  for (int64_t i = 0; i < (with_grad ? L + 1 : 2); ++i) s.res.push_back(a.act({T, C}));
  s.acts.clear();
  if (store_all) {
    for (int64_t l = 0; l < L; ++l) {
      const bool moe = cfg.is_moe_layer(l);
      s.acts.push_back(alloc_layer_acts(a, cfg, T, !moe, moe, true));
    }
  } else {
    s.acts.push_back(alloc_layer_acts(a, cfg, T, any_dense, any_moe, true));
  }
  s.proj = a.act({T, C});
  if (num_moe > 0) {
    s.routing = a.i32({num_moe, T, cfg.num_experts_per_tok});
    s.psum = a.f32({1, cfg.num_experts});
  }
  s.hn = a.act({T, C});
  s.rstd_final = a.f32({T});
  s.lse = a.f32({T});
  s.logprob = a.f32({T});
  s.entropy_t = a.f32({T});
}

}  // namespace model_detail

size_t Model::training_arena_bytes(const ModelConfig& cfg, const ModelLimits& limits) {
  ActAlloc a(nullptr, limits.dtype);
  ForwardState s;
  // The largest forward the limits allow, then the backward's scratch.
  alloc_forward_state(a, cfg, limits.max_tokens, limits.max_seqs, limits.training,
                      limits.training && !limits.recompute, s);
  if (limits.training) alloc_grad_scratch(a, cfg, limits.max_tokens);
  return a.bytes() + 2 * Arena::kAlignment;
}

void Model::Impl::layer_forward(int64_t l, LayerActs& a, Tensor x, Tensor out, Tensor proj, const AttnCall& call,
                                const RouteCall& route) {
  const LayerWeights& lw = w.layers[size_t(l)];
  const float eps = float(cfg.rms_norm_eps);
  const BlockCtx c = ctx();
  ops.rmsnorm(a.attn.ln, a.attn.ln_rstd, x, lw.ln1, eps);
  attention_forward(c, lw.attn, a.attn, call, proj);
  ops.add_rmsnorm(a.mid, a.ffn.ln, a.ffn.ln_rstd, x, proj, lw.ln2, eps);  // mid = x + proj, ln = norm(mid)
  ffn_forward(c, lw, a.ffn, route, proj);
  ops.add(out, a.mid, proj);
}

// ---- Model ---------------------------------------------------------------------------------

Model::Model(const ModelConfig& cfg, Ops& ops, const ModelLimits& limits)
    : impl_(std::make_unique<Impl>(cfg, ops, limits)) {}
Model::~Model() = default;

const ModelConfig& Model::config() const { return impl_->cfg; }
const ModelLimits& Model::limits() const { return impl_->limits; }
const ParamTable& Model::table() const { return impl_->table; }
Ops& Model::ops() const { return impl_->ops; }
Tensor Model::params() const { return impl_->params; }
Tensor Model::grads() const { return impl_->grads; }
DType Model::dtype() const { return impl_->act_dtype; }
Tensor Model::compute_params() const { return impl_->compute; }

void Model::sync_compute_params() {
  if (impl_->compute.data != impl_->params.data) impl_->ops.copy(impl_->compute, impl_->params);
}
size_t Model::training_arena_bytes() const { return impl_->train_arena->capacity(); }
size_t Model::decode_arena_bytes() const { return impl_->decode_arena ? impl_->decode_arena->capacity() : 0; }

namespace {

Tensor entry_view(Tensor flat, const ParamEntry& e) {
  Tensor t = flat.rows(e.offset, e.offset + e.numel());
  return e.shape.size() == 1 ? t.view({e.shape[0]}) : t.view({e.shape[0], e.shape[1]});
}

}  // namespace

Tensor Model::param(const std::string& name) const { return entry_view(impl_->params, impl_->table.at(name)); }

Tensor Model::grad(const std::string& name) const {
  GRPO_CHECK(impl_->limits.training, "model: gradients were not allocated (ModelLimits::training is false)");
  return entry_view(impl_->grads, impl_->table.at(name));
}

void Model::zero_grad() {
  GRPO_CHECK(impl_->limits.training, "model: gradients were not allocated (ModelLimits::training is false)");
  impl_->ops.zero(impl_->grads);
}

float Model::aux_loss_coef() const {
  const ModelConfig& c = impl_->cfg;
  return c.output_router_logits && impl_->num_moe > 0 ? float(c.router_aux_loss_coef) : 0.0f;
}

void Model::forward(const PackedBatch& batch, const ForwardOptions& options, ForwardOutputs& out) {
  Impl& m = *impl_;
  const ModelConfig& cfg = m.cfg;
  Ops& ops = m.ops;
  const Device dev = ops.device();
  GRPO_CHECK(batch.tokens.defined() && batch.tokens.ndim == 1 && batch.cu_seqlens.defined() &&
                 batch.cu_seqlens.ndim == 1,
             "model forward: batch.tokens " << batch.tokens.str() << " and batch.cu_seqlens "
                                            << batch.cu_seqlens.str() << " must be 1-D");
  const int64_t T = batch.tokens.shape[0], S = batch.cu_seqlens.shape[0] - 1;
  GRPO_CHECK(T >= 1 && S >= 1, "model forward: empty batch (" << T << " tokens, " << S << " sequences)");
  GRPO_CHECK(T <= m.limits.max_tokens, "model forward: the batch has " << T << " tokens but the model was built for "
                                                                       << "ModelLimits::max_tokens = "
                                                                       << m.limits.max_tokens);
  GRPO_CHECK(S <= m.limits.max_seqs, "model forward: the batch has " << S << " sequences but the model was built for "
                                                                     << "ModelLimits::max_seqs = "
                                                                     << m.limits.max_seqs);
  check_tensor("batch.tokens", batch.tokens, DType::i32, dev, {T});
  check_tensor("batch.targets", batch.targets, DType::i32, dev, {T});
  check_tensor("batch.positions", batch.positions, DType::i32, dev, {T});
  check_tensor("batch.cu_seqlens", batch.cu_seqlens, DType::i32, dev, {S + 1});
  check_tensor("out.logprob", out.logprob, DType::f32, dev, {T});
  if (options.entropy) check_tensor("out.entropy", out.entropy, DType::f32, dev, {T});
  const int64_t K = cfg.num_experts_per_tok;
  if (out.routing.defined()) {
    GRPO_CHECK(m.num_moe > 0, "model forward: out.routing given but " << cfg.model_type << " has no MoE layers");
    check_tensor("out.routing", out.routing, DType::i32, dev, {m.num_moe, T, K});
  }
  if (options.replay_routing.defined()) {
    GRPO_CHECK(m.num_moe > 0, "model forward: replay_routing given but " << cfg.model_type << " has no MoE layers");
    check_tensor("options.replay_routing", options.replay_routing, DType::i32, dev, {m.num_moe, T, K});
  }
  GRPO_CHECK(!options.with_grad || m.limits.training,
             "model forward: with_grad needs a model built with ModelLimits::training = true");
  GRPO_CHECK(std::isfinite(options.temperature) && options.temperature > 0.0f,
             "model forward: temperature is " << options.temperature << ", expected a finite value > 0");

  ForwardState& st = m.st;
  st = ForwardState{};
  st.with_grad = options.with_grad;
  st.store_all = options.with_grad && !m.limits.recompute;
  st.entropy = options.entropy;
  st.aux = options.aux_loss.value_or(cfg.output_router_logits) && m.num_moe > 0;
  st.inv_temperature = 1.0f / options.temperature;
  st.T = T;
  st.S = S;
  m.train_arena->reset();
  ActAlloc a(m.train_arena.get(), m.act_dtype);
  alloc_forward_state(a, cfg, T, S, st.with_grad, st.store_all, st);
  ops.copy(st.tokens, batch.tokens);
  ops.copy(st.targets, batch.targets);
  ops.copy(st.positions, batch.positions);
  ops.copy(st.cu_seqlens, batch.cu_seqlens);

  const int64_t E = cfg.num_experts;
  std::vector<double> psum_total(size_t(std::max<int64_t>(E, 0)), 0.0);
  st.expert_rows.assign(size_t(std::max<int64_t>(E, 0)), 0.0);
  std::vector<float> psum_host(size_t(std::max<int64_t>(E, 0)));
  std::vector<int32_t> offsets_host(size_t(E + 1));

  AttnCall call;
  call.positions = st.positions;
  call.cu_seqlens = st.cu_seqlens;
  ops.embedding(st.residual(0), st.tokens, m.w.embed);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    LayerActs& la = st.acts[st.store_all ? size_t(l) : 0];
    RouteCall route;
    const int64_t mo = m.moe_ordinal[size_t(l)];
    if (mo >= 0) {
      route.record_ids = st.routing.rows(mo, mo + 1).view({T, K});
      if (options.replay_routing.defined()) route.replay_ids = options.replay_routing.rows(mo, mo + 1).view({T, K});
    }
    m.layer_forward(l, la, st.residual(l), st.residual(l + 1), st.proj, call, route);
    if (mo >= 0 && st.aux) {
      // Per expert: the mean router probability and the fraction of (token, slot) pairs,
      // accumulated over all MoE layers (load_balancing_loss_func concatenates the layers).
      ops.matmul(st.psum, m.ones.rows(0, T).view({1, T}), la.ffn.moe.scores, Tensor{}, false, false);
      ops.allocator().copy_to_host(psum_host.data(), st.psum.data, size_t(E) * sizeof(float));
      ops.allocator().copy_to_host(offsets_host.data(), la.ffn.moe.offsets.data, size_t(E + 1) * sizeof(int32_t));
      for (int64_t e = 0; e < E; ++e) {
        psum_total[size_t(e)] += psum_host[size_t(e)];
        st.expert_rows[size_t(e)] += offsets_host[size_t(e + 1)] - offsets_host[size_t(e)];
      }
    }
  }
  ops.rmsnorm(st.hn, st.rstd_final, st.residual(cfg.num_hidden_layers), m.w.norm, float(cfg.rms_norm_eps));
  ops.lm_head_logprob(st.logprob, st.entropy ? st.entropy_t : Tensor{}, st.lse, st.hn, m.w.lm_head, st.targets,
                      st.inv_temperature);
  ops.copy(out.logprob, st.logprob);
  if (st.entropy) ops.copy(out.entropy, st.entropy_t);
  if (out.routing.defined()) ops.copy(out.routing, st.routing);
  out.aux_loss = 0.0f;
  if (st.aux) {
    st.aux_rows = double(m.num_moe) * double(T);
    double acc = 0.0;
    for (int64_t e = 0; e < E; ++e)
      acc += (st.expert_rows[size_t(e)] / st.aux_rows) * (psum_total[size_t(e)] / st.aux_rows);
    out.aux_loss = float(acc * double(E));
  }
  st.mark = m.train_arena->mark();
  st.valid = true;
}

void Model::backward(Tensor dlogprob, Tensor dentropy, float aux_loss_grad) {
  Impl& m = *impl_;
  const ModelConfig& cfg = m.cfg;
  Ops& ops = m.ops;
  ForwardState& st = m.st;
  GRPO_CHECK(st.valid && st.with_grad, "model backward: needs a forward with ForwardOptions::with_grad first");
  const int64_t T = st.T, L = cfg.num_hidden_layers;
  check_tensor("dlogprob", dlogprob, DType::f32, ops.device(), {T});
  if (dentropy.defined()) {
    GRPO_CHECK(st.entropy, "model backward: dentropy given but the forward did not compute entropy");
    check_tensor("dentropy", dentropy, DType::f32, ops.device(), {T});
  }
  GRPO_CHECK(std::isfinite(aux_loss_grad), "model backward: aux_loss_grad is " << aux_loss_grad);
  GRPO_CHECK(aux_loss_grad == 0.0f || st.aux, "model backward: aux_loss_grad " << aux_loss_grad
                                                                               << " but the forward computed no aux "
                                                                                  "loss (ForwardOptions::aux_loss)");
  m.train_arena->release(st.mark);
  ActAlloc a(m.train_arena.get(), m.act_dtype);
  GradScratch s = alloc_grad_scratch(a, cfg, T);

  ops.lm_head_logprob_backward(s.dln, m.g.lm_head, dlogprob, dentropy, st.hn, m.w.lm_head, st.targets, st.lse,
                               st.entropy ? st.entropy_t : Tensor{}, st.inv_temperature);
  ops.rmsnorm_backward(s.dres, m.g.norm, s.dln, st.residual(L), m.w.norm, st.rstd_final);

  Tensor aux_c;
  if (aux_loss_grad != 0.0f) {
    // aux = E * sum_e (rows_e / N) (sum_{layer, t} p[t, e] / N)  =>
    // d aux / d p[t, e] = E * rows_e / N^2 for every MoE layer and token.
    const int64_t E = cfg.num_experts;
    std::vector<float> dscore(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
      dscore[size_t(e)] =
          float(double(aux_loss_grad) * double(E) * st.expert_rows[size_t(e)] / (st.aux_rows * st.aux_rows));
    ops.allocator().copy_from_host(m.aux_buf.data(), dscore.data(), dscore.size() * sizeof(float));
    aux_c = m.aux_buf.view(DType::f32, {1, E});
  }

  AttnCall call;
  call.positions = st.positions;
  call.cu_seqlens = st.cu_seqlens;
  const BlockCtx c = m.ctx();
  const int64_t K = cfg.num_experts_per_tok;
  for (int64_t l = L - 1; l >= 0; --l) {
    const int64_t mo = m.moe_ordinal[size_t(l)];
    LayerActs& la = st.acts[st.store_all ? size_t(l) : 0];
    if (!st.store_all) {
      // Recompute the layer from its stored input, replaying the routing it used.
      RouteCall route;
      if (mo >= 0) route.replay_ids = st.routing.rows(mo, mo + 1).view({T, K});
      m.layer_forward(l, la, st.residual(l), s.dtmp, st.proj, call, route);
    }
    const LayerWeights& lw = m.w.layers[size_t(l)];
    const LayerWeights& lg = m.g.layers[size_t(l)];
    // out = mid + ffn(ln2(mid)); s.dres holds d out.
    ffn_backward(c, lw, lg, la.ffn, s.dres, s.dln, s, mo >= 0 ? aux_c : Tensor{}, m.ones);
    ops.rmsnorm_backward(s.dln, lg.ln2, s.dln, la.mid, lw.ln2, la.ffn.ln_rstd);
    ops.add(s.dres, s.dres, s.dln);
    // mid = x + attn(ln1(x)); s.dres holds d mid.
    attention_backward(c, lw.attn, lg.attn, la.attn, call, s.dres, s.dln, s);
    ops.rmsnorm_backward(s.dln, lg.ln1, s.dln, st.residual(l), lw.ln1, la.attn.ln_rstd);
    ops.add(s.dres, s.dres, s.dln);
  }
  // nn.Embedding(padding_idx = pad_token_id): the padding row gets no gradient from lookups
  // (it still gets the tied lm_head's, accumulated above).
  Tensor pad_row;
  if (cfg.pad_token_id) {
    const int64_t p = *cfg.pad_token_id;
    pad_row = m.g.embed.rows(p, p + 1);
    ops.copy(s.pad_save, pad_row);
  }
  ops.embedding_backward(m.g.embed, s.dres, st.tokens);
  if (pad_row.defined()) ops.copy(pad_row, s.pad_save);
}

std::unique_ptr<Model> load_model(const std::string& dir, Ops& ops, const ModelLimits& limits) {
  auto model = std::make_unique<Model>(load_model_config(dir), ops, limits);
  model->load(dir);
  return model;
}

}  // namespace grpo
