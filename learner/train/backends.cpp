// The trainer's rollout and reward backends: colocated, remote and local (backends.h).
#include "learner/train/backends.h"

#include <algorithm>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "kernels/ops.h"
#include "learner/datasets.h"
#include "learner/train/process.h"
#include "policy/kv_cache.h"
#include "policy/model.h"
#include "policy/model_config.h"
#include "policy/tokenizer.h"
#include "rewards/builtin.h"
#include "rewards/combine.h"
#include "rewards/plugin.h"
#include "rewards/service/client.h"
#include "rewards/service/handler.h"
#include "rewards/service/remote_checker.h"
#include "rollout/engine.h"

namespace grpo::train {

namespace fs = std::filesystem;
using rollout::PromptRequest;
using rollout::RemoteGroup;

namespace {

std::string read_token(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.good(), "topology.token_file " << path << ": cannot open file");
  std::string token((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  GRPO_CHECK(!token.empty() && token.find_first_of(" \t\r\n") == std::string::npos,
             "topology.token_file " << path << ": expected one token without whitespace");
  return token;
}

// ---- rollout: colocated -------------------------------------------------------------------

// The engine in this process, on its own copy of the policy (built with decoding limits).
class ColocatedRollout : public RolloutBackend {
 public:
  ColocatedRollout(const TrainConfig& c, Ops& ops, DType dtype, const Tokenizer* tok) {
    rollout::EngineConfig ec;
    ec.max_batch = c.topology.worker_max_batch;
    ec.kv_memory_bytes = c.topology.worker_kv_memory;
    ModelLimits limits = rollout::engine_model_limits(ec);
    limits.dtype = dtype;
    if (!c.cuda_graphs) limits.decode_graphs = DecodeGraphs::off;
    model_ = load_model(c.model, ops, limits);
    engine_ = std::make_unique<rollout::Engine>(*model_, ec, tok);
  }
  void generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group) override {
    std::vector<rollout::Request> requests;
    for (const PromptRequest& p : prompts) {
      GRPO_CHECK(!p.tokens.empty(), "colocated rollout: prompt " << p.id << " has no tokens");
      requests.push_back(rollout::Request{.id = p.id, .prompt = p.tokens, .sampling = p.sampling, .on_token = {}});
    }
    for (rollout::GroupResult& g : engine_->generate(std::move(requests)))
      on_group(RemoteGroup{.result = std::move(g), .texts = {}, .worker = "in-process"});
  }
  void update_weights(const Model& policy, int64_t version) override {
    engine_->request_weight_update(version, false, [&policy](Model& m) {
      GRPO_CHECK(m.table().size() == policy.table().size(), "colocated rollout: parameter tables differ");
      m.ops().copy(m.params(), policy.params());
      m.sync_compute_params();
    });
    engine_->run_until_idle();  // applies the update (nothing else is queued between steps)
    GRPO_CHECK(engine_->version() == version, "colocated rollout: the weight update did not apply");
  }
  std::string describe() const override { return "the generation engine in process"; }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<rollout::Engine> engine_;
};

// ---- rollout: remote and local ------------------------------------------------------------

// A pool over addresses; subclasses may replace addresses (restarted workers).
class PoolRollout : public RolloutBackend {
 public:
  PoolRollout(const TrainConfig& c, bool quiet) : config_(c), quiet_(quiet) {
    options_.client = rollout_client_options(c);
    options_.max_groups_per_call = 4;
    options_.max_attempts = 4;
    options_.down_for_s = 1e9;  // a failed worker stays out until it is replaced
  }

  void generate(const std::vector<PromptRequest>& prompts, const std::function<void(RemoteGroup)>& on_group) override {
    GRPO_CHECK(pool_, "rollout: no workers");
    std::map<uint64_t, bool> done;
    std::vector<PromptRequest> pending = prompts;
    for (int round = 0;; ++round) {
      try {
        pool_->generate(pending, [&](RemoteGroup g) {
          done[g.result.id] = true;
          on_group(std::move(g));
        });
        return;
      } catch (const rollout::RolloutClientError& e) {
        // Every worker failed: a local topology restarts them and tries the rest again.
        if (round >= 2 || !recover_all_down()) throw;
        if (!quiet_) GRPO_LOG(warn, "rollout: " << e.message() << "; retrying the step's remaining groups");
        std::vector<PromptRequest> rest;
        for (const PromptRequest& p : pending)
          if (!done.count(p.id)) rest.push_back(p);
        pending = std::move(rest);
      }
    }
  }

