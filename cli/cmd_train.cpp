// `grpo train CONFIG [--set KEY=VALUE ...] [--resume RUN_DIR]`: the GRPO run (learner/train/
// trainer.h). Progress lines go to stderr, the summary to stdout. Ctrl-C (SIGINT) or SIGTERM
// stops at the next phase boundary, stops the child processes and saves a final checkpoint
// (checkpoint_on_interrupt); a second Ctrl-C ends the process at once (children die with it).
// Exit status: 0 done, 1 error, 2 usage, 130 interrupted.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <unistd.h>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_util.h"
#include "core/config.h"
#include "core/error.h"
// `grpo bench train`: the same run under the local and the colocated topology.
struct BenchTrainArgs {
  std::string config;
  int64_t steps = 5;
  std::vector<std::string> sets;
};

#ifdef GRPO_WITH_TRAINER
#include "learner/train/process.h"
#include "learner/train/trainer.h"
#endif

namespace grpo::cli {

namespace {

struct TrainArgs {
  std::string config, resume;
  std::vector<std::string> sets;
  bool quiet = false;
};

#ifdef GRPO_WITH_TRAINER

// The config file (or RUN_DIR/config.json with --resume), with --set applied.
train::TrainConfig load_train_config(const TrainArgs& a) {
  std::string source;
  const nlohmann::json raw = load_run_config("grpo train", a.config, a.resume, a.sets, &source);
  ConfigNode root(raw, source);
  return train::parse_train_config(root);
}

std::string points(double before, double after) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "%.3f -> %.3f (%+.1f points)", before, after, 100 * (after - before));
  return buf;
}

