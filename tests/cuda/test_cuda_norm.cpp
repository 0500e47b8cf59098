// CUDA RMSNorm (forward, backward, fused residual add) and RoPE against the CPU backend:
// f32 and bf16 data (norm weights bf16 or f32), odd row lengths on both sides of the
// warp/block switch (1024), many rows, per-head [T, H, D] norms, in-place variants, every
// RoPE layout, and argument errors.
//
// Tolerances: tol(dtype) for data (cuda_test_util.h). rstd is compared at 1e-5 whenever both
// sides normalise the same values (the GPU's f32 row sum against the CPU's f64 one).
// add_rmsnorm in bf16 normalises the bf16-rounded sum (what add then rmsnorm does on a bf16
// backend), the CPU its f32 sum, so rstd there differs by up to a bf16 rounding: tol(bf16).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

constexpr double kRstdTol = 1e-5;

std::string what(const char* op, DType dt, DType wdt, const Shape& shape) {
  std::ostringstream os;
  os << op << " x " << dtype_name(dt) << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "] w " << dtype_name(wdt);
  return os.str();
}

// (x dtype, w dtype) pairs the CUDA backend accepts.
struct NormTypes {
  DType x, w;
};
constexpr NormTypes kNormTypes[] = {{DType::f32, DType::f32}, {DType::bf16, DType::bf16}, {DType::bf16, DType::f32}};

// x shapes [..., C]: warp rows (C <= 1024) and block rows, each with C a multiple of the
// 16-byte pack (packed access) and not; many rows; a per-head norm [T, H, D] with w [D]; and
// C = 20000, whose backward needs more than 48 KiB of shared memory.
const std::vector<Shape> kNormShapes = {{1, 1},      {5, 7},       {33, 33},    {6, 8},     {17, 1024},
                                        {9, 1025},   {3, 4099},    {2049, 128}, {37, 4, 128}, {300, 4099},
                                        {64, 4096},  {5, 20000}};

// rstd as the ops take it: x's shape without its last dimension.
Shape rows_shape(const Shape& s) { return Shape(s.begin(), s.end() - 1); }

TEST(CudaRmsnorm, ForwardMatchesCpuAndRunsInPlace) {
  GRPO_REQUIRE_GPU();
  for (const NormTypes& ty : kNormTypes)
    for (const Shape& s : kNormShapes) {
      const int64_t C = s.back();
      const Shape rs = rows_shape(s);
      std::vector<float> x = input(s, 1, ty.x), w = cudatest::randu(size_t(C), 2, 0.5f, 1.5f);
      cudatest::round_to(w, ty.w);
      std::vector<float> out(x.size()), rstd(size_t(numel_of(rs)));
      cpu().rmsnorm(host_view(out, s), host_view(rstd, rs), host_view(x, s), host_view(w, {C}), 1e-6f);
      Dev X = upload(x, s, ty.x), W = upload(w, {C}, ty.w), O = poisoned(ty.x, s), R = poisoned(DType::f32, rs);
      gpu().rmsnorm(O, R, X, W, 1e-6f);
      EXPECT_REL(what("rmsnorm", ty.x, ty.w, s), download(O), out, tol(ty.x));
      EXPECT_REL(what("rmsnorm rstd", ty.x, ty.w, s), download(R), rstd, kRstdTol);
      Dev R2 = poisoned(DType::f32, rs);
      gpu().rmsnorm(X, R2, X, W, 1e-6f);
      EXPECT_REL(what("rmsnorm in place", ty.x, ty.w, s), download(X), out, tol(ty.x));
      EXPECT_REL(what("rmsnorm in place rstd", ty.x, ty.w, s), download(R2), rstd, kRstdTol);
    }
}

