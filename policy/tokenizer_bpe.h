// The BPE model of a tokenizer.json: vocab, merges by rank, and the per-word merge loop with a
// bounded cache of recent words.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "policy/tokenizer.h"

namespace grpo {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
using VocabMap = std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>>;

// The unicode character ByteLevel uses for each byte (GPT-2's table: printable Latin-1
// bytes stand for themselves, the others are shifted to U+0100..U+0143), as UTF-8.
const std::array<std::string, 256>& byte_level_alphabet();

// Pair (left id, right id) -> (rank, merged id), open addressing.
class MergeTable {
 public:
  static constexpr uint32_t kNoRank = UINT32_MAX;
  void reserve(size_t n_merges);
  // Returns false if the pair was already present (its rank and merged id are replaced).
  bool insert(TokenId left, TokenId right, uint32_t rank, TokenId merged);
  // The rank of (left, right), or kNoRank; `*merged` gets the merged id.
  uint32_t find(TokenId left, TokenId right, TokenId* merged) const {
    const uint64_t key = pack(left, right);
    for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
      const Entry& e = entries_[slot];
      if (e.key == key) {
        *merged = e.merged;
        return e.rank;
      }
      if (e.key == kEmpty) return kNoRank;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t(0);
  struct Entry {
    uint64_t key = kEmpty;
    uint32_t rank = 0;
    TokenId merged = 0;
  };
  static uint64_t pack(TokenId a, TokenId b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t key) { return size_t((key * 0x9E3779B97F4A7C15ull) >> 20); }
  std::vector<Entry> entries_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

// Reused buffers of one encode call.
struct BpeScratch {
  std::vector<TokenId> symbols;
  std::vector<uint32_t> ranks;
  std::vector<TokenId> merged;
  std::string text;  // a word in the BPE alphabet (ignore_merges lookups)
  struct Node {
    TokenId id;
    int32_t prev, next;
  };
  std::vector<Node> nodes;
  struct Candidate {
    uint32_t rank;
    int32_t pos;
    TokenId left, right, merged;
  };
  std::vector<Candidate> heap;
};

class BpeModel {
 public:
  struct Options {
    bool byte_level = false;     // words are raw bytes mapped through byte_level_alphabet()
    bool ignore_merges = false;  // a word that is itself in the vocab is one token
    bool byte_fallback = false;  // unknown symbols become <0xHH> tokens
    std::optional<TokenId> unk;  // unknown symbols become this token (else they are dropped)
    bool fuse_unk = false;       // consecutive unknowns give one unk token
  };

  BpeModel() = default;
  // `vocab` maps token strings to ids; merges are (left, right) token strings in rank order.
  // `field` names the merges in errors (e.g. "tokenizer.json: model.merges").
  BpeModel(VocabMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options options,
           const std::string& field);

  // Appends the ids of one pre-token word.
  void encode_word(std::string_view word, std::vector<TokenId>& out, BpeScratch& scratch) const;
  // Applies the merges to `symbols` in place: the lowest rank first, the leftmost of equal
  // ranks first. `use_heap` picks the O(n log n) path (used above kHeapThreshold symbols; exposed so
  // tests can check both paths agree).
  void merge(std::vector<TokenId>& symbols, bool use_heap, BpeScratch& scratch) const;

  const VocabMap& vocab() const { return vocab_; }
  const Options& options() const { return options_; }
  size_t n_merges() const { return merges_.size(); }
  size_t cache_size() const;  // words cached now
  void clear_cache() const;

  static constexpr size_t kHeapThreshold = 128;
  static constexpr size_t kMaxCachedWordBytes = 64;
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheWordsPerShard = 8192;

 private:
  void initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const;
  void merge_small(std::vector<TokenId>& symbols, BpeScratch& scratch) const;
  void merge_heap(std::vector<TokenId>& symbols, BpeScratch& scratch) const;

  VocabMap vocab_;
  MergeTable merges_;
  Options options_;
  std::array<TokenId, 256> byte_ids_{};      // byte-level: id of each byte's symbol (-1 if absent)
  std::array<TokenId, 256> fallback_ids_{};  // id of <0xHH> (-1 if absent)

  // The word cache: kCacheShards open-addressing tables, each behind its own mutex. A slot
  // holds a word's hash and where its bytes and ids sit in the shard's arenas; a full shard
  // is emptied and starts over (bounded memory, no eviction bookkeeping).
  struct Slot {
    uint64_t hash = 0;  // 0: empty
    uint32_t key_offset = 0, ids_offset = 0;
    uint16_t key_size = 0, n_ids = 0;
  };
  struct Shard {
    std::mutex mutex;
    std::vector<Slot> slots;  // 2 * kCacheWordsPerShard, a power of two
    std::string keys;
    std::vector<TokenId> ids;
    size_t n_words = 0;
    void clear();
  };
  static uint64_t word_hash(std::string_view word);
  bool cache_find(std::string_view word, uint64_t hash, std::vector<TokenId>& out) const;
  void cache_insert(std::string_view word, uint64_t hash, const TokenId* ids, size_t n_ids) const;
  std::unique_ptr<Shard[]> cache_;
};

}  // namespace grpo
