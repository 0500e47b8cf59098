// CUDA MoE routing ops against the CPU backend on the same inputs: the router (softmax and
// sigmoid, with and without selection bias, renormalised or not, routing replay) and its
// backward, the stable alignment by expert (exact outputs), and permute / unpermute with their
// backwards in f32 and bf16 (bf16 inputs rounded first, so both backends see the same values).
// Device-side index checks must fail with the CPU's message and leave the outputs untouched.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...


// ---- router ----------------------------------------------------------------------------------

struct RouterCase {
  int64_t T, E, K;
  RouterScore score;
  bool bias, normalize;
  float scaling;
  std::string str() const {
    return "T=" + std::to_string(T) + " E=" + std::to_string(E) + " K=" + std::to_string(K) +
           (score == RouterScore::softmax ? " softmax" : " sigmoid") + (bias ? " bias" : "") +
           (normalize ? " normalize" : "") + " scaling=" + std::to_string(scaling);
  }
};

struct RouterOut {
  std::vector<float> w, scores;
  std::vector<int32_t> ids;
};

RouterOut cpu_router(const RouterCase& c, std::vector<float>& logits, std::vector<float>& bias,
                     std::vector<int32_t> ids, bool replay) {
  RouterOut o{std::vector<float>(size_t(c.T * c.K)), std::vector<float>(size_t(c.T * c.E)), std::move(ids)};
  o.ids.resize(size_t(c.T * c.K));
  RouterParams p{c.K, c.score, c.normalize, c.scaling, c.bias ? host_view(bias, {c.E}) : Tensor{}};
  cpu().moe_router(host_view(o.w, {c.T, c.K}), host_view(o.ids, {c.T, c.K}), host_view(o.scores, {c.T, c.E}),
                   host_view(logits, {c.T, c.E}), p, replay);
  return o;
}

RouterOut gpu_router(const RouterCase& c, const std::vector<float>& logits, const std::vector<float>& bias,
                     const std::vector<int32_t>& ids, bool replay) {
  Dev d_logits = upload(logits, {c.T, c.E});
  Dev d_bias = upload(bias, {c.E});
  Dev d_w = poisoned(DType::f32, {c.T, c.K}), d_scores = poisoned(DType::f32, {c.T, c.E});
  Dev d_ids = replay ? upload_i32(ids, {c.T, c.K}) : poisoned(DType::i32, {c.T, c.K});
  RouterParams p{c.K, c.score, c.normalize, c.scaling, c.bias ? d_bias.t : Tensor{}};
  gpu().moe_router(d_w, d_ids, d_scores, d_logits, p, replay);
  return {download(d_w), download(d_scores), download_i32(d_ids)};
}

std::vector<RouterCase> router_cases() {
  std::vector<RouterCase> cases;
  const int64_t shapes[][3] = {{1, 4, 1}, {7, 8, 2}, {33, 64, 8}, {129, 128, 8}, {300, 256, 8}, {5, 16, 16}};
  for (const auto& s : shapes)
    for (RouterScore score : {RouterScore::softmax, RouterScore::sigmoid})
      for (bool bias : {false, true})
        for (bool normalize : {false, true})
          cases.push_back({s[0], s[1], s[2], score, bias, normalize, normalize ? 2.5f : 1.0f});
  return cases;
}

TEST(CudaMoe, RouterMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 100;
  for (const RouterCase& c : router_cases()) {
    SCOPED_TRACE(c.str());
    std::vector<float> logits = randn(size_t(c.T * c.E), ++seed, 2.0f);
    std::vector<float> bias = randu(size_t(c.E), ++seed, -0.3f, 0.3f);
    const RouterOut ref = cpu_router(c, logits, bias, {}, false);
    const RouterOut out = gpu_router(c, logits, bias, {}, false);
    EXPECT_EQ(out.ids, ref.ids);
    EXPECT_REL("scores", out.scores, ref.scores, 1e-5);
    EXPECT_REL("topk_weights", out.w, ref.w, 1e-5);
  }
}

