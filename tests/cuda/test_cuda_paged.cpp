// The paged KV-cache ops on the GPU (kv_cache_write, attention_paged) against the CPU backend:
// shuffled, non-contiguous blocks with -1 padding past the used table entries, contexts of
// 1 to 1000 tokens, decode steps and prefill chunks, GQA groups of 1 to 32, f32 and bf16, and
// the checks of the index data that run on the device.
#include <algorithm>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;

// One attention_paged call: sequences with context lengths ctx[b] of which the last n_new[b]
// tokens are new, and a cache whose blocks are handed out in shuffled order.
struct PagedCase {
  DType dt = DType::f32;
  int64_t block_size = 16, Hq = 8, Hkv = 2, D = 128;
  std::vector<int32_t> ctx, n_new;
  uint64_t seed = 1;
};

struct PagedInputs {
  int64_t T = 0, B = 0, num_blocks = 0, max_blocks = 0;
  std::vector<float> q, kc, vc;
  std::vector<int32_t> cu, lens, table;
  std::vector<int64_t> q_shape, cache_shape;
};

PagedInputs make_inputs(const PagedCase& c) {
  PagedInputs in;
  in.B = int64_t(c.ctx.size());
  in.cu.assign(size_t(in.B) + 1, 0);
  std::vector<int64_t> need(size_t(in.B), 0);
  int64_t total = 0;
  for (int64_t b = 0; b < in.B; ++b) {
    in.cu[size_t(b) + 1] = in.cu[size_t(b)] + c.n_new[size_t(b)];
    if (c.n_new[size_t(b)] > 0) need[size_t(b)] = (c.ctx[size_t(b)] + c.block_size - 1) / c.block_size;
    total += need[size_t(b)];
    in.max_blocks = std::max(in.max_blocks, need[size_t(b)]);
  }
  in.T = in.cu.back();
  in.max_blocks += 2;          // -1 padding past the used entries of every row
  in.num_blocks = total + 3;   // a few blocks belong to no sequence
  std::vector<int32_t> ids(size_t(in.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(c.seed);
  std::shuffle(ids.begin(), ids.end(), rng);
  in.table.assign(size_t(in.B * in.max_blocks), -1);
  size_t next = 0;
  for (int64_t b = 0; b < in.B; ++b)
    for (int64_t i = 0; i < need[size_t(b)]; ++i) in.table[size_t(b * in.max_blocks + i)] = ids[next++];
  in.lens = c.ctx;
  in.q_shape = {in.T, c.Hq, c.D};
  in.cache_shape = {in.num_blocks, c.block_size, c.Hkv, c.D};
  in.q = randn(size_t(numel_of(in.q_shape)), c.seed + 1);
  in.kc = randn(size_t(numel_of(in.cache_shape)), c.seed + 2);  // every slot, used or not, nonzero
  in.vc = randn(size_t(numel_of(in.cache_shape)), c.seed + 3);
  round_to(in.q, c.dt);
  round_to(in.kc, c.dt);
  round_to(in.vc, c.dt);
  return in;
}

std::string describe(const PagedCase& c) {
  std::ostringstream os;
  os << dtype_name(c.dt) << " block_size " << c.block_size << " Hq " << c.Hq << " Hkv " << c.Hkv << " D " << c.D
     << " (ctx, new):";
  for (size_t b = 0; b < c.ctx.size(); ++b) os << " (" << c.ctx[b] << ", " << c.n_new[b] << ")";
  return os.str();
}

std::vector<float> cpu_paged(PagedInputs& in, float scale) {
  std::vector<float> out(size_t(numel_of(in.q_shape)));
  cpu().attention_paged(host_view(out, in.q_shape), host_view(in.q, in.q_shape), host_view(in.kc, in.cache_shape),
                        host_view(in.vc, in.cache_shape), host_view(in.cu, {in.B + 1}), host_view(in.lens, {in.B}),
                        host_view(in.table, {in.B, in.max_blocks}), scale);
  return out;
}

void expect_paged_matches_cpu(const PagedCase& c) {
  PagedInputs in = make_inputs(c);
  const float scale = 1.0f / std::sqrt(float(c.D));
  const std::vector<float> ref = cpu_paged(in, scale);
  Dev q = upload(in.q, in.q_shape, c.dt), kc = upload(in.kc, in.cache_shape, c.dt);
  Dev vc = upload(in.vc, in.cache_shape, c.dt), out = poisoned(c.dt, in.q_shape);
  Dev cu = upload_i32(in.cu, {in.B + 1}), lens = upload_i32(in.lens, {in.B});
  Dev table = upload_i32(in.table, {in.B, in.max_blocks});
  gpu().attention_paged(out, q, kc, vc, cu, lens, table, scale);
  EXPECT_REL(describe(c), download(out), ref, tol(c.dt));
}

const DType kDtypes[] = {DType::f32, DType::bf16};

TEST(CudaPaged, DecodeMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 10;
  for (DType dt : kDtypes)
    for (int64_t bs : {1, 16, 32})
      for (int64_t Hq : {4, 8}) {  // GQA groups 1 and 4 (Hkv = 4 and 2)
        PagedCase c;
        c.dt = dt, c.block_size = bs, c.Hq = Hq, c.Hkv = Hq == 4 ? 4 : 2, c.D = 128, c.seed = ++seed;
        c.ctx = {1, 17, 300, 1000};
        c.n_new = {1, 1, 1, 1};
        expect_paged_matches_cpu(c);
      }
}

TEST(CudaPaged, PrefillChunksMatchCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 100;
  for (DType dt : kDtypes)
    for (int64_t bs : {1, 16, 32})
      for (int64_t Hq : {4, 8}) {
        PagedCase c;
        c.dt = dt, c.block_size = bs, c.Hq = Hq, c.Hkv = Hq == 4 ? 4 : 2, c.D = 128, c.seed = ++seed;
        // Whole prompts (1, 17), a chunk late in a context, a sequence with no new tokens
        // (its table row is all -1 and is not read) and a long chunk.
        c.ctx = {1, 17, 300, 5, 1000};
        c.n_new = {1, 17, 45, 0, 129};
        expect_paged_matches_cpu(c);
      }
}

// Head dims that take the scalar loads (7; 20 in bf16) or leave zero columns in shared memory
// (7), the largest (256), and groups larger than one CTA's 16 rows (24 and 32 heads per kv head).
TEST(CudaPaged, HeadDimsAndLargeGroupsMatchCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 200;
  struct Shape {
    int64_t Hq, Hkv, D;
  };
  for (DType dt : kDtypes)
    for (Shape s : {Shape{8, 1, 7}, Shape{6, 3, 20}, Shape{16, 2, 36}, Shape{8, 2, 256}, Shape{48, 2, 64},
                    Shape{32, 1, 128}, Shape{16, 1, 96}})
      for (bool prefill : {false, true}) {
        PagedCase c;
        c.dt = dt, c.block_size = 16, c.Hq = s.Hq, c.Hkv = s.Hkv, c.D = s.D, c.seed = ++seed;
        c.ctx = {33, 1, 300, 129};
        c.n_new = prefill ? std::vector<int32_t>{33, 1, 7, 20} : std::vector<int32_t>{1, 1, 1, 1};
        expect_paged_matches_cpu(c);
      }
}

// Enough CTAs that the context is not split (one kernel writes out directly), and contexts
// short enough that it never is.
TEST(CudaPaged, UnsplitContextsMatchCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDtypes) {
    PagedCase c;
    c.dt = dt, c.block_size = 16, c.Hq = 4, c.Hkv = 1, c.D = 64, c.seed = 300;
    const std::vector<int32_t> lens = randint(600, 301, 1, 1000);
    c.ctx = lens;
    c.n_new.assign(lens.size(), 1);
    expect_paged_matches_cpu(c);

    PagedCase s;
    s.dt = dt, s.block_size = 16, s.Hq = 8, s.Hkv = 2, s.D = 128, s.seed = 302;
    s.ctx = {1, 17, 60, 40};  // max_blocks * block_size = 96 keys: no split
    s.n_new = {1, 3, 1, 40};
    expect_paged_matches_cpu(s);
  }
}

// A cache view that starts 2 bytes past an aligned address: the 16-byte loads are off.
TEST(CudaPaged, MisalignedCacheMatchesCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDtypes) {
    PagedCase c;
    c.dt = dt, c.block_size = 16, c.Hq = 8, c.Hkv = 2, c.D = 128, c.seed = 400;
    c.ctx = {1, 17, 300};
    c.n_new = {1, 5, 1};
    PagedInputs in = make_inputs(c);
    const float scale = 0.1f;
    const std::vector<float> ref = cpu_paged(in, scale);
    // One spare element in front (bf16: 2 bytes; f32: 4 bytes).
    const int64_t n = numel_of(in.cache_shape);
    std::vector<float> kpad(size_t(n) + 1, 1.0f), vpad(size_t(n) + 1, 1.0f);
    std::copy(in.kc.begin(), in.kc.end(), kpad.begin() + 1);
    std::copy(in.vc.begin(), in.vc.end(), vpad.begin() + 1);
    Dev kbuf = upload(kpad, {n + 1}, dt), vbuf = upload(vpad, {n + 1}, dt);
    const size_t es = dtype_size(dt);
    Tensor kc(static_cast<char*>(kbuf.t.data) + es, dt, in.cache_shape.data(), 4, Device::cuda);
    Tensor vc(static_cast<char*>(vbuf.t.data) + es, dt, in.cache_shape.data(), 4, Device::cuda);
    Dev q = upload(in.q, in.q_shape, dt), out = poisoned(dt, in.q_shape);
    Dev cu = upload_i32(in.cu, {in.B + 1}), lens = upload_i32(in.lens, {in.B});
    Dev table = upload_i32(in.table, {in.B, in.max_blocks});
    gpu().attention_paged(out, q, kc, vc, cu, lens, table, scale);
    EXPECT_REL(describe(c) + " (misaligned cache)", download(out), ref, tol(dt));
  }
}

