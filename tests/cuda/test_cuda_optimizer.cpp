// CUDA AdamW, sum of squares and global grad-norm clipping against the CPU backend.
//
// Tolerances. AdamW: both backends round each f32 operation of the same expression; the CPU
// build may fuse some into FMAs (-march=native), the GPU does not, so an element may differ
// by an ulp or two per step. Five steps compound that to a few 1e-7 relative: 1e-6. The bf16
// compute copy must be exactly f32_to_bf16 of the GPU's own f32 master. Sum of squares: both
// sum in f64 (in different orders) and round once to f32, so they agree to an f32 ulp: 1e-6.
#include <cmath>
#include <cstdint>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

constexpr double kAdamTol = 1e-6;
constexpr double kSumTol = 1e-6;

std::vector<uint16_t> download_bits(const Tensor& t) {
  std::vector<uint16_t> h(size_t(t.numel()));
  gpu().allocator().copy_to_host(h.data(), t.data, h.size() * 2);
  return h;
}

TEST(CudaAdamW, MatchesCpuOverSeveralStepsWithTheBf16Copy) {
  GRPO_REQUIRE_GPU();
  for (int64_t n : {int64_t(1), int64_t(7), int64_t(4099), int64_t(1 << 20) + 3}) {
    std::vector<float> w = cudatest::randu(size_t(n), 1, -2.0f, 2.0f), m(size_t(n), 0.0f), v(size_t(n), 0.0f);
    Dev W = upload(w, {n}), M = upload(m, {n}), V = upload(v, {n}), W16 = poisoned(DType::bf16, {n});
    AdamWParams p;
    p.lr = 1e-2f;
    p.weight_decay = 0.1f;
    for (int64_t step = 1; step <= 5; ++step) {
      p.step = step;
      // Gradients of varied scale, so v spans several orders of magnitude.
      std::vector<float> g = cudatest::randn(size_t(n), 100 + uint64_t(step), step % 2 ? 1.0f : 1e-3f);
      Dev G = upload(g, {n});
      cpu().adamw(host_view(w, {n}), host_view(g, {n}), host_view(m, {n}), host_view(v, {n}), p);
      gpu().adamw(W, G, M, V, p, W16);
    }
    const std::vector<float> w_gpu = download(W);
    EXPECT_REL("adamw params n=" + std::to_string(n), w_gpu, w, kAdamTol);
    EXPECT_REL("adamw m n=" + std::to_string(n), download(M), m, kAdamTol);
    EXPECT_REL("adamw v n=" + std::to_string(n), download(V), v, kAdamTol);
    const std::vector<uint16_t> bits = download_bits(W16);
    for (size_t i = 0; i < w_gpu.size(); ++i)
      ASSERT_EQ(bits[i], f32_to_bf16(w_gpu[i])) << "n=" << n << " element " << i << ": " << w_gpu[i];
  }
}

TEST(CudaAdamW, WithoutBf16CopyAndRejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  std::vector<float> w = cudatest::randu(33, 2), g = cudatest::randn(33, 3), m(33, 0.0f), v(33, 0.0f);
  Dev W = upload(w, {33}), G = upload(g, {33}), M = upload(m, {33}), V = upload(v, {33});
  AdamWParams p;
  cpu().adamw(host_view(w, {33}), host_view(g, {33}), host_view(m, {33}), host_view(v, {33}), p);
  gpu().adamw(W, G, M, V, p);
  EXPECT_REL("adamw without bf16 copy", download(W), w, kAdamTol);

  Dev G7 = poisoned(DType::f32, {7}), Wb = poisoned(DType::bf16, {33}), W16s = poisoned(DType::bf16, {32});
  Dev W2d = poisoned(DType::f32, {3, 11}), G2d = poisoned(DType::f32, {3, 11}), W16 = poisoned(DType::bf16, {33});
  EXPECT_GRPO_ERROR(gpu().adamw(W, G7, M, V, p), "adamw", "grads", "[7]", "[33]");
  EXPECT_GRPO_ERROR(gpu().adamw(Wb, G, M, V, p), "adamw", "params", "expected dtype f32");
  EXPECT_GRPO_ERROR(gpu().adamw(W, G, M, V, p, W16s), "adamw", "params_bf16", "[32]", "[33]");
  EXPECT_GRPO_ERROR(gpu().adamw(W, G, M, V, p, W), "adamw", "params_bf16", "expected dtype bf16");
  EXPECT_GRPO_ERROR(gpu().adamw(W2d, G2d, G2d, G2d, p, W16), "adamw", "flat buffer");
  EXPECT_GRPO_ERROR(gpu().adamw(W, host_view(g, {33}), M, V, p), "adamw", "grads", "must match");
  AdamWParams bad = p;
  bad.step = 0;
  EXPECT_GRPO_ERROR(gpu().adamw(W, G, M, V, bad), "adamw", "step");
  bad = p;
  bad.beta2 = 1.0f;
  EXPECT_GRPO_ERROR(gpu().adamw(W, G, M, V, bad), "adamw", "betas");
}

