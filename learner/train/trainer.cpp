// The `grpo train` loop (trainer.h).
#include "learner/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "kernels/backend.h"
#include "learner/checkpoint.h"
#include "learner/datasets.h"
#include "learner/eval.h"
#include "learner/grpo_step.h"
#include "learner/optimizer.h"
#include "learner/sft.h"
#include "learner/train/backends.h"
#include "learner/train/process.h"
#include "learner/train/tensorboard.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/prompt_format.h"
#include "policy/tokenizer.h"
#include "rewards/builtin.h"
#include "rollout/engine.h"

namespace grpo::train {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string fmt_duration(double s) {
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%dh%02dm", int(s / 3600), int(s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%dm%02ds", int(s / 60), int(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

std::string fmt_rate(double r) {
  char buf[32];
  if (r >= 1e4)
    std::snprintf(buf, sizeof buf, "%.0fk", r / 1e3);
  else if (r >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", r / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.0f", r);
  return buf;
}

std::vector<EvalProblem> load_problems(const TrainData& d, const std::string& default_checker, const std::string& what) {
  std::vector<EvalProblem> out;
  if (!d.spec_json.empty()) {
    ConfigNode node = ConfigNode::from_string(d.spec_json, what);
    const DatasetSpec spec = parse_dataset_spec(node);
    node.finish();
    for (const DatasetRecord& r : generate_dataset(spec))
      out.push_back({std::to_string(r.id), r.prompt, r.reference, r.checker});
  } else {
    out = read_eval_jsonl(d.path, EvalFieldNames{d.prompt_key, d.reference_key, d.checker_key});
  }
  GRPO_CHECK(!out.empty(), what << ": no problems");
  for (EvalProblem& p : out)
    if (p.checker.empty()) p.checker = default_checker;
  return out;
}

// Keeps the lines of a JSONL file whose "step" is <= `step` (a resumed run rewrites what came
// after its checkpoint).
void trim_jsonl(const fs::path& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::vector<std::string> keep;
  {
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      if (line.empty()) continue;
      const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
      if (!j.is_discarded() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() <= step)
        keep.push_back(line);
    }
  }
  std::ofstream out(path, std::ios::trunc);
  for (const std::string& l : keep) out << l << "\n";
}

struct ScoredGroup {
  size_t problem = 0;
  std::vector<int32_t> prompt;
  rollout::GroupResult result;
  std::vector<rewards::ScoreResult> scores;  // per sample
  bool zero_variance = false;
};

}  // namespace

// ---- base model -------------------------------------------------------------------------------

void make_base_model(const TrainConfig& config, bool quiet) {
  if (fs::exists(config.model)) return;
  GRPO_CHECK(!config.base_sft.empty(), "model " << config.model << " does not exist (and no base_sft config makes it)");
  ConfigNode root = ConfigNode::from_file(config.base_sft);
  const SftConfig sc = parse_sft_config(root);
  if (!quiet)
    std::fprintf(stderr, "base model: %s does not exist; making it with grpo sft %s (%s)\n", config.model.c_str(),
                 config.base_sft.c_str(), sc.run_dir.c_str());
  SftTrainer sft(sc, quiet);
  if (find_latest_checkpoint(sc.run_dir).path.empty())
    sft.start();
  else
    sft.resume();
  if (sft.step() < sft.total_steps()) sft.train();
  const CheckpointScan scan = find_latest_checkpoint(sc.run_dir);
  GRPO_CHECK(!scan.path.empty(), "base model: the SFT run " << sc.run_dir << " left no checkpoint");
  // The model files only (not trainer_state/ or the COMPLETE marker), swapped in by rename.
  const fs::path tmp = fs::path(config.model).string() + ".tmp";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  for (const fs::directory_entry& e : fs::directory_iterator(scan.path))
    if (e.is_regular_file() && e.path().filename() != "COMPLETE") fs::copy_file(e.path(), tmp / e.path().filename());
  if (fs::path(config.model).has_parent_path()) fs::create_directories(fs::path(config.model).parent_path());
  fs::rename(tmp, config.model);
  if (!quiet) std::fprintf(stderr, "base model: %s (from %s)\n", config.model.c_str(), scan.path.c_str());
}

// ---- the trainer --------------------------------------------------------------------------------

struct Trainer::Impl {
  TrainConfig c;
  TrainerOptions o;
  std::unique_ptr<Ops> ops;
  std::unique_ptr<Model> policy, reference;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<PromptFormat> format;
  std::vector<int32_t> stop_ids;
  std::vector<EvalProblem> train_data, eval_data;
  Backends backends;
  std::unique_ptr<GrpoStep> grpo;
  std::unique_ptr<Model> eval_model;
  std::unique_ptr<rollout::Engine> eval_engine;
  rewards::CheckerRegistry eval_registry;
  std::unique_ptr<TensorBoardWriter> tb;
  std::ofstream metrics, samples, evals;

