// Varlen causal GQA attention (forward, backward), the paged KV-cache write and paged
// attention, against an fp64 reference written here.
//
// Tolerances (f32 kernels, fp64 reference; inputs O(1)):
//   * forward out and lse: relative L2 1e-5, each element within 1e-5 + 1e-5 * |ref|.
//     A score is a D-term f32 dot product and a row sums at most 33 softmax terms, a few
//     f32 ulps (6e-8) each; the kernel measures ~1e-7 relative L2, so 1e-5 leaves ~100x.
//   * backward vs central finite differences of the fp64 reference (step 1e-6: FD error
//     ~1e-9): relative L2 1e-4, each element within 2e-5 + 1e-4 * |ref|. The gradients go
//     through the op's own f32 out and lse and dk/dv sum over up to 4 heads x 17 rows;
//     measured ~2e-7.
//   * paged vs varlen attention: the same f32 math summed in a different order (measured
//     ~1e-7), so the forward tolerance. Packed vs alone: the same arithmetic on the same
//     values (bitwise equal today); 1e-6 leaves room for a different summation order.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "kernels/ops.h"
#include "tests/test_util.h"

namespace grpo {
namespace {

using test::HostF;
using test::HostI;

// A packed batch: sequence lengths, heads and head dimension, with random q, k, v.
struct Batch {
  std::vector<int> lens;
  int64_t T = 0, Hq = 0, Hkv = 0, D = 0;
  HostF q, k, v;
  HostI cu;
  float scale = 0.0f;