// Equal logits: both backends pick the lower expert id first.
TEST(CudaMoe, RouterTiesGoToTheLowerExpert) {
  GRPO_REQUIRE_GPU();
  for (RouterScore score : {RouterScore::softmax, RouterScore::sigmoid}) {
    RouterCase c{6, 12, 4, score, false, true, 1.0f};
    std::vector<float> logits(size_t(c.T * c.E));
    for (size_t i = 0; i < logits.size(); ++i) logits[i] = float(int(i * 7 % 5)) * 0.5f;  // many ties
    std::vector<float> bias(size_t(c.E), 0.0f);
    const RouterOut ref = cpu_router(c, logits, bias, {}, false);
    const RouterOut out = gpu_router(c, logits, bias, {}, false);
    EXPECT_EQ(out.ids, ref.ids);
    EXPECT_REL("topk_weights", out.w, ref.w, 1e-5);
  }
}

// NOTES: a replay row is any K distinct experts, in any order.
std::vector<int32_t> random_distinct_ids(int64_t T, int64_t E, int64_t K, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids, perm(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    ids.insert(ids.end(), perm.begin(), perm.begin() + K);
  }
  return ids;
}

TEST(CudaMoe, RouterReplayMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 500;
  for (const RouterCase& c : router_cases()) {
    SCOPED_TRACE(c.str());
    std::vector<float> logits = randn(size_t(c.T * c.E), ++seed, 2.0f);
    std::vector<float> bias = randu(size_t(c.E), ++seed, -0.3f, 0.3f);
    const std::vector<int32_t> ids = random_distinct_ids(c.T, c.E, c.K, ++seed);
    const RouterOut ref = cpu_router(c, logits, bias, ids, true);
    const RouterOut out = gpu_router(c, logits, bias, ids, true);
    EXPECT_EQ(out.ids, ids);
    EXPECT_REL("scores", out.scores, ref.scores, 1e-5);
    EXPECT_REL("topk_weights", out.w, ref.w, 1e-5);
  }
}

TEST(CudaMoe, RouterBackwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 900;
  for (const RouterCase& c : router_cases()) {
    SCOPED_TRACE(c.str());
    std::vector<float> logits = randn(size_t(c.T * c.E), ++seed, 2.0f);
    std::vector<float> bias = randu(size_t(c.E), ++seed, -0.3f, 0.3f);
    RouterOut fwd = cpu_router(c, logits, bias, {}, false);
    std::vector<float> dw = randn(size_t(c.T * c.K), ++seed);
    std::vector<float> ref(size_t(c.T * c.E));
    RouterParams p{c.K, c.score, c.normalize, c.scaling, {}};
    cpu().moe_router_backward(host_view(ref, {c.T, c.E}), host_view(dw, {c.T, c.K}),
                              host_view(fwd.scores, {c.T, c.E}), host_view(fwd.ids, {c.T, c.K}), p);
    Dev d_dl = poisoned(DType::f32, {c.T, c.E});
    Dev d_dw = upload(dw, {c.T, c.K}), d_scores = upload(fwd.scores, {c.T, c.E});
    Dev d_ids = upload_i32(fwd.ids, {c.T, c.K});
    gpu().moe_router_backward(d_dl, d_dw, d_scores, d_ids, p);
    EXPECT_REL("dlogits", download(d_dl), ref, 1e-5);
  }
}

