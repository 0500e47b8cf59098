#include "kernels/checks_moe.h"

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/op_checks.h"

namespace grpo::checks {
namespace {

constexpr int64_t kMaxRows = std::numeric_limits<int32_t>::max();

// The router's shared shape checks: returns E. ids is [T, K] with K == p.top_k in [1, E].
int64_t router_common(const char* op, const Tensor& scores, const Tensor& ids, const Tensor& kw, const char* kw_name,
                      const RouterParams& p, Device dev) {
  tensor(op, "scores", scores, DType::f32, dev, 2);
  const int64_t T = scores.shape[0], E = scores.shape[1];
  GRPO_CHECK(E >= 1, op << ": scores " << scores.str() << " has no experts");
  GRPO_CHECK(p.top_k >= 1 && p.top_k <= E,
             op << ": top_k is " << p.top_k << ", expected 1 to E = " << E << " (scores " << scores.str() << ")");
  shape(op, "topk_ids", ids, DType::i32, dev, {T, p.top_k});
  shape(op, kw_name, kw, DType::f32, dev, {T, p.top_k});
  GRPO_CHECK(std::isfinite(p.scaling), op << ": scaling is " << p.scaling << ", expected a finite value");
  return E;
}

// Shared checks of moe_unpermute and its backward: out-like [T, C], yp [T*K, C],
// dest_row [T*K], topk_weights [T, K].
void unpermute_common(const char* op, const char* out_name, const Tensor& out, const Tensor& yp,
                      const Tensor& dest_row, const Tensor& topk_weights, DType data, Device dev) {
  tensor(op, out_name, out, data, dev, 2);
  tensor(op, "topk_weights", topk_weights, DType::f32, dev, 2);
  const int64_t T = out.shape[0], C = out.shape[1], K = topk_weights.shape[1];
  GRPO_CHECK(topk_weights.shape[0] == T, op << ": topk_weights " << topk_weights.str() << " and " << out_name << " "
                                            << out.str() << " disagree on the token count");
  shape(op, "yp", yp, data, dev, {T * K, C});
  shape(op, "dest_row", dest_row, DType::i32, dev, {T * K});
}

}  // namespace

int64_t moe_router(const Tensor& topk_weights, const Tensor& topk_ids, const Tensor& scores, const Tensor& logits,
                   const RouterParams& p, Device dev) {
  const char* op = "moe_router";
  tensor(op, "logits", logits, DType::f32, dev, 2);
  const int64_t E = router_common(op, scores, topk_ids, topk_weights, "topk_weights", p, dev);
  same(op, "logits", logits, "scores", scores);
  if (p.selection_bias.defined()) shape(op, "selection_bias", p.selection_bias, DType::f32, dev, {E});
  return E;
}

int64_t moe_router_backward(const Tensor& dlogits, const Tensor& dtopk_weights, const Tensor& scores,
                            const Tensor& topk_ids, const RouterParams& p, Device dev) {
  const char* op = "moe_router_backward";
  tensor(op, "dtopk_weights", dtopk_weights, DType::f32, dev, 2);
  const int64_t E = router_common(op, scores, topk_ids, dtopk_weights, "dtopk_weights", p, dev);
  same(op, "dlogits", dlogits, "scores", scores);
  return E;
}

void moe_align(const Tensor& expert_offsets, const Tensor& src_token, const Tensor& dest_row, const Tensor& topk_ids,
               int64_t num_experts, Device dev) {
  const char* op = "moe_align";
  tensor(op, "topk_ids", topk_ids, DType::i32, dev, 2);
  const int64_t T = topk_ids.shape[0], K = topk_ids.shape[1], E = num_experts;
  GRPO_CHECK(E >= 1 && E <= kMaxRows, op << ": num_experts is " << E << ", expected 1 to " << kMaxRows);
  GRPO_CHECK(K >= 1 && K <= E,
             op << ": topk_ids " << topk_ids.str() << " has K = " << K << ", expected 1 to E = " << E);
  GRPO_CHECK(T * K <= kMaxRows, op << ": topk_ids " << topk_ids.str() << " has more than " << kMaxRows
                                   << " (token, slot) pairs for i32 row indices");
  shape(op, "expert_offsets", expert_offsets, DType::i32, dev, {E + 1});
  shape(op, "src_token", src_token, DType::i32, dev, {T * K});
  shape(op, "dest_row", dest_row, DType::i32, dev, {T * K});
}

void moe_permute(const Tensor& xp, const Tensor& x, const Tensor& src_token, DType data, Device dev) {
  const char* op = "moe_permute";
  tensor(op, "x", x, data, dev, 2);
  tensor(op, "src_token", src_token, DType::i32, dev, 1);
  shape(op, "xp", xp, data, dev, {src_token.shape[0], x.shape[1]});
}

void moe_permute_backward(const Tensor& dx, const Tensor& dxp, const Tensor& src_token, DType data, Device dev) {
  const char* op = "moe_permute_backward";
  tensor(op, "dx", dx, data, dev, 2);
  tensor(op, "src_token", src_token, DType::i32, dev, 1);
  shape(op, "dxp", dxp, data, dev, {src_token.shape[0], dx.shape[1]});
}

void moe_unpermute(const Tensor& out, const Tensor& yp, const Tensor& dest_row, const Tensor& topk_weights, DType data,
                   Device dev) {
  unpermute_common("moe_unpermute", "out", out, yp, dest_row, topk_weights, data, dev);
}

void moe_unpermute_backward(const Tensor& dyp, const Tensor& dtopk_weights, const Tensor& dout, const Tensor& yp,
                            const Tensor& dest_row, const Tensor& topk_weights, DType data, Device dev) {
  const char* op = "moe_unpermute_backward";
  unpermute_common(op, "dout", dout, yp, dest_row, topk_weights, data, dev);
  same(op, "dyp", dyp, "yp", yp);
  same(op, "dtopk_weights", dtopk_weights, "topk_weights", topk_weights);
}

void moe_ids(const char* op, const Tensor& ids, const int32_t* host, int64_t E, bool unique) {
  const int64_t T = ids.shape[0], K = ids.shape[1];
  // last_row[e] = last row that named e: one pass over T * K ids, no per-row clearing.
  std::vector<int64_t> last_row(unique ? size_t(E) : 0, -1);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = host[t * K + k];
      GRPO_CHECK(e >= 0 && e < E, op << ": topk_ids " << ids.str() << " holds expert " << e << " at [" << t << ", " << k
                                     << "], outside [0, " << E << ")");
      if (unique) {
        GRPO_CHECK(last_row[e] != t, op << ": topk_ids " << ids.str() << " names expert " << e << " twice in row " << t
                                        << " (each token's experts must be distinct)");
        last_row[e] = t;
      }
    }
  }
}

void moe_dest_row(const char* op, const Tensor& dest_row, const int32_t* host) {
  const int64_t R = dest_row.shape[0];
  std::vector<uint8_t> seen(size_t(R), 0);
  for (int64_t i = 0; i < R; ++i) {
    const int32_t r = host[i];
    GRPO_CHECK(r >= 0 && r < R, op << ": dest_row " << dest_row.str() << " holds row " << r << " at " << i
                                   << ", outside [0, " << R << ")");
    GRPO_CHECK(!seen[r], op << ": dest_row " << dest_row.str() << " names row " << r
                            << " twice (it must be a permutation of [0, " << R << "), as moe_align writes it)");
    seen[r] = 1;
  }
}

void moe_src_token(const char* op, const Tensor& src_token, const int32_t* host, int64_t T) {
  const int64_t R = src_token.shape[0];
  for (int64_t i = 0; i < R; ++i)
    GRPO_CHECK(host[i] >= 0 && host[i] < T, op << ": src_token " << src_token.str() << " holds token " << host[i]
                                                << " at " << i << ", outside [0, " << T << ")");
}

}  // namespace grpo::checks
