// The whole model on the CUDA backend against the same model on the CPU backend, for the tiny
// test config of every architecture (tests/policy/model_test_util.h): identical weights
// (randomised on the CPU, the flat parameter buffer copied to the GPU), then
//   * forward: log-probs, entropy, aux loss and routing of a packed batch, two temperatures;
//   * backward: every gradient, grouped by parameter kind, plain and with recomputation,
//     and accumulation over two backward calls;
//   * routing replay: the GPU replays given experts as the CPU does;
//   * greedy generation: prefill (one sequence in two chunks) + 20 decode steps with a
//     KvCache on each device give the same tokens, logits and experts;
//   * init_weights and save/load across devices.
//
// Tolerances. Both backends compute in f32 (the CUDA backend's f32 GEMMs run without TF32);
// only summation order differs (cuBLAS vs OpenBLAS blocking, tree vs sequential reductions).
// On these sizes (C = 64, V = 272, a few dozen positions) the CPU's own error against the
// fp64 reference is <= 4e-6 nats (tests/policy/test_model_reference.cpp), so two f32
// backends differ by ~1e-5 at most: kTol = 1e-4 (relative L2, and absolute per log-prob)
// leaves 10x headroom and stays far below a real bug (a wrong term moves log-probs by
// > 1e-2). Routing and greedy tokens must be identical: the smallest router-probability gap
// (fp64 reference) and top-2 logit gap are printed, and sit orders of magnitude above 1e-5.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/buffer.h"
#include "core/dtype.h"
#include "learner/optimizer.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "tests/cuda/cuda_test_util.h"
#include "tests/policy/model_test_util.h"

