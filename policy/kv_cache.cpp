#include "policy/kv_cache.h"

#include <algorithm>

#include "core/error.h"

namespace grpo {

namespace {

// Table indices of the shared blocks that writing n tokens after `length` would write into.
// Only the block holding the cached length can be one (a fork shares the blocks of cached
// tokens only), but any shared block in the written range is copied.
std::vector<size_t> blocks_to_copy(const std::vector<int32_t>& refcount, const std::vector<int32_t>& blocks,
                                   int64_t length, int64_t n, int64_t block_size) {
  std::vector<size_t> out;
  if (n <= 0) return out;
  const size_t first = size_t(length / block_size);
  const size_t last = std::min(blocks.size(), size_t((length + n + block_size - 1) / block_size));
  for (size_t i = first; i < last; ++i)
    if (refcount[size_t(blocks[i])] > 1) out.push_back(i);
  return out;
}

}  // namespace

size_t KvCache::bytes_needed(const ModelConfig& cfg, const KvCacheConfig& kc) {
  return size_t(2) * size_t(cfg.num_hidden_layers) * size_t(kc.num_blocks) * size_t(kc.block_size) *
         size_t(cfg.num_key_value_heads) * size_t(cfg.head_dim) * dtype_size(kc.dtype);
}

KvCache::KvCache(Ops& ops, const ModelConfig& cfg, const KvCacheConfig& kc)
    : ops_(&ops), kc_(kc), layers_(cfg.num_hidden_layers), kv_heads_(cfg.num_key_value_heads), head_dim_(cfg.head_dim) {
  GRPO_CHECK(kc.num_blocks > 0 && kc.num_blocks <= (int64_t(1) << 30),
             "kv cache: num_blocks is " << kc.num_blocks << ", expected 1 to 2^30");
  GRPO_CHECK(kc.block_size > 0 && kc.block_size <= 4096,
             "kv cache: block_size is " << kc.block_size << ", expected 1 to 4096");
  GRPO_CHECK(kc.dtype == DType::f32 || kc.dtype == DType::bf16,
             "kv cache: dtype is " << dtype_name(kc.dtype) << ", expected f32 or bf16");
  GRPO_CHECK(ops.supports_storage(kc.dtype), "kv cache: the " << ops.name() << " backend does not store "
                                                               << dtype_name(kc.dtype) << " tensors");
  GRPO_CHECK(kc.num_blocks * kc.block_size <= (int64_t(1) << 31) - 1,
             "kv cache: num_blocks * block_size = " << kc.num_blocks * kc.block_size << " slots overflow i32");
  buffer_ = Buffer(ops.allocator(), bytes_needed(cfg, kc));
  buffer_.zero();
  free_.reserve(size_t(kc.num_blocks));
  for (int64_t b = kc.num_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
  refcount_.assign(size_t(kc.num_blocks), 0);
}

Tensor KvCache::k(int64_t layer) const {
  GRPO_CHECK(layer >= 0 && layer < layers_, "kv cache: layer " << layer << " outside [0, " << layers_ << ")");
  const size_t per = size_t(kc_.num_blocks * kc_.block_size * kv_heads_ * head_dim_) * dtype_size(kc_.dtype);
  return buffer_.view(kc_.dtype, {kc_.num_blocks, kc_.block_size, kv_heads_, head_dim_}, size_t(2 * layer) * per);
}

Tensor KvCache::v(int64_t layer) const {
  GRPO_CHECK(layer >= 0 && layer < layers_, "kv cache: layer " << layer << " outside [0, " << layers_ << ")");
  const size_t per = size_t(kc_.num_blocks * kc_.block_size * kv_heads_ * head_dim_) * dtype_size(kc_.dtype);
  return buffer_.view(kc_.dtype, {kc_.num_blocks, kc_.block_size, kv_heads_, head_dim_},
                      size_t(2 * layer + 1) * per);
}

int64_t KvCache::add_sequence() {
  const int64_t id = next_id_++;
  seqs_[id] = Seq{};
  return id;
}

const KvCache::Seq& KvCache::seq(int64_t id) const {
  auto it = seqs_.find(id);
  GRPO_CHECK(it != seqs_.end(), "kv cache: no sequence with id " << id);
  return it->second;
}

KvCache::Seq& KvCache::seq(int64_t id) {
  auto it = seqs_.find(id);
  GRPO_CHECK(it != seqs_.end(), "kv cache: no sequence with id " << id);
  return it->second;
}

int64_t KvCache::fork_sequence(int64_t id) {
  const Seq& src = seq(id);
  Seq s;
  s.length = src.length;
  // Only the blocks holding cached tokens: blocks reserved past the length stay private.
  const size_t used = size_t((src.length + kc_.block_size - 1) / kc_.block_size);
  s.blocks.assign(src.blocks.begin(), src.blocks.begin() + std::min(used, src.blocks.size()));
  for (int32_t b : s.blocks) ++refcount_[size_t(b)];
  const int64_t fid = next_id_++;
  seqs_[fid] = std::move(s);
  return fid;
}

void KvCache::release(int32_t block) {
  GRPO_ASSERT(refcount_[size_t(block)] > 0);
  if (--refcount_[size_t(block)] == 0) free_.push_back(block);
}

void KvCache::remove_sequence(int64_t id) {
  Seq& s = seq(id);
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) release(*it);
  seqs_.erase(id);
}

int64_t KvCache::block_refcount(int32_t block) const {
  GRPO_CHECK(block >= 0 && block < kc_.num_blocks,
             "kv cache: block " << block << " outside [0, " << kc_.num_blocks << ")");
  return refcount_[size_t(block)];
}

int64_t KvCache::shared_blocks() const {
  return std::count_if(refcount_.begin(), refcount_.end(), [](int32_t r) { return r > 1; });
}

int64_t KvCache::length(int64_t id) const { return seq(id).length; }

const std::vector<int32_t>& KvCache::blocks(int64_t id) const { return seq(id).blocks; }

int64_t KvCache::blocks_needed(int64_t id, int64_t n) const {
  GRPO_CHECK(n >= 0, "kv cache: blocks_needed for " << n << " tokens");
  const Seq& s = seq(id);
  const int64_t need_blocks = (s.length + n + kc_.block_size - 1) / kc_.block_size;
  const int64_t more = std::max<int64_t>(0, need_blocks - int64_t(s.blocks.size()));
  return more + int64_t(blocks_to_copy(refcount_, s.blocks, s.length, n, kc_.block_size).size());
}

void KvCache::reserve(int64_t id, int64_t n) {
  GRPO_CHECK(n >= 0, "kv cache: reserve of " << n << " tokens");
  Seq& s = seq(id);
  const std::vector<size_t> copies = blocks_to_copy(refcount_, s.blocks, s.length, n, kc_.block_size);
  const int64_t need_blocks = (s.length + n + kc_.block_size - 1) / kc_.block_size;
  const int64_t more = std::max<int64_t>(0, need_blocks - int64_t(s.blocks.size()));
  const int64_t total = more + int64_t(copies.size());
  if (total == 0) return;
  GRPO_CHECK(total <= free_blocks(), "kv cache: sequence " << id << " needs " << total << " more blocks of "
                                                           << kc_.block_size << " tokens but only " << free_blocks()
                                                           << " of " << kc_.num_blocks << " are free");
  auto take = [&] {
    const int32_t b = free_.back();
    free_.pop_back();
    refcount_[size_t(b)] = 1;
    return b;
  };
  // Copy on write: the sequence gets a private copy of each shared block it is about to write;
  // the other sequences keep the original.
  for (size_t i : copies) {
    const int32_t from = s.blocks[i], to = take();
    for (int64_t l = 0; l < layers_; ++l) {
      ops_->copy(k(l).rows(to, to + 1), k(l).rows(from, from + 1));
      ops_->copy(v(l).rows(to, to + 1), v(l).rows(from, from + 1));
    }
    release(from);
    s.blocks[i] = to;
  }
  for (int64_t i = 0; i < more; ++i) s.blocks.push_back(take());
}

void KvCache::advance(int64_t id, int64_t n) {
  Seq& s = seq(id);
  GRPO_CHECK(n >= 0 && s.length + n <= int64_t(s.blocks.size()) * kc_.block_size,
             "kv cache: advancing sequence " << id << " by " << n << " tokens past its "
                                             << int64_t(s.blocks.size()) * kc_.block_size << " reserved slots");
  s.length += n;
}

void KvCache::truncate(int64_t id, int64_t length) {
  Seq& s = seq(id);
  GRPO_CHECK(length >= 0 && length <= s.length,
             "kv cache: truncating sequence " << id << " of length " << s.length << " to " << length);
  s.length = length;
  const size_t keep = size_t((length + kc_.block_size - 1) / kc_.block_size);
  while (s.blocks.size() > keep) {
    release(s.blocks.back());
    s.blocks.pop_back();
  }
}

int32_t KvCache::slot(int64_t id, int64_t pos) const {
  const Seq& s = seq(id);
  GRPO_CHECK(pos >= 0 && pos < int64_t(s.blocks.size()) * kc_.block_size,
             "kv cache: position " << pos << " of sequence " << id << " is not reserved");
  return int32_t(int64_t(s.blocks[size_t(pos / kc_.block_size)]) * kc_.block_size + pos % kc_.block_size);
}

}  // namespace grpo
