// Incremental decoding: new tokens of several sequences (prompt chunks or one sampled token
// each) run through the layers with their K/V written into the paged cache and attention
// reading it; the logits of each sequence's last new token come out for the sampler.
#include <algorithm>

#include "core/error.h"
#include "policy/kv_cache.h"
#include "policy/model_impl.h"

namespace grpo {

using namespace model_detail;

namespace model_detail {

DecodeState alloc_decode_state(ActAlloc& a, const ModelConfig& cfg, int64_t T, int64_t B) {
  bool any_dense = false, any_moe = false;
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) (cfg.is_moe_layer(l) ? any_moe : any_dense) = true;
  const int64_t C = cfg.hidden_size;
  DecodeState d;
  d.acts = alloc_layer_acts(a, cfg, T, any_dense, any_moe, false);
  d.x0 = a.act({T, C});
  d.x1 = a.act({T, C});
  d.proj = a.act({T, C});
  d.last_hidden = a.act({B, C});
  d.hn = a.act({B, C});
  d.rstd = a.f32({B});
  return d;
}

}  // namespace model_detail

void Model::Impl::extend(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens,
                         std::span<const int64_t> num_tokens, Tensor logits, Tensor routing, Tensor replay) {
  GRPO_CHECK(decode_arena, "model decoding: the model was built with ModelLimits::max_decode_tokens = 0");
  const int64_t B = int64_t(seq_ids.size());
  GRPO_CHECK(B >= 1 && int64_t(num_tokens.size()) == B,
             "model decoding: " << B << " sequence ids and " << num_tokens.size() << " token counts");
  GRPO_CHECK(B <= limits.max_decode_seqs, "model decoding: " << B << " sequences but the model was built for "
                                                             << "ModelLimits::max_decode_seqs = "
                                                             << limits.max_decode_seqs);
  int64_t T = 0;
  for (int64_t b = 0; b < B; ++b) {
    GRPO_CHECK(num_tokens[size_t(b)] >= 1, "model decoding: sequence " << seq_ids[size_t(b)] << " has "
                                                                       << num_tokens[size_t(b)] << " new tokens");
    T += num_tokens[size_t(b)];
  }
  GRPO_CHECK(T <= limits.max_decode_tokens, "model decoding: " << T << " new tokens but the model was built for "
                                                               << "ModelLimits::max_decode_tokens = "
                                                               << limits.max_decode_tokens);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = b + 1; c < B; ++c)
      GRPO_CHECK(seq_ids[size_t(b)] != seq_ids[size_t(c)],
                 "model decoding: sequence " << seq_ids[size_t(b)] << " appears twice in one call");
  const Device dev = ops.device();
  GRPO_CHECK(tokens.defined() && tokens.dtype == DType::i32 && tokens.device == dev && tokens.ndim == 1 &&
                 tokens.shape[0] == T,
             "model decoding: tokens is " << tokens.str() << ", expected i32[" << T << "] on " << device_name(dev));
  GRPO_CHECK(logits.defined() && logits.dtype == DType::f32 && logits.device == dev && logits.ndim == 2 &&
                 logits.shape[0] == B && logits.shape[1] == cfg.vocab_size,
             "model decoding: logits is " << logits.str() << ", expected f32[" << B << ", " << cfg.vocab_size << "]");
  const int64_t K = cfg.num_experts_per_tok;
  if (routing.defined()) {
    GRPO_CHECK(num_moe > 0 && routing.dtype == DType::i32 && routing.device == dev && routing.ndim == 3 &&
                   routing.shape[0] == num_moe && routing.shape[1] == T && routing.shape[2] == K,
               "model decoding: routing is " << routing.str() << ", expected i32[" << num_moe << ", " << T << ", "
                                             << K << "] (MoE models only)");
  }
  if (replay.defined()) {
    GRPO_CHECK(num_moe > 0 && replay.dtype == DType::i32 && replay.device == dev && replay.ndim == 3 &&
                   replay.shape[0] == num_moe && replay.shape[1] == T && replay.shape[2] == K,
               "model decoding: replay is " << replay.str() << ", expected i32[" << num_moe << ", " << T << ", " << K
                                            << "] (MoE models only)");
  }
  GRPO_CHECK(cache.num_layers() == cfg.num_hidden_layers && cache.k(0).shape[2] == cfg.num_key_value_heads &&
                 cache.k(0).shape[3] == cfg.head_dim,
             "model decoding: the KV cache " << cache.k(0).str() << " x " << cache.num_layers()
                                             << " layers does not match the model");
  GRPO_CHECK(cache.dtype() == act_dtype, "model decoding: the KV cache is " << dtype_name(cache.dtype())
                                                                            << " but the model computes in "
                                                                            << dtype_name(act_dtype)
                                                                            << " (KvCacheConfig::dtype)");

  // Host metadata: positions, cache slots, query boundaries, context lengths, block tables.
  const int64_t bs = cache.block_size();
  std::vector<int64_t> start(static_cast<size_t>(B));
  int64_t max_blocks = 1;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = seq_ids[size_t(b)];
    start[size_t(b)] = cache.length(id);
    cache.reserve(id, num_tokens[size_t(b)]);
    max_blocks = std::max(max_blocks, (start[size_t(b)] + num_tokens[size_t(b)] + bs - 1) / bs);
  }
  // Layout of the metadata block (i32): positions [T], slots [T], cu_q [B + 1],
  // seq_lens_k [B], last [B], block_table [B, max_blocks].
  const int64_t o_pos = 0, o_slot = T, o_cu = 2 * T, o_len = o_cu + B + 1, o_last = o_len + B, o_bt = o_last + B;
  std::vector<int32_t> meta(size_t(o_bt + B * max_blocks), -1);
  int64_t t = 0;
  meta[size_t(o_cu)] = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = seq_ids[size_t(b)], n = num_tokens[size_t(b)];
    for (int64_t j = 0; j < n; ++j, ++t) {
      const int64_t pos = start[size_t(b)] + j;
      meta[size_t(o_pos + t)] = int32_t(pos);
      meta[size_t(o_slot + t)] = cache.slot(id, pos);
    }
    meta[size_t(o_cu + b + 1)] = int32_t(t);
    meta[size_t(o_len + b)] = int32_t(start[size_t(b)] + n);
    meta[size_t(o_last + b)] = int32_t(t - 1);
    const std::vector<int32_t>& blocks = cache.blocks(id);
    // Only the blocks covering this call's positions: a sequence may hold blocks reserved ahead.
    const size_t n_copy = std::min(blocks.size(), size_t(max_blocks));
    std::copy(blocks.begin(), blocks.begin() + ptrdiff_t(n_copy), meta.begin() + o_bt + b * max_blocks);
  }
  const size_t meta_bytes = meta.size() * sizeof(int32_t);
  if (meta_buf.size() < meta_bytes) meta_buf = Buffer(ops.allocator(), std::max(meta_bytes, meta_buf.size() * 2));
  ops.allocator().copy_from_host(meta_buf.data(), meta.data(), meta_bytes);
  auto ints = [&](int64_t offset, std::initializer_list<int64_t> shape) {
    return meta_buf.view(DType::i32, shape, size_t(offset) * sizeof(int32_t));
  };

  decode_arena->reset();
  ActAlloc a(decode_arena.get(), act_dtype);
  DecodeState d = alloc_decode_state(a, cfg, T, B);
  AttnCall call;
  call.positions = ints(o_pos, {T});
  call.slot_mapping = ints(o_slot, {T});
  call.cu_q = ints(o_cu, {B + 1});
  call.seq_lens_k = ints(o_len, {B});
  call.block_table = ints(o_bt, {B, max_blocks});
  const Tensor last = ints(o_last, {B});

  Tensor x = d.x0, y = d.x1;
  ops.embedding(x, tokens, w.embed);
  for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
    call.k_cache = cache.k(l);
    call.v_cache = cache.v(l);
    RouteCall route;
    const int64_t mo = moe_ordinal[size_t(l)];
    if (mo >= 0 && routing.defined()) route.record_ids = routing.rows(mo, mo + 1).view({T, K});
    if (mo >= 0 && replay.defined()) route.replay_ids = replay.rows(mo, mo + 1).view({T, K});
    layer_forward(l, d.acts, x, y, d.proj, call, route);
    std::swap(x, y);
  }
  ops.embedding(d.last_hidden, last, x);  // gather each sequence's last row
  ops.rmsnorm(d.hn, d.rstd, d.last_hidden, w.norm, float(cfg.rms_norm_eps));
  ops.matmul(logits, d.hn, w.lm_head, Tensor{}, false, true);
  for (int64_t b = 0; b < B; ++b) cache.advance(seq_ids[size_t(b)], num_tokens[size_t(b)]);
}

void Model::prefill(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens,
                    std::span<const int64_t> num_tokens, Tensor logits, Tensor routing, Tensor replay) {
  impl_->extend(cache, seq_ids, tokens, num_tokens, logits, routing, replay);
}

void Model::decode_step(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, Tensor logits,
                        Tensor routing, Tensor replay) {
  const std::vector<int64_t> ones(seq_ids.size(), 1);
  impl_->extend(cache, seq_ids, tokens, ones, logits, routing, replay);
}

}  // namespace grpo