TEST(CudaRmsnorm, BackwardAssignsDxAccumulatesDwDeterministically) {
  GRPO_REQUIRE_GPU();
  for (const NormTypes& ty : kNormTypes)
    for (const Shape& s : kNormShapes) {
      const int64_t C = s.back();
      // C = 1: dx = r w dy (1 - r^2 x^2) is a cancellation down to eps / x^2, with no
      // relative accuracy to compare.
      if (C == 1) continue;
      const Shape rs = rows_shape(s);
      std::vector<float> x = input(s, 3, ty.x), dy = input(s, 4, ty.x);
      std::vector<float> w = cudatest::randu(size_t(C), 5, 0.5f, 1.5f), dw0 = cudatest::randu(size_t(C), 6);
      cudatest::round_to(w, ty.w);
      cudatest::round_to(dw0, ty.w);
      std::vector<float> out(x.size()), rstd(size_t(numel_of(rs)));
      cpu().rmsnorm(host_view(out, s), host_view(rstd, rs), host_view(x, s), host_view(w, {C}), 1e-5f);
      std::vector<float> dx(x.size()), dw = dw0;
      cpu().rmsnorm_backward(host_view(dx, s), host_view(dw, {C}), host_view(dy, s), host_view(x, s),
                             host_view(w, {C}), host_view(rstd, rs));

      Dev X = upload(x, s, ty.x), DY = upload(dy, s, ty.x), W = upload(w, {C}, ty.w), R = upload(rstd, rs);
      Dev DX = poisoned(ty.x, s), DW = upload(dw0, {C}, ty.w);
      gpu().rmsnorm_backward(DX, DW, DY, X, W, R);
      const std::vector<float> dw_gpu = download(DW);
      EXPECT_REL(what("rmsnorm_backward dx", ty.x, ty.w, s), download(DX), dx, tol(ty.x));
      EXPECT_REL(what("rmsnorm_backward dw", ty.x, ty.w, s), dw_gpu, dw, tol(ty.w));

      // dx over dout, and the same dw bit for bit (fixed reduction order).
      Dev DW2 = upload(dw0, {C}, ty.w);
      gpu().rmsnorm_backward(DY, DW2, DY, X, W, R);
      EXPECT_REL(what("rmsnorm_backward in place dx", ty.x, ty.w, s), download(DY), dx, tol(ty.x));
      EXPECT_EQ(download(DW2), dw_gpu) << what("rmsnorm_backward dw repeat", ty.x, ty.w, s);
    }
}

TEST(CudaRmsnorm, AddRmsnormMatchesAddThenRmsnorm) {
  GRPO_REQUIRE_GPU();
  for (const NormTypes& ty : kNormTypes)
    for (const Shape& s : {Shape{1, 1}, Shape{7, 33}, Shape{2049, 128}, Shape{5, 1025}, Shape{65, 4099},
                           Shape{65, 4096}}) {
      const int64_t C = s.back();
      const Shape rs = rows_shape(s);
      std::vector<float> x = input(s, 7, ty.x), res = input(s, 8, ty.x), w = cudatest::randu(size_t(C), 9, 0.5f, 1.5f);
      cudatest::round_to(w, ty.w);
      std::vector<float> sum(x.size()), out(x.size()), rstd(size_t(numel_of(rs)));
      cpu().add_rmsnorm(host_view(sum, s), host_view(out, s), host_view(rstd, rs), host_view(x, s), host_view(res, s),
                        host_view(w, {C}), 1e-6f);
      const double rstd_tol = ty.x == DType::bf16 ? tol(DType::bf16) : kRstdTol;
      Dev X = upload(x, s, ty.x), RES = upload(res, s, ty.x), W = upload(w, {C}, ty.w);
      Dev S = poisoned(ty.x, s), O = poisoned(ty.x, s), R = poisoned(DType::f32, rs);
      gpu().add_rmsnorm(S, O, R, X, RES, W, 1e-6f);
      EXPECT_REL(what("add_rmsnorm sum", ty.x, ty.w, s), download(S), sum, tol(ty.x));
      EXPECT_REL(what("add_rmsnorm out", ty.x, ty.w, s), download(O), out, tol(ty.x));
      EXPECT_REL(what("add_rmsnorm rstd", ty.x, ty.w, s), download(R), rstd, rstd_tol);
      // sum over x (the residual stream updated in place), then over residual.
      Dev O2 = poisoned(ty.x, s);
      gpu().add_rmsnorm(X, O2, R, X, RES, W, 1e-6f);
      EXPECT_REL(what("add_rmsnorm sum over x", ty.x, ty.w, s), download(X), sum, tol(ty.x));
      EXPECT_REL(what("add_rmsnorm out, sum over x", ty.x, ty.w, s), download(O2), out, tol(ty.x));
      Dev X2 = upload(x, s, ty.x), O3 = poisoned(ty.x, s);
      gpu().add_rmsnorm(RES, O3, R, X2, RES, W, 1e-6f);
      EXPECT_REL(what("add_rmsnorm sum over residual", ty.x, ty.w, s), download(RES), sum, tol(ty.x));
      EXPECT_REL(what("add_rmsnorm out, sum over residual", ty.x, ty.w, s), download(O3), out, tol(ty.x));
    }
}