// ---------------------------------------------------------------------------------------
// kv_cache_write

TEST(CudaKvCache, WriteMatchesCpuAndSkipsNegativeSlots) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 500;
  struct Shape {
    int64_t Hkv, D;
  };
  // 16-byte rows, 4-byte rows (f32 3 x 7) and 2-byte rows (bf16 3 x 7).
  for (DType dt : kDtypes)
    for (Shape s : {Shape{2, 64}, Shape{3, 7}, Shape{1, 256}}) {
      const int64_t NB = 10, BS = 16, T = 37;
      const std::vector<int64_t> cache_shape = {NB, BS, s.Hkv, s.D}, kv_shape = {T, s.Hkv, s.D};
      std::vector<float> kc0 = randn(size_t(numel_of(cache_shape)), ++seed);
      std::vector<float> vc0 = randn(size_t(numel_of(cache_shape)), ++seed);
      std::vector<float> k = randn(size_t(numel_of(kv_shape)), ++seed), v = randn(size_t(numel_of(kv_shape)), ++seed);
      round_to(kc0, dt), round_to(vc0, dt), round_to(k, dt), round_to(v, dt);
      // Distinct random slots; every third token is skipped (-1 or another negative value).
      std::vector<int32_t> slots(size_t(NB * BS));
      std::iota(slots.begin(), slots.end(), 0);
      std::mt19937_64 rng(++seed);
      std::shuffle(slots.begin(), slots.end(), rng);
      slots.resize(size_t(T));
      for (int64_t t = 0; t < T; t += 3) slots[size_t(t)] = t % 2 ? -1 : -7;

      std::vector<float> kc_ref = kc0, vc_ref = vc0;
      cpu().kv_cache_write(host_view(kc_ref, cache_shape), host_view(vc_ref, cache_shape), host_view(k, kv_shape),
                           host_view(v, kv_shape), host_view(slots, {T}));
      Dev kc = upload(kc0, cache_shape, dt), vc = upload(vc0, cache_shape, dt);
      gpu().kv_cache_write(kc, vc, upload(k, kv_shape, dt), upload(v, kv_shape, dt), upload_i32(slots, {T}));
      const std::vector<float> kc_got = download(kc), vc_got = download(vc);
      std::ostringstream what;
      what << dtype_name(dt) << " Hkv " << s.Hkv << " D " << s.D;
      EXPECT_EQ(kc_got, kc_ref) << what.str() << ": k_cache";
      EXPECT_EQ(vc_got, vc_ref) << what.str() << ": v_cache";
      // Slots no token wrote keep their old values.
      std::vector<bool> written(size_t(NB * BS), false);
      for (int32_t slot : slots)
        if (slot >= 0) written[size_t(slot)] = true;
      const int64_t row = s.Hkv * s.D;
      size_t kept = 0;
      for (int64_t slot = 0; slot < NB * BS; ++slot) {
        if (written[size_t(slot)]) continue;
        for (int64_t e = slot * row; e < (slot + 1) * row; ++e) {
          kept += kc_got[size_t(e)] == kc0[size_t(e)] && vc_got[size_t(e)] == vc0[size_t(e)];
        }
      }
      EXPECT_EQ(kept, size_t((NB * BS - (T - (T + 2) / 3)) * row)) << what.str();
    }
}

