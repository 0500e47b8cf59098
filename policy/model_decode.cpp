// Incremental decoding: new tokens of several sequences (prompt chunks or one sampled token
// each) run through the layers with their K/V written into the paged cache and attention
// reading it; the logits of each sequence's last new token come out for the sampler.
#include <algorithm>
#include <bit>
#include <vector>

#include "core/error.h"
#include "core/log.h"
#include "policy/kv_cache.h"
#include "policy/model_impl.h"

namespace grpo {

using namespace model_detail;

namespace {

// The decoding metadata block (i32), for T new tokens of B sequences and block tables W wide:
// positions [T], slots [T], cu_q [B + 1], seq_lens_k [B], last [B], block_table [B, W].
struct MetaLayout {
  int64_t T = 0, B = 0, W = 0;
  int64_t o_slot() const { return T; }
  int64_t o_cu() const { return 2 * T; }
  int64_t o_len() const { return o_cu() + B + 1; }
  int64_t o_last() const { return o_len() + B; }
  int64_t o_bt() const { return o_last() + B; }
  int64_t size() const { return o_bt() + B * W; }
  static Tensor ints(const Buffer& buf, int64_t offset, std::initializer_list<int64_t> shape) {
    return buf.view(DType::i32, shape, size_t(offset) * sizeof(int32_t));
  }
  AttnCall call(const Buffer& buf) const {
    AttnCall c;
    c.positions = ints(buf, 0, {T});
    c.slot_mapping = ints(buf, o_slot(), {T});
    c.cu_q = ints(buf, o_cu(), {B + 1});
    c.seq_lens_k = ints(buf, o_len(), {B});
    c.block_table = ints(buf, o_bt(), {B, W});
    return c;
  }
  Tensor last(const Buffer& buf) const { return ints(buf, o_last(), {B}); }
};

// Reserves the cache blocks of the new tokens; returns the block-table width they need.
int64_t reserve_and_width(KvCache& cache, std::span<const int64_t> seq_ids, std::span<const int64_t> num_tokens) {
  const int64_t bs = cache.block_size();
  int64_t width = 1;
  for (size_t b = 0; b < seq_ids.size(); ++b) {
    const int64_t start = cache.length(seq_ids[b]);
    cache.reserve(seq_ids[b], num_tokens[b]);
    width = std::max(width, (start + num_tokens[b] + bs - 1) / bs);
  }
  return width;
}

// Fills meta (m.size() entries, preset to -1) for the sequences' new tokens. Rows past the
// sequences (m.B > seq_ids.size(), one token each: a padded graph batch) are inert: token 0 at
// position 0 with no cache slot, attending to slot 0 of block 0 (read, never written).
void fill_meta(std::vector<int32_t>& meta, const MetaLayout& m, const KvCache& cache,
               std::span<const int64_t> seq_ids, std::span<const int64_t> num_tokens) {
  const int64_t n_seqs = int64_t(seq_ids.size());
  int64_t t = 0;
  meta[size_t(m.o_cu())] = 0;
  for (int64_t b = 0; b < m.B; ++b) {
    int32_t* table = meta.data() + m.o_bt() + b * m.W;
    if (b >= n_seqs) {
      meta[size_t(t)] = 0;
      meta[size_t(m.o_slot() + t)] = -1;
      ++t;
      meta[size_t(m.o_cu() + b + 1)] = int32_t(t);
      meta[size_t(m.o_len() + b)] = 1;
      meta[size_t(m.o_last() + b)] = int32_t(t - 1);
      table[0] = 0;
      continue;
    }
    const int64_t id = seq_ids[size_t(b)], n = num_tokens[size_t(b)], start = cache.length(id);
    for (int64_t j = 0; j < n; ++j, ++t) {
      meta[size_t(t)] = int32_t(start + j);
      meta[size_t(m.o_slot() + t)] = cache.slot(id, start + j);
    }
    meta[size_t(m.o_cu() + b + 1)] = int32_t(t);
    meta[size_t(m.o_len() + b)] = int32_t(start + n);
    meta[size_t(m.o_last() + b)] = int32_t(t - 1);
    // Only the blocks covering this call's positions: a sequence may hold blocks reserved ahead.
    const std::vector<int32_t>& blocks = cache.blocks(id);
    const size_t n_copy = std::min(blocks.size(), size_t(m.W));
    std::copy(blocks.begin(), blocks.begin() + ptrdiff_t(n_copy), table);
  }
}

// The padded batch of a graph: 1, 2, 4, 8, then multiples of 8, at most cap (>= B).
int64_t graph_rows(int64_t B, int64_t cap) {
  int64_t rows = B <= 8 ? int64_t(std::bit_ceil(uint64_t(B))) : (B + 7) / 8 * 8;
  return std::max(B, std::min(rows, cap));
}

}  // namespace

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
                         std::span<const int64_t> num_tokens, Tensor logits, Tensor routing, Tensor replay,
                         bool decode) {
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

  if (decode && graphs_on && !replay.defined() && decode_graphed(cache, seq_ids, tokens, logits, routing)) return;

  // Host metadata: positions, cache slots, query boundaries, context lengths, block tables.
  const MetaLayout m{T, B, reserve_and_width(cache, seq_ids, num_tokens)};
  std::vector<int32_t> meta(size_t(m.size()), -1);
  fill_meta(meta, m, cache, seq_ids, num_tokens);
  const size_t meta_bytes = meta.size() * sizeof(int32_t);
  if (meta_buf.size() < meta_bytes) meta_buf = Buffer(ops.allocator(), std::max(meta_bytes, meta_buf.size() * 2));
  ops.allocator().copy_from_host(meta_buf.data(), meta.data(), meta_bytes);
  const Tensor hn = run_decode_layers(cache, tokens, m.call(meta_buf), m.last(meta_buf), T, B, routing, replay);
  ops.matmul(logits, hn, w.lm_head, Tensor{}, false, true);
  if (decode) ++graph_stats.eager_steps;
  for (int64_t b = 0; b < B; ++b) cache.advance(seq_ids[size_t(b)], num_tokens[size_t(b)]);
}