int run_train(const TrainArgs& a) {
  const train::TrainConfig config = load_train_config(a);
  install_stop_handlers();
  train::Trainer trainer(config, {.quiet = a.quiet, .executable = ""});
  // Ctrl-C: stop at the next phase boundary and take the children down now, so a long
  // generation does not hold the stop up. A second signal ends the process (default action).
  std::thread watcher([&trainer] {
    const int sig = wait_for_stop_signal();
    if (sig == 0) return;
    std::fprintf(stderr, "train: %s, stopping (again to quit at once)\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
    trainer.request_stop();
    train::stop_all_children(5);
  });
  struct Join {
    std::thread& t;
    ~Join() {
      wake_stop_waiter();
      t.join();
    }
  } join{watcher};

  const train::TrainSummary s = a.resume.empty() ? trainer.start() : trainer.resume();
  std::printf("grpo train: steps %lld..%lld of %lld in %.0f s (%.1f s/step)%s\n", (long long)s.first_step,
              (long long)s.last_step, (long long)config.steps, s.seconds,
              s.last_step > s.first_step ? s.seconds / double(s.last_step - s.first_step) : 0.0,
              s.interrupted ? ", interrupted" : "");
  if (s.last_step > s.first_step) std::printf("  train reward/mean  %s (first vs last 10 steps)\n", points(s.reward_first, s.reward_last).c_str());
  if (s.eval_before >= 0 && s.eval_after >= 0)
    std::printf("  held-out pass@1    %s\n", points(s.eval_before, s.eval_after).c_str());
  else if (s.eval_after >= 0)
    std::printf("  held-out pass@1    %.3f\n", s.eval_after);
  if (!s.checkpoint.empty()) std::printf("  checkpoint         %s\n", s.checkpoint.c_str());
  std::printf("  metrics            %s/metrics.jsonl (TensorBoard: %s/tb; report: grpo report %s)\n",
              config.run_dir.c_str(), config.run_dir.c_str(), config.run_dir.c_str());
  return s.interrupted ? 130 : 0;
}

int run_bench_train(const BenchTrainArgs& a) {
  namespace fs = std::filesystem;
  GRPO_CHECK(a.steps >= 2, "--steps must be >= 2 (the first step is a warm-up), got " << a.steps);
  const fs::path tmp = fs::temp_directory_path() / ("grpo-bench-train-" + std::to_string(::getpid()));
  nlohmann::ordered_json out;
  out["bench"] = "train";
  out["config"] = a.config;
  out["steps"] = a.steps;
  out["measured_steps"] = a.steps - 1;
  std::map<std::string, double> per_step;
  for (const char* kind : {"local", "colocated"}) {
    // The config with this run's changes, written beside the runs.
    nlohmann::json raw = load_json_file(a.config);
    GRPO_CHECK(raw.is_object(), a.config << ": expected a JSON object");
    for (const std::string& set : a.sets) apply_set(raw, set);
    raw.erase("eval");
    if (raw.contains("topology") && raw["topology"].is_object())
      for (const char* k : {"rollout_addresses", "reward_address", "token_file"}) raw["topology"].erase(k);
    raw["topology"]["kind"] = kind;
    raw["steps"] = a.steps;
    raw["save_every"] = 0;
    raw["run_dir"] = (tmp / kind).string();
    fs::create_directories(tmp);
    TrainArgs ta;
    ta.config = (tmp / (std::string(kind) + ".json")).string();
    std::ofstream(ta.config) << raw.dump(2);
    train::TrainConfig config = load_train_config(ta);
    fs::remove_all(config.run_dir);
    std::fprintf(stderr, "bench train: %s, %lld steps\n", kind, (long long)a.steps);
    {
      train::Trainer trainer(config, {.quiet = true, .executable = "", .save_checkpoints = false});
      trainer.start();
    }
    // Means over the steps after the first (warm-up: first allocations, first connections).
    std::map<std::string, double> sum;
    int64_t n = 0;
    std::ifstream in(fs::path(config.run_dir) / "metrics.jsonl");
    for (std::string line; std::getline(in, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (!j.contains("reward/mean") || j["step"].get<int64_t>() < 2) continue;
      ++n;
      for (const char* k : {"time/step_s", "time/generate_s", "time/reward_s", "time/learn_s", "time/weight_sync_s",
                             "tokens/generated", "tokens_per_s/step"})
        sum[k] += j[k].get<double>();
    }
    GRPO_CHECK(n > 0, "bench train: no measured steps in " << config.run_dir);
    nlohmann::ordered_json r;
    r["seconds_per_step"] = sum["time/step_s"] / double(n);
    r["generate_s"] = sum["time/generate_s"] / double(n);
    r["reward_s"] = sum["time/reward_s"] / double(n);
    r["learn_s"] = sum["time/learn_s"] / double(n);
    r["weight_sync_s"] = sum["time/weight_sync_s"] / double(n);
    r["generated_tokens_per_step"] = sum["tokens/generated"] / double(n);
    r["tokens_per_s"] = sum["tokens_per_s/step"] / double(n);
    if (std::string(kind) == "local") r["workers"] = config.topology.workers;
    per_step[kind] = r["seconds_per_step"].get<double>();
    out[kind] = r;
    fs::remove_all(config.run_dir);
  }
  fs::remove_all(tmp);
  // > 1: the process boundary (gRPC, serialisation, weight streaming) costs more than the
  // workers' parallelism gains; < 1: the workers win.
  out["local_over_colocated"] = per_step["local"] / per_step["colocated"];
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}

#endif

}  // namespace

void add_bench_train_command(CLI::App& app, Runner& run) {
  CLI::App* bench = app.get_subcommand("bench");
  auto a = std::make_shared<BenchTrainArgs>();
  CLI::App* cmd = bench->add_subcommand("train", "Seconds per GRPO step and its time split, local against colocated");
  cmd->add_option("--config", a->config, "Run config (JSON), e.g. configs/quickstart.json (its model must exist)")->required();
  cmd->add_option("--steps", a->steps, "Steps per topology (the first is not measured)")->capture_default_str();
  cmd->add_option("--set", a->sets, "Override a config key: KEY=VALUE");
  cmd->callback([&run, a] {
#ifdef GRPO_WITH_TRAINER
    run = [a] { return run_bench_train(*a); };
#else
    run = []() -> int { GRPO_THROW("grpo bench train: this build has no gRPC services"); };
#endif
  });
}

void add_train_command(CLI::App& app, Runner& run) {
  add_bench_train_command(app, run);
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "GRPO training run: rollout workers, reward service, learner");
  cmd->add_option("config", a->config, "Run config (JSON); see configs/quickstart.json");
  cmd->add_option("--set", a->sets, "Override a config key: KEY=VALUE (dotted key, JSON or string value)");
  cmd->add_option("--resume", a->resume, "Continue the run in RUN_DIR from its newest complete checkpoint");
  cmd->add_flag("--quiet", a->quiet, "No progress lines");
  cmd->callback([&run, a] {
#ifdef GRPO_WITH_TRAINER
    run = [a] { return run_train(*a); };
#else
    run = []() -> int {
      GRPO_THROW("grpo train: this build has no gRPC services (configure with -DGRPO_SERVICES=ON and gRPC installed)");
    };
#endif
  });
}

}  // namespace grpo::cli
