// KvCache block sharing: fork_sequence, reference counts, copy on write of a shared partly
// filled block (K and V of every layer, the original untouched), release at refcount 0,
// truncation of shared sequences, and the errors; then decoding from a forked prompt against
// decoding from a prompt prefilled on its own.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "policy/kv_cache.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

// A cache whose every K/V element holds a distinct value, so a copy is traceable.
struct FilledCache {
  ModelConfig cfg = model_preset("qwen3", "tiny");
  std::unique_ptr<Ops> ops = make_cpu_ops();
  KvCache cache;
  FilledCache(int64_t num_blocks, int64_t block_size)
      : cache(*ops, cfg, KvCacheConfig{num_blocks, block_size}) {
    float next = 1.0f;
    for (int64_t l = 0; l < cache.num_layers(); ++l)
      for (const Tensor& t : {cache.k(l), cache.v(l)}) {
        float* p = t.ptr<float>();
        for (int64_t i = 0; i < t.numel(); ++i) p[i] = next++;
      }
  }
  // K and V of `block` in every layer.
  std::vector<float> block_data(int32_t block) const {
    std::vector<float> out;
    for (int64_t l = 0; l < cache.num_layers(); ++l)
      for (const Tensor& t : {cache.k(l), cache.v(l)}) {
        const Tensor b = t.rows(block, block + 1);
        const float* p = b.ptr<float>();
        out.insert(out.end(), p, p + b.numel());
      }
    return out;
  }
  void fill(int64_t id, int64_t n) {
    cache.reserve(id, n);
    cache.advance(id, n);
  }
};

TEST(KvCacheSharing, ForkSharesEveryCachedBlock) {
  FilledCache f(10, 4);
  KvCache& c = f.cache;
  const int64_t a = c.add_sequence();
  f.fill(a, 6);  // blocks: one full, one with 2 of 4 slots
  c.reserve(a, 3);  // reserved past the length: a third block, not shared by a fork
  ASSERT_EQ(c.blocks(a).size(), 3u);
  const int64_t free_before = c.free_blocks();
  const int64_t b = c.fork_sequence(a);
  EXPECT_NE(a, b);
  EXPECT_EQ(c.length(b), 6);
  EXPECT_EQ(c.blocks(b), std::vector<int32_t>(c.blocks(a).begin(), c.blocks(a).begin() + 2));
  EXPECT_EQ(c.free_blocks(), free_before);  // nothing allocated
  EXPECT_EQ(c.block_refcount(c.blocks(a)[0]), 2);
  EXPECT_EQ(c.block_refcount(c.blocks(a)[1]), 2);
  EXPECT_EQ(c.block_refcount(c.blocks(a)[2]), 1);
  EXPECT_EQ(c.shared_blocks(), 2);
  const int64_t d = c.fork_sequence(b);
  EXPECT_EQ(c.block_refcount(c.blocks(a)[0]), 3);
  EXPECT_EQ(c.shared_blocks(), 2);
  EXPECT_EQ(c.num_sequences(), 3);
  EXPECT_EQ(c.slot(d, 5), c.slot(a, 5));
}

TEST(KvCacheSharing, CopyOnWriteCopiesEveryLayerAndLeavesTheOriginal) {
  FilledCache f(10, 4);
  KvCache& c = f.cache;
  const int64_t a = c.add_sequence();
  f.fill(a, 6);
  const int64_t b = c.fork_sequence(a);
  const int32_t full = c.blocks(a)[0], partial = c.blocks(a)[1];
  const std::vector<float> original = f.block_data(partial);
  EXPECT_EQ(c.blocks_needed(b, 1), 1);  // the copy; the block has room
  EXPECT_EQ(c.blocks_needed(b, 2), 1);
  EXPECT_EQ(c.blocks_needed(b, 3), 2);  // the copy and a new block
  EXPECT_EQ(c.blocks_needed(b, 0), 0);
  const int64_t free_before = c.free_blocks();
  c.reserve(b, 1);
  EXPECT_EQ(c.free_blocks(), free_before - 1);
  const int32_t copy = c.blocks(b)[1];
  EXPECT_NE(copy, partial);
  EXPECT_EQ(c.blocks(b)[0], full);  // the full block stays shared
  EXPECT_EQ(c.blocks(a)[1], partial);
  EXPECT_EQ(c.block_refcount(full), 2);
  EXPECT_EQ(c.block_refcount(partial), 1);
  EXPECT_EQ(c.block_refcount(copy), 1);
  EXPECT_EQ(c.shared_blocks(), 1);
  EXPECT_EQ(f.block_data(copy), original);     // K and V of every layer copied
  EXPECT_EQ(f.block_data(partial), original);  // the original untouched
  // Writing b's copy leaves a's block alone; a now owns its block alone and writes in place.
  c.k(1).rows(copy, copy + 1).ptr<float>()[0] = -1.0f;
  EXPECT_EQ(f.block_data(partial), original);
  EXPECT_EQ(c.blocks_needed(a, 2), 0);
  c.reserve(a, 2);
  EXPECT_EQ(c.blocks(a)[1], partial);
  EXPECT_EQ(c.free_blocks(), free_before - 1);
  // reserve is idempotent once the copy is made.
  c.reserve(b, 1);
  EXPECT_EQ(c.blocks(b)[1], copy);
}

