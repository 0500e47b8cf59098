// CUDA graphs (Ops::begin_capture on the CUDA backend):
//   * captured ops replay on new data written into the same buffers, equal to the CPU backend;
//   * checks of index data are deferred to the replay and throw the op's own message there;
//   * waiting for the device while capturing, or growing the scratch, is a clear error that
//     leaves the Ops usable; a graph whose scratch has moved since is not valid;
//   * the model's decode_step through graphs (padded batches, bucketed block tables) against
//     the op-by-op decode_step of the same weights on the GPU, f32 and bf16, every
//     architecture; padding rows write no cache slot.
// Tolerances: f32 1e-5 relative (only the padded batch size differs, which can change cuBLAS's
// blocking); bf16 1e-2 relative on logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

#include "policy/kv_cache.h"
#include "policy/model.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/policy/model_test_util.h"

namespace grpo::cudatest {
namespace {

// ---- the Ops ----------------------------------------------------------------------------

TEST(CudaGraphs, CapturedOpsReplayOnNewDataAsTheCpu) {
  GRPO_REQUIRE_GPU();
  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    const int64_t T = 7, C = 33, N = 17, V = 11;
    std::vector<float> table = randu(size_t(V * C), 1), w = randu(size_t(N * C), 2), nw = randu(size_t(C), 3, 0.5f, 1.5f);
    round_to(table, dt);
    round_to(w, dt);
    std::vector<int32_t> ids = randint(size_t(T), 4, 0, int32_t(V - 1));
    Dev d_table = upload(table, {V, C}, dt), d_w = upload(w, {N, C}, dt), d_nw = upload(nw, {C});
    Dev d_ids = upload_i32(ids, {T});
    Dev x = poisoned(dt, {T, C}), xn = poisoned(dt, {T, C}), rstd = poisoned(DType::f32, {T}),
        out = poisoned(DType::f32, {T, N});
    auto run = [&] {
      gpu().embedding(x, d_ids, d_table);
      gpu().rmsnorm(xn, rstd, x, d_nw, 1e-5f);
      gpu().matmul(out, xn, d_w, Tensor{}, false, true);
    };
    run();  // once op by op: the capture needs no new scratch
    gpu().begin_capture();
    run();
    std::unique_ptr<OpsGraph> g = gpu().end_capture();
    for (int round = 0; round < 3; ++round) {
      ids = randint(size_t(T), 10 + uint64_t(round), 0, int32_t(V - 1));
      table = randu(size_t(V * C), 20 + uint64_t(round));
      round_to(table, dt);
      Dev fresh = upload(table, {V, C}, dt);
      gpu().copy(d_table, fresh);
      gpu().allocator().copy_from_host(d_ids.t.data, ids.data(), ids.size() * sizeof(int32_t));
      g->replay();
      // The CPU on the same values (the intermediate rounded as the GPU stores it).
      std::vector<float> hx(static_cast<size_t>(T * C)), hxn(hx.size()), hr(static_cast<size_t>(T)),
          hout(static_cast<size_t>(T * N));
      cpu().embedding(host_view(hx, {T, C}), host_view(ids, {T}), host_view(table, {V, C}));
      cpu().rmsnorm(host_view(hxn, {T, C}), host_view(hr, {T}), host_view(hx, {T, C}), host_view(nw, {C}), 1e-5f);
      round_to(hxn, dt);
      cpu().matmul(host_view(hout, {T, N}), host_view(hxn, {T, C}), host_view(w, {N, C}), Tensor{}, false, true);
      EXPECT_REL("replayed out", download(out), hout, tol(dt));
    }
  }
}

TEST(CudaGraphs, DataChecksThrowTheOpsMessageAtTheReplay) {
  GRPO_REQUIRE_GPU();
  const int64_t V = 4, C = 8, T = 2;
  Dev table = upload(randu(size_t(V * C), 1), {V, C}), ids = upload_i32({1, 3}, {T}), out = poisoned(DType::f32, {T, C});
  gpu().embedding(out, ids, table);
  gpu().begin_capture();
  gpu().embedding(out, ids, table);
  auto g = gpu().end_capture();
  g->replay();
  const std::vector<int32_t> bad = {1, 9};
  gpu().allocator().copy_from_host(ids.t.data, bad.data(), bad.size() * sizeof(int32_t));
  EXPECT_GRPO_ERROR(g->replay(), "embedding", "ids[1] = 9", "outside [0, 4)");
  const std::vector<int32_t> good = {0, 2};
  gpu().allocator().copy_from_host(ids.t.data, good.data(), good.size() * sizeof(int32_t));
  g->replay();  // the flags start clear at every replay
  const std::vector<float> got = download(out), t = download(table);
  for (int64_t c = 0; c < C; ++c) EXPECT_EQ(got[size_t(C + c)], t[size_t(2 * C + c)]);
}

TEST(CudaGraphs, WaitingWhileCapturingIsAnErrorAndAbortRecovers) {
  GRPO_REQUIRE_GPU();
  Dev x = upload(randu(16, 1), {16});
  std::vector<float> h(16);
  gpu().begin_capture();
  EXPECT_TRUE(gpu().capturing());
  EXPECT_GRPO_ERROR(gpu().allocator().copy_to_host(h.data(), x.t.data, 16 * sizeof(float)), "while capturing a graph");
  EXPECT_GRPO_ERROR(gpu().begin_capture(), "begin_capture while a capture is open");
  gpu().abort_capture();
  EXPECT_FALSE(gpu().capturing());
  gpu().scale(x, 2.0f);  // the stream works again
  const std::vector<float> before = download(x);
  gpu().scale(x, 0.5f);
  const std::vector<float> after = download(x);
  for (size_t i = 0; i < 16; ++i) EXPECT_FLOAT_EQ(after[i], before[i] * 0.5f);
  EXPECT_GRPO_ERROR(gpu().end_capture(), "end_capture without begin_capture");
}

TEST(CudaGraphs, ScratchMustExistBeforeAndItsGrowthInvalidatesTheGraph) {
  GRPO_REQUIRE_GPU();
  // sum_squares keeps per-block partial sums in the scratch space.
  Dev x = upload(randu(1000, 1), {1000}), acc = upload(std::vector<float>{0.0f}, {1});
  gpu().sum_squares(acc, x);
  gpu().begin_capture();
  gpu().sum_squares(acc, x);
  auto g = gpu().end_capture();
  EXPECT_TRUE(g->valid());
  g->replay();
  const size_t more = cuda_scratch_bytes(gpu()) + (size_t(1) << 20);
  gpu().begin_capture();
  EXPECT_GRPO_ERROR(cuda_reserve_scratch(gpu(), more), "scratch while capturing a graph", "run the ops once before");
  gpu().abort_capture();
  EXPECT_TRUE(g->valid());
  cuda_reserve_scratch(gpu(), more);  // op by op: it moves
  EXPECT_GE(cuda_scratch_bytes(gpu()), more);
  EXPECT_FALSE(g->valid());
  EXPECT_GRPO_ERROR(g->replay(), "capture it again");
  cuda_reserve_scratch(gpu(), 16);  // already there: nothing moves
  gpu().begin_capture();
  gpu().sum_squares(acc, x);
  auto again = gpu().end_capture();
  EXPECT_TRUE(again->valid());
  again->replay();
}

// ---- the model's decode step --------------------------------------------------------------

struct Side {
  std::unique_ptr<Model> model;
  std::unique_ptr<KvCache> cache;
  std::vector<int64_t> ids;
};

Side make_side(const ModelConfig& cfg, const Model& weights, DType dt, DecodeGraphs mode, int64_t S) {
  ModelLimits limits = test::decoding_limits(8, 1, 64, 6);  // as tests/policy/test_model_graphs.cpp
  limits.dtype = dt;
  limits.decode_graphs = mode;
  Side s;
  s.model = std::make_unique<Model>(cfg, gpu(), limits);
  const Tensor src = weights.params(), dst = s.model->params();
  gpu().allocator().copy_from_host(dst.data, src.data, src.nbytes());
  s.model->sync_compute_params();
  KvCacheConfig kc;
  kc.num_blocks = 64;
  kc.block_size = 4;
  kc.dtype = dt;
  s.cache = std::make_unique<KvCache>(gpu(), cfg, kc);
  for (int64_t i = 0; i < S; ++i) s.ids.push_back(s.cache->add_sequence());
  return s;
}

class CudaModelGraphs : public ::testing::TestWithParam<std::string> {};

// As tests/policy/test_model_graphs.cpp on the GPU: five sequences decoded teacher-forced while
// they finish (batches 5..1, padded to 8, 4, 2, 1; block tables 2 to 8 blocks wide).
TEST_P(CudaModelGraphs, DecodingMatchesOpByOp) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  Model weights(cfg, cpu(), ModelLimits{.max_tokens = 8, .max_seqs = 1, .training = false});
  test::randomize_weights(weights, 31);
  const std::vector<int> prompt = {3, 5, 2, 7, 4}, lengths = {9, 14, 20, 26, 31};
  const int64_t S = int64_t(prompt.size()), V = cfg.vocab_size, M = cfg.num_moe_layers();
  const int64_t K = cfg.num_experts_per_tok;
  const test::RefInput in = test::make_batch(lengths, V, 91);
  auto token = [&](int64_t s, int64_t pos) { return in.tokens[size_t(in.cu_seqlens[size_t(s)] + pos)]; };

