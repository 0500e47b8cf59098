// `grpo report RUN_DIR [--out FILE] [--max-sample-steps N]`: the HTML page of a run's curves
// and sampled completions (learner/report.h), written to RUN_DIR/report.html unless --out
// names another file. Prints the path written on stdout.
//   grpo report runs/r1-arith && xdg-open runs/r1-arith/report.html
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "learner/report.h"

namespace grpo::cli {

namespace {

struct ReportArgs {
  std::string run_dir, out;
  ReportOptions opt;
};

int run_report(const ReportArgs& a) {
  const std::string path = write_report(a.run_dir, a.out, a.opt);
  std::printf("%s\n", path.c_str());
  return 0;
}

}  // namespace

void add_report_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<ReportArgs>();
  CLI::App* cmd = app.add_subcommand("report", "Write a self-contained HTML page (plots, samples) for a run directory");
  cmd->add_option("run_dir", args->run_dir, "Run directory with metrics.jsonl (samples.jsonl, config.json optional)")
      ->required();
  cmd->add_option("--out", args->out, "Output file (default RUN_DIR/report.html)");
  cmd->add_option("--max-sample-steps", args->opt.max_sample_steps, "Newest steps whose samples are shown (0: none)")
      ->check(CLI::Range(int64_t{0}, int64_t{1000000}));
  cmd->callback([&run, args] { run = [args] { return run_report(*args); }; });
}

}  // namespace grpo::cli