TEST(KvCacheSharing, FullSharedBlockIsNotCopied) {
  FilledCache f(10, 4);
  KvCache& c = f.cache;
  const int64_t a = c.add_sequence();
  f.fill(a, 8);  // two full blocks
  const int64_t b = c.fork_sequence(a);
  EXPECT_EQ(c.blocks_needed(b, 1), 1);  // a new block, no copy
  c.reserve(b, 1);
  EXPECT_EQ(c.shared_blocks(), 2);
  EXPECT_EQ(c.blocks(b).size(), 3u);
  EXPECT_EQ(c.block_refcount(c.blocks(b)[2]), 1);
}

TEST(KvCacheSharing, RemoveReturnsBlocksOnlyWhenUnreferenced) {
  FilledCache f(10, 4);
  KvCache& c = f.cache;
  const int64_t a = c.add_sequence();
  f.fill(a, 6);
  const int64_t b = c.fork_sequence(a);
  const int64_t d = c.fork_sequence(a);
  c.reserve(d, 3);  // d: copy of block 1 and a new block
  EXPECT_EQ(c.free_blocks(), 10 - 4);
  c.remove_sequence(a);
  EXPECT_EQ(c.free_blocks(), 10 - 4);  // every block of a is still referenced
  EXPECT_EQ(c.block_refcount(c.blocks(b)[0]), 2);
  EXPECT_EQ(c.block_refcount(c.blocks(b)[1]), 1);
  c.remove_sequence(d);
  EXPECT_EQ(c.free_blocks(), 10 - 2);  // d's copy and new block return; block 0 is b's
  EXPECT_EQ(c.block_refcount(c.blocks(b)[0]), 1);
  c.remove_sequence(b);
  EXPECT_EQ(c.free_blocks(), 10);
  EXPECT_EQ(c.shared_blocks(), 0);
  for (int32_t blk = 0; blk < 10; ++blk) EXPECT_EQ(c.block_refcount(blk), 0);
}

TEST(KvCacheSharing, TruncateWithSharedBlocks) {
  FilledCache f(10, 4);
  KvCache& c = f.cache;
  const int64_t a = c.add_sequence();
  f.fill(a, 10);  // 3 blocks, the last half full
  const int64_t b = c.fork_sequence(a);
  const std::vector<int32_t> blocks = c.blocks(a);
  c.truncate(b, 5);  // b keeps blocks 0 and 1 (block 1 now partly filled for b)
  EXPECT_EQ(c.blocks(b), std::vector<int32_t>(blocks.begin(), blocks.begin() + 2));
  EXPECT_EQ(c.block_refcount(blocks[2]), 1);  // still a's
  EXPECT_EQ(c.free_blocks(), 7);
  const std::vector<float> a_block1 = f.block_data(blocks[1]);
  EXPECT_EQ(c.blocks_needed(b, 1), 1);  // block 1 is shared and b writes at offset 1: copy
  c.reserve(b, 1);
  EXPECT_NE(c.blocks(b)[1], blocks[1]);
  EXPECT_EQ(f.block_data(c.blocks(b)[1]), a_block1);
  EXPECT_EQ(c.blocks(a), blocks);
  c.truncate(a, 0);
  EXPECT_TRUE(c.blocks(a).empty());
  EXPECT_EQ(c.block_refcount(blocks[0]), 1);  // b's
  EXPECT_EQ(c.block_refcount(blocks[1]), 0);
  EXPECT_EQ(c.block_refcount(blocks[2]), 0);
  EXPECT_EQ(c.free_blocks(), 8);
}