  int64_t step = 0, epoch = 0, index = 0;
  int64_t last_saved = -1;
  std::string last_checkpoint;
  std::atomic<bool> stop{false};
  enum class Phase { idle, generate, reward, learn, sync } phase = Phase::idle;
  Clock::time_point run_start;
  int64_t first_step = 0;
  double eval_before = -1, eval_after = -1;
  std::vector<double> step_rewards;  // reward/mean of each step run by this call

  void check_stop() {
    if (stop.load()) throw TrainInterrupted("interrupted");
  }

  fs::path run(const char* name) const { return fs::path(c.run_dir) / name; }

  // The next prompt of the shuffled dataset (the cursor moves).
  size_t next_problem() {
    const std::vector<int64_t> order = epoch_order(int64_t(train_data.size()), c.seed, epoch);
    const size_t p = size_t(order[size_t(index)]);
    if (++index >= int64_t(order.size())) ++epoch, index = 0;
    return p;
  }

  TrainerState state() const {
    TrainerState st;
    st.step = step;
    st.rng = {{"data.seed", c.seed}};
    st.cursor = nlohmann::json{{"epoch", epoch}, {"index", index}}.dump();
    st.config = train_config_json(c);
    return st;
  }

  void save() {
    if (!o.save_checkpoints) return;
    CheckpointOptions co;
    co.keep_last = c.keep_last;
    co.tokenizer_dir = c.model;
    last_checkpoint = save_checkpoint(c.run_dir, *policy, *opt, state(), co);
    last_saved = step;
  }

  double run_eval_now(Json& line) {
    GRPO_ASSERT(eval_engine);
    eval_model->ops().copy(eval_model->params(), policy->params());
    eval_model->sync_compute_params();
    EvalOptions eo;
    eo.n = c.eval.n;
    eo.temperature = c.eval.temperature;
    eo.max_tokens = c.eval.max_new_tokens > 0 ? c.eval.max_new_tokens : c.rollout.max_new_tokens;
    eo.top_p = 1.0f;
    eo.seed = c.seed;  // the same draws every time, so evals compare like with like
    eo.correct_threshold = c.reward.correct_threshold;
    eo.keep_text = false;
    const Clock::time_point t0 = Clock::now();
    const EvalResult r = run_eval(*eval_engine, *tok, *format, eval_data, eval_registry, eo);
    for (size_t i = 0; i < r.ks.size(); ++i) line["eval/pass@" + std::to_string(r.ks[i])] = r.pass_at_k[i];
    for (size_t i = 0; i < r.ks.size(); ++i) line["eval/maj@" + std::to_string(r.ks[i])] = r.maj_at_k[i];
    line["eval/mean_length"] = r.mean_length;
    evals << Json{{"step", step}, {"pass@1", r.pass_at_k[0]}, {"problems", r.problems.size()}, {"n", r.n},
                  {"seconds", seconds_since(t0)}}
                 .dump()
          << "\n"
          << std::flush;
    if (!o.quiet)
      std::fprintf(stderr, "eval at step %lld: held-out pass@1 %.3f (%zu problems x %lld, %.1fs)\n", (long long)step,
                   r.pass_at_k[0], r.problems.size(), (long long)r.n, seconds_since(t0));
    return r.pass_at_k[0];
  }

  void write_metrics(const Json& line) {
    metrics << line.dump() << "\n" << std::flush;
    const double now = unix_time();
    for (auto it = line.begin(); it != line.end(); ++it)
      if (it.key() != "step" && it.value().is_number()) tb->add_scalar(it.key(), it.value().get<double>(), step, now);
    tb->flush();
  }