TEST(CudaMoe, RouterErrors) {
  GRPO_REQUIRE_GPU();
  const int64_t T = 3, E = 4;
  Dev logits = upload(randn(T * E, 1), {T, E}), scores = poisoned(DType::f32, {T, E});
  Dev w = poisoned(DType::f32, {T, 2}), ids = poisoned(DType::i32, {T, 2});
  RouterParams p{2, RouterScore::softmax, true, 1.0f, {}};
  RouterParams big = p;
  big.top_k = 5;
  EXPECT_GRPO_ERROR(gpu().moe_router(w, ids, scores, logits, big), "moe_router", "top_k is 5", "f32[3, 4]");
  Dev w3 = poisoned(DType::f32, {T, 3});
  EXPECT_GRPO_ERROR(gpu().moe_router(w3, ids, scores, logits, p), "moe_router", "topk_weights", "f32[3, 3]");
  Dev bf_logits = upload(randn(T * E, 1), {T, E}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu().moe_router(w, ids, scores, bf_logits, p), "moe_router", "logits", "bf16[3, 4]",
                    "expected dtype f32");
  std::vector<float> host(T * E);
  EXPECT_GRPO_ERROR(gpu().moe_router(w, ids, scores, host_view(host, {T, E}), p), "moe_router", "logits",
                    "is on cpu, expected cuda");

  // Replayed ids are checked on the device; the outputs stay untouched.
  Dev bad = upload_i32({0, 1, 2, 4, 3, 0}, {T, 2});
  EXPECT_GRPO_ERROR(gpu().moe_router(w, bad, scores, logits, p, true), "moe_router", "expert 4", "[1, 1]",
                    "outside [0, 4)");
  for (float x : download(w)) EXPECT_TRUE(std::isnan(x));
  Dev twice = upload_i32({0, 1, 3, 3, 2, 0}, {T, 2});
  EXPECT_GRPO_ERROR(gpu().moe_router(w, twice, scores, logits, p, true), "moe_router", "expert 3", "twice in row 1");
  for (float x : download(scores)) EXPECT_TRUE(std::isnan(x));

  Dev dl = poisoned(DType::f32, {T, E}), dw = upload(randn(T * 2, 2), {T, 2});
  Dev neg = upload_i32({0, 1, -1, 2, 3, 0}, {T, 2});
  EXPECT_GRPO_ERROR(gpu().moe_router_backward(dl, dw, scores, neg, p), "moe_router_backward", "expert -1");
  EXPECT_GRPO_ERROR(gpu().moe_router_backward(dl, dw, scores, twice, p), "moe_router_backward", "twice");
  for (float x : download(dl)) EXPECT_TRUE(std::isnan(x));
  Dev dl5 = poisoned(DType::f32, {T, 5});
  EXPECT_GRPO_ERROR(gpu().moe_router_backward(dl5, dw, scores, ids, p), "moe_router_backward", "dlogits");
}

// ---- align -----------------------------------------------------------------------------------

struct Aligned {
  std::vector<int32_t> offsets, src, dest;
};

Aligned cpu_align(std::vector<int32_t> ids, int64_t T, int64_t K, int64_t E) {
  Aligned a{std::vector<int32_t>(size_t(E + 1)), std::vector<int32_t>(size_t(T * K)),
            std::vector<int32_t>(size_t(T * K))};
  cpu().moe_align(host_view(a.offsets, {E + 1}), host_view(a.src, {T * K}), host_view(a.dest, {T * K}),
                  host_view(ids, {T, K}), E);
  return a;
}

Aligned gpu_align(const std::vector<int32_t>& ids, int64_t T, int64_t K, int64_t E) {
  Dev off = poisoned(DType::i32, {E + 1}), src = poisoned(DType::i32, {T * K}), dest = poisoned(DType::i32, {T * K});
  Dev d_ids = upload_i32(ids, {T, K});
  gpu().moe_align(off, src, dest, d_ids, E);
  return {download_i32(off), download_i32(src), download_i32(dest)};
}

TEST(CudaMoe, AlignMatchesCpu) {
  GRPO_REQUIRE_GPU();
  struct Case {
    int64_t T, K, E;
    int32_t used;  // ids drawn from [0, used): experts >= used get no tokens
  };
  const Case cases[] = {{1, 1, 1, 1},       {7, 2, 8, 8},         {33, 4, 16, 5},        {129, 8, 64, 64},
                        {5, 6, 6, 6},       {4096, 8, 256, 200},  {131072, 8, 128, 128}, {1000, 1, 3, 3}};
  uint64_t seed = 1300;
  for (const Case& c : cases) {
    SCOPED_TRACE("T=" + std::to_string(c.T) + " K=" + std::to_string(c.K) + " E=" + std::to_string(c.E));
    // Rows of distinct experts (as the router gives) when K == E, repeats allowed otherwise.
    std::vector<int32_t> ids = c.K == c.E ? random_distinct_ids(c.T, c.E, c.K, ++seed)
                                          : randint(size_t(c.T * c.K), ++seed, 0, c.used - 1);
    const Aligned ref = cpu_align(ids, c.T, c.K, c.E);
    const Aligned out = gpu_align(ids, c.T, c.K, c.E);
    EXPECT_EQ(out.offsets, ref.offsets);
    EXPECT_EQ(out.src, ref.src);
    EXPECT_EQ(out.dest, ref.dest);
  }
}

