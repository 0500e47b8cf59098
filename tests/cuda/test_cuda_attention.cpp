// CUDA varlen causal GQA attention (forward, backward) against the CPU backend.
//
// Each case packs sequences of odd lengths (1, 5, 64, 100, 130, empty ones at the ends and
// in the middle), GQA ratios 1, 2 and 4, and head dims 8 to 256 (every tile bound 64, 128,
// 256; dims that are not multiples of 16 or of 8). bf16 runs round the host inputs to bf16
// first, so both backends see the same values; the backward of both gets the CPU forward's
// out (rounded to the dtype) and lse. bf16 with D <= 128 runs on tensor cores, f32 and bf16
// D = 256 on FMA tiles: the cases cover both.
//
// Tolerances: tol(dtype), relative L2 (f32 1e-5, bf16 1e-2); lse (f32 in both) 1e-5 for
// either dtype. Measured on an H100: f32 out, dq up to 3e-7, dk, dv up to 1e-6 (sums over
// 4 heads x 1000 rows in another order), lse 6e-8; bf16 out, dq, dk, dv up to 2.4e-3 (the
// bf16 rounding of the outputs, and of P and dS on the tensor-core path).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

struct Case {
  std::vector<int> lens;
  int64_t Hq, Hkv, D;
};

const Case kCases[] = {
    {{130}, 4, 4, 64},                    // one sequence, MHA
    {{1, 5, 64, 100, 130, 0}, 4, 2, 64},  // GQA 2, an empty sequence last
    {{0, 1, 5, 64, 100, 130}, 8, 2, 128}, // GQA 4, an empty sequence first
    {{33, 0, 17, 65}, 4, 1, 16},          // every query head on one kv head, D 16
    {{7, 64, 65, 1}, 2, 2, 40},           // D 40: a partial 16-wide column tile
    {{3, 9, 20}, 4, 2, 8},                // D 8
    {{50, 77}, 2, 1, 96},                 // D 96 (tile bound 128)
    {{19, 45}, 4, 2, 20},                 // D 20: not a multiple of 8 (no vector loads)
    {{70, 1, 129}, 4, 2, 256},            // D 256 (bf16 on FMA tiles)
};

// One packed batch: host inputs (rounded to dt) and the CPU forward's results.
struct Problem {
  Case c;
  DType dt;
  int64_t T = 0;
  float scale = 0.0f;
  std::vector<float> q, k, v, dout, out, lse;
  std::vector<int32_t> cu;

  Problem(const Case& c_, DType dt_, uint64_t seed) : c(c_), dt(dt_) {
    T = std::accumulate(c.lens.begin(), c.lens.end(), int64_t(0));
    cu.assign(c.lens.size() + 1, 0);
    for (size_t s = 0; s < c.lens.size(); ++s) cu[s + 1] = cu[s] + c.lens[s];
    // Scores of O(1) after scaling: the softmax is neither flat nor one-hot.
    q = randu(size_t(T * c.Hq * c.D), seed, -1.5f, 1.5f);
    k = randu(size_t(T * c.Hkv * c.D), seed + 1, -1.5f, 1.5f);
    v = randu(size_t(T * c.Hkv * c.D), seed + 2);
    dout = randu(size_t(T * c.Hq * c.D), seed + 3);
    for (auto* x : {&q, &k, &v, &dout}) round_to(*x, dt);
    scale = float(1.0 / std::sqrt(double(c.D)));
    out.assign(q.size(), 0.0f);
    lse.assign(size_t(T * c.Hq), 0.0f);
    cpu().attention(host_view(out, qshape()), host_view(lse, {T, c.Hq}), host_view(q, qshape()),
                    host_view(k, kshape()), host_view(v, kshape()), host_view(cu, cushape()), scale);
    round_to(out, dt);  // what a dt tensor holds: the backward of both backends reads this
  }
  std::vector<int64_t> qshape() const { return {T, c.Hq, c.D}; }
  std::vector<int64_t> kshape() const { return {T, c.Hkv, c.D}; }
  std::vector<int64_t> cushape() const { return {int64_t(cu.size())}; }
  std::string describe() const {
    std::string s = std::string(dtype_name(dt)) + ", lens [";
    for (size_t i = 0; i < c.lens.size(); ++i) s += (i ? ", " : "") + std::to_string(c.lens[i]);
    return s + "], Hq " + std::to_string(c.Hq) + ", Hkv " + std::to_string(c.Hkv) + ", D " + std::to_string(c.D);
  }
};