// The rollout engine's use: write a prefill chunk, attend, then a decode step, on both backends.
TEST(CudaKvCache, WriteThenAttendMatchesCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDtypes) {
    const int64_t NB = 12, BS = 16, Hq = 8, Hkv = 2, D = 64, B = 2;
    const std::vector<int64_t> cache_shape = {NB, BS, Hkv, D};
    std::vector<float> kc = randn(size_t(numel_of(cache_shape)), 601), vc = randn(size_t(numel_of(cache_shape)), 602);
    round_to(kc, dt), round_to(vc, dt);
    Dev kc_d = upload(kc, cache_shape, dt), vc_d = upload(vc, cache_shape, dt);
    // Sequence 0 owns blocks 7, 2, 9; sequence 1 owns blocks 4, 0; the rest of each row is -1.
    std::vector<int32_t> table = {7, 2, 9, -1, 4, 0, -1, -1};
    Dev table_d = upload_i32(table, {B, 4});
    const auto slot_of = [&](int64_t b, int64_t pos) {
      return table[size_t(b * 4 + pos / BS)] * int32_t(BS) + int32_t(pos % BS);
    };
    std::vector<int32_t> done = {0, 0};
    uint64_t seed = 610;
    for (const std::vector<int32_t>& n_new : {std::vector<int32_t>{40, 25}, std::vector<int32_t>{1, 1}}) {
      const int64_t T = n_new[0] + n_new[1];
      std::vector<float> q = randn(size_t(T * Hq * D), ++seed), k = randn(size_t(T * Hkv * D), ++seed);
      std::vector<float> v = randn(size_t(T * Hkv * D), ++seed);
      round_to(q, dt), round_to(k, dt), round_to(v, dt);
      std::vector<int32_t> slots, cu = {0, n_new[0], int32_t(T)}, lens = {done[0] + n_new[0], done[1] + n_new[1]};
      for (int64_t b = 0; b < B; ++b)
        for (int32_t j = 0; j < n_new[size_t(b)]; ++j) slots.push_back(slot_of(b, done[size_t(b)] + j));
      std::vector<float> ref(size_t(T * Hq * D));
      cpu().kv_cache_write(host_view(kc, cache_shape), host_view(vc, cache_shape), host_view(k, {T, Hkv, D}),
                           host_view(v, {T, Hkv, D}), host_view(slots, {T}));
      cpu().attention_paged(host_view(ref, {T, Hq, D}), host_view(q, {T, Hq, D}), host_view(kc, cache_shape),
                            host_view(vc, cache_shape), host_view(cu, {B + 1}), host_view(lens, {B}),
                            host_view(table, {B, 4}), 0.125f);
      Dev out = poisoned(dt, {T, Hq, D});
      gpu().kv_cache_write(kc_d, vc_d, upload(k, {T, Hkv, D}, dt), upload(v, {T, Hkv, D}, dt), upload_i32(slots, {T}));
      gpu().attention_paged(out, upload(q, {T, Hq, D}, dt), kc_d, vc_d, upload_i32(cu, {B + 1}),
                            upload_i32(lens, {B}), table_d, 0.125f);
      EXPECT_REL(std::string(dtype_name(dt)) + " step with " + std::to_string(T) + " tokens", download(out), ref,
                 tol(dt));
      EXPECT_EQ(download(kc_d), kc);
      for (int64_t b = 0; b < B; ++b) done[size_t(b)] += n_new[size_t(b)];
    }
  }
}