  void update_weights(const Model& policy, int64_t version) override {
    const DType dtype = config_.rollout.weight_dtype == "bf16" ? DType::bf16 : DType::f32;
    std::vector<std::string> failed(pool_->size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < pool_->size(); ++i)
      threads.emplace_back([&, i] {
        try {
          pool_->client(i).update_weights(policy, version, rollout::UpdateMode::finish_in_flight, dtype);
        } catch (const Error& e) {
          failed[i] = e.message();
        }
      });
    for (std::thread& t : threads) t.join();
    std::vector<size_t> bad;
    for (size_t i = 0; i < failed.size(); ++i)
      if (!failed[i].empty()) {
        GRPO_LOG(warn, "rollout worker " << pool_->client(i).address() << " did not take weights version " << version
                                         << ": " << failed[i]);
        bad.push_back(i);
      }
    if (!bad.empty()) on_update_failed(bad, policy, version);
  }

  int64_t retried_groups() const override { return retried_ + (pool_ ? pool_->retried_groups() : 0); }

 protected:
  void set_addresses(const std::vector<std::string>& addresses) {
    if (pool_) retried_ += pool_->retried_groups();
    addresses_ = addresses;
    pool_ = std::make_unique<rollout::RolloutPool>(addresses_, options_);
  }
  // Workers that failed an update: remote drops them (they would serve stale weights).
  virtual void on_update_failed(const std::vector<size_t>& bad, const Model&, int64_t) {
    std::vector<std::string> keep;
    for (size_t i = 0; i < addresses_.size(); ++i)
      if (std::find(bad.begin(), bad.end(), i) == bad.end()) keep.push_back(addresses_[i]);
    GRPO_CHECK(!keep.empty(), "rollout: every worker failed the weight update; no worker is left");
    set_addresses(keep);
  }
  virtual bool recover_all_down() { return false; }

  const TrainConfig& config_;
  bool quiet_;
  rollout::RolloutPoolOptions options_;
  std::vector<std::string> addresses_;
  std::unique_ptr<rollout::RolloutPool> pool_;
  int64_t retried_ = 0;
};

class RemoteRollout : public PoolRollout {
 public:
  RemoteRollout(const TrainConfig& c, bool quiet) : PoolRollout(c, quiet) { set_addresses(c.topology.rollout_addresses); }
  std::string describe() const override {
    return std::to_string(addresses_.size()) + " remote rollout worker(s)";
  }
};

// Children `grpo rollout serve --listen 127.0.0.1:0`, restarted when they die.
class LocalRollout : public PoolRollout {
 public:
  LocalRollout(const TrainConfig& c, const std::string& exe, const std::string& run_dir, bool quiet)
      : PoolRollout(c, quiet), exe_(exe), logs_((fs::path(run_dir) / "logs").string()) {
    fs::create_directories(logs_);
    const int64_t n = c.topology.workers;
    children_.resize(size_t(n));
    restarts_of_.assign(size_t(n), 0);
    std::vector<std::string> addresses(static_cast<size_t>(n));
    // Start them all, then wait for each: they load the model in parallel.
    for (int64_t i = 0; i < n; ++i) children_[size_t(i)] = spawn(i);
    for (int64_t i = 0; i < n; ++i) addresses[size_t(i)] = wait_address(*children_[size_t(i)]);
    set_addresses(addresses);
  }