namespace grpo::cudatest {
namespace {

const std::vector<std::string> kArchs = {"llama", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};
const std::vector<std::string> kMoeArchs = {"qwen2_moe", "qwen3_moe", "mixtral", "olmoe"};
constexpr double kTol = 1e-4;

// ---- memory on either backend (the test bodies take the Ops of each side) ------------------

struct Mem {
  Buffer buf;
  Tensor t;
  operator Tensor() const { return t; }
};

template <class T>
Mem to_device(Ops& ops, const std::vector<T>& host, const std::vector<int64_t>& shape) {
  Mem m;
  m.buf = Buffer(ops.allocator(), std::max<size_t>(host.size(), 1) * sizeof(T));
  m.t = Tensor(m.buf.data(), dtype_of<T>(), shape.data(), int(shape.size()), ops.device());
  ops.allocator().copy_from_host(m.buf.data(), host.data(), host.size() * sizeof(T));
  return m;
}
// An output filled with NaN (f32) or -7 (i32), so an unwritten element shows.
template <class T>
Mem poisoned_on(Ops& ops, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  T bad;
  if constexpr (std::is_same_v<T, float>)
    bad = std::nanf("");
  else
    bad = T(-7);
  return to_device(ops, std::vector<T>(size_t(n), bad), shape);
}
template <class T>
std::vector<T> to_host(Ops& ops, const Tensor& t) {
  std::vector<T> v(size_t(t.numel()));
  ops.allocator().copy_to_host(v.data(), t.data, v.size() * sizeof(T));
  return v;
}

struct DevBatch {
  Mem tokens, targets, positions, cu_seqlens;
  DevBatch(Ops& ops, const test::RefInput& in) {
    const int64_t T = int64_t(in.tokens.size()), S1 = int64_t(in.cu_seqlens.size());
    tokens = to_device(ops, in.tokens, {T});
    targets = to_device(ops, in.targets, {T});
    positions = to_device(ops, in.positions, {T});
    cu_seqlens = to_device(ops, in.cu_seqlens, {S1});
  }
  PackedBatch batch() const { return PackedBatch{tokens, targets, positions, cu_seqlens}; }
};

// The CPU model with random weights and the model on `dev` with a copy of them.
struct Models {
  std::unique_ptr<Model> cpu, dev;
};
Models make_models(Ops& dev, const ModelConfig& cfg, const ModelLimits& limits, uint64_t seed,
                   const ModelLimits* dev_limits = nullptr) {
  Models m;
  m.cpu = std::make_unique<Model>(cfg, cpu(), limits);
  test::randomize_weights(*m.cpu, seed);
  m.dev = std::make_unique<Model>(cfg, dev, dev_limits ? *dev_limits : limits);
  const Tensor src = m.cpu->params(), dst = m.dev->params();
  dev.allocator().copy_from_host(dst.data, src.data, src.nbytes());
  m.dev->sync_compute_params();  // a bf16 model's compute copy
  return m;
}

// ---- one forward (+ backward) ---------------------------------------------------------------

struct RunSpec {
  float temperature = 1.0f;
  bool with_grad = false;
  bool aux = false;
  float aux_grad = 0.0f;                     // aux_loss_grad of backward
  std::vector<float> dlogprob, dentropy;     // backward coefficients [T]
  const std::vector<int32_t>* replay = nullptr;  // [M, T, K] experts to replay
  bool zero_grad = true;
};

struct Outputs {
  std::vector<float> logprob, entropy, grads;
  std::vector<int32_t> routing;
  float aux = 0;
};

Outputs run_model(Model& model, const test::RefInput& in, const RunSpec& s) {
  Ops& ops = model.ops();
  const ModelConfig& cfg = model.config();
  const int64_t T = int64_t(in.tokens.size()), M = cfg.num_moe_layers(), K = cfg.num_experts_per_tok;
  const DevBatch b(ops, in);
  const Mem lp = poisoned_on<float>(ops, {T}), ent = poisoned_on<float>(ops, {T});
  Mem routing, replay;
  ForwardOutputs out;
  out.logprob = lp;
  out.entropy = ent;
  if (M > 0) {
    routing = poisoned_on<int32_t>(ops, {M, T, K});
    out.routing = routing;
  }
  ForwardOptions opt;
  opt.with_grad = s.with_grad;
  opt.entropy = true;
  opt.temperature = s.temperature;
  opt.aux_loss = s.aux;
  if (s.replay) {
    replay = to_device(ops, *s.replay, {M, T, K});
    opt.replay_routing = replay;
  }
  model.forward(b.batch(), opt, out);
  Outputs r;
  if (s.with_grad) {
    const Mem a = to_device(ops, s.dlogprob, {T}), e = to_device(ops, s.dentropy, {T});
    if (s.zero_grad) model.zero_grad();
    model.backward(a, e, s.aux_grad);
    r.grads = to_host<float>(ops, model.grads());
  }
  r.logprob = to_host<float>(ops, lp);
  r.entropy = to_host<float>(ops, ent);
  if (M > 0) r.routing = to_host<int32_t>(ops, routing);
  r.aux = out.aux_loss;
  return r;
}

double max_abs_diff(const std::vector<float>& x, const std::vector<float>& y) {
  if (x.size() != y.size()) return INFINITY;
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double d = std::fabs(double(x[i]) - double(y[i]));
    m = std::isfinite(d) ? std::max(m, d) : INFINITY;
  }
  return m;
}

// Log-probs and entropy: relative L2 and per-element absolute error both under kTol.
void expect_outputs_close(const std::string& what, const Outputs& dev, const Outputs& ref) {
  EXPECT_REL(what + " logprob", dev.logprob, ref.logprob, kTol);
  EXPECT_REL(what + " entropy", dev.entropy, ref.entropy, kTol);
  EXPECT_LT(max_abs_diff(dev.logprob, ref.logprob), kTol) << what << " logprob";
  EXPECT_LT(max_abs_diff(dev.entropy, ref.entropy), kTol) << what << " entropy";
  EXPECT_NEAR(dev.aux, ref.aux, 1e-5 * std::max(1.0, double(std::fabs(ref.aux)))) << what << " aux loss";
  EXPECT_EQ(dev.routing, ref.routing) << what << " routing";
}

// Every gradient, grouped by parameter kind (layers and experts pooled, so a kind's scale is
// never a lone near-zero tensor), relative L2 under kTol. Returns the worst kind's error.
double expect_grads_close(const std::string& what, const ParamTable& table, const std::vector<float>& dev,
                          const std::vector<float>& ref, double scale = 1.0) {
  std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> kinds;
  for (const ParamEntry& e : table.entries()) {
    auto& [d, r] = kinds[test::param_kind(e.name)];
    d.insert(d.end(), dev.begin() + e.offset, dev.begin() + e.offset + e.numel());
    for (int64_t i = 0; i < e.numel(); ++i) r.push_back(float(scale * ref[size_t(e.offset + i)]));
  }
  double worst = 0;
  for (const auto& [kind, dr] : kinds) {
    worst = std::max(worst, rel_err(dr.first, dr.second));
    EXPECT_REL(what + " grad " + kind, dr.first, dr.second, kTol);
  }
  return worst;
}

// The smallest gap between the K-th and (K+1)-th router probability (fp64 reference): routing
// can only be compared exactly when it is well above the f32 differences between backends.
::testing::AssertionResult routing_well_separated(const Model& cpu_model, const test::RefInput& in) {
  const ModelConfig& cfg = cpu_model.config();
  if (!cfg.is_moe()) return ::testing::AssertionSuccess();
  const test::RefOutput ref = test::ref_forward(cfg, test::ref_weights(cpu_model), in);
  if (ref.min_gap > 1e-5) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "router probabilities within " << ref.min_gap
                                       << " of a tie: pick another seed";
}

std::vector<float> random_coefs(int64_t n, uint64_t seed, float lo, float hi) { return randu(size_t(n), seed, lo, hi); }

// ---- tests -------------------------------------------------------------------------------------

class CudaModel : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModel, ForwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8, .training = false};
  Models m = make_models(gpu(), cfg, limits, 17);
  const test::RefInput in = test::make_batch({7, 12, 5, 1, 9}, cfg.vocab_size, 3);
  ASSERT_TRUE(routing_well_separated(*m.cpu, in));
  for (float temperature : {1.0f, 0.7f}) {
    RunSpec s;
    s.temperature = temperature;
    s.aux = cfg.is_moe();
    const Outputs ref = run_model(*m.cpu, in, s), dev = run_model(*m.dev, in, s);
    expect_outputs_close(GetParam() + " T=" + std::to_string(temperature), dev, ref);
    std::printf("[cuda model] %s T=%.1f: max |logprob gpu - cpu| = %.3g, max |entropy gpu - cpu| = %.3g\n",
                GetParam().c_str(), temperature, max_abs_diff(dev.logprob, ref.logprob),
                max_abs_diff(dev.entropy, ref.entropy));
  }
}