  for (DType dt : {DType::f32, DType::bf16}) {
    SCOPED_TRACE(dtype_name(dt));
    Side eager = make_side(cfg, weights, dt, DecodeGraphs::off, S);
    Side graphed = make_side(cfg, weights, dt, DecodeGraphs::automatic, S);  // automatic: on for CUDA
    {
      std::vector<int32_t> tok;
      std::vector<int64_t> n;
      for (int64_t s = 0; s < S; ++s) {
        for (int p = 0; p < prompt[size_t(s)]; ++p) tok.push_back(token(s, p));
        n.push_back(prompt[size_t(s)]);
      }
      Dev t = upload_i32(tok, {int64_t(tok.size())});
      Dev logits = poisoned(DType::f32, {S, V});
      eager.model->prefill(*eager.cache, eager.ids, t, n, logits);
      graphed.model->prefill(*graphed.cache, graphed.ids, t, n, logits);
    }
    std::vector<int64_t> pos(prompt.begin(), prompt.end());
    double worst = 0;
    int64_t steps = 0, same_experts = 0, experts = 0;
    for (;;) {
      std::vector<int64_t> which, eager_ids, graph_ids;
      std::vector<int32_t> tok;
      for (int64_t s = 0; s < S; ++s)
        if (pos[size_t(s)] < lengths[size_t(s)]) {
          which.push_back(s);
          tok.push_back(token(s, pos[size_t(s)]));
          eager_ids.push_back(eager.ids[size_t(s)]);
          graph_ids.push_back(graphed.ids[size_t(s)]);
        }
      if (which.empty()) break;
      const int64_t B = int64_t(which.size());
      Dev t = upload_i32(tok, {B});
      Dev want = poisoned(DType::f32, {B, V}), got = poisoned(DType::f32, {B, V});
      Dev want_routing, got_routing;
      if (M > 0) {
        want_routing = poisoned(DType::i32, {M, B, K});
        got_routing = poisoned(DType::i32, {M, B, K});
      }
      eager.model->decode_step(*eager.cache, eager_ids, t, want, want_routing.t);
      graphed.model->decode_step(*graphed.cache, graph_ids, t, got, got_routing.t);
      const double rel = rel_err(download(got), download(want));
      worst = std::max(worst, rel);
      EXPECT_LT(rel, tol(dt)) << GetParam() << " step " << steps;
      if (M > 0) {
        const std::vector<int32_t> a = download_i32(got_routing), b = download_i32(want_routing);
        for (size_t i = 0; i < a.size(); ++i) same_experts += a[i] == b[i];
        experts += int64_t(a.size());
      }
      for (int64_t s : which) ++pos[size_t(s)];
      ++steps;
    }
    const DecodeGraphStats g = graphed.model->decode_graph_stats();
    std::printf("[cuda graphs] %s %s: %lld steps (%lld replays, %lld graphs), worst rel. L2 %.3g, experts %lld/%lld\n",
                GetParam().c_str(), dtype_name(dt), static_cast<long long>(steps), static_cast<long long>(g.replays),
                static_cast<long long>(g.graphs), worst, static_cast<long long>(same_experts),
                static_cast<long long>(experts));
    EXPECT_EQ(g.failed, 0);
    EXPECT_EQ(g.replays + g.eager_steps, steps);
    EXPECT_GT(g.replays, steps / 2);
    EXPECT_EQ(eager.model->decode_graph_stats().replays, 0);
    if (experts > 0) {
      if (dt == DType::f32) EXPECT_EQ(same_experts, experts);
      else EXPECT_GE(double(same_experts), 0.95 * double(experts));
    }
    for (int64_t s = 0; s < S; ++s) EXPECT_EQ(graphed.cache->length(graphed.ids[size_t(s)]), lengths[size_t(s)]);
    // Padding rows wrote no cache slot: blocks no sequence holds are still zero.
    std::set<int32_t> held;
    for (int64_t id : graphed.ids)
      for (int32_t b : graphed.cache->blocks(id)) held.insert(b);
    for (int64_t l = 0; l < cfg.num_hidden_layers; ++l) {
      const std::vector<float> k = download(graphed.cache->k(l));
      const int64_t per_block = int64_t(k.size()) / graphed.cache->num_blocks();
      for (int64_t b = 0; b < graphed.cache->num_blocks(); ++b) {
        if (held.count(int32_t(b))) continue;
        for (int64_t i = 0; i < per_block; ++i)
          ASSERT_EQ(k[size_t(b * per_block + i)], 0.0f) << "layer " << l << " block " << b << " was written";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, CudaModelGraphs,
                         ::testing::Values("llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace grpo::cudatest
