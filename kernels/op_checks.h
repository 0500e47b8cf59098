// Argument checks shared by the backends. Every message names the op, the argument and
// its actual dtype/shape, so a bad call reads like:
//   rmsnorm: w is f32[7], expected [8]
#pragma once

#include <initializer_list>
#include <sstream>

#include "core/error.h"
#include "core/tensor.h"

namespace grpo::checks {

// t must be defined, of dtype `dt`, on `dev`, with `ndim` dimensions (ndim < 0: any 1..4).
void tensor(const char* op, const char* name, const Tensor& t, DType dt, Device dev, int ndim = -1);
// As tensor(), and each dimension must equal the given size (-1: any).
void shape(const char* op, const char* name, const Tensor& t, DType dt, Device dev,
           std::initializer_list<int64_t> dims);
// Two tensors with identical shapes.
void same(const char* op, const char* name_a, const Tensor& a, const char* name_b, const Tensor& b);

}  // namespace grpo::checks
