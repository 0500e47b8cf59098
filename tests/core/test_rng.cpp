// Philox4x32-10 against the Random123 known-answer vectors (tests/kat_vectors of the
// reference distribution), plus the stream/offset addressing and uniform statistics.
#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

#include "core/rng.h"

namespace grpo {
namespace {

TEST(Philox, KnownAnswerVectors) {
  struct Kat {
    PhiloxCounter ctr;
    PhiloxKey key;
    PhiloxCounter expect;
  };
  const Kat kats[] = {
      {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
      {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
       {0xffffffff, 0xffffffff},
       {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
      {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
       {0xa4093822, 0x299f31d0},
       {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
  };
  for (const auto& k : kats) EXPECT_EQ(philox4x32_10(k.ctr, k.key), k.expect);
  // Usable at compile time (the CUDA backend shares this code).
  static_assert(philox4x32_10({0, 0, 0, 0}, {0, 0})[0] == 0x6627e8d5u);
}

TEST(Philox, BlockAddressing) {
  // (seed, stream, offset) maps onto key = seed, counter = (offset, stream) as documented.
  const uint64_t seed = 0x0123456789abcdefull, stream = 0xfedcba9876543210ull, offset = 0x1122334455667788ull;
  PhiloxCounter direct = philox4x32_10({0x55667788u, 0x11223344u, 0x76543210u, 0xfedcba98u}, {0x89abcdefu, 0x01234567u});
  EXPECT_EQ(philox_block(seed, stream, offset), direct);
}

TEST(Philox, StreamWalksBlocksInOrderAndResumesFromOffset) {
  PhiloxStream s(7, 3);
  std::vector<uint32_t> words;
  for (int i = 0; i < 12; ++i) words.push_back(s.next_u32());
  for (uint64_t b = 0; b < 3; ++b) {
    PhiloxCounter blk = philox_block(7, 3, b);
    for (int j = 0; j < 4; ++j) EXPECT_EQ(words[b * 4 + j], blk[j]);
  }
  EXPECT_EQ(s.offset(), 3u);
  PhiloxStream resumed(7, 3, 2);
  EXPECT_EQ(resumed.next_u32(), words[8]);
  // Different streams and seeds give different numbers.
  EXPECT_NE(philox_block(7, 4, 0), philox_block(7, 3, 0));
  EXPECT_NE(philox_block(8, 3, 0), philox_block(7, 3, 0));
}

TEST(Philox, UniformsLieInUnitIntervalWithCorrectMoments) {
  PhiloxStream s(42, 0);
  const int n = 200000;
  double sum = 0, sum2 = 0;
  int bins[10] = {};
  for (int i = 0; i < n; ++i) {
    float u = s.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
    sum2 += double(u) * u;
    bins[int(u * 10)]++;
  }
  // Mean 1/2 and variance 1/12; 5-sigma bounds for n = 200000.
  EXPECT_NEAR(sum / n, 0.5, 5 * std::sqrt(1.0 / 12 / n));
  EXPECT_NEAR(sum2 / n - (sum / n) * (sum / n), 1.0 / 12, 0.002);
  // Chi-square over 10 equal bins, 9 degrees of freedom: critical value 27.88 at p = 0.001.
  double chi2 = 0;
  for (int b : bins) chi2 += (b - n / 10.0) * (b - n / 10.0) / (n / 10.0);
  EXPECT_LT(chi2, 27.88);
  EXPECT_EQ(uniform_from_u32(0xffffffffu), 1.0f - 5.9604644775390625e-08f);
  EXPECT_EQ(uniform_from_u32(0u), 0.0f);
}

}  // namespace
}  // namespace grpo