  void run_step();
};

Trainer::Trainer(const TrainConfig& config, const TrainerOptions& options) : impl_(new Impl) {
  Impl& m = *impl_;
  m.c = config;
  m.o = options;
  const TrainConfig& c = m.c;
  if (m.o.executable.empty()) m.o.executable = self_executable();
  // The device and dtype first: a dtype the device cannot store fails before any base model run.
  m.ops = make_ops(c.device);
  const DType dtype = resolve_dtype(c.dtype, *m.ops);
  make_base_model(c, m.o.quiet);

  ModelLimits limits;
  limits.max_tokens = std::max<int64_t>(c.learner.micro_batch_tokens, 1);
  limits.max_seqs = std::max<int64_t>(64, c.rollout.prompts_per_step * c.rollout.group_size);
  limits.training = true;
  limits.dtype = dtype;
  m.policy = load_model(c.model, *m.ops, limits);
  GRPO_CHECK(fs::is_regular_file(fs::path(c.model) / "tokenizer.json"), "model " << c.model << " has no tokenizer.json");
  m.tok = std::make_unique<Tokenizer>(Tokenizer::from_dir(c.model));
  m.format = std::make_unique<PromptFormat>(PromptFormat::create(c.prompt, m.tok->special_tokens()));
  m.stop_ids = m.format->stop_ids(*m.tok);
  if (c.learner.objective.beta > 0) {
    ModelLimits rl = limits;
    rl.training = false;
    m.reference = load_model(c.model, *m.ops, rl);
  }
  m.opt = std::make_unique<Optimizer>(*m.policy, c.optimizer);
  m.grpo = std::make_unique<GrpoStep>(*m.policy, *m.opt, c.learner, m.reference.get());

  m.train_data = load_problems(c.data, c.reward.checker, "data");
  for (const EvalProblem& p : m.train_data)
    GRPO_CHECK(!p.checker.empty() || c.topology.kind == TopologyKind::local || !c.topology.reward_address.empty(),
               "data: problem " << p.id << " names no checker and reward.checker is empty");
  if (c.eval.enabled()) {
    m.eval_data = load_problems(c.eval.data, c.reward.checker, "eval.data");
    rewards::register_builtin_checkers(m.eval_registry);
    register_dataset_checkers(m.eval_registry);
    for (const EvalProblem& p : m.eval_data)
      GRPO_CHECK(!p.checker.empty(), "eval.data: problem " << p.id << " names no checker and reward.checker is empty");
    if (c.eval.exclude_from_training) {
      // Held out for real: no training prompt is an eval prompt (small task spaces repeat).
      std::set<std::string> held;
      for (const EvalProblem& p : m.eval_data) held.insert(p.prompt);
      const size_t before = m.train_data.size();
      std::erase_if(m.train_data, [&](const EvalProblem& p) { return held.count(p.prompt) > 0; });
      GRPO_CHECK(!m.train_data.empty(), "data: every training problem is also in eval.data (set "
                                        "eval.exclude_from_training to false to train on them anyway)");
      if (!m.o.quiet && m.train_data.size() < before)
        std::fprintf(stderr, "data: %zu of %zu training problems left out: their prompt is in eval.data\n",
                     before - m.train_data.size(), before);
    }
    rollout::EngineConfig ec;
    ec.max_batch = std::min<int64_t>(64, c.topology.worker_max_batch);
    ec.kv_memory_bytes = c.topology.worker_kv_memory;
    ModelLimits el = rollout::engine_model_limits(ec);
    el.dtype = dtype;
    if (!c.cuda_graphs) el.decode_graphs = DecodeGraphs::off;
    m.eval_model = load_model(c.model, *m.ops, el);
    m.eval_engine = std::make_unique<rollout::Engine>(*m.eval_model, ec, m.tok.get());
  }

  BackendContext ctx;
  ctx.config = &m.c;
  ctx.executable = m.o.executable;
  ctx.run_dir = c.run_dir;
  ctx.ops = m.ops.get();
  ctx.dtype = dtype;
  ctx.tokenizer = m.tok.get();
  ctx.quiet = m.o.quiet;
  fs::create_directories(c.run_dir);
  m.backends = make_backends(ctx);
}

Trainer::~Trainer() = default;

const TrainConfig& Trainer::config() const { return impl_->c; }

void Trainer::request_stop() { impl_->stop.store(true); }

void Trainer::Impl::run_step() {
  const int64_t s = step + 1;
  const int64_t B = c.rollout.prompts_per_step, G = c.rollout.group_size;
  const Clock::time_point t_step = Clock::now();
  double t_gen = 0, t_rew = 0, t_learn = 0, t_sync = 0;
  int64_t gen_tokens = 0, rounds = 0, dropped = 0, zero_var = 0, total_groups = 0;
  std::vector<ScoredGroup> all, kept;

  backends.rollout->maintain(*policy, step);
  while (true) {
    ++rounds;
    const int64_t need = B - int64_t(kept.size());
    std::vector<rollout::PromptRequest> requests;
    std::vector<ScoredGroup> round;
    for (int64_t j = 0; j < need; ++j) {
      ScoredGroup g;
      g.problem = next_problem();
      g.prompt = format->encode(*tok, train_data[g.problem].prompt);
      rollout::PromptRequest r;
      r.id = uint64_t(j);
      r.tokens = g.prompt;
      r.sampling.temperature = c.rollout.temperature;
      r.sampling.top_p = c.rollout.top_p;
      r.sampling.top_k = c.rollout.top_k;
      r.sampling.min_p = c.rollout.min_p;
      r.sampling.max_new_tokens = c.rollout.max_new_tokens;
      r.sampling.stop_token_ids = stop_ids;
      r.sampling.stop_strings = c.rollout.stop;
      r.sampling.n = G;
      r.sampling.seed = mix_seed(mix_seed(c.seed, uint64_t(s)), uint64_t(rounds) * 1000003u + uint64_t(j));
      r.sampling.return_routing = c.rollout.return_routing;
      requests.push_back(std::move(r));
      round.push_back(std::move(g));
    }
    check_stop();
    phase = Phase::generate;
    Clock::time_point t0 = Clock::now();
    backends.rollout->generate(requests, [&](rollout::RemoteGroup g) {
      GRPO_CHECK(g.result.id < round.size(), "rollout: a group with unknown id " << g.result.id);
      GRPO_CHECK(int64_t(g.result.samples.size()) == G, "rollout: a group of " << g.result.samples.size()
                                                                               << " samples, expected " << G);
      round[g.result.id].result = std::move(g.result);
    });
    t_gen += seconds_since(t0);
    for (const ScoredGroup& g : round)
      for (const rollout::Sample& smp : g.result.samples) {
        GRPO_CHECK(smp.version == step, "rollout: a sample of policy version " << smp.version << ", expected " << step);
        gen_tokens += int64_t(smp.tokens.size());
      }

    check_stop();
    phase = Phase::reward;
    t0 = Clock::now();
    std::vector<rewards::ScoreItem> items;
    for (const ScoredGroup& g : round)
      for (size_t k = 0; k < g.result.samples.size(); ++k) {
        const EvalProblem& p = train_data[g.problem];
        rewards::ScoreItem it;
        it.checker = p.checker;
        it.request = {p.prompt, completion_text(*tok, g.result.samples[k].tokens), p.reference, uint64_t(items.size())};
        items.push_back(std::move(it));
      }
    const std::vector<rewards::ScoredItem> scored = backends.reward->score(items);
    GRPO_CHECK(scored.size() == items.size(), "reward: " << scored.size() << " results for " << items.size() << " items");
    t_rew += seconds_since(t0);
    size_t at = 0;
    for (ScoredGroup& g : round) {
      for (size_t k = 0; k < g.result.samples.size(); ++k) {
        const double r = scored[at].result.reward;
        GRPO_CHECK(std::isfinite(r), "reward: item " << at << " has a non-finite reward");
        g.scores.push_back(scored[at++].result);
      }
      double lo = g.scores.front().reward, hi = lo;
      for (const rewards::ScoreResult& sr : g.scores) lo = std::min(lo, sr.reward), hi = std::max(hi, sr.reward);
      g.zero_variance = hi == lo;
      zero_var += g.zero_variance;
      ++total_groups;
      all.push_back(g);
      if (c.dynamic_sampling.enabled && g.zero_variance)
        ++dropped;
      else
        kept.push_back(std::move(g));
    }
    if (!c.dynamic_sampling.enabled || int64_t(kept.size()) >= B || rounds >= c.dynamic_sampling.max_rounds) break;
  }
  if (int64_t(kept.size()) > B) kept.resize(size_t(B));

  // Learn.
  check_stop();
  phase = Phase::learn;
  Clock::time_point t0 = Clock::now();
  std::vector<GrpoCompletion> batch;
  for (size_t gi = 0; gi < kept.size(); ++gi)
    for (size_t k = 0; k < kept[gi].result.samples.size(); ++k) {
      const rollout::Sample& smp = kept[gi].result.samples[k];
      GrpoCompletion comp;
      comp.prompt = kept[gi].prompt;
      comp.tokens = smp.tokens;
      comp.rollout_logprob = smp.logprobs;
      comp.reward = kept[gi].scores[k].reward;
      comp.group = int64_t(gi);
      comp.truncated = smp.finish == rollout::FinishReason::length;
      comp.routing = smp.routing;
      batch.push_back(std::move(comp));
    }
  GrpoStepMetrics gm;
  if (!batch.empty()) {
    gm = grpo->run(batch);
  } else {
    GRPO_LOG(warn, "step " << s << ": no group with reward variance after " << rounds << " rounds; no update");
  }
  t_learn = seconds_since(t0);
  step = s;

  // Weight sync: the workers serve version s from now on.
  phase = Phase::sync;
  t0 = Clock::now();
  backends.rollout->update_weights(*policy, step);
  t_sync = seconds_since(t0);
  phase = Phase::idle;
  const double t_total = seconds_since(t_step);

  // Metrics over every generated completion of the step (dropped groups included).
  double rsum = 0, rsq = 0, correct = 0, formatted = 0, len_sum = 0, len_max = 0, truncated = 0;
  int64_t n = 0;
  std::map<std::string, std::pair<double, int64_t>> comps;
  for (const ScoredGroup& g : all)
    for (size_t k = 0; k < g.scores.size(); ++k) {
      const rewards::ScoreResult& sr = g.scores[k];
      const rollout::Sample& smp = g.result.samples[k];
      rsum += sr.reward;
      rsq += sr.reward * sr.reward;
      correct += sr.reward >= c.reward.correct_threshold;
      formatted += !sr.extracted.empty();
      len_sum += double(smp.tokens.size());
      len_max = std::max(len_max, double(smp.tokens.size()));
      truncated += smp.finish == rollout::FinishReason::length;
      for (const rewards::RewardComponent& rc : sr.components) {
        auto& [sum, cnt] = comps[rc.name];
        sum += rc.value;
        ++cnt;
      }
      ++n;
    }
  const double nn = std::max<double>(double(n), 1);
  const double mean = rsum / nn;
  Json line;
  line["step"] = step;
  line["reward/mean"] = mean;
  line["reward/std"] = std::sqrt(std::max(0.0, rsq / nn - mean * mean));
  for (const auto& [name, sc] : comps) line["reward/" + name] = sc.first / double(std::max<int64_t>(sc.second, 1));
  line["accuracy"] = correct / nn;
  line["format_rate"] = formatted / nn;
  line["response_length/mean"] = len_sum / nn;
  line["response_length/max"] = len_max;
  line["response_length/truncation_rate"] = truncated / nn;
  line["loss"] = gm.loss;
  line["policy_loss"] = gm.policy_loss;
  line["kl"] = gm.kl;
  line["entropy"] = gm.entropy;
  line["clip_frac"] = gm.clip_frac_low + gm.clip_frac_high;
  line["clip_frac/low"] = gm.clip_frac_low;
  line["clip_frac/high"] = gm.clip_frac_high;
  line["approx_kl"] = gm.approx_kl;
  line["grad_norm"] = gm.grad_norm;
  line["lr"] = gm.lr;
  line["optimizer/skipped_steps"] = gm.skipped_steps;
  line["groups/total"] = total_groups;
  line["groups/zero_variance"] = zero_var;
  line["groups/trained"] = int64_t(kept.size());
  line["dynamic_sampling/rounds"] = rounds;
  line["dynamic_sampling/dropped_groups"] = dropped;
  line["tokens/generated"] = gen_tokens;
  line["tokens/learned"] = gm.tokens;
  line["time/generate_s"] = t_gen;
  line["time/reward_s"] = t_rew;
  line["time/learn_s"] = t_learn;
  line["time/weight_sync_s"] = t_sync;
  line["time/step_s"] = t_total;
  line["tokens_per_s/generate"] = t_gen > 0 ? double(gen_tokens) / t_gen : 0.0;
  line["tokens_per_s/learn"] = t_learn > 0 ? double(gm.tokens * c.learner.mu) / t_learn : 0.0;
  line["tokens_per_s/step"] = t_total > 0 ? double(gen_tokens) / t_total : 0.0;
  line["workers/retried_groups"] = backends.rollout->retried_groups();
  line["workers/restarts"] = backends.rollout->restarts();
  line["version"] = step;

  // Samples: the first sample of the first few groups.
  for (int64_t i = 0; i < c.samples_per_step && i < int64_t(all.size()); ++i) {
    const ScoredGroup& g = all[size_t(i)];
    const rewards::ScoreResult& sr = g.scores[0];
    Json comps_j = Json::object();
    for (const rewards::RewardComponent& rc : sr.components) comps_j[rc.name] = rc.value;
    samples << Json{{"step", step},
                    {"group", i},
                    {"sample", 0},
                    {"prompt", train_data[g.problem].prompt},
                    {"reference", train_data[g.problem].reference},
                    {"completion", completion_text(*tok, g.result.samples[0].tokens)},
                    {"reward", sr.reward},
                    {"components", comps_j},
                    {"reason", sr.reason},
                    {"extracted", sr.extracted},
                    {"finish", rollout::finish_reason_name(g.result.samples[0].finish)},
                    {"tokens", g.result.samples[0].tokens.size()}}
                   .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
            << "\n";
  }
  samples << std::flush;

  step_rewards.push_back(mean);

  const bool eval_now = eval_engine && c.eval.every > 0 && step % c.eval.every == 0 && step != c.steps;
  if (eval_now) run_eval_now(line);
  line["elapsed_s"] = seconds_since(run_start);
  write_metrics(line);

  if (!o.quiet) {
    const double elapsed = seconds_since(run_start);
    const double per_step = elapsed / double(step - first_step);
    std::fprintf(stderr,
                 "step %lld/%lld | reward %.3f ± %.3f | acc %.3f | len %.0f (max %.0f) | kl %.4f | %s tok/s | "
                 "gen %.1fs rew %.1fs learn %.1fs sync %.2fs | eta %s\n",
                 (long long)step, (long long)c.steps, mean, line["reward/std"].get<double>(), correct / nn, len_sum / nn,
                 len_max, gm.kl, fmt_rate(line["tokens_per_s/step"].get<double>()).c_str(), t_gen, t_rew, t_learn, t_sync,
                 fmt_duration(per_step * double(c.steps - step)).c_str());
  }
  if (c.save_every > 0 && step % c.save_every == 0 && step != c.steps) save();
}

namespace {

// Saves the last completed step unless the failure was inside learning (the weights may then
// be half-updated), then throws the reason with where the checkpoint is.
[[noreturn]] void fail(Trainer::Impl& m, const std::exception& e) {
  std::string note;
  if (m.phase != Trainer::Impl::Phase::learn && m.step > 0 && m.step > m.last_saved) {
    try {
      m.save();
      note = "; checkpoint of step " + std::to_string(m.step) + " saved in " + m.last_checkpoint;
    } catch (const std::exception& e2) {
      note = std::string("; the checkpoint of step ") + std::to_string(m.step) + " failed too: " + e2.what();
    }
  } else if (m.last_saved >= 0) {
    note = "; the last checkpoint is " + m.last_checkpoint;
  }
  const Error* ge = dynamic_cast<const Error*>(&e);
  const std::string what = ge ? ge->message() : e.what();
  throw Error("train stopped in step " + std::to_string(m.step + 1) + ": " + what + note);
}

TrainSummary run_loop(Trainer::Impl& m, bool resumed) {
  const TrainConfig& c = m.c;
  m.run_start = Clock::now();
  m.first_step = m.step;
  m.metrics.open(m.run("metrics.jsonl"), std::ios::app);
  m.samples.open(m.run("samples.jsonl"), std::ios::app);
  m.evals.open(m.run("eval.jsonl"), std::ios::app);
  GRPO_CHECK(m.metrics && m.samples && m.evals, "train: cannot write into " << c.run_dir);
  m.tb = std::make_unique<TensorBoardWriter>(m.run("tb").string());
  if (!m.o.quiet)
    std::fprintf(stderr, "train: %s (%s), %lld steps from step %lld; rollout: %s; reward: %s; run_dir %s\n",
                 c.model.c_str(), dtype_name(m.policy->dtype()), (long long)c.steps, (long long)m.step,
                 m.backends.rollout->describe().c_str(), m.backends.reward->describe().c_str(), c.run_dir.c_str());
  // A resumed run gives the workers the checkpoint's weights first; remote workers always get
  // them (they may serve anything).
  if (m.step > 0 || c.topology.kind == TopologyKind::remote) m.backends.rollout->update_weights(*m.policy, m.step);

  TrainSummary sum;
  sum.first_step = m.step;
  if (!resumed && m.eval_engine && c.eval.before && m.step == 0) {
    Json line;
    line["step"] = 0;
    m.eval_before = m.run_eval_now(line);
    line["elapsed_s"] = seconds_since(m.run_start);
    m.write_metrics(line);
  }
  try {
    while (m.step < c.steps) {
      m.check_stop();
      m.run_step();
    }
  } catch (const TrainInterrupted&) {
    sum.interrupted = true;
    m.phase = Trainer::Impl::Phase::idle;
  } catch (const std::exception& e) {
    if (m.stop.load()) {  // the children were stopped under a running phase: that is the interrupt
      sum.interrupted = true;
      m.phase = Trainer::Impl::Phase::idle;
    } else {
      fail(m, e);
    }
  }
  if (sum.interrupted) {
    if (c.checkpoint_on_interrupt && m.step > m.last_saved && m.step > 0) m.save();
    if (!m.o.quiet)
      std::fprintf(stderr, "train: interrupted after step %lld%s\n", (long long)m.step,
                   m.last_checkpoint.empty() ? "" : ("; checkpoint " + m.last_checkpoint).c_str());
  } else {
    if (m.eval_engine) {
      Json line;
      line["step"] = m.step;
      m.eval_after = m.run_eval_now(line);
      // The last step's line is written already: the final eval goes on a line of its own.
      line["elapsed_s"] = seconds_since(m.run_start);
      m.write_metrics(line);
    }
    if (m.step > m.last_saved) m.save();
  }
  sum.last_step = m.step;
  sum.seconds = seconds_since(m.run_start);
  sum.eval_before = m.eval_before;
  sum.eval_after = m.eval_after;
  // Means over up to 10 steps at each end (one step's batch is a noisy estimate).
  const size_t n = m.step_rewards.size(), w = std::min<size_t>(10, n);
  for (size_t i = 0; i < w; ++i) {
    sum.reward_first += m.step_rewards[i] / double(w);
    sum.reward_last += m.step_rewards[n - w + i] / double(w);
  }
  sum.checkpoint = m.last_checkpoint;
  return sum;
}

}  // namespace

TrainSummary Trainer::start() {
  Impl& m = *impl_;
  const CheckpointScan scan = find_latest_checkpoint(m.c.run_dir);
  GRPO_CHECK(scan.path.empty(), "run_dir " << m.c.run_dir << " already has a checkpoint (" << scan.path
                                           << "): continue it with --resume " << m.c.run_dir << " or pick another run_dir");
  fs::create_directories(m.c.run_dir);
  std::ofstream(m.run("config.json")) << train_config_json(m.c) << "\n";
  for (const char* f : {"metrics.jsonl", "samples.jsonl", "eval.jsonl"}) std::ofstream(m.run(f), std::ios::trunc);
  m.step = m.epoch = m.index = 0;
  return run_loop(m, false);
}

TrainSummary Trainer::resume() {
  Impl& m = *impl_;
  std::string path;
  const TrainerState st = resume_from_run_dir(m.c.run_dir, *m.policy, *m.opt, &path);
  const nlohmann::json cur = nlohmann::json::parse(st.cursor);
  GRPO_CHECK(cur.is_object() && cur.contains("epoch") && cur.contains("index"),
             path << ": trainer state has no data cursor {epoch, index}");
  const auto seed = st.rng.find("data.seed");
  GRPO_CHECK(seed != st.rng.end() && seed->second == m.c.seed, path << ": data seed differs from the config's seed " << m.c.seed);
  m.step = st.step;
  m.epoch = cur["epoch"].get<int64_t>();
  m.index = cur["index"].get<int64_t>();
  m.last_saved = m.step;
  m.last_checkpoint = path;
  for (const char* f : {"metrics.jsonl", "samples.jsonl", "eval.jsonl"}) trim_jsonl(m.run(f), m.step);
  std::ofstream(m.run("config.json")) << train_config_json(m.c) << "\n";  // with this call's --set
  if (!m.o.quiet) std::fprintf(stderr, "train: resumed from %s (step %lld)\n", path.c_str(), (long long)m.step);
  return run_loop(m, true);
}

}  // namespace grpo::train
