// BPE merging: the O(n^2) path for short words and the heap path for long ones agree with a
// plain reference on random merge tables; the word cache stays bounded and never changes
// results.
#include <map>
#include <random>
#include <string>
#include <vector>

#include "policy/tokenizer_bpe.h"
#include "tests/policy/tokenizer_test_util.h"

namespace grpo {
namespace {

struct RandomBpe {
  VocabMap vocab;
  std::vector<std::string> tokens;
  std::vector<std::pair<std::string, std::string>> merges;
};

// An alphabet of five letters and merges of random token pairs, in random rank order.
RandomBpe random_bpe(uint32_t seed, int n_merges) {
  std::mt19937 rng(seed);
  RandomBpe b;
  for (char c = 'a'; c <= 'e'; ++c) {
    b.vocab.emplace(std::string(1, c), TokenId(b.tokens.size()));
    b.tokens.emplace_back(1, c);
  }
  while (int(b.merges.size()) < n_merges) {
    const std::string l = b.tokens[rng() % b.tokens.size()];
    const std::string r = b.tokens[rng() % b.tokens.size()];
    if (l.size() + r.size() > 8) continue;
    bool seen = false;
    for (const auto& m : b.merges) seen = seen || (m.first == l && m.second == r);
    if (seen) continue;
    const std::string joined = l + r;
    if (!b.vocab.count(joined)) {
      b.vocab.emplace(joined, TokenId(b.tokens.size()));
      b.tokens.push_back(joined);
    }
    b.merges.emplace_back(l, r);
  }
  return b;
}

// Textbook BPE on strings: merge the lowest-ranked adjacent pair, leftmost first, until none.
std::vector<std::string> reference_merge(std::vector<std::string> symbols,
                                         const std::vector<std::pair<std::string, std::string>>& merges) {
  std::map<std::pair<std::string, std::string>, size_t> rank;
  for (size_t r = 0; r < merges.size(); ++r) rank.emplace(merges[r], r);
  for (;;) {
    size_t best = SIZE_MAX, at = 0;
    for (size_t i = 0; i + 1 < symbols.size(); ++i) {
      auto it = rank.find({symbols[i], symbols[i + 1]});
      if (it != rank.end() && it->second < best) {
        best = it->second;
        at = i;
      }
    }
    if (best == SIZE_MAX) return symbols;
    symbols[at] += symbols[at + 1];
    symbols.erase(symbols.begin() + std::ptrdiff_t(at) + 1);
  }
}

TEST(Bpe, SmallAndHeapPathsMatchReference) {
  BpeScratch scratch;
  size_t checked = 0;
  for (uint32_t seed = 1; seed <= 6; ++seed) {
    RandomBpe b = random_bpe(seed, 60);
    const std::vector<std::string> tokens = b.tokens;
    const auto merges = b.merges;
    BpeModel model(std::move(b.vocab), merges, {}, "merges");
    std::mt19937 rng(seed * 977);
    for (int w = 0; w < 150; ++w) {
      const size_t len = 1 + rng() % (w % 3 == 0 ? 300 : 40);
      std::vector<std::string> chars;
      std::vector<TokenId> ids;
      for (size_t i = 0; i < len; ++i) {
        const int c = int(rng() % 5);
        chars.emplace_back(1, char('a' + c));
        ids.push_back(c);
      }
      std::vector<std::string> want = reference_merge(chars, merges);
      for (bool heap : {false, true}) {
        std::vector<TokenId> got = ids;
        model.merge(got, heap, scratch);
        std::vector<std::string> got_text;
        for (TokenId id : got) got_text.push_back(tokens[size_t(id)]);
        ASSERT_EQ(got_text, want) << "seed " << seed << " word " << w << (heap ? " (heap)" : " (small)");
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 900u);
}

TEST(Bpe, CacheIsBoundedAndTransparent) {
  RandomBpe b = random_bpe(99, 80);
  const auto merges = b.merges;
  BpeModel::Options options;
  BpeModel model(std::move(b.vocab), merges, options, "merges");
  BpeScratch scratch;
  std::mt19937 rng(5);
  const size_t bound = BpeModel::kCacheShards * BpeModel::kCacheWordsPerShard;
  std::vector<std::string> words;
  for (size_t i = 0; i < bound + 5000; ++i) {
    std::string w;
    for (size_t k = 0, n = 4 + rng() % 12; k < n; ++k) w.push_back(char('a' + rng() % 5));
    words.push_back(std::move(w));
  }
  std::vector<TokenId> first, second, uncached;
  for (const std::string& w : words) model.encode_word(w, first, scratch);
  EXPECT_LE(model.cache_size(), bound);
  EXPECT_GT(model.cache_size(), 0u);
  for (const std::string& w : words) model.encode_word(w, second, scratch);
  model.clear_cache();
  EXPECT_EQ(model.cache_size(), 0u);
  for (const std::string& w : words) {
    std::vector<TokenId> ids;
    for (char c : w) ids.push_back(c - 'a');
    model.merge(ids, ids.size() > BpeModel::kHeapThreshold, scratch);
    uncached.insert(uncached.end(), ids.begin(), ids.end());
  }
  EXPECT_EQ(first, second);
  EXPECT_EQ(first, uncached);
}

TEST(Bpe, ByteLevelAlphabet) {
  const auto& a = byte_level_alphabet();
  EXPECT_EQ(a['A'], "A");
  EXPECT_EQ(a[' '], "\xC4\xA0");   // Ġ U+0120
  EXPECT_EQ(a['\n'], "\xC4\x8A");  // Ċ U+010A
  EXPECT_EQ(a[0xE9], "\xC3\xA9");  // é stands for itself
  EXPECT_EQ(a[0xAD], "\xC5\x83");  // the soft hyphen byte is shifted: U+0143
}

// Many threads encode at once (shared cache, per-thread scratch): same ids as one thread.
TEST(Bpe, BatchEncodeMatchesSequential) {
  GRPO_SKIP_WITHOUT_SHARED("qwen3");
  const Tokenizer tok = Tokenizer::from_dir(test::shared_tokenizers_dir() + "/qwen3");
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i)
    texts.push_back("doc " + std::to_string(i) + ": 机器学习 tokenizers are fun, aren't they? " +
                    std::string(size_t(i % 7), ' ') + "x=" + std::to_string(i * 7919));
  std::vector<std::vector<TokenId>> sequential;
  for (const std::string& t : texts) sequential.push_back(tok.encode(t));
  EXPECT_EQ(tok.encode_batch(texts, 4), sequential);
  EXPECT_EQ(tok.encode_batch(texts, 1), sequential);
}

}  // namespace
}  // namespace grpo
