// KvCache: a paged key/value cache for Model::prefill / decode_step.
//
// A pool of num_blocks blocks of block_size token slots per layer, for K and V:
//   k(layer), v(layer)  [num_blocks, block_size, Hkv, D] of KvCacheConfig::dtype (f32, or bf16
//                       for a bf16 model; Ops::kv_cache_write layout)
// and, per sequence, a block table (the pool blocks holding its positions, in order) and its
// cached length. Token at position p of a sequence lives in slot
//   blocks[p / block_size] * block_size + p % block_size.
// Blocks come from a free list and return to it when no sequence uses them any more. Blocks are
// reference-counted: fork_sequence() gives a new sequence the same blocks (the prompt of a
// group of samples is cached once), and a shared block that is only partly filled is copied
// before a sequence writes into it (copy on write), so sequences never see each other's tokens.
// Bookkeeping lives on the host; only K and V are on the device.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "core/buffer.h"
#include "kernels/ops.h"
#include "policy/model_config.h"

namespace grpo {

struct KvCacheConfig {
  int64_t num_blocks = 0;   // pool size (blocks per layer)
  int64_t block_size = 16;  // token slots per block
  DType dtype = DType::f32; // of K and V: the model's activation dtype (Model::dtype())
};

class KvCache {
 public:
  KvCache(Ops& ops, const ModelConfig& cfg, const KvCacheConfig& kc);

  // Device bytes a cache of this shape needs (K and V of every layer).
  static size_t bytes_needed(const ModelConfig& cfg, const KvCacheConfig& kc);

  int64_t num_layers() const { return layers_; }
  int64_t block_size() const { return kc_.block_size; }
  int64_t num_blocks() const { return kc_.num_blocks; }
  DType dtype() const { return kc_.dtype; }
  int64_t free_blocks() const { return int64_t(free_.size()); }
  Tensor k(int64_t layer) const;
  Tensor v(int64_t layer) const;

  // A new, empty sequence; returns its id (ids are never reused).
  int64_t add_sequence();
  // A new sequence holding the same cached tokens as `id`, sharing its blocks (each gains a
  // reference; nothing is copied). Returns the new id.
  int64_t fork_sequence(int64_t id);
  // Drops the sequence's references; blocks nobody references return to the pool. Unknown
  // ids are an error.
  void remove_sequence(int64_t id);
  // Sequences referencing a pool block (0 when free).
  int64_t block_refcount(int32_t block) const;
  // Pool blocks referenced by more than one sequence.
  int64_t shared_blocks() const;
  bool has_sequence(int64_t id) const { return seqs_.count(id) != 0; }
  int64_t num_sequences() const { return int64_t(seqs_.size()); }
  // Tokens cached for the sequence.
  int64_t length(int64_t id) const;
  // Its block table (pool block of each block_size positions).
  const std::vector<int32_t>& blocks(int64_t id) const;
  // Makes room for n more tokens, taking blocks from the pool; when the sequence's last block
  // is shared and partly filled, it is first replaced by a private copy (K and V of every
  // layer, copied on the device). Throws naming the blocks needed and free when the pool is
  // exhausted (nothing is taken or copied then).
  void reserve(int64_t id, int64_t n);
  // Blocks reserve(id, n) would take from the pool (the copy-on-write block included).
  int64_t blocks_needed(int64_t id, int64_t n) const;
  // Marks n more tokens (already reserved) as cached.
  void advance(int64_t id, int64_t n);
  // Drops the tokens past `length` (<= the cached length), releasing whole blocks past it
  // (rolling a sequence back, e.g. to re-decode from a prefix).
  void truncate(int64_t id, int64_t length);
  // Cache slot of position `pos` of the sequence (reserved positions only).
  int32_t slot(int64_t id, int64_t pos) const;

 private:
  struct Seq {
    int64_t length = 0;
    std::vector<int32_t> blocks;
  };
  const Seq& seq(int64_t id) const;
  Seq& seq(int64_t id);

  // Drops one reference to `block`; a block nobody references returns to the pool.
  void release(int32_t block);

  Ops* ops_;  // for the copy-on-write copies
  KvCacheConfig kc_;
  int64_t layers_ = 0, kv_heads_ = 0, head_dim_ = 0;
  Buffer buffer_;
  std::vector<int32_t> free_;      // stack of free blocks
  std::vector<int32_t> refcount_;  // [num_blocks]: sequences referencing each block
  std::unordered_map<int64_t, Seq> seqs_;
  int64_t next_id_ = 0;
};

}  // namespace grpo
