#include "kernels/checks_norm.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>

#include "kernels/op_checks.h"

namespace grpo::checks {

namespace {

bool has(std::span<const DType> dtypes, DType t) { return std::find(dtypes.begin(), dtypes.end(), t) != dtypes.end(); }

// "f32" or "f32 or bf16".
std::string dtype_names(std::span<const DType> dtypes) {
  std::ostringstream os;
  for (size_t i = 0; i < dtypes.size(); ++i) os << (i ? " or " : "") << dtype_name(dtypes[i]);
  return os.str();
}

// checks::tensor with a set of accepted dtypes (same messages for a single one).
void float_tensor(const char* op, const char* name, const Tensor& t, std::span<const DType> dtypes, Device dev,
                  int ndim = -1) {
  GRPO_CHECK(t.defined(), op << ": " << name << " is undefined");
  GRPO_CHECK(has(dtypes, t.dtype),
             op << ": " << name << " is " << t.str() << ", expected dtype " << dtype_names(dtypes));
  tensor(op, name, t, t.dtype, dev, ndim);
}

bool overlap(const Tensor& a, const Tensor& b) {
  const auto* pa = static_cast<const char*>(a.data);
  const auto* pb = static_cast<const char*>(b.data);
  return a.nbytes() && b.nbytes() && pa < pb + b.nbytes() && pb < pa + a.nbytes();
}

// x [..., C] with C >= 1 and w [C] of x's dtype or f32; returns C.
int64_t norm_input(const char* op, const Tensor& x, const Tensor& w, Device dev, std::span<const DType> dtypes) {
  float_tensor(op, "x", x, dtypes, dev);
  const int64_t C = x.size(-1);
  GRPO_CHECK(C > 0, op << ": x is " << x.str() << ", expected a non-empty last dimension");
  const DType w_types[] = {x.dtype, DType::f32};
  float_tensor(op, "w", w, std::span<const DType>(w_types, x.dtype == DType::f32 ? 1 : 2), dev, 1);
  shape(op, "w", w, w.dtype, dev, {C});
  return C;
}

// rstd holds one f32 per row of x (shape [rows], or x's shape without its last dimension).
void norm_rstd(const char* op, const Tensor& rstd, const Tensor& x, int64_t rows, Device dev) {
  tensor(op, "rstd", rstd, DType::f32, dev);
  GRPO_CHECK(rstd.numel() == rows, op << ": rstd is " << rstd.str() << ", expected [" << rows
                                      << "] (one value per row of x " << x.str() << ")");
}

void norm_eps(const char* op, float eps) {
  GRPO_CHECK(std::isfinite(eps) && eps >= 0.0f, op << ": eps is " << eps << ", expected a finite value >= 0");
}

}  // namespace

// ---- elementwise helpers -------------------------------------------------------------------

void add(const Tensor& out, const Tensor& a, const Tensor& b, Device dev, std::span<const DType> dtypes) {
  float_tensor("add", "a", a, dtypes, dev);
  same("add", "a", a, "b", b);
  same("add", "a", a, "out", out);
}

void scale(const Tensor& x, Device dev, std::span<const DType> dtypes) { float_tensor("scale", "x", x, dtypes, dev); }

void zero(const Tensor& x, Device dev) {
  GRPO_CHECK(x.defined() && x.device == dev,
             "zero: x is " << x.str() << ", expected a " << device_name(dev) << " tensor");
}

void copy(const Tensor& dst, const Tensor& src, Device dev, bool convert_float) {
  GRPO_CHECK(src.defined() && dst.defined() && src.device == dev && dst.device == dev,
             "copy: dst " << dst.str() << " and src " << src.str() << " must be " << device_name(dev) << " tensors");
  const auto is_float = [](DType t) { return t == DType::f32 || t == DType::bf16; };
  const bool dtypes_ok = src.dtype == dst.dtype || (convert_float && is_float(src.dtype) && is_float(dst.dtype));
  GRPO_CHECK(dtypes_ok && src.numel() == dst.numel(),
             "copy: dst is " << dst.str() << " but src is " << src.str()
                             << (convert_float ? " (element count must match; dtypes must match or be f32/bf16)"
                                               : " (dtype and element count must match)"));
}

// ---- activations and softmax ---------------------------------------------------------------

void swiglu(const Tensor& out, const Tensor& gate, const Tensor& up, Device dev, std::span<const DType> dtypes) {
  float_tensor("swiglu", "gate", gate, dtypes, dev);
  same("swiglu", "gate", gate, "up", up);
  same("swiglu", "gate", gate, "out", out);
}

void swiglu_backward(const Tensor& dgate, const Tensor& dup, const Tensor& dout, const Tensor& gate,
                     const Tensor& up, Device dev, std::span<const DType> dtypes) {
  float_tensor("swiglu_backward", "gate", gate, dtypes, dev);
  same("swiglu_backward", "gate", gate, "up", up);
  same("swiglu_backward", "gate", gate, "dout", dout);
  same("swiglu_backward", "gate", gate, "dgate", dgate);
  same("swiglu_backward", "gate", gate, "dup", dup);
}

void softmax(const Tensor& out, const Tensor& x, Device dev, std::span<const DType> dtypes) {
  float_tensor("softmax", "x", x, dtypes, dev);
  same("softmax", "x", x, "out", out);
}

void softmax_backward(const Tensor& dx, const Tensor& dout, const Tensor& out, Device dev,
                      std::span<const DType> dtypes) {
  float_tensor("softmax_backward", "out", out, dtypes, dev);
  same("softmax_backward", "out", out, "dout", dout);
  same("softmax_backward", "out", out, "dx", dx);
}

// ---- RMSNorm -------------------------------------------------------------------------------

int64_t rmsnorm(const Tensor& out, const Tensor& rstd, const Tensor& x, const Tensor& w, float eps, Device dev,
                std::span<const DType> dtypes) {
  const int64_t C = norm_input("rmsnorm", x, w, dev, dtypes);
  same("rmsnorm", "x", x, "out", out);
  norm_rstd("rmsnorm", rstd, x, x.numel() / C, dev);
  norm_eps("rmsnorm", eps);
  return C;
}

int64_t rmsnorm_backward(const Tensor& dx, const Tensor& dw, const Tensor& dout, const Tensor& x, const Tensor& w,
                         const Tensor& rstd, Device dev, std::span<const DType> dtypes) {
  const int64_t C = norm_input("rmsnorm_backward", x, w, dev, dtypes);
  same("rmsnorm_backward", "x", x, "dout", dout);
  same("rmsnorm_backward", "x", x, "dx", dx);
  same("rmsnorm_backward", "w", w, "dw", dw);
  norm_rstd("rmsnorm_backward", rstd, x, x.numel() / C, dev);
  return C;
}

int64_t add_rmsnorm(const Tensor& sum, const Tensor& out, const Tensor& rstd, const Tensor& x,
                    const Tensor& residual, const Tensor& w, float eps, Device dev, std::span<const DType> dtypes) {
  const int64_t C = norm_input("add_rmsnorm", x, w, dev, dtypes);
  same("add_rmsnorm", "x", x, "residual", residual);
  same("add_rmsnorm", "x", x, "sum", sum);
  same("add_rmsnorm", "x", x, "out", out);
  norm_rstd("add_rmsnorm", rstd, x, x.numel() / C, dev);
  norm_eps("add_rmsnorm", eps);
  GRPO_CHECK(!overlap(out, sum), "add_rmsnorm: out overlaps sum (out must not alias sum)");
  GRPO_CHECK(sum.data == x.data || !overlap(sum, x),
             "add_rmsnorm: sum partially overlaps x (only exact aliasing is allowed)");
  GRPO_CHECK(sum.data == residual.data || !overlap(sum, residual),
             "add_rmsnorm: sum partially overlaps residual (only exact aliasing is allowed)");
  return C;
}

// ---- RoPE ----------------------------------------------------------------------------------

void rope(const char* op, const char* out_name, const Tensor& out, const char* in_name, const Tensor& in,
          const Tensor& positions, const RopeParams& p, Device dev, std::span<const DType> dtypes) {
  float_tensor(op, in_name, in, dtypes, dev, 3);
  same(op, in_name, in, out_name, out);
  const int64_t T = in.shape[0], D = in.shape[2];
  GRPO_CHECK(p.head_dim == D, op << ": " << in_name << " is " << in.str() << " but head_dim is " << p.head_dim);
  GRPO_CHECK(p.rot_dim >= 2 && p.rot_dim % 2 == 0 && p.rot_dim <= D,
             op << ": rot_dim is " << p.rot_dim << ", expected even, >= 2 and <= head_dim " << D);
  tensor(op, "inv_freq", p.inv_freq, DType::f32, dev, 1);
  GRPO_CHECK(p.inv_freq.shape[0] * 2 == p.rot_dim,
             op << ": inv_freq is " << p.inv_freq.str() << ", expected [" << p.rot_dim / 2 << "] (rot_dim "
                << p.rot_dim << " / 2)");
  GRPO_CHECK(std::isfinite(p.attention_scaling),
             op << ": attention_scaling is " << p.attention_scaling << ", expected a finite value");
  shape(op, "positions", positions, DType::i32, dev, {T});
  // In place (same data) or disjoint; a partial overlap would read rotated values.
  GRPO_CHECK(out.data == in.data || !overlap(out, in),
             op << ": " << out_name << " partially overlaps " << in_name << " (only exact aliasing is allowed)");
}

// ---- optimizer -----------------------------------------------------------------------------

void adamw(const Tensor& params, const Tensor& grads, const Tensor& m, const Tensor& v, const AdamWParams& p,
           const Tensor& params_bf16, Device dev) {
  tensor("adamw", "params", params, DType::f32, dev);
  same("adamw", "params", params, "grads", grads);
  same("adamw", "params", params, "m", m);
  same("adamw", "params", params, "v", v);
  if (params_bf16.defined()) {
    shape("adamw", "params_bf16", params_bf16, DType::bf16, dev, {params.numel()});
    GRPO_CHECK(params.ndim == 1, "adamw: params is " << params.str() << ", expected a flat buffer with params_bf16");
  }
  GRPO_CHECK(p.step >= 1, "adamw: step is " << p.step << ", expected >= 1 (bias correction is 1-based)");
  GRPO_CHECK(p.beta1 >= 0.0f && p.beta1 < 1.0f && p.beta2 >= 0.0f && p.beta2 < 1.0f,
             "adamw: betas (" << p.beta1 << ", " << p.beta2 << ") must lie in [0, 1)");
  GRPO_CHECK(p.eps > 0.0f, "adamw: eps is " << p.eps << ", expected > 0");
}

void sum_squares(const Tensor& out, const Tensor& x, Device dev, std::span<const DType> dtypes) {
  shape("sum_squares", "out", out, DType::f32, dev, {1});
  float_tensor("sum_squares", "x", x, dtypes, dev);
}

}  // namespace grpo::checks
