// Argument checks of the attention ops, shared by the backends: the same messages on every
// device, with the device and the data dtype given by the caller (the CPU passes f32, the
// CUDA backend q's dtype when it is f32 or bf16).
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"

namespace grpo::checks {

// Sizes of one attention call, validated.
struct AttentionDims {
  int64_t T = 0;    // tokens (rows of q)
  int64_t Hq = 0;   // query heads
  int64_t Hkv = 0;  // key/value heads; Hq % Hkv == 0
  int64_t D = 0;    // head dimension
  int64_t group() const { return Hq / Hkv; }
};

// q [T, Hq, D] of dtype dt on dev, and a key-side tensor k whose last two dims are [Hkv, D]
// (its dtype and device are the caller's to check): D agrees and Hq is a multiple of Hkv.
AttentionDims attention_heads(const char* op, const Tensor& q, const char* kname, const Tensor& k, DType dt,
                              Device dev);

// cu_seqlens i32 [S + 1] on dev; returns S. On the host its values are checked too (start at
// 0, never decrease, end at T); a device backend checks them in a kernel and reports
// cu_seqlens_rule().
int64_t cu_seqlens(const char* op, const char* name, const Tensor& cu, int64_t T, Device dev);
// "<name> i32[S + 1] must start at 0, never decrease and end at T = <T>".
std::string cu_seqlens_rule(const char* name, const Tensor& cu, int64_t T);

// Everything but the cu_seqlens values: q [T, Hq, D], k and v [T, Hkv, D] and out (like q)
// of dtype dt, lse f32 [T, Hq], cu_seqlens i32 [S + 1], all on dev.
AttentionDims attention(const char* op, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& cu_seqlens, DType dt, Device dev);
// As attention(), plus dout and dq like q, dk like k, dv like v.
AttentionDims attention_backward(const char* op, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                 const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens, DType dt,
                                 Device dev);

}  // namespace grpo::checks