TEST(CudaSumSquares, AccumulatesInDoubleLikeCpuAndRepeatsExactly) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16})
    for (int64_t n : {int64_t(1), int64_t(33), int64_t(4099), int64_t(3000017)}) {
      std::vector<float> x = cudatest::randn(size_t(n), 7, 2.0f);
      cudatest::round_to(x, dt);
      std::vector<float> ref = {2.5f};  // accumulates onto what out holds
      cpu().sum_squares(host_view(ref, {1}), host_view(x, {n}));
      Dev X = upload(x, {n}, dt);
      Dev out = upload({2.5f}, {1}), again = upload({2.5f}, {1});
      gpu().sum_squares(out, X);
      gpu().sum_squares(again, X);
      const std::vector<float> got = download(out);
      EXPECT_REL("sum_squares " + std::string(dtype_name(dt)) + " n=" + std::to_string(n), got, ref, kSumTol);
      EXPECT_EQ(download(again), got) << "sum_squares repeat n=" << n;
    }
}

TEST(CudaSumSquares, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev x = poisoned(DType::f32, {9}), out2 = poisoned(DType::f32, {2}), xi = poisoned(DType::i32, {9});
  Dev out = poisoned(DType::f32, {1}), outb = poisoned(DType::bf16, {1});
  std::vector<float> host(1, 0.0f);
  EXPECT_GRPO_ERROR(gpu().sum_squares(out2, x), "sum_squares", "out", "[2]", "[1]");
  EXPECT_GRPO_ERROR(gpu().sum_squares(outb, x), "sum_squares", "out", "expected dtype f32");
  EXPECT_GRPO_ERROR(gpu().sum_squares(out, xi), "sum_squares", "x", "i32[9]");
  EXPECT_GRPO_ERROR(gpu().sum_squares(host_view(host, {1}), x), "sum_squares", "out", "on cpu");
}

TEST(CudaClipGradNorm, MatchesCpuOverSeveralBuffers) {
  GRPO_REQUIRE_GPU();
  const std::vector<std::vector<int64_t>> shapes = {{1000}, {33, 7}, {4099}, {1, 3}};
  for (float fraction : {0.5f, 2.0f}) {  // clipped, then left alone
    std::vector<std::vector<float>> host;
    std::vector<Dev> dev;
    std::vector<Tensor> h_t, d_t;
    host.reserve(shapes.size());
    dev.reserve(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i) {
      host.push_back(cudatest::randn(size_t(cudatest::numel_of(shapes[i])), 40 + i));
      dev.push_back(upload(host[i], shapes[i]));
      h_t.push_back(host_view(host[i], shapes[i]));
      d_t.push_back(dev.back());
    }
    double sq = 0;
    for (const auto& h : host)
      for (float v : h) sq += double(v) * v;
    const float max_norm = float(std::sqrt(sq)) * fraction;
    const float norm_cpu = clip_grad_norm(cpu(), h_t, max_norm);
    const float norm_gpu = clip_grad_norm(gpu(), d_t, max_norm);
    EXPECT_NEAR(norm_gpu, norm_cpu, kSumTol * norm_cpu);
    for (size_t i = 0; i < shapes.size(); ++i)
      EXPECT_REL("clip_grad_norm buffer " + std::to_string(i) + " fraction " + std::to_string(fraction),
                 download(dev[i]), host[i], kSumTol);
  }
}

}  // namespace
}  // namespace grpo