// L = sum_t a_t logprob_t + sum_t b_t entropy_t + c * aux_loss, with random a, b.
RunSpec backward_spec(const ModelConfig& cfg, int64_t T) {
  RunSpec s;
  s.with_grad = true;
  s.aux = cfg.is_moe();
  s.aux_grad = cfg.is_moe() ? 0.7f : 0.0f;
  s.dlogprob = random_coefs(T, 91, -1.0f, 1.0f);
  s.dentropy = random_coefs(T, 92, -0.5f, 0.5f);
  return s;
}

TEST_P(CudaModel, BackwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8};
  Models m = make_models(gpu(), cfg, limits, 23);
  const test::RefInput in = test::make_batch({6, 9, 4, 13}, cfg.vocab_size, 5);
  ASSERT_TRUE(routing_well_separated(*m.cpu, in));
  RunSpec s = backward_spec(cfg, int64_t(in.tokens.size()));
  const Outputs ref = run_model(*m.cpu, in, s), dev = run_model(*m.dev, in, s);
  expect_outputs_close(GetParam() + " with grad", dev, ref);
  const double worst = expect_grads_close(GetParam(), m.cpu->table(), dev.grads, ref.grads);
  // Parameter gradients accumulate: a second backward without zero_grad doubles them.
  s.zero_grad = false;
  const Outputs twice = run_model(*m.dev, in, s);
  expect_grads_close(GetParam() + " accumulated twice", m.cpu->table(), twice.grads, ref.grads, 2.0);
  std::printf("[cuda model] %s: worst per-kind relative gradient error gpu vs cpu = %.3g\n", GetParam().c_str(),
              worst);
}

// Recomputing each layer in backward (GPU) gives the CPU's stored-activation gradients.
TEST_P(CudaModel, RecomputeBackwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8};
  ModelLimits recompute = limits;
  recompute.recompute = true;
  Models m = make_models(gpu(), cfg, limits, 23, &recompute);
  const test::RefInput in = test::make_batch({6, 9, 4, 13}, cfg.vocab_size, 5);
  ASSERT_TRUE(routing_well_separated(*m.cpu, in));
  const RunSpec s = backward_spec(cfg, int64_t(in.tokens.size()));
  const Outputs ref = run_model(*m.cpu, in, s), dev = run_model(*m.dev, in, s);
  expect_outputs_close(GetParam() + " recompute", dev, ref);
  expect_grads_close(GetParam() + " recompute", m.cpu->table(), dev.grads, ref.grads);
}

