// CUDA token sampling against the CPU backend: the same logits and SamplingParams must give
// the same tokens (greedy always; sampled rows except where exp rounding moves a CDF boundary
// across u * K, which random logits essentially never hit) and the same log-probs (1e-5).
// Rows mix greedy, temperatures, top_k, top_p, min_p and their combinations; vocabularies of
// 7, 1000 and 151936 tokens; f32 and bf16 logits (bf16 rounds the inputs first, and its many
// exact ties exercise the lower-id rule).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

struct Draws {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
};

Draws cpu_sample(std::vector<float>& logits, int64_t V, const std::vector<SamplingParams>& params) {
  const int64_t B = int64_t(params.size());
  Draws d{std::vector<int32_t>(size_t(B), -7), std::vector<float>(size_t(B))};
  cudatest::cpu().sample(host_view(d.tokens, {B}), host_view(d.logprobs, {B}), host_view(logits, {B, V}), params);
  return d;
}

Draws gpu_sample(const std::vector<float>& logits, int64_t V, const std::vector<SamplingParams>& params, DType dt) {
  const int64_t B = int64_t(params.size());
  Dev d_logits = upload(logits, {B, V}, dt);
  Dev tokens = poisoned(DType::i32, {B}), logprobs = poisoned(DType::f32, {B});
  cudatest::gpu().sample(tokens, logprobs, d_logits, params);
  return {download_i32(tokens), download(logprobs)};
}

// The parameter mix, cycled over the rows; every row gets its own Philox stream and offset.
std::vector<SamplingParams> mixed_params(int64_t B, uint64_t seed) {
  auto sp = [](float temp, int64_t top_k, float top_p, float min_p) {
    SamplingParams p;
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    return p;
  };
  const SamplingParams kinds[] = {
      sp(0.0f, 0, 1.0f, 0.0f),   sp(1.0f, 0, 1.0f, 0.0f),   sp(0.7f, 0, 1.0f, 0.0f),  sp(1.3f, 0, 1.0f, 0.0f),
      sp(1.0f, 1, 1.0f, 0.0f),   sp(1.0f, 5, 1.0f, 0.0f),   sp(0.7f, 50, 1.0f, 0.0f), sp(1.0f, 0, 0.3f, 0.0f),
      sp(1.3f, 0, 0.9f, 0.0f),   sp(1.0f, 0, 1.0f, 0.05f),  sp(0.7f, 50, 0.9f, 0.0f), sp(1.3f, 5, 0.9f, 0.05f),
      sp(1.0f, 0, 0.9f, 0.05f),  sp(0.0f, 5, 0.3f, 0.05f),  sp(1.3f, 50, 1.0f, 0.05f), sp(0.7f, 1000000, 0.3f, 0.0f),
  };
  const int64_t n = int64_t(sizeof(kinds) / sizeof(kinds[0]));
  std::vector<SamplingParams> params;
  for (int64_t b = 0; b < B; ++b) {
    SamplingParams p = kinds[b % n];
    p.seed = seed;
    p.stream = uint64_t(b) * 7919u;
    p.offset = uint64_t(b) / uint64_t(n);
    params.push_back(p);
  }
  return params;
}

// Logit rows of varied sharpness (flat to peaked), some with masked (-inf) tokens.
std::vector<float> make_logits(int64_t B, int64_t V, uint64_t seed, DType dt) {
  std::vector<float> l = randn(size_t(B * V), seed);
  const float scales[] = {0.3f, 1.0f, 3.0f, 8.0f};
  for (int64_t b = 0; b < B; ++b) {
    const float s = scales[b % 4];
    for (int64_t j = 0; j < V; ++j) l[size_t(b * V + j)] *= s;
    if (b % 5 == 4)
      for (int64_t j = 1; j < V; j += 3) l[size_t(b * V + j)] = -INFINITY;
  }
  round_to(l, dt);
  return l;
}

std::string where(int64_t b, const SamplingParams& p) {
  return "row " + std::to_string(b) + " (temperature " + std::to_string(p.temperature) + ", top_k " +
         std::to_string(p.top_k) + ", top_p " + std::to_string(p.top_p) + ", min_p " + std::to_string(p.min_p) + ")";
}

