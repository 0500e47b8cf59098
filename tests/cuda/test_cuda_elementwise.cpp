// CUDA add, scale, zero, copy, SwiGLU and softmax against the CPU backend, f32 and bf16, odd
// sizes, in-place variants and argument errors. Tolerances: tol(dtype) (cuda_test_util.h);
// the GPU reductions are f32 where the CPU's are f64, a few ulps on rows of <= 4099 terms.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "tests/cuda/cuda_test_util.h"

namespace grpo {
namespace {

using namespace cudatest;  // upload, download, poisoned, gpu(), cpu(), tol, Shape ...

constexpr DType kDTypes[] = {DType::f32, DType::bf16};

std::string what(const char* op, DType dt, const Shape& shape) {
  std::ostringstream os;
  os << op << " " << dtype_name(dt) << "[";
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

std::vector<uint16_t> download_bits(const Tensor& t) {
  std::vector<uint16_t> h(size_t(t.numel()));
  gpu().allocator().copy_to_host(h.data(), t.data, h.size() * 2);
  return h;
}

const std::vector<Shape> kShapes = {{1}, {7}, {33}, {4099}, {3, 33}, {129, 4099}};

// ---- add, scale, zero, copy ---------------------------------------------------------------------

TEST(CudaElementwise, AddMatchesCpuAndRunsInPlace) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDTypes)
    for (const Shape& s : kShapes) {
      std::vector<float> a = input(s, 1, dt), b = input(s, 2, dt), ref(a.size());
      cpu().add(host_view(ref, s), host_view(a, s), host_view(b, s));
      Dev da = upload(a, s, dt), db = upload(b, s, dt), out = poisoned(dt, s);
      gpu().add(out, da, db);
      EXPECT_REL(what("add", dt, s), download(out), ref, tol(dt));
      gpu().add(db, da, db);  // out aliases b
      EXPECT_REL(what("add in place", dt, s), download(db), ref, tol(dt));
    }
}

TEST(CudaElementwise, ScaleMatchesCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDTypes)
    for (const Shape& s : kShapes) {
      std::vector<float> x = input(s, 3, dt);
      Dev dx = upload(x, s, dt);
      cpu().scale(host_view(x, s), -1.7f);
      gpu().scale(dx, -1.7f);
      EXPECT_REL(what("scale", dt, s), download(dx), x, tol(dt));
    }
}

TEST(CudaElementwise, ZeroClearsEveryDtype) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16, DType::i32}) {
    Dev x = poisoned(dt, {33, 7});
    gpu().zero(x);
    if (dt == DType::i32) {
      for (int32_t v : cudatest::download_i32(x)) ASSERT_EQ(v, 0);
    } else {
      for (float v : download(x)) ASSERT_EQ(v, 0.0f) << dtype_name(dt);
    }
  }
}

TEST(CudaElementwise, CopySameDtypeAndConvertsBetweenF32AndBf16) {
  GRPO_REQUIRE_GPU();
  const Shape s = {129, 33}, flat = {129 * 33};
  std::vector<float> x = cudatest::randn(size_t(numel_of(s)), 4, 10.0f);
  // Same dtype: bit-exact, and the shape may differ (equal element counts).
  for (DType dt : kDTypes) {
    std::vector<float> xr = x;
    cudatest::round_to(xr, dt);
    Dev src = upload(xr, s, dt), dst = poisoned(dt, flat);
    gpu().copy(dst, src);
    EXPECT_EQ(download(dst), xr) << dtype_name(dt);
    gpu().copy(src, src);  // onto itself: nothing to do
    EXPECT_EQ(download(src), xr) << dtype_name(dt);
  }
  std::vector<int32_t> ids = cudatest::randint(100, 5, -1000, 1000);
  Dev isrc = cudatest::upload_i32(ids, {100}), idst = poisoned(DType::i32, {100});
  gpu().copy(idst, isrc);
  EXPECT_EQ(cudatest::download_i32(idst), ids);

  // f32 -> bf16 rounds to nearest even exactly as the host's f32_to_bf16; bf16 -> f32 is exact.
  Dev f = upload(x, s), b = poisoned(DType::bf16, s), back = poisoned(DType::f32, s);
  gpu().copy(b, f);
  const std::vector<uint16_t> bits = download_bits(b);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(bits[i], f32_to_bf16(x[i])) << "element " << i << ": " << x[i];
  gpu().copy(back, b);
  const std::vector<float> widened = download(back);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(widened[i], bf16_to_f32(bits[i])) << "element " << i;
}