  void maintain(const Model& policy, int64_t version) override {
    current_policy_ = &policy;
    current_version_ = version;
    // A worker the pool marked down (it timed out or failed a call) but whose process lives on
    // (hung, or wedged) is stopped here, so that it is restarted like a dead one.
    if (pool_)
      for (const rollout::PoolWorkerState& w : pool_->workers())
        if (w.down)
          for (auto& c : children_)
            if (c && c->running() && address_of(*c) == w.address) {
              GRPO_LOG(warn, c->name() << " on " << w.address << " failed (" << w.last_error << "); stopping it");
              c->terminate(2);
            }
    bool changed = false;
    std::vector<std::string> addresses = addresses_;
    for (size_t i = 0; i < children_.size(); ++i) {
      if (!children_[i] || children_[i]->running()) continue;
      const std::string why = children_[i]->describe_exit();
      if (restarts_of_[i] >= config_.topology.max_worker_restarts) {
        GRPO_LOG(warn, "rollout worker " << i << " " << why << "; restarted " << restarts_of_[i]
                                         << " times already, it stays down");
        children_[i].reset();
        addresses[i].clear();
        changed = true;
        continue;
      }
      GRPO_LOG(warn, "rollout worker " << i << " " << why << "; restarting it (log: " << log_path(i) << ")");
      children_[i] = spawn(int64_t(i));
      addresses[i] = wait_address(*children_[i]);
      ++restarts_of_[i];
      ++restarts_;
      push_to(addresses[i], policy, version);
      changed = true;
    }
    if (!changed) return;
    std::vector<std::string> live;
    for (const std::string& a : addresses)
      if (!a.empty()) live.push_back(a);
    GRPO_CHECK(!live.empty(), "rollout: every local worker is down and out of restarts (logs in " << logs_ << ")");
    addresses_ = addresses;
    set_addresses(live);
    addresses_ = addresses;  // keep the slot order (empty = down for good)
  }

  int64_t restarts() const override { return restarts_; }
  std::string describe() const override {
    return std::to_string(children_.size()) + " local rollout worker process(es)";
  }

  ~LocalRollout() override {
    for (auto& c : children_)
      if (c) c->send_signal(SIGTERM);
    for (auto& c : children_)
      if (c) c->terminate(5);
  }

 protected:
  void on_update_failed(const std::vector<size_t>& bad, const Model& policy, int64_t version) override {
    // A worker that died is restarted (and given these weights) by maintain(); a live one that
    // refused is killed so that it is restarted the same way.
    (void)bad;
    for (auto& c : children_)
      if (c && c->running()) {
        const std::string addr = address_of(*c);
        for (size_t i : bad)
          if (i < pool_->size() && pool_->client(i).address() == addr) c->terminate(2);
      }
    maintain(policy, version);
  }
  bool recover_all_down() override {
    bool any_dead = false;
    for (auto& c : children_)
      if (c && !c->running()) any_dead = true;
    if (!any_dead) return false;
    GRPO_CHECK(current_policy_, "rollout: workers died before the trainer's first step");
    maintain(*current_policy_, current_version_);
    return true;
  }

 public:
  // The weights a restarted worker must get (set by the trainer through update_weights).
  void update_weights(const Model& policy, int64_t version) override {
    current_policy_ = &policy;
    current_version_ = version;
    PoolRollout::update_weights(policy, version);
  }

 private:
  std::string log_path(int64_t i) const { return (fs::path(logs_) / ("rollout-" + std::to_string(i) + ".log")).string(); }

  // topology.worker_device with "{i}" / "{i+1}" replaced by the worker's index (one GPU each).
  std::string worker_device(int64_t i) const {
    std::string d = config_.topology.worker_device.empty() ? config_.device : config_.topology.worker_device;
    for (const auto& [mark, value] : {std::pair<std::string, int64_t>{"{i}", i}, {"{i+1}", i + 1}})
      for (size_t at; (at = d.find(mark)) != std::string::npos;) d.replace(at, mark.size(), std::to_string(value));
    return d;
  }

