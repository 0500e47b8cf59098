// Shared by the GPU tests (ctest label "gpu"): every CUDA op is held to the CPU backend on
// fresh random inputs. How a test is built:
//   1. random host inputs (never zeros), odd sizes included; for bf16 runs the inputs are
//      rounded to bf16 first (round_bf16) so the CPU reference sees exactly what the GPU sees;
//   2. upload() them as f32 or bf16, allocate outputs with poisoned() (NaN everywhere, so an
//      unwritten element fails the comparison);
//   3. run the CPU op on the host copies and the CUDA op on the device copies;
//   4. compare with expect_rel(): ||out - ref|| / ||ref|| under tol(dtype) (f32 1e-5,
//      bf16 1e-2), NaN never passes.
// Tests call GRPO_REQUIRE_GPU() first: without a GPU they skip with the reason.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "core/tensor.h"
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/cuda_runtime.h"
#include "kernels/ops.h"
#include "tests/test_util.h"

#define GRPO_REQUIRE_GPU()                                                                  \
  do {                                                                                      \
    if (::grpo::cuda_device_count() == 0)                                                   \
      GTEST_SKIP() << "no GPU: " << ::grpo::cuda_unavailable_reason();                     \
  } while (0)

namespace grpo::cudatest {

// One CUDA Ops and one CPU Ops for the whole test binary (created on first use).
inline Ops& gpu() {
  static std::unique_ptr<Ops> ops = make_cuda_ops(0);
  return *ops;
}
inline Ops& cpu() {
  static std::unique_ptr<Ops> ops = make_cpu_ops();
  return *ops;
}

using Shape = std::vector<int64_t>;

inline double tol(DType dt) { return dt == DType::bf16 ? 1e-2 : 1e-5; }

// Random host data.
inline std::vector<float> randu(size_t n, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline std::vector<float> randn(size_t n, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline std::vector<int32_t> randint(size_t n, uint64_t seed, int32_t lo, int32_t hi_inclusive) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(lo, hi_inclusive);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
// Rounds host values to what a bf16 tensor holds (no-op for f32).
inline void round_to(std::vector<float>& v, DType dt) {
  if (dt == DType::bf16)
    for (auto& x : v) x = bf16_to_f32(f32_to_bf16(x));
}

inline int64_t numel_of(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

// Normal random values of `shape`, as a tensor of dtype dt holds them.
inline std::vector<float> input(const std::vector<int64_t>& shape, uint64_t seed, DType dt, float stddev = 1.0f) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  std::vector<float> v = randn(size_t(n), seed, stddev);
  round_to(v, dt);
  return v;
}

// A device tensor that owns its memory.
struct Dev {
  Buffer buf;
  Tensor t;
  operator Tensor() const { return t; }
};

inline Dev alloc_dev(DType dt, const std::vector<int64_t>& shape) {
  Dev d;
  const size_t bytes = size_t(std::max<int64_t>(numel_of(shape), 1)) * dtype_size(dt);
  d.buf = Buffer(gpu().allocator(), bytes);
  d.t = Tensor(d.buf.data(), dt, shape.data(), int(shape.size()), Device::cuda);
  return d;
}

// Host floats -> device tensor of dtype dt (f32 or bf16; bf16 rounds to nearest even).
inline Dev upload(const std::vector<float>& host, const std::vector<int64_t>& shape, DType dt = DType::f32) {
  Dev d = alloc_dev(dt, shape);
  if (dt == DType::bf16) {
    std::vector<uint16_t> h(host.size());
    for (size_t i = 0; i < h.size(); ++i) h[i] = f32_to_bf16(host[i]);
    gpu().allocator().copy_from_host(d.t.data, h.data(), h.size() * 2);
  } else {
    gpu().allocator().copy_from_host(d.t.data, host.data(), host.size() * 4);
  }
  return d;
}
inline Dev upload_i32(const std::vector<int32_t>& host, const std::vector<int64_t>& shape) {
  Dev d = alloc_dev(DType::i32, shape);
  gpu().allocator().copy_from_host(d.t.data, host.data(), host.size() * 4);
  return d;
}
// An output filled with NaN (f32/bf16) or 0x7f7f7f7f (i32), so unwritten elements show.
inline Dev poisoned(DType dt, const std::vector<int64_t>& shape) {
  Dev d = alloc_dev(dt, shape);
  const size_t n = size_t(numel_of(shape));
  if (dt == DType::bf16) {
    std::vector<uint16_t> h(n, uint16_t(0x7fc0));
    gpu().allocator().copy_from_host(d.t.data, h.data(), n * 2);
  } else if (dt == DType::i32) {
    std::vector<int32_t> h(n, 0x7f7f7f7f);
    gpu().allocator().copy_from_host(d.t.data, h.data(), n * 4);
  } else {
    std::vector<float> h(n, std::nanf(""));
    gpu().allocator().copy_from_host(d.t.data, h.data(), n * 4);
  }
  return d;
}
// Device f32/bf16 tensor -> host floats.
inline std::vector<float> download(const Tensor& t) {
  const size_t n = size_t(t.numel());
  std::vector<float> out(n);
  if (t.dtype == DType::bf16) {
    std::vector<uint16_t> h(n);
    gpu().allocator().copy_to_host(h.data(), t.data, n * 2);
    for (size_t i = 0; i < n; ++i) out[i] = bf16_to_f32(h[i]);
  } else {
    EXPECT_EQ(t.dtype, DType::f32);
    gpu().allocator().copy_to_host(out.data(), t.data, n * 4);
  }
  return out;
}
inline std::vector<int32_t> download_i32(const Tensor& t) {
  std::vector<int32_t> out(size_t(t.numel()));
  gpu().allocator().copy_to_host(out.data(), t.data, out.size() * 4);
  return out;
}

// A host tensor view over a vector (for the CPU reference).
template <class T>
Tensor host_view(std::vector<T>& v, const std::vector<int64_t>& shape) {
  return Tensor(v.data(), dtype_of<T>(), shape.data(), int(shape.size()));
}

// ||out - ref|| / ||ref|| (inf when any element is NaN/inf or the sizes differ).
inline double rel_err(const std::vector<float>& out, const std::vector<float>& ref) {
  if (out.size() != ref.size()) return INFINITY;
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  if (den == 0) return std::sqrt(num) == 0 ? 0.0 : INFINITY;
  return std::sqrt(num / den);
}

// gtest assertion: relative error under the tolerance, with the worst element on failure.
inline ::testing::AssertionResult rel_close(const std::string& what, const std::vector<float>& out,
                                            const std::vector<float>& ref, double tolerance) {
  const double e = rel_err(out, ref);
  if (e <= tolerance) return ::testing::AssertionSuccess();
  std::ostringstream os;
  os << what << ": relative error " << e << " > " << tolerance << " (" << out.size() << " vs " << ref.size()
     << " elements)";
  size_t worst = 0;
  double wd = -1;
  for (size_t i = 0; i < std::min(out.size(), ref.size()); ++i) {
    const double d = std::isfinite(out[i]) ? std::abs(double(out[i]) - ref[i]) : INFINITY;
    if (d > wd) {
      wd = d;
      worst = i;
    }
  }
  if (!out.empty() && !ref.empty()) os << "; worst element " << worst << ": " << out[worst] << " vs " << ref[worst];
  return ::testing::AssertionFailure() << os.str();
}
#define EXPECT_REL(what, out, ref, tolerance) EXPECT_TRUE(::grpo::cudatest::rel_close(what, out, ref, tolerance))

// Error cases: EXPECT_GRPO_ERROR from tests/test_util.h.

}  // namespace grpo::cudatest
