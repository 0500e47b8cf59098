// Shared helpers for the kernel tests: owned host tensors, seeded random data, error
// metrics against fp64 references, and central finite differences.
//
// How a kernel test is built (see tests/kernels/*):
//   1. random inputs (never all zeros) from a fixed seed, odd sizes included;
//   2. a naive fp64 reference written in the test itself (plain loops, no shared code with
//      the kernel);
//   3. forward compared with expect_close (relative L2 error + worst element);
//   4. backward: a scalar L = sum(dout * f(x)) with random dout; the fp64 reference's
//      central finite differences of L give the expected gradient of every input, which
//      the op's backward must match.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace grpo::test {

// A host tensor that owns its storage.
template <class T>
struct Host {
  std::vector<T> v;
  Tensor t;
  Host() = default;
  explicit Host(std::initializer_list<int64_t> shape) { init(shape.begin(), int(shape.size())); }
  Host(const std::vector<int64_t>& shape) { init(shape.data(), int(shape.size())); }
  void init(const int64_t* shape, int ndim) {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    v.assign(size_t(n), T{});
    t = Tensor(v.data(), dtype_of<T>(), shape, ndim);
  }
  T* data() { return v.data(); }
  size_t size() const { return v.size(); }
  T& operator[](size_t i) { return v[i]; }
  const T& operator[](size_t i) const { return v[i]; }
  operator Tensor() const { return t; }
  std::vector<double> f64() const { return std::vector<double>(v.begin(), v.end()); }
};
using HostF = Host<float>;
using HostI = Host<int32_t>;

inline void fill_uniform(std::vector<float>& v, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(lo, hi);
  for (auto& x : v) x = d(rng);
}
inline void fill_normal(std::vector<float>& v, uint64_t seed, float stddev = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, stddev);
  for (auto& x : v) x = d(rng);
}
inline HostF random_f32(std::initializer_list<int64_t> shape, uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  HostF h(shape);
  fill_uniform(h.v, seed, lo, hi);
  return h;
}

// Poison an output so unwritten elements are caught (NaN fails every comparison).
inline void poison(std::vector<float>& v) { std::fill(v.begin(), v.end(), std::nanf("")); }

// ||out - ref|| / max(||ref||, tiny)
inline double rel_l2(const float* out, const double* ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(out[i]) - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-30);
}

// Passes when the relative L2 error is <= rel_tol AND every element is within
// abs_tol + rel_tol * |ref| ... of its reference. The failure names the first bad element.
inline ::testing::AssertionResult close(const std::string& what, const float* out, const double* ref, size_t n,
                                        double rel_tol, double elem_abs_tol) {
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i]) && std::isfinite(ref[i]))
      return ::testing::AssertionFailure() << what << ": element " << i << " is " << out[i] << ", expected " << ref[i];
  }
  double r = rel_l2(out, ref, n);
  if (!(r <= rel_tol))
    return ::testing::AssertionFailure() << what << ": relative L2 error " << r << " > " << rel_tol << " over " << n
                                         << " elements";
  for (size_t i = 0; i < n; ++i) {
    double tol = elem_abs_tol + rel_tol * std::fabs(ref[i]);
    if (!(std::fabs(double(out[i]) - ref[i]) <= tol))
      return ::testing::AssertionFailure() << what << ": element " << i << " is " << out[i] << ", expected " << ref[i]
                                           << " (tolerance " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult close(const std::string& what, const std::vector<float>& out,
                                        const std::vector<double>& ref, double rel_tol, double elem_abs_tol) {
  if (out.size() != ref.size())
    return ::testing::AssertionFailure() << what << ": size " << out.size() << " vs reference " << ref.size();
  return close(what, out.data(), ref.data(), out.size(), rel_tol, elem_abs_tol);
}

// Central finite differences of a scalar function of x (fp64), step h.
inline std::vector<double> fd_gradient(const std::function<double(const std::vector<double>&)>& f,
                                       std::vector<double> x, double h = 1e-6) {
  std::vector<double> g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double fp = f(x);
    x[i] = x0 - h;
    const double fm = f(x);
    x[i] = x0;
    g[i] = (fp - fm) / (2 * h);
  }
  return g;
}

// sum_i w[i] * y[i] in fp64: turns a vector function into the scalar L = <dout, f(x)>.
inline double dot(const std::vector<double>& w, const std::vector<double>& y) {
  double s = 0;
  for (size_t i = 0; i < w.size(); ++i) s += w[i] * y[i];
  return s;
}

// Expects `fn` to throw grpo::Error whose message contains every fragment.
#define EXPECT_GRPO_ERROR(stmt, ...)                                                                  \
  do {                                                                                                \
    bool grpo_threw_ = false;                                                                         \
    try {                                                                                             \
      stmt;                                                                                           \
    } catch (const ::grpo::Error& e) {                                                                \
      grpo_threw_ = true;                                                                             \
      for (const char* frag : {__VA_ARGS__})                                                          \
        EXPECT_NE(std::string(e.what()).find(frag), std::string::npos)                                \
            << "error message \"" << e.what() << "\" lacks \"" << frag << "\"";                       \
    }                                                                                                 \
    EXPECT_TRUE(grpo_threw_) << #stmt " did not throw grpo::Error";                                  \
  } while (0)

}  // namespace grpo::test