  Batch(std::vector<int> lens_, int64_t Hq_, int64_t Hkv_, int64_t D_, uint64_t seed)
      : lens(std::move(lens_)), Hq(Hq_), Hkv(Hkv_), D(D_) {
    T = std::accumulate(lens.begin(), lens.end(), int64_t(0));
    q = HostF({T, Hq, D});
    k = HostF({T, Hkv, D});
    v = HostF({T, Hkv, D});
    // Scores of O(1) after scaling, so the softmax is neither flat nor one-hot.
    test::fill_uniform(q.v, seed, -1.5f, 1.5f);
    test::fill_uniform(k.v, seed + 1, -1.5f, 1.5f);
    test::fill_uniform(v.v, seed + 2);
    cu = HostI({int64_t(lens.size()) + 1});
    for (size_t s = 0; s < lens.size(); ++s) cu[s + 1] = cu[s] + lens[s];
    scale = float(1.0 / std::sqrt(double(D)));
  }
};

// fp64 reference: plain loops over every (sequence, head, query row, key).
void ref_attention(const std::vector<double>& q, const std::vector<double>& k, const std::vector<double>& v,
                   const std::vector<int32_t>& cu, int64_t Hq, int64_t Hkv, int64_t D, double scale,
                   std::vector<double>& out, std::vector<double>& lse) {
  const int64_t T = cu.back();
  out.assign(size_t(T * Hq * D), 0.0);
  lse.assign(size_t(T * Hq), 0.0);
  std::vector<double> p;
  for (size_t s = 0; s + 1 < cu.size(); ++s) {
    for (int64_t h = 0; h < Hq; ++h) {
      const int64_t g = h / (Hq / Hkv);
      for (int64_t i = cu[s]; i < cu[s + 1]; ++i) {
        p.assign(size_t(i - cu[s] + 1), 0.0);
        double m = -INFINITY;
        for (int64_t j = cu[s]; j <= i; ++j) {
          double sc = 0;
          for (int64_t d = 0; d < D; ++d) sc += q[size_t((i * Hq + h) * D + d)] * k[size_t((j * Hkv + g) * D + d)];
          p[size_t(j - cu[s])] = sc * scale;
          m = std::max(m, sc * scale);
        }
        double l = 0;
        for (double& x : p) l += (x = std::exp(x - m));
        lse[size_t(i * Hq + h)] = m + std::log(l);
        for (int64_t j = cu[s]; j <= i; ++j)
          for (int64_t d = 0; d < D; ++d)
            out[size_t((i * Hq + h) * D + d)] += p[size_t(j - cu[s])] / l * v[size_t((j * Hkv + g) * D + d)];
      }
    }
  }
}

std::string describe(const Batch& b) {
  std::string s = "lens [";
  for (size_t i = 0; i < b.lens.size(); ++i) s += (i ? ", " : "") + std::to_string(b.lens[i]);
  return s + "], Hq " + std::to_string(b.Hq) + ", Hkv " + std::to_string(b.Hkv) + ", D " + std::to_string(b.D);
}

TEST(Attention, ForwardMatchesFp64ReferenceOnSeveralPackings) {
  auto ops = make_cpu_ops();
  struct Case {
    std::vector<int> lens;
    int64_t Hq, Hkv, D;
  };
  const Case cases[] = {
      {{33}, 4, 4, 8},                // one sequence, MHA
      {{1, 5, 0, 17, 33}, 4, 2, 12},  // odd lengths, an empty sequence in the middle, GQA 2
      {{17, 1, 0, 5}, 8, 2, 64},      // GQA 4, D 64
      {{5, 33, 1}, 4, 1, 12},         // all query heads share one kv head
      {{0, 7, 0}, 2, 2, 8},           // empty sequences at both ends
      {{20, 3}, 6, 3, 24},            // head dims: one full register tile of 16 and a tail of 8
  };
  uint64_t seed = 10;
  for (const Case& c : cases) {
    Batch b(c.lens, c.Hq, c.Hkv, c.D, seed += 10);
    HostF out({b.T, b.Hq, b.D}), lse({b.T, b.Hq});
    test::poison(out.v);
    test::poison(lse.v);
    ops->attention(out, lse, b.q, b.k, b.v, b.cu, b.scale);
    std::vector<double> rout, rlse;
    ref_attention(b.q.f64(), b.k.f64(), b.v.f64(), b.cu.v, b.Hq, b.Hkv, b.D, b.scale, rout, rlse);
    EXPECT_TRUE(test::close("out, " + describe(b), out.v, rout, 1e-5, 1e-5));
    EXPECT_TRUE(test::close("lse, " + describe(b), lse.v, rlse, 1e-5, 1e-5));
  }
}

TEST(Attention, BackwardMatchesFiniteDifferencesOfFp64Reference) {
  auto ops = make_cpu_ops();
  struct Case {
    std::vector<int> lens;
    int64_t Hq, Hkv, D;
  };
  const Case cases[] = {
      {{1, 5, 0, 17}, 4, 1, 8},  // GQA 4, empty sequence in the middle
      {{9, 4}, 4, 2, 12},        // GQA 2
      {{6, 0, 3}, 2, 2, 8},      // MHA
      {{7, 3}, 2, 1, 20},        // head dims: one full register tile of 16 and a tail of 4
  };
  uint64_t seed = 100;
  for (const Case& c : cases) {
    Batch b(c.lens, c.Hq, c.Hkv, c.D, seed += 10);
    HostF out({b.T, b.Hq, b.D}), lse({b.T, b.Hq});
    ops->attention(out, lse, b.q, b.k, b.v, b.cu, b.scale);
    HostF dout({b.T, b.Hq, b.D});
    test::fill_uniform(dout.v, seed + 5);
    HostF dq({b.T, b.Hq, b.D}), dk({b.T, b.Hkv, b.D}), dv({b.T, b.Hkv, b.D});
    // ASSIGNED gradients: poisoned outputs must be fully overwritten.
    test::poison(dq.v);
    test::poison(dk.v);
    test::poison(dv.v);
    ops->attention_backward(dq, dk, dv, dout, b.q, b.k, b.v, out, lse, b.cu, b.scale);

    const std::vector<double> q = b.q.f64(), k = b.k.f64(), v = b.v.f64(), w = dout.f64();
    const auto loss = [&](const std::vector<double>& q_, const std::vector<double>& k_,
                          const std::vector<double>& v_) {
      std::vector<double> o, l;
      ref_attention(q_, k_, v_, b.cu.v, b.Hq, b.Hkv, b.D, b.scale, o, l);
      return test::dot(w, o);
    };
    const auto gq = test::fd_gradient([&](const std::vector<double>& x) { return loss(x, k, v); }, q);
    const auto gk = test::fd_gradient([&](const std::vector<double>& x) { return loss(q, x, v); }, k);
    const auto gv = test::fd_gradient([&](const std::vector<double>& x) { return loss(q, k, x); }, v);
    EXPECT_TRUE(test::close("dq, " + describe(b), dq.v, gq, 1e-4, 2e-5));
    EXPECT_TRUE(test::close("dk, " + describe(b), dk.v, gk, 1e-4, 2e-5));
    EXPECT_TRUE(test::close("dv, " + describe(b), dv.v, gv, 1e-4, 2e-5));
  }
}

TEST(Attention, PackedBatchEqualsEachSequenceAlone) {
  auto ops = make_cpu_ops();
  Batch b({9, 0, 23, 4, 1}, 4, 2, 16, 7);
  HostF out({b.T, b.Hq, b.D}), lse({b.T, b.Hq}), dout({b.T, b.Hq, b.D});
  HostF dq({b.T, b.Hq, b.D}), dk({b.T, b.Hkv, b.D}), dv({b.T, b.Hkv, b.D});
  test::fill_uniform(dout.v, 8);
  ops->attention(out, lse, b.q, b.k, b.v, b.cu, b.scale);
  ops->attention_backward(dq, dk, dv, dout, b.q, b.k, b.v, out, lse, b.cu, b.scale);

  // Each non-empty sequence alone, through row views of the packed tensors.
  for (size_t s = 0; s < b.lens.size(); ++s) {
    const int64_t t0 = b.cu[s], L = b.lens[s];
    if (L == 0) continue;
    const auto rows = [&](const HostF& h) { return Tensor(h).rows(t0, t0 + L); };
    HostI cu1({2});
    cu1[1] = int32_t(L);
    HostF o1({L, b.Hq, b.D}), l1({L, b.Hq});
    HostF dq1({L, b.Hq, b.D}), dk1({L, b.Hkv, b.D}), dv1({L, b.Hkv, b.D});
    ops->attention(o1, l1, rows(b.q), rows(b.k), rows(b.v), cu1, b.scale);
    ops->attention_backward(dq1, dk1, dv1, rows(dout), rows(b.q), rows(b.k), rows(b.v), o1, l1, cu1, b.scale);
    const auto packed = [&](const HostF& h, int64_t row_elems) {
      return std::vector<double>(h.v.begin() + t0 * row_elems, h.v.begin() + (t0 + L) * row_elems);
    };
    const std::string what = " of sequence " + std::to_string(s);
    EXPECT_TRUE(test::close("out" + what, o1.v, packed(out, b.Hq * b.D), 1e-6, 1e-6));
    EXPECT_TRUE(test::close("lse" + what, l1.v, packed(lse, b.Hq), 1e-6, 1e-6));
    EXPECT_TRUE(test::close("dq" + what, dq1.v, packed(dq, b.Hq * b.D), 1e-6, 1e-6));
    EXPECT_TRUE(test::close("dk" + what, dk1.v, packed(dk, b.Hkv * b.D), 1e-6, 1e-6));
    EXPECT_TRUE(test::close("dv" + what, dv1.v, packed(dv, b.Hkv * b.D), 1e-6, 1e-6));
  }
}

TEST(Attention, RejectsBadShapesAndSequenceBoundaries) {
  auto ops = make_cpu_ops();
  HostF q({6, 6, 8}), k({6, 4, 8}), v({6, 4, 8}), out({6, 6, 8}), lse({6, 6});
  HostI cu({3});
  cu[1] = 2;
  cu[2] = 6;
  EXPECT_GRPO_ERROR(ops->attention(out, lse, q, k, v, cu, 1.0f), "attention", "f32[6, 6, 8]", "f32[6, 4, 8]",
                    "multiple");
  HostF k2({6, 2, 8}), v2({6, 2, 8}), k_d({6, 2, 4});
  EXPECT_GRPO_ERROR(ops->attention(out, lse, q, k_d, k_d, cu, 1.0f), "attention", "head dimensions");
  HostF k_t({5, 2, 8});
  EXPECT_GRPO_ERROR(ops->attention(out, lse, q, k_t, k_t, cu, 1.0f), "attention", "token counts");
  HostF lse_bad({6, 2});
  EXPECT_GRPO_ERROR(ops->attention(out, lse_bad, q, k2, v2, cu, 1.0f), "attention", "lse", "f32[6, 2]");
  // Decreasing, not ending at T, not starting at 0, wrong dtype.
  HostI dec({3}), short_end({3}), bad_start({3});
  dec[1] = 4, dec[2] = 3;
  short_end[1] = 2, short_end[2] = 5;
  bad_start[0] = 1, bad_start[1] = 2, bad_start[2] = 6;
  for (const HostI* c : {&dec, &short_end, &bad_start})
    EXPECT_GRPO_ERROR(ops->attention(out, lse, q, k2, v2, *c, 1.0f), "attention", "cu_seqlens", "T = 6");
  HostF cu_f({3});
  EXPECT_GRPO_ERROR(ops->attention(out, lse, q, k2, v2, cu_f, 1.0f), "attention", "cu_seqlens", "i32");
  HostF dq({6, 6, 8}), dk({6, 2, 8}), dv_bad({6, 2, 7});
  EXPECT_GRPO_ERROR(ops->attention_backward(dq, dk, dv_bad, out, q, k2, v2, out, lse, cu, 1.0f),
                    "attention_backward", "dv", "f32[6, 2, 7]");
  EXPECT_GRPO_ERROR(ops->attention_backward(dq, dk, dk, out, q, k2, v2, out, lse, dec, 1.0f), "attention_backward",
                    "cu_seqlens");
}

// ---------------------------------------------------------------------------------------
// Paged KV cache

TEST(KvCache, WriteScattersRowsToSlotsAndSkipsNegativeSlots) {
  auto ops = make_cpu_ops();
  const int64_t NB = 3, BS = 2, Hkv = 2, D = 3, T = 4;
  HostF kc({NB, BS, Hkv, D}), vc({NB, BS, Hkv, D});
  std::fill(kc.v.begin(), kc.v.end(), -7.0f);
  std::fill(vc.v.begin(), vc.v.end(), -7.0f);
  HostF k = test::random_f32({T, Hkv, D}, 1), v = test::random_f32({T, Hkv, D}, 2);
  HostI slots({T});
  const int32_t want[T] = {5, -1, 0, 3};  // token 1 is skipped
  std::copy(want, want + T, slots.data());
  ops->kv_cache_write(kc, vc, k, v, slots);
  std::vector<double> rk(kc.size(), -7.0), rv(vc.size(), -7.0);
  for (int64_t t = 0; t < T; ++t) {
    if (want[t] < 0) continue;
    for (int64_t e = 0; e < Hkv * D; ++e) {
      rk[size_t(want[t] * Hkv * D + e)] = k[size_t(t * Hkv * D + e)];
      rv[size_t(want[t] * Hkv * D + e)] = v[size_t(t * Hkv * D + e)];
    }
  }
  EXPECT_TRUE(test::close("k_cache", kc.v, rk, 0.0, 0.0));
  EXPECT_TRUE(test::close("v_cache", vc.v, rv, 0.0, 0.0));
}

TEST(KvCache, RejectsSlotOutOfRangeAndMismatchedShapes) {
  auto ops = make_cpu_ops();
  HostF kc({3, 2, 2, 4}), vc({3, 2, 2, 4}), k({3, 2, 4}), v({3, 2, 4});
  HostI slots({3});
  slots[0] = 0, slots[1] = 1, slots[2] = 6;  // 3 blocks x 2 = 6 slots
  EXPECT_GRPO_ERROR(ops->kv_cache_write(kc, vc, k, v, slots), "kv_cache_write", "token 2", "slot 6",
                    "f32[3, 2, 2, 4]");
  HostF k_bad({3, 1, 4});
  slots[2] = 2;
  EXPECT_GRPO_ERROR(ops->kv_cache_write(kc, vc, k_bad, k_bad, slots), "kv_cache_write", "f32[3, 1, 4]");
  HostI slots_short({2});
  EXPECT_GRPO_ERROR(ops->kv_cache_write(kc, vc, k, v, slots_short), "kv_cache_write", "slot_mapping");
}

// A paged cache whose blocks are handed out in shuffled order.
struct PagedCache {
  int64_t num_blocks, block_size, max_blocks;
  HostF k, v;
  std::vector<std::vector<int32_t>> blocks;  // per sequence, its blocks in position order