Tensor Model::Impl::run_decode_layers(KvCache& cache, Tensor tokens, const AttnCall& meta, Tensor last, int64_t T,
                                      int64_t B, Tensor routing, Tensor replay) {
  decode_arena->reset();
  ActAlloc a(decode_arena.get(), act_dtype);
  DecodeState d = alloc_decode_state(a, cfg, T, B);
  AttnCall call = meta;
  const int64_t K = cfg.num_experts_per_tok;
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
  return d.hn;
}

bool Model::Impl::decode_graphed(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, Tensor logits,
                                 Tensor routing) {
  const int64_t B = int64_t(seq_ids.size());
  const int64_t rows = graph_rows(B, std::min(limits.max_decode_seqs, limits.max_decode_tokens));
  const std::vector<int64_t> ones(size_t(B), 1);
  // The block-table width this step needs, bucketed (entries past a sequence's context are
  // never read). Reserving is idempotent: the op-by-op path reserves again should this shape
  // not run as a graph.
  const int64_t width = reserve_and_width(cache, seq_ids, ones);
  const GraphKey key{rows, int64_t(std::bit_ceil(uint64_t(width))), routing.defined(), cache.k(0).data,
                     cache.num_blocks(), cache.block_size()};
  if (!decode_graphs.empty() && decode_graphs.begin()->first.cache != key.cache) decode_graphs.clear();  // a new cache
  std::unique_ptr<DecodeGraph>& slot = decode_graphs[key];
  const MetaLayout m{rows, rows, key.width};
  if (!slot) {
    slot = std::make_unique<DecodeGraph>();
    slot->meta = Buffer(ops.allocator(), size_t(m.size()) * sizeof(int32_t));
    slot->tokens = Buffer(ops.allocator(), size_t(rows) * sizeof(int32_t));
    slot->tokens.zero();
    if (key.routing) {
      slot->routing = Buffer(ops.allocator(), size_t(num_moe * rows * cfg.num_experts_per_tok) * sizeof(int32_t));
    }
  }
  DecodeGraph& g = *slot;
  if (g.failed) return false;

  std::vector<int32_t> meta(size_t(m.size()), -1);
  fill_meta(meta, m, cache, seq_ids, ones);
  ops.allocator().copy_from_host(g.meta.data(), meta.data(), meta.size() * sizeof(int32_t));
  const Tensor graph_tokens = g.tokens.view(DType::i32, {rows});
  ops.copy(graph_tokens.rows(0, B), tokens);
  const int64_t K = cfg.num_experts_per_tok;
  const Tensor graph_routing = key.routing ? g.routing.view(DType::i32, {num_moe, rows, K}) : Tensor{};
  auto run = [&] {
    return run_decode_layers(cache, graph_tokens, m.call(g.meta), m.last(g.meta), rows, rows, graph_routing, Tensor{});
  };

  if (g.graph && !g.graph->valid()) g.graph.reset();  // the backend's scratch moved: capture again
  if (g.graph) {
    g.graph->replay();
    ++graph_stats.replays;
  } else {
    // Op by op first (it is this step's result, and it grows any scratch the ops need), then
    // the capture of the same calls.
    g.hn = run();
    ++graph_stats.eager_steps;
    try {
      ops.begin_capture();
      run();
      g.graph = ops.end_capture();
      ++graph_stats.graphs;
    } catch (const std::exception& e) {
      ops.abort_capture();
      g.failed = true;
      ++graph_stats.failed;
      GRPO_LOG(warn, "model decoding: capturing the decode step of " << rows << " rows as a graph failed; "
                                                                   << "that batch size runs op by op: " << e.what());
    }
  }
  ops.matmul(logits, g.hn.rows(0, B), w.lm_head, Tensor{}, false, true);
  if (routing.defined()) {
    if (B == rows) {
      ops.copy(routing, graph_routing);
    } else {
      for (int64_t mo = 0; mo < num_moe; ++mo)
        ops.copy(routing.rows(mo, mo + 1).view({B * K}), graph_routing.rows(mo, mo + 1).view({rows * K}).rows(0, B * K));
    }
  }
  for (int64_t b = 0; b < B; ++b) cache.advance(seq_ids[size_t(b)], 1);
  return true;
}

void Model::prefill(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens,
                    std::span<const int64_t> num_tokens, Tensor logits, Tensor routing, Tensor replay) {
  impl_->extend(cache, seq_ids, tokens, num_tokens, logits, routing, replay, false);
}

DecodeGraphStats Model::decode_graph_stats() const { return impl_->graph_stats; }

void Model::set_decode_graphs(DecodeGraphs mode) { impl_->set_decode_graphs(mode); }

void Model::decode_step(KvCache& cache, std::span<const int64_t> seq_ids, Tensor tokens, Tensor logits,
                        Tensor routing, Tensor replay) {
  const std::vector<int64_t> ones(seq_ids.size(), 1);
  impl_->extend(cache, seq_ids, tokens, ones, logits, routing, replay, true);
}

}  // namespace grpo