// Weights initialised on the GPU are the CPU's (host Philox streams, then one copy).
TEST_P(CudaModel, InitWeightsMatchCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 16, .max_seqs = 2, .training = false};
  Model c(cfg, cpu(), limits), g(cfg, gpu(), limits);
  c.init_weights(1234);
  g.init_weights(1234);
  EXPECT_EQ(to_host<float>(gpu(), g.params()), test::read_tensor(c.params()));
}

class CudaModelRouting : public ::testing::TestWithParam<std::string> {};

// Replaying the CPU's recorded routing, and other experts (every id shifted by one, still
// distinct within a row): the GPU computes what the CPU computes with the same replay.
TEST_P(CudaModelRouting, ReplayMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8};
  Models m = make_models(gpu(), cfg, limits, 12);
  const test::RefInput in = test::make_batch({8, 11, 3}, cfg.vocab_size, 6);
  ASSERT_TRUE(routing_well_separated(*m.cpu, in));
  RunSpec s = backward_spec(cfg, int64_t(in.tokens.size()));
  const Outputs first = run_model(*m.cpu, in, s);
  std::vector<int32_t> replay = first.routing;
  for (int pass = 0; pass < 2; ++pass) {
    const std::string what = GetParam() + (pass == 0 ? " replay of own routing" : " replay of shifted routing");
    s.replay = &replay;
    const Outputs ref = run_model(*m.cpu, in, s), dev = run_model(*m.dev, in, s);
    EXPECT_EQ(dev.routing, replay) << what;
    expect_outputs_close(what, dev, ref);
    expect_grads_close(what, m.cpu->table(), dev.grads, ref.grads);
    if (pass == 1) {
      EXPECT_GT(max_abs_diff(ref.logprob, first.logprob), 1e-3) << "the shifted replay changed nothing";
    }
    for (int32_t& e : replay) e = int32_t((e + 1) % cfg.num_experts);
  }
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, CudaModelRouting, ::testing::ValuesIn(kMoeArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- greedy generation -------------------------------------------------------------------------

// One side of the generation test: a model, its cache and the sequences in it.
struct Decoder {
  Model& model;
  KvCache cache;
  std::vector<int64_t> ids;
  Decoder(Model& m, const KvCacheConfig& kc) : model(m), cache(m.ops(), m.config(), kc) {}

  struct Out {
    std::vector<float> logits;     // [B, V]
    std::vector<int32_t> routing;  // [M, sum n, K] (MoE)
  };
  // prefill (n given) or decode_step (n empty) of `tokens` for sequences `seqs` (indices into ids);
  // replay (MoE, [M, T, K]): route the new tokens to these experts.
  Out step(const std::vector<size_t>& seqs, const std::vector<int32_t>& tokens, const std::vector<int64_t>& n,
           const std::vector<int32_t>* replay = nullptr) {
    Ops& ops = model.ops();
    const ModelConfig& cfg = model.config();
    const int64_t B = int64_t(seqs.size()), T = int64_t(tokens.size()), M = cfg.num_moe_layers();
    std::vector<int64_t> which;
    for (size_t s : seqs) which.push_back(ids[s]);
    const Mem tok = to_device(ops, tokens, {T});
    const Mem logits = poisoned_on<float>(ops, {B, cfg.vocab_size});
    Mem routing, rep;
    if (M > 0) routing = poisoned_on<int32_t>(ops, {M, T, cfg.num_experts_per_tok});
    if (replay) rep = to_device(ops, *replay, {M, T, cfg.num_experts_per_tok});
    if (n.empty())
      model.decode_step(cache, which, tok, logits, routing, rep);
    else
      model.prefill(cache, which, tok, n, logits, routing, rep);
    Out o;
    o.logits = to_host<float>(ops, logits);
    if (M > 0) o.routing = to_host<int32_t>(ops, routing);
    return o;
  }
};

// argmax of each row (lowest id on ties) and the gap between its two largest logits.
std::vector<int32_t> greedy(const std::vector<float>& logits, int64_t V, double* min_gap) {
  std::vector<int32_t> tok;
  for (size_t r = 0; r < logits.size() / size_t(V); ++r) {
    const float* row = logits.data() + r * size_t(V);
    int64_t best = 0;
    for (int64_t v = 1; v < V; ++v)
      if (row[v] > row[best]) best = v;
    double second = -INFINITY;
    for (int64_t v = 0; v < V; ++v)
      if (v != best) second = std::max(second, double(row[v]));
    *min_gap = std::min(*min_gap, double(row[best]) - second);
    tok.push_back(int32_t(best));
  }
  return tok;
}

TEST_P(CudaModel, GreedyGenerationMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const int64_t V = cfg.vocab_size;
  const ModelLimits limits = test::decoding_limits(64, 8, 32, 4);
  Models m = make_models(gpu(), cfg, limits, 44);
  const std::vector<int> prompt = {5, 1, 9, 13};  // sequence 3 is prefilled in chunks of 6 and 7
  const test::RefInput in = test::make_batch(prompt, V, 77);
  auto token = [&](size_t s, int p) { return in.tokens[size_t(in.cu_seqlens[s]) + size_t(p)]; };
  KvCacheConfig kc;
  kc.num_blocks = 40;  // 4 sequences of up to 33 tokens in blocks of 4
  kc.block_size = 4;
  Decoder c(*m.cpu, kc), g(*m.dev, kc);
  for (Decoder* d : {&c, &g})
    for (size_t s = 0; s < prompt.size(); ++s) d->ids.push_back(d->cache.add_sequence());

  double min_gap = INFINITY;
  int calls = 0;
  auto compare = [&](const Decoder::Out& go, const Decoder::Out& co, const std::string& what) {
    EXPECT_REL(what + " logits", go.logits, co.logits, kTol);
    EXPECT_EQ(go.routing, co.routing) << what << " routing";
    ++calls;
  };
  {
    std::vector<int32_t> chunk;
    for (int p = 0; p < 6; ++p) chunk.push_back(token(3, p));
    compare(g.step({3}, chunk, {6}), c.step({3}, chunk, {6}), GetParam() + " prefill chunk 1");
  }
  std::vector<size_t> all;
  std::vector<int32_t> tokens;
  std::vector<int64_t> n;
  for (size_t s = 0; s < prompt.size(); ++s) {
    const int from = s == 3 ? 6 : 0;
    for (int p = from; p < prompt[s]; ++p) tokens.push_back(token(s, p));
    n.push_back(prompt[s] - from);
    all.push_back(s);
  }
  Decoder::Out go = g.step(all, tokens, n), co = c.step(all, tokens, n);
  compare(go, co, GetParam() + " prefill");
  const int steps = 20;
  std::vector<std::vector<int32_t>> generated(prompt.size());
  for (int i = 0; i < steps; ++i) {
    double gpu_gap = INFINITY;
    const std::vector<int32_t> gt = greedy(go.logits, V, &gpu_gap), ct = greedy(co.logits, V, &min_gap);
    ASSERT_EQ(gt, ct) << GetParam() << " step " << i << ": greedy tokens differ (smallest top-2 logit gap so far "
                      << min_gap << ")";
    for (size_t s = 0; s < prompt.size(); ++s) generated[s].push_back(ct[s]);
    go = g.step(all, gt, {});
    co = c.step(all, ct, {});
    compare(go, co, GetParam() + " decode step " + std::to_string(i));
  }
  for (size_t s = 0; s < prompt.size(); ++s) {
    EXPECT_EQ(g.cache.length(g.ids[s]), prompt[s] + steps);
    EXPECT_EQ(c.cache.length(c.ids[s]), prompt[s] + steps);
  }
  EXPECT_EQ(calls, 2 + steps);
  std::printf("[cuda model] %s: %d greedy steps x %zu sequences identical, smallest top-2 logit gap %.3g\n",
              GetParam().c_str(), steps, prompt.size(), min_gap);
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, CudaModel, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---- bf16 storage ---------------------------------------------------------------------------------
//
// The bf16 model (bf16 weight copy, activations and KV cache; f32 statistics, master weights
// and gradients) against the f32 CPU model with the same master weights. bf16 keeps 8
// significant bits (relative rounding 2^-9 = 2e-3 per value); the tiny models round weights
// and every activation (~20 roundings along a layer's path), so their log-probs move by about
// 1e-3 relative, gradients by about 1e-2. Tolerances (relative L2): outputs and logits 2e-2,
// gradients per kind 5e-2, an order of magnitude below what a wrong term costs (a dropped
// residual, a missing norm or a wrong expert moves them by 0.1 to 1). Decode logits 5e-2:
// logits sit around zero (log-probs around -log V do not), so the same absolute error is a
// larger relative one; measured on an H200 up to 0.02 for the dense models. Routing: bf16
// router inputs can flip near-tied experts, so the comparisons replay the GPU's or the CPU's
// routing on the other side (the experts then see the same tokens), and the agreement of the
// GPU's own routing with the CPU's is printed and must be at least 90% (0.96 to 1.0 measured).
constexpr double kTolBf16 = 2e-2, kTolBf16Grad = 5e-2, kTolBf16Logits = 5e-2;

ModelLimits bf16(ModelLimits l) {
  l.dtype = DType::bf16;
  return l;
}

double routing_agreement(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
  if (a.empty() || a.size() != b.size()) return a.size() == b.size() ? 1.0 : 0.0;
  size_t same = 0;
  for (size_t i = 0; i < a.size(); ++i) same += a[i] == b[i];
  return double(same) / double(a.size());
}

class CudaModelBf16 : public ::testing::TestWithParam<std::string> {};

// The compute copy is the master rounded to bf16 (round to nearest even).
TEST_P(CudaModelBf16, ComputeCopyIsTheRoundedMaster) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 16, .max_seqs = 2, .training = false};
  Models m = make_models(gpu(), cfg, limits, 5, nullptr);
  Model g(cfg, gpu(), bf16(limits));
  EXPECT_EQ(g.dtype(), DType::bf16);
  ASSERT_EQ(g.compute_params().dtype, DType::bf16);
  gpu().allocator().copy_from_host(g.params().data, m.cpu->params().data, m.cpu->params().nbytes());
  g.sync_compute_params();
  const std::vector<float> master = test::read_tensor(m.cpu->params());
  const std::vector<uint16_t> copy = to_host<uint16_t>(gpu(), g.compute_params());
  ASSERT_EQ(copy.size(), master.size());
  size_t wrong = 0;
  for (size_t i = 0; i < master.size(); ++i) wrong += copy[i] != f32_to_bf16(master[i]);
  EXPECT_EQ(wrong, 0u);
}

