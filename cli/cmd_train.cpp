// `grpo train CONFIG [--set KEY=VALUE ...] [--resume RUN_DIR]`: the GRPO run (learner/train/
// trainer.h). Progress lines go to stderr, the summary to stdout. Ctrl-C (SIGINT) or SIGTERM
// stops at the next phase boundary, stops the child processes and saves a final checkpoint
// (checkpoint_on_interrupt); a second Ctrl-C ends the process at once (children die with it).
// Exit status: 0 done, 1 error, 2 usage, 130 interrupted.
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_util.h"
#include "core/config.h"
#include "core/error.h"
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
  GRPO_CHECK(!a.config.empty() || !a.resume.empty(), "grpo train: give a CONFIG file or --resume RUN_DIR");
  std::string source = a.config;
  if (source.empty()) {
    source = (std::filesystem::path(a.resume) / "config.json").string();
    GRPO_CHECK(std::filesystem::is_regular_file(source), "--resume " << a.resume << ": no config.json in it");
  }
  nlohmann::json raw = load_json_file(source);
  GRPO_CHECK(raw.is_object(), source << ": expected a JSON object");
  for (const std::string& s : a.sets) apply_set(raw, s);
  if (!a.resume.empty()) {
    GRPO_CHECK(a.config.empty() || !raw.contains("run_dir") || raw["run_dir"] == a.resume,
               "--resume " << a.resume << " but " << a.config << " has run_dir " << raw["run_dir"].dump());
    raw["run_dir"] = a.resume;
  }
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
  if (s.last_step > s.first_step) std::printf("  train reward/mean  %s\n", points(s.reward_first, s.reward_last).c_str());
  if (s.eval_before >= 0 && s.eval_after >= 0)
    std::printf("  held-out pass@1    %s\n", points(s.eval_before, s.eval_after).c_str());
  else if (s.eval_after >= 0)
    std::printf("  held-out pass@1    %.3f\n", s.eval_after);
  if (!s.checkpoint.empty()) std::printf("  checkpoint         %s\n", s.checkpoint.c_str());
  std::printf("  metrics            %s/metrics.jsonl (TensorBoard: %s/tb; report: grpo report %s)\n",
              config.run_dir.c_str(), config.run_dir.c_str(), config.run_dir.c_str());
  return s.interrupted ? 130 : 0;
}

#endif

}  // namespace

void add_train_command(CLI::App& app, Runner& run) {
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
