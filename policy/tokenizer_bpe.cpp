#include "policy/tokenizer_bpe.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "core/error.h"
#include "policy/tokenizer_utf8.h"

namespace grpo {

const std::array<std::string, 256>& byte_level_alphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t shifted = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      utf8::append(t[b], printable ? b : shifted++);
    }
    return t;
  }();
  return table;
}

// ---- MergeTable ---------------------------------------------------------------------------

void MergeTable::reserve(size_t n_merges) {
  size_t cap = 16;
  while (cap < 2 * n_merges) cap *= 2;
  entries_.assign(cap, Entry{});
  mask_ = cap - 1;
  size_ = 0;
}

bool MergeTable::insert(TokenId left, TokenId right, uint32_t rank, TokenId merged) {
  GRPO_ASSERT(2 * (size_ + 1) <= entries_.size());
  const uint64_t key = pack(left, right);
  for (size_t slot = hash(key) & mask_;; slot = (slot + 1) & mask_) {
    Entry& e = entries_[slot];
    if (e.key == key) {
      e.rank = rank;
      e.merged = merged;
      return false;
    }
    if (e.key == kEmpty) {
      e = {key, rank, merged};
      ++size_;
      return true;
    }
  }
}

// ---- BpeModel -----------------------------------------------------------------------------

BpeModel::BpeModel(VocabMap vocab, const std::vector<std::pair<std::string, std::string>>& merges, Options options,
                   const std::string& field)
    : vocab_(std::move(vocab)), options_(options), cache_(std::make_unique<Shard[]>(kCacheShards)) {
  static_assert(kCacheShards == 16, "cache_find picks the shard from the top 4 bits of the hash");
  static_assert(kMaxCachedWordBytes < 65536, "Slot sizes are 16-bit");
  for (size_t sh = 0; sh < kCacheShards; ++sh) cache_[sh].slots.resize(2 * kCacheWordsPerShard);
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto& [left, right] = merges[r];
    const auto l = vocab_.find(left);
    GRPO_CHECK(l != vocab_.end(), field << "[" << r << "]: token \"" << left << "\" is not in model.vocab");
    const auto rt = vocab_.find(right);
    GRPO_CHECK(rt != vocab_.end(), field << "[" << r << "]: token \"" << right << "\" is not in model.vocab");
    joined.assign(left).append(right);
    const auto m = vocab_.find(joined);
    GRPO_CHECK(m != vocab_.end(), field << "[" << r << "]: merged token \"" << joined << "\" is not in model.vocab");
    // A repeated pair takes its last rank, as HF's map does when it is built.
    merges_.insert(l->second, rt->second, static_cast<uint32_t>(r), m->second);
  }
  const auto& alphabet = byte_level_alphabet();
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab_.find(alphabet[size_t(b)]);
    byte_ids_[size_t(b)] = it == vocab_.end() ? -1 : it->second;
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto fb = vocab_.find(std::string_view(name));
    fallback_ids_[size_t(b)] = fb == vocab_.end() ? -1 : fb->second;
  }
}

void BpeModel::initial_symbols(std::string_view word, std::vector<TokenId>& symbols) const {
  symbols.clear();
  bool last_unk = false;
  auto unknown = [&](std::string_view sym) {
    if (options_.byte_fallback) {
      bool all = true;
      for (char c : sym) all = all && fallback_ids_[static_cast<unsigned char>(c)] >= 0;
      if (all) {
        for (char c : sym) symbols.push_back(fallback_ids_[static_cast<unsigned char>(c)]);
        last_unk = false;
        return;
      }
    }
    if (options_.unk) {
      if (!(options_.fuse_unk && last_unk)) symbols.push_back(*options_.unk);
      last_unk = true;
    }
    // No unk token: HF drops the symbol; so do we.
  };
  if (options_.byte_level) {
    for (char c : word) {
      const TokenId id = byte_ids_[static_cast<unsigned char>(c)];
      if (id >= 0) {
        symbols.push_back(id);
        last_unk = false;
      } else {
        unknown(byte_level_alphabet()[static_cast<unsigned char>(c)]);
      }
    }
    return;
  }
  for (size_t i = 0; i < word.size();) {
    const size_t start = i;
    utf8::next(word, i);
    const std::string_view ch = word.substr(start, i - start);
    const auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      symbols.push_back(it->second);
      last_unk = false;
    } else {
      unknown(ch);
    }
  }
}

