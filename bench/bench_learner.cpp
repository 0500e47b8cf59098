// `grpo bench learner`: one GRPO step (learner/grpo_step.h) on synthetic groups, timed per
// phase by the step itself. The peer figures are the step's own phases, so the JSON says where
// a step's time goes (the forward + backward is the part that scales with model FLOPs).
#include "bench/bench_learner.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "bench/bench_json.h"
#include "core/error.h"
#include "kernels/backend.h"
#include "learner/grpo_step.h"
#include "learner/optimizer.h"
#include "policy/model.h"

namespace grpo {

namespace {

using Json = nlohmann::ordered_json;

double round_dec(double x, int decimals) {
  const double f = std::pow(10.0, decimals);
  return std::round(x * f) / f;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::unique_ptr<Model> make_model(const BenchLearnerOptions& o, Ops& ops, const ModelLimits& limits) {
  if (!o.model.empty()) return load_model(o.model, ops, limits);
  GRPO_CHECK(!o.arch.empty(), "bench learner: give --model DIR or --arch ARCH");
  GRPO_CHECK(o.preset == "tiny" || o.preset == "small",
             "bench learner: preset \"" << o.preset << "\" is unknown (presets: tiny, small)");
  auto m = std::make_unique<Model>(model_preset(o.arch, o.preset), ops, limits);
  m->init_weights(o.seed);
  return m;
}

}  // namespace

std::string run_bench_learner(const BenchLearnerOptions& in) {
  BenchLearnerOptions o = in;
  if (o.quick) {
    o.prompts = 2;
    o.group_size = 4;
    o.prompt_tokens = 16;
    o.completion_tokens = 16;
    o.repeats = 1;
  }
  GRPO_CHECK(o.prompts > 0 && o.group_size > 0 && o.prompt_tokens > 0 && o.completion_tokens > 0 && o.repeats > 0,
             "bench learner: sizes must be positive");
  if (o.threads > 0) {
    omp_set_num_threads(o.threads);
    openblas_set_num_threads(o.threads);
  }
  const DeviceChoice dc = resolve_device(o.device);
  std::unique_ptr<Ops> ops = make_ops(dc);
  const int64_t seq = o.prompt_tokens + o.completion_tokens;
  ModelLimits train;
  train.max_tokens = std::max(o.micro_batch_tokens, seq);
  train.max_seqs = std::max<int64_t>(1, train.max_tokens / seq + 1);
  train.training = true;
  train.dtype = resolve_dtype(o.dtype, *ops);
  std::unique_ptr<Model> policy = make_model(o, *ops, train);
  ModelLimits score = train;
  score.training = false;
  std::unique_ptr<Model> reference;
  if (o.beta > 0) reference = make_model(o, *ops, score);
  const ModelConfig& cfg = policy->config();
  GRPO_CHECK(seq <= cfg.max_position_embeddings, "bench learner: prompt + completion tokens " << seq
                                                     << " exceed the model's context " << cfg.max_position_embeddings);

  OptimizerConfig oc;
  oc.schedule.lr = 1e-6;
  Optimizer optimizer(*policy, oc);
  GrpoStepOptions so;
  so.objective.beta = o.beta;
  so.micro_batch_tokens = o.micro_batch_tokens;
  GrpoStep step(*policy, optimizer, so, reference.get());

  // Random prompts and completions; rewards 0/1 so every group has a spread.
  std::mt19937_64 rng(o.seed + 1);
  std::uniform_int_distribution<int32_t> token(0, int32_t(cfg.vocab_size - 1));
  std::vector<GrpoCompletion> batch;
  for (int64_t p = 0; p < o.prompts; ++p) {
    std::vector<int32_t> prompt(size_t(o.prompt_tokens));
    for (int32_t& t : prompt) t = token(rng);
    for (int64_t g = 0; g < o.group_size; ++g) {
      GrpoCompletion c;
      c.prompt = prompt;
      c.tokens.resize(size_t(o.completion_tokens));
      for (int32_t& t : c.tokens) t = token(rng);
      c.rollout_logprob.assign(c.tokens.size(), -std::log(float(cfg.vocab_size)));
      c.reward = double(g % 2);
      c.group = p;
      batch.push_back(std::move(c));
    }
  }

  step.run(batch);  // warm-up
  std::vector<double> total, old_lp, ref, fwd_bwd, opt;
  GrpoStepMetrics last;
  for (int r = 0; r < o.repeats; ++r) {
    last = step.run(batch);
    old_lp.push_back(last.old_logprob_s);
    ref.push_back(last.reference_s);
    fwd_bwd.push_back(last.forward_backward_s);
    opt.push_back(last.optimizer_s);
    total.push_back(last.old_logprob_s + last.reference_s + last.forward_backward_s + last.optimizer_s);
  }
  const double tokens = double(last.tokens);
  const double t_total = median(total);
  auto phase = [&](const std::vector<double>& v) {
    const double s = median(v);
    Json j;
    j["seconds"] = round_dec(s, 5);
    j["tokens_per_s"] = s > 0 ? round_dec(tokens / s, 1) : 0.0;
    j["share_of_step"] = t_total > 0 ? round_dec(s / t_total, 4) : 0.0;
    return j;
  };

  Json doc;
  doc["bench"] = "learner";
  doc["model"] = o.model.empty() ? "preset:" + o.preset : o.model;
  doc["config"] = model_config_json(cfg);
  doc["device"] = describe_device(dc);
  doc["dtype"] = dtype_name(train.dtype);
  doc["threads"] = omp_get_max_threads();
  doc["batch"] = {{"prompts", o.prompts}, {"group_size", o.group_size}, {"prompt_tokens", o.prompt_tokens},
                  {"completion_tokens", o.completion_tokens}, {"tokens", last.tokens},
                  {"loss_tokens", last.loss_tokens}, {"micro_batches", last.micro_batches}, {"beta", o.beta}};
  doc["timing"] = "median of the repeats after one warm-up; phases timed by the step (learner/grpo_step.h)";
  doc["step"] = {{"seconds", round_dec(t_total, 5)}, {"tokens_per_s", t_total > 0 ? round_dec(tokens / t_total, 1) : 0.0}};
  doc["old_logprob"] = phase(old_lp);
  doc["reference"] = phase(ref);
  doc["forward_backward"] = phase(fwd_bwd);
  doc["optimizer"] = phase(opt);
  return doc.dump(2) + "\n";
}

}  // namespace grpo
