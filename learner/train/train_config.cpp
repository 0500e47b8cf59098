// `grpo train` run config: parsing with strict keys, and the effective config (train_config.h).
#include "learner/train/train_config.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "core/error.h"
#include "learner/datasets.h"

namespace grpo::train {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

const char* name_of(TopologyKind kind) {
  switch (kind) {
    case TopologyKind::local: return "local";
    case TopologyKind::remote: return "remote";
    case TopologyKind::colocated: return "colocated";
  }
  return "?";
}

namespace {

// "data": a dataset spec object (has "name") or {"path", "*_key"}.
TrainData parse_data(ConfigNode& parent, std::string_view key) {
  TrainData d;
  GRPO_CHECK(parent.raw().contains(std::string(key)) && parent.raw().at(std::string(key)).is_object(),
             parent.key_path(key) << " is required: a dataset spec such as {\"name\": \"arithmetic\"} or "
                                     "{\"path\": \"train.jsonl\", \"prompt_key\": \"prompt\", ...}");
  ConfigNode& node = parent.child(key);
  if (node.has("path")) {
    d.path = node.require<std::string>("path");
    GRPO_CHECK(!d.path.empty(), node.key_path("path") << " is empty");
    GRPO_CHECK(fs::is_regular_file(d.path), node.key_path("path") << ": no such file " << d.path);
    d.prompt_key = node.get<std::string>("prompt_key", d.prompt_key);
    d.reference_key = node.get<std::string>("reference_key", d.reference_key);
    d.checker_key = node.get<std::string>("checker_key", d.checker_key);
    return d;
  }
  GRPO_CHECK(node.has("name"), node.key_path("") << " needs \"name\" (a built-in dataset) or \"path\" (a JSONL file)");
  parse_dataset_spec(node);  // checks keys and ranges now
  d.spec_json = node.raw().dump();
  return d;
}

Json data_json(const TrainData& d) {
  if (!d.spec_json.empty()) return Json::parse(d.spec_json);
  return Json{{"path", d.path}, {"prompt_key", d.prompt_key}, {"reference_key", d.reference_key},
              {"checker_key", d.checker_key}};
}

int64_t parse_size(ConfigNode& node, std::string_view key, int64_t def) {
  if (!node.has(key)) return def;
  const nlohmann::json& v = node.raw().at(std::string(key));
  if (v.is_number_integer()) return node.get<int64_t>(key, def);
  const std::string s = node.get<std::string>(key, "");
  size_t pos = 0;
  int64_t n = 0;
  try {
    n = std::stoll(s, &pos);
  } catch (...) {
    GRPO_THROW(node.key_path(key) << ": expected bytes such as 268435456, \"256M\" or \"2G\", got \"" << s << "\"");
  }
  const std::string unit = s.substr(pos);
  const int64_t mult = unit.empty() ? 1 : unit == "K" ? 1 << 10 : unit == "M" ? 1 << 20 : unit == "G" ? int64_t(1) << 30 : 0;
  GRPO_CHECK(mult > 0 && n > 0, node.key_path(key) << ": expected bytes such as 268435456, \"256M\" or \"2G\", got \"" << s << "\"");
  return n * mult;
}

template <class T>
void check_min(ConfigNode& node, std::string_view key, T value, T lo) {
  GRPO_CHECK(value >= lo, node.key_path(key) << " must be >= " << lo << ", got " << value);
}

}  // namespace

TrainConfig parse_train_config(ConfigNode& root) {
  TrainConfig c;
  c.model = root.require<std::string>("model");
  GRPO_CHECK(!c.model.empty(), root.key_path("model") << " is empty");
  c.base_sft = root.get<std::string>("base_sft", "");
  if (!c.base_sft.empty())
    GRPO_CHECK(fs::is_regular_file(c.base_sft), root.key_path("base_sft") << ": no such file " << c.base_sft);
  if (c.base_sft.empty() || fs::exists(c.model))
    GRPO_CHECK(fs::is_regular_file(fs::path(c.model) / "config.json"),
               root.key_path("model") << ": " << c.model << " has no config.json");
  c.data = parse_data(root, "data");

  if (root.has("eval")) {
    ConfigNode& ev = root.child("eval");
    c.eval.data = parse_data(ev, "data");
    c.eval.every = ev.get<int64_t>("every", c.eval.every);
    c.eval.n = ev.get<int64_t>("n", c.eval.n);
    c.eval.temperature = ev.get<float>("temperature", c.eval.temperature);
    c.eval.max_new_tokens = ev.get<int64_t>("max_new_tokens", c.eval.max_new_tokens);
    c.eval.before = ev.get<bool>("before", c.eval.before);
    c.eval.exclude_from_training = ev.get<bool>("exclude_from_training", c.eval.exclude_from_training);
    check_min<int64_t>(ev, "every", c.eval.every, 0);
    check_min<int64_t>(ev, "n", c.eval.n, 1);
    check_min<float>(ev, "temperature", c.eval.temperature, 0.0f);
    check_min<int64_t>(ev, "max_new_tokens", c.eval.max_new_tokens, 0);
  }

  ConfigNode& p = root.child("prompt");
  c.prompt.format = p.get_choice("format", "chatml", {"raw", "r1_zero", "chatml", "deepseek_v3"});
  c.prompt.template_text = p.get<std::string>("template", "");
  c.prompt.system = p.get<std::string>("system", "");
  c.prompt.generation_prefix = p.get<std::string>("generation_prefix", "");

  ConfigNode& r = root.child("rollout");
  RolloutConfig& ro = c.rollout;
  ro.prompts_per_step = r.get<int64_t>("prompts_per_step", ro.prompts_per_step);
  ro.group_size = r.get<int64_t>("group_size", ro.group_size);
  ro.max_new_tokens = r.get<int64_t>("max_new_tokens", ro.max_new_tokens);
  ro.temperature = r.get<float>("temperature", ro.temperature);
  ro.top_p = r.get<float>("top_p", ro.top_p);
  ro.top_k = r.get<int64_t>("top_k", ro.top_k);
  ro.min_p = r.get<float>("min_p", ro.min_p);
  ro.stop = r.get<std::vector<std::string>>("stop", ro.stop);
  ro.return_routing = r.get<bool>("return_routing", ro.return_routing);
  ro.weight_dtype = r.get_choice("weight_dtype", ro.weight_dtype, {"f32", "bf16"});
  check_min<int64_t>(r, "prompts_per_step", ro.prompts_per_step, 1);
  check_min<int64_t>(r, "group_size", ro.group_size, 1);
  check_min<int64_t>(r, "max_new_tokens", ro.max_new_tokens, 1);
  GRPO_CHECK(ro.temperature > 0, r.key_path("temperature") << " must be > 0 for GRPO sampling, got " << ro.temperature);
  GRPO_CHECK(ro.top_p > 0 && ro.top_p <= 1, r.key_path("top_p") << " must be in (0, 1], got " << ro.top_p);
  GRPO_CHECK(ro.min_p >= 0 && ro.min_p < 1, r.key_path("min_p") << " must be in [0, 1), got " << ro.min_p);
  check_min<int64_t>(r, "top_k", ro.top_k, 0);
  for (const std::string& s : ro.stop) GRPO_CHECK(!s.empty(), r.key_path("stop") << " has an empty string");

  ConfigNode& ds = root.child("dynamic_sampling");
  c.dynamic_sampling.enabled = ds.get<bool>("enabled", c.dynamic_sampling.enabled);
  c.dynamic_sampling.max_rounds = ds.get<int64_t>("max_rounds", c.dynamic_sampling.max_rounds);
  check_min<int64_t>(ds, "max_rounds", c.dynamic_sampling.max_rounds, 1);

  ConfigNode& rw = root.child("reward");
  RewardConfig& re = c.reward;
  re.checker = rw.get<std::string>("checker", re.checker);
  re.config = rw.get<std::string>("config", re.config);
  if (!re.config.empty()) GRPO_CHECK(fs::is_regular_file(re.config), rw.key_path("config") << ": no such file " << re.config);
  re.plugins = rw.get<std::vector<std::string>>("plugins", re.plugins);
  for (const std::string& pl : re.plugins)
    GRPO_CHECK(fs::is_regular_file(pl), rw.key_path("plugins") << ": no such file " << pl);
  re.correct_threshold = rw.get<double>("correct_threshold", re.correct_threshold);
  re.retries = rw.get<int64_t>("retries", re.retries);
  re.backoff_s = rw.get<double>("backoff_s", re.backoff_s);
  re.timeout_s = rw.get<double>("timeout_s", re.timeout_s);
  check_min<int64_t>(rw, "retries", re.retries, 0);
  check_min<double>(rw, "backoff_s", re.backoff_s, 0.0);
  GRPO_CHECK(re.timeout_s > 0, rw.key_path("timeout_s") << " must be > 0, got " << re.timeout_s);

  c.learner.objective = parse_objective_options(root.child("objective"));
  ConfigNode& l = root.child("learner");
  c.learner.mu = l.get<int64_t>("mu", c.learner.mu);
  c.learner.num_mini_batches = l.get<int64_t>("num_mini_batches", c.learner.num_mini_batches);
  c.learner.micro_batch_tokens = l.get<int64_t>("micro_batch_tokens", c.learner.micro_batch_tokens);
  c.learner.replay_routing = l.get<bool>("replay_routing", c.learner.replay_routing);
  c.learner.aux_loss_coef = l.get<double>("aux_loss_coef", c.learner.aux_loss_coef);
  c.learner.temperature = ro.temperature;
  try {
    check_grpo_step_options(c.learner);
  } catch (const Error& e) {
    GRPO_THROW(l.key_path("") << ": " << e.message());
  }
  c.optimizer = parse_optimizer_config(root.child("optimizer"));

  ConfigNode& t = root.child("topology");
  TopologyConfig& to = c.topology;
  const std::string kind = t.get_choice("kind", "local", {"local", "remote", "colocated"});
  to.kind = kind == "local" ? TopologyKind::local : kind == "remote" ? TopologyKind::remote : TopologyKind::colocated;
  to.workers = t.get<int64_t>("workers", to.workers);
  to.worker_max_batch = t.get<int64_t>("worker_max_batch", to.worker_max_batch);
  to.worker_kv_memory = parse_size(t, "worker_kv_memory", to.worker_kv_memory);
  to.worker_device = t.get<std::string>("worker_device", to.worker_device);
  to.worker_threads = t.get<int64_t>("worker_threads", to.worker_threads);
  to.rollout_addresses = t.get<std::vector<std::string>>("rollout_addresses", to.rollout_addresses);
  to.reward_address = t.get<std::string>("reward_address", to.reward_address);
  to.token_file = t.get<std::string>("token_file", to.token_file);
  to.start_timeout_s = t.get<double>("start_timeout_s", to.start_timeout_s);
  to.generate_timeout_s = t.get<double>("generate_timeout_s", to.generate_timeout_s);
  to.max_worker_restarts = t.get<int64_t>("max_worker_restarts", to.max_worker_restarts);
  check_min<int64_t>(t, "workers", to.workers, 1);
  check_min<int64_t>(t, "worker_max_batch", to.worker_max_batch, 1);
  check_min<int64_t>(t, "worker_threads", to.worker_threads, 0);
  check_min<int64_t>(t, "max_worker_restarts", to.max_worker_restarts, 0);
  GRPO_CHECK(to.start_timeout_s > 0, t.key_path("start_timeout_s") << " must be > 0");
  GRPO_CHECK(to.generate_timeout_s > 0, t.key_path("generate_timeout_s") << " must be > 0");
  if (to.kind == TopologyKind::remote)
    GRPO_CHECK(!to.rollout_addresses.empty(),
               t.key_path("rollout_addresses") << " must list the workers' HOST:PORT when kind is \"remote\"");
  else
    GRPO_CHECK(to.rollout_addresses.empty() && to.reward_address.empty(),
               t.key_path("rollout_addresses") << " and reward_address are for kind \"remote\" (kind is \"" << kind << "\")");
  if (!to.token_file.empty()) GRPO_CHECK(fs::is_regular_file(to.token_file), t.key_path("token_file") << ": no such file " << to.token_file);

  c.steps = root.get<int64_t>("steps", c.steps);
  c.seed = root.get<uint64_t>("seed", c.seed);
  c.run_dir = root.get<std::string>("run_dir", c.run_dir);
  c.save_every = root.get<int64_t>("save_every", c.save_every);
  c.keep_last = root.get<int64_t>("keep_last", c.keep_last);
  c.samples_per_step = root.get<int64_t>("samples_per_step", c.samples_per_step);
  c.checkpoint_on_interrupt = root.get<bool>("checkpoint_on_interrupt", c.checkpoint_on_interrupt);
  c.device = root.get<std::string>("device", c.device);
  c.dtype = root.get_choice("dtype", c.dtype, {"auto", "f32", "bf16"});
  c.cuda_graphs = root.get<bool>("cuda_graphs", c.cuda_graphs);
  c.threads = root.get<int64_t>("threads", c.threads);
  check_min<int64_t>(root, "steps", c.steps, 1);
  GRPO_CHECK(!c.run_dir.empty(), root.key_path("run_dir") << " is empty");
  check_min<int64_t>(root, "save_every", c.save_every, 0);
  check_min<int64_t>(root, "keep_last", c.keep_last, 0);
  check_min<int64_t>(root, "samples_per_step", c.samples_per_step, 0);
  check_min<int64_t>(root, "threads", c.threads, 0);
  root.finish();
  return c;
}

std::string objective_options_json(const ObjectiveOptions& o) {
  Json j{{"advantage", name_of(o.advantage)},
         {"grpo_std", o.grpo_std_sample ? "sample" : "population"},
         {"adv_eps", o.adv_eps},
         {"ratio", name_of(o.ratio)},
         {"clip_low", o.clip_low},
         {"clip_high", o.clip_high},
         {"tis_cap", o.tis_cap},
         {"beta", o.beta},
         {"kl_estimator", name_of(o.kl_estimator)},
         {"kl_placement", name_of(o.kl_placement)},
         {"aggregation", name_of(o.aggregation)},
         {"max_completion_tokens", o.max_completion_tokens},
         {"entropy_coef", o.entropy_coef},
         {"overlong_cache", o.overlong_cache},
         {"overlong_penalty_factor", o.overlong_penalty_factor},
         {"overlong_filter", o.overlong_filter},
         {"max_log_ratio", o.max_log_ratio}};
  return j.dump();
}

std::string train_config_json(const TrainConfig& c) {
  Json j;
  j["model"] = c.model;
  if (!c.base_sft.empty()) j["base_sft"] = c.base_sft;
  j["data"] = data_json(c.data);
  if (c.eval.enabled())
    j["eval"] = {{"data", data_json(c.eval.data)}, {"every", c.eval.every}, {"n", c.eval.n},
                 {"temperature", c.eval.temperature}, {"max_new_tokens", c.eval.max_new_tokens},
                 {"before", c.eval.before}, {"exclude_from_training", c.eval.exclude_from_training}};
  j["prompt"] = {{"format", c.prompt.format}, {"template", c.prompt.template_text}, {"system", c.prompt.system},
                 {"generation_prefix", c.prompt.generation_prefix}};
  const RolloutConfig& r = c.rollout;
  j["rollout"] = {{"prompts_per_step", r.prompts_per_step}, {"group_size", r.group_size},
                  {"max_new_tokens", r.max_new_tokens}, {"temperature", r.temperature}, {"top_p", r.top_p},
                  {"top_k", r.top_k}, {"min_p", r.min_p}, {"stop", r.stop}, {"return_routing", r.return_routing},
                  {"weight_dtype", r.weight_dtype}};
  j["dynamic_sampling"] = {{"enabled", c.dynamic_sampling.enabled}, {"max_rounds", c.dynamic_sampling.max_rounds}};
  const RewardConfig& w = c.reward;
  j["reward"] = {{"checker", w.checker}, {"config", w.config}, {"plugins", w.plugins},
                 {"correct_threshold", w.correct_threshold}, {"retries", w.retries}, {"backoff_s", w.backoff_s},
                 {"timeout_s", w.timeout_s}};
  j["objective"] = Json::parse(objective_options_json(c.learner.objective));
  j["learner"] = {{"mu", c.learner.mu}, {"num_mini_batches", c.learner.num_mini_batches},
                  {"micro_batch_tokens", c.learner.micro_batch_tokens}, {"replay_routing", c.learner.replay_routing},
                  {"aux_loss_coef", c.learner.aux_loss_coef}};
  j["optimizer"] = Json::parse(optimizer_config_json(c.optimizer));
  const TopologyConfig& t = c.topology;
  j["topology"] = {{"kind", name_of(t.kind)},
                   {"workers", t.workers},
                   {"worker_max_batch", t.worker_max_batch},
                   {"worker_kv_memory", t.worker_kv_memory},
                   {"worker_device", t.worker_device},
                   {"worker_threads", t.worker_threads},
                   {"rollout_addresses", t.rollout_addresses},
                   {"reward_address", t.reward_address},
                   {"token_file", t.token_file},
                   {"start_timeout_s", t.start_timeout_s},
                   {"generate_timeout_s", t.generate_timeout_s},
                   {"max_worker_restarts", t.max_worker_restarts}};
  j["steps"] = c.steps;
  j["seed"] = c.seed;
  j["run_dir"] = c.run_dir;
  j["save_every"] = c.save_every;
  j["keep_last"] = c.keep_last;
  j["samples_per_step"] = c.samples_per_step;
  j["checkpoint_on_interrupt"] = c.checkpoint_on_interrupt;
  j["device"] = c.device;
  j["dtype"] = c.dtype;
  j["cuda_graphs"] = c.cuda_graphs;
  j["threads"] = c.threads;
  return j.dump(2);
}

}  // namespace grpo::train
