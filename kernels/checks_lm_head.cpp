#include "kernels/checks_lm_head.h"

#include <climits>
#include <cmath>
#include <sstream>

#include "kernels/op_checks.h"

namespace grpo::checks {
namespace {

// The dtype of t when it is one of `dtypes`. Otherwise the first one, so that checks::tensor
// reports a missing tensor or, with a single choice, "expected dtype f32" as before; with
// several choices the message lists them all.
DType pick_dtype(const char* op, const char* name, const Tensor& t, std::initializer_list<DType> dtypes) {
  for (DType d : dtypes)
    if (t.dtype == d) return d;
  if (!t.defined() || dtypes.size() == 1) return *dtypes.begin();
  std::ostringstream want;
  int i = 0;
  for (DType d : dtypes) want << (i++ ? " or " : "") << dtype_name(d);
  GRPO_THROW(op << ": " << name << " is " << t.str() << ", expected dtype " << want.str());
}

}  // namespace

LmHeadShape lm_head_inputs(const char* op, Device dev, std::initializer_list<DType> dtypes, const Tensor& hidden,
                           const Tensor& w, const Tensor& targets, float inv_temperature) {
  LmHeadShape s;
  s.dtype = pick_dtype(op, "hidden", hidden, dtypes);
  tensor(op, "hidden", hidden, s.dtype, dev, 2);
  s.T = hidden.shape[0];
  s.C = hidden.shape[1];
  shape(op, "w", w, s.dtype, dev, {-1, s.C});
  s.V = w.shape[0];
  shape(op, "targets", targets, DType::i32, dev, {s.T});
  GRPO_CHECK(s.C > 0 && s.C <= INT_MAX, op << ": hidden " << hidden.str() << " must have 1 to " << INT_MAX
                                           << " features");
  GRPO_CHECK(s.V > 0 && s.V <= INT32_MAX, op << ": w " << w.str() << " must have 1 to " << INT32_MAX
                                             << " vocabulary rows");
  GRPO_CHECK(std::isfinite(inv_temperature) && inv_temperature > 0.0f,
             op << ": inv_temperature is " << inv_temperature << ", expected finite and > 0");
  if (dev == Device::cpu) {
    const int32_t* tg = targets.ptr<int32_t>();
    for (int64_t t = 0; t < s.T; ++t)
      if (tg[t] < 0 || tg[t] >= s.V) lm_head_bad_target(op, t, tg[t], w);
  }
  return s;
}

void lm_head_outputs(const char* op, Device dev, const LmHeadShape& s, const Tensor& logprob, const Tensor& entropy,
                     const Tensor& lse) {
  shape(op, "logprob", logprob, DType::f32, dev, {s.T});
  shape(op, "lse", lse, DType::f32, dev, {s.T});
  if (entropy.defined()) shape(op, "entropy", entropy, DType::f32, dev, {s.T});
}

void lm_head_backward_args(const char* op, Device dev, const LmHeadShape& s, const Tensor& dhidden, const Tensor& dw,
                           const Tensor& dlogprob, const Tensor& dentropy, const Tensor& lse, const Tensor& entropy) {
  shape(op, "dlogprob", dlogprob, DType::f32, dev, {s.T});
  shape(op, "lse", lse, DType::f32, dev, {s.T});
  if (dentropy.defined()) {
    shape(op, "dentropy", dentropy, DType::f32, dev, {s.T});
    GRPO_CHECK(entropy.defined(), op << ": dentropy " << dentropy.str()
                                     << " is given but entropy is undefined (pass the forward's entropy)");
    shape(op, "entropy", entropy, DType::f32, dev, {s.T});
  }
  if (dhidden.defined()) shape(op, "dhidden", dhidden, s.dtype, dev, {s.T, s.C});
  if (dw.defined()) {
    const DType dw_dtype = s.dtype == DType::f32 ? DType::f32 : pick_dtype(op, "dw", dw, {s.dtype, DType::f32});
    shape(op, "dw", dw, dw_dtype, dev, {s.V, s.C});
  }
}

void lm_head_bad_target(const char* op, int64_t t, int32_t value, const Tensor& w) {
  GRPO_THROW(op << ": targets[" << t << "] = " << value << " is outside the vocabulary [0, " << w.shape[0]
                << ") of w " << w.str());
}

}  // namespace grpo::checks
