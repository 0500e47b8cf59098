// `grpo bench model`: training (forward + backward) tokens/s on a packed batch, prefill and
// decode tokens/s at several batch sizes, for a preset of one architecture; the model FLOPs
// per token turn each into GFLOP/s, reported next to OpenBLAS sgemm measured in the same run.
//
// Model FLOPs per token (forward), the usual 2 * matmul parameters + attention count:
//   F_fwd(c) = 2 * P_mm + 4 * L * Hq * D * c
// P_mm: the matmul weights one token uses (q/k/v/o, dense MLP or K of E experts + router +
// shared expert, the LM head; embeddings lookups, norms and biases excluded), c: the number of
// positions a token attends to on average ((n + 1) / 2 for a causal sequence of n tokens;
// the context length when decoding). Training counts 3 * F_fwd (backward = 2x forward).
// Prefill computes logits for each sequence's last token only, so its LM-head share
// 2 * P_lm (P_lm = V * C) is counted once per prompt of n tokens: 2 * P_lm / n per token.
// Timing as in `grpo bench ops`: warm-up, repeat for min_seconds, report the fastest run.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "bench/bench.h"
#include "core/buffer.h"
#include "core/error.h"
#include "kernels/ops.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/params.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

// Seconds of the fastest call of fn, after one warm-up call, calling it until min_seconds
// have passed (at least `min_reps` timed calls).
double time_best(const std::function<void()>& fn, double min_seconds, int min_reps = 2) {
  fn();
  double best = 1e300, total = 0;
  for (int reps = 0; total < min_seconds || reps < min_reps; ++reps) {
    const auto t0 = Clock::now();
    fn();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    best = std::min(best, s);
    total += s;
  }
  return best;
}

// x rounded to `decimals` decimal places (printed without binary noise).
double round_dec(double x, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(x * f) / f;
}

// Matmul weights one token touches (see the file comment).
double matmul_params_per_token(const ModelConfig& cfg) {
  const ParamTable table(cfg);
  double p = 0;
  for (const ParamEntry& e : table.entries()) {
    switch (e.kind) {
      case ParamKind::linear:
      case ParamKind::router:
      case ParamKind::lm_head: p += double(e.numel()); break;
      case ParamKind::expert: p += double(e.numel()) * double(cfg.num_experts_per_tok) / double(cfg.num_experts); break;
      default: break;
    }
  }
  if (cfg.tie_word_embeddings) p += double(cfg.vocab_size) * double(cfg.hidden_size);  // LM head = embeddings
  return p;
}

// lm_head_fraction: the share of tokens whose logits are computed (1, or 1 / n in prefill).
double forward_flops_per_token(const ModelConfig& cfg, double context, double lm_head_fraction = 1.0) {
  const double lm = double(cfg.vocab_size) * double(cfg.hidden_size);
  return 2.0 * (matmul_params_per_token(cfg) - lm + lm * lm_head_fraction) +
         4.0 * double(cfg.num_hidden_layers) * double(cfg.num_attention_heads) * double(cfg.head_dim) * context;
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> d(0, int32_t(std::min<int64_t>(vocab, 259) - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (int32_t& x : v) x = d(rng);
  return v;
}

// OpenBLAS sgemm GFLOP/s at [m, k] x [k, n] (the model's widest linear layer shape).
double sgemm_gflops(int64_t m, int64_t n, int64_t k, double min_seconds) {
  std::vector<float> a(size_t(m * k), 0.5f), b(size_t(k * n), 0.25f), c(size_t(m * n));
  const double s = time_best(
      [&] {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(n), int(k), 1.0f, a.data(), int(k), b.data(),
                    int(k), 0.0f, c.data(), int(n));
      },
      min_seconds, 3);
  return 2.0 * double(m) * double(n) * double(k) / s * 1e-9;
}

Json rate(double tokens, double seconds, double flops_per_token, double sgemm) {
  const double gf = tokens * flops_per_token / seconds * 1e-9;
  Json j;
  j["tokens_per_s"] = round_dec(tokens / seconds, 1);
  j["seconds"] = round_dec(seconds, 7);
  j["flops_per_token"] = round_dec(flops_per_token, 0);
  j["gflops"] = round_dec(gf, 2);
  j["ratio_to_sgemm"] = round_dec(gf / sgemm, 3);
  return j;
}

}  // namespace

