#include "policy/kv_cache.h"

#include "core/error.h"

namespace grpo {

size_t KvCache::bytes_needed(const ModelConfig& cfg, const KvCacheConfig& kc) {
  return size_t(2) * size_t(cfg.num_hidden_layers) * size_t(kc.num_blocks) * size_t(kc.block_size) *
         size_t(cfg.num_key_value_heads) * size_t(cfg.head_dim) * sizeof(float);
}

KvCache::KvCache(Ops& ops, const ModelConfig& cfg, const KvCacheConfig& kc)
    : kc_(kc), layers_(cfg.num_hidden_layers), kv_heads_(cfg.num_key_value_heads), head_dim_(cfg.head_dim) {
  GRPO_CHECK(kc.num_blocks > 0 && kc.num_blocks <= (int64_t(1) << 30),
             "kv cache: num_blocks is " << kc.num_blocks << ", expected 1 to 2^30");
  GRPO_CHECK(kc.block_size > 0 && kc.block_size <= 4096,
             "kv cache: block_size is " << kc.block_size << ", expected 1 to 4096");
  GRPO_CHECK(kc.num_blocks * kc.block_size <= (int64_t(1) << 31) - 1,
             "kv cache: num_blocks * block_size = " << kc.num_blocks * kc.block_size << " slots overflow i32");
  buffer_ = Buffer(ops.allocator(), bytes_needed(cfg, kc));
  buffer_.zero();
  free_.reserve(size_t(kc.num_blocks));
  for (int64_t b = kc.num_blocks - 1; b >= 0; --b) free_.push_back(int32_t(b));
}

Tensor KvCache::k(int64_t layer) const {
  GRPO_CHECK(layer >= 0 && layer < layers_, "kv cache: layer " << layer << " outside [0, " << layers_ << ")");
  const size_t per = size_t(kc_.num_blocks * kc_.block_size * kv_heads_ * head_dim_) * sizeof(float);
  return buffer_.view(DType::f32, {kc_.num_blocks, kc_.block_size, kv_heads_, head_dim_}, size_t(2 * layer) * per);
}

Tensor KvCache::v(int64_t layer) const {
  GRPO_CHECK(layer >= 0 && layer < layers_, "kv cache: layer " << layer << " outside [0, " << layers_ << ")");
  const size_t per = size_t(kc_.num_blocks * kc_.block_size * kv_heads_ * head_dim_) * sizeof(float);
  return buffer_.view(DType::f32, {kc_.num_blocks, kc_.block_size, kv_heads_, head_dim_},
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

void KvCache::remove_sequence(int64_t id) {
  Seq& s = seq(id);
  for (auto it = s.blocks.rbegin(); it != s.blocks.rend(); ++it) free_.push_back(*it);
  seqs_.erase(id);
}

int64_t KvCache::length(int64_t id) const { return seq(id).length; }

const std::vector<int32_t>& KvCache::blocks(int64_t id) const { return seq(id).blocks; }

void KvCache::reserve(int64_t id, int64_t n) {
  GRPO_CHECK(n >= 0, "kv cache: reserve of " << n << " tokens");
  Seq& s = seq(id);
  const int64_t need_blocks = (s.length + n + kc_.block_size - 1) / kc_.block_size;
  const int64_t more = need_blocks - int64_t(s.blocks.size());
  if (more <= 0) return;
  GRPO_CHECK(more <= free_blocks(), "kv cache: sequence " << id << " needs " << more << " more blocks of "
                                                          << kc_.block_size << " tokens but only " << free_blocks()
                                                          << " of " << kc_.num_blocks << " are free");
  for (int64_t i = 0; i < more; ++i) {
    s.blocks.push_back(free_.back());
    free_.pop_back();
  }
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
    free_.push_back(s.blocks.back());
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