TEST_P(CudaModelBf16, ForwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8, .training = false};
  const ModelLimits dev_limits = bf16(limits);
  Models m = make_models(gpu(), cfg, limits, 17, &dev_limits);
  const test::RefInput in = test::make_batch({7, 12, 5, 1, 9}, cfg.vocab_size, 3);
  for (float temperature : {1.0f, 0.7f}) {
    RunSpec s;
    s.temperature = temperature;
    s.aux = cfg.is_moe();
    const Outputs ref = run_model(*m.cpu, in, s);
    const Outputs own = run_model(*m.dev, in, s);  // the GPU's own routing
    const double agree = routing_agreement(own.routing, ref.routing);
    EXPECT_GE(agree, 0.9) << GetParam() << ": bf16 routing agrees with the CPU's on " << agree;
    if (cfg.is_moe()) s.replay = &ref.routing;
    const Outputs dev = run_model(*m.dev, in, s);
    const std::string what = GetParam() + " bf16 T=" + std::to_string(temperature);
    EXPECT_REL(what + " logprob", dev.logprob, ref.logprob, kTolBf16);
    EXPECT_REL(what + " entropy", dev.entropy, ref.entropy, kTolBf16);
    EXPECT_NEAR(dev.aux, ref.aux, kTolBf16 * std::max(1.0, double(std::fabs(ref.aux)))) << what << " aux loss";
    std::printf("[cuda model bf16] %s T=%.1f: logprob rel err %.3g (max abs %.3g), entropy rel err %.3g, "
                "routing agreement %.4f\n",
                GetParam().c_str(), temperature, rel_err(dev.logprob, ref.logprob),
                max_abs_diff(dev.logprob, ref.logprob), rel_err(dev.entropy, ref.entropy), agree);
  }
}

