// `grpo sft CONFIG [--set KEY=VALUE ...] [--resume RUN_DIR]`: supervised fine-tuning
// (learner/sft.h). --resume continues a run from its newest complete checkpoint with the
// effective config saved in RUN_DIR (a CONFIG given too must name the same run_dir).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_util.h"
#include "core/config.h"
#include "core/error.h"
#include "learner/sft.h"

namespace grpo::cli {

namespace {

struct SftArgs {
  std::string config, resume;
  std::vector<std::string> sets;
};

int run_sft(const SftArgs& a) {
  std::string source;
  const nlohmann::json raw = load_run_config("grpo sft", a.config, a.resume, a.sets, &source);
  ConfigNode root(raw, source);
  const SftConfig config = parse_sft_config(root);
  SftTrainer trainer(config);
  if (a.resume.empty())
    trainer.start();
  else
    trainer.resume();
  std::fprintf(stderr, "sft: %lld steps, run_dir %s\n", (long long)trainer.total_steps(), config.run_dir.c_str());
  const SftStepMetrics m = trainer.train();
  nlohmann::ordered_json out{{"run_dir", config.run_dir}, {"step", trainer.step()}, {"loss", m.loss}};
  if (m.has_eval) out["eval_loss"] = m.eval_loss;
  std::printf("%s\n", out.dump().c_str());
  return 0;
}

}  // namespace

void add_sft_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<SftArgs>();
  CLI::App* cmd = app.add_subcommand("sft", "Supervised fine-tuning on {prompt, completion} data (loss on completions)");
  cmd->add_option("config", args->config, "Run config (JSON); see configs/sft-arithmetic.json");
  cmd->add_option("--set", args->sets, "Override a config key: KEY=VALUE (dotted key, JSON or string value)");
  cmd->add_option("--resume", args->resume, "Continue the run in RUN_DIR from its newest complete checkpoint");
  cmd->callback([&run, args] { run = [args] { return run_sft(*args); }; });
}

}  // namespace grpo::cli