TEST(CudaMoe, AlignErrors) {
  GRPO_REQUIRE_GPU();
  Dev off = poisoned(DType::i32, {4}), src = poisoned(DType::i32, {4}), dest = poisoned(DType::i32, {4});
  Dev ids = upload_i32({0, 2, -1, 1}, {2, 2});
  EXPECT_GRPO_ERROR(gpu().moe_align(off, src, dest, ids, 3), "moe_align", "expert -1", "i32[2, 2]", "[0, 3)");
  for (int32_t x : download_i32(off)) EXPECT_EQ(x, 0x7f7f7f7f);
  for (int32_t x : download_i32(dest)) EXPECT_EQ(x, 0x7f7f7f7f);
  Dev big = upload_i32({0, 2, 3, 1}, {2, 2});
  EXPECT_GRPO_ERROR(gpu().moe_align(off, src, dest, big, 3), "moe_align", "expert 3", "[1, 0]");
  EXPECT_GRPO_ERROR(gpu().moe_align(off, src, dest, ids, 0), "moe_align", "num_experts is 0");
  Dev off3 = poisoned(DType::i32, {3});
  EXPECT_GRPO_ERROR(gpu().moe_align(off3, src, dest, big, 3), "moe_align", "expert_offsets", "i32[3]", "[4]");
  std::vector<int32_t> host = {0, 1, 2, 0};
  EXPECT_GRPO_ERROR(gpu().moe_align(off, src, dest, host_view(host, {2, 2}), 3), "moe_align", "topk_ids",
                    "is on cpu");
}

// ---- permute / unpermute -------------------------------------------------------------------

// A routed batch: ids, their alignment and its permutation tensors on the device.
struct Routed {
  int64_t T, K, E;
  std::vector<int32_t> ids;
  Aligned a;
  Dev src, dest;
  Routed(int64_t T_, int64_t K_, int64_t E_, uint64_t seed) : T(T_), K(K_), E(E_) {
    ids = random_distinct_ids(T, E, K, seed);
    a = cpu_align(ids, T, K, E);
    src = upload_i32(a.src, {T * K});
    dest = upload_i32(a.dest, {T * K});
  }
};

struct PermuteCase {
  int64_t T, K, E, C;
};
const PermuteCase kPermuteCases[] = {{1, 1, 1, 1},   {7, 2, 8, 7},    {33, 4, 16, 33},
                                     {129, 8, 64, 129}, {300, 8, 128, 2048}, {64, 2, 4, 1}};

std::string permute_str(const PermuteCase& c, DType dt) {
  return "T=" + std::to_string(c.T) + " K=" + std::to_string(c.K) + " C=" + std::to_string(c.C) + " " +
         dtype_name(dt);
}

TEST(CudaMoe, PermuteAndBackwardMatchCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 1700;
  for (DType dt : {DType::f32, DType::bf16})
    for (const PermuteCase& c : kPermuteCases) {
      SCOPED_TRACE(permute_str(c, dt));
      Routed r(c.T, c.K, c.E, ++seed);
      const int64_t R = c.T * c.K;
      std::vector<float> x = randu(size_t(c.T * c.C), ++seed), dxp = randu(size_t(R * c.C), ++seed);
      round_to(x, dt);
      round_to(dxp, dt);
      std::vector<float> xp_ref(size_t(R * c.C)), dx_ref(size_t(c.T * c.C));
      cpu().moe_permute(host_view(xp_ref, {R, c.C}), host_view(x, {c.T, c.C}), host_view(r.a.src, {R}));
      cpu().moe_permute_backward(host_view(dx_ref, {c.T, c.C}), host_view(dxp, {R, c.C}), host_view(r.a.src, {R}));

      Dev d_x = upload(x, {c.T, c.C}, dt), d_dxp = upload(dxp, {R, c.C}, dt);
      Dev d_xp = poisoned(dt, {R, c.C}), d_dx = poisoned(dt, {c.T, c.C});
      gpu().moe_permute(d_xp, d_x, r.src);
      gpu().moe_permute_backward(d_dx, d_dxp, r.src);
      EXPECT_EQ(download(d_xp), xp_ref);  // a copy: exact
      EXPECT_REL("dx", download(d_dx), dx_ref, tol(dt));
    }
}