  PagedCache(const std::vector<int>& lens, int64_t bs, int64_t Hkv, int64_t D, uint64_t seed) : block_size(bs) {
    std::vector<int64_t> need;
    int64_t total = 0;
    max_blocks = 0;
    for (int L : lens) {
      need.push_back((L + bs - 1) / bs);
      total += need.back();
      max_blocks = std::max(max_blocks, need.back());
    }
    num_blocks = total + 3;  // a few blocks belong to no sequence
    std::vector<int32_t> ids(static_cast<size_t>(num_blocks));
    std::iota(ids.begin(), ids.end(), 0);
    std::mt19937_64 rng(seed);
    std::shuffle(ids.begin(), ids.end(), rng);
    auto next = ids.begin();
    for (int64_t n : need) {
      blocks.emplace_back(next, next + n);
      next += n;
    }
    k = HostF({num_blocks, bs, Hkv, D});
    v = HostF({num_blocks, bs, Hkv, D});
    test::fill_uniform(k.v, seed + 1, 50.0f, 60.0f);  // garbage in unwritten slots
    test::fill_uniform(v.v, seed + 2, 50.0f, 60.0f);
  }
  int32_t slot(size_t seq, int64_t pos) const {
    return int32_t(blocks[seq][size_t(pos / block_size)] * block_size + pos % block_size);
  }
  // block_table rows for the given sequences, padded with -1 (never read).
  HostI table(const std::vector<size_t>& seqs) const {
    HostI t({int64_t(seqs.size()), max_blocks});
    std::fill(t.v.begin(), t.v.end(), -1);
    for (size_t r = 0; r < seqs.size(); ++r)
      std::copy(blocks[seqs[r]].begin(), blocks[seqs[r]].end(), t.v.begin() + int64_t(r) * max_blocks);
    return t;
  }
};

// Varlen attention over whole sequences is the reference; the same tokens then go through
// the paged cache as a prefill chunk, a second chunk, and single-token decode steps of a
// shrinking set of sequences (different lengths, so some finish early).
TEST(PagedAttention, PrefillChunksAndDecodeStepsMatchVarlenAttention) {
  auto ops = make_cpu_ops();
  const std::vector<int> lens = {13, 4, 29, 9};
  const int64_t Hq = 8, Hkv = 2, D = 16, BS = 4;
  Batch b(lens, Hq, Hkv, D, 42);
  HostF ref_out({b.T, Hq, D}), ref_lse({b.T, Hq});
  ops->attention(ref_out, ref_lse, b.q, b.k, b.v, b.cu, b.scale);

  PagedCache cache(lens, BS, Hkv, D, 43);
  // Per sequence: the first chunk, the second chunk; the rest is decoded one token a step.
  const std::vector<int> chunk1 = {5, 4, 8, 1}, chunk2 = {3, 0, 12, 2};
  std::vector<int> done(lens.size(), 0);

  // Runs one engine step: new tokens n[s] of each listed sequence.
  const auto step = [&](const std::vector<size_t>& seqs, const std::vector<int>& n, const std::string& what) {
    std::vector<int64_t> src;  // packed row of each new token
    HostI cu_q({int64_t(seqs.size()) + 1}), lens_k({int64_t(seqs.size())});
    for (size_t r = 0; r < seqs.size(); ++r) {
      for (int j = 0; j < n[r]; ++j) src.push_back(b.cu[seqs[r]] + done[seqs[r]] + j);
      cu_q[r + 1] = cu_q[r] + n[r];
      lens_k[r] = done[seqs[r]] + n[r];
    }
    const int64_t T = int64_t(src.size());
    HostF q({T, Hq, D}), k({T, Hkv, D}), v({T, Hkv, D}), out({T, Hq, D});
    HostI slots({T});
    std::vector<double> want;
    int64_t row = 0;
    for (size_t r = 0; r < seqs.size(); ++r) {
      for (int j = 0; j < n[r]; ++j, ++row) {
        const int64_t t = src[size_t(row)];
        std::copy_n(b.q.v.begin() + t * Hq * D, Hq * D, q.v.begin() + row * Hq * D);
        std::copy_n(b.k.v.begin() + t * Hkv * D, Hkv * D, k.v.begin() + row * Hkv * D);
        std::copy_n(b.v.v.begin() + t * Hkv * D, Hkv * D, v.v.begin() + row * Hkv * D);
        slots[size_t(row)] = cache.slot(seqs[r], done[seqs[r]] + j);
        want.insert(want.end(), ref_out.v.begin() + t * Hq * D, ref_out.v.begin() + (t + 1) * Hq * D);
      }
    }
    test::poison(out.v);
    ops->kv_cache_write(cache.k, cache.v, k, v, slots);
    ops->attention_paged(out, q, cache.k, cache.v, cu_q, lens_k, cache.table(seqs), b.scale);
    EXPECT_TRUE(test::close(what, out.v, want, 1e-5, 1e-5));
    for (size_t r = 0; r < seqs.size(); ++r) done[seqs[r]] += n[r];
  };

  step({0, 1, 2, 3}, chunk1, "prefill chunk 1");
  step({0, 1, 2, 3}, chunk2, "prefill chunk 2 (sequence 1 has no new tokens)");
  for (int it = 0; it < 40; ++it) {
    std::vector<size_t> seqs;
    for (size_t s = 0; s < lens.size(); ++s)
      if (done[s] < lens[s]) seqs.push_back(s);
    if (seqs.empty()) break;
    step(seqs, std::vector<int>(seqs.size(), 1), "decode step " + std::to_string(it));
  }
  for (size_t s = 0; s < lens.size(); ++s) EXPECT_EQ(done[s], lens[s]);
}

TEST(PagedAttention, RejectsBadBlockTablesAndContextLengths) {
  auto ops = make_cpu_ops();
  const int64_t NB = 4, BS = 2, Hq = 4, Hkv = 2, D = 8;
  HostF kc({NB, BS, Hkv, D}), vc({NB, BS, Hkv, D}), q({3, Hq, D}), out({3, Hq, D});
  HostI cu({3}), lens_k({2}), table({2, 2});
  cu[1] = 1, cu[2] = 3;          // sequence 0: 1 new token, sequence 1: 2 new tokens
  lens_k[0] = 3, lens_k[1] = 4;  // two blocks each
  table[0] = 0, table[1] = 1, table[2] = 2, table[3] = 3;
  ops->attention_paged(out, q, kc, vc, cu, lens_k, table, 0.5f);  // valid

  table[3] = 4;  // block 4 of a 4-block cache
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu, lens_k, table, 0.5f), "attention_paged",
                    "block_table[1, 1] = 4", "f32[4, 2, 2, 8]");
  table[3] = -2;
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu, lens_k, table, 0.5f), "attention_paged",
                    "block_table[1, 1] = -2");
  table[3] = 3;
  lens_k[1] = 1;  // fewer context tokens than new tokens
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu, lens_k, table, 0.5f), "attention_paged",
                    "sequence 1", "seq_lens_k[1] = 1");
  lens_k[1] = 5;  // needs 3 blocks, the table has 2 per row
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu, lens_k, table, 0.5f), "attention_paged",
                    "needing 3 blocks", "i32[2, 2]");
  lens_k[1] = 4;
  HostI cu_bad({3});
  cu_bad[1] = 2, cu_bad[2] = 2;  // ends at 2, T = 3
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu_bad, lens_k, table, 0.5f), "attention_paged",
                    "cu_seqlens_q", "T = 3");
  HostF q_bad({3, 3, D}), out_bad({3, 3, D});
  EXPECT_GRPO_ERROR(ops->attention_paged(out_bad, q_bad, kc, vc, cu, lens_k, table, 0.5f), "attention_paged",
                    "Hq = 3", "Hkv = 2");
  HostI table_rows({3, 2});
  EXPECT_GRPO_ERROR(ops->attention_paged(out, q, kc, vc, cu, lens_k, table_rows, 0.5f), "attention_paged",
                    "block_table", "i32[3, 2]");
}

}  // namespace
}  // namespace grpo