void check_forward(const Problem& p) {
  auto q = upload(p.q, p.qshape(), p.dt), k = upload(p.k, p.kshape(), p.dt), v = upload(p.v, p.kshape(), p.dt);
  auto cu = upload_i32(p.cu, p.cushape());
  auto out = poisoned(p.dt, p.qshape()), lse = poisoned(DType::f32, {p.T, p.c.Hq});
  gpu().attention(out, lse, q, k, v, cu, p.scale);
  // The CPU's out before rounding to dt would be the exact reference; after rounding it is
  // within half a bf16 ulp of it, well inside the bf16 tolerance.
  EXPECT_REL("out, " + p.describe(), download(out), p.out, tol(p.dt));
  EXPECT_REL("lse, " + p.describe(), download(lse), p.lse, tol(DType::f32));
}

void check_backward(const Problem& p) {
  std::vector<float> q = p.q, k = p.k, v = p.v, dout = p.dout, out = p.out, lse = p.lse;
  std::vector<int32_t> cuh = p.cu;
  std::vector<float> rdq(q.size()), rdk(k.size()), rdv(v.size());
  cpu().attention_backward(host_view(rdq, p.qshape()), host_view(rdk, p.kshape()), host_view(rdv, p.kshape()),
                           host_view(dout, p.qshape()), host_view(q, p.qshape()), host_view(k, p.kshape()),
                           host_view(v, p.kshape()), host_view(out, p.qshape()), host_view(lse, {p.T, p.c.Hq}),
                           host_view(cuh, p.cushape()), p.scale);

  auto dq_ = poisoned(p.dt, p.qshape()), dk_ = poisoned(p.dt, p.kshape()), dv_ = poisoned(p.dt, p.kshape());
  gpu().attention_backward(dq_, dk_, dv_, upload(dout, p.qshape(), p.dt), upload(q, p.qshape(), p.dt),
                           upload(k, p.kshape(), p.dt), upload(v, p.kshape(), p.dt), upload(out, p.qshape(), p.dt),
                           upload(lse, {p.T, p.c.Hq}), upload_i32(cuh, p.cushape()), p.scale);
  EXPECT_REL("dq, " + p.describe(), download(dq_), rdq, tol(p.dt));
  EXPECT_REL("dk, " + p.describe(), download(dk_), rdk, tol(p.dt));
  EXPECT_REL("dv, " + p.describe(), download(dv_), rdv, tol(p.dt));
}

TEST(CudaAttention, ForwardMatchesCpuOnSeveralPackings) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& c : kCases) check_forward(Problem(c, dt, seed += 10));
}

TEST(CudaAttention, BackwardMatchesCpuOnSeveralPackings) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 500;
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& c : kCases) check_backward(Problem(c, dt, seed += 10));
}

TEST(CudaAttention, LongSequencesMatchCpu) {
  GRPO_REQUIRE_GPU();
  // Many key tiles per query tile and many query tiles per key tile; GQA 4 with D 128.
  uint64_t seed = 900;
  for (DType dt : {DType::f32, DType::bf16}) {
    Problem p({{700, 1, 0, 333}, 8, 2, 128}, dt, seed += 10);
    check_forward(p);
    check_backward(p);
  }
}