// src_token need not come from moe_align: tokens may repeat any number of times or not at
// all (their dx rows are zero), and the rows of a view need not be 16-byte aligned.
TEST(CudaMoe, PermuteGeneralSourcesAndUnalignedRows) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 2100;
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t C : {1, 3, 8, 100}) {
      SCOPED_TRACE("C=" + std::to_string(C) + " " + dtype_name(dt));
      const int64_t T = 50, R = 173;
      std::vector<int32_t> src = randint(size_t(R), ++seed, 0, 30);  // tokens 31..49 get no rows
      std::vector<float> x = randu(size_t((T + 1) * C), ++seed), dxp = randu(size_t(R * C), ++seed);
      round_to(x, dt);
      round_to(dxp, dt);
      std::vector<float> x_rows(x.begin() + C, x.end());  // rows 1..T: a view at an odd offset
      std::vector<float> xp_ref(size_t(R * C)), dx_ref(size_t(T * C));
      cpu().moe_permute(host_view(xp_ref, {R, C}), host_view(x_rows, {T, C}), host_view(src, {R}));
      cpu().moe_permute_backward(host_view(dx_ref, {T, C}), host_view(dxp, {R, C}), host_view(src, {R}));

      Dev d_x = upload(x, {T + 1, C}, dt), d_dxp = upload(dxp, {R, C}, dt), d_src = upload_i32(src, {R});
      Dev d_xp = poisoned(dt, {R, C}), d_dx = poisoned(dt, {T, C});
      gpu().moe_permute(d_xp, d_x.t.rows(1, T + 1), d_src);
      gpu().moe_permute_backward(d_dx, d_dxp, d_src);
      EXPECT_EQ(download(d_xp), xp_ref);
      EXPECT_REL("dx", download(d_dx), dx_ref, tol(dt));
    }
}

TEST(CudaMoe, UnpermuteAndBackwardMatchCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 2500;
  for (DType dt : {DType::f32, DType::bf16})
    for (const PermuteCase& c : kPermuteCases) {
      SCOPED_TRACE(permute_str(c, dt));
      Routed r(c.T, c.K, c.E, ++seed);
      const int64_t R = c.T * c.K;
      std::vector<float> yp = randu(size_t(R * c.C), ++seed), dout = randu(size_t(c.T * c.C), ++seed);
      std::vector<float> w = randu(size_t(R), ++seed, 0.1f, 1.0f);
      round_to(yp, dt);
      round_to(dout, dt);
      std::vector<float> out_ref(size_t(c.T * c.C)), dyp_ref(size_t(R * c.C)), dw_ref(static_cast<size_t>(R));
      cpu().moe_unpermute(host_view(out_ref, {c.T, c.C}), host_view(yp, {R, c.C}), host_view(r.a.dest, {R}),
                          host_view(w, {c.T, c.K}));
      cpu().moe_unpermute_backward(host_view(dyp_ref, {R, c.C}), host_view(dw_ref, {c.T, c.K}),
                                   host_view(dout, {c.T, c.C}), host_view(yp, {R, c.C}), host_view(r.a.dest, {R}),
                                   host_view(w, {c.T, c.K}));

      Dev d_yp = upload(yp, {R, c.C}, dt), d_dout = upload(dout, {c.T, c.C}, dt), d_w = upload(w, {c.T, c.K});
      Dev d_out = poisoned(dt, {c.T, c.C}), d_dyp = poisoned(dt, {R, c.C}), d_dw = poisoned(DType::f32, {c.T, c.K});
      gpu().moe_unpermute(d_out, d_yp, r.dest, d_w);
      gpu().moe_unpermute_backward(d_dyp, d_dw, d_dout, d_yp, r.dest, d_w);
      EXPECT_REL("out", download(d_out), out_ref, tol(dt));
      EXPECT_REL("dyp", download(d_dyp), dyp_ref, tol(dt));
      EXPECT_REL("dtopk_weights", download(d_dw), dw_ref, 1e-5);  // f64 dots of identical inputs
    }
}