// Views that start off the 16-byte pack boundary take the element-wise path: same results.
TEST(CudaRmsnorm, UnalignedViewsMatchCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16}) {
    const int64_t R = 9, C = 1024;
    const Shape s = {R, C};
    std::vector<float> x = input(s, 11, dt), dy = input(s, 12, dt), w = cudatest::randu(size_t(C), 13, 0.5f, 1.5f);
    std::vector<float> out(x.size()), rstd(x.size() / size_t(C)), dx(x.size()), dw(w.size(), 0.0f);
    cpu().rmsnorm(host_view(out, s), host_view(rstd, {R}), host_view(x, s), host_view(w, {C}), 1e-6f);
    cpu().rmsnorm_backward(host_view(dx, s), host_view(dw, {C}), host_view(dy, s), host_view(x, s),
                           host_view(w, {C}), host_view(rstd, {R}));
    // Each tensor one element into a larger buffer.
    auto shifted = [&](const std::vector<float>& v, DType t) {
      std::vector<float> padded(v.size() + 1, 0.0f);
      std::copy(v.begin(), v.end(), padded.begin() + 1);
      return upload(padded, {int64_t(padded.size())}, t);
    };
    auto view = [&](const Dev& d, DType t, const Shape& sh) {
      return Tensor(static_cast<char*>(d.t.data) + dtype_size(t), t, sh.data(), int(sh.size()), Device::cuda);
    };
    Dev X = shifted(x, dt), DY = shifted(dy, dt), W = shifted(w, DType::f32);
    Dev DW = shifted(std::vector<float>(w.size(), 0.0f), DType::f32);
    Dev O = shifted(std::vector<float>(x.size(), NAN), dt), DX = shifted(std::vector<float>(x.size(), NAN), dt);
    Dev RS = poisoned(DType::f32, {R});
    gpu().rmsnorm(view(O, dt, s), RS, view(X, dt, s), view(W, DType::f32, {C}), 1e-6f);
    gpu().rmsnorm_backward(view(DX, dt, s), view(DW, DType::f32, {C}), view(DY, dt, s), view(X, dt, s),
                           view(W, DType::f32, {C}), RS);
    auto tail = [](std::vector<float> v) { return std::vector<float>(v.begin() + 1, v.end()); };
    EXPECT_REL(std::string("rmsnorm unaligned ") + dtype_name(dt), tail(download(O)), out, tol(dt));
    EXPECT_REL(std::string("rmsnorm unaligned rstd ") + dtype_name(dt), download(RS), rstd, kRstdTol);
    EXPECT_REL(std::string("rmsnorm_backward unaligned dx ") + dtype_name(dt), tail(download(DX)), dx, tol(dt));
    EXPECT_REL(std::string("rmsnorm_backward unaligned dw ") + dtype_name(dt), tail(download(DW)), dw, tol(DType::f32));
  }
}