  std::unique_ptr<ChildProcess> spawn(int64_t i) {
    const TopologyConfig& t = config_.topology;
    ChildOptions o;
    o.name = "rollout worker " + std::to_string(i);
    o.argv = {exe_, "rollout", "serve", "--model", config_.model, "--listen", "127.0.0.1:0",
              "--max-batch", std::to_string(t.worker_max_batch), "--kv-memory", std::to_string(t.worker_kv_memory),
              "--device", worker_device(i), "--dtype", config_.dtype, "--shutdown-grace", "2"};
    if (!config_.cuda_graphs) o.argv.push_back("--eager");
    o.log_path = log_path(i);
    if (t.worker_threads > 0) o.env.push_back("OMP_NUM_THREADS=" + std::to_string(t.worker_threads));
    return std::make_unique<ChildProcess>(o);
  }
  std::string wait_address(ChildProcess& c) {
    const std::string line = c.wait_for_line("listening on ", config_.topology.start_timeout_s);
    const std::string addr = line.substr(std::string("listening on ").size());
    address_by_pid_[c.pid()] = addr;
    if (!quiet_) GRPO_LOG(info, c.name() << " (pid " << c.pid() << ") on " << addr);
    return addr;
  }
  std::string address_of(ChildProcess& c) const {
    auto it = address_by_pid_.find(c.pid());
    return it == address_by_pid_.end() ? "" : it->second;
  }
  void push_to(const std::string& address, const Model& policy, int64_t version) {
    if (version == 0) return;  // the worker loaded the starting weights itself
    rollout::RolloutClientOptions o = rollout_client_options(config_);
    o.address = address;
    rollout::RolloutClient client(o);
    const DType dtype = config_.rollout.weight_dtype == "bf16" ? DType::bf16 : DType::f32;
    client.update_weights(policy, version, rollout::UpdateMode::finish_in_flight, dtype);
  }

  std::string exe_, logs_;
  std::vector<std::unique_ptr<ChildProcess>> children_;
  std::vector<int64_t> restarts_of_;
  std::map<pid_t, std::string> address_by_pid_;
  int64_t restarts_ = 0;
  const Model* current_policy_ = nullptr;
  int64_t current_version_ = 0;
};

// ---- reward -------------------------------------------------------------------------------

// The checkers in this process, behind the reward service's own handler (thread pool).
class InProcessReward : public RewardBackend {
 public:
  explicit InProcessReward(const RewardConfig& rc) {
    rewards::register_builtin_checkers(registry_);
    register_dataset_checkers(registry_);
    rewards::register_remote_checker(registry_);
    for (const std::string& p : rc.plugins) rewards::load_reward_plugin(p, registry_);
    if (rc.config.empty()) {
      set_ = std::make_unique<rewards::RewardSet>(registry_, nullptr);
    } else {
      ConfigNode node = ConfigNode::from_file(rc.config);
      set_ = std::make_unique<rewards::RewardSet>(registry_, &node);
    }
    handler_ = std::make_unique<rewards::RewardHandler>(*set_, rewards::HandlerOptions{});
  }
  std::vector<rewards::ScoredItem> score(const std::vector<rewards::ScoreItem>& items) override {
    std::vector<rewards::ScoredItem> out;
    const rewards::Status st = handler_->score_sync(items, &out);
    // In process, a failure is a configuration or checker error, not a transient one.
    GRPO_CHECK(st.ok(), "reward: " << rewards::status_code_name(st.code) << ": " << st.message);
    return out;
  }
  std::string describe() const override { return "the reward checkers in process"; }

 private:
  rewards::CheckerRegistry registry_;
  std::unique_ptr<rewards::RewardSet> set_;
  std::unique_ptr<rewards::RewardHandler> handler_;
};

// A reward service over gRPC, retried with back-off.
class RemoteReward : public RewardBackend {
 public:
  RemoteReward(const RewardConfig& rc, const std::string& address, const std::string& token) : rc_(rc) {
    rewards::RewardClientOptions o;
    o.address = address;
    o.token = token;
    o.deadline_s = rc.timeout_s;
    client_ = std::make_unique<rewards::RewardClient>(o);
  }
  std::vector<rewards::ScoredItem> score(const std::vector<rewards::ScoreItem>& items) override {
    double backoff = rc_.backoff_s;
    for (int64_t attempt = 0;; ++attempt) {
      try {
        return client_->score(items);
      } catch (const rewards::RewardClientError& e) {
        // A bad request will not get better: no retry.
        if (e.code() == "INVALID_ARGUMENT" || e.code() == "UNAUTHENTICATED" || e.code() == "PERMISSION_DENIED")
          throw RewardServiceFailed("reward service at " + client_->address() + " refused the batch: " + e.code() +
                                    ": " + e.message());
        if (attempt >= rc_.retries)
          throw RewardServiceFailed("reward service at " + client_->address() + " failed " + std::to_string(attempt + 1) +
                                    " times (last: " + e.code() + ": " + e.message() + ")" + extra_context());
        GRPO_LOG(warn, "reward service at " << client_->address() << ": " << e.code() << ": " << e.message()
                                            << "; retry " << attempt + 1 << "/" << rc_.retries << " in " << backoff << " s");
        std::this_thread::sleep_for(std::chrono::duration<double>(backoff));
        backoff *= 2;
      }
    }
  }
  std::string describe() const override { return "the reward service at " + client_->address(); }