// A copy of host data on the device starting one element into its buffer: a view whose rows
// are not 16-byte aligned although D is a multiple of 8 (the bf16 kernels must not use vector
// loads on it).
struct Shifted {
  cudatest::Dev buf;
  Tensor t;
  operator Tensor() const { return t; }
};
Shifted upload_shifted(const std::vector<float>& host, const std::vector<int64_t>& shape, DType dt) {
  std::vector<float> padded(host.size() + 1, 0.0f);
  std::copy(host.begin(), host.end(), padded.begin() + 1);
  Shifted s{upload(padded, {int64_t(padded.size())}, dt), {}};
  s.t = Tensor(static_cast<char*>(s.buf.t.data) + dtype_size(dt), dt, shape.data(), int(shape.size()), Device::cuda);
  return s;
}

TEST(CudaAttention, UnalignedViewsMatchCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16}) {
    const Problem p({{37, 64, 3}, 4, 2, 64}, dt, 1200);
    auto q = upload_shifted(p.q, p.qshape(), dt), k = upload_shifted(p.k, p.kshape(), dt);
    auto v = upload_shifted(p.v, p.kshape(), dt), dout = upload_shifted(p.dout, p.qshape(), dt);
    auto o = upload_shifted(p.out, p.qshape(), dt);
    auto cu = upload_i32(p.cu, p.cushape());
    auto out = poisoned(dt, p.qshape()), lse = poisoned(DType::f32, {p.T, p.c.Hq});
    gpu().attention(out, lse, q, k, v, cu, p.scale);
    EXPECT_REL("out, shifted, " + p.describe(), download(out), p.out, tol(dt));
    EXPECT_REL("lse, shifted, " + p.describe(), download(lse), p.lse, tol(DType::f32));

    std::vector<float> hq = p.q, hk = p.k, hv = p.v, hdo = p.dout, ho = p.out, hl = p.lse;
    std::vector<int32_t> hcu = p.cu;
    std::vector<float> rdq(hq.size()), rdk(hk.size()), rdv(hv.size());
    cpu().attention_backward(host_view(rdq, p.qshape()), host_view(rdk, p.kshape()), host_view(rdv, p.kshape()),
                             host_view(hdo, p.qshape()), host_view(hq, p.qshape()), host_view(hk, p.kshape()),
                             host_view(hv, p.kshape()), host_view(ho, p.qshape()), host_view(hl, {p.T, p.c.Hq}),
                             host_view(hcu, p.cushape()), p.scale);
    auto dq = poisoned(dt, p.qshape()), dk = poisoned(dt, p.kshape()), dv = poisoned(dt, p.kshape());
    gpu().attention_backward(dq, dk, dv, dout, q, k, v, o, upload(hl, {p.T, p.c.Hq}), cu, p.scale);
    EXPECT_REL("dq, shifted, " + p.describe(), download(dq), rdq, tol(dt));
    EXPECT_REL("dk, shifted, " + p.describe(), download(dk), rdk, tol(dt));
    EXPECT_REL("dv, shifted, " + p.describe(), download(dv), rdv, tol(dt));
  }
}

TEST(CudaAttention, EmptyBatch) {
  GRPO_REQUIRE_GPU();
  // T = 0: nothing to compute, but cu_seqlens is still checked.
  const std::vector<std::vector<int32_t>> cus = {{0}, {0, 0, 0}};
  for (const std::vector<int32_t>& cuh : cus) {
    auto q = cudatest::alloc_dev(DType::f32, {0, 2, 8}), k = cudatest::alloc_dev(DType::f32, {0, 1, 8});
    auto lse = cudatest::alloc_dev(DType::f32, {0, 2});
    auto cu = upload_i32(cuh, {int64_t(cuh.size())});
    EXPECT_NO_THROW(gpu().attention(q, lse, q, k, k, cu, 1.0f));
    EXPECT_NO_THROW(gpu().attention_backward(q, k, k, q, q, k, k, q, lse, cu, 1.0f));
  }
}

