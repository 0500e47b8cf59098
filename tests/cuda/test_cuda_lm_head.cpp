// CUDA fused LM head (lm_head_logprob and its backward) against the CPU backend on the same
// inputs (bf16 runs: inputs rounded to bf16 first, so both backends see the same values).
// The backward gets the CPU forward's lse and entropy on both sides, so each op is compared
// alone. The chunked paths run in LargeVocabularyAndManyTokens (2100 tokens and 20000
// vocabulary rows span several token and vocabulary chunks).
#include <cmath>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

// Inputs of one problem, already rounded to `dt`; targets spread over the whole vocabulary.
struct Problem {
  int64_t T, V, C;
  float inv_temp;
  DType dt;
  std::vector<float> hidden, w;
  std::vector<int32_t> targets;
  Dev d_hidden, d_w, d_targets;

  Problem(int64_t T_, int64_t V_, int64_t C_, float inv_temp_, DType dt_, uint64_t seed)
      : T(T_), V(V_), C(C_), inv_temp(inv_temp_), dt(dt_) {
    hidden = randu(size_t(T * C), seed);
    w = randu(size_t(V * C), seed + 1);
    round_to(hidden, dt);
    round_to(w, dt);
    targets = randint(size_t(T), seed + 2, 0, int32_t(V - 1));
    d_hidden = upload(hidden, {T, C}, dt);
    d_w = upload(w, {V, C}, dt);
    d_targets = upload_i32(targets, {T});
  }
  std::string str() const {
    return "T=" + std::to_string(T) + " V=" + std::to_string(V) + " C=" + std::to_string(C) +
           " inv_temp=" + std::to_string(inv_temp) + " " + dtype_name(dt);
  }
};

struct Forward {
  std::vector<float> logprob, entropy, lse;
};

Forward cpu_forward(Problem& p) {
  Forward f{std::vector<float>(size_t(p.T)), std::vector<float>(size_t(p.T)), std::vector<float>(size_t(p.T))};
  cudatest::cpu().lm_head_logprob(host_view(f.logprob, {p.T}), host_view(f.entropy, {p.T}), host_view(f.lse, {p.T}),
                                  host_view(p.hidden, {p.T, p.C}), host_view(p.w, {p.V, p.C}),
                                  host_view(p.targets, {p.T}), p.inv_temp);
  return f;
}

// The forward on both backends, with and without entropy; returns the CPU's.
Forward check_forward(Problem& p) {
  Forward ref = cpu_forward(p);
  for (bool with_entropy : {true, false}) {
    Dev lp = poisoned(DType::f32, {p.T}), ent = poisoned(DType::f32, {p.T}), lse = poisoned(DType::f32, {p.T});
    cudatest::gpu().lm_head_logprob(lp, with_entropy ? Tensor(ent) : Tensor{}, lse, p.d_hidden, p.d_w, p.d_targets,
                                    p.inv_temp);
    const std::string what = p.str() + (with_entropy ? " with entropy" : " without entropy");
    EXPECT_REL("logprob " + what, download(lp), ref.logprob, tol(p.dt));
    EXPECT_REL("lse " + what, download(lse), ref.lse, tol(p.dt));
    if (with_entropy) {
      EXPECT_REL("entropy " + what, download(ent), ref.entropy, tol(p.dt));
    }
  }
  return ref;
}

