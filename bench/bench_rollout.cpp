// `grpo bench rollout`: the generation engine (rollout/engine.h) on random prompts, as GRPO
// drives it: R prompts of P tokens, each sampled G times for M new tokens (no stop tokens, so
// every sample runs to M). Reported, all measured in this run:
//   * groups:  one prompt at each G, with prefix sharing and, as the peer, the same run with
//              prefix_sharing = false (the prompt prefilled G times): generated tokens/s, time
//              to first token, prefill tokens, peak KV blocks, blocks saved, and the ratios;
//   * batches: tokens/s as R grows (1, 2, 4, ...) at each G, up to the largest R whose
//              R * G sequences fit in max_batch and, with sharing, in the KV budget:
//              blocks per group = floor(P / bs) shared + G * (ceil((P + M) / bs) - floor(P / bs)).
// Each point is one run (a fresh engine over the same model) timed from the first step to
// the last group delivered, after one warm-up run; time to first token is the wall time until
// the engine's first sampled token. Weights are random unless --model is given (speed does
// not depend on them beyond MoE routing, which random weights spread over the experts).
#include "bench/bench_rollout.h"
#include "bench/bench_json.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "core/error.h"
#include "kernels/backend.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/params.h"
#include "rollout/engine.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

double round_dec(double x, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(x * f) / f;
}

struct RunResult {
  double seconds = 0, ttft = 0;
  int64_t peak_blocks = 0;
  rollout::EngineStats stats;  // of the run's own engine: cumulative = this run
};

// R prompts of P random tokens, each sampled G times for M tokens, on a fresh engine.
RunResult run_engine(Model& model, const rollout::EngineConfig& ec, int64_t R, int64_t G, int64_t P, int64_t M,
                     uint64_t seed) {
  rollout::Engine engine(model, ec);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, int32_t(model.config().vocab_size - 1));
  int64_t delivered = 0;
  for (int64_t r = 0; r < R; ++r) {
    rollout::Request req;
    req.id = uint64_t(r);
    req.prompt.resize(size_t(P));
    for (int32_t& t : req.prompt) t = token(rng);
    req.sampling.n = G;
    req.sampling.max_new_tokens = M;
    req.sampling.seed = seed + uint64_t(r);
    engine.submit(std::move(req), [&](rollout::GroupResult) { ++delivered; });
  }
  RunResult out;
  const auto t0 = Clock::now();
  bool first = false;
  while (engine.step()) {
    const rollout::EngineStats s = engine.stats();
    out.peak_blocks = std::max(out.peak_blocks, s.kv_blocks_used);
    if (!first && s.generated_tokens > 0) {
      first = true;
      out.ttft = std::chrono::duration<double>(Clock::now() - t0).count();
    }
  }
  out.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  GRPO_CHECK(delivered == R, "bench rollout: the engine went idle with " << R - delivered << " of " << R
                                                                         << " groups undelivered");
  out.stats = engine.stats();
  return out;
}

Json run_json(const RunResult& r) {
  Json j;
  j["tokens_per_s"] = round_dec(double(r.stats.generated_tokens) / r.seconds, 1);
  j["seconds"] = round_dec(r.seconds, 5);
  j["ttft_s"] = round_dec(r.ttft, 5);
  j["generated_tokens"] = r.stats.generated_tokens;
  j["prefill_tokens"] = r.stats.prefill_tokens;
  j["peak_kv_blocks_used"] = r.peak_blocks;
  j["kv_blocks_saved_by_sharing"] = r.stats.kv_blocks_saved_by_sharing;
  j["preemptions"] = r.stats.preemptions;
  j["steps"] = r.stats.steps;
  j["decode_graph_replays"] = r.stats.decode_graph_replays;
  j["decode_steps_op_by_op"] = r.stats.decode_steps_op_by_op;
  return j;
}

double ratio(double a, double b) { return b > 0 ? round_dec(a / b, 4) : 0.0; }

Json config_json(const ModelConfig& cfg) {
  const ModelParamCounts n = count_model_params(cfg);
  Json j = model_config_json(cfg);
  j["params"] = {{"total", n.total}, {"active_per_token", n.active_per_token}};
  return j;
}

}  // namespace

