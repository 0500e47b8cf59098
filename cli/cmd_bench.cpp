#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "bench/bench.h"
#include "cli/commands.h"
#include "core/error.h"

namespace grpo::cli {

namespace {

int write_output(const std::string& json, const std::string& out_path) {
  if (out_path.empty()) {
    std::fputs(json.c_str(), stdout);
    std::fputc('\n', stdout);
    return 0;
  }
  std::ofstream out(out_path);
  GRPO_CHECK(out.good(), "--out " << out_path << ": cannot open for writing");
  out << json << "\n";
  GRPO_CHECK(out.good(), "--out " << out_path << ": write failed");
  return 0;
}

}  // namespace

void add_bench_commands(CLI::App& app, Runner& run) {
  CLI::App* bench = app.add_subcommand("bench", "Benchmarks (JSON on stdout)");
  bench->require_subcommand(1);

  struct OpsArgs {
    BenchOpsOptions options;
    std::string out;
  };
  auto args = std::make_shared<OpsArgs>();
  CLI::App* ops = bench->add_subcommand("ops", "GFLOP/s of the CPU kernels next to OpenBLAS");
  ops->add_flag("--quick", args->options.quick, "Small sizes, few repeats (a smoke run)");
  ops->add_option("--min-seconds", args->options.min_seconds, "Time each case for at least this long")
      ->check(CLI::PositiveNumber);
  ops->add_option("--threads", args->options.threads, "Threads (0: all cores)")->check(CLI::NonNegativeNumber);
  ops->add_option("--out", args->out, "Write the JSON here instead of stdout");
  ops->callback([&run, args] { run = [args] { return write_output(run_bench_ops(args->options), args->out); }; });
}

}  // namespace grpo::cli