// The backward on both backends: dhidden from a NaN start (assigned), dw from small random
// values (accumulated; small so that a missing gradient would show), with and without
// dentropy. dw_dt: f32, or bf16 with bf16 inputs. forward: the CPU's forward of p, when the
// caller has it (the large problems' CPU reference is what takes the time).
void check_backward(Problem& p, DType dw_dt, bool with_dentropy, uint64_t seed, const Forward* forward = nullptr) {
  Forward f = forward ? *forward : cpu_forward(p);
  std::vector<float> dlogprob = randu(size_t(p.T), seed), dentropy = randu(size_t(p.T), seed + 1, -0.3f, 0.3f);
  std::vector<float> dw = randu(size_t(p.V * p.C), seed + 2, -1e-3f, 1e-3f);
  round_to(dw, dw_dt);
  std::vector<float> dh(size_t(p.T * p.C));
  std::vector<float> dw_ref = dw;
  Ops& cpu = cudatest::cpu();
  cpu.lm_head_logprob_backward(host_view(dh, {p.T, p.C}), host_view(dw_ref, {p.V, p.C}), host_view(dlogprob, {p.T}),
                               with_dentropy ? host_view(dentropy, {p.T}) : Tensor{}, host_view(p.hidden, {p.T, p.C}),
                               host_view(p.w, {p.V, p.C}), host_view(p.targets, {p.T}), host_view(f.lse, {p.T}),
                               with_dentropy ? host_view(f.entropy, {p.T}) : Tensor{}, p.inv_temp);

  Dev d_dh = poisoned(p.dt, {p.T, p.C}), d_dw = upload(dw, {p.V, p.C}, dw_dt);
  Dev d_dlp = upload(dlogprob, {p.T}), d_dent = upload(dentropy, {p.T});
  Dev d_lse = upload(f.lse, {p.T}), d_ent = upload(f.entropy, {p.T});
  cudatest::gpu().lm_head_logprob_backward(d_dh, d_dw, d_dlp, with_dentropy ? Tensor(d_dent) : Tensor{}, p.d_hidden,
                                           p.d_w, p.d_targets, d_lse, with_dentropy ? Tensor(d_ent) : Tensor{},
                                           p.inv_temp);
  const std::string what = p.str() + " dw " + dtype_name(dw_dt) + (with_dentropy ? " with dentropy" : "");
  EXPECT_REL("dhidden " + what, download(d_dh), dh, tol(p.dt));
  EXPECT_REL("dw " + what, download(d_dw), dw_ref, tol(p.dt));
}

const std::vector<int64_t> kTokens = {1, 7, 130};
const std::vector<int64_t> kVocab = {5, 1000, 4099};
const std::vector<int64_t> kFeatures = {8, 64, 33};
const std::vector<float> kInvTemps = {1.0f, 1.0f / 0.7f};

TEST(CudaLmHead, ForwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 100;
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t T : kTokens)
      for (int64_t V : kVocab)
        for (int64_t C : kFeatures)
          for (float it : kInvTemps) {
            Problem p(T, V, C, it, dt, seed += 3);
            check_forward(p);
          }
}

TEST(CudaLmHead, BackwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  uint64_t seed = 500;
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t T : kTokens)
      for (int64_t V : kVocab)
        for (int64_t C : kFeatures)
          for (float it : kInvTemps) {
            Problem p(T, V, C, it, dt, seed += 3);
            for (bool with_dentropy : {true, false}) {
              check_backward(p, DType::f32, with_dentropy, seed + 10);
              // bf16 inputs: a bf16 dw too, in half of the cases (to keep the test short).
              if (dt == DType::bf16 && with_dentropy == (C != 33))
                check_backward(p, DType::bf16, with_dentropy, seed + 20);
            }
          }
}

// Several token chunks (2048 tokens each) and vocabulary chunks (4096 rows each), the last of
// each ragged; the grad-chunk loops accumulate dhidden across vocabulary chunks and dw across
// token chunks.
TEST(CudaLmHead, LargeVocabularyAndManyTokens) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16}) {
    Problem p(2100, 20000, 64, 1.0f / 0.7f, dt, 7);  // 2 token chunks, 5 vocabulary chunks, both ragged
    const Forward f = check_forward(p);
    check_backward(p, DType::f32, true, 8, &f);
    if (dt == DType::bf16) check_backward(p, DType::bf16, false, 9, &f);
  }
}