TEST(CudaRmsnorm, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev x = poisoned(DType::f32, {3, 8}), out = poisoned(DType::f32, {3, 8}), w = poisoned(DType::f32, {8});
  Dev w7 = poisoned(DType::f32, {7}), wb = poisoned(DType::bf16, {8}), rstd = poisoned(DType::f32, {3});
  Dev rstd4 = poisoned(DType::f32, {4}), out9 = poisoned(DType::f32, {3, 9}), xi = poisoned(DType::i32, {3, 8});
  Dev xb = poisoned(DType::bf16, {3, 8});
  std::vector<float> host(24, 1.0f);
  Tensor on_cpu = host_view(host, {3, 8});
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd, x, w7, 1e-6f), "rmsnorm", "w", "f32[7]", "[8]");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd4, x, w, 1e-6f), "rmsnorm", "rstd", "f32[4]", "[3]");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out9, rstd, x, w, 1e-6f), "rmsnorm", "out", "[3, 9]", "[3, 8]");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd, x, w, -1.0f), "rmsnorm", "eps");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd, xi, w, 1e-6f), "rmsnorm", "x", "i32[3, 8]", "f32 or bf16");
  // bf16 weights go with bf16 activations only (f32 weights go with either).
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd, x, wb, 1e-6f), "rmsnorm", "w", "bf16[8]", "expected dtype f32");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(out, rstd, on_cpu, w, 1e-6f), "rmsnorm", "x", "on cpu", "expected cuda");
  EXPECT_GRPO_ERROR(gpu().rmsnorm(x, rstd, xb, w, 1e-6f), "rmsnorm", "out", "must match");
  EXPECT_GRPO_ERROR(gpu().rmsnorm_backward(out, w7, x, x, w, rstd), "rmsnorm_backward", "dw", "[7]", "[8]");
  EXPECT_GRPO_ERROR(gpu().rmsnorm_backward(out, w, out9, x, w, rstd), "rmsnorm_backward", "dout", "[3, 9]");
  EXPECT_GRPO_ERROR(gpu().rmsnorm_backward(out, w, x, x, w, rstd4), "rmsnorm_backward", "rstd", "f32[4]");
  EXPECT_GRPO_ERROR(gpu().add_rmsnorm(out, out, rstd, x, x, w, 1e-6f), "add_rmsnorm", "out overlaps sum");
  EXPECT_GRPO_ERROR(gpu().add_rmsnorm(out, out9, rstd, x, x, w, 1e-6f), "add_rmsnorm", "out", "[3, 9]");
  Tensor shifted(static_cast<float*>(x.t.data) + 1, DType::f32, {2, 8}, Device::cuda);
  Tensor first(x.t.data, DType::f32, {2, 8}, Device::cuda);
  Dev o2 = poisoned(DType::f32, {2, 8}), r2 = poisoned(DType::f32, {2});
  EXPECT_GRPO_ERROR(gpu().add_rmsnorm(shifted, o2, r2, first, first, w, 1e-6f), "add_rmsnorm", "partially overlaps");
}

// ---- RoPE --------------------------------------------------------------------------------------

struct RopeCase {
  int64_t T, H, D, rot;
  RopeLayout layout;
  float scaling;
};

const std::vector<RopeCase> kRopeCases = {
    {1, 1, 2, 2, RopeLayout::half, 1.0f},           {7, 3, 16, 16, RopeLayout::half, 1.0f},
    {7, 3, 16, 16, RopeLayout::interleaved, 1.0f},  {33, 4, 64, 32, RopeLayout::half, 1.25f},
    {33, 4, 80, 40, RopeLayout::interleaved, 0.8f}, {5, 2, 6, 4, RopeLayout::half, 1.0f},
    {129, 8, 128, 128, RopeLayout::half, 1.0f},     {300, 2, 96, 64, RopeLayout::interleaved, 1.1f},
};

std::string what(const char* op, DType dt, const RopeCase& c) {
  std::ostringstream os;
  os << op << " " << dtype_name(dt) << " T " << c.T << " H " << c.H << " D " << c.D << " rot " << c.rot
     << (c.layout == RopeLayout::half ? " half" : " interleaved") << " scaling " << c.scaling;
  return os.str();
}

// inv_freq on the host (for the CPU) and on the device (for the GPU), with the params of each.
struct RopeSetup {
  std::vector<float> inv;
  Dev inv_dev;
  RopeParams host, dev;
  explicit RopeSetup(const RopeCase& c) : inv(size_t(c.rot / 2)) {
    for (int64_t i = 0; i < c.rot / 2; ++i) inv[size_t(i)] = float(std::pow(10000.0, -2.0 * double(i) / double(c.rot)));
    inv_dev = upload(inv, {c.rot / 2});
    host.head_dim = c.D;
    host.rot_dim = c.rot;
    host.layout = c.layout;
    host.attention_scaling = c.scaling;
    dev = host;
    host.inv_freq = host_view(inv, {c.rot / 2});
    dev.inv_freq = inv_dev;
  }
};