// ---------------------------------------------------------------------------------------
// Errors

TEST(CudaKvCache, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  const std::vector<int64_t> cache_shape = {3, 2, 2, 4};
  const std::vector<float> kc0 = randn(48, 700);
  Dev kc = upload(kc0, cache_shape), vc = upload(randn(48, 701), cache_shape);
  Dev k = upload(randn(24, 702), {3, 2, 4}), v = upload(randn(24, 703), {3, 2, 4});
  Dev slots = upload_i32({0, 1, 6}, {3});  // 3 blocks x 2 = 6 slots
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc, vc, k, v, slots), "kv_cache_write", "outside the 6 slots",
                    "[3, 2, 2, 4]", "(code 1)");
  EXPECT_EQ(download(kc), kc0) << "a rejected write must leave the cache as it was";
  Dev ok_slots = upload_i32({0, -1, 5}, {3});
  gpu().kv_cache_write(kc, vc, k, v, ok_slots);  // the flag is cleared for the next call

  Dev k_bad = upload(randn(12, 704), {3, 1, 4});
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc, vc, k_bad, k_bad, ok_slots), "kv_cache_write", "[3, 1, 4]",
                    "[Hkv, D] must match");
  Dev slots_short = upload_i32({0, 1}, {2});
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc, vc, k, v, slots_short), "kv_cache_write", "slot_mapping");
  std::vector<float> host_k(24, 1.0f);
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc, vc, host_view(host_k, {3, 2, 4}), v, ok_slots), "kv_cache_write",
                    "k is on cpu", "expected cuda");
  Dev k_bf16 = upload(randn(24, 705), {3, 2, 4}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc, vc, k_bf16, k_bf16, ok_slots), "kv_cache_write", "k is",
                    "expected dtype f32");
  Dev kc_i32 = alloc_dev(DType::i32, cache_shape);
  EXPECT_GRPO_ERROR(gpu().kv_cache_write(kc_i32, kc_i32, k, v, ok_slots), "kv_cache_write", "k_cache",
                    "expected dtype f32 or bf16");
}