// Either gradient may be undefined; the other equals the one computed with both.
TEST(CudaLmHead, UndefinedGradientsAreSkipped) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16}) {
    Problem p(130, 4099, 33, 1.0f, dt, 31);
    Forward f = cpu_forward(p);
    std::vector<float> dlogprob = randu(size_t(p.T), 32), dentropy = randu(size_t(p.T), 33);
    Dev d_dlp = upload(dlogprob, {p.T}), d_dent = upload(dentropy, {p.T});
    Dev d_lse = upload(f.lse, {p.T}), d_ent = upload(f.entropy, {p.T});
    Ops& gpu = cudatest::gpu();
    Dev dh_both = poisoned(dt, {p.T, p.C}), dh_only = poisoned(dt, {p.T, p.C});
    std::vector<float> zeros(size_t(p.V * p.C), 0.0f);
    Dev dw_both = upload(zeros, {p.V, p.C}), dw_only = upload(zeros, {p.V, p.C});
    gpu.lm_head_logprob_backward(dh_both, dw_both, d_dlp, d_dent, p.d_hidden, p.d_w, p.d_targets, d_lse, d_ent,
                                 p.inv_temp);
    gpu.lm_head_logprob_backward(dh_only, Tensor{}, d_dlp, d_dent, p.d_hidden, p.d_w, p.d_targets, d_lse, d_ent,
                                 p.inv_temp);
    gpu.lm_head_logprob_backward(Tensor{}, dw_only, d_dlp, d_dent, p.d_hidden, p.d_w, p.d_targets, d_lse, d_ent,
                                 p.inv_temp);
    EXPECT_EQ(download(dh_only), download(dh_both)) << dtype_name(dt);
    EXPECT_EQ(download(dw_only), download(dw_both)) << dtype_name(dt);
    // Neither: nothing to do, nothing to check against.
    gpu.lm_head_logprob_backward(Tensor{}, Tensor{}, d_dlp, d_dent, p.d_hidden, p.d_w, p.d_targets, d_lse, d_ent,
                                 p.inv_temp);
  }
}

TEST(CudaLmHead, NoTokensIsANoOp) {
  GRPO_REQUIRE_GPU();
  Dev hidden = cudatest::alloc_dev(DType::f32, {0, 8}), w = upload(randu(5 * 8, 1), {5, 8});
  Dev targets = cudatest::alloc_dev(DType::i32, {0}), out = cudatest::alloc_dev(DType::f32, {0});
  Dev dh = cudatest::alloc_dev(DType::f32, {0, 8});
  std::vector<float> dw_start = randu(5 * 8, 2);
  Dev dw = upload(dw_start, {5, 8});
  cudatest::gpu().lm_head_logprob(out, out, out, hidden, w, targets, 1.0f);
  cudatest::gpu().lm_head_logprob_backward(dh, dw, out, out, hidden, w, targets, out, out, 1.0f);
  EXPECT_EQ(download(dw), dw_start);
}

// Device-side target checks report the lowest bad index with the CPU's words, in either op,
// in a later token chunk too, and leave the Ops usable.
TEST(CudaLmHead, RejectsOutOfRangeTargets) {
  GRPO_REQUIRE_GPU();
  Ops& gpu = cudatest::gpu();
  const int64_t T = 4, C = 3, V = 5;
  Dev hidden = upload(randu(T * C, 1), {T, C}), w = upload(randu(V * C, 2), {V, C});
  Dev lp = poisoned(DType::f32, {T}), ent = poisoned(DType::f32, {T}), lse = poisoned(DType::f32, {T});
  Dev dh = poisoned(DType::f32, {T, C}), dw = upload(randu(V * C, 3), {V, C}), dlp = upload(randu(T, 4), {T});

  Dev bad = upload_i32({0, 1, 5, 2}, {T});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w, bad, 1.0f), "lm_head_logprob", "targets[2] = 5",
                    "is outside the vocabulary [0, 5)");
  Dev bad2 = upload_i32({0, 9, -1, 7}, {T});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w, bad2, 1.0f), "targets[1] = 9");
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob_backward(dh, dw, dlp, Tensor{}, hidden, w, bad2, lse, Tensor{}, 1.0f),
                    "lm_head_logprob_backward", "targets[1] = 9", "[0, 5)");

  // A bad target in the second token chunk.
  const int64_t T2 = 2100;
  std::vector<int32_t> tg = randint(T2, 5, 0, int32_t(V - 1));
  tg[2099] = -3;
  Dev hidden2 = upload(randu(T2 * C, 6), {T2, C}), targets2 = upload_i32(tg, {T2});
  Dev lp2 = poisoned(DType::f32, {T2}), lse2 = poisoned(DType::f32, {T2});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp2, Tensor{}, lse2, hidden2, w, targets2, 1.0f), "targets[2099] = -3");

  // The flag is cleared for the next call.
  Dev good = upload_i32({0, 1, 4, 2}, {T});
  EXPECT_NO_THROW(gpu.lm_head_logprob(lp, ent, lse, hidden, w, good, 1.0f));
  EXPECT_NO_THROW(gpu.lm_head_logprob_backward(dh, dw, dlp, Tensor{}, hidden, w, good, lse, Tensor{}, 1.0f));
}

