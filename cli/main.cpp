// `grpo`: one binary, thin subcommands over the libraries.
// Errors are one line on stderr naming the file, field or flag at fault:
//   exit 2 for usage errors (unknown flag or subcommand, bad value), 1 for runtime errors.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <string>

#include "cli/commands.h"
#include "core/error.h"

namespace {

std::string version_string() {
  std::string v = std::string("grpo ") + GRPO_VERSION;
#ifdef GRPO_WITH_CUDA
  v += " (cpu, cuda)";
#else
  v += " (cpu)";
#endif
  return v;
}

// CLI11 messages can span lines; the contract is one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  while (!s.empty() && s.back() == ' ') s.pop_back();
  return s;
}

// CLI11 reports "A subcommand is required" for `grpo frobnicate`; name the word instead.
// Returns "" when every leading word is a known subcommand.
std::string unknown_subcommand(CLI::App& app, int argc, char** argv) {
  CLI::App* level = &app;
  for (int i = 1; i < argc; ++i) {
    std::string word = argv[i];
    if (word.empty() || word[0] == '-') break;
    if (level->get_subcommands({}).empty()) break;
    CLI::App* sub = nullptr;
    for (CLI::App* s : level->get_subcommands({}))
      if (s->check_name(word)) sub = s;
    if (!sub) {
      std::string names;
      for (CLI::App* s : level->get_subcommands({})) names += (names.empty() ? "" : ", ") + s->get_name();
      std::string where = level == &app ? "grpo" : "grpo " + level->get_name();
      return "unknown subcommand \"" + word + "\" for " + where + " (expected one of: " + names + ")";
    }
    level = sub;
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"grpo.cpp: GRPO reinforcement learning for reasoning models", "grpo"};
  app.set_version_flag("--version", version_string());
  app.require_subcommand(1);
  app.fallthrough(false);

  grpo::cli::Runner run;
  grpo::cli::add_bench_commands(app, run);
  grpo::cli::add_tokenize_command(app, run);
  grpo::cli::add_reward_commands(app, run);
  grpo::cli::add_model_commands(app, run);
  grpo::cli::add_rollout_commands(app, run);
  grpo::cli::add_generate_command(app, run);
  grpo::cli::add_eval_command(app, run);
  grpo::cli::add_sft_command(app, run);
  grpo::cli::add_train_command(app, run);
  grpo::cli::add_report_command(app, run);

  if (std::string bad = unknown_subcommand(app, argc, argv); !bad.empty()) {
    std::fprintf(stderr, "grpo: error: %s\n", bad.c_str());
    return 2;
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "grpo: error: %s (see grpo --help)\n", one_line(e.what()).c_str());
    return 2;
  }
  try {
    return run ? run() : 0;
  } catch (const grpo::Error& e) {
    std::fprintf(stderr, "grpo: error: %s\n", one_line(e.message()).c_str());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "grpo: error: %s\n", one_line(e.what()).c_str());
    return 1;
  }
}
