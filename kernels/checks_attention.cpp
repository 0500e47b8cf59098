#include "kernels/checks_attention.h"

#include <algorithm>
#include <sstream>

#include "core/error.h"
#include "kernels/op_checks.h"

namespace grpo::checks {
namespace {

std::string ints_str(const int32_t* p, int64_t n) {
  std::ostringstream os;
  os << "[";
  const int64_t shown = std::min<int64_t>(n, 12);
  for (int64_t i = 0; i < shown; ++i) os << (i ? ", " : "") << p[i];
  if (shown < n) os << ", ...";
  os << "]";
  return os.str();
}

// q, k, v of the varlen ops.
AttentionDims qkv(const char* op, const Tensor& q, const Tensor& k, const Tensor& v, DType dt, Device dev) {
  tensor(op, "k", k, dt, dev, 3);
  const AttentionDims d = attention_heads(op, q, "k", k, dt, dev);
  GRPO_CHECK(k.shape[0] == d.T, op << ": q is " << q.str() << " but k is " << k.str() << ": token counts " << d.T
                                   << " and " << k.shape[0] << " differ");
  same(op, "k", k, "v", v);
  return d;
}

}  // namespace

AttentionDims attention_heads(const char* op, const Tensor& q, const char* kname, const Tensor& k, DType dt,
                              Device dev) {
  tensor(op, "q", q, dt, dev, 3);
  AttentionDims d{q.shape[0], q.shape[1], k.size(-2), q.shape[2]};
  GRPO_CHECK(k.size(-1) == d.D, op << ": q is " << q.str() << " but " << kname << " is " << k.str()
                                   << ": head dimensions " << d.D << " and " << k.size(-1) << " differ");
  GRPO_CHECK(d.Hkv >= 1 && d.Hq % d.Hkv == 0, op << ": q " << q.str() << " has Hq = " << d.Hq << " heads, "
                                                 << kname << " " << k.str() << " has Hkv = " << d.Hkv
                                                 << ": Hq must be a positive multiple of Hkv");
  GRPO_CHECK(d.D >= 1, op << ": q " << q.str() << " has head dimension 0");
  return d;
}

std::string cu_seqlens_rule(const char* name, const Tensor& cu, int64_t T) {
  std::ostringstream os;
  os << name << " " << cu.str() << " must start at 0, never decrease and end at T = " << T;
  return os.str();
}

int64_t cu_seqlens(const char* op, const char* name, const Tensor& cu, int64_t T, Device dev) {
  tensor(op, name, cu, DType::i32, dev, 1);
  const int64_t n = cu.shape[0];
  GRPO_CHECK(n >= 1, op << ": " << name << " is " << cu.str() << ", expected at least one entry (S + 1)");
  if (dev == Device::cpu) {
    const int32_t* c = cu.ptr<int32_t>();
    bool ok = c[0] == 0 && c[n - 1] == T;
    for (int64_t i = 0; ok && i + 1 < n; ++i) ok = c[i + 1] >= c[i];
    GRPO_CHECK(ok, op << ": " << name << " " << cu.str() << " = " << ints_str(c, n)
                      << " must start at 0, never decrease and end at T = " << T);
  }
  return n - 1;
}

AttentionDims attention(const char* op, const Tensor& out, const Tensor& lse, const Tensor& q, const Tensor& k,
                        const Tensor& v, const Tensor& cu_seqlens_, DType dt, Device dev) {
  const AttentionDims d = qkv(op, q, k, v, dt, dev);
  same(op, "q", q, "out", out);
  shape(op, "lse", lse, DType::f32, dev, {d.T, d.Hq});
  cu_seqlens(op, "cu_seqlens", cu_seqlens_, d.T, dev);
  return d;
}

AttentionDims attention_backward(const char* op, const Tensor& dq, const Tensor& dk, const Tensor& dv,
                                 const Tensor& dout, const Tensor& q, const Tensor& k, const Tensor& v,
                                 const Tensor& out, const Tensor& lse, const Tensor& cu_seqlens_, DType dt,
                                 Device dev) {
  const AttentionDims d = qkv(op, q, k, v, dt, dev);
  same(op, "q", q, "out", out);
  same(op, "q", q, "dout", dout);
  same(op, "q", q, "dq", dq);
  same(op, "k", k, "dk", dk);
  same(op, "v", v, "dv", dv);
  shape(op, "lse", lse, DType::f32, dev, {d.T, d.Hq});
  cu_seqlens(op, "cu_seqlens", cu_seqlens_, d.T, dev);
  return d;
}

}  // namespace grpo::checks