std::string run_bench_model(const BenchModelOptions& o) {
  GRPO_CHECK(o.device == "cpu", "--device " << o.device << ": only the cpu backend has model ops in this build");
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const ModelConfig cfg = model_preset(o.arch, o.preset);
  const double min_s = o.quick ? 0.05 : o.min_seconds;
  const int64_t seq_len = o.quick ? 64 : o.seq_len;
  const int64_t train_tokens = o.quick ? 256 : o.train_tokens;
  const int64_t prompt = o.quick ? 16 : o.prompt_len;
  const int64_t steps = o.quick ? 4 : o.decode_steps;
  const std::vector<int64_t> batches = o.quick ? std::vector<int64_t>{1, 8} : o.batches;
  GRPO_CHECK(seq_len >= 2 && train_tokens >= seq_len && prompt >= 1 && steps >= 1 && !batches.empty(),
             "bench model: bad sizes (seq_len " << seq_len << ", train_tokens " << train_tokens << ", prompt "
                                                << prompt << ", decode_steps " << steps << ")");
  const int64_t max_batch = *std::max_element(batches.begin(), batches.end());
  const int64_t S = train_tokens / seq_len, T = S * seq_len;

  auto ops = make_cpu_ops();
  ModelLimits limits;
  limits.max_tokens = T;
  limits.max_seqs = S;
  limits.training = true;
  limits.max_decode_tokens = max_batch * prompt;
  limits.max_decode_seqs = max_batch;
  Model model(cfg, *ops, limits);
  model.init_weights(1);

  const ModelParamCounts counts = count_model_params(cfg);
  const double sgemm = sgemm_gflops(std::min<int64_t>(T, 2048), std::max(cfg.intermediate_size, 4 * cfg.hidden_size),
                                    cfg.hidden_size, min_s);
  Json doc;
  doc["bench"] = "model";
  doc["arch"] = o.arch;
  doc["preset"] = o.preset;
  doc["device"] = o.device;
  doc["threads"] = omp_get_max_threads();
  doc["params"] = {{"total", counts.total}, {"active_per_token", counts.active_per_token}};
  doc["flops_formula"] =
      "forward per token = 2 * matmul_params_per_token + 4 * layers * heads * head_dim * context "
      "(context: (n + 1) / 2 for causal sequences of n tokens, the cached length when decoding); "
      "training = 3x forward; prefill counts the LM head (2 * vocab * hidden) once per prompt";
  doc["matmul_params_per_token"] = int64_t(matmul_params_per_token(cfg));
  doc["sgemm_gflops"] = round_dec(sgemm, 2);

  // ---- training: forward + backward over a packed batch of S sequences
  {
    const std::vector<int32_t> tok = random_tokens(T + 1, cfg.vocab_size, 7);
    std::vector<int32_t> tokens(tok.begin(), tok.end() - 1), targets(tok.begin() + 1, tok.end());
    std::vector<int32_t> pos(static_cast<size_t>(T)), cu(static_cast<size_t>(S + 1));
    for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t % seq_len);
    for (int64_t s = 0; s <= S; ++s) cu[size_t(s)] = int32_t(s * seq_len);
    std::vector<float> lp(static_cast<size_t>(T)), dlp(static_cast<size_t>(T), -1.0f / float(T));
    PackedBatch b;
    b.tokens = Tensor(tokens.data(), DType::i32, {T});
    b.targets = Tensor(targets.data(), DType::i32, {T});
    b.positions = Tensor(pos.data(), DType::i32, {T});
    b.cu_seqlens = Tensor(cu.data(), DType::i32, {S + 1});
    const Tensor tlp(lp.data(), DType::f32, {T}), tdlp(dlp.data(), DType::f32, {T});
    ForwardOptions opt;
    opt.with_grad = true;
    const double s = time_best(
        [&] {
          ForwardOutputs out;
          out.logprob = tlp;
          model.forward(b, opt, out);
          model.backward(tdlp, Tensor{}, 0.0f);
        },
        min_s);
    Json j = rate(double(T), s, 3.0 * forward_flops_per_token(cfg, double(seq_len + 1) / 2.0), sgemm);
    j["batch_tokens"] = T;
    j["sequence_length"] = seq_len;
    doc["train"] = j;
  }

  // ---- prefill and decode at each batch size
  KvCacheConfig kc;
  kc.block_size = 16;
  kc.num_blocks = max_batch * ((prompt + steps + kc.block_size - 1) / kc.block_size + 1);
  KvCache cache(*ops, cfg, kc);
  const std::vector<int32_t> prompts = random_tokens(max_batch * prompt, cfg.vocab_size, 11);
  std::vector<float> logits(static_cast<size_t>(max_batch * cfg.vocab_size));
  Json prefill = Json::array(), decode = Json::array();
  for (int64_t B : batches) {
    std::vector<int64_t> ids(static_cast<size_t>(B)), n(static_cast<size_t>(B), prompt);
    const Tensor tprompt(const_cast<int32_t*>(prompts.data()), DType::i32, {B * prompt});
    const Tensor tlogits(logits.data(), DType::f32, {B, cfg.vocab_size});
    const double sp = time_best(
        [&] {
          for (int64_t& id : ids) id = cache.add_sequence();
          model.prefill(cache, ids, tprompt, n, tlogits);
          for (int64_t id : ids) cache.remove_sequence(id);
        },
        min_s);
    const double prefill_flops = forward_flops_per_token(cfg, double(prompt + 1) / 2.0, 1.0 / double(prompt));
    Json jp = rate(double(B * prompt), sp, prefill_flops, sgemm);
    jp["batch"] = B;
    jp["prompt_tokens"] = prompt;
    prefill.push_back(jp);

    for (int64_t& id : ids) id = cache.add_sequence();
    model.prefill(cache, ids, tprompt, n, tlogits);
    std::vector<int32_t> step_tokens(static_cast<size_t>(B), 1);
    const Tensor tstep(step_tokens.data(), DType::i32, {B});
    const double sd = time_best(
        [&] {
          for (int64_t i = 0; i < steps; ++i) model.decode_step(cache, ids, tstep, tlogits);
          for (int64_t id : ids) cache.truncate(id, prompt);
        },
        min_s);
    for (int64_t id : ids) cache.remove_sequence(id);
    const double decode_flops = forward_flops_per_token(cfg, double(prompt) + double(steps + 1) / 2.0);
    Json jd = rate(double(B * steps), sd, decode_flops, sgemm);
    jd["batch"] = B;
    jd["context"] = Json::array({prompt + 1, prompt + steps});
    decode.push_back(jd);
  }
  doc["prefill"] = prefill;
  doc["decode"] = decode;
  return doc.dump(2);
}

}  // namespace grpo