TEST(CudaPaged, RejectsBadIndexDataAndShapes) {
  GRPO_REQUIRE_GPU();
  const int64_t NB = 4, BS = 2, Hq = 4, Hkv = 2, D = 8;
  Dev kc = upload(randn(size_t(NB * BS * Hkv * D), 800), {NB, BS, Hkv, D});
  Dev vc = upload(randn(size_t(NB * BS * Hkv * D), 801), {NB, BS, Hkv, D});
  Dev q = upload(randn(size_t(3 * Hq * D), 802), {3, Hq, D}), out = poisoned(DType::f32, {3, Hq, D});
  // Sequence 0: 1 new token, context 3; sequence 1: 2 new tokens, context 4; two blocks each.
  Dev cu = upload_i32({0, 1, 3}, {3});
  const auto call = [&](std::vector<int32_t> lens, std::vector<int32_t> table) {
    gpu().attention_paged(out, q, kc, vc, cu, upload_i32(lens, {2}), upload_i32(table, {2, 2}), 0.5f);
  };
  call({3, 4}, {0, 1, 2, 3});  // valid
  call({1, 4}, {0, -1, 2, 3});  // valid: entry [0, 1] covers no position < 1
  EXPECT_GRPO_ERROR(call({3, 4}, {0, 1, 2, 4}), "attention_paged", "is not a block of k_cache", "(0 to 3)",
                    "(code 8)");
  EXPECT_GRPO_ERROR(call({3, 4}, {0, 1, 2, -2}), "attention_paged", "is not a block of k_cache", "(code 8)");
  EXPECT_GRPO_ERROR(call({3, 1}, {0, 1, 2, 3}), "attention_paged", "more new tokens than its seq_lens_k",
                    "(code 2)");
  EXPECT_GRPO_ERROR(call({3, 5}, {0, 1, 2, 3}), "attention_paged", "more blocks of 2 than block_table",
                    "(code 4)");
  Dev cu_bad = upload_i32({0, 2, 2}, {3});  // ends at 2, T = 3
  EXPECT_GRPO_ERROR(
      gpu().attention_paged(out, q, kc, vc, cu_bad, upload_i32({3, 4}, {2}), upload_i32({0, 1, 2, 3}, {2, 2}), 0.5f),
      "attention_paged", "cu_seqlens_q", "T = 3", "(code 1)");
  call({3, 4}, {0, 1, 2, 3});  // the flag is cleared for the next call

  Dev lens = upload_i32({3, 4}, {2}), table = upload_i32({0, 1, 2, 3}, {2, 2});
  Dev q_bad = upload(randn(size_t(3 * 3 * D), 803), {3, 3, D}), out_bad = poisoned(DType::f32, {3, 3, D});
  EXPECT_GRPO_ERROR(gpu().attention_paged(out_bad, q_bad, kc, vc, cu, lens, table, 0.5f), "attention_paged",
                    "Hq = 3", "Hkv = 2");
  Dev table_rows = upload_i32({0, 1, 2, 3, 0, 1}, {3, 2});
  EXPECT_GRPO_ERROR(gpu().attention_paged(out, q, kc, vc, cu, lens, table_rows, 0.5f), "attention_paged",
                    "block_table", "[3, 2]");
  Dev out_short = poisoned(DType::f32, {2, Hq, D});
  EXPECT_GRPO_ERROR(gpu().attention_paged(out_short, q, kc, vc, cu, lens, table, 0.5f), "attention_paged", "out",
                    "must match");
  Dev q_bf16 = upload(randn(size_t(3 * Hq * D), 804), {3, Hq, D}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu().attention_paged(out, q_bf16, kc, vc, cu, lens, table, 0.5f), "attention_paged", "q is",
                    "expected dtype f32");
  std::vector<int32_t> host_table = {0, 1, 2, 3};
  EXPECT_GRPO_ERROR(gpu().attention_paged(out, q, kc, vc, cu, lens, host_view(host_table, {2, 2}), 0.5f),
                    "attention_paged", "block_table is on cpu", "expected cuda");
  const int64_t D_big = 264;
  Dev kc_big = alloc_dev(DType::f32, {NB, BS, Hkv, D_big}), q_big = alloc_dev(DType::f32, {3, Hq, D_big});
  EXPECT_GRPO_ERROR(gpu().attention_paged(q_big, q_big, kc_big, kc_big, cu, lens, table, 0.5f), "attention_paged",
                    "head dimension 264", "256");
}

}  // namespace
}  // namespace grpo