TEST(KvCacheSharing, Errors) {
  FilledCache f(2, 4);
  KvCache& c = f.cache;
  EXPECT_THROW(c.fork_sequence(7), Error);
  EXPECT_THROW(c.remove_sequence(7), Error);
  EXPECT_THROW(c.blocks_needed(7, 1), Error);
  EXPECT_THROW(c.block_refcount(-1), Error);
  EXPECT_THROW(c.block_refcount(2), Error);
  const int64_t a = c.add_sequence();
  EXPECT_THROW(c.blocks_needed(a, -1), Error);
  f.fill(a, 3);
  const int64_t b = c.fork_sequence(a);
  // 5 tokens need 2 blocks for b: a copy of the shared block and a new one; 1 is free.
  EXPECT_EQ(c.blocks_needed(b, 2), 2);
  const std::vector<float> before = f.block_data(c.blocks(a)[0]);
  try {
    c.reserve(b, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs 2 more blocks"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("only 1 of 2 are free"), std::string::npos) << e.what();
  }
  // Nothing taken or copied.
  EXPECT_EQ(c.free_blocks(), 1);
  EXPECT_EQ(c.blocks(b), c.blocks(a));
  EXPECT_EQ(c.block_refcount(c.blocks(a)[0]), 2);
  EXPECT_EQ(f.block_data(c.blocks(a)[0]), before);
  c.reserve(b, 1);  // the copy alone fits
  EXPECT_EQ(c.free_blocks(), 0);
  EXPECT_EQ(c.shared_blocks(), 0);
}

// Two samples decoding different tokens from one forked prompt give exactly the logits of two
// sequences that each prefilled the prompt themselves (the copy on write keeps them apart).
TEST(KvCacheSharing, DecodingFromAForkMatchesOwnPrefill) {
  const ModelConfig cfg = test_config("qwen3_moe");
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 16;
  limits.max_seqs = 2;
  limits.training = false;
  limits.max_decode_tokens = 16;
  limits.max_decode_seqs = 2;
  Model model(cfg, *ops, limits);
  randomize_weights(model, 5);
  const int64_t V = cfg.vocab_size;
  KvCache shared(*ops, cfg, KvCacheConfig{16, 4});
  KvCache own(*ops, cfg, KvCacheConfig{16, 4});
  const std::vector<int32_t> prompt = {3, 77, 140, 9, 255, 31};  // 1.5 blocks
  HostI p({6});
  std::copy(prompt.begin(), prompt.end(), p.v.begin());
  HostF logits({1, V});
  const std::vector<int64_t> n6 = {6};
  const std::vector<int64_t> a = {shared.add_sequence()};
  model.prefill(shared, a, p, n6, logits);
  const std::vector<int64_t> b = {shared.fork_sequence(a[0])};
  const std::vector<std::vector<int32_t>> next = {{11, 12, 13, 14}, {200, 201, 202, 203}};
  std::vector<std::vector<float>> forked(2), alone(2);
  // One sequence per call on both sides, so the arithmetic is identical (a batch of two rows
  // may round differently in the BLAS GEMM; see tests/rollout/engine_test_util.h).
  for (int step = 0; step < 4; ++step)
    for (int s = 0; s < 2; ++s) {
      HostI t({1});
      t[0] = next[size_t(s)][size_t(step)];
      const std::vector<int64_t> id = {s == 0 ? a[0] : b[0]};
      model.decode_step(shared, id, t, logits);
      forked[size_t(s)].insert(forked[size_t(s)].end(), logits.v.begin(), logits.v.end());
    }
  EXPECT_EQ(shared.shared_blocks(), 1);  // the full prompt block
  for (int s = 0; s < 2; ++s) {
    const std::vector<int64_t> id = {own.add_sequence()};
    model.prefill(own, id, p, n6, logits);
    for (int step = 0; step < 4; ++step) {
      HostI t({1});
      t[0] = next[size_t(s)][size_t(step)];
      model.decode_step(own, id, t, logits);
      alone[size_t(s)].insert(alone[size_t(s)].end(), logits.v.begin(), logits.v.end());
    }
  }
  EXPECT_EQ(forked[0], alone[0]);
  EXPECT_EQ(forked[1], alone[1]);
  EXPECT_NE(forked[0], forked[1]);
}

}  // namespace
}  // namespace grpo::test