// The whole chain on the device (router -> align -> permute -> unpermute) against the CPU.
TEST(CudaMoe, ChainOnDeviceMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const int64_t T = 257, E = 32, K = 4, C = 96;
  std::vector<float> logits = randn(size_t(T * E), 3100, 2.0f), x = randu(size_t(T * C), 3101);
  RouterCase c{T, E, K, RouterScore::softmax, false, true, 1.0f};
  std::vector<float> bias;
  RouterOut ref = cpu_router(c, logits, bias, {}, false);
  Aligned a = cpu_align(ref.ids, T, K, E);
  std::vector<float> xp(size_t(T * K * C)), out(size_t(T * C));
  cpu().moe_permute(host_view(xp, {T * K, C}), host_view(x, {T, C}), host_view(a.src, {T * K}));
  cpu().moe_unpermute(host_view(out, {T, C}), host_view(xp, {T * K, C}), host_view(a.dest, {T * K}),
                      host_view(ref.w, {T, K}));

  Dev d_logits = upload(logits, {T, E}), d_x = upload(x, {T, C});
  Dev w = poisoned(DType::f32, {T, K}), ids = poisoned(DType::i32, {T, K}), scores = poisoned(DType::f32, {T, E});
  gpu().moe_router(w, ids, scores, d_logits, RouterParams{K, RouterScore::softmax, true, 1.0f, {}});
  Dev off = poisoned(DType::i32, {E + 1}), src = poisoned(DType::i32, {T * K}), dest = poisoned(DType::i32, {T * K});
  gpu().moe_align(off, src, dest, ids, E);
  Dev d_xp = poisoned(DType::f32, {T * K, C}), d_out = poisoned(DType::f32, {T, C});
  gpu().moe_permute(d_xp, d_x, src);
  gpu().moe_unpermute(d_out, d_xp, dest, w);
  EXPECT_EQ(download_i32(off), a.offsets);
  EXPECT_EQ(download_i32(dest), a.dest);
  EXPECT_REL("out", download(d_out), out, 1e-5);
}

TEST(CudaMoe, PermuteErrors) {
  GRPO_REQUIRE_GPU();
  const int64_t T = 3, C = 4, K = 2, R = T * K;
  Dev x = upload(randu(T * C, 1), {T, C}), xp = poisoned(DType::f32, {R, C});
  Dev bad_src = upload_i32({0, 1, 2, 3, 0, 1}, {R});
  EXPECT_GRPO_ERROR(gpu().moe_permute(xp, x, bad_src), "moe_permute", "token 3", "at 3", "outside [0, 3)");
  for (float v : download(xp)) EXPECT_TRUE(std::isnan(v));
  Dev dx = poisoned(DType::f32, {T, C});
  EXPECT_GRPO_ERROR(gpu().moe_permute_backward(dx, xp, bad_src), "moe_permute_backward", "token 3");
  for (float v : download(dx)) EXPECT_TRUE(std::isnan(v));
  Dev xp_bf = poisoned(DType::bf16, {R, C});
  Dev src = upload_i32({0, 1, 2, 0, 1, 2}, {R});
  EXPECT_GRPO_ERROR(gpu().moe_permute(xp_bf, x, src), "moe_permute", "xp", "bf16");
  Dev xp5 = poisoned(DType::f32, {R, C + 1});
  EXPECT_GRPO_ERROR(gpu().moe_permute(xp5, x, src), "moe_permute", "xp", "f32[6, 5]", "[6, 4]");
  Dev x_i32 = poisoned(DType::i32, {T, C});
  EXPECT_GRPO_ERROR(gpu().moe_permute(xp, x_i32, src), "moe_permute", "x", "i32[3, 4]", "expected dtype f32");

  Dev w = upload(randu(R, 2), {T, K}), out = poisoned(DType::f32, {T, C});
  Dev dup = upload_i32({0, 1, 2, 3, 4, 4}, {R});
  EXPECT_GRPO_ERROR(gpu().moe_unpermute(out, xp, dup, w), "moe_unpermute", "names row 4 twice");
  for (float v : download(out)) EXPECT_TRUE(std::isnan(v));
  Dev far = upload_i32({0, 1, 2, 3, 4, 6}, {R});
  EXPECT_GRPO_ERROR(gpu().moe_unpermute(out, xp, far, w), "moe_unpermute", "row 6", "outside [0, 6)");
  Dev dyp = poisoned(DType::f32, {R, C}), dw = poisoned(DType::f32, {T, K});
  EXPECT_GRPO_ERROR(gpu().moe_unpermute_backward(dyp, dw, out, xp, dup, w), "moe_unpermute_backward", "twice");
  for (float v : download(dw)) EXPECT_TRUE(std::isnan(v));
  Dev w3 = upload(randu(T * 3, 3), {T, 3});
  EXPECT_GRPO_ERROR(gpu().moe_unpermute(out, xp, src, w3), "moe_unpermute", "yp", "[9, 4]");
}

}  // namespace
}  // namespace grpo
