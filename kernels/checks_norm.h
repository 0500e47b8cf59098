// Argument checks of the elementwise, activation, softmax, RMSNorm, RoPE and optimizer ops,
// shared by every backend so that a bad call reads the same on each. Each check takes the
// backend's device and the float dtypes it stores data tensors in (the CPU: f32; CUDA: f32
// and bf16; all data tensors of one call share a dtype unless the op says otherwise) and
// throws grpo::Error naming the op, the argument and its shape, e.g.
//   rmsnorm: w is f32[7], expected [8]
// Checks that need the data itself (RoPE's non-negative positions) stay with the backend.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"
#include "kernels/ops.h"

namespace grpo::checks {

// ---- elementwise helpers (kernels/ops.h) ---------------------------------------------------
void add(const Tensor& out, const Tensor& a, const Tensor& b, Device dev, std::span<const DType> dtypes);
void scale(const Tensor& x, Device dev, std::span<const DType> dtypes);
// Any dtype.
void zero(const Tensor& x, Device dev);
// Equal element counts and dtypes; convert_float also accepts an f32 <-> bf16 pair.
void copy(const Tensor& dst, const Tensor& src, Device dev, bool convert_float);

// ---- activations and softmax ---------------------------------------------------------------
void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up, Device dev, std::span<const DType> dtypes);
void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up, Device dev, std::span<const DType> dtypes);
void softmax(const Tensor& out, const Tensor& x, Device dev, std::span<const DType> dtypes);
void softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& out, Device dev,
                      std::span<const DType> dtypes);

// ---- RMSNorm: each returns C (the normalised last dimension, >= 1) -------------------------
// w has x's dtype or f32 (norm weights may stay f32 under bf16 activations); rstd is f32.
int64_t rmsnorm(const Tensor& out, const Tensor& rstd, const Tensor& x, const Tensor& w, float eps, Device dev,
                std::span<const DType> dtypes);
int64_t rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                         const Tensor& rstd, Device dev, std::span<const DType> dtypes);
// sum may alias x or residual exactly; out must not overlap sum.
int64_t add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& rstd, const Tensor& x,
                    const Tensor& residual, const Tensor& w, float eps, Device dev, std::span<const DType> dtypes);

// ---- RoPE ----------------------------------------------------------------------------------
// `in` [T, H, D] is x (forward) or dout (backward), `out` the result (same shape, exact
// aliasing or disjoint); positions i32 [T] (its values are the backend's to check).
void rope(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
          const Tensor& positions, const RopeParams& p, Device dev, std::span<const DType> dtypes);

// ---- optimizer -----------------------------------------------------------------------------
// params, grads, m, v f32 (the master copy); params_bf16 bf16 [numel] or undefined.
void adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v, const AdamWParams& p,
           const Tensor& params_bf16, Device dev);
// out f32 [1]; x of a data dtype.
void sum_squares(const Tensor& out, const Tensor& x, Device dev, std::span<const DType> dtypes);

}  // namespace grpo::checks