std::string run_bench_rollout(const BenchRolloutOptions& o) {
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  GRPO_CHECK(int(!o.model.empty()) + int(!o.arch.empty()) + int(!o.config.empty()) == 1,
             "bench rollout: give one of --model DIR, --arch (with --preset) or --config");
  const int64_t P = o.prompt_tokens > 0 ? o.prompt_tokens : o.quick ? 16 : 64;
  const int64_t M = o.max_tokens > 0 ? o.max_tokens : o.quick ? 8 : 16;
  GRPO_CHECK(!o.groups.empty() && *std::min_element(o.groups.begin(), o.groups.end()) >= 1,
             "bench rollout: --groups must be group sizes >= 1");
  const int64_t max_g = *std::max_element(o.groups.begin(), o.groups.end());
  GRPO_CHECK(o.max_batch >= max_g, "bench rollout: --max-batch " << o.max_batch << " is below the largest group size "
                                                                 << max_g << " (a group decodes together)");

  const DeviceChoice dc = resolve_device(o.device);
  std::unique_ptr<Ops> ops = make_ops(dc);
  rollout::EngineConfig ec;
  ec.max_batch = o.max_batch;
  if (o.kv_memory > 0) ec.kv_memory_bytes = o.kv_memory;
  ModelLimits limits = rollout::engine_model_limits(ec);
  limits.dtype = resolve_dtype(o.dtype, *ops);
  std::unique_ptr<Model> model;
  std::string source;
  if (!o.model.empty()) {
    model = load_model(o.model, *ops, limits);
    source = o.model;
  } else {
    ModelConfig cfg;
    if (!o.config.empty()) {
      cfg = load_model_config(o.config);
      source = "config:" + o.config;
    } else {
      GRPO_CHECK(o.preset == "tiny" || o.preset == "small",
                 "bench rollout: preset \"" << o.preset << "\" is unknown (presets: tiny, small)");
      cfg = model_preset(o.arch, o.preset);
      source = "preset:" + o.preset;
    }
    model = std::make_unique<Model>(cfg, *ops, limits);
    model->init_weights(o.seed);
  }
  const ModelConfig& cfg = model->config();
  GRPO_CHECK(P + M <= cfg.max_position_embeddings, "bench rollout: --prompt-tokens " << P << " + --max-tokens " << M
                                                                                     << " exceed the model's context "
                                                                                     << cfg.max_position_embeddings);

  Json doc;
  doc["bench"] = "rollout";
  doc["model"] = source;
  doc["config"] = config_json(cfg);
  doc["device"] = describe_device(dc);
  doc["dtype"] = dtype_name(limits.dtype);
  doc["threads"] = omp_get_max_threads();
  doc["prompt_tokens"] = P;
  doc["max_new_tokens"] = M;

  // The KV budget in blocks, and the largest number of groups of G it admits (file comment).
  const int64_t bs = ec.block_size;
  const int64_t total_blocks = rollout::Engine(*model, ec).stats().kv_blocks_total;
  const int64_t shared = P / bs, own = (P + M + bs - 1) / bs - shared;
  auto groups_admitted = [&](int64_t G) {
    return std::min(o.max_batch / G, total_blocks / (shared + G * own));
  };
  Json engine;
  engine["max_batch"] = ec.max_batch;
  engine["kv_memory_bytes"] = ec.kv_memory_bytes;
  engine["kv_blocks_total"] = total_blocks;
  engine["block_size"] = bs;
  engine["max_prefill_tokens"] = ec.max_prefill_tokens;
  doc["engine"] = engine;
  doc["timing"] = "one run per point after a warm-up, wall clock from the first engine step to the last group delivered";

  run_engine(*model, ec, 1, 1, P, std::min<int64_t>(M, 4), o.seed + 1000);  // warm-up

  // ---- one prompt at each G: prefix sharing against prefilling the prompt G times
  Json groups = Json::array();
  std::vector<RunResult> single;  // the sharing run of each G, reused as the batch sweep's R = 1
  for (int64_t G : o.groups) {
    rollout::EngineConfig no_share = ec;
    no_share.prefix_sharing = false;
    const RunResult a = run_engine(*model, ec, 1, G, P, M, o.seed);
    const RunResult b = run_engine(*model, no_share, 1, G, P, M, o.seed);
    single.push_back(a);
    Json j;
    j["G"] = G;
    j["sharing"] = run_json(a);
    j["no_sharing"] = run_json(b);
    j["kv_blocks_saved_by_sharing"] = a.stats.kv_blocks_saved_by_sharing;
    j["prefill_tokens_ratio"] = ratio(double(a.stats.prefill_tokens), double(b.stats.prefill_tokens));
    j["peak_kv_blocks_ratio"] = ratio(double(a.peak_blocks), double(b.peak_blocks));
    j["time_ratio"] = ratio(a.seconds, b.seconds);
    j["ttft_ratio"] = ratio(a.ttft, b.ttft);
    groups.push_back(j);
  }
  doc["groups"] = groups;
  doc["ratios_note"] = "sharing / no_sharing, same prompt, seed and sizes";

  // ---- R groups of G decoded together, R = 1, 2, 4, ... up to what max_batch and KV admit
  Json batches = Json::array();
  for (size_t gi = 0; gi < o.groups.size(); ++gi) {
    const int64_t G = o.groups[gi];
    const int64_t r_max = std::max<int64_t>(1, o.quick ? std::min<int64_t>(2, groups_admitted(G)) : groups_admitted(G));
    Json points = Json::array();
    for (int64_t R = 1;; R = std::min(2 * R, r_max)) {
      const RunResult r = R == 1 ? single[gi] : run_engine(*model, ec, R, G, P, M, o.seed + uint64_t(R));
      Json j = run_json(r);
      j["groups"] = R;
      j["sequences"] = R * G;
      points.push_back(j);
      if (R == r_max) break;
    }
    Json b;
    b["G"] = G;
    b["groups_admitted"] = groups_admitted(G);
    b["limited_by"] = o.max_batch / G <= total_blocks / (shared + G * own) ? "max_batch" : "kv_memory";
    b["runs"] = points;
    batches.push_back(b);
  }
  doc["batches"] = batches;
  doc["admission_formula"] =
      "groups of G = min(max_batch / G, kv_blocks_total / (floor(P / bs) + G * (ceil((P + M) / bs) - floor(P / bs))))";
  return doc.dump(2);
}

}  // namespace grpo