// Backward (stored activations and recomputation): f32 gradients from bf16 activations.
TEST_P(CudaModelBf16, BackwardMatchesCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8};
  for (bool recompute : {false, true}) {
    ModelLimits dev_limits = bf16(limits);
    dev_limits.recompute = recompute;
    Models m = make_models(gpu(), cfg, limits, 23, &dev_limits);
    const test::RefInput in = test::make_batch({6, 9, 4, 13}, cfg.vocab_size, 5);
    RunSpec s = backward_spec(cfg, int64_t(in.tokens.size()));
    const Outputs first = run_model(*m.cpu, in, s);
    if (cfg.is_moe()) s.replay = &first.routing;
    const Outputs ref = run_model(*m.cpu, in, s), dev = run_model(*m.dev, in, s);
    const std::string what = GetParam() + (recompute ? " bf16 recompute" : " bf16");
    EXPECT_REL(what + " logprob", dev.logprob, ref.logprob, kTolBf16);
    std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> kinds;
    for (const ParamEntry& e : m.cpu->table().entries()) {
      auto& [d, r] = kinds[test::param_kind(e.name)];
      d.insert(d.end(), dev.grads.begin() + e.offset, dev.grads.begin() + e.offset + e.numel());
      r.insert(r.end(), ref.grads.begin() + e.offset, ref.grads.begin() + e.offset + e.numel());
    }
    double worst = 0;
    std::string worst_kind;
    for (const auto& [kind, dr] : kinds) {
      const double err = rel_err(dr.first, dr.second);
      if (err > worst) worst = err, worst_kind = kind;
      EXPECT_REL(what + " grad " + kind, dr.first, dr.second, kTolBf16Grad);
    }
    std::printf("[cuda model bf16] %s: logprob rel err %.3g, worst gradient kind %s rel err %.3g\n", what.c_str(),
                rel_err(dev.logprob, ref.logprob), worst_kind.c_str(), worst);
  }
}