TEST(CudaRope, ForwardAndBackwardMatchCpuInEveryLayout) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16})
    for (const RopeCase& c : kRopeCases) {
      const Shape s = {c.T, c.H, c.D};
      RopeSetup tab(c);
      std::vector<int32_t> pos = cudatest::randint(size_t(c.T), 30, 0, 131071);
      pos[0] = 0;
      Tensor pos_h = host_view(pos, {c.T});
      Dev P = cudatest::upload_i32(pos, {c.T});
      std::vector<float> x = input(s, 31, dt), out(x.size()), dx(x.size());
      cpu().rope(host_view(out, s), host_view(x, s), pos_h, tab.host);
      cpu().rope_backward(host_view(dx, s), host_view(x, s), pos_h, tab.host);

      Dev X = upload(x, s, dt), O = poisoned(dt, s), DX = poisoned(dt, s);
      gpu().rope(O, X, P, tab.dev);
      EXPECT_REL(what("rope", dt, c), download(O), out, tol(dt));
      gpu().rope_backward(DX, X, P, tab.dev);
      EXPECT_REL(what("rope_backward", dt, c), download(DX), dx, tol(dt));
      gpu().rope(X, X, P, tab.dev);
      EXPECT_REL(what("rope in place", dt, c), download(X), out, tol(dt));
      Dev X2 = upload(x, s, dt);
      gpu().rope_backward(X2, X2, P, tab.dev);
      EXPECT_REL(what("rope_backward in place", dt, c), download(X2), dx, tol(dt));
    }
}

TEST(CudaRope, RejectsBadArgumentsAndNegativePositions) {
  GRPO_REQUIRE_GPU();
  const RopeCase c{5, 3, 16, 16, RopeLayout::half, 1.0f};
  RopeSetup tab(c);
  Dev x = poisoned(DType::f32, {5, 3, 16}), out = poisoned(DType::f32, {5, 3, 16});
  Dev pos = cudatest::upload_i32({0, 1, 2, 3, 4}, {5}), pos4 = cudatest::upload_i32({0, 1, 2, 3}, {4});
  Dev neg = cudatest::upload_i32({0, 1, -1, 3, 4}, {5});
  EXPECT_GRPO_ERROR(gpu().rope(out, x, neg, tab.dev), "rope", "positions", "negative", "code 3");
  EXPECT_GRPO_ERROR(gpu().rope_backward(out, x, neg, tab.dev), "rope_backward", "positions", "negative");
  EXPECT_GRPO_ERROR(gpu().rope(out, x, pos4, tab.dev), "rope", "positions", "i32[4]", "[5]");
  std::vector<int32_t> host_pos = {0, 1, 2, 3, 4};
  EXPECT_GRPO_ERROR(gpu().rope(out, x, host_view(host_pos, {5}), tab.dev), "rope", "positions", "expected cuda");
  EXPECT_GRPO_ERROR(gpu().rope(out, x, pos, tab.host), "rope", "inv_freq", "expected cuda");
  RopeParams bad = tab.dev;
  bad.rot_dim = 7;
  EXPECT_GRPO_ERROR(gpu().rope(out, x, pos, bad), "rope", "rot_dim is 7");
  bad = tab.dev;
  bad.head_dim = 12;
  EXPECT_GRPO_ERROR(gpu().rope(out, x, pos, bad), "rope", "[5, 3, 16]", "head_dim is 12");
  Dev out8 = poisoned(DType::f32, {5, 3, 8}), xi = poisoned(DType::i32, {5, 3, 16});
  EXPECT_GRPO_ERROR(gpu().rope(out8, x, pos, tab.dev), "rope", "out", "[5, 3, 8]", "[5, 3, 16]");
  EXPECT_GRPO_ERROR(gpu().rope(xi, xi, pos, tab.dev), "rope", "x", "i32[5, 3, 16]", "f32 or bf16");
  Dev big = poisoned(DType::f32, {6, 3, 16});
  Tensor shifted(static_cast<float*>(big.t.data) + 48, DType::f32, {5, 3, 16}, Device::cuda);
  Tensor first(big.t.data, DType::f32, {5, 3, 16}, Device::cuda);
  EXPECT_GRPO_ERROR(gpu().rope(shifted, first, pos, tab.dev), "rope", "overlaps");
  // The op still works after a flagged call.
  gpu().rope(out, x, pos, tab.dev);
}

}  // namespace
}  // namespace grpo
