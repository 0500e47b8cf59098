// Argument checks of the matmul family (matmul, embedding, grouped_matmul and their
// backwards), shared by the CPU and CUDA backends so both reject a bad call with the same
// message. A backend passes its device and the dtypes it stores data in (MatmulPolicy); the
// CPU accepts f32 only, so its messages read "expected dtype f32".
//
// Dtype rules (the CUDA backend's policy, kernels/cuda/cuda_ops_impl.h; with the CPU's {f32}
// they collapse to "everything f32"):
//   * a and b (x and w) share one dtype from the policy; dout and da (dx) have that dtype;
//   * out, bias, db, dbias, dw may have it or be f32 (f32 results from bf16 inputs);
//   * embedding: table, out, dtable, dout each of any policy dtype; ids i32.
#pragma once

#include <cstdint>
#include <span>

#include "core/tensor.h"

namespace grpo::checks {

struct MatmulPolicy {
  Device device = Device::cpu;
  std::span<const DType> dtypes;  // storage dtypes accepted for data tensors; not empty
};

// Byte ranges of two tensors overlap (undefined or empty tensors never do).
bool overlaps(const Tensor& a, const Tensor& b);
// Throws "<op>: <out_name> <out> overlaps <in_name> <in> (outputs may not alias inputs)".
void no_alias(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in);

// ---- matmul ----------------------------------------------------------------------------
struct MatmulDims {
  int64_t batch = 1, M = 0, N = 0, K = 0;
};
// a, b: 2-D or 3-D (batched), same dtype, inner dimensions agree, sizes fit BLAS ints.
MatmulDims matmul_dims(const char* op, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                       const MatmulPolicy& p);
// out (wide: a's dtype or f32) or dout (!wide: a's dtype) is [batch,] M, N.
void matmul_out(const char* op, const char* name, const Tensor& t, const Tensor& a, const Tensor& b,
                const MatmulDims& d, bool wide, const MatmulPolicy& p);
// bias / dbias [N], a's dtype or f32.
void matmul_bias(const char* op, const char* name, const Tensor& bias, const Tensor& a, const MatmulDims& d,
                 const MatmulPolicy& p);
// A gradient g of parameter x: same shape and device; x's dtype, or f32 too when wide.
void grad_of(const char* op, const char* x_name, const Tensor& x, const char* g_name, const Tensor& g, bool wide);

// Full argument checks of the two ops (shapes, dtypes, aliasing).
MatmulDims matmul_args(const char* op, const Tensor& out, const Tensor& a, const Tensor& b, const Tensor& bias,
                       bool trans_a, bool trans_b, const MatmulPolicy& p);
MatmulDims matmul_backward_args(const char* op, const Tensor& da, const Tensor& db, const Tensor& dbias,
                                const Tensor& dout, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                                const MatmulPolicy& p);

// ---- embedding -------------------------------------------------------------------------
// out [T, C], ids i32 [T], table [V, C]. Ids are checked separately (host or device).
void embedding_args(const char* op, const Tensor& out, const Tensor& ids, const Tensor& table, const MatmulPolicy& p);
// dtable [V, C], dout [T, C], ids i32 [T].
void embedding_backward_args(const char* op, const Tensor& dtable, const Tensor& dout, const Tensor& ids,
                             const MatmulPolicy& p);
// Throws "<op>: ids[t] = id is outside [0, V) for table <table>".
[[noreturn]] void bad_id(const char* op, int64_t t, int32_t id, const Tensor& table);
// Host ids (n of them) against table's rows: throws bad_id for the first bad one.
void ids_in_range(const char* op, const int32_t* ids, int64_t n, const Tensor& table);

// ---- grouped matmul --------------------------------------------------------------------
struct GroupedDims {
  int64_t E = 0, R = 0, N = 0, K = 0;
};
// x [R, K], w [E, N, K] (same dtype), expert_offsets i32 [E + 1] on the policy's device.
// The offsets' values are checked by expert_offsets() once they are on the host.
GroupedDims grouped_dims(const char* op, const Tensor& x, const Tensor& w, const Tensor& offsets,
                         const MatmulPolicy& p);
// Host offsets [E + 1]: offsets[0] == 0, non-decreasing, offsets[E] == R (the rows of x).
void expert_offsets(const char* op, const int32_t* offsets, int64_t E, int64_t R, const Tensor& x);
// Full argument checks except the offsets' values.
GroupedDims grouped_matmul_args(const char* op, const Tensor& out, const Tensor& x, const Tensor& w,
                                const Tensor& offsets, const MatmulPolicy& p);
GroupedDims grouped_matmul_backward_args(const char* op, const Tensor& dx, const Tensor& dw, const Tensor& dout,
                                         const Tensor& x, const Tensor& w, const Tensor& offsets,
                                         const MatmulPolicy& p);

}  // namespace grpo::checks