// Greedy decoding with a bf16 KV cache, the CPU teacher-forced on the GPU's tokens and, for
// MoE models, replaying the GPU's experts: the logits of every prefill and decode step stay
// within the bf16 tolerance, and wherever the CPU's top-2 gap exceeds twice the step's largest
// logit difference, the tokens agree.
TEST_P(CudaModelBf16, GreedyDecodingTracksCpu) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const int64_t V = cfg.vocab_size;
  const ModelLimits limits = test::decoding_limits(64, 8, 32, 4);
  const ModelLimits dev_limits = bf16(limits);
  Models m = make_models(gpu(), cfg, limits, 44, &dev_limits);
  const std::vector<int> prompt = {5, 1, 9, 13};
  const test::RefInput in = test::make_batch(prompt, V, 77);
  KvCacheConfig kc;
  kc.num_blocks = 40;
  kc.block_size = 4;
  KvCacheConfig kc16 = kc;
  kc16.dtype = DType::bf16;
  Decoder c(*m.cpu, kc), g(*m.dev, kc16);
  for (Decoder* d : {&c, &g})
    for (size_t s = 0; s < prompt.size(); ++s) d->ids.push_back(d->cache.add_sequence());
  EXPECT_EQ(g.cache.k(0).dtype, DType::bf16);
  std::vector<size_t> all;
  std::vector<int64_t> n;
  for (size_t s = 0; s < prompt.size(); ++s) {
    all.push_back(s);
    n.push_back(prompt[s]);
  }
  const bool moe = cfg.is_moe();
  Decoder::Out go = g.step(all, in.tokens, n);
  Decoder::Out co = c.step(all, in.tokens, n, moe ? &go.routing : nullptr);
  EXPECT_REL(GetParam() + " bf16 prefill logits", go.logits, co.logits, kTolBf16Logits);
  int same = 0, total = 0, decided = 0;
  double worst = rel_err(go.logits, co.logits);
  for (int i = 0; i < 20; ++i) {
    double gap_unused = INFINITY;
    const std::vector<int32_t> gt = greedy(go.logits, V, &gap_unused);
    const double err = max_abs_diff(go.logits, co.logits);
    for (size_t b = 0; b < prompt.size(); ++b) {
      const std::vector<float> row(co.logits.begin() + int64_t(b) * V, co.logits.begin() + int64_t(b + 1) * V);
      double cpu_gap = INFINITY;
      const int32_t ct = greedy(row, V, &cpu_gap)[0];
      ++total;
      same += ct == gt[b];
      if (cpu_gap > 2 * err) {
        ++decided;
        EXPECT_EQ(gt[b], ct) << GetParam() << " step " << i << " sequence " << b << ": CPU gap " << cpu_gap
                             << ", logit error " << err;
      }
    }
    go = g.step(all, gt, {});
    co = c.step(all, gt, {}, moe ? &go.routing : nullptr);  // teacher-forced on the GPU's tokens and experts
    worst = std::max(worst, rel_err(go.logits, co.logits));
    EXPECT_REL(GetParam() + " bf16 decode step " + std::to_string(i) + " logits", go.logits, co.logits,
               kTolBf16Logits);
  }
  std::printf("[cuda model bf16] %s: 20 greedy steps x %zu sequences, %d/%d tokens as the CPU's (%d clear-cut), "
              "worst logits rel err %.3g\n",
              GetParam().c_str(), prompt.size(), same, total, decided, worst);
}