void BpeModel::merge_small(std::vector<TokenId>& symbols, BpeScratch& scratch) const {
  size_t n = symbols.size();
  if (n < 2) return;
  auto& ranks = scratch.ranks;
  auto& merged = scratch.merged;
  ranks.resize(n - 1);
  merged.resize(n - 1);
  TokenId* ids = symbols.data();
  for (size_t i = 0; i + 1 < n; ++i) ranks[i] = merges_.find(ids[i], ids[i + 1], &merged[i]);
  while (n > 1) {
    size_t best = 0;
    uint32_t best_rank = ranks[0];
    for (size_t i = 1; i + 1 < n; ++i)
      if (ranks[i] < best_rank) {
        best_rank = ranks[i];
        best = i;
      }
    if (best_rank == MergeTable::kNoRank) break;
    ids[best] = merged[best];
    // Drop symbol best+1 and pair best.
    std::copy(ids + best + 2, ids + n, ids + best + 1);
    std::copy(ranks.begin() + std::ptrdiff_t(best) + 1, ranks.begin() + std::ptrdiff_t(n) - 1,
              ranks.begin() + std::ptrdiff_t(best));
    std::copy(merged.begin() + std::ptrdiff_t(best) + 1, merged.begin() + std::ptrdiff_t(n) - 1,
              merged.begin() + std::ptrdiff_t(best));
    --n;
    if (best > 0) ranks[best - 1] = merges_.find(ids[best - 1], ids[best], &merged[best - 1]);
    if (best + 1 < n) ranks[best] = merges_.find(ids[best], ids[best + 1], &merged[best]);
  }
  symbols.resize(n);
}

void BpeModel::merge_heap(std::vector<TokenId>& symbols, BpeScratch& scratch) const {
  const int32_t n = static_cast<int32_t>(symbols.size());
  auto& nodes = scratch.nodes;
  nodes.resize(size_t(n));
  for (int32_t i = 0; i < n; ++i) nodes[size_t(i)] = {symbols[size_t(i)], i - 1, i + 1 < n ? i + 1 : -1};
  // Min-heap on (rank, position): the leftmost of equal ranks first.
  auto later = [](const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  };
  auto& heap = scratch.heap;
  heap.clear();
  auto push_pair = [&](int32_t pos) {
    const int32_t next = nodes[size_t(pos)].next;
    if (next < 0) return;
    TokenId m;
    const uint32_t rank = merges_.find(nodes[size_t(pos)].id, nodes[size_t(next)].id, &m);
    if (rank == MergeTable::kNoRank) return;
    heap.push_back({rank, pos, nodes[size_t(pos)].id, nodes[size_t(next)].id, m});
    std::push_heap(heap.begin(), heap.end(), later);
  };
  for (int32_t i = 0; i + 1 < n; ++i) push_pair(i);
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), later);
    const BpeScratch::Candidate c = heap.back();
    heap.pop_back();
    BpeScratch::Node& left = nodes[size_t(c.pos)];
    // Stale entry: the left symbol was merged away or changed, or its right neighbour did.
    if (left.id != c.left || left.next < 0 || nodes[size_t(left.next)].id != c.right) continue;
    const int32_t right = left.next;
    left.id = c.merged;
    left.next = nodes[size_t(right)].next;
    if (left.next >= 0) nodes[size_t(left.next)].prev = c.pos;
    nodes[size_t(right)].id = -1;  // dead
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(c.pos);
  }
  size_t out = 0;
  for (int32_t i = 0; i >= 0 && i < n; i = nodes[size_t(i)].next) symbols[out++] = nodes[size_t(i)].id;
  symbols.resize(out);
}

void BpeModel::merge(std::vector<TokenId>& symbols, bool use_heap, BpeScratch& scratch) const {
  if (use_heap)
    merge_heap(symbols, scratch);
  else
    merge_small(symbols, scratch);
}

