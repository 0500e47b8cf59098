// Overfit: a tiny MoE trained with AdamW (flat buffers, weight decay only on the decayed
// range) on one fixed batch drives the next-token loss near zero.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "core/buffer.h"
#include "tests/policy/model_test_util.h"
#include "tests/test_util.h"

namespace grpo::test {
namespace {

TEST(ModelOverfit, TinyMoeLossGoesToZero) {
  ModelConfig cfg = model_preset("qwen3_moe", "tiny");
  cfg.output_router_logits = true;  // train with the load-balancing loss as transformers does
  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = 64;
  limits.max_seqs = 4;
  Model model(cfg, *ops, limits);
  model.init_weights(1234);
  const RefInput in = make_batch({20, 14, 12}, 259, 8);  // byte-level ids
  const HostBatch hb(in);
  const int64_t T = int64_t(in.tokens.size());
  HostF lp({T}), dlogprob({T});
  for (float& d : dlogprob.v) d = -1.0f / float(T);  // loss = -mean log p(target)

  const int64_t N = model.table().size();
  Buffer mbuf(ops->allocator(), size_t(N) * sizeof(float)), vbuf(ops->allocator(), size_t(N) * sizeof(float));
  mbuf.zero();
  vbuf.zero();
  const Tensor m = mbuf.view(DType::f32, {N}), v = vbuf.view(DType::f32, {N});
  auto range = [](Tensor t, ParamRange r) { return t.rows(r.offset, r.offset + r.count); };

  float first = 0, loss = 0;
  const int steps = 120;
  for (int step = 1; step <= steps; ++step) {
    ForwardOutputs out;
    out.logprob = lp;
    ForwardOptions opt;
    opt.with_grad = true;
    model.forward(hb.batch(), opt, out);
    loss = 0;
    for (float x : lp.v) loss -= x / float(T);
    if (step == 1) first = loss;
    model.zero_grad();
    model.backward(dlogprob, Tensor{}, model.aux_loss_coef());
    const Tensor g = model.grads();
    clip_grad_norm(*ops, std::span<const Tensor>(&g, 1), 1.0f);
    AdamWParams p;
    p.lr = 1e-2f;
    p.beta2 = 0.99f;
    p.step = step;
    for (const bool decay : {true, false}) {
      const ParamRange r = decay ? model.table().decay_range() : model.table().no_decay_range();
      p.weight_decay = decay ? 0.01f : 0.0f;
      ops->adamw(range(model.params(), r), range(g, r), range(m, r), range(v, r), p);
    }
  }
  std::printf("[model] overfit qwen3_moe tiny: loss %.4f -> %.4f in %d steps\n", first, loss, steps);
  EXPECT_GT(first, 5.0f);  // ~ log(272) at init
  EXPECT_LT(loss, 0.05f);
}

}  // namespace
}  // namespace grpo::test