// Optimizer::step updates the f32 master and the bf16 copy in one pass: the copy stays the
// rounded master, and the master moves as the CPU's does from the same gradients.
TEST_P(CudaModelBf16, OptimizerKeepsTheCopyRounded) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config(GetParam());
  const ModelLimits limits{.max_tokens = 64, .max_seqs = 8};
  const ModelLimits dev_limits = bf16(limits);
  Models m = make_models(gpu(), cfg, limits, 31, &dev_limits);
  const test::RefInput in = test::make_batch({6, 9, 4}, cfg.vocab_size, 8);
  RunSpec s = backward_spec(cfg, int64_t(in.tokens.size()));
  OptimizerConfig oc;
  oc.schedule.lr = 1e-2;
  oc.weight_decay = 0.1;
  oc.max_grad_norm = 0.0;
  Optimizer og(*m.dev, oc), ocpu(*m.cpu, oc);
  const std::vector<float> before = test::read_tensor(m.cpu->params());
  for (int step = 0; step < 2; ++step) {
    const Outputs ref = run_model(*m.cpu, in, s);
    if (cfg.is_moe()) s.replay = &ref.routing;
    run_model(*m.dev, in, s);
    s.replay = nullptr;
    // The same gradients on both sides: the CPU's, so that only the update is compared.
    gpu().allocator().copy_from_host(m.dev->grads().data, ref.grads.data(), ref.grads.size() * sizeof(float));
    ocpu.step();
    og.step();
  }
  const std::vector<float> want = test::read_tensor(m.cpu->params()), got = to_host<float>(gpu(), m.dev->params());
  EXPECT_REL(GetParam() + " master after 2 AdamW steps", got, want, 1e-5);
  EXPECT_GT(max_abs_diff(want, before), 1e-3) << "the optimizer did not move the weights";
  const std::vector<uint16_t> copy = to_host<uint16_t>(gpu(), m.dev->compute_params());
  size_t wrong = 0;
  for (size_t i = 0; i < got.size(); ++i) wrong += copy[i] != f32_to_bf16(got[i]);
  EXPECT_EQ(wrong, 0u) << "entries of the bf16 copy that are not the rounded master";
}

INSTANTIATE_TEST_SUITE_P(ModelArchs, CudaModelBf16, ::testing::ValuesIn(kArchs),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// A bf16 model needs a bf16 KV cache (and the reverse): one clear error, nothing decoded.
TEST(CudaModelBf16Errors, CacheDtypeMustMatch) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config("qwen3");
  Model g(cfg, gpu(), bf16(test::decoding_limits(8, 1, 8, 1)));
  KvCacheConfig kc;
  kc.num_blocks = 4;
  kc.block_size = 4;
  KvCache cache(gpu(), cfg, kc);  // f32
  const int64_t id = cache.add_sequence();
  const Mem tok = to_device(gpu(), std::vector<int32_t>{1, 2}, {2});
  const Mem logits = poisoned_on<float>(gpu(), {1, cfg.vocab_size});
  const std::vector<int64_t> seqs = {id}, n = {2};
  EXPECT_GRPO_ERROR(g.prefill(cache, seqs, tok, n, logits), "the KV cache is f32 but the model computes in bf16");
  EXPECT_EQ(cache.length(id), 0);
}

// ---- checkpoints across devices ------------------------------------------------------------------

// A GPU model saves what it holds; a checkpoint written on the CPU loads onto the GPU.
TEST(CudaModelIo, SaveAndLoadAcrossDevices) {
  GRPO_REQUIRE_GPU();
  const ModelConfig cfg = test::test_config("qwen2_moe");
  const ModelLimits limits{.max_tokens = 16, .max_seqs = 2, .training = false};
  Models m = make_models(gpu(), cfg, limits, 3);
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("grpo_cuda_model_io_" + std::to_string(::getpid()))).string();
  m.dev->save(dir + "/from_gpu");
  m.cpu->save(dir + "/from_cpu");
  Model c(cfg, cpu(), limits), g(cfg, gpu(), limits);
  c.load(dir + "/from_gpu");
  g.load(dir + "/from_cpu");
  const std::vector<float> want = test::read_tensor(m.cpu->params());
  EXPECT_EQ(test::read_tensor(c.params()), want);
  EXPECT_EQ(to_host<float>(gpu(), g.params()), want);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace grpo::cudatest