TEST(CudaAttention, Errors) {
  GRPO_REQUIRE_GPU();
  const DType f32 = DType::f32;
  auto q = poisoned(f32, {6, 6, 8}), out = poisoned(f32, {6, 6, 8}), lse = poisoned(f32, {6, 6});
  auto k = poisoned(f32, {6, 2, 8}), v = poisoned(f32, {6, 2, 8});
  auto cu = upload_i32({0, 2, 6}, {3});
  // Hq not a multiple of Hkv.
  auto k4 = poisoned(f32, {6, 4, 8});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse, q, k4, k4, cu, 1.0f), "attention", "Hq = 6", "Hkv = 4", "multiple");
  // cu_seqlens values, checked on the device: last value not T, decreasing, not starting at 0.
  const std::vector<std::vector<int32_t>> bad_cus = {{0, 2, 5}, {0, 4, 3, 6}, {1, 2, 6}};
  for (const std::vector<int32_t>& bad : bad_cus) {
    auto cub = upload_i32(bad, {int64_t(bad.size())});
    EXPECT_GRPO_ERROR(gpu().attention(out, lse, q, k, v, cub, 1.0f), "attention", "cu_seqlens", "T = 6");
    EXPECT_GRPO_ERROR(gpu().attention_backward(q, k, v, out, q, k, v, out, lse, cub, 1.0f), "attention_backward",
                      "cu_seqlens", "T = 6");
  }
  // The flag is cleared: a good call after the bad ones works.
  EXPECT_NO_THROW(gpu().attention(out, lse, q, k, v, cu, 1.0f));
  // A CPU tensor.
  std::vector<float> hq(6 * 6 * 8, 0.5f);
  EXPECT_GRPO_ERROR(gpu().attention(out, lse, host_view(hq, {6, 6, 8}), k, v, cu, 1.0f), "attention", "q",
                    "cpu", "cuda");
  // Dtypes: k unlike q, an i32 q, a bf16 lse.
  auto kb = poisoned(DType::bf16, {6, 2, 8});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse, q, kb, kb, cu, 1.0f), "attention", "k", "bf16[6, 2, 8]", "f32");
  auto qi = cudatest::alloc_dev(DType::i32, {6, 6, 8});
  EXPECT_GRPO_ERROR(gpu().attention(qi, lse, qi, k, v, cu, 1.0f), "attention", "expected dtype f32");
  auto lse_b = poisoned(DType::bf16, {6, 6});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse_b, q, k, v, cu, 1.0f), "attention", "lse", "f32");
  // Shapes: token counts, lse, dv; cu_seqlens dtype.
  auto k5 = poisoned(f32, {5, 2, 8});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse, q, k5, k5, cu, 1.0f), "attention", "token counts");
  auto lse2 = poisoned(f32, {6, 2});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse2, q, k, v, cu, 1.0f), "attention", "lse", "f32[6, 2]");
  auto dv_bad = poisoned(f32, {6, 2, 7});
  EXPECT_GRPO_ERROR(gpu().attention_backward(q, k, dv_bad, out, q, k, v, out, lse, cu, 1.0f), "attention_backward",
                    "dv", "f32[6, 2, 7]");
  auto cu_f = poisoned(f32, {3});
  EXPECT_GRPO_ERROR(gpu().attention(out, lse, q, k, v, cu_f, 1.0f), "attention", "cu_seqlens", "i32");
  // Head dimensions past the supported 256.
  auto q257 = poisoned(f32, {6, 2, 257}), k257 = poisoned(f32, {6, 2, 257}), lse257 = poisoned(f32, {6, 2});
  EXPECT_GRPO_ERROR(gpu().attention(q257, lse257, q257, k257, k257, cu, 1.0f), "attention", "head dimension 257",
                    "256");
}

}  // namespace
}  // namespace grpo