TEST(CudaElementwise, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev a = poisoned(DType::f32, {3, 5}), b = poisoned(DType::f32, {4, 5}), h = poisoned(DType::bf16, {3, 5});
  Dev i = poisoned(DType::i32, {3, 5});
  std::vector<float> host(15, 1.0f);
  Tensor on_cpu = host_view(host, {3, 5});
  EXPECT_GRPO_ERROR(gpu().add(a, a, b), "add", "b", "[4, 5]", "[3, 5]");
  EXPECT_GRPO_ERROR(gpu().add(a, a, h), "add", "b", "bf16[3, 5]", "must match");
  EXPECT_GRPO_ERROR(gpu().add(i, i, i), "add", "a", "i32[3, 5]", "expected dtype f32 or bf16");
  EXPECT_GRPO_ERROR(gpu().add(a, on_cpu, on_cpu), "add", "a", "on cpu", "expected cuda");
  EXPECT_GRPO_ERROR(gpu().scale(i, 2.0f), "scale", "x", "i32[3, 5]");
  EXPECT_GRPO_ERROR(gpu().scale(on_cpu, 2.0f), "scale", "on cpu");
  EXPECT_GRPO_ERROR(gpu().zero(on_cpu), "zero", "expected a cuda tensor");
  EXPECT_GRPO_ERROR(gpu().copy(a, b), "copy", "[3, 5]", "[4, 5]", "element count");
  EXPECT_GRPO_ERROR(gpu().copy(a, i), "copy", "i32[3, 5]", "dtypes must match or be f32/bf16");
  EXPECT_GRPO_ERROR(gpu().copy(a, on_cpu), "copy", "must be cuda tensors");
  // A partial overlap has no memmove on the device.
  Tensor first(a.t.data, DType::f32, {14}, Device::cuda);
  Tensor shifted(static_cast<float*>(a.t.data) + 1, DType::f32, {14}, Device::cuda);
  EXPECT_GRPO_ERROR(gpu().copy(shifted, first), "copy", "overlaps");
  Tensor as_bf16(a.t.data, DType::bf16, {14}, Device::cuda);
  EXPECT_GRPO_ERROR(gpu().copy(as_bf16, first), "copy", "overlaps");
}

// ---- SwiGLU ------------------------------------------------------------------------------------

const std::vector<Shape> kActShapes = {{1, 1}, {3, 7}, {33, 129}, {65, 4099}};

TEST(CudaSwiglu, ForwardAndBackwardMatchCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDTypes)
    for (const Shape& s : kActShapes) {
      std::vector<float> g = input(s, 10, dt, 3.0f), u = input(s, 11, dt), dy = input(s, 12, dt);
      const size_t n = g.size();
      std::vector<float> out(n), dg(n), du(n);
      cpu().swiglu(host_view(out, s), host_view(g, s), host_view(u, s));
      cpu().swiglu_backward(host_view(dg, s), host_view(du, s), host_view(dy, s), host_view(g, s), host_view(u, s));
      Dev G = upload(g, s, dt), U = upload(u, s, dt), DY = upload(dy, s, dt);
      Dev O = poisoned(dt, s), DG = poisoned(dt, s), DU = poisoned(dt, s);
      gpu().swiglu(O, G, U);
      gpu().swiglu_backward(DG, DU, DY, G, U);
      EXPECT_REL(what("swiglu", dt, s), download(O), out, tol(dt));
      EXPECT_REL(what("swiglu_backward dgate", dt, s), download(DG), dg, tol(dt));
      EXPECT_REL(what("swiglu_backward dup", dt, s), download(DU), du, tol(dt));
      // Outputs may alias the inputs: gradients written over gate and up.
      gpu().swiglu_backward(G, U, DY, G, U);
      EXPECT_REL(what("swiglu_backward in place dgate", dt, s), download(G), dg, tol(dt));
      EXPECT_REL(what("swiglu_backward in place dup", dt, s), download(U), du, tol(dt));
    }
}