TEST(CudaLmHead, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Ops& gpu = cudatest::gpu();
  const int64_t T = 4, C = 3, V = 5;
  Dev hidden = upload(randu(T * C, 1), {T, C}), w = upload(randu(V * C, 2), {V, C});
  Dev targets = upload_i32({0, 1, 4, 2}, {T});
  Dev lp = poisoned(DType::f32, {T}), ent = poisoned(DType::f32, {T}), lse = poisoned(DType::f32, {T});
  Dev dh = poisoned(DType::f32, {T, C}), dw = upload(randu(V * C, 3), {V, C}), dlp = upload(randu(T, 4), {T});

  // Shapes.
  Dev w_bad = upload(randu(V * (C + 1), 5), {V, C + 1});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w_bad, targets, 1.0f), "lm_head_logprob", "w",
                    "f32[5, 4]", "[*, 3]");
  Dev targets_short = upload_i32({0, 1, 2}, {T - 1});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w, targets_short, 1.0f), "targets", "i32[3]", "[4]");
  Dev short_out = poisoned(DType::f32, {T - 1});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, short_out, lse, hidden, w, targets, 1.0f), "entropy", "f32[3]");
  Dev dw_bad = poisoned(DType::f32, {V + 1, C});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob_backward(dh, dw_bad, dlp, Tensor{}, hidden, w, targets, lse, Tensor{}, 1.0f),
                    "lm_head_logprob_backward", "dw", "f32[6, 3]", "[5, 3]");
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob_backward(dh, dw, dlp, dlp, hidden, w, targets, lse, Tensor{}, 1.0f),
                    "dentropy", "entropy is undefined");

  // inv_temperature.
  for (float bad : {0.0f, -1.0f, NAN, INFINITY}) {
    EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w, targets, bad), "inv_temperature",
                      "expected finite and > 0");
    EXPECT_GRPO_ERROR(gpu.lm_head_logprob_backward(dh, dw, dlp, Tensor{}, hidden, w, targets, lse, Tensor{}, bad),
                      "inv_temperature");
  }

  // Dtypes: f32 or bf16 hidden, w of hidden's dtype, dhidden too, dw of w's dtype or f32.
  Dev hidden_f16 = cudatest::alloc_dev(DType::f16, {T, C});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden_f16, w, targets, 1.0f), "hidden",
                    "expected dtype f32 or bf16");
  Dev w_bf16 = upload(randu(V * C, 6), {V, C}, DType::bf16);
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w_bf16, targets, 1.0f), "w", "bf16[5, 3]",
                    "expected dtype f32");
  Dev hidden_bf16 = upload(randu(T * C, 7), {T, C}, DType::bf16);
  EXPECT_GRPO_ERROR(
      gpu.lm_head_logprob_backward(dh, dw, dlp, Tensor{}, hidden_bf16, w_bf16, targets, lse, Tensor{}, 1.0f),
      "dhidden", "expected dtype bf16");
  Dev dw_f16 = cudatest::alloc_dev(DType::f16, {V, C});
  EXPECT_GRPO_ERROR(
      gpu.lm_head_logprob_backward(Tensor{}, dw_f16, dlp, Tensor{}, hidden_bf16, w_bf16, targets, lse, Tensor{}, 1.0f),
      "dw", "expected dtype bf16 or f32");
  Dev dw_bf16 = cudatest::alloc_dev(DType::bf16, {V, C});
  EXPECT_GRPO_ERROR(
      gpu.lm_head_logprob_backward(Tensor{}, dw_bf16, dlp, Tensor{}, hidden, w, targets, lse, Tensor{}, 1.0f), "dw",
      "expected dtype f32");
  Dev lp_bf16 = cudatest::alloc_dev(DType::bf16, {T});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp_bf16, ent, lse, hidden, w, targets, 1.0f), "logprob", "expected dtype f32");
  Dev targets_f = upload(randu(T, 8), {T});
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, hidden, w, targets_f, 1.0f), "targets", "i32");

  // A host tensor given to the CUDA op.
  std::vector<float> host_hidden = randu(T * C, 9);
  EXPECT_GRPO_ERROR(gpu.lm_head_logprob(lp, ent, lse, host_view(host_hidden, {T, C}), w, targets, 1.0f), "hidden",
                    "is on cpu, expected cuda");
}

}  // namespace
}  // namespace grpo