void BpeModel::encode_word(std::string_view word, std::vector<TokenId>& out, BpeScratch& scratch) const {
  if (word.empty()) return;
  if (options_.byte_level && word.size() == 1) {
    const TokenId id = byte_ids_[static_cast<unsigned char>(word[0])];
    if (id >= 0) {
      out.push_back(id);
      return;
    }
  }
  const bool cacheable = cache_ && word.size() <= kMaxCachedWordBytes;
  const uint64_t hash = cacheable ? word_hash(word) : 0;
  if (cacheable && cache_find(word, hash, out)) return;
  const size_t first = out.size();
  bool whole = false;
  if (options_.ignore_merges) {
    std::string_view key = word;
    if (options_.byte_level) {
      scratch.text.clear();
      for (char c : word) scratch.text += byte_level_alphabet()[static_cast<unsigned char>(c)];
      key = scratch.text;
    }
    const auto it = vocab_.find(key);
    if (it != vocab_.end()) {
      out.push_back(it->second);
      whole = true;
    }
  }
  if (!whole) {
    initial_symbols(word, scratch.symbols);
    merge(scratch.symbols, scratch.symbols.size() > kHeapThreshold, scratch);
    out.insert(out.end(), scratch.symbols.begin(), scratch.symbols.end());
  }
  if (cacheable) cache_insert(word, hash, out.data() + first, out.size() - first);
}

// ---- word cache ---------------------------------------------------------------------------

uint64_t BpeModel::word_hash(std::string_view word) {
  // Multiply-xorshift over 8-byte blocks: words are short, so this beats a general hash.
  const char* p = word.data();
  const size_t n = word.size();
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
  }
  if (i < n) {
    uint64_t w = 0;
    std::memcpy(&w, p + i, n - i);
    h = (h ^ w) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 32;
  return h | 1;  // never 0 (the empty slot)
}

void BpeModel::Shard::clear() {
  std::fill(slots.begin(), slots.end(), Slot{});
  keys.clear();
  ids.clear();
  n_words = 0;
}

bool BpeModel::cache_find(std::string_view word, uint64_t hash, std::vector<TokenId>& out) const {
  Shard& shard = cache_[hash >> 60];
  std::lock_guard<std::mutex> lock(shard.mutex);
  const size_t mask = shard.slots.size() - 1;
  for (size_t i = size_t(hash) & mask;; i = (i + 1) & mask) {
    const Slot& s = shard.slots[i];
    if (s.hash == 0) return false;
    if (s.hash == hash && s.key_size == word.size() &&
        std::memcmp(shard.keys.data() + s.key_offset, word.data(), word.size()) == 0) {
      out.insert(out.end(), shard.ids.begin() + s.ids_offset, shard.ids.begin() + s.ids_offset + s.n_ids);
      return true;
    }
  }
}

void BpeModel::cache_insert(std::string_view word, uint64_t hash, const TokenId* ids, size_t n_ids) const {
  Shard& shard = cache_[hash >> 60];
  std::lock_guard<std::mutex> lock(shard.mutex);
  if (shard.n_words >= kCacheWordsPerShard) shard.clear();  // bounded: start over when full
  const size_t mask = shard.slots.size() - 1;
  size_t i = size_t(hash) & mask;
  for (;; i = (i + 1) & mask) {
    const Slot& s = shard.slots[i];
    if (s.hash == 0) break;
    if (s.hash == hash && s.key_size == word.size() &&
        std::memcmp(shard.keys.data() + s.key_offset, word.data(), word.size()) == 0)
      return;  // another thread cached it meanwhile
  }
  Slot& slot = shard.slots[i];
  slot.hash = hash;
  slot.key_offset = static_cast<uint32_t>(shard.keys.size());
  slot.key_size = static_cast<uint16_t>(word.size());
  slot.ids_offset = static_cast<uint32_t>(shard.ids.size());
  slot.n_ids = static_cast<uint16_t>(n_ids);
  shard.keys.append(word);
  shard.ids.insert(shard.ids.end(), ids, ids + n_ids);
  ++shard.n_words;
}

size_t BpeModel::cache_size() const {
  size_t n = 0;
  if (!cache_) return 0;
  for (size_t s = 0; s < kCacheShards; ++s) {
    std::lock_guard<std::mutex> lock(cache_[s].mutex);
    n += cache_[s].n_words;
  }
  return n;
}

void BpeModel::clear_cache() const {
  if (!cache_) return;
  for (size_t s = 0; s < kCacheShards; ++s) {
    std::lock_guard<std::mutex> lock(cache_[s].mutex);
    cache_[s].clear();
  }
}

}  // namespace grpo