TEST(CudaSwiglu, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev g = poisoned(DType::f32, {2, 8}), u9 = poisoned(DType::f32, {2, 9}), i = poisoned(DType::i32, {2, 8});
  EXPECT_GRPO_ERROR(gpu().swiglu(g, g, u9), "swiglu", "up", "[2, 9]", "[2, 8]");
  EXPECT_GRPO_ERROR(gpu().swiglu(i, i, i), "swiglu", "gate", "i32[2, 8]");
  EXPECT_GRPO_ERROR(gpu().swiglu_backward(g, u9, g, g, g), "swiglu_backward", "dup", "[2, 9]");
}

// ---- softmax -----------------------------------------------------------------------------------

// Rows of 1..1024 run one warp per row, longer rows one block per row; rows whose length is a
// multiple of 8 are read in 16-byte packs.
const std::vector<Shape> kRowShapes = {{1, 1},    {5, 7},    {5, 8},    {3, 33},      {2000, 33},
                                       {9, 1024}, {9, 1025}, {4, 2048}, {2, 3, 4099}};

TEST(CudaSoftmax, ForwardAndBackwardMatchCpuAndRunInPlace) {
  GRPO_REQUIRE_GPU();
  for (DType dt : kDTypes)
    for (const Shape& s : kRowShapes) {
      std::vector<float> x = input(s, 20, dt, 3.0f), dy = input(s, 21, dt);
      std::vector<float> y(x.size());
      cpu().softmax(host_view(y, s), host_view(x, s));
      Dev X = upload(x, s, dt), Y = poisoned(dt, s);
      gpu().softmax(Y, X);
      EXPECT_REL(what("softmax", dt, s), download(Y), y, tol(dt));
      gpu().softmax(X, X);
      EXPECT_REL(what("softmax in place", dt, s), download(X), y, tol(dt));

      // Backward from the reference output as the dtype holds it.
      cudatest::round_to(y, dt);
      std::vector<float> dx(x.size());
      cpu().softmax_backward(host_view(dx, s), host_view(dy, s), host_view(y, s));
      Dev Yd = upload(y, s, dt), DY = upload(dy, s, dt), DX = poisoned(dt, s);
      gpu().softmax_backward(DX, DY, Yd);
      EXPECT_REL(what("softmax_backward", dt, s), download(DX), dx, tol(dt));
      gpu().softmax_backward(DY, DY, Yd);
      EXPECT_REL(what("softmax_backward in place", dt, s), download(DY), dx, tol(dt));
    }
}

TEST(CudaSoftmax, RejectsBadArguments) {
  GRPO_REQUIRE_GPU();
  Dev x = poisoned(DType::f32, {3, 5}), o6 = poisoned(DType::f32, {3, 6}), i = poisoned(DType::i32, {3, 5});
  Dev xb = poisoned(DType::bf16, {3, 5});
  EXPECT_GRPO_ERROR(gpu().softmax(o6, x), "softmax", "out", "[3, 6]", "[3, 5]");
  EXPECT_GRPO_ERROR(gpu().softmax(i, i), "softmax", "x", "i32[3, 5]");
  EXPECT_GRPO_ERROR(gpu().softmax(xb, x), "softmax", "out", "bf16[3, 5]");
  EXPECT_GRPO_ERROR(gpu().softmax_backward(x, o6, x), "softmax_backward", "dout", "[3, 6]");
}

}  // namespace
}  // namespace grpo