// Greedy rows agree exactly; sampled rows may disagree only at a CDF boundary (at most one
// in a thousand draws, in practice none); log-probs of agreeing rows within 1e-5.
void expect_same_draws(const Draws& out, const Draws& ref, const std::vector<SamplingParams>& params) {
  int64_t sampled = 0, mismatched = 0;
  std::string examples;
  for (size_t b = 0; b < params.size(); ++b) {
    const bool greedy = params[b].temperature == 0.0f;
    if (!greedy) ++sampled;
    if (out.tokens[b] != ref.tokens[b]) {
      EXPECT_FALSE(greedy) << where(int64_t(b), params[b]) << ": greedy token " << out.tokens[b] << " vs "
                           << ref.tokens[b];
      if (++mismatched <= 5)
        examples += "; " + where(int64_t(b), params[b]) + ": " + std::to_string(out.tokens[b]) + " vs CPU " +
                    std::to_string(ref.tokens[b]);
      continue;
    }
    const double tol = 1e-5 * std::max(1.0, std::fabs(double(ref.logprobs[b])));
    EXPECT_NEAR(out.logprobs[b], ref.logprobs[b], tol) << where(int64_t(b), params[b]);
  }
  EXPECT_LE(mismatched * 1000, std::max<int64_t>(sampled, 1000))
      << mismatched << " of " << sampled << " draws differ" << examples;
  if (mismatched > 0) std::printf("note: %lld of %lld draws differ%s\n", (long long)mismatched, (long long)sampled,
                                  examples.c_str());
}

TEST(CudaSampling, MatchesCpuOnMixedRows) {
  GRPO_REQUIRE_GPU();
  struct Case {
    int64_t B, V;
  };
  const Case cases[] = {{600, 7}, {2000, 1000}, {64, 151936}};
  uint64_t seed = 10;
  for (DType dt : {DType::f32, DType::bf16})
    for (const Case& c : cases) {
      SCOPED_TRACE("B=" + std::to_string(c.B) + " V=" + std::to_string(c.V) + " " + dtype_name(dt));
      std::vector<float> logits = make_logits(c.B, c.V, ++seed, dt);
      const std::vector<SamplingParams> params = mixed_params(c.B, ++seed);
      const Draws ref = cpu_sample(logits, c.V, params);
      const Draws out = gpu_sample(logits, c.V, params, dt);
      expect_same_draws(out, ref, params);
    }
}

// Logits drawn from a handful of values: long runs of exact ties, broken by the lower id in
// the candidate order, the top_k cut and the draw.
TEST(CudaSampling, TiesGoToTheLowerId) {
  GRPO_REQUIRE_GPU();
  const int64_t B = 400, V = 1000;
  std::vector<float> logits(size_t(B * V));
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = float((i * 2654435761u >> 7) % 4) * 0.75f;
  const std::vector<SamplingParams> params = mixed_params(B, 77);
  const Draws ref = cpu_sample(logits, V, params);
  const Draws out = gpu_sample(logits, V, params, DType::f32);
  expect_same_draws(out, ref, params);
}

// One row drawn at 2000 Philox offsets: the GPU walks the same CDF as the CPU.
TEST(CudaSampling, ManyDrawsOfOneRow) {
  GRPO_REQUIRE_GPU();
  const int64_t B = 2000, V = 5000;
  std::vector<float> row = randn(size_t(V), 31, 2.0f), logits;
  SamplingParams p;
  p.temperature = 0.9f;
  p.top_p = 0.95f;
  p.seed = 1234;
  std::vector<SamplingParams> params;
  for (int64_t b = 0; b < B; ++b) {
    logits.insert(logits.end(), row.begin(), row.end());
    params.push_back(p);
    params.back().offset = uint64_t(b);
  }
  const Draws ref = cpu_sample(logits, V, params);
  const Draws out = gpu_sample(logits, V, params, DType::f32);
  expect_same_draws(out, ref, params);
  // The same call again gives the same tokens (deterministic histograms).
  const Draws again = gpu_sample(logits, V, params, DType::f32);
  EXPECT_EQ(again.tokens, out.tokens);
}

TEST(CudaSampling, Errors) {
  GRPO_REQUIRE_GPU();
  const int64_t B = 2, V = 5;
  Dev logits = upload(randn(B * V, 1), {B, V});
  Dev tokens = poisoned(DType::i32, {B}), logprobs = poisoned(DType::f32, {B});
  std::vector<SamplingParams> p(2);
  auto bad = [&](auto edit) {
    std::vector<SamplingParams> q = p;
    edit(q[1]);
    return q;
  };
  Ops& ops = cudatest::gpu();
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.temperature = -0.5f; })), "sample",
                    "params[1].temperature");
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.top_p = 0.0f; })),
                    "sample", "top_p");
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, logits, bad([](SamplingParams& s) { s.min_p = 1.0f; })),
                    "sample", "min_p");
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, logits, std::vector<SamplingParams>(3)), "sample",
                    "params has 3");
  Dev empty = poisoned(DType::f32, {B, 0});
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, empty, p), "sample", "f32[2, 0]");
  Dev tokens_f = poisoned(DType::f32, {B});
  EXPECT_GRPO_ERROR(ops.sample(tokens_f, logprobs, logits, p), "tokens", "i32");
  Dev int_logits = poisoned(DType::i32, {B, V});
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, int_logits, p), "logits", "i32[2, 5]",
                    "expected dtype f32");
  std::vector<float> host(B * V);
  EXPECT_GRPO_ERROR(ops.sample(tokens, logprobs, host_view(host, {B, V}), p), "logits",
                    "is on cpu, expected cuda");
}

}  // namespace
}  // namespace grpo