 protected:
  virtual std::string extra_context() const { return ""; }
  const RewardConfig& rc_;
  std::unique_ptr<rewards::RewardClient> client_;
};

// A `grpo reward serve` child (not restarted: a reward service that fails stops the run).
class LocalReward : public RemoteReward {
 public:
  static std::unique_ptr<LocalReward> start(const TrainConfig& c, const std::string& exe, const std::string& run_dir,
                                            bool quiet) {
    const std::string logs = (fs::path(run_dir) / "logs").string();
    fs::create_directories(logs);
    ChildOptions o;
    o.name = "reward service";
    o.argv = {exe, "reward", "serve", "--listen", "127.0.0.1:0"};
    if (!c.reward.config.empty()) o.argv.insert(o.argv.end(), {"--config", c.reward.config});
    for (const std::string& p : c.reward.plugins) o.argv.insert(o.argv.end(), {"--plugin", p});
    o.log_path = (fs::path(logs) / "reward.log").string();
    auto child = std::make_unique<ChildProcess>(o);
    const std::string line = child->wait_for_line("listening on ", c.topology.start_timeout_s);
    const std::string addr = line.substr(std::string("listening on ").size());
    if (!quiet) GRPO_LOG(info, "reward service (pid " << child->pid() << ") on " << addr);
    return std::unique_ptr<LocalReward>(new LocalReward(c.reward, addr, std::move(child)));
  }
  ~LocalReward() override {
    if (child_) child_->terminate(5);
  }
  std::string describe() const override { return "a local reward service process on " + client_->address(); }

 private:
  LocalReward(const RewardConfig& rc, const std::string& addr, std::unique_ptr<ChildProcess> child)
      : RemoteReward(rc, addr, ""), child_(std::move(child)) {}
  std::string extra_context() const override {
    if (child_->running()) return "";
    return "; the reward service process " + child_->describe_exit() + " (log: " + child_log() + ")";
  }
  std::string child_log() const { return "logs/reward.log"; }
  std::unique_ptr<ChildProcess> child_;
};

}  // namespace

rollout::RolloutClientOptions rollout_client_options(const TrainConfig& c) {
  rollout::RolloutClientOptions o;
  o.token = c.topology.kind == TopologyKind::remote ? read_token(c.topology.token_file) : "";
  o.deadline_s = c.topology.generate_timeout_s;
  return o;
}

Backends make_backends(const BackendContext& ctx) {
  const TrainConfig& c = *ctx.config;
  Backends b;
  switch (c.topology.kind) {
    case TopologyKind::colocated:
      b.rollout = std::make_unique<ColocatedRollout>(c, *ctx.ops, ctx.dtype, ctx.tokenizer);
      b.reward = std::make_unique<InProcessReward>(c.reward);
      break;
    case TopologyKind::remote:
      b.rollout = std::make_unique<RemoteRollout>(c, ctx.quiet);
      if (c.topology.reward_address.empty())
        b.reward = std::make_unique<InProcessReward>(c.reward);
      else
        b.reward = std::make_unique<RemoteReward>(c.reward, c.topology.reward_address, read_token(c.topology.token_file));
      break;
    case TopologyKind::local:
      // The reward service first: it starts in milliseconds and catches config errors early.
      b.reward = LocalReward::start(c, ctx.executable, ctx.run_dir, ctx.quiet);
      b.rollout = std::make_unique<LocalRollout>(c, ctx.executable, ctx.run_dir, ctx.quiet);
      break;
  }
  return b;
}

}  // namespace grpo::train
