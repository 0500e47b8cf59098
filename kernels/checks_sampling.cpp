#include "kernels/checks_sampling.h"

#include <climits>
#include <cmath>

#include "kernels/op_checks.h"

namespace grpo::checks {

void sample(const Tensor& tokens, const Tensor& logprobs, const Tensor& logits, std::span<const SamplingParams> params,
            DType logits_dtype, Device dev) {
  const char* op = "sample";
  tensor(op, "logits", logits, logits_dtype, dev, 2);
  const int64_t B = logits.shape[0], V = logits.shape[1];
  shape(op, "tokens", tokens, DType::i32, dev, {B});
  shape(op, "logprobs", logprobs, DType::f32, dev, {B});
  GRPO_CHECK(int64_t(params.size()) == B,
             op << ": params has " << params.size() << " entries for " << B << " rows of logits " << logits.str());
  GRPO_CHECK(V > 0 && V <= INT32_MAX,
             op << ": logits " << logits.str() << " must have 1 to " << INT32_MAX << " vocabulary entries");
  for (size_t b = 0; b < params.size(); ++b) {
    const SamplingParams& p = params[b];
    GRPO_CHECK(std::isfinite(p.temperature) && p.temperature >= 0.0f,
               op << ": params[" << b << "].temperature is " << p.temperature << ", expected finite and >= 0");
    GRPO_CHECK(p.top_k >= 0, op << ": params[" << b << "].top_k is " << p.top_k << ", expected >= 0 (0: off)");
    GRPO_CHECK(p.top_p > 0.0f && p.top_p <= 1.0f,
               op << ": params[" << b << "].top_p is " << p.top_p << ", expected in (0, 1]");
    GRPO_CHECK(p.min_p >= 0.0f && p.min_p < 1.0f,
               op << ": params[" << b << "].min_p is " << p.min_p << ", expected in [0, 1)");
  }
}

}  // namespace grpo::checks
